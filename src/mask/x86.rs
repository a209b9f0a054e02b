//! x86_64 SIMD kernels and the cached runtime dispatch.
//!
//! Every kernel takes the key already rotated to the phase of `buf[0]` (see `super::rotate`).

use super::{mask_small, rotate};
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The template of every vector kernel, instantiated per instruction set so the one tested on this CPU (SSE2, AVX2)
/// is the same code as the one that may not be (AVX-512).
///
/// For `n >= W`: load the first and last `W` bytes unaligned, mask the body `[a, a + W*m)` in aligned vectors (`a` =
/// bytes to the first `W`-aligned address, `m` = whole vectors that fit), then store head and tail, each computed from
/// the original bytes, over `[0, W)` and `[n - W, n)`. These cover `[0, a)` (a < W) and the < `W` bytes after the
/// body; bytes written twice get the same value both times because every value is computed from bytes loaded before
/// any overlapping store. For `n < W`: the narrower kernel.
macro_rules! vector_kernel {
    (
        $(#[$doc:meta])*
        $name:ident, $feature:literal, $W:literal, $V:ty,
        splat: $splat:ident, loadu: $loadu:ident, load: $load:ident, storeu: $storeu:ident, store: $store:ident,
        xor: $xor:ident, narrower: $narrower:expr
    ) => {
        $(#[$doc])*
        /// # Safety
        /// The CPU must support the target feature named in the `#[target_feature]` attribute.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn $name(k: [u8; 4], buf: &mut [u8]) {
            const W: usize = $W;
            let n = buf.len();
            if n < W {
                // SAFETY: the narrower kernel needs a subset of this kernel's features (our caller's contract).
                return unsafe { $narrower(k, buf) };
            }
            let p = buf.as_mut_ptr();
            let a = (W - (p as usize % W)) % W; // < W <= n
            let splat = |k: [u8; 4]| $splat(i32::from_ne_bytes(k));
            let k_head = splat(k);
            let k_body = splat(rotate(k, a));
            let k_tail = splat(rotate(k, n - W));
            // SAFETY: `n >= W`, so `[0, W)` and `[n - W, n)` are inside `buf`; unaligned loads accept any address.
            let (head, tail) = unsafe { ($loadu(p as *const $V), $loadu(p.add(n - W) as *const $V)) };
            let mut i = a;
            while i + 4 * W <= n {
                // SAFETY: `[i, i + 4W)` is inside `buf` (loop condition) and `p + i` is `W`-aligned (`i = a + jW`).
                unsafe {
                    let q = p.add(i) as *mut $V;
                    let v0 = $load(q);
                    let v1 = $load(q.add(1));
                    let v2 = $load(q.add(2));
                    let v3 = $load(q.add(3));
                    $store(q, $xor(v0, k_body));
                    $store(q.add(1), $xor(v1, k_body));
                    $store(q.add(2), $xor(v2, k_body));
                    $store(q.add(3), $xor(v3, k_body));
                }
                i += 4 * W;
            }
            while i + W <= n {
                // SAFETY: `[i, i + W)` is inside `buf` and `p + i` is `W`-aligned, as above.
                unsafe {
                    let q = p.add(i) as *mut $V;
                    $store(q, $xor($load(q), k_body));
                }
                i += W;
            }
            // SAFETY: same ranges as the loads above; unaligned stores accept any address.
            unsafe {
                $storeu(p as *mut $V, $xor(head, k_head));
                $storeu(p.add(n - W) as *mut $V, $xor(tail, k_tail));
            }
        }
    };
}

/// Below 16 bytes: overlapping words. Same signature as the vector kernels so it can be the SSE2 kernel's `narrower`.
// SAFETY: no precondition (safe code inside); `unsafe` only to match the kernels' signature.
#[inline(always)]
unsafe fn small(k: [u8; 4], buf: &mut [u8]) {
    mask_small(k, buf)
}

vector_kernel!(
    /// 16-byte SSE2 vectors.
    sse2, "sse2", 16, __m128i,
    splat: _mm_set1_epi32, loadu: _mm_loadu_si128, load: _mm_load_si128, storeu: _mm_storeu_si128,
    store: _mm_store_si128, xor: _mm_xor_si128, narrower: small
);

vector_kernel!(
    /// 32-byte AVX2 vectors.
    avx2, "avx2", 32, __m256i,
    splat: _mm256_set1_epi32, loadu: _mm256_loadu_si256, load: _mm256_load_si256, storeu: _mm256_storeu_si256,
    store: _mm256_store_si256, xor: _mm256_xor_si256, narrower: sse2
);

vector_kernel!(
    /// 64-byte AVX-512F vectors (no masked stores: the same overlapping head/tail as the others).
    avx512, "avx512f", 64, __m512i,
    splat: _mm512_set1_epi32, loadu: _mm512_loadu_si512, load: _mm512_load_si512, storeu: _mm512_storeu_si512,
    store: _mm512_store_si512, xor: _mm512_xor_si512, narrower: avx2
);

// Safe wrappers with the public `Kernel` signature (key + phase). Handed out by `super::kernels` only after the
// feature was detected, which is what makes them sound to call.

pub(super) fn sse2_kernel(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe { sse2(rotate(key, phase), buf) }
}

pub(super) fn avx2_kernel(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    // SAFETY: only reachable through `kernels::avx2()`, which returns it only when AVX2 was detected.
    unsafe { avx2(rotate(key, phase), buf) }
}

pub(super) fn avx512_kernel(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    // SAFETY: only reachable through `kernels::avx512()`, which returns it only when AVX-512F was detected.
    unsafe { avx512(rotate(key, phase), buf) }
}

/// A kernel on a pre-rotated key, as stored in the dispatch slot.
type Raw = fn([u8; 4], &mut [u8]);

fn raw_sse2(k: [u8; 4], buf: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe { sse2(k, buf) }
}

fn raw_avx2(k: [u8; 4], buf: &mut [u8]) {
    // SAFETY: stored in `SLOT` by `detect` only after AVX2 was detected; never called otherwise.
    unsafe { avx2(k, buf) }
}

/// The chosen kernel. Starts as `detect`, which replaces itself on first call; racing first calls all store the same
/// pointer, so `Relaxed` is enough (a stale read just runs `detect` once more).
static SLOT: AtomicPtr<()> = AtomicPtr::new(detect as Raw as *mut ());

fn choose() -> Raw {
    if std::is_x86_feature_detected!("avx2") {
        raw_avx2
    } else {
        raw_sse2
    }
}

fn detect(k: [u8; 4], buf: &mut [u8]) {
    let f = choose();
    SLOT.store(f as *mut (), Ordering::Relaxed);
    f(k, buf)
}

#[inline(always)]
pub(super) fn dispatched(k: [u8; 4], buf: &mut [u8]) {
    let p = SLOT.load(Ordering::Relaxed);
    // SAFETY: `SLOT` only ever holds `Raw` function pointers (`detect`, `raw_sse2`, `raw_avx2`) cast to `*mut ()`.
    let f = unsafe { std::mem::transmute::<*mut (), Raw>(p) };
    f(k, buf)
}

pub(super) fn selected_name() -> &'static str {
    if cfg!(target_feature = "avx2") || std::is_x86_feature_detected!("avx2") {
        "avx2"
    } else {
        "sse2"
    }
}
