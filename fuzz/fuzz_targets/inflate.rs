//! permessage-deflate: a differential round trip and a differential inflate.
//!
//! Input layout: byte 0 = flags (bits 0-2: window bits - 8, bits 3-4: level 1/2/6/9, bit 5: text, bit 6: raw mode),
//! byte 1 = number of chunk sizes (mod 8), then that many chunk sizes (each byte + 1), then the data.
//!
//! - Round trip (bit 6 clear): the data is compressed by `Deflater` (the server's shared path) and by a
//!   `DedicatedDeflater` (twice, so the second message refers to the first), framed as client messages fragmented by
//!   the chunk sizes, fed to a server `Connection` at those split points with the worker's `Inflater` (and a primed one
//!   for the context stream), and must come back byte-identical (as text when valid UTF-8 and bit 5 set).
//! - Raw (bit 6 set): the data is taken as a compressed payload and inflated with a small limit by `Inflater` and by
//!   miniz_oxide; whatever both accept must decode to the same bytes, a "too big" from zlib-rs must not be a short
//!   message to miniz_oxide, and the output never passes the limit. Panics are failures in both modes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use ringws::deflate::{DedicatedDeflater, Deflater, InflateHistory, Inflater};
use ringws::proto::encode_header_rsv;
use ringws::proto::{Connection, DecompressError, Decompressor, Event, Limits, OpCode, Role};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
const RAW_LIMIT: usize = 64 << 10;

/// Client frames for one message: `payload` cut by `chunks`, RSV1 on the first frame when `compressed`.
fn frames(op: OpCode, data: &[u8], deflated: Option<&[u8]>, chunks: &[usize]) -> Vec<u8> {
    let (payload, compressed) = match deflated {
        Some(z) => (z, true),
        None => (data, false),
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut k = 0;
    loop {
        let step = chunks
            .get(k % chunks.len().max(1))
            .copied()
            .unwrap_or(usize::MAX);
        let end = pos.saturating_add(step).min(payload.len());
        let fin = end == payload.len();
        let opc = if pos == 0 { op } else { OpCode::Continuation };
        let rsv = if pos == 0 && compressed { 0x40 } else { 0 };
        let mut h = [0u8; 14];
        let n = encode_header_rsv(&mut h, fin, rsv, opc, (end - pos) as u64, Some(KEY));
        out.extend_from_slice(&h[..n]);
        out.extend(
            payload[pos..end]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[i % 4]),
        );
        if fin {
            return out;
        }
        pos = end;
        k += 1;
    }
}

/// Feed `bytes` at the chunk sizes; collect messages as bytes (text marked by the bool).
fn feed(
    conn: &mut Connection,
    dec: &mut dyn Decompressor,
    bytes: &mut [u8],
    chunks: &[usize],
) -> Vec<(bool, Vec<u8>)> {
    let mut got = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < bytes.len() {
        let step = chunks
            .get(k % chunks.len().max(1))
            .copied()
            .unwrap_or(bytes.len());
        let end = (pos + step).min(bytes.len());
        let r = conn.handle_read_with(&mut bytes[pos..end], dec, &mut |e| match e {
            Event::Text(s) => got.push((true, s.as_bytes().to_vec())),
            Event::Binary(b) => got.push((false, b.to_vec())),
            other => panic!("unexpected event {other:?}"),
        });
        r.expect("a message we compressed must be accepted");
        pos = end;
        k += 1;
    }
    got
}

fuzz_target!(|input: &[u8]| {
    let [flags, n, rest @ ..] = input else {
        return;
    };
    let n = ((n & 7) as usize).min(rest.len());
    let chunks: Vec<usize> = rest[..n].iter().map(|&b| b as usize * 37 + 1).collect();
    let data = &rest[n..];
    let window_bits = 8 + (flags & 7);
    let level = [1u8, 2, 6, 9][((flags >> 3) & 3) as usize];

    if flags & 0x40 != 0 {
        let mut inf = Inflater::new();
        let mine = inf.inflate(data, false, RAW_LIMIT).map(|o| o.to_vec());
        assert!(
            inf.out_capacity() <= RAW_LIMIT + 1,
            "output buffer {}",
            inf.out_capacity()
        );
        let mut with_tail = data.to_vec();
        with_tail.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut r = DecompressorOxide::new();
        let mut buf = vec![0u8; RAW_LIMIT + 1];
        let flags = TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | TINFL_FLAG_HAS_MORE_INPUT;
        let (status, _, written) = decompress(&mut r, &with_tail, &mut buf, 0, flags);
        match mine {
            Ok(out) => {
                assert!(out.len() <= RAW_LIMIT);
                // A stream without a final block ends "needing more input": its output so far is the message. (Data
                // cut inside a block header is accepted by zlib-rs, which waits for more, and may be rejected by
                // miniz_oxide, which checks some headers sooner: only streams both accept are compared.)
                if matches!(status, TINFLStatus::Done | TINFLStatus::NeedsMoreInput) {
                    assert_eq!(out, &buf[..written], "zlib-rs and miniz_oxide disagree");
                }
            }
            Err(DecompressError::TooBig) => {
                // miniz_oxide must also run out of room (or fail the stream later on).
                assert!(
                    !matches!(status, TINFLStatus::Done | TINFLStatus::NeedsMoreInput)
                        || written > RAW_LIMIT,
                    "zlib-rs said too big, miniz_oxide made {written} bytes ({status:?})"
                );
            }
            Err(_) => {}
        }
        return;
    }

    let text = flags & 0x20 != 0 && std::str::from_utf8(data).is_ok();
    let op = if text { OpCode::Text } else { OpCode::Binary };
    let mut conn = Connection::new(Role::Server, Limits::default());
    conn.set_rsv1_allowed(true);
    let mut inf = Inflater::new();

    // Shared: one message, no context.
    let mut d = Deflater::new(window_bits, level);
    let mut z = Vec::new();
    let deflated = d.compress(data, &mut z).is_ok().then_some(&z[..]);
    let mut wire = frames(op, data, deflated, &chunks);
    let got = feed(&mut conn, &mut inf, &mut wire, &chunks);
    assert_eq!(got, [(text, data.to_vec())], "shared round trip");

    // Dedicated: the same data twice on one context stream (the second refers to the first).
    let mut dd = DedicatedDeflater::new(window_bits, level);
    let mut hist = InflateHistory::new(window_bits);
    let mut conn = Connection::new(Role::Server, Limits::default());
    conn.set_rsv1_allowed(true);
    for round in 0..2 {
        let mut z = Vec::new();
        let deflated = dd.compress(data, &mut z).is_ok().then_some(&z[..]);
        let mut wire = frames(op, data, deflated, &chunks);
        let got = feed(
            &mut conn,
            &mut inf.with_history(&mut hist),
            &mut wire,
            &chunks,
        );
        assert_eq!(
            got,
            [(text, data.to_vec())],
            "dedicated round trip, message {round}"
        );
    }
});
