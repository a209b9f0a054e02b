//! Frame header encoding and decoding (RFC 6455 section 5.2).
//!
//! Encoding writes into caller-provided buffers (`encode_header`, `write_frame`, `write_client_frame`). Decoding is split
//! into two pure steps so a caller can resume it over any split of the input: [`header_len`] says from the first two
//! bytes how long the whole header is, and [`decode_header`] parses a complete header. Policy checks (role, RSV bits,
//! opcode sequencing, limits) live in [`super::connection::Connection`].

use crate::mask::apply_mask;

/// Largest possible frame header: 2 + 8 (length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// The opcode for a raw 4-bit value, `None` for the reserved ones (3-7, 0xB-0xF).
    #[inline]
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }
}

/// A decoded frame header. `opcode` is the raw 4-bit value (it may be a reserved one); `rsv` holds the RSV bits in
/// their wire position (`0x40` = RSV1, `0x20` = RSV2, `0x10` = RSV3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// A structurally malformed header (both are protocol errors, close code 1002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A 16-bit length below 126 or a 64-bit length below 65536 (RFC 6455 5.2: "the minimal number of bytes MUST be
    /// used").
    NonMinimalLength,
    /// A 64-bit length with the most significant bit set.
    LengthMsbSet,
}

/// Total header length (2..=14) implied by the second header byte (length indicator and MASK bit).
#[inline(always)]
pub(super) fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + (((b1 >> 7) as usize) << 2)
}

/// Parse a header from the start of `buf`. `Ok(None)` if `buf` does not hold the whole header yet; otherwise the header
/// and its length in bytes.
#[inline]
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let need = header_len(buf[1]);
    if buf.len() < need {
        return Ok(None);
    }
    decode_complete_header(&buf[..need]).map(|h| Some((h, need)))
}

/// Parse a header; `buf.len()` must equal `header_len(buf[1])` (callers guarantee it; a shorter `buf` is reported
/// as `NonMinimalLength` rather than panicking).
#[inline(always)]
pub(crate) fn decode_complete_header(buf: &[u8]) -> Result<FrameHeader, HeaderError> {
    let b0 = buf[0];
    let b1 = buf[1];
    let (payload_len, off) = match b1 & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Err(HeaderError::NonMinimalLength);
            };
            let len = u16::from_be_bytes([b[0], b[1]]) as u64;
            if len < 126 {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Err(HeaderError::NonMinimalLength);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            let len = u64::from_be_bytes(a);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthMsbSet);
            }
            if len < 65536 {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(k) = buf.get(off..off + 4) else {
            return Err(HeaderError::NonMinimalLength);
        };
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        mask,
        payload_len,
    })
}

/// Write a frame header into `out`; returns its length (2..=14). `mask: Some(key)` sets the MASK bit (client frames).
/// `payload_len` must be below 2^63 (no buffer is that large).
#[inline]
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    encode_header_rsv(out, fin, 0, opcode, payload_len, mask)
}

/// Like [`encode_header`], also setting the RSV bits given in their wire position (`0x40` = RSV1, for an extension
/// such as permessage-deflate; other bits of `rsv` are ignored).
#[inline]
pub fn encode_header_rsv(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = ((fin as u8) << 7) | (rsv & 0x70) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if payload_len <= 0xFFFF {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(k) = mask {
        out[n..n + 4].copy_from_slice(&k);
        n += 4;
    }
    n
}

/// Append a complete unmasked (server) frame.
#[inline]
pub fn write_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, None);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Append a complete masked (client) frame with `key`.
#[inline]
pub fn write_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    key: [u8; 4],
) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(key));
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(key, 0, &mut out[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_match_encoder() {
        for len in [0u64, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut h = [0u8; MAX_HEADER_LEN];
                let n = encode_header(&mut h, true, OpCode::Binary, len, mask);
                assert_eq!(header_len(h[1]), n, "len {len}");
                let (d, m) = decode_header(&h[..n]).unwrap().unwrap();
                assert_eq!(m, n);
                assert_eq!(d.payload_len, len);
                assert_eq!(d.mask, mask);
                assert!(d.fin);
                assert_eq!(d.opcode, 2);
                assert_eq!(decode_header(&h[..n - 1]).unwrap(), None);
            }
        }
    }
}
