//! `ringws`: the demo server. `cargo run --release` and open http://127.0.0.1:1338/.
//!
//! - `cli.rs`: options (defaults from `Config`); `app.rs`: the demo application (page, echo, chat, endpoints).

mod app;
mod cli;

/// Every file under `static/`, embedded at build time (the page works from any directory).
mod assets {
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}

use std::process::ExitCode;

use app::DemoApp;
use clap::Parser;
use ringws::server::{Server, StartError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `RUST_LOG`: a level and/or `target=level` pairs (e.g. `debug` or `info,ringws::tls=debug`); default `info`.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .with(filter)
        .init();
    let cfg = match cli::Args::parse().config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringws: {e}");
            return ExitCode::from(2);
        }
    };

    // Block the shutdown signals (and SIGHUP, the TLS reload) before any worker starts (threads inherit the mask); this thread waits for them.
    let signals = block_signals();
    let node = cfg
        .broker
        .as_ref()
        .and_then(|b| b.node_id)
        .map(|id| format!("{:06x}", id & 0xff_ffff));
    let mut app = DemoApp::new(assets::FILES);
    app.node = node.clone();
    let server = match Server::new(cfg.clone(), app).and_then(|s| s.start()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringws: {e}");
            // 3: the TLS certificate or key cannot be used (the message names the file); 2: anything else.
            return ExitCode::from(if matches!(e, StartError::Tls(_)) {
                3
            } else {
                2
            });
        }
    };
    let addr = server.local_addr();
    let (http, ws) = if cfg.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!(
        "ringws listening: open {http}://{addr}/ (echo {ws}://{addr}/echo, chat {ws}://{addr}/chat) | workers={} \
         max_message={}B max_backpressure={}B max_conns/worker={} idle_timeout={}s handshake_timeout={}s",
        cfg.workers,
        cfg.max_message_size,
        cfg.max_backpressure,
        cfg.max_connections_per_worker,
        cfg.idle_timeout.as_secs(),
        cfg.handshake_timeout.as_secs()
    );
    if let (Some(b), Some(node)) = (&cfg.broker, &node) {
        tracing::info!(
            "rooms span nodes through Redis at {} (this node: {node})",
            redact(&b.url)
        );
    }
    let per_ip = &cfg.door.per_ip;
    tracing::info!(
        "door: allowed origins={} tokens={} per-IP connections={} rate={}/s",
        cfg.door.allowed_origins,
        match &cfg.door.jwt {
            None => "off",
            Some(j) if matches!(j.key, ringws::door::JwtKey::Secret(_)) => "HS256",
            Some(_) => "public key",
        },
        if per_ip.max_connections == 0 {
            "off".to_string()
        } else {
            per_ip.max_connections.to_string()
        },
        per_ip.rate_per_second
    );
    let sig = loop {
        let sig = wait_signal(&signals);
        if sig != libc::SIGHUP {
            break sig;
        }
        match server.tls() {
            Some(store) => match store.reload() {
                Ok(()) => {
                    tracing::info!("SIGHUP: TLS certificate reloaded (new handshakes use it)")
                }
                Err(e) => tracing::error!(
                    "SIGHUP: TLS reload failed, keeping the current certificate: {e}"
                ),
            },
            None => tracing::info!("SIGHUP: nothing to reload (no TLS)"),
        }
    };
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
        libc::sigaddset(&mut set, libc::SIGHUP);
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

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
