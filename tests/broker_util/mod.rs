//! A real `redis-server` for tests: started on a free loopback port in its own temp dir, always killed (Drop).
//! Tests skip with a message when `redis-server` is not installed, unless `RINGWS_REQUIRE_REDIS=1` (CI), which
//! makes a missing server a failure.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringws::broker::{BackoffPolicy, BrokerConfig, Sink};

/// Bridge settings for tests: short timers so faults are noticed within a second, a small linger.
pub fn fast_broker(url: &str) -> BrokerConfig {
    let mut c = BrokerConfig::new(url);
    c.linger = Duration::from_millis(400);
    c.backoff = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    c.connect_timeout = Duration::from_millis(500);
    c.op_timeout = Duration::from_millis(500);
    c.probe_interval = Duration::from_millis(300);
    c.probe_timeout = Duration::from_millis(500);
    c
}

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` can run here; prints why a test is skipped.
pub fn redis_available() -> bool {
    match Command::new("redis-server").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            if std::env::var("RINGWS_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("redis-server is required (RINGWS_REQUIRE_REDIS=1) but not installed");
            }
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            false
        }
    }
}

impl RedisServer {
    /// A fresh server on a free port; None (after a message) if redis-server is not installed.
    pub fn start() -> Option<RedisServer> {
        Self::on_port(free_port())
    }

    /// A server object for `port` that is not running yet (see [`RedisServer::start_again`]).
    pub fn not_started(port: u16) -> Option<RedisServer> {
        if !redis_available() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ringws-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Some(RedisServer {
            port,
            dir,
            child: None,
            paused: false,
        })
    }

    pub fn on_port(port: u16) -> Option<RedisServer> {
        let mut r = Self::not_started(port)?;
        r.start_again();
        Some(r)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)start on the same port and wait until it answers PING (5 s at most).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if let Ok(mut c) = self.client() {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (SIGKILL: connections drop as in a crash) and reap it.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: connections stay open but nothing answers (a deaf broker).
    pub fn pause(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
            self.paused = true;
        }
    }

    pub fn resume(&mut self) {
        if let (Some(c), true) = (&self.child, self.paused) {
            // SAFETY: as in pause.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            self.paused = false;
        }
    }

    pub fn client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Subscribers of `channel` (PUBSUB NUMSUB); 0 if the server cannot be asked.
    pub fn numsub(&self, channel: &str) -> i64 {
        let Ok(mut c) = self.client() else { return 0 };
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query::<Vec<(String, i64)>>(&mut c)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map_or(0, |(_, n)| n)
    }

    /// Channels with at least one subscriber matching `pattern` (PUBSUB CHANNELS), sorted.
    pub fn channels(&self, pattern: &str) -> Vec<String> {
        let mut c = self.client().expect("redis client");
        let mut v: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(pattern)
            .query(&mut c)
            .expect("PUBSUB CHANNELS");
        v.sort();
        v
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `cond` every 10 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A sink that records every delivery.
#[derive(Default)]
pub struct Collect {
    got: Mutex<Vec<(String, Bytes, bool)>>,
    cv: Condvar,
}

impl Sink for Collect {
    fn deliver(&self, topic: &str, payload: Bytes, is_text: bool) -> usize {
        self.got
            .lock()
            .unwrap()
            .push((topic.to_string(), payload, is_text));
        self.cv.notify_all();
        0
    }
}

impl Collect {
    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<(String, Bytes, bool)> {
        self.got.lock().unwrap().clone()
    }

    /// Payloads as text, in delivery order.
    pub fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// Wait until at least `n` deliveries (at most `limit`).
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut g = self.got.lock().unwrap();
        while g.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        true
    }
}
