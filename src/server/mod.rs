//! The thread-per-core io_uring runtime, the handler API, pub/sub and the HTTP side.
//!
//! - [`config`]: the one config struct with limits and documented defaults.
//! - [`handler`]: the application API (`Handler`, `WebSocket`, `Message`, `Upgrade`, `Response`).
//! - `worker`: one pinned thread per core: its ring, connection slab, buffer ring, listener, timers, batching.
//! - `outbound`: a connection's bounded outbound queue (receive buffers: [`crate::bufring`]).
//! - `pubsub`: topic tables and cross-worker mailboxes. `stats`: counters and the Prometheus exposition.

pub mod config;
pub mod handler;
mod outbound;
mod pubsub;
mod stats;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

pub use config::{Config, ConfigError, SlowConsumerPolicy};
pub use handler::{
    encode_frame, ConnId, Handler, Message, Response, ServerContext, StatsSnapshot, Upgrade,
    UpgradeRequest, WebSocket,
};
pub use outbound::SendStatus;

use pubsub::{Mailbox, Publish, TopicCounts};
use stats::WorkerStats;

/// State shared by all workers. Nothing here is touched on the per-message path except the mailboxes (publishes
/// crossing workers) and each worker's own stats slot (one plain store per counter per loop turn).
pub(crate) struct Shared {
    pub config: Config,
    pub stop: AtomicBool,
    pub mailboxes: Vec<Mailbox>,
    pub stats: Vec<WorkerStats>,
    pub counts: TopicCounts,
    pub started: Instant,
}

impl Shared {
    pub fn snapshot(&self) -> StatsSnapshot {
        stats::snapshot(&self.stats, self.started.elapsed().as_secs_f64())
    }
    pub fn metrics_text(&self) -> String {
        stats::prometheus(&self.stats, self.started.elapsed().as_secs_f64())
    }
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.counts.get(topic)
    }
    pub fn publish_from_outside(&self, topic: &str, msg: Message<'_>) {
        let p = Publish {
            topic: Arc::from(topic),
            frame: encode_frame(msg),
            exclude: None,
        };
        for m in &self.mailboxes {
            // A full mailbox drops this publish for that worker; the worker counts it when it next publishes.
            let _ = m.send(p.clone());
        }
    }
    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        for m in &self.mailboxes {
            m.wake();
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    /// io_uring cannot be used here; the message says why and how to fix it.
    IoUringUnavailable(String),
    Bind(SocketAddr, io::Error),
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::IoUringUnavailable(why) => write!(f, "io_uring is unavailable: {why}"),
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A server: a config and a handler. `start` binds and spawns the workers.
pub struct Server<H: Handler> {
    config: Config,
    handler: Arc<H>,
}

impl<H: Handler> Server<H> {
    pub fn new(config: Config, handler: H) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        Ok(Server {
            config,
            handler: Arc::new(handler),
        })
    }

    /// Bind one `SO_REUSEPORT` listener per worker, spawn the pinned workers; each builds its own ring (no ring is
    /// ever created on the caller's thread) and reports whether io_uring works before `start` returns.
    pub fn start(self) -> Result<ServerHandle, StartError> {
        let cfg = self.config;
        let mut listeners = Vec::with_capacity(cfg.workers);
        let mut addr = cfg.bind;
        for _ in 0..cfg.workers {
            let l = worker::listen(addr, cfg.backlog).map_err(|e| StartError::Bind(addr, e))?;
            if addr.port() == 0 {
                addr = l
                    .local_addr()
                    .map_err(StartError::Io)?
                    .as_socket()
                    .expect("inet socket");
            }
            listeners.push(l);
        }
        let mut mailboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..cfg.workers {
            let (m, rx) = Mailbox::new(cfg.cross_worker_queue).map_err(StartError::Io)?;
            mailboxes.push(m);
            receivers.push(rx);
        }
        let shared = Arc::new(Shared {
            stats: (0..cfg.workers).map(|_| WorkerStats::default()).collect(),
            config: cfg,
            stop: AtomicBool::new(false),
            mailboxes,
            counts: TopicCounts::default(),
            started: Instant::now(),
        });
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for (i, (listener, rx)) in listeners.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let handler = self.handler.clone();
            let core = if shared.config.pin_workers && !cores.is_empty() {
                Some(cores[i % cores.len()])
            } else {
                None
            };
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("ringws-w{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let w = match worker::Worker::new(i, shared, handler, listener, rx) {
                        Ok(w) => {
                            let _ = ready.send(Ok(()));
                            w
                        }
                        Err(e) => {
                            let err = io::Error::other(e.to_string());
                            let _ = ready.send(Err(e));
                            return Err(err);
                        }
                    };
                    w.run()
                })
                .map_err(StartError::Io)?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut handle = ServerHandle {
            shared,
            threads,
            addr,
        };
        for _ in 0..handle.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    handle.shutdown();
                    let _ = handle.join_inner();
                    return Err(e);
                }
                Err(_) => break,
            }
        }
        Ok(handle)
    }
}

/// A running server. Dropping it shuts the server down and waits for the workers.
pub struct ServerHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    addr: SocketAddr,
}

impl ServerHandle {
    /// The address the workers listen on (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// Start a graceful shutdown: stop accepting, close every WebSocket with 1001, wait up to `drain_timeout`.
    pub fn shutdown(&self) {
        self.shared.request_stop();
    }
    /// Wait for every worker to finish (after `shutdown`, or forever).
    pub fn join(mut self) -> io::Result<()> {
        self.join_inner()
    }
    fn join_inner(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
    /// Stats, metrics and publishing from outside the workers (the same handle HTTP handlers get).
    pub fn context(&self) -> ServerContext<'_> {
        ServerContext {
            shared: &self.shared,
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
            let _ = self.join_inner();
        }
    }
}
