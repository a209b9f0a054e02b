//! `ringws`: the demo server. `cargo run --release` and open http://127.0.0.1:1338/.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringws::app::DemoApp;
use ringws::server::{Config, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A WebSocket server on io_uring: demo page at /, echo at /echo, chat at /chat, /healthz, /stats, /metrics.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "RINGWS_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, short, env = "RINGWS_PORT", default_value_t = 1338)]
    port: u16,
    /// Worker threads, one pinned per core [default: all cores].
    #[arg(long, env = "RINGWS_WORKERS")]
    workers: Option<usize>,
    /// Maximum WebSocket connections per worker (more get 503).
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Largest message in bytes (larger: close 1009).
    #[arg(long, env = "RINGWS_MAX_MESSAGE", default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Outbound bytes a connection may have queued.
    #[arg(long, env = "RINGWS_MAX_BACKPRESSURE", default_value_t = 1 << 20)]
    max_backpressure: usize,
    /// Seconds of silence that close a connection (1001); a ping goes out at half of it (0 = off).
    #[arg(long, env = "RINGWS_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds allowed for the HTTP request head to arrive.
    #[arg(long, env = "RINGWS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let args = Args::parse();
    let mut cfg = Config::default();
    cfg.bind = SocketAddr::new(args.bind, args.port);
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    cfg.pin_workers = !args.no_pin;
    cfg.max_connections_per_worker = args.max_connections;
    cfg.max_message_size = args.max_message_size;
    cfg.max_frame_size = args.max_message_size;
    cfg.max_backpressure = args.max_backpressure;
    cfg.idle_timeout = Duration::from_secs(args.idle_timeout);
    cfg.handshake_timeout = Duration::from_secs(args.handshake_timeout);

    // Block the shutdown signals before any worker starts (threads inherit the mask); this thread waits for them.
    let signals = block_signals();
    let server = match Server::new(cfg.clone(), DemoApp::new()).and_then(|s| s.start()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringws: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = server.local_addr();
    tracing::info!(
        "ringws listening: open http://{addr}/ (echo ws://{addr}/echo, chat ws://{addr}/chat) | workers={} \
         max_message={}B max_backpressure={}B max_conns/worker={} idle_timeout={}s handshake_timeout={}s",
        cfg.workers,
        cfg.max_message_size,
        cfg.max_backpressure,
        cfg.max_connections_per_worker,
        cfg.idle_timeout.as_secs(),
        cfg.handshake_timeout.as_secs()
    );
    let sig = wait_signal(&signals);
    tracing::info!(
        "signal {sig}: closing connections (1001), draining for up to {:?}",
        cfg.drain_timeout
    );
    server.shutdown();
    match server.join() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringws: worker failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set, then pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads the set and writes the signal number into a live local.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
