//! XOR (un)masking of WebSocket payloads (RFC 6455 section 5.3).
//!
//! CONTRACT (other modules rely on it): `apply_mask(key, phase, buf)` XORs `buf[i]` with `key[(phase + i) % 4]`.
//! `phase` is the number of payload bytes of this frame already processed (only `phase % 4` matters), so a frame
//! split over several reads is unmasked piecewise with the same result as unmasking it whole.

/// XOR `buf` with the masking key, starting at key position `phase % 4`.
#[inline]
pub fn apply_mask(key: [u8; 4], phase: usize, buf: &mut [u8]) {
    // Placeholder: scalar reference; replaced by the dispatched SIMD kernels.
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
}
