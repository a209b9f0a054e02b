//! Starting and stopping a server: bind one `SO_REUSEPORT` listener per worker, spawn the pinned workers, wait
//! until each has its ring, and join them after a graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::config::Config;
use super::error::StartError;
use super::handler::{Handler, ServerContext};
use super::pubsub::Hub;
use super::shared::Shared;
use super::stats::WorkerStats;
use super::worker;
use crate::door::Door;
use crate::tls::{TlsConfigStore, TlsOptions};

/// A server: a config and a handler. `start` binds and spawns the workers.
pub struct Server<H: Handler> {
    config: Config,
    door: Door,
    handler: Arc<H>,
    tls: Option<Arc<TlsConfigStore>>,
}

impl<H: Handler> Server<H> {
    /// Validate `config`, load the TLS certificate if it has one, and pair it with `handler` (nothing is bound
    /// until `start`).
    pub fn new(config: Config, handler: H) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        // Loads the JWT key (a bad key is a config error, reported before anything is bound).
        let door = Door::new(&config.door).map_err(|problem| {
            StartError::Config(super::config::ConfigError {
                field: "door",
                problem,
            })
        })?;
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(
                TlsConfigStore::open(files.clone(), TlsOptions::default())
                    .map_err(StartError::Tls)?,
            )),
            None => None,
        };
        Ok(Server {
            config,
            door,
            handler: Arc::new(handler),
            tls,
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
        let (hub, receivers) = Hub::new(
            cfg.workers,
            cfg.cross_worker_queue,
            cfg.broker.as_ref(),
            cfg.compression != crate::deflate::Compression::Off,
        )
        .map_err(StartError::Io)?;
        let shared = Arc::new(Shared {
            stats: (0..cfg.workers).map(|_| WorkerStats::default()).collect(),
            config: cfg,
            door: self.door,
            stop: AtomicBool::new(false),
            hub,
            started: Instant::now(),
            tls: self.tls,
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
    /// The TLS certificate store when the server speaks TLS: `reload()` re-reads the certificate and key files
    /// (new handshakes get the new certificate, open connections continue; a bad file keeps the old one and says
    /// why).
    pub fn tls(&self) -> Option<&TlsConfigStore> {
        self.shared.tls.as_deref()
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
