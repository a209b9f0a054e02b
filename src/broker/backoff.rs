//! Reconnect delays: exponential with jitter, no clock and no global random source (the caller passes the random
//! bits), so the policy is tested by value.
//!
//! Attempt `n` (0-based) has a ceiling `min(max, base * 2^n)`; the delay is drawn uniformly from
//! `[ceiling / 2, ceiling)` ("equal jitter"): never below half the ceiling, so a fleet of nodes that lost Redis
//! together does not hammer it, and spread over the other half, so they do not come back in lockstep.

use std::time::Duration;

/// The reconnect schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first retry (default 100 ms).
    pub base: Duration,
    /// Largest ceiling (default 5 s): how long an outage may go unnoticed after Redis is back.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Where a reconnect loop is in its schedule.
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

#[cfg(feature = "redis")]
impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The ceiling of the next delay (before jitter).
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.max)
            .min(self.policy.max)
    }

    /// The delay before the next attempt, given 64 random bits; advances the schedule.
    pub(crate) fn next_delay(&mut self, random: u64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ceil_ns = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        let half = ceil_ns / 2;
        let spread = ceil_ns - half;
        let jitter = if spread == 0 { 0 } else { random % spread };
        Duration::from_nanos(half + jitter)
    }

    /// A connection worked: the next failure starts from `base` again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A small xorshift64* generator for jitter (not for anything secret).
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

#[cfg(feature = "redis")]
impl Jitter {
    /// Seeded from the OS; falls back to a fixed odd seed if that fails (jitter only spreads retries).
    pub(crate) fn from_os() -> Self {
        let mut b = [0u8; 8];
        let seed = match getrandom::getrandom(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0x9e37_79b9_7f4a_7c15,
        };
        Jitter::with_seed(seed)
    }

    pub(crate) fn with_seed(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    fn policy(base_ms: u64, max_ms: u64) -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_max() {
        let mut b = Backoff::new(policy(100, 1000));
        let ceilings: Vec<u64> = (0..8)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay(0);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn delay_stays_in_upper_half_of_the_ceiling() {
        let mut rng = Jitter::with_seed(7);
        for attempt in 0..40 {
            let mut b = Backoff::new(policy(100, 5000));
            for _ in 0..attempt {
                b.next_delay(0);
            }
            let c = b.ceiling();
            for _ in 0..50 {
                let mut probe = b.clone();
                let d = probe.next_delay(rng.next_u64());
                assert!(
                    d >= c / 2 && d < c,
                    "attempt {attempt}: {d:?} outside [{:?}, {c:?})",
                    c / 2
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_nodes_that_failed_together() {
        // 100 nodes at the same attempt draw different delays covering most of the window.
        let mut rng = Jitter::with_seed(42);
        let mut ds: Vec<Duration> = (0..100)
            .map(|_| {
                let mut b = Backoff::new(policy(1000, 1000));
                b.next_delay(rng.next_u64())
            })
            .collect();
        ds.sort();
        ds.dedup();
        assert!(ds.len() > 90, "only {} distinct delays", ds.len());
        assert!(ds[0] < Duration::from_millis(600));
        assert!(*ds.last().unwrap() > Duration::from_millis(900));
    }

    #[test]
    fn reset_starts_over_and_huge_attempts_do_not_overflow() {
        let mut b = Backoff::new(policy(100, 60_000));
        for _ in 0..1000 {
            b.next_delay(u64::MAX);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
        assert!(b.next_delay(u64::MAX) < Duration::from_secs(60));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
