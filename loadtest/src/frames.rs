//! Payloads, precomputed masked client frames, and a minimal parser for (unmasked) server frame headers.
//!
//! Every echo payload is `size` ASCII bytes: the first `min(size, 16)` bytes are the low hex digits of a per-connection
//! sequence number, the rest a fixed pattern (`a..z` repeated). ASCII keeps text frames valid UTF-8 and lets the
//! checker verify the whole content of every echo, in order.
//!
//! Each connection masks with its own random key. Its frame is built once ([`FrameTemplate`]); sending a message
//! copies the template and patches only the masked sequence digits, so the per-message cost is a memcpy plus 16 XORs.

use ringws::proto::{decode_header, encode_header, write_client_frame, OpCode, MAX_HEADER_LEN};

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
    /// Non-minimal length encoding or 64-bit length with the top bit set.
    Length,
}

/// Largest frame the client accepts from a server.
pub const MAX_SERVER_FRAME: usize = 64 << 20;

/// Parse a server frame header at the start of `b` (ringws' `decode_header`) and apply the client-side rules: no
/// mask, no RSV bits (no extension is negotiated), known opcode, control frames unfragmented and <= 125 bytes.
/// `Ok(None)`: need more bytes.
///
/// This is the client's hot path: a few branches on two to ten bytes. Assembly of fragmented messages, ping/pong and
/// close sit in the reactor (see the crate docs for why the client does not run `proto::Connection` per message).
#[inline]
pub fn parse_server_header(b: &[u8]) -> Result<Option<ServerHeader>, HeaderError> {
    let (h, header_len) = match decode_header(b) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(_) => return Err(HeaderError::Length),
    };
    if h.rsv != 0 {
        return Err(HeaderError::Reserved);
    }
    if h.mask.is_some() {
        return Err(HeaderError::Masked);
    }
    match h.opcode {
        0x0..=0x2 => {}
        0x8..=0xA => {
            if !h.fin || h.payload_len > 125 {
                return Err(HeaderError::BadControl);
            }
        }
        _ => return Err(HeaderError::BadOpcode),
    }
    if h.payload_len > MAX_SERVER_FRAME as u64 {
        return Err(HeaderError::TooLarge);
    }
    Ok(Some(ServerHeader {
        fin: h.fin,
        opcode: h.opcode,
        header_len,
        payload_len: h.payload_len as usize,
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
        assert_eq!(
            parse_server_header(&[0x81, 0x85, 1, 2, 3, 4]),
            Err(HeaderError::Masked)
        );
        assert_eq!(parse_server_header(&[0xC1, 5]), Err(HeaderError::Reserved));
        assert_eq!(parse_server_header(&[0x83, 5]), Err(HeaderError::BadOpcode));
        assert_eq!(
            parse_server_header(&[0x09, 5]),
            Err(HeaderError::BadControl)
        );
    }

    /// Decode client bytes with the ringws server-side core; returns the data messages.
    fn decode_as_server(mut wire: Vec<u8>) -> Vec<(bool, Vec<u8>)> {
        use ringws::proto::{Connection, Event, Limits, Role};
        let mut conn = Connection::new(Role::Server, Limits::default());
        let mut out = Vec::new();
        conn.handle_read(&mut wire, &mut |ev| match ev {
            Event::Text(t) => out.push((true, t.as_bytes().to_vec())),
            Event::Binary(b) => out.push((false, b.to_vec())),
            other => panic!("unexpected event {other:?}"),
        })
        .expect("valid client frames");
        out
    }

    #[test]
    fn templates_decode_with_ringws() {
        for &size in &[0usize, 1, 15, 16, 20, 125, 126, 1024, 65535, 65536, 70000] {
            for &(op, text) in &[(OpCode::Text, true), (OpCode::Binary, false)] {
                let pat = make_payload(size);
                let key = [0x12, 0x34, 0x56, (size & 0xff) as u8 | 1];
                let t = FrameTemplate::new(&pat, op, key);
                let mut wire = Vec::new();
                for seq in [0u64, 1, 0xdead_beef, u64::MAX - 1] {
                    t.write(&mut wire, seq);
                }
                assert_eq!(wire.len(), 4 * t.len());
                // The payload on the wire is masked (unless it is all zero-length).
                if size >= 20 {
                    assert_ne!(&wire[t.len() - size..t.len()], &pat[..]);
                }
                let msgs = decode_as_server(wire);
                assert_eq!(msgs.len(), 4);
                for (m, seq) in msgs.iter().zip([0u64, 1, 0xdead_beef, u64::MAX - 1]) {
                    assert_eq!(m.0, text);
                    assert!(verify_payload(&m.1, &pat, seq), "size {size} seq {seq}");
                }
            }
        }
    }

    #[test]
    fn control_frames_decode_with_ringws() {
        use ringws::proto::{Connection, Event, Limits, Role};
        let key = [9, 8, 7, 6];
        let mut wire = Vec::new();
        write_pong(&mut wire, b"hi", key);
        write_client_frame_text(&mut wire, b"{\"type\":\"join\"}", key);
        write_close(&mut wire, key);
        let mut conn = Connection::new(Role::Server, Limits::default());
        let mut seen = Vec::new();
        conn.handle_read(&mut wire, &mut |ev| {
            seen.push(match ev {
                Event::Pong(p) => format!("pong:{}", String::from_utf8_lossy(p)),
                Event::Text(t) => format!("text:{t}"),
                Event::Close { code, .. } => format!("close:{code:?}"),
                other => format!("{other:?}"),
            })
        })
        .unwrap();
        assert_eq!(
            seen,
            ["pong:hi", "text:{\"type\":\"join\"}", "close:Some(1000)"]
        );
    }

    #[test]
    fn server_frames_parse() {
        let mut w = Vec::new();
        ringws::proto::write_frame(&mut w, true, OpCode::Binary, &[7u8; 300]);
        let h = parse_server_header(&w).unwrap().unwrap();
        assert_eq!((h.opcode, h.header_len, h.payload_len), (2, 4, 300));
        // A masked (client) frame is refused.
        let mut m = Vec::new();
        write_client_frame_text(&mut m, b"x", [1, 2, 3, 4]);
        assert_eq!(parse_server_header(&m), Err(HeaderError::Masked));
    }
}

/// Cost of the two ways to decode server frames, per 20-byte message (run with
/// `cargo test --release -p loadtest decode_cost -- --ignored --nocapture`).
#[cfg(test)]
mod cost {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn decode_cost() {
        let pat = make_payload(20);
        let mut wire = Vec::new();
        for seq in 0..64u64 {
            let mut p = pat.clone();
            write_seq(&mut p[..16], seq);
            ringws::proto::write_frame(&mut wire, true, OpCode::Text, &p);
        }
        let rounds = 200_000u64;
        let t = Instant::now();
        let mut n = 0u64;
        for _ in 0..rounds {
            let mut pos = 0;
            let mut seq = 0;
            while let Ok(Some(h)) = parse_server_header(&wire[pos..]) {
                let p = &wire[pos + h.header_len..pos + h.header_len + h.payload_len];
                n += verify_payload(p, &pat, seq) as u64;
                seq += 1;
                pos += h.header_len + h.payload_len;
            }
        }
        let fast = t.elapsed().as_nanos() as f64 / (rounds * 64) as f64;
        assert_eq!(n, rounds * 64);
        let t = Instant::now();
        let mut n = 0u64;
        let mut conn = ringws::proto::Connection::new(
            ringws::proto::Role::Client,
            ringws::proto::Limits::default(),
        );
        let mut buf = wire.clone();
        for _ in 0..rounds {
            buf.copy_from_slice(&wire);
            let mut seq = 0;
            conn.handle_read(&mut buf, &mut |ev| {
                if let ringws::proto::Event::Text(t) = ev {
                    n += verify_payload(t.as_bytes(), &pat, seq) as u64;
                    seq += 1;
                }
            })
            .unwrap();
        }
        let core = t.elapsed().as_nanos() as f64 / (rounds * 64) as f64;
        assert_eq!(n, rounds * 64);
        eprintln!("decode+verify per 20 B message: header parse {fast:.1} ns, proto::Connection {core:.1} ns");
    }
}
