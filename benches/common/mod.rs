//! Shared by the criterion benches: a thread-CPU-time measurement (`RINGWS_BENCH_CLOCK=thread-cpu`), which is less
//! disturbed than wall time when the machine is shared.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use std::time::Duration;

/// The calling thread's CPU time as a criterion measurement (reported like wall time, in ns).
pub struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// `fn main` for a bench: runs `$bench` with wall time, or with thread CPU time when
/// `RINGWS_BENCH_CLOCK=thread-cpu`.
#[macro_export]
macro_rules! bench_main {
    ($bench:ident) => {
        fn main() {
            if std::env::var("RINGWS_BENCH_CLOCK").as_deref() == Ok("thread-cpu") {
                let mut c = criterion::Criterion::default()
                    .with_measurement(common::ThreadCpuTime)
                    .configure_from_args();
                $bench(&mut c);
                c.final_summary();
            } else {
                let mut c = criterion::Criterion::default().configure_from_args();
                $bench(&mut c);
                c.final_summary();
            }
        }
    };
}
