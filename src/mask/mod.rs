//! XOR (un)masking of WebSocket payloads (RFC 6455 section 5.3).
//!
//! CONTRACT (other modules rely on it): `apply_mask(key, phase, buf)` XORs `buf[i]` with `key[(phase + i) % 4]`.
//! `phase` is the number of payload bytes of this frame already processed (only `phase % 4` matters), so a frame
//! split over several reads is unmasked piecewise with the same result as unmasking it whole.
//!
//! # Kernels
//! - [`apply_mask_scalar`]: the byte-at-a-time reference every other kernel is tested (and fuzzed) against.
//! - `word`: portable u64 words; the only fast kernel on non-x86_64 targets.
//! - `sse2` / `avx2` / `avx512` (x86_64): one `#[target_feature]` kernel per instruction set, all from one template
//!   (`x86.rs`): the key is rotated by the phase, the first and last vector are loaded unaligned *before* anything is
//!   stored, the body in between runs on aligned vectors (a misaligned body loses 20-25% to split stores), and the
//!   head/tail vectors are stored last, overlapping the body. Any length >= the vector width is covered without a
//!   scalar tail; shorter inputs fall to the next narrower kernel.
//!
//! # Dispatch
//! Inputs shorter than [`SMALL`] bytes never dispatch: two overlapping u64 (or u32) XORs, inlined at the call site.
//! Longer inputs call a function pointer chosen on first use and cached in an atomic (one relaxed load + an indirect
//! call per frame, no CPUID per call). Choice: AVX2 if the CPU has it, else SSE2. The AVX-512 kernel is *not* chosen:
//! on Zen 4 (see DESIGN.md) the bottleneck is the L1 store rate and 64-byte stores are issued as two 32-byte halves,
//! so AVX-512 adds nothing and raises the minimum length of the vector path to 64 bytes; on the CPUs where it might
//! win (Intel server parts), 512-bit use can lower clocks for the whole core. It stays available in [`kernels`] for
//! measurement. When the crate is compiled with AVX2 enabled (`-C target-cpu=native`), the AVX2 kernel is called
//! directly, with no dispatch at all.

// The kernel table (`kernels`, feature `internals`) is the only user of some kernels and of `selected_name`.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod x86;

/// Inputs shorter than this are masked inline with word operations, without going through dispatch.
pub const SMALL: usize = 16;

/// A kernel with the [`apply_mask`] contract: `buf[i] ^= key[(phase + i) % 4]`.
pub type Kernel = fn([u8; 4], usize, &mut [u8]);

/// XOR `buf` with the masking key, starting at key position `phase % 4`.
#[inline]
pub fn apply_mask(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    let k = rotate(key, phase);
    if buf.len() < SMALL {
        mask_small(k, buf);
    } else {
        dispatched(k, buf);
    }
}

/// The reference: one byte at a time. Every other kernel must equal it for every input.
pub fn apply_mask_scalar(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    let phase = phase & 3; // only `phase % 4` matters; avoids overflow for huge phases
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
}

/// The key as seen from byte `shift` of the buffer: `rotate(k, s)[i] == k[(s + i) % 4]`.
#[inline(always)]
fn rotate(k: [u8; 4], shift: usize) -> [u8; 4] {
    // Little-endian view: byte j of the word is k[j]; rotating right by 8s bits makes byte j = k[(j + s) % 4].
    let bits = 8 * (shift & 3) as u32;
    u32::from_le_bytes(k).rotate_right(bits).to_le_bytes()
}

/// Any length, but meant for < 16 bytes: two overlapping words, both loaded before either is stored. `k` is the key
/// already rotated to the phase of `buf[0]`.
#[inline(always)]
fn mask_small(k: [u8; 4], buf: &mut [u8]) {
    let n = buf.len();
    if n >= 8 {
        let t = n - 8;
        let kh = u64::from_ne_bytes(word8(k));
        let kt = u64::from_ne_bytes(word8(rotate(k, t)));
        let head = u64::from_ne_bytes(buf[..8].try_into().unwrap());
        let tail = u64::from_ne_bytes(buf[t..].try_into().unwrap());
        buf[..8].copy_from_slice(&(head ^ kh).to_ne_bytes());
        buf[t..].copy_from_slice(&(tail ^ kt).to_ne_bytes());
        if n > 16 {
            // Only reached when called on longer input: the middle words.
            mask_words(k, &mut buf[8..t]);
        }
    } else if n >= 4 {
        let t = n - 4;
        let kh = u32::from_ne_bytes(k);
        let kt = u32::from_ne_bytes(rotate(k, t));
        let head = u32::from_ne_bytes(buf[..4].try_into().unwrap());
        let tail = u32::from_ne_bytes(buf[t..].try_into().unwrap());
        buf[..4].copy_from_slice(&(head ^ kh).to_ne_bytes());
        buf[t..].copy_from_slice(&(tail ^ kt).to_ne_bytes());
    } else {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= k[i];
        }
    }
}

#[inline(always)]
fn word8(k: [u8; 4]) -> [u8; 8] {
    [k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]
}

/// Portable u64 word loop; `k` rotated to the phase of `buf[0]`. (On x86_64 the compiler turns this loop into
/// baseline SSE2, which is roughly where a plain-Rust masker like fastwebsockets' ends up.)
fn mask_words(k: [u8; 4], buf: &mut [u8]) {
    let kw = u64::from_ne_bytes(word8(k));
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ kw;
        c.copy_from_slice(&w.to_ne_bytes());
    }
    // Whole words consumed: the phase of the remainder is unchanged (8 % 4 == 0).
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
fn word_kernel(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    mask_words(rotate(key, phase), buf)
}

/// The cached kernel for inputs of at least [`SMALL`] bytes.
#[inline(always)]
fn dispatched(k: [u8; 4], buf: &mut [u8]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        // SAFETY: the crate is compiled with AVX2 enabled, so every CPU it runs on has AVX2.
        unsafe { x86::avx2(k, buf) }
    }
    #[cfg(all(target_arch = "x86_64", not(target_feature = "avx2")))]
    {
        x86::dispatched(k, buf)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mask_words(k, buf)
    }
}

/// Every kernel, for tests, benches and fuzzing. All have the [`apply_mask`] contract (including `phase`), work for
/// every length (falling back to narrower code below their vector width), and are `None` where the CPU or the target
/// lacks the instruction set. Exposed with the `internals` feature (not a stable API).
#[cfg(feature = "internals")]
pub mod kernels {
    use super::Kernel;

    /// The byte-at-a-time reference.
    pub fn scalar() -> Kernel {
        super::apply_mask_scalar
    }

    /// Portable u64 words.
    pub fn word() -> Kernel {
        super::word_kernel
    }

    /// 16-byte vectors (always present on x86_64).
    pub fn sse2() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        return Some(super::x86::sse2_kernel);
        #[cfg(not(target_arch = "x86_64"))]
        return None;
    }

    /// 32-byte vectors, if the CPU has AVX2.
    pub fn avx2() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        return std::is_x86_feature_detected!("avx2").then_some(super::x86::avx2_kernel as Kernel);
        #[cfg(not(target_arch = "x86_64"))]
        return None;
    }

    /// 64-byte vectors, if the CPU has AVX-512F.
    pub fn avx512() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        return std::is_x86_feature_detected!("avx512f")
            .then_some(super::x86::avx512_kernel as Kernel);
        #[cfg(not(target_arch = "x86_64"))]
        return None;
    }

    /// Every kernel available here, by name (`scalar` first).
    pub fn all() -> Vec<(&'static str, Kernel)> {
        let mut v = vec![("scalar", scalar()), ("word", word())];
        v.extend(sse2().map(|k| ("sse2", k)));
        v.extend(avx2().map(|k| ("avx2", k)));
        v.extend(avx512().map(|k| ("avx512", k)));
        v
    }

    /// The name of the kernel [`apply_mask`](super::apply_mask) uses for inputs of at least
    /// [`SMALL`](super::SMALL) bytes.
    pub fn selected() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        return super::x86::selected_name();
        #[cfg(not(target_arch = "x86_64"))]
        return "word";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_matches_contract() {
        let k = [1, 2, 3, 4];
        for s in 0..8 {
            let r = rotate(k, s);
            for (i, &b) in r.iter().enumerate() {
                assert_eq!(b, k[(s + i) % 4]);
            }
        }
    }

    #[test]
    fn small_and_words_match_scalar() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for n in 0..64 {
            for phase in 0..4 {
                let orig: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
                let mut want = orig.clone();
                apply_mask_scalar(key, phase, &mut want);
                let mut a = orig.clone();
                mask_small(rotate(key, phase), &mut a);
                assert_eq!(a, want, "small n={n} phase={phase}");
                let mut b = orig.clone();
                word_kernel(key, phase, &mut b);
                assert_eq!(b, want, "word n={n} phase={phase}");
            }
        }
    }
}
