//! Payloads, precomputed masked client frames, and a minimal parser for (unmasked) server frame headers.
//!
//! Every echo payload is `size` ASCII bytes: the first `min(size, 16)` bytes are the low hex digits of a per-connection
//! sequence number, the rest a fixed pattern (`a..z` repeated). ASCII keeps text frames valid UTF-8 and lets the
//! checker verify the whole content of every echo, in order.
//!
//! Each connection masks with its own random key. Its frame is built once ([`FrameTemplate`]); sending a message
//! copies the template and patches only the masked sequence digits, so the per-message cost is a memcpy plus 16 XORs.

use crate::wsframe::{encode_header, write_client_frame, OpCode, MAX_HEADER_LEN};

/// How many leading payload bytes carry the sequence number (hex digits).
pub fn seq_len(size: usize) -> usize {
    size.min(16)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Write the low `dst.len()` hex digits of `seq`, most significant first (fixed width).
#[inline]
pub fn write_seq(dst: &mut [u8], seq: u64) {
    let n = dst.len();
    for (i, d) in dst.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *d = if shift >= 64 {
            b'0'
        } else {
            HEX[((seq >> shift) & 0xf) as usize]
        };
    }
}

/// Parse fixed-width lower-case hex digits; None if any byte is not a hex digit.
#[inline]
pub fn read_hex(src: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in src {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// The unmasked payload pattern (sequence digits zero).
pub fn make_payload(size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let n = seq_len(size);
    write_seq(&mut p[..n], 0);
    p
}

/// Whether an echoed payload is the one sent with sequence number `seq`.
#[inline]
pub fn verify_payload(payload: &[u8], pattern: &[u8], seq: u64) -> bool {
    if payload.len() != pattern.len() {
        return false;
    }
    let n = seq_len(pattern.len());
    let mut digits = [0u8; 16];
    write_seq(&mut digits[..n], seq);
    payload[..n] == digits[..n] && payload[n..] == pattern[n..]
}

/// A connection's precomputed masked frame for the echo payload.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    frame: Box<[u8]>,
    hdr_len: u8,
    key: [u8; 4],
}

impl FrameTemplate {
    pub fn new(pattern: &[u8], opcode: OpCode, key: [u8; 4]) -> Self {
        let mut v = Vec::with_capacity(pattern.len() + MAX_HEADER_LEN);
        write_client_frame(&mut v, true, opcode, pattern, key);
        let hdr_len = (v.len() - pattern.len()) as u8;
        FrameTemplate {
            frame: v.into_boxed_slice(),
            hdr_len,
            key,
        }
    }

    /// Length of one frame on the wire.
    #[inline]
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    pub fn key(&self) -> [u8; 4] {
        self.key
    }

    /// Append the masked frame carrying sequence number `seq`.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, seq: u64) {
        let base = out.len() + self.hdr_len as usize;
        out.extend_from_slice(&self.frame);
        let n = seq_len(self.frame.len() - self.hdr_len as usize);
        let dst = &mut out[base..base + n];
        write_seq(dst, seq);
        // Digits start at payload offset 0, so mask phase 0.
        for (i, b) in dst.iter_mut().enumerate() {
            *b ^= self.key[i & 3];
        }
    }
}

/// Append a masked close frame (code 1000).
pub fn write_close(out: &mut Vec<u8>, key: [u8; 4]) {
    write_client_frame(out, true, OpCode::Close, &1000u16.to_be_bytes(), key);
}

/// Append a masked text frame.
pub fn write_client_frame_text(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    write_client_frame(out, true, OpCode::Text, payload, key);
}

/// Append a masked pong echoing `payload`.
pub fn write_pong(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    write_client_frame(out, true, OpCode::Pong, payload, key);
}

/// Append a masked frame header only (payload to be appended, masked, by the caller).
pub fn write_header(out: &mut Vec<u8>, opcode: OpCode, len: usize, key: [u8; 4]) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, true, opcode, len as u64, Some(key));
    out.extend_from_slice(&h[..n]);
}

/// A parsed server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHeader {
    pub fin: bool,
    /// Raw opcode nibble.
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Why a server frame header is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// RSV bits set (no extension negotiated).
    Reserved,
    /// Server frames must not be masked.
    Masked,
    /// Unknown opcode.
    BadOpcode,
    /// Control frame fragmented or longer than 125 bytes.
    BadControl,
    /// Length larger than the client accepts.
    TooLarge,
}

/// Largest frame the client accepts from a server.
pub const MAX_SERVER_FRAME: usize = 64 << 20;

/// Parse a server frame header at the start of `b`. `Ok(None)`: need more bytes.
///
/// This is the client's hot path: a few branches on two to ten bytes. Message assembly, ping/pong and close handling
/// sit in the reactor; the full RFC 6455 state machine is `ringws::proto::Connection` (see the crate README for why the
/// client does not run it per message).
#[inline]
pub fn parse_server_header(b: &[u8]) -> Result<Option<ServerHeader>, HeaderError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let b0 = b[0];
    let b1 = b[1];
    if b0 & 0x70 != 0 {
        return Err(HeaderError::Reserved);
    }
    if b1 & 0x80 != 0 {
        return Err(HeaderError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        0x0..=0x2 => {}
        0x8..=0xA => {
            if !fin || (b1 & 0x7f) > 125 {
                return Err(HeaderError::BadControl);
            }
        }
        _ => return Err(HeaderError::BadOpcode),
    }
    let (header_len, payload_len) = match b1 & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as u64)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(a))
        }
        n => (2, n as u64),
    };
    if payload_len > MAX_SERVER_FRAME as u64 {
        return Err(HeaderError::TooLarge);
    }
    Ok(Some(ServerHeader {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_digits_roundtrip() {
        let mut d = [0u8; 16];
        for &s in &[0u64, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            write_seq(&mut d, s);
            assert_eq!(read_hex(&d), Some(s));
        }
        let mut d4 = [0u8; 4];
        write_seq(&mut d4, 0x12345);
        assert_eq!(&d4, b"2345");
        assert_eq!(read_hex(b"xy"), None);
    }

    #[test]
    fn payload_verify() {
        for size in [0usize, 1, 5, 16, 20, 1024] {
            let pat = make_payload(size);
            assert_eq!(pat.len(), size);
            let mut p = pat.clone();
            let n = seq_len(size);
            write_seq(&mut p[..n], 77);
            assert!(verify_payload(&p, &pat, 77));
            if size > 0 {
                assert!(!verify_payload(&p, &pat, 78) || n == 0);
            }
            if size > 16 {
                p[size - 1] ^= 1;
                assert!(!verify_payload(&p, &pat, 77));
            }
            assert!(std::str::from_utf8(&p).is_ok());
        }
    }

    #[test]
    fn header_parse() {
        assert_eq!(parse_server_header(&[0x81]), Ok(None));
        assert_eq!(
            parse_server_header(&[0x81, 5]),
            Ok(Some(ServerHeader {
                fin: true,
                opcode: 1,
                header_len: 2,
                payload_len: 5
            }))
        );
        assert_eq!(parse_server_header(&[0x82, 126, 1]), Ok(None));
        assert_eq!(
            parse_server_header(&[0x82, 126, 1, 0])
                .unwrap()
                .unwrap()
                .payload_len,
            256
        );
        let mut h = vec![0x02, 127];
        h.extend_from_slice(&65536u64.to_be_bytes());
        let p = parse_server_header(&h).unwrap().unwrap();
        assert_eq!((p.fin, p.header_len, p.payload_len), (false, 10, 65536));
        assert_eq!(parse_server_header(&[0x81, 0x85]), Err(HeaderError::Masked));
        assert_eq!(parse_server_header(&[0xC1, 5]), Err(HeaderError::Reserved));
        assert_eq!(parse_server_header(&[0x83, 5]), Err(HeaderError::BadOpcode));
        assert_eq!(
            parse_server_header(&[0x09, 5]),
            Err(HeaderError::BadControl)
        );
    }
}
