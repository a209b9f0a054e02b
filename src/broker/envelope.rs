//! The envelope every message carries through Redis: who published it and where it sits in that publisher's
//! stream. Pure: bytes in, a parsed view or a reason out; never panics on what arrives from the broker.
//!
//! Layout (22 bytes, then the payload as published, unframed):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, `1` |
//! | 1 | 1 | kind and flags: bit 0 text, bits 4..8 kind (`0` data, `1` probe), other bits zero |
//! | 2 | 8 | origin node id, little endian |
//! | 10 | 4 | origin epoch (a node's sequence table restarted), little endian |
//! | 14 | 8 | sequence within (origin, epoch, topic), from 1, little endian |
//!
//! A text payload is checked to be UTF-8 on the way in: a foreign publisher on the same Redis must not make this
//! node send invalid text frames to its clients.

use std::fmt;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 22;
const VERSION: u8 = 1;
const FLAG_TEXT: u8 = 0x01;
const KIND_SHIFT: u8 = 4;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An application publish.
    Data,
    /// A liveness probe a node sends to itself; `seq` is the probe token.
    Probe,
}

/// The fixed part of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Data or probe.
    pub kind: Kind,
    /// The payload is a text message (UTF-8).
    pub is_text: bool,
    /// The publishing node's id.
    pub origin: u64,
    /// The publisher's sequence-table generation.
    pub epoch: u32,
    /// Position in the (origin, epoch, topic) stream, from 1; the token for a probe.
    pub seq: u64,
}

/// Why bytes from the broker are not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Shorter than the header.
    Truncated,
    /// Another version or a reserved bit set (a foreign or newer publisher).
    Unknown,
    /// Marked text but the payload is not UTF-8.
    BadUtf8,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvelopeError::Truncated => "envelope shorter than its header",
            EnvelopeError::Unknown => "unknown envelope version or flags",
            EnvelopeError::BadUtf8 => "text payload is not UTF-8",
        })
    }
}

impl std::error::Error for EnvelopeError {}

/// Append the envelope for `payload` to `out`.
pub fn encode(h: &Header, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + payload.len());
    let kind = match h.kind {
        Kind::Data => 0u8,
        Kind::Probe => 1u8,
    };
    out.push(VERSION);
    out.push((kind << KIND_SHIFT) | if h.is_text { FLAG_TEXT } else { 0 });
    out.extend_from_slice(&h.origin.to_le_bytes());
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parse an envelope; the payload is the rest of `buf` (checked to be UTF-8 when marked text).
pub fn decode(buf: &[u8]) -> Result<(Header, &[u8]), EnvelopeError> {
    if buf.len() < HEADER_LEN {
        return Err(EnvelopeError::Truncated);
    }
    if buf[0] != VERSION {
        return Err(EnvelopeError::Unknown);
    }
    let flags = buf[1];
    let kind = match flags >> KIND_SHIFT {
        0 => Kind::Data,
        1 => Kind::Probe,
        _ => return Err(EnvelopeError::Unknown),
    };
    if flags & 0x0f & !FLAG_TEXT != 0 {
        return Err(EnvelopeError::Unknown);
    }
    let is_text = flags & FLAG_TEXT != 0;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let mut e = [0u8; 4];
    e.copy_from_slice(&buf[10..14]);
    let header = Header {
        kind,
        is_text,
        origin: u64_at(2),
        epoch: u32::from_le_bytes(e),
        seq: u64_at(14),
    };
    let payload = &buf[HEADER_LEN..];
    if is_text && simdutf8::basic::from_utf8(payload).is_err() {
        return Err(EnvelopeError::BadUtf8);
    }
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(origin: u64, seq: u64, is_text: bool) -> Header {
        Header {
            kind: Kind::Data,
            is_text,
            origin,
            epoch: 3,
            seq,
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        for (h, p) in [
            (data(1, 1, true), &b"hello"[..]),
            (data(u64::MAX, u64::MAX, false), &[0u8, 255, 7][..]),
            (
                Header {
                    kind: Kind::Probe,
                    is_text: false,
                    origin: 0xdead_beef,
                    epoch: u32::MAX,
                    seq: 9,
                },
                &b""[..],
            ),
        ] {
            let mut buf = Vec::new();
            encode(&h, p, &mut buf);
            assert_eq!(buf.len(), HEADER_LEN + p.len());
            assert_eq!(decode(&buf), Ok((h, p)));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode(&data(5, 6, true), b"abc", &mut buf);
        for n in 0..HEADER_LEN {
            assert_eq!(decode(&buf[..n]), Err(EnvelopeError::Truncated), "len {n}");
        }
        assert!(decode(&buf[..HEADER_LEN]).is_ok(), "empty payload is fine");
    }

    #[test]
    fn foreign_versions_and_reserved_bits_are_refused() {
        let mut buf = Vec::new();
        encode(&data(5, 6, false), b"x", &mut buf);
        let mut v = buf.clone();
        v[0] = 2;
        assert_eq!(decode(&v), Err(EnvelopeError::Unknown));
        for bad_flags in [0x02u8, 0x08, 0x20, 0xf0] {
            let mut v = buf.clone();
            v[1] = bad_flags;
            assert_eq!(
                decode(&v),
                Err(EnvelopeError::Unknown),
                "flags {bad_flags:#x}"
            );
        }
        // A plain string someone PUBLISHed by hand.
        assert!(decode(b"hello from redis-cli, long enough").is_err());
    }

    #[test]
    fn text_must_be_utf8_binary_need_not() {
        let mut buf = Vec::new();
        encode(&data(1, 1, true), &[0xff, 0xfe], &mut buf);
        assert_eq!(decode(&buf), Err(EnvelopeError::BadUtf8));
        buf.clear();
        encode(&data(1, 1, false), &[0xff, 0xfe], &mut buf);
        assert!(decode(&buf).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
