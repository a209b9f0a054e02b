//! The io_uring driver: the only code in the crate that talks to the kernel's ring. The server's workers and the
//! `loadtest` client both drive their event loops through it.
//!
//! - [`Ring`]: setup with fallbacks (best first: `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN`), one set of advice
//!   when io_uring is unavailable ([`SetupError`]), submission that makes room when the queue is full, an
//!   `EINTR`-safe submit-and-wait, and completion reaping into a caller vector.
//! - [`BufRing`]: a provided-buffer ring (receive buffers shared by every connection of the ring). A [`Ring`] owns
//!   its buffer rings, so the memory a registration points at lives exactly as long as the registration: the buffer
//!   ring is sound by construction.
//!
//! Create a `Ring` on the thread that will use it, and only there. Releasing a ring makes the kernel's ring-exit
//! work signal every task that used it (task work with `TWA_SIGNAL`); a ring created and dropped on some other
//! thread would fail that thread's timed blocking calls with `EINTR` (issue 9, pinned by `tests/embedding.rs`).

mod bufring;

use std::fmt;
use std::io;
use std::time::Duration;

use io_uring::{squeue, types, IoUring};

pub use bufring::BufRing;
pub use io_uring::squeue::{Entry as Sqe, Flags as SqeFlags};
pub use io_uring::{cqueue, opcode, types as uring_types};

/// The overall timeout of a coalescing wait that has none of its own (see [`Ring::submit_and_wait_batched`]).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// One completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    /// The `user_data` of the SQE this completes.
    pub user_data: u64,
    /// The operation's result: a count or a negative errno.
    pub result: i32,
    /// `IORING_CQE_F_*` flags (more, buffer id, buffer more).
    pub flags: u32,
}

/// io_uring cannot be used here: the error, and advice on how to fix it.
#[derive(Debug)]
pub struct SetupError {
    /// What `io_uring_setup` returned.
    pub error: io::Error,
    /// Why, and how to fix it.
    pub advice: String,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.advice)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why a ring setup failed, and how to fix it.
fn advice(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (ringws needs Linux 6.1+), or a seccomp filter blocks \
                               io_uring_setup (containers: run with a seccomp profile that allows io_uring)"
            .to_string(),
        Some(libc::EPERM) => match sysctl.as_deref().map(str::trim) {
            Some(v) if v != "0" => format!(
                "kernel.io_uring_disabled = {v}; allow it with `sysctl -w kernel.io_uring_disabled=0` \
                 (or 1 plus membership in kernel.io_uring_group)"
            ),
            _ => "permission denied by a seccomp filter or LSM; allow io_uring_setup for this process".into(),
        },
        Some(libc::ENOMEM) => "not enough locked memory (RLIMIT_MEMLOCK); raise it with `ulimit -l unlimited` or in \
                               /etc/security/limits.conf"
            .into(),
        _ => format!("io_uring_setup failed: {e} (ringws needs Linux 6.1+)"),
    }
}

/// Which setup flags the kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupMode {
    /// `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN`: completions are posted only when the loop enters the ring.
    DeferTaskrun,
    /// `COOP_TASKRUN` only (kernels before 6.1).
    CoopTaskrun,
    /// No flags.
    Plain,
}

/// An io_uring and the provided-buffer rings registered with it.
pub struct Ring {
    // Field order is drop order: the ring (cancelling every operation and dropping every registration) goes before
    // the buffer memory it points at. `Drop` also unregisters the buffer rings explicitly first.
    uring: IoUring,
    bufs: Vec<BufRing>,
    mode: SetupMode,
    /// The kernel honours a wait's `min_wait_usec` (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12+).
    min_wait: bool,
}

impl Ring {
    /// A ring with `entries` submission entries (a power of two) and `cq_entries` completion entries.
    pub fn new(entries: u32, cq_entries: u32) -> Result<Ring, SetupError> {
        type Flags = fn(&mut io_uring::Builder);
        let attempts: [(SetupMode, Flags); 3] = [
            (SetupMode::DeferTaskrun, |b| {
                b.setup_single_issuer()
                    .setup_coop_taskrun()
                    .setup_defer_taskrun();
            }),
            (SetupMode::CoopTaskrun, |b| {
                b.setup_coop_taskrun();
            }),
            (SetupMode::Plain, |_| {}),
        ];
        let mut last = None;
        for (mode, f) in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq_entries.max(entries));
            f(&mut b);
            match b.build(entries) {
                Ok(uring) => {
                    let min_wait = uring.params().is_feature_min_timeout();
                    return Ok(Ring {
                        uring,
                        bufs: Vec::new(),
                        mode,
                        min_wait,
                    });
                }
                // EINVAL: this kernel does not know a flag; try the next set. Anything else will not get better.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
                Err(e) => {
                    let advice = advice(&e);
                    return Err(SetupError { error: e, advice });
                }
            }
        }
        let error = last.unwrap_or_else(|| io::Error::other("no ring"));
        let advice = advice(&error);
        Err(SetupError { error, advice })
    }

    /// Which setup flags the kernel accepted.
    pub fn mode(&self) -> SetupMode {
        self.mode
    }

    /// Whether [`Ring::submit_and_wait_batched`] can coalesce (the kernel has `IORING_FEAT_MIN_TIMEOUT`, 6.12+).
    pub fn can_coalesce(&self) -> bool {
        self.min_wait
    }

    /// Register a provided-buffer ring of `entries` (a power of two) buffers of `buf_size` bytes as group `bgid`;
    /// returns its index for [`Ring::bufs`]. The kernel gets the first `initial` buffers now and more through
    /// [`BufRing::grow`]. Incremental consumption is used where the kernel has it (6.12+).
    pub fn add_buf_ring(
        &mut self,
        entries: u16,
        buf_size: u32,
        bgid: u16,
        initial: u16,
    ) -> io::Result<usize> {
        let br = BufRing::register(&self.uring.submitter(), entries, buf_size, bgid, initial)?;
        self.bufs.push(br);
        Ok(self.bufs.len() - 1)
    }

    /// The buffer ring `i` (from [`Ring::add_buf_ring`]).
    #[inline]
    pub fn bufs(&mut self, i: usize) -> &mut BufRing {
        &mut self.bufs[i]
    }

    /// Queue one SQE, submitting what is queued first if the submission queue is full.
    ///
    /// # Safety
    /// Every pointer the entry carries (buffers, iovecs, addresses, timespecs) must stay valid, and must not be
    /// moved or freed, until the operation's completion has been reaped (for multishot operations: until the last
    /// completion, the one without `IORING_CQE_F_MORE`). Memory of a buffer ring of this `Ring` qualifies.
    #[inline]
    pub unsafe fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: the caller guarantees the entry's memory outlives the operation (this function's contract).
            if unsafe { self.uring.submission().push(e) }.is_ok() {
                return;
            }
            self.submit();
        }
    }

    /// Queue two SQEs back to back in one submission (for a linked pair, e.g. an operation and its timeout).
    ///
    /// # Safety
    /// As for [`Ring::push`], for both entries.
    pub unsafe fn push_pair(&mut self, a: &squeue::Entry, b: &squeue::Entry) {
        {
            let sq = self.uring.submission();
            let room = sq.capacity() - sq.len();
            drop(sq);
            if room < 2 {
                self.submit();
            }
        }
        // SAFETY: the caller's contract covers both entries; two free slots were made above (a full queue that
        // `submit` could not drain makes `push` submit again).
        unsafe {
            self.push(a);
            self.push(b);
        }
    }

    /// Submit what is queued without waiting. `EBUSY` (completion queue overflow) and `EINTR` are left to the next
    /// submit-and-wait: nothing is lost, the entries stay queued.
    pub fn submit(&mut self) {
        self.publish_bufs();
        if let Err(err) = self.uring.submit() {
            if !matches!(err.raw_os_error(), Some(libc::EBUSY) | Some(libc::EINTR)) {
                tracing::error!("io_uring submit failed: {err}");
            }
        }
    }

    /// Submit what is queued and wait for at least one completion, or until `timeout` (`None`: no timeout; a loop
    /// with a multishot timeout SQE for its timers needs none, and saves arming an hrtimer on every wait). Publishes
    /// every buffer ring's tail first. A wait cut short by a signal (`EINTR`), the timeout (`ETIME`) or a full
    /// completion queue (`EBUSY`) is not an error: the caller reaps whatever completed and enters again, so no
    /// completion is lost.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.submit_and_wait_batched(timeout, None)
    }

    /// [`Ring::submit_and_wait`], coalescing: with `batch = Some((want, min_wait))` the wait returns once `want`
    /// completions are there, or once `min_wait` has passed since the call and at least one is (Linux 6.12+,
    /// `IORING_FEAT_MIN_TIMEOUT`; see [`Ring::can_coalesce`]: elsewhere `batch` is ignored), so completions
    /// arriving close together are handled in one wake-up.
    pub fn submit_and_wait_batched(
        &mut self,
        timeout: Option<Duration>,
        batch: Option<(usize, Duration)>,
    ) -> io::Result<()> {
        self.publish_bufs();
        let (want, min_us) = match batch {
            Some((n, d)) if self.min_wait => {
                (n.max(1), d.as_micros().clamp(1, u32::MAX as u128) as u32)
            }
            _ => (1, 0),
        };
        // A minimum wait needs an overall timeout: without one the kernel ends the wait when the minimum passes,
        // even with nothing completed (a periodic wake-up while idle). A long one keeps an idle ring asleep.
        let timeout = match timeout {
            None if min_us > 0 => Some(IDLE_WAIT),
            t => t,
        };
        let r = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().min_wait_usec(min_us).timespec(&ts);
                self.uring.submitter().submit_with_args(want, &args)
            }
            None => self.uring.submitter().submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Move every available completion into `out` (cleared first); false if there was none.
    pub fn reap(&mut self, out: &mut Vec<Cqe>) -> bool {
        out.clear();
        let mut cq = self.uring.completion();
        cq.sync();
        out.extend(cq.map(|c| Cqe {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
        !out.is_empty()
    }

    /// Make every buffer given back since the last publish visible to the kernel (done before every enter; call it
    /// between completion batches to hand buffers back sooner).
    pub fn publish_bufs(&self) {
        for b in &self.bufs {
            b.publish();
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for b in &self.bufs {
            // Remove the registration while the memory is still mapped; the fields then drop in order (ring, then
            // buffer memory). A failure here only means the ring's own teardown removes it.
            let _ = self.uring.submitter().unregister_buf_ring(b.bgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_with_a_buffer_ring_round_trips_a_nop() {
        let mut r = Ring::new(8, 16).expect("io_uring available");
        let i = r.add_buf_ring(4, 4096, 3, 4).unwrap();
        assert_eq!(r.bufs(i).bgid, 3);
        let e = opcode::Nop::new().build().user_data(42);
        // SAFETY: a no-op carries no pointers.
        unsafe { r.push(&e) };
        let mut out = Vec::new();
        let mut got = false;
        for _ in 0..100 {
            r.submit_and_wait(Some(Duration::from_millis(10))).unwrap();
            if r.reap(&mut out) {
                got = true;
                break;
            }
        }
        assert!(got, "no completion for a nop");
        assert_eq!(out[0].user_data, 42);
        assert_eq!(out[0].result, 0);
    }

    #[test]
    fn advice_names_the_fix() {
        let e = io::Error::from_raw_os_error(libc::ENOMEM);
        assert!(advice(&e).contains("RLIMIT_MEMLOCK"));
        let e = io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(advice(&e).contains("6.1+"));
    }
}
