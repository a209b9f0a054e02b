//! The binary's command line: every option also as an environment variable, every default read from
//! [`Config::default`] (the one place defaults are written). Compression's default there is `shared`, so the demo
//! page's browser connections negotiate permessage-deflate; the dedicated window's default is
//! [`ringws::deflate::DEFAULT_WINDOW_BITS`] (dedicated is not the default, so `Config` holds no window until chosen).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ringws::broker::BrokerConfig;
use ringws::door::{JwtConfig, JwtKey, OriginPolicy};
use ringws::server::{Compression, Config};
use ringws::tls::TlsFiles;

fn d() -> Config {
    Config::default()
}

fn mode_name(c: Compression) -> &'static str {
    match c {
        Compression::Off => "off",
        Compression::Shared => "shared",
        Compression::Dedicated { .. } => "dedicated",
    }
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
    /// Needs the `redis` cargo feature (on by default).
    #[arg(long, env = "RINGWS_REDIS")]
    redis: Option<String>,
    /// Web pages allowed to open a WebSocket, comma-separated: `self` (the page's own origin), `*` (any page), or
    /// origins like `https://app.example,http://localhost:3000`. Clients that send no Origin are always allowed.
    #[arg(long, env = "RINGWS_ALLOWED_ORIGINS", default_value_t = d().door.allowed_origins.to_string())]
    allowed_origins: String,
    /// Require a JWT at upgrade, HS256 with this secret. Prefer the environment variable: command lines are
    /// visible to other users of the machine.
    #[arg(
        long,
        env = "RINGWS_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    jwt_secret: Option<String>,
    /// Require a JWT at upgrade, RS256 (RSA key) or ES256 (EC P-256 key) with the public key in this PEM file.
    #[arg(long, env = "RINGWS_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Most concurrent connections from one client address (IPv6: one /64); more get 429 (0 = no limit).
    #[arg(long, env = "RINGWS_MAX_CONNECTIONS_PER_IP", default_value_t = d().door.per_ip.max_connections)]
    max_connections_per_ip: u32,
    /// New connections per second from one client address, a token bucket; more get 429 (0 = no limit).
    #[arg(long, env = "RINGWS_CONNECTION_RATE_PER_IP", default_value_t = d().door.per_ip.rate_per_second)]
    connection_rate_per_ip: f64,
    /// New connections one idle address may open at once (0 = the rate, rounded up).
    #[arg(long, env = "RINGWS_CONNECTION_BURST_PER_IP", default_value_t = d().door.per_ip.burst)]
    connection_burst_per_ip: u32,
    /// permessage-deflate: `off`; `shared` (no context takeover: a connection holds no compression state); or
    /// `dedicated` (context takeover, better ratios: 2^W bytes of history per direction and connection, see
    /// --compression-window).
    #[arg(
        long,
        env = "RINGWS_COMPRESSION",
        value_parser = ["off", "shared", "dedicated"],
        default_value_t = mode_name(d().compression).to_string()
    )]
    compression: String,
    /// The LZ77 window of `--compression dedicated`, in bits (9..=15).
    #[arg(
        long,
        env = "RINGWS_COMPRESSION_WINDOW",
        default_value_t = ringws::deflate::DEFAULT_WINDOW_BITS,
        value_parser = clap::value_parser!(u8).range(9..=15)
    )]
    compression_window: u8,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, env = "RINGWS_COMPRESSION_THRESHOLD", default_value_t = d().compression_threshold)]
    compression_threshold: usize,
    /// Coalesce: gather what arrives for up to this long per wake-up before answering, for fewer wake-ups and
    /// fuller packets at up to this much latency (e.g. 250us, 1ms; at most 1s; 0 = answer at once; Linux 6.12+).
    #[arg(long, env = "RINGWS_FLUSH_DELAY", default_value = "0", value_parser = parse_delay)]
    flush_delay: Duration,
}

impl Args {
    /// The server config these options describe (reads the JWT public key file, if any).
    pub fn config(&self) -> Result<Config, String> {
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
        if self.redis.is_some() && !cfg!(feature = "redis") {
            return Err("--redis: this ringws was built without Redis support (its `redis` cargo feature, on by \
                        default, was turned off)"
                .into());
        }
        cfg.broker = self.redis.as_ref().map(|url| {
            let mut b = BrokerConfig::new(url.as_str());
            b.node_id = Some(random_node_id());
            b
        });
        cfg.door.allowed_origins = OriginPolicy::parse(&self.allowed_origins)
            .map_err(|e| format!("--allowed-origins: {e}"))?;
        let key = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(s), _) => Some(JwtKey::Secret(s.clone().into_bytes())),
            (None, Some(path)) => {
                Some(JwtKey::PublicKeyPem(std::fs::read(path).map_err(|e| {
                    format!("--jwt-public-key {}: {e}", path.display())
                })?))
            }
            (None, None) => None,
        };
        cfg.door.jwt = key.map(JwtConfig::new);
        cfg.door.per_ip.max_connections = self.max_connections_per_ip;
        cfg.door.per_ip.rate_per_second = self.connection_rate_per_ip;
        cfg.door.per_ip.burst = self.connection_burst_per_ip;
        cfg.compression = match self.compression.as_str() {
            "off" => Compression::Off,
            "dedicated" => Compression::Dedicated {
                window_bits: self.compression_window,
            },
            _ => Compression::Shared,
        };
        cfg.compression_threshold = self.compression_threshold;
        cfg.flush_delay = self.flush_delay;
        Ok(cfg)
    }
}

/// A duration as `0`, or a number with `us`, `ms` or `s` (`500us`, `2ms`, `0.5ms`), at most 1 s.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => return Err(format!("`{s}`: give a unit: us, ms or s (e.g. 2ms)")),
    };
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (us, ms or s)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: `{num}` is not a number"))?;
    if !(0.0..=1.0).contains(&(v * scale)) {
        return Err(format!("`{s}`: must be between 0 and 1s"));
    }
    Ok(Duration::from_secs_f64(v * scale))
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

#[cfg(test)]
mod delay_tests {
    use super::*;

    #[test]
    fn flush_delays_parse_with_units_and_bad_ones_say_why() {
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_delay("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_delay("1s"), Ok(Duration::from_secs(1)));
        for bad in ["5", "2h", "xms", "-1ms", "2s", ""] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }
}
