//! Backpressure policy, in one place: what a connection's outbound queue admits, when its reads pause and resume,
//! and when the handler hears `drain`. The queue itself ([`super::outbound`]) only counts bytes.
//!
//! With `max` = `Config::max_backpressure`:
//! - a message is admitted into an empty queue whatever its size, otherwise only if the queue stays within `max`
//!   (else `SendStatus::Dropped`; control frames are never dropped);
//! - above `max / 2` queued bytes the connection stops reading (its recv is not re-armed) until the queue falls to
//!   `max / 4`: a peer that does not read cannot make the server buffer its echoes without bound. Bytes the kernel
//!   had already received when the pause began wait (copied, see `worker/paused.rs`) and are fed to the connection
//!   when it resumes, one receive buffer at a time, so an echo loses nothing as long as `max / 2` leaves room for
//!   the echoes of one receive buffer (`recv_buffer_size` plus the largest message);
//! - a connection that went above `max / 4` gets `Handler::drain` once it is back at or below `max / 4`.

/// The water marks derived from `max_backpressure`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backpressure {
    max: usize,
}

impl Backpressure {
    pub(crate) fn new(max_backpressure: usize) -> Self {
        Backpressure {
            max: max_backpressure,
        }
    }
    /// Whether a message of `len` bytes may join a queue holding `queued` bytes.
    #[inline]
    pub(crate) fn admits(&self, queued: usize, len: usize) -> bool {
        queued == 0 || queued + len <= self.max
    }
    /// Whether reading should pause at `queued` bytes.
    #[inline]
    pub(crate) fn should_pause(&self, queued: usize) -> bool {
        queued > self.max / 2
    }
    /// Whether `queued` is above the low-water mark (a later fall below it fires `drain`).
    #[inline]
    pub(crate) fn above_low(&self, queued: usize) -> bool {
        queued > self.max / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_max() {
        let b = Backpressure::new(1000);
        assert!(b.admits(0, 5000), "an empty queue takes any single message");
        assert!(b.admits(900, 100));
        assert!(!b.admits(900, 101));
        assert!(!b.should_pause(500) && b.should_pause(501));
        assert!(!b.above_low(250) && b.above_low(251));
    }
}
