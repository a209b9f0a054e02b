//! Unmask throughput: every kernel, the dispatched `apply_mask`, `fastwebsockets::unmask`, and a `memcpy` ceiling.
//!
//! Method
//! - Groups `unmask/<size>`, ids `<kernel>/<variant>`: `aligned` = slice starts on a 64-byte boundary, phase 0;
//!   `off3p1` = slice starts 3 bytes past it, mask phase 1 (`fastwebsockets` has no phase argument: it gets the key
//!   rotated by hand, which is what a caller of it would do).
//! - Store-to-load forwarding trap (DESIGN.md): re-masking one small buffer in a tight loop makes the next call's
//!   (overlapping, differently sized) loads wait on the previous call's stores and misreports. Each iteration
//!   therefore takes the next buffer of a ring of `min(64, 16 KiB / size)` buffers (at least one): a buffer is reused
//!   only after >= 1 KiB of other stores, and the whole ring stays within 16 KiB (L1-resident for sizes <= 16 KiB).
//!   From 16 KiB up one buffer is used: its next load is >= 16 KiB of stores away.
//! - `memcpy` = `copy_from_slice` of the same size from one source into the same ring: the same bytes read and
//!   written, so it is the ceiling for a read-modify-write of the buffer.
//! - Clock: wall time by default. With `RINGWS_BENCH_CLOCK=thread-cpu` the time is the benchmark thread's CPU time
//!   (`CLOCK_THREAD_CPUTIME_ID`), which leaves out time the thread was preempted: the only usable figure on a machine
//!   shared with other jobs (caches may still be polluted by them, so it is a lower bound on the noise, not a cure).
//! - Measure pinned, e.g.
//!   `taskset -c 1 cargo bench --bench unmask -- --measurement-time 2 --warm-up-time 1 'unmask/(125|4096|16384)/'`

#[macro_use]
mod common;

use criterion::measurement::Measurement;
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use ringws::mask::{apply_mask, kernels, Kernel};

const SIZES: [usize; 7] = [16, 125, 1024, 4096, 16384, 65536, 1 << 20];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const VARIANTS: [(&str, usize, usize); 2] = [("aligned", 0, 0), ("off3p1", 3, 1)];

/// `count` windows of `size` bytes, each starting `off` bytes past a 64-byte boundary, carved from one allocation.
struct Ring {
    mem: Vec<u8>,
    starts: Vec<usize>,
    size: usize,
    next: usize,
}

impl Ring {
    fn new(size: usize, off: usize) -> Self {
        let count = (16384 / size).clamp(1, 64);
        let stride = (size + off).div_ceil(64) * 64 + 64;
        let mem: Vec<u8> = (0..stride * count + 64).map(|i| i as u8).collect();
        let base = mem.as_ptr().align_offset(64);
        let starts = (0..count).map(|i| base + i * stride + off).collect();
        Ring {
            mem,
            starts,
            size,
            next: 0,
        }
    }

    #[inline(always)]
    fn next(&mut self) -> &mut [u8] {
        let s = self.starts[self.next];
        self.next += 1;
        if self.next == self.starts.len() {
            self.next = 0;
        }
        &mut self.mem[s..s + self.size]
    }
}

fn bench_unmask<M: Measurement>(c: &mut Criterion<M>) {
    let mut contenders: Vec<(&'static str, Kernel)> = kernels::all();
    contenders.push(("apply_mask", apply_mask as Kernel));
    eprintln!("dispatched kernel: {}", kernels::selected());

    for size in SIZES {
        let mut g = c.benchmark_group(format!("unmask/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        for (variant, off, phase) in VARIANTS {
            for &(name, f) in &contenders {
                if name == "scalar" && size > 65536 {
                    continue; // minutes of measurement for a known-slow reference
                }
                let mut ring = Ring::new(size, off);
                g.bench_function(BenchmarkId::new(name, variant), |b| {
                    b.iter(|| f(black_box(KEY), black_box(phase), black_box(ring.next())))
                });
            }
            // The call as the codec makes it: `apply_mask` inlined at the call site (one indirect call to the cached
            // kernel for >= 16 bytes). The `apply_mask` entry above goes through a `Kernel` pointer first.
            let mut ring = Ring::new(size, off);
            g.bench_function(BenchmarkId::new("apply_mask_direct", variant), |b| {
                b.iter(|| apply_mask(black_box(KEY), black_box(phase), black_box(ring.next())))
            });
            let mut ring = Ring::new(size, off);
            let rotated = [0, 1, 2, 3].map(|i| KEY[(phase + i) & 3]);
            g.bench_function(BenchmarkId::new("fastwebsockets", variant), |b| {
                b.iter(|| fastwebsockets::unmask(black_box(ring.next()), black_box(rotated)))
            });
            let mut ring = Ring::new(size, off);
            let src = vec![0x5a_u8; size];
            g.bench_function(BenchmarkId::new("memcpy", variant), |b| {
                b.iter(|| black_box(ring.next()).copy_from_slice(black_box(&src)))
            });
        }
        g.finish();
    }
}

bench_main!(bench_unmask);
