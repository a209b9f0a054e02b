//! `--mode handshake`: the connection-opening rate. Each of `--conns` client threads loops: TCP connect, TLS
//! handshake (wss://; resumed with `--resume`), WebSocket upgrade, close frame, wait for the server's EOF (so
//! TIME_WAIT lands on the server), and again. Counted in the measured window after `--warmup`: handshakes per
//! second, the time from connect to the upgrade response (µs), how many TLS sessions were resumed, failures by
//! kind, and the CPU of this process and of `--server-pid` per handshake.
//!
//! Blocking sockets on plain threads: a connection's opening is a few round trips of a few hundred bytes, so there
//! is nothing to batch, and the client's cost is dominated by its TLS computations (certificate signature
//! verification, key exchange) which the TLS layer (`crate::tls`, the same as the reactor's) does either way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use ringws::handshake::ClientHandshake;

use crate::cli::Args;
use crate::frames;
use crate::plan::{now_ns, Plan};
use crate::stats::{self, new_histogram, percentiles, record_ns, ErrKind, ERR_KINDS};

#[derive(Default)]
struct Shared {
    /// Inside the measured window.
    counting: AtomicBool,
    stop: AtomicBool,
    ok: AtomicU64,
    resumed: AtomicU64,
    errors: [AtomicU64; ERR_KINDS],
}

/// Run the handshake mode; returns the exit status (1 when no handshake succeeded in the window).
pub fn run(args: &Args, plan: &Arc<Plan>) -> Result<i32, String> {
    let shared = Arc::new(Shared::default());
    let hist = Arc::new(Mutex::new(new_histogram()));
    let mut handles = Vec::new();
    for _ in 0..args.conns {
        let (plan, shared, hist) = (plan.clone(), shared.clone(), hist.clone());
        handles.push(std::thread::spawn(move || {
            let mut h = new_histogram();
            client_loop(&plan, &shared, &mut h);
            hist.lock()
                .expect("histogram")
                .add(&h)
                .expect("same bounds");
        }));
    }
    std::thread::sleep(args.warmup);
    let c0 = stats::self_cpu();
    let s0 = args.server_pid.first().copied().and_then(stats::proc_cpu);
    let t0 = now_ns();
    shared.counting.store(true, Relaxed);
    std::thread::sleep(args.duration);
    shared.counting.store(false, Relaxed);
    let t1 = now_ns();
    let c1 = stats::self_cpu();
    let s1 = args.server_pid.first().copied().and_then(stats::proc_cpu);
    shared.stop.store(true, Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let wall = Duration::from_nanos(t1 - t0);
    let ok = shared.ok.load(Relaxed);
    let per = |d: Duration| {
        if ok > 0 {
            d.as_secs_f64() * 1e6 / ok as f64
        } else {
            0.0
        }
    };
    let client_cpu = c1.total().saturating_sub(c0.total());
    let server_cpu = match (s0, s1) {
        (Some(a), Some(b)) => Some(b.total().saturating_sub(a.total())),
        _ => None,
    };
    let lat = percentiles(&hist.lock().expect("histogram"));
    let errors: serde_json::Map<String, serde_json::Value> = ErrKind::ALL
        .iter()
        .filter(|k| shared.errors[**k as usize].load(Relaxed) > 0)
        .map(|k| {
            (
                k.name().to_string(),
                shared.errors[*k as usize].load(Relaxed).into(),
            )
        })
        .collect();
    let summary = serde_json::json!({
        "mode": "handshake",
        "url": args.url.join(" "),
        "clients": args.conns,
        "resume": args.resume,
        "seconds": wall.as_secs_f64(),
        "handshakes": ok,
        "resumed": shared.resumed.load(Relaxed),
        "handshakes_per_s": ok as f64 / wall.as_secs_f64(),
        "errors": errors,
        "latency_us": lat,
        "client_cpu_pct": 100.0 * client_cpu.as_secs_f64() / wall.as_secs_f64(),
        "client_cpu_us_per_handshake": per(client_cpu),
        "server_cpu_pct": server_cpu.map(|d| 100.0 * d.as_secs_f64() / wall.as_secs_f64()),
        "server_cpu_us_per_handshake": server_cpu.map(per),
    });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serializes")
        );
    } else {
        println!(
            "handshake {}: {ok} in {:.2}s = {:.0}/s ({} resumed), errors {}\n  latency us p50 {} p90 {} p99 {} max {}\n  \
             client CPU {:.0}% ({:.1} us/handshake){}",
            args.url.join(" "),
            wall.as_secs_f64(),
            ok as f64 / wall.as_secs_f64(),
            shared.resumed.load(Relaxed),
            summary["errors"],
            lat.p50,
            lat.p90,
            lat.p99,
            lat.max,
            100.0 * client_cpu.as_secs_f64() / wall.as_secs_f64(),
            per(client_cpu),
            server_cpu.map_or(String::new(), |d| format!(
                ", server CPU {:.0}% ({:.1} us/handshake)",
                100.0 * d.as_secs_f64() / wall.as_secs_f64(),
                per(d)
            )),
        );
    }
    if ok == 0 {
        eprintln!("loadtest: no handshake succeeded in the measurement window");
        return Ok(1);
    }
    Ok(0)
}

fn client_loop(plan: &Plan, shared: &Shared, hist: &mut Histogram<u64>) {
    while !shared.stop.load(Relaxed) {
        let t = now_ns();
        let res = one(plan);
        if !shared.counting.load(Relaxed) {
            continue;
        }
        match res {
            Ok(resumed) => {
                shared.ok.fetch_add(1, Relaxed);
                if resumed {
                    shared.resumed.fetch_add(1, Relaxed);
                }
                record_ns(hist, now_ns() - t);
            }
            Err(k) => {
                shared.errors[k as usize].fetch_add(1, Relaxed);
                // A refused or failing server is not hammered in a tight loop.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// One connection: open (TCP, TLS, upgrade), close, wait for EOF. Ok(resumed) once the upgrade succeeded.
fn one(plan: &Plan) -> Result<bool, ErrKind> {
    let t = &plan.target;
    let mut sock =
        TcpStream::connect_timeout(&t.addr, plan.connect_timeout).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrKind::ConnectRefused,
            std::io::ErrorKind::TimedOut => ErrKind::ConnectTimeout,
            _ => ErrKind::ConnectOther,
        })?;
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(plan.connect_timeout));
    let mut tls = match &plan.tls {
        Some(s) => Some(s.client().map_err(|_| ErrKind::Tls)?),
        None => None,
    };
    let mut key = [0u8; 16];
    let _ = getrandom::getrandom(&mut key);
    let hs = ClientHandshake::new(key);
    let mut out = Vec::with_capacity(512);
    hs.write_request(&mut out, &t.host, &t.path, &[]);
    send(&mut sock, tls.as_mut(), &mut out).map_err(|_| ErrKind::Send)?;
    let mut plain = Vec::with_capacity(512);
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => return Err(ErrKind::Handshake),
            Ok(n) => n,
        };
        receive(tls.as_mut(), &buf[..n], &mut plain)?;
        if let Some(tls) = tls.as_mut() {
            if tls.wants_write() {
                send(&mut sock, Some(tls), &mut Vec::new()).map_err(|_| ErrKind::Send)?;
            }
        }
        match hs.parse_response(&plain) {
            Ok(None) => continue,
            Ok(Some(_)) => break,
            Err(_) => return Err(ErrKind::Handshake),
        }
    }
    let resumed = tls.as_ref().is_some_and(|t| t.resumed());
    let mut close = Vec::new();
    frames::write_close(&mut close, [1, 2, 3, 4]);
    send(&mut sock, tls.as_mut(), &mut close).map_err(|_| ErrKind::Send)?;
    // The server answers the close and ends the TCP connection; what it sends meanwhile is not looked at.
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    Ok(resumed)
}

fn send(
    sock: &mut TcpStream,
    tls: Option<&mut crate::tls::TlsClient>,
    data: &mut Vec<u8>,
) -> std::io::Result<()> {
    if let Some(t) = tls {
        t.seal(data);
    }
    sock.write_all(data)
}

fn receive(
    tls: Option<&mut crate::tls::TlsClient>,
    data: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), ErrKind> {
    match tls {
        Some(t) => t.receive(data, plain).map_err(|_| ErrKind::Tls),
        None => {
            plain.extend_from_slice(data);
            Ok(())
        }
    }
}
