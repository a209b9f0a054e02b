//! The run's phases as the main thread drives them: prepare the process (signals, io_uring check), start one
//! reactor thread per `--threads`, wait until every reactor has finished its ramp-up, start the clock (warm-up, then
//! the measured window, with CPU time sampled at its edges), end early on Ctrl-C, and join the reactors (which close
//! their connections on their own once the window is over). What happens inside a reactor in each phase is in
//! `reactor/phases.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cli::Args;
use crate::plan::{now_ns, Plan, Sync};
use crate::progress::Progress;
use crate::reactor;
use crate::stats::{self, CpuTime, Live, ThreadStats};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
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

/// Catch Ctrl-C (it ends the measurement early), check io_uring, and ignore SIGPIPE.
pub fn prepare_process() -> Result<(), String> {
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
    Ok(())
}

/// What the main thread measured, for the report.
#[derive(Debug)]
pub struct Measurement {
    /// Every reactor's statistics, merged.
    pub stats: ThreadStats,
    /// From the start of the run to the end of the last reactor's ramp-up, ns.
    pub ramp_ns: u64,
    /// The measured window as timed by the wall clock (the base of the CPU percentages).
    pub wall: Duration,
    /// The measured window as planned (`--duration`), or up to Ctrl-C.
    pub measured: Duration,
    /// This process's CPU time during the window.
    pub client_cpu: Duration,
    /// Each `--server-pid`'s CPU time during the window, if it could be read at both edges (in `--server-pid` order).
    pub server_cpu: Vec<Option<Duration>>,
    /// VmRSS at the end of the window, with every connection still open.
    pub client_rss_kib: Option<u64>,
    pub server_rss_kib: Vec<Option<u64>>,
}

/// CPU time of this process and of each `--server-pid`, read at one edge of the window.
struct CpuSample {
    client: CpuTime,
    server: Vec<Option<CpuTime>>,
    at: u64,
}

impl CpuSample {
    fn take(server_pids: &[i32]) -> Self {
        let client = stats::self_cpu();
        let server = server_pids.iter().map(|&p| stats::proc_cpu(p)).collect();
        CpuSample {
            client,
            server,
            at: now_ns(),
        }
    }
}

/// Drive a whole run from the main thread; `Err` is a setup or reactor failure.
pub fn drive(args: &Args, plan: &Arc<Plan>) -> Result<Measurement, String> {
    let live: Arc<Vec<Live>> = Arc::new((0..plan.threads).map(|_| Live::default()).collect());
    let sync = Arc::new(Sync::default());
    let handles = spawn_reactors(args, plan, &live, &sync)?;

    let t_begin = now_ns();
    let mut progress = Progress::new(&live, plan.total_conns, !args.quiet, t_begin);
    wait_for_ramp_up(&sync, plan.threads, &mut progress);

    let t0 = now_ns();
    sync.start_ns.store(t0, Ordering::Release);
    let warm_end = t0 + args.warmup.as_nanos() as u64;
    let end = warm_end + args.duration.as_nanos() as u64;
    progress.ramp_done(t0);

    sleep_until(warm_end, "warmup", &mut progress);
    let before = CpuSample::take(&args.server_pid);
    sleep_until(end, "run", &mut progress);
    let after = CpuSample::take(&args.server_pid);
    let w1 = after.at;
    // Ctrl-C: end the measurement now (the reactors close their connections as at the normal end).
    let interrupted = interrupted();
    if interrupted {
        sync.stop_ns.store(w1, Ordering::Relaxed);
        eprintln!("loadtest: interrupted; closing connections");
    }
    let server_rss_kib = args
        .server_pid
        .iter()
        .map(|&p| stats::proc_rss_kib(p))
        .collect();
    let client_rss_kib = stats::proc_rss_kib(std::process::id() as i32);

    let stats = join_reactors(handles)?;
    Ok(Measurement {
        stats,
        ramp_ns: t0 - t_begin,
        wall: Duration::from_nanos(w1 - before.at),
        measured: if interrupted {
            Duration::from_nanos(w1.saturating_sub(warm_end))
        } else {
            args.duration
        },
        client_cpu: after.client.total().saturating_sub(before.client.total()),
        server_cpu: before
            .server
            .iter()
            .zip(&after.server)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Some(b.total().saturating_sub(a.total())),
                _ => None,
            })
            .collect(),
        client_rss_kib,
        server_rss_kib,
    })
}

/// Start the reactor threads, each with its share of the subscribers and publishers, pinned round robin to the
/// CPUs of the process's affinity mask unless `--no-pin`.
fn spawn_reactors(
    args: &Args,
    plan: &Arc<Plan>,
    live: &Arc<Vec<Live>>,
    sync: &Arc<Sync>,
) -> Result<Vec<JoinHandle<std::io::Result<ThreadStats>>>, String> {
    let threads = plan.threads;
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
    Ok(handles)
}

/// Ramp-up: wait until every reactor has opened its connections (Ctrl-C here exits at once, status 130).
fn wait_for_ramp_up(sync: &Sync, threads: usize, progress: &mut Progress<'_>) {
    while sync.ready.load(Ordering::Relaxed) < threads {
        std::thread::sleep(Duration::from_millis(5));
        if interrupted() {
            eprintln!("loadtest: interrupted during ramp-up");
            std::process::exit(130);
        }
        progress.tick("ramp", now_ns());
    }
}

/// Sleep until `deadline` (or Ctrl-C), printing the progress line on time.
fn sleep_until(deadline: u64, phase: &str, progress: &mut Progress<'_>) {
    loop {
        let now = now_ns();
        if now >= deadline || interrupted() {
            break;
        }
        progress.tick(phase, now);
        let until = progress.wake(deadline).saturating_sub(now);
        std::thread::sleep(Duration::from_nanos(until.clamp(100_000, 50_000_000)));
    }
}

/// Wait for every reactor and merge their statistics; any reactor's failure fails the run.
fn join_reactors(
    handles: Vec<JoinHandle<std::io::Result<ThreadStats>>>,
) -> Result<ThreadStats, String> {
    let mut all = ThreadStats::default();
    let mut thread_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => all.merge(&s),
            Ok(Err(e)) => thread_err = Some(format!("reactor: {e}")),
            Err(_) => thread_err = Some("reactor thread panicked".into()),
        }
    }
    match thread_err {
        Some(e) => Err(e),
        None => Ok(all),
    }
}
