//! Closed-loop TCP load client for the floor echo servers: the same pattern as `loadtest --mode echo` (N
//! connections, one S-byte message in flight on each), without WebSocket framing. Every echo is compared with what
//! was sent.
//!
//! Opens every connection first (blocking connects, `TCP_NODELAY`), then runs `--warmup` (not counted) plus
//! `--duration` on one io_uring (one-shot send and recv per message, `DEFER_TASKRUN`) and prints msg/s, its own CPU
//! and, with `--server-pid`, the server's CPU per message (utime + stime from /proc/PID/stat over the measured
//! window, as `loadtest` measures it).
//!
//! Usage: tcp_load [--conns 100] [--size 20] [--duration 10s] [--warmup 2s] [--server-pid PID] [--json] ADDR
//! Exit status: 0 ok, 1 mismatches/errors or nothing echoed, 2 usage or setup error.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

const SEND: u64 = 1 << 32;
const RECV: u64 = 2 << 32;

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<i32>,
    json: bool,
}

const USAGE: &str = "usage: tcp_load [--conns N] [--size BYTES] [--duration 10s] [--warmup 2s] [--server-pid PID] [--json] ADDR";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:0".parse().unwrap(),
        conns: 100,
        size: 20,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        server_pid: None,
        json: false,
    };
    let mut addr = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--size" => a.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--duration" => a.duration = floor::parse_duration(&val()?)?,
            "--warmup" => a.warmup = floor::parse_duration(&val()?)?,
            "--server-pid" => {
                a.server_pid = Some(val()?.parse().map_err(|e| format!("--server-pid: {e}"))?)
            }
            "--json" => a.json = true,
            "-h" | "--help" => return Err(String::new()),
            s if !s.starts_with('-') && addr.is_none() => {
                addr = Some(s.parse().map_err(|e| format!("address {s:?}: {e}"))?)
            }
            s => return Err(format!("unknown argument {s:?}")),
        }
    }
    a.addr = addr.ok_or("missing ADDR")?;
    if a.conns == 0 || a.size == 0 || a.size > u32::MAX as usize {
        return Err("--conns and --size must be at least 1".into());
    }
    Ok(a)
}

struct Conn {
    stream: TcpStream,
    msg: Vec<u8>,
    echo: Vec<u8>,
    sent: usize,
    got: usize,
    dead: bool,
}

/// Queue one SQE, submitting first when the queue is full.
///
/// # Safety
/// The memory the entry points at must stay valid until its completion.
unsafe fn push(ring: &mut IoUring, e: squeue::Entry) {
    loop {
        // SAFETY: the caller's contract.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return;
        }
        let _ = ring.submit();
    }
}

fn send(ring: &mut IoUring, i: usize, c: &Conn) {
    let rest = &c.msg[c.sent..];
    let e = opcode::Send::new(
        types::Fd(c.stream.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .build()
    .user_data(SEND | i as u64);
    // SAFETY: `msg` of a connection is never resized or dropped before the loop ends, and the ring is dropped
    // (cancelling every operation) before the connections.
    unsafe { push(ring, e) };
}

fn recv(ring: &mut IoUring, i: usize, c: &mut Conn) {
    let rest = &mut c.echo[c.got..];
    let e = opcode::Recv::new(
        types::Fd(c.stream.as_raw_fd()),
        rest.as_mut_ptr(),
        rest.len() as u32,
    )
    .build()
    .user_data(RECV | i as u64);
    // SAFETY: as for `send`, for `echo`.
    unsafe { push(ring, e) };
}

/// Start the next message of connection `i`: new content (the first 8 bytes carry a sequence number), one send and
/// one recv.
fn start(ring: &mut IoUring, i: usize, c: &mut Conn, seq: u64) {
    let n = c.msg.len().min(8);
    c.msg[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    c.sent = 0;
    c.got = 0;
    send(ring, i, c);
    recv(ring, i, c);
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tcp_load: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    let ramp = Instant::now();
    let mut conns = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let stream = match TcpStream::connect(args.addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tcp_load: connect {} ({i} open): {e}", args.addr);
                return 2;
            }
        };
        let _ = stream.set_nodelay(true);
        let fill = b'a' + (i % 26) as u8;
        conns.push(Conn {
            stream,
            msg: vec![fill; args.size],
            echo: vec![0; args.size],
            sent: 0,
            got: 0,
            dead: false,
        });
    }
    let ramp_s = ramp.elapsed().as_secs_f64();
    let entries = (args.conns * 2).clamp(64, 8192).next_power_of_two() as u32;
    let mut ring = match floor::ring(entries) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tcp_load: io_uring setup: {e}");
            return 2;
        }
    };
    let mut seq = vec![0u64; args.conns];
    for (i, c) in conns.iter_mut().enumerate() {
        start(&mut ring, i, c, 0);
    }

    let t_start = Instant::now();
    let warm_end = t_start + args.warmup;
    let end = warm_end + args.duration;
    let (mut done, mut mismatches, mut errors) = (0u64, 0u64, 0u64);
    let mut at_warm: Option<(u64, Instant, Duration, Option<Duration>)> = None;
    let ts = types::Timespec::new().nsec(50_000_000);
    let wait = types::SubmitArgs::new().timespec(&ts);
    let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(entries as usize * 4);
    let mut open = args.conns;
    while open > 0 {
        let now = Instant::now();
        if at_warm.is_none() && now >= warm_end {
            at_warm = Some((
                done,
                now,
                floor::self_cpu(),
                args.server_pid.and_then(floor::proc_cpu),
            ));
        }
        if now >= end {
            break;
        }
        if let Err(e) = ring.submitter().submit_with_args(1, &wait) {
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
            ) {
                eprintln!("tcp_load: io_uring_enter: {e}");
                return 2;
            }
        }
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(u, res) in &cqes {
            let i = (u & 0xffff_ffff) as usize;
            let c = &mut conns[i];
            if res <= 0 {
                // Error or end of stream: this connection stops.
                errors += 1;
                if !c.dead {
                    c.dead = true;
                    open -= 1;
                }
                continue;
            }
            if u & SEND != 0 {
                c.sent += res as usize;
                if c.sent < c.msg.len() {
                    send(&mut ring, i, c);
                    continue;
                }
            } else {
                c.got += res as usize;
                if c.got < c.echo.len() {
                    recv(&mut ring, i, c);
                    continue;
                }
            }
            // The next message goes once the whole echo is in and the send completion has been seen.
            if c.sent == c.msg.len() && c.got == c.echo.len() {
                if c.echo != c.msg {
                    mismatches += 1;
                }
                done += 1;
                seq[i] += 1;
                start(&mut ring, i, c, seq[i]);
            }
        }
    }
    let t_end = Instant::now();
    let cpu_end = floor::self_cpu();
    let scpu_end = args.server_pid.and_then(floor::proc_cpu);
    let rss = args.server_pid.and_then(server_rss_kib);
    let Some((done0, t0, cpu0, scpu0)) = at_warm else {
        eprintln!("tcp_load: every connection failed during the warm-up");
        return 1;
    };
    let wall = (t_end - t0).as_secs_f64().max(1e-9);
    let n = done - done0;
    let per_msg = |d: Duration| {
        if n == 0 {
            None
        } else {
            Some(d.as_secs_f64() * 1e6 / n as f64)
        }
    };
    let client = cpu_end.saturating_sub(cpu0);
    let server = match (scpu0, scpu_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let opt = |v: Option<f64>, p: usize| v.map_or("null".to_string(), |x| format!("{x:.p$}"));
    let msgs_per_s = n as f64 / wall;
    let client_pct = client.as_secs_f64() * 100.0 / wall;
    let server_pct = server.map(|d| d.as_secs_f64() * 100.0 / wall);
    if args.json {
        println!(
            "{{\"addr\":\"{}\",\"mode\":\"tcp-echo\",\"conns\":{},\"size\":{},\"duration_s\":{:.3},\"warmup_s\":{:.3},\
             \"ramp_s\":{:.3},\"received\":{},\"msgs_per_s\":{:.1},\"errors_total\":{},\"mismatches\":{},\
             \"connect_failed\":0,\"client_cpu_pct\":{:.1},\"client_cpu_us_per_msg\":{},\"server_pid\":{},\
             \"server_cpu_pct\":{},\"server_cpu_us_per_msg\":{},\"server_rss_kib\":{}}}",
            args.addr,
            args.conns,
            args.size,
            wall,
            args.warmup.as_secs_f64(),
            ramp_s,
            n,
            msgs_per_s,
            errors,
            mismatches,
            client_pct,
            opt(per_msg(client), 3),
            args.server_pid.map_or("null".into(), |p| p.to_string()),
            opt(server_pct, 1),
            opt(server.and_then(per_msg), 3),
            rss.map_or("null".into(), |r| r.to_string()),
        );
    } else {
        println!(
            "tcp_load {}: {} conns x {} B, {:.1} s after {:.1} s warm-up: {:.0} msg/s, client CPU {:.0}% ({} µs/msg), \
             server CPU {}% ({} µs/msg), {} errors, {} mismatches",
            args.addr,
            args.conns,
            args.size,
            wall,
            args.warmup.as_secs_f64(),
            msgs_per_s,
            client_pct,
            opt(per_msg(client), 2),
            opt(server_pct, 0),
            opt(server.and_then(per_msg), 2),
            errors,
            mismatches
        );
    }
    if mismatches > 0 || errors > 0 || n == 0 {
        1
    } else {
        0
    }
}

/// VmRSS of a process, in KiB.
fn server_rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}
