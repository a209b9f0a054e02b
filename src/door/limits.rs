//! Per-address limits, shared by all workers of a process: at most `max_connections` concurrent connections per
//! client address, and a new-connection rate per address (a token bucket of `burst` tokens refilled at
//! `rate_per_second`). Over either, the server answers `429 Too Many Requests` with `Retry-After`.
//!
//! # What an "address" is
//! An IPv4 address, or the /64 prefix of an IPv6 address ([`PerIpLimits::ipv6_prefix_len`]): one IPv6 host
//! usually owns a whole /64, so limiting single IPv6 addresses would limit nothing. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, what a dual-stack socket reports) count as the IPv4 address.
//!
//! # Cost on the accept path
//! One SipHash of a 16-byte key (keyed per process, so a peer cannot aim its addresses at one shard), one lock of
//! one of [`SHARDS`] cache-line-aligned `Mutex`es, one hash-map probe, on [`IpLimiter::admit`] and again when the
//! [`IpLease`] is dropped at close: roughly 50-100 ns each, uncontended, next to the several µs of syscalls and
//! kernel work that accepting and closing a TCP connection costs. Two workers contend only when they admit
//! addresses of the same shard at the same instant, and then only for a few hundred instructions. Nothing is done
//! per message. With no limit configured the server builds no limiter at all.
//!
//! # Bounded memory
//! The table holds at most [`PerIpLimits::max_tracked`] addresses (default 65,536, split evenly over the shards;
//! an entry is about 64 bytes with the hash map's overhead, so ~4 MiB at the cap). An address stays in the table
//! while it has connections, or (with a rate limit) until its bucket has refilled; entries are only removed when a
//! shard is full and a new address arrives:
//! 1. every idle entry of the shard is removed (no connection and a full bucket: forgetting it changes nothing);
//! 2. if none was idle, the least recently seen entry without connections is removed (its rate history is lost:
//!    that address gets a fresh bucket; a flood of distinct addresses can thus buy a limited address a reset, but
//!    only by sending at least a shard's worth of new addresses first);
//! 3. if every entry has live connections, the new address is admitted *untracked* (no per-address limit for that
//!    connection, counted in [`LimiterStats::untracked`]). This fails open on purpose: the table can only be full
//!    of live connections from `max_tracked` distinct addresses, an attacker who has that many addresses is not
//!    held back by per-address limits anyway, and refusing would lock every other new client out. The global
//!    connection cap still applies.
//!
//! A full-shard scan (steps 1-2) touches up to `max_tracked / SHARDS` entries (1,024 by default, a few µs) and
//! happens only while a shard is full, i.e. under a flood of distinct addresses.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Number of independently locked parts of the table (a power of two).
pub const SHARDS: usize = 64;

/// The per-address limits. `#[non_exhaustive]`: start from `PerIpLimits::default()` (everything off) and set fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PerIpLimits {
    /// Most concurrent connections (HTTP and WebSocket) per address; `0` = no limit (default). One load-test client
    /// opens thousands from one address, hence off by default.
    pub max_connections: u32,
    /// New connections per second per address, refilling the bucket; `0.0` = no rate limit (default).
    pub rate_per_second: f64,
    /// Bucket size: new connections an idle address may open at once; `0` means `max(1, ceil(rate_per_second))`.
    pub burst: u32,
    /// Most addresses tracked at once (default 65,536; see the module docs for what happens at the cap).
    pub max_tracked: usize,
    /// IPv6 addresses are grouped by this prefix length (default 64; 128 = each address alone).
    pub ipv6_prefix_len: u8,
}

impl Default for PerIpLimits {
    fn default() -> Self {
        PerIpLimits {
            max_connections: 0,
            rate_per_second: 0.0,
            burst: 0,
            max_tracked: 65_536,
            ipv6_prefix_len: 64,
        }
    }
}

impl PerIpLimits {
    /// Whether any limit is on (otherwise no limiter is needed).
    pub fn enabled(&self) -> bool {
        self.max_connections > 0 || self.rate_per_second > 0.0
    }

    /// Check the values (called by [`IpLimiter::new`]).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate_per_second.is_finite() && self.rate_per_second >= 0.0) {
            return Err(format!(
                "per-IP rate must be a finite number >= 0, not {}",
                self.rate_per_second
            ));
        }
        if self.max_tracked < SHARDS {
            return Err(format!(
                "per-IP max_tracked must be at least {SHARDS}, not {}",
                self.max_tracked
            ));
        }
        if self.ipv6_prefix_len == 0 || self.ipv6_prefix_len > 128 {
            return Err(format!(
                "ipv6_prefix_len must be 1..=128, not {}",
                self.ipv6_prefix_len
            ));
        }
        Ok(())
    }

    fn bucket_size(&self) -> f64 {
        if self.burst > 0 {
            f64::from(self.burst)
        } else {
            self.rate_per_second.ceil().max(1.0)
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The address already has `max_connections` connections.
    Connections,
    /// The address's bucket is empty.
    Rate,
}

/// The answer of [`IpLimiter::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; keep the lease for as long as the connection lives (dropping it releases the slot). `None` when
    /// the address is not tracked (see the module docs, step 3).
    Allow(Option<IpLease>),
    /// Answer `429` with `Retry-After: retry_after_secs` and close.
    Deny {
        /// Which limit.
        kind: LimitKind,
        /// When to try again: the bucket's refill time for the rate, 1 s for the connection cap.
        retry_after_secs: u32,
    },
}

/// Counters summed over the shards (read with [`IpLimiter::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Addresses in the table now.
    pub tracked: u64,
    /// Entries removed to make room (steps 1-2 of the module docs).
    pub evicted: u64,
    /// Connections admitted without tracking because a shard was full of live addresses.
    pub untracked: u64,
}

/// An address key: an IPv4 address in its mapped IPv6 form, or a masked IPv6 prefix.
type IpKey = [u8; 16];

/// The table's key: the address with its hash computed once (so the shard's map does not hash again).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Keyed {
    hash: u64,
    key: IpKey,
}

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes the precomputed hash through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Keyed`; fold anything else so the hasher stays correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    conns: u32,
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Keyed, Entry, BuildHasherDefault<PassThrough>>,
    evicted: u64,
    untracked: u64,
}

#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// The shared per-address table. Build one per process ([`IpLimiter::new`]) and share it (`Arc`) with every worker.
pub struct IpLimiter {
    shards: Box<[Padded]>,
    hasher: RandomState,
    max_connections: u32,
    rate: f64,
    bucket: f64,
    per_shard: usize,
    ipv6_mask: u128,
}

impl std::fmt::Debug for IpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("max_connections", &self.max_connections)
            .field("rate", &self.rate)
            .field("bucket", &self.bucket)
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

/// A connection's hold on its address's slot; dropping it (when the connection closes) releases the slot.
/// 24 bytes.
#[must_use = "dropping the lease releases the connection slot at once"]
pub struct IpLease {
    table: Arc<IpLimiter>,
    key: Keyed,
}

impl std::fmt::Debug for IpLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLease")
            .field("key", &Ipv6Addr::from(self.key.key))
            .finish()
    }
}

impl Drop for IpLease {
    fn drop(&mut self) {
        self.table.release(self.key);
    }
}

impl IpLimiter {
    /// An empty table for these limits (validated; the error says which value is wrong).
    pub fn new(limits: &PerIpLimits) -> Result<Arc<Self>, String> {
        limits.validate()?;
        let per_shard = limits.max_tracked.div_ceil(SHARDS);
        let prefix = u32::from(limits.ipv6_prefix_len);
        let ipv6_mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        Ok(Arc::new(IpLimiter {
            shards: (0..SHARDS).map(|_| Padded(Mutex::default())).collect(),
            hasher: RandomState::new(),
            max_connections: limits.max_connections,
            rate: limits.rate_per_second,
            bucket: limits.bucket_size(),
            per_shard,
            ipv6_mask,
        }))
    }

    /// A new connection from `addr` at `now` (any monotonic time; pass the same clock every time).
    pub fn admit(self: &Arc<Self>, addr: IpAddr, now: Instant) -> Admission {
        let key = self.key(addr);
        let mut shard = self.shard(key);
        if !shard.map.contains_key(&key)
            && shard.map.len() >= self.per_shard
            && !self.make_room(&mut shard, now)
        {
            shard.untracked += 1;
            return Admission::Allow(None);
        }
        let bucket = self.bucket;
        let e = shard.map.entry(key).or_insert(Entry {
            conns: 0,
            tokens: bucket,
            last: now,
        });
        if self.rate > 0.0 {
            let elapsed = now.saturating_duration_since(e.last).as_secs_f64();
            e.tokens = (e.tokens + elapsed * self.rate).min(bucket);
        }
        e.last = now;
        if self.max_connections > 0 && e.conns >= self.max_connections {
            return Admission::Deny {
                kind: LimitKind::Connections,
                // When a slot frees is unknown; a second is a polite pace for a retrying client.
                retry_after_secs: 1,
            };
        }
        if self.rate > 0.0 {
            if e.tokens < 1.0 {
                let wait = ((1.0 - e.tokens) / self.rate).ceil();
                return Admission::Deny {
                    kind: LimitKind::Rate,
                    retry_after_secs: (wait as u32).max(1),
                };
            }
            e.tokens -= 1.0;
        }
        e.conns += 1;
        drop(shard);
        Admission::Allow(Some(IpLease {
            table: Arc::clone(self),
            key,
        }))
    }

    /// Live connections of `addr` as tracked here (for tests and diagnostics).
    pub fn connections(&self, addr: IpAddr) -> u32 {
        let key = self.key(addr);
        self.shard(key).map.get(&key).map_or(0, |e| e.conns)
    }

    /// Counters summed over the shards (locks each shard briefly).
    pub fn stats(&self) -> LimiterStats {
        let mut s = LimiterStats::default();
        for p in self.shards.iter() {
            let shard = p.0.lock().unwrap_or_else(|e| e.into_inner());
            s.tracked += shard.map.len() as u64;
            s.evicted += shard.evicted;
            s.untracked += shard.untracked;
        }
        s
    }

    fn release(&self, key: Keyed) {
        let mut shard = self.shard(key);
        if let Some(e) = shard.map.get_mut(&key) {
            e.conns = e.conns.saturating_sub(1);
            // Without a rate limit an entry without connections holds no information.
            if e.conns == 0 && self.rate <= 0.0 {
                shard.map.remove(&key);
            }
        }
    }

    /// Steps 1-2 of the module docs; `false` when every entry has live connections.
    fn make_room(&self, shard: &mut Shard, now: Instant) -> bool {
        let before = shard.map.len();
        let (rate, bucket) = (self.rate, self.bucket);
        let idle = |e: &Entry| {
            e.conns == 0
                && (rate <= 0.0
                    || e.tokens + now.saturating_duration_since(e.last).as_secs_f64() * rate
                        >= bucket)
        };
        shard.map.retain(|_, e| !idle(e));
        let mut removed = before - shard.map.len();
        if removed == 0 {
            let oldest = shard
                .map
                .iter()
                .filter(|(_, e)| e.conns == 0)
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                shard.map.remove(&k);
                removed = 1;
            }
        }
        shard.evicted += removed as u64;
        removed > 0
    }

    fn key(&self, addr: IpAddr) -> Keyed {
        let key: IpKey = match addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_ipv6_mapped().octets(),
                None => (u128::from(v6) & self.ipv6_mask).to_be_bytes(),
            },
        };
        Keyed {
            hash: self.hasher.hash_one(key),
            key,
        }
    }

    fn shard(&self, key: Keyed) -> MutexGuard<'_, Shard> {
        // The top bits pick the shard; the map uses the low bits, so the two stay independent.
        let i = (key.hash >> (64 - SHARDS.trailing_zeros())) as usize;
        // A panic while holding the lock cannot leave an entry half-updated in a way that matters: use it anyway.
        self.shards[i].0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    fn limiter(f: impl FnOnce(&mut PerIpLimits)) -> Arc<IpLimiter> {
        let mut l = PerIpLimits::default();
        f(&mut l);
        IpLimiter::new(&l).unwrap()
    }

    fn allow(a: Admission) -> Option<IpLease> {
        match a {
            Admission::Allow(l) => l,
            Admission::Deny { kind, .. } => panic!("denied: {kind:?}"),
        }
    }

    fn deny(a: Admission) -> (LimitKind, u32) {
        match a {
            Admission::Allow(_) => panic!("allowed"),
            Admission::Deny {
                kind,
                retry_after_secs,
            } => (kind, retry_after_secs),
        }
    }

    #[test]
    fn concurrent_connection_cap_per_address() {
        let t = limiter(|l| l.max_connections = 2);
        let now = Instant::now();
        let a = allow(t.admit(v4(1), now)).unwrap();
        let b = allow(t.admit(v4(1), now)).unwrap();
        assert_eq!(deny(t.admit(v4(1), now)), (LimitKind::Connections, 1));
        // Another address is not affected.
        let _c = allow(t.admit(v4(2), now)).unwrap();
        assert_eq!(t.connections(v4(1)), 2);
        drop(a);
        assert_eq!(t.connections(v4(1)), 1);
        let _d = allow(t.admit(v4(1), now)).unwrap();
        drop(b);
        // Without a rate limit, an address without connections leaves the table.
        drop(_d);
        assert_eq!(t.connections(v4(1)), 0);
        assert_eq!(t.stats().tracked, 1);
    }

    #[test]
    fn token_bucket_rate_per_address() {
        let t = limiter(|l| {
            l.rate_per_second = 2.0;
            l.burst = 3;
        });
        let t0 = Instant::now();
        let mut leases = Vec::new();
        for _ in 0..3 {
            leases.push(allow(t.admit(v4(1), t0)));
        }
        // Bucket empty: one token comes back in 0.5 s, announced as 1 s.
        assert_eq!(deny(t.admit(v4(1), t0)), (LimitKind::Rate, 1));
        assert!(allow(t.admit(v4(2), t0)).is_some());
        // Dropping connections does not refill the bucket; time does.
        leases.clear();
        assert_eq!(
            deny(t.admit(v4(1), t0 + Duration::from_millis(400))).0,
            LimitKind::Rate
        );
        let _ = allow(t.admit(v4(1), t0 + Duration::from_millis(500)));
        assert_eq!(
            deny(t.admit(v4(1), t0 + Duration::from_millis(500))).0,
            LimitKind::Rate
        );
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            let _ = allow(t.admit(v4(1), later));
        }
        assert_eq!(deny(t.admit(v4(1), later)).0, LimitKind::Rate);
    }

    #[test]
    fn retry_after_reflects_the_refill_time() {
        let t = limiter(|l| {
            l.rate_per_second = 0.1; // one per 10 s
            l.burst = 1;
        });
        let t0 = Instant::now();
        let _ = allow(t.admit(v4(1), t0));
        assert_eq!(deny(t.admit(v4(1), t0)), (LimitKind::Rate, 10));
        assert_eq!(
            deny(t.admit(v4(1), t0 + Duration::from_secs(4))),
            (LimitKind::Rate, 6)
        );
        // A refused attempt costs no token.
        let _ = allow(t.admit(v4(1), t0 + Duration::from_secs(10)));
    }

    #[test]
    fn connection_cap_is_checked_before_the_rate_and_costs_no_token() {
        let t = limiter(|l| {
            l.max_connections = 1;
            l.rate_per_second = 1.0;
            l.burst = 2;
        });
        let now = Instant::now();
        let a = allow(t.admit(v4(1), now));
        for _ in 0..5 {
            assert_eq!(deny(t.admit(v4(1), now)).0, LimitKind::Connections);
        }
        drop(a);
        let _b = allow(t.admit(v4(1), now));
    }

    #[test]
    fn default_burst_is_the_rate_rounded_up() {
        let t = limiter(|l| l.rate_per_second = 2.5);
        let now = Instant::now();
        for _ in 0..3 {
            let _ = allow(t.admit(v4(1), now));
        }
        assert_eq!(deny(t.admit(v4(1), now)).0, LimitKind::Rate);
    }

    #[test]
    fn ipv6_is_limited_per_prefix_and_mapped_v4_is_v4() {
        let t = limiter(|l| l.max_connections = 1);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _l = allow(t.admit(a, now));
        assert_eq!(deny(t.admit(same_64, now)).0, LimitKind::Connections);
        let _m = allow(t.admit(other_64, now));
        let _v = allow(t.admit(v4(7), now));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(deny(t.admit(mapped, now)).0, LimitKind::Connections);

        let t = limiter(|l| {
            l.max_connections = 1;
            l.ipv6_prefix_len = 128;
        });
        let _l = allow(t.admit(a, now));
        let _n = allow(t.admit(same_64, now));
    }

    #[test]
    fn distinct_address_flood_stays_bounded() {
        let t = limiter(|l| {
            l.rate_per_second = 1.0;
            l.burst = 1;
            l.max_tracked = 256;
        });
        let mut now = Instant::now();
        // 100,000 distinct addresses, one connection each, closed at once: the table never exceeds its cap.
        for i in 0..100_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            drop(allow(t.admit(addr, now)));
            if i % 1000 == 0 {
                now += Duration::from_millis(10);
            }
        }
        let s = t.stats();
        assert!(s.tracked <= 256, "{s:?}");
        assert!(s.evicted >= 100_000 - s.tracked, "{s:?}");
        assert_eq!(s.untracked, 0);
    }

    #[test]
    fn eviction_prefers_idle_entries_and_keeps_live_ones() {
        let t = limiter(|l| {
            l.max_connections = 1;
            l.rate_per_second = 1.0;
            l.burst = 1;
            l.max_tracked = SHARDS; // one entry per shard
        });
        let t0 = Instant::now();
        // Fill every shard with a live connection: new addresses are then admitted untracked.
        let mut live = Vec::new();
        let mut i = 0u32;
        while t.stats().tracked < SHARDS as u64 {
            if let Admission::Allow(Some(l)) =
                t.admit(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), t0)
            {
                live.push(l);
            }
            i += 1;
        }
        let before = t.stats().untracked;
        for j in 0..50u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + j));
            assert!(matches!(t.admit(addr, t0), Admission::Allow(None)));
        }
        assert_eq!(t.stats().untracked, before + 50);
        assert_eq!(t.stats().evicted, 0);
        // Live entries kept their counts: each address is still at its cap.
        let first = IpAddr::V4(Ipv4Addr::from(0x0b00_0000));
        assert_eq!(t.connections(first), 1);
        // Once connections close and buckets refill, entries are idle and make room again.
        live.clear();
        let later = t0 + Duration::from_secs(5);
        let l = allow(t.admit(IpAddr::V4(Ipv4Addr::from(0x0d00_0000)), later));
        assert!(l.is_some());
        assert!(t.stats().evicted >= 1);
    }

    #[test]
    fn shared_across_threads() {
        let t = limiter(|l| l.max_connections = 1000);
        let now = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    let leases: Vec<_> = (0..250).map(|_| allow(t.admit(v4(1), now))).collect();
                    leases.len()
                })
            })
            .collect();
        let n: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(n, 1000);
        // All leases were dropped by their threads.
        assert_eq!(t.connections(v4(1)), 0);
        let all: Vec<_> = (0..1000).map(|_| allow(t.admit(v4(1), now))).collect();
        assert_eq!(deny(t.admit(v4(1), now)).0, LimitKind::Connections);
        drop(all);
    }

    #[test]
    fn invalid_limits_are_errors() {
        for f in [
            (|l: &mut PerIpLimits| l.rate_per_second = f64::NAN) as fn(&mut PerIpLimits),
            |l| l.rate_per_second = -1.0,
            |l| l.max_tracked = 1,
            |l| l.ipv6_prefix_len = 0,
            |l| l.ipv6_prefix_len = 129,
        ] {
            let mut l = PerIpLimits::default();
            f(&mut l);
            assert!(IpLimiter::new(&l).is_err());
        }
        assert!(!PerIpLimits::default().enabled());
    }
}
