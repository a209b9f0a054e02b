//! Shared pieces of the transport-floor binaries: the listener every server uses, a ring set up like ringws' best
//! mode, CPU-time readers, and a small argument parser.
//!
//! The binaries:
//! - `uring_echo ADDR`: bare io_uring TCP echo (multishot accept, multishot recv from a provided buffer ring, one send
//!   per connection per loop turn, `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN`).
//! - `tokio_uring_echo ADDR`: the same echo written the idiomatic `tokio-uring` way (one task per connection, one-shot
//!   `read` into an owned buffer, then `write_all`).
//! - `tcp_load`: a closed-loop TCP client (N connections, one S-byte message in flight each) that reports msg/s and
//!   the server's CPU time per message, like `loadtest` does for WebSocket echo.

pub mod bufring;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Listen backlog: large enough for a 10,000-connection ramp without SYN drops.
pub const BACKLOG: i32 = 4096;

/// A listening socket as every floor server uses it: `SO_REUSEADDR`, `TCP_NODELAY` (accepted sockets inherit it on
/// Linux, so answers leave at once, as ringws' do) and a [`BACKLOG`]-deep accept queue.
pub fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// The first command-line argument as a socket address, or exit with a usage line.
pub fn addr_arg(usage: &str) -> SocketAddr {
    match std::env::args().nth(1).map(|a| a.parse::<SocketAddr>()) {
        Some(Ok(a)) => a,
        _ => {
            eprintln!("usage: {usage}");
            std::process::exit(2);
        }
    }
}

/// An io_uring with `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN` (Linux 6.1+); no fallback, because a floor
/// measured in a weaker mode would not be the floor. `entries` submission slots, 4x as many completion slots.
pub fn ring(entries: u32) -> io::Result<io_uring::IoUring> {
    io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 4)
        .build(entries)
}

/// CPU time (user + system) of a process from `/proc/PID/stat` (fields 14 and 15), all threads.
pub fn proc_cpu(pid: i32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// CPU time (user + system) of this process, all threads.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Parse `10s`, `500ms`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn cpu_readers() {
        let me = std::process::id() as i32;
        assert!(proc_cpu(me).is_some());
        assert!(proc_cpu(-1).is_none());
        // Burn a little CPU so both readers see a non-zero figure.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu() > Duration::ZERO);
    }
}
