//! Command line, target URL, and the system limits checked before connecting.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Closed loop: each connection keeps `--inflight` messages outstanding; every echo is checked.
    Echo,
    /// Open loop at a fixed total `--rate` msg/s; latency from the intended send time (coordinated omission corrected).
    Rate,
    /// Send as fast as the sockets take it (up to `--inflight` unanswered per connection, default 64); the server's
    /// throughput is the echo count. Echoes are still checked; no latency.
    Flood,
    /// `--conns` subscribers + `--publishers` publishers on a topic route (e.g. ringws `/chat`); publishers send at
    /// `--rate` total; delivery rate and per-delivery latency from a timestamp embedded in the text.
    Pubsub,
    /// Handshake rate: each of `--conns` blocking clients opens a connection (TCP, TLS for wss://, WebSocket
    /// upgrade), closes it and starts over; reports handshakes/s and the server's CPU per handshake.
    Handshake,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Rate => "rate",
            Mode::Flood => "flood",
            Mode::Pubsub => "pubsub",
            Mode::Handshake => "handshake",
        }
    }
}

/// A WebSocket load client on io_uring.
///
/// Opens all connections first (ramp-up, bounded by --connect-rate and --connect-concurrency), then runs the chosen
/// mode for --warmup (not counted) plus --duration, prints one progress line per second to stderr and a summary at the
/// end (stdout; JSON with --json), sends close frames and exits. Every echoed payload is checked against what this
/// connection sent (sequence number + content). Ctrl-C ends the measurement early (summary still printed).
/// Exit status: 0 ok, 1 mismatches or nothing received (e.g. every wss handshake failed: error `tls`), 2 setup error,
/// 130 interrupted during ramp-up.
/// Environment: LOADTEST_RECV=plain uses one plain recv per connection instead of multishot + provided buffers.
///
/// Example: taskset -c 1 loadtest --url ws://127.0.0.1:1338/echo --conns 10000 --size 20 --duration 10s --server-pid $PID
#[derive(Parser, Debug, Clone)]
#[command(name = "loadtest", version, verbatim_doc_comment)]
pub struct Args {
    /// Target: ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (wss needs --ca-file or --insecure). HOST is an IP address
    /// or localhost; for wss the server's certificate must name it. Repeat it to spread the connections round robin
    /// over several servers (e.g. nodes sharing topics through Redis); in pubsub mode the publishers all connect to
    /// the first.
    #[arg(long, default_value = "ws://127.0.0.1:1338/echo")]
    pub url: Vec<String>,

    /// Load mode.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,

    /// Connections (in pubsub mode: subscribers; publishers come on top).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub conns: usize,

    /// Payload size in bytes (echo/rate/flood: exact size; pubsub: size of the text inserted into --pub-template).
    #[arg(long, short = 's', default_value_t = 20)]
    pub size: usize,

    /// Measured duration (e.g. 10s, 500ms, 1m).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Warm-up after the ramp-up, excluded from every statistic.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Reactor threads; each is pinned to one CPU of the process's affinity mask (use taskset to choose them).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,

    /// Messages outstanding per connection (echo: default 1; flood: default 64; rate: maximum backlog per connection,
    /// default 10000).
    #[arg(long)]
    pub inflight: Option<usize>,

    /// Total messages per second (rate mode; pubsub: total publish rate, default 1000).
    #[arg(long)]
    pub rate: Option<f64>,

    /// Send binary frames instead of text.
    #[arg(long)]
    pub binary: bool,

    /// Maximum new connections per second during ramp-up (0 = unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,

    /// Maximum connections being opened at once per thread (avoids overflowing the server's accept queue).
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Time allowed per connection for TCP connect + WebSocket handshake (failures are counted, never retried).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// After --duration: how long to wait for the server's close frames before closing the sockets.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// Server process id: report its CPU% and CPU-µs per message (from /proc/PID/stat) and its RSS. Repeat it for
    /// several processes (e.g. two nodes and redis-server): each is reported (`servers`), the first also in the
    /// `server_*` fields.
    #[arg(long)]
    pub server_pid: Vec<i32>,

    /// Publishers (pubsub mode).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,

    /// Text every pubsub connection (subscribers and publishers) sends after the handshake, to join the topic.
    /// Empty: send nothing.
    #[arg(long, default_value = r#"{"type":"join","room":"bench"}"#)]
    pub sub_msg: String,

    /// Publish message; `{payload}` is replaced by the payload, which carries the send timestamp.
    #[arg(
        long,
        default_value = r#"{"type":"say","room":"bench","text":"{payload}"}"#
    )]
    pub pub_template: String,

    /// Write the summary as JSON to stdout (the progress line still goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// No progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Do not pin reactor threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,

    /// wss://: trust the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,

    /// wss://: accept any server certificate (handshake signatures are still checked).
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,

    /// wss://: resume TLS sessions with the tickets the server sends (handshake mode: measures resumed handshakes).
    #[arg(long)]
    pub resume: bool,

    /// Allow a non-loopback target (by default only 127.0.0.0/8 and ::1 are accepted).
    #[arg(long)]
    pub allow_remote: bool,

    /// Echo/rate/flood payload: JSON-like text records (pseudo-random ids, users, events, values from a small
    /// vocabulary) instead of the repeated alphabet, for realistic compression ratios. Still fully checked.
    #[arg(long)]
    pub json_payload: bool,

    /// Offer permessage-deflate (`client_max_window_bits`), compress every message sent, inflate and check every
    /// echo, report the negotiated parameters and the ratios (a server that declines: "not negotiated").
    #[arg(long)]
    pub deflate: bool,

    /// With --deflate: also offer server_no_context_takeover and client_no_context_takeover (implies --deflate).
    #[arg(long)]
    pub deflate_no_context_takeover: bool,

    /// With --deflate: offer server_max_window_bits=N, 8..=15 (implies --deflate).
    #[arg(long, value_name = "N")]
    pub deflate_server_window_bits: Option<u8>,

    /// With --deflate: offer client_max_window_bits=N, 8..=15, instead of the bare parameter (implies --deflate).
    #[arg(long, value_name = "N")]
    pub deflate_client_window_bits: Option<u8>,
}

impl Args {
    pub fn inflight(&self) -> usize {
        self.inflight.unwrap_or(match self.mode {
            Mode::Echo => 1,
            Mode::Flood => 64,
            Mode::Rate => 10_000,
            Mode::Pubsub | Mode::Handshake => 1,
        })
    }
    pub fn rate(&self) -> f64 {
        self.rate.unwrap_or(match self.mode {
            Mode::Pubsub => 1000.0,
            _ => 0.0,
        })
    }
    pub fn publishers(&self) -> usize {
        if self.mode == Mode::Pubsub {
            self.publishers
        } else {
            0
        }
    }
    /// All connections opened.
    pub fn total_conns(&self) -> usize {
        self.conns + self.publishers()
    }
}

/// `10s`, `500ms`, `1.5s`, `2m`, `100us`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use s, ms, us, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A parsed ws:// URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    pub path: String,
    /// wss://
    pub tls: bool,
}

pub fn parse_url(url: &str, allow_remote: bool) -> Result<Target, String> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true)
    } else {
        return Err(format!("URL must start with ws:// or wss:// : {url:?}"));
    };
    let default_port = if tls { 443 } else { 80 };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    let with_port = if hostport.starts_with('[') {
        if hostport.contains("]:") {
            hostport.to_string()
        } else {
            format!("{hostport}:{default_port}")
        }
    } else if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {hostport:?}"))?;
    if !allow_remote && !is_loopback(addr.ip()) {
        return Err(format!(
            "{} is not a loopback address; pass --allow-remote to load a remote server",
            addr.ip()
        ));
    }
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
        tls,
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback(),
        IpAddr::V6(v) => v.is_loopback() || v.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// Raise RLIMIT_NOFILE to its hard limit and check that `conns` sockets fit; check the ephemeral port range.
pub fn check_limits(conns: usize, threads: usize) -> Result<(), String> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    let need = conns as u64 + 32 + 4 * threads as u64;
    if rl.rlim_cur < need {
        return Err(format!(
            "file descriptor limit too small: {} connections need about {need} fds, RLIMIT_NOFILE is {} \
             (hard limit {}); raise it (ulimit -Hn / limits.conf) or use fewer --conns",
            conns, rl.rlim_cur, rl.rlim_max
        ));
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let v: Vec<u64> = s
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() == 2 && v[1] >= v[0] {
            let ports = v[1] - v[0] + 1;
            if (conns as u64) > ports {
                return Err(format!(
                    "ephemeral port range too small: {conns} connections to one address need {conns} local ports, \
                     /proc/sys/net/ipv4/ip_local_port_range allows {ports} ({}-{}); widen it or use fewer --conns",
                    v[0], v[1]
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:1338/echo", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:1338".parse().unwrap());
        assert_eq!(t.path, "/echo");
        assert_eq!(t.host, "127.0.0.1:1338");
        let t = parse_url("ws://127.0.0.1:9", false).unwrap();
        assert_eq!(t.path, "/");
        assert!(parse_url("ws://[::1]:80/x", false).is_ok());
        let t = parse_url("wss://127.0.0.1/", false).unwrap();
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        assert!(parse_url("http://127.0.0.1/", false).is_err());
        assert!(parse_url("ws://10.1.2.3:80/", false).is_err());
        assert!(parse_url("ws://10.1.2.3:80/", true).is_ok());
    }

    #[test]
    fn limits_ok_for_small() {
        check_limits(10, 1).unwrap();
        assert!(check_limits(100_000_000, 1).is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let a = Args::parse_from(["loadtest", "--mode", "flood", "--conns", "5"]);
        assert_eq!(a.inflight(), 64);
        assert_eq!(a.total_conns(), 5);
        assert_eq!(a.url, ["ws://127.0.0.1:1338/echo"]);
        assert!(a.server_pid.is_empty());
        let a = Args::parse_from([
            "loadtest",
            "--url",
            "ws://127.0.0.1:1/a",
            "--url",
            "ws://127.0.0.1:2/b",
            "--server-pid",
            "7",
            "--server-pid",
            "8",
        ]);
        assert_eq!(a.url, ["ws://127.0.0.1:1/a", "ws://127.0.0.1:2/b"]);
        assert_eq!(a.server_pid, [7, 8]);
    }
}
