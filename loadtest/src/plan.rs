//! What every thread knows about the run: the [`Plan`] (checked and built once from the command line, then read-only),
//! the [`Sync`] flags between the main thread and the reactors, and the clock they share ([`now_ns`]).

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use ringws::proto::OpCode;

use crate::cli::{self, Args, Mode, Target};
use crate::deflate;
use crate::tls::{self, TlsSetup};

/// Monotonic clock in ns (CLOCK_MONOTONIC: the same clock in every thread, so pubsub timestamps compare).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local struct (vDSO, no syscall).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Everything the threads share (read-only) about the run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// The first `--url`: every connection's, unless there are several (see [`Plan::target_of`]).
    pub target: Target,
    /// Every `--url`, in order (the first is `target`).
    pub targets: Vec<Target>,
    pub size: usize,
    pub opcode: OpCode,
    /// Echo/flood: messages outstanding per connection; rate: maximum backlog per connection.
    pub inflight: usize,
    /// Total rate (rate: msg/s over all connections; pubsub: publishes/s over all publishers).
    pub rate: f64,
    pub total_conns: usize,
    pub total_pubs: usize,
    /// Reactor threads (`--threads`, at most one per connection).
    pub threads: usize,
    /// Per-thread connect rate (0 = unlimited).
    pub connect_rate: f64,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub close_timeout: Duration,
    pub sub_msg: Vec<u8>,
    pub pub_prefix: Vec<u8>,
    pub pub_suffix: Vec<u8>,
    /// wss://: the client TLS configuration.
    pub tls: Option<TlsSetup>,
    /// `--deflate`: the permessage-deflate offer (see `deflate.rs`).
    pub deflate: Option<deflate::Offer>,
    /// `--json-payload`: JSON-like text instead of the alphabet (see [`deflate::json_like_payload`]).
    pub json_payload: bool,
}

impl Plan {
    /// Check the arguments against each other and the process's limits (raising RLIMIT_NOFILE to its hard limit, see
    /// [`cli::check_limits`]), and build the plan. The error is the message for the user.
    pub fn from_args(args: &Args) -> Result<Plan, String> {
        if args.conns == 0 {
            return Err("--conns must be at least 1".into());
        }
        if args.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        let targets = args
            .url
            .iter()
            .map(|u| cli::parse_url(u, args.allow_remote))
            .collect::<Result<Vec<_>, _>>()?;
        let target = targets.first().ok_or("--url is required")?.clone();
        let total = args.total_conns();
        let threads = args.threads.min(total);
        let inflight = args.inflight();
        if inflight == 0 {
            return Err("--inflight must be at least 1".into());
        }
        let rate = args.rate();
        if matches!(args.mode, Mode::Rate | Mode::Pubsub) && rate <= 0.0 {
            return Err(format!("--mode {} needs --rate > 0", args.mode.name()));
        }
        if args.mode == Mode::Pubsub {
            if args.publishers == 0 {
                return Err("--mode pubsub needs --publishers >= 1".into());
            }
            if !args.pub_template.contains("{payload}") {
                return Err("--pub-template must contain {payload}".into());
            }
        }
        let deflate = deflate::Offer::new(
            args.deflate,
            args.deflate_no_context_takeover,
            args.deflate_server_window_bits,
            args.deflate_client_window_bits,
        )?;
        cli::check_limits(total, threads)?;
        let tls = tls::setup_from_args(args, &target)?;

        let (pub_prefix, pub_suffix) = match args.pub_template.split_once("{payload}") {
            Some((a, b)) => (a.as_bytes().to_vec(), b.as_bytes().to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Plan {
            mode: args.mode,
            target,
            targets,
            size: args.size,
            opcode: if args.binary {
                OpCode::Binary
            } else {
                OpCode::Text
            },
            inflight,
            rate,
            total_conns: total,
            total_pubs: args.publishers(),
            threads,
            connect_rate: args.connect_rate / threads as f64,
            connect_concurrency: args.connect_concurrency.max(1),
            connect_timeout: args.connect_timeout,
            warmup: args.warmup,
            duration: args.duration,
            close_timeout: args.close_timeout,
            sub_msg: args.sub_msg.as_bytes().to_vec(),
            pub_prefix,
            pub_suffix,
            tls,
            deflate,
            json_payload: args.json_payload,
        })
    }
}

impl Plan {
    /// Which of [`Plan::targets`] a thread's connection `i` (a publisher or not) connects to: connections round robin
    /// over the URLs, publishers to the first.
    pub fn target_of(&self, i: usize, publisher: bool) -> usize {
        if publisher {
            0
        } else {
            i % self.targets.len()
        }
    }
}

/// Coordination between the main thread and the reactors.
#[derive(Debug, Default)]
pub struct Sync {
    /// Reactors that finished their ramp-up.
    pub ready: AtomicUsize,
    /// Start of the warm-up (now_ns), set by the main thread once every reactor is ready.
    pub start_ns: AtomicU64,
    /// Early end of the measurement (Ctrl-C), set by the main thread; 0 = none.
    pub stop_ns: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn connections_spread_over_the_urls_and_publishers_use_the_first() {
        let a = Args::parse_from([
            "loadtest",
            "--mode",
            "pubsub",
            "--conns",
            "5",
            "--url",
            "ws://127.0.0.1:9/a",
            "--url",
            "ws://127.0.0.1:8/b",
        ]);
        let p = Plan::from_args(&a).unwrap();
        assert_eq!(p.target, p.targets[0]);
        assert_eq!(p.targets[1].path, "/b");
        let subs: Vec<usize> = (0..5).map(|i| p.target_of(i, false)).collect();
        assert_eq!(subs, [0, 1, 0, 1, 0]);
        assert_eq!(p.target_of(5, true), 0);
        let one = Plan::from_args(&Args::parse_from(["loadtest"])).unwrap();
        assert!((0..4).all(|i| one.target_of(i, false) == 0));
        let bad = Args::parse_from([
            "loadtest",
            "--url",
            "ws://127.0.0.1:9/",
            "--url",
            "http://x/",
        ]);
        assert!(Plan::from_args(&bad).is_err());
    }
}
