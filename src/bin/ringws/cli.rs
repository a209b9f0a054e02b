//! The binary's command line: every option also as an environment variable, every default read from
//! [`Config::default`] (the one place defaults are written).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ringws::broker::BrokerConfig;
use ringws::server::Config;
use ringws::tls::TlsFiles;

fn d() -> Config {
    Config::default()
}

/// A WebSocket server on io_uring: demo page at /, echo at /echo, chat at /chat, /healthz, /stats, /metrics.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Address to bind.
    #[arg(long, env = "RINGWS_BIND", default_value_t = d().bind.ip())]
    bind: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, short, env = "RINGWS_PORT", default_value_t = d().bind.port())]
    port: u16,
    /// Worker threads, one pinned per core [default: all cores].
    #[arg(long, env = "RINGWS_WORKERS")]
    workers: Option<usize>,
    /// Maximum WebSocket connections per worker (more get 503).
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS", default_value_t = d().max_connections_per_worker)]
    max_connections: usize,
    /// Largest message in bytes (larger: close 1009).
    #[arg(long, env = "RINGWS_MAX_MESSAGE", default_value_t = d().max_message_size)]
    max_message_size: usize,
    /// Outbound bytes a connection may have queued.
    #[arg(long, env = "RINGWS_MAX_BACKPRESSURE", default_value_t = d().max_backpressure)]
    max_backpressure: usize,
    /// Seconds of silence that close a connection (1001); a ping goes out at half of it (0 = off).
    #[arg(long, env = "RINGWS_IDLE_TIMEOUT", default_value_t = d().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Seconds allowed for the HTTP request head to arrive.
    #[arg(long, env = "RINGWS_HANDSHAKE_TIMEOUT", default_value_t = d().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Do not pin workers to cores.
    #[arg(long)]
    no_pin: bool,
    /// Serve https and wss with this PEM certificate chain (leaf first); needs --tls-key. SIGHUP reloads it.
    #[arg(long, env = "RINGWS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RINGWS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS handshakes each worker runs at once (more connections are closed at accept).
    #[arg(long, env = "RINGWS_MAX_TLS_HANDSHAKES", default_value_t = d().max_tls_handshakes_per_worker)]
    max_tls_handshakes: usize,
    /// Pub/sub across nodes through Redis: redis://HOST:PORT[/DB] [default: none, topics stay in this process].
    #[arg(long, env = "RINGWS_REDIS")]
    redis: Option<String>,
}

impl Args {
    /// The server config these options describe.
    pub fn config(&self) -> Config {
        let mut cfg = Config::default();
        cfg.bind = SocketAddr::new(self.bind, self.port);
        if let Some(w) = self.workers {
            cfg.workers = w;
        }
        cfg.pin_workers = !self.no_pin;
        cfg.max_connections_per_worker = self.max_connections;
        cfg.max_message_size = self.max_message_size;
        cfg.max_frame_size = self.max_message_size;
        cfg.max_backpressure = self.max_backpressure;
        cfg.idle_timeout = Duration::from_secs(self.idle_timeout);
        cfg.handshake_timeout = Duration::from_secs(self.handshake_timeout);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            cfg.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        cfg.max_tls_handshakes_per_worker = self.max_tls_handshakes;
        cfg.broker = self.redis.as_ref().map(|url| {
            let mut b = BrokerConfig::new(url.as_str());
            b.node_id = Some(random_node_id());
            b
        });
        cfg
    }
}

/// A node id for Redis envelopes, chosen here so the demo can label its node with it.
fn random_node_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // Unique enough for a label: the pid and the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(b)
}
