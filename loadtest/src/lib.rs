//! `loadtest`: a WebSocket load client on io_uring (see `loadtest --help`).
//!
//! # Design
//! - **Phases.** Every reactor thread opens its share of the connections (paced by `--connect-rate`, at most
//!   `--connect-concurrency` in progress per thread, each TCP connect bounded by a linked io_uring timeout and the
//!   handshake by a sweep); failures are counted by kind and never retried. Only when every thread is done does the
//!   main thread start the clock: warm-up, then the measured window, then close frames and a bounded wait for the
//!   server's close and EOF (so TIME_WAIT lands on the server, not on our ephemeral ports).
//! - **Reactor** ([`reactor`]): one io_uring per thread (SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN when available),
//!   pinned to a CPU of the process's affinity mask. Per connection: one multishot `recv` armed on a shared ring of
//!   provided buffers (512 x 4 KiB, 16 KiB for large messages; buffers go back to the kernel right after each
//!   completion is decoded, so idle connections hold no receive buffer) and at most one `send` in flight; everything
//!   that became sendable during a loop turn goes out in that one send. All SQEs of a turn are submitted by the same
//!   `io_uring_enter` that waits for the next completions (with a timeout for the rate schedule and the clock). Slots
//!   are never reused, so `user_data` is index + op, no generations. A multishot that ends for lack of buffers
//!   (`ENOBUFS`) is re-armed after the batch has returned its buffers.
//! - **Multishot vs plain recv (measured).** `LOADTEST_RECV=plain` switches to one plain `recv` per connection into its
//!   own buffer (armed with `IORING_RECVSEND_POLL_FIRST`). Against fastwebsockets, interleaved, 3 s each: 100 x 20 B
//!   client CPU 10.3/10.5 µs/msg multishot vs 12.8/11.7 plain; 10k x 20 B 15.8/12.8 vs 14.7/13.9 (noise ±15% on this
//!   shared machine), client RSS at 10k connections 13.8 MiB vs 17.3 MiB. Multishot is the default: never worse
//!   beyond noise, less memory. A profile shows ~95% of the client's CPU in the kernel's loopback TCP path
//!   (`tcp_sendmsg` alone ~60%, most of it the server socket's receive processing done in our context), ~3% in user
//!   space, ~10 messages per `io_uring_enter`; at 10k connections 94% kernel, 5.5% user space (loadtest + libc).
//!   So the client's cost per message is the loopback TCP floor that every server pays too: measured on this shared
//!   2-core machine it is 0.8-1.1x the server's CPU per message (scripts/bench-peers.sh), not the 0.7x wanted.
//! - **Frames.** Each connection has its own random masking key (from `getrandom`) and a precomputed masked frame
//!   ([`frames::FrameTemplate`], built with `ringws::proto::write_client_frame`); a message is a memcpy of the
//!   template plus 16 masked hex digits of the connection's sequence number. Echoes are decoded by a
//!   `ringws::proto::Connection` in `Role::Client` (RFC 6455 validation, UTF-8, fragments, pings, close handshake) and
//!   every payload is compared in full against the expected sequence number and content. Measured cost of decode +
//!   verify per 20-byte echo: ~120 ns with `Connection` vs ~85 ns with a bare header parse (`decode_cost` test), i.e.
//!   ~1% of the client's per-message CPU, so the client uses the full core.
//! - **Memory per connection** (10k x 20 B echo): the `Conn` slot (280 B incl. the 96-byte protocol state), a send
//!   buffer and frame template of a few dozen bytes each and the timestamp queue; whole client RSS 13.8 MiB with
//!   10,000 connections (2 MiB of it the shared receive buffers).
//! - **Statistics** ([`stats`], the summary in [`report`]): per-thread counters and hdrhistograms (µs), merged at the end; a live total per
//!   thread is published with relaxed stores for the progress line. Latency: echo from the actual send, rate from the
//!   intended send time (corrected for coordinated omission), pubsub from the intended time embedded in the text.
//!   CPU: getrusage of this process and /proc/PID/stat of `--server-pid`, both sampled at the window's edges.

pub mod cli;
pub mod frames;
pub mod plan;
pub mod reactor;
pub mod report;
pub mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cli::{Args, Mode};
use plan::{now_ns, Plan};
use report::{ErrorCount, Summary};
use stats::{percentiles, rate, ErrKind, Live, ThreadStats};

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Fail early, with the driver's advice, where io_uring is not available. The probe ring lives on a short-lived
/// thread of its own: a ring released on this thread would later interrupt its blocking calls (see `ringws::uring`).
fn check_io_uring() -> Result<(), String> {
    std::thread::spawn(|| {
        ringws::uring::Ring::new(8, 8)
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("io_uring probe panicked".into()))
    .map_err(|advice| format!("io_uring is not available: {advice}"))
}

/// Exit status: 0 ok, 1 mismatches or nothing received, 2 setup error.
pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e}");
            2
        }
    }
}

fn run_inner(args: Args) -> Result<i32, String> {
    let plan = Arc::new(Plan::from_args(&args)?);
    let total = plan.total_conns;
    let threads = plan.threads;
    let inflight = plan.inflight;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    check_io_uring()?;
    // SAFETY: ignoring SIGPIPE is process-wide and harmless (sends also use MSG_NOSIGNAL).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

    let live: Arc<Vec<Live>> = Arc::new((0..threads).map(|_| Live::default()).collect());
    let sync = Arc::new(plan::Sync::default());
    let cores = if args.no_pin {
        Vec::new()
    } else {
        core_affinity::get_core_ids().unwrap_or_default()
    };
    let mut handles = Vec::new();
    for t in 0..threads {
        let subs = args.conns / threads + usize::from(t < args.conns % threads);
        let pubs = args.publishers() / threads + usize::from(t < args.publishers() % threads);
        let plan = plan.clone();
        let live = live.clone();
        let sync = sync.clone();
        let core = if cores.is_empty() {
            None
        } else {
            Some(cores[t % cores.len()])
        };
        let h = std::thread::Builder::new()
            .name(format!("loadtest-{t}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                let r = reactor::run_thread(plan, subs, pubs, &live[t], &sync);
                if r.is_err() {
                    // Never leave the others waiting for us.
                    sync.ready.fetch_add(1, Ordering::Relaxed);
                }
                r
            })
            .map_err(|e| format!("spawn: {e}"))?;
        handles.push(h);
    }

    let progress = !args.quiet;
    let t_begin = now_ns();
    let mut last = stats::LiveTotals::default();
    let mut last_t = t_begin;
    let mut next_print = t_begin + 1_000_000_000;
    let print = |phase: &str, now: u64, last: &mut stats::LiveTotals, last_t: &mut u64| {
        let cur = stats::sum_live(&live);
        let dt = (now - *last_t) as f64 / 1e9;
        let msgs = (cur.received - last.received) as f64 / dt.max(1e-9);
        let mb = (cur.bytes_received - last.bytes_received) as f64 / dt.max(1e-9) / 1e6;
        eprintln!(
            "[{:6.1}s] {:6} open {:6}/{} connected {:5} failed | {:>10.0} msg/s {:8.2} MB/s | errors {}",
            (now - t_begin) as f64 / 1e9,
            phase,
            cur.open,
            total,
            cur.failed,
            msgs,
            mb,
            cur.errors,
        );
        *last = cur;
        *last_t = now;
    };

    // Ramp-up.
    while sync.ready.load(Ordering::Relaxed) < threads {
        std::thread::sleep(Duration::from_millis(5));
        if INTERRUPTED.load(Ordering::Relaxed) {
            eprintln!("loadtest: interrupted during ramp-up");
            std::process::exit(130);
        }
        let now = now_ns();
        if progress && now >= next_print {
            print("ramp", now, &mut last, &mut last_t);
            next_print += 1_000_000_000;
        }
    }
    let t0 = now_ns();
    sync.start_ns.store(t0, Ordering::Release);
    let warm_end = t0 + args.warmup.as_nanos() as u64;
    let end = warm_end + args.duration.as_nanos() as u64;
    if progress {
        let cur = stats::sum_live(&live);
        eprintln!(
            "ramp-up done in {:.2} s: {} connected, {} failed",
            (t0 - t_begin) as f64 / 1e9,
            cur.connected,
            cur.failed
        );
    }
    last = stats::sum_live(&live);
    last_t = t0;
    next_print = t0 + 1_000_000_000;

    let sleep_until = |deadline: u64,
                       phase: &str,
                       next_print: &mut u64,
                       last: &mut stats::LiveTotals,
                       last_t: &mut u64| {
        loop {
            let now = now_ns();
            if now >= deadline || INTERRUPTED.load(Ordering::Relaxed) {
                break;
            }
            if progress && now >= *next_print {
                print(phase, now, last, last_t);
                *next_print += 1_000_000_000;
            }
            let wake = if progress {
                deadline.min(*next_print)
            } else {
                deadline
            };
            let until = wake.saturating_sub(now);
            std::thread::sleep(Duration::from_nanos(until.clamp(100_000, 50_000_000)));
        }
    };
    sleep_until(warm_end, "warmup", &mut next_print, &mut last, &mut last_t);
    let cpu0 = stats::self_cpu();
    let scpu0 = args.server_pid.and_then(stats::proc_cpu);
    let w0 = now_ns();
    sleep_until(end, "run", &mut next_print, &mut last, &mut last_t);
    let cpu1 = stats::self_cpu();
    let scpu1 = args.server_pid.and_then(stats::proc_cpu);
    let w1 = now_ns();
    // Ctrl-C: end the measurement now (the reactors close their connections as at the normal end).
    let interrupted = INTERRUPTED.load(Ordering::Relaxed);
    if interrupted {
        sync.stop_ns.store(w1, Ordering::Relaxed);
        eprintln!("loadtest: interrupted; closing connections");
    }
    let server_rss = args.server_pid.and_then(stats::proc_rss_kib);
    let client_rss = stats::proc_rss_kib(std::process::id() as i32);

    let mut all = ThreadStats::default();
    let mut thread_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => all.merge(&s),
            Ok(Err(e)) => thread_err = Some(format!("reactor: {e}")),
            Err(_) => thread_err = Some("reactor thread panicked".into()),
        }
    }
    if let Some(e) = thread_err {
        return Err(e);
    }

    let wall = Duration::from_nanos(w1 - w0);
    let measured = if interrupted {
        Duration::from_nanos(w1.saturating_sub(warm_end))
    } else {
        args.duration
    };
    let client_cpu = cpu1.total().saturating_sub(cpu0.total());
    let per_msg = |cpu: Duration| {
        if all.received > 0 {
            cpu.as_secs_f64() * 1e6 / all.received as f64
        } else {
            0.0
        }
    };
    let (server_cpu_pct, server_cpu_us) = match (scpu0, scpu1) {
        (Some(a), Some(b)) => {
            let d = b.total().saturating_sub(a.total());
            (
                Some(d.as_secs_f64() / wall.as_secs_f64() * 100.0),
                Some(per_msg(d)),
            )
        }
        _ => (None, None),
    };
    let mismatches = all.errors[ErrKind::Mismatch as usize];
    let summary = Summary {
        url: args.url.clone(),
        mode: args.mode.name().into(),
        conns: args.conns,
        publishers: args.publishers(),
        size: args.size,
        threads,
        inflight,
        duration_s: measured.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        connected: all.connected,
        connect_failed: all.connect_failed,
        ramp_s: (t0 - t_begin) as f64 / 1e9,
        connect_us: percentiles(&all.connect),
        sent: all.sent,
        received: all.received,
        msgs_per_s: rate(all.received, measured),
        sent_per_s: rate(all.sent, measured),
        mb_per_s: rate(all.bytes_received, measured) / 1e6,
        latency_us: percentiles(&all.latency),
        errors: ErrKind::ALL
            .iter()
            .map(|k| ErrorCount {
                kind: k.name(),
                count: all.errors[*k as usize],
            })
            .collect(),
        errors_total: all.error_total(),
        mismatches,
        closed_clean: all.closed_clean,
        recv_enobufs: all.recv_enobufs,
        client_cpu_pct: client_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
        client_cpu_us_per_msg: per_msg(client_cpu),
        fanout: (args.mode == Mode::Pubsub && all.sent > 0)
            .then(|| all.received as f64 / all.sent as f64),
        client_rss_kib: client_rss,
        server_pid: args.server_pid,
        server_cpu_pct,
        server_cpu_us_per_msg: server_cpu_us,
        server_rss_kib: server_rss,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serializes")
        );
    } else {
        print!("{}", summary.print_text());
    }
    if mismatches > 0 {
        eprintln!("loadtest: {mismatches} mismatched echoes");
        return Ok(1);
    }
    if all.received == 0 {
        eprintln!("loadtest: no message was received in the measurement window");
        return Ok(1);
    }
    Ok(0)
}
