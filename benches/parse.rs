//! Server-role decode (header parse + unmask + UTF-8 + event) of back-to-back masked frames, and frame encode.
//!
//! Every iteration decodes a fresh copy of the masked buffer (`iter_batched`): decoding unmasks in place, so running
//! twice over the same buffer would measure garbage (and store-to-load forwarding stalls).
//! Run: `cargo bench --bench parse` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringws::proto::{write_client_frame, write_frame};
use ringws::proto::{Connection, Event, Limits, OpCode, Role};

const SIZES: [usize; 3] = [20, 1024, 16 * 1024];
/// Bytes of frames per batch buffer (about 512 KiB: larger than L2 for the big sizes, realistic for a recv batch).
const BUF_TARGET: usize = 512 * 1024;

fn payload(len: usize, text: bool) -> Vec<u8> {
    if text {
        // Mostly ASCII with some multi-byte characters, like chat text.
        let s = "Hello, WebSocket! Привет мир, κόσμε. ";
        s.bytes().cycle().take(len).collect::<Vec<u8>>()
    } else {
        (0..len).map(|i| (i * 31 % 256) as u8).collect()
    }
}

/// `count` masked frames of `len` bytes; text payloads are cut so each frame is valid UTF-8 on its own.
fn masked_stream(len: usize, text: bool) -> (Vec<u8>, usize) {
    let mut p = payload(len, text);
    if text {
        while std::str::from_utf8(&p).is_err() {
            p.pop();
            p.push(b'.');
        }
    }
    let op = if text { OpCode::Text } else { OpCode::Binary };
    let count = (BUF_TARGET / (len + 8)).max(1);
    let mut out = Vec::with_capacity(count * (len + 14));
    for i in 0..count {
        let key = (0x9e37_79b9u32.wrapping_mul(i as u32 + 1)).to_le_bytes();
        write_client_frame(&mut out, true, op, &p, key);
    }
    (out, count)
}

fn decode_all(conn: &mut Connection, buf: &mut [u8], chunk: usize) -> usize {
    let mut n = 0usize;
    let mut on_event = |e: Event<'_>| {
        if let Event::Text(s) = e {
            n += s.len();
        } else if let Event::Binary(b) = e {
            n += b.len();
        }
    };
    for c in buf.chunks_mut(chunk) {
        conn.handle_read(c, &mut on_event).unwrap();
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    for (group_name, per_message) in [("decode_bytes", false), ("decode_msgs", true)] {
        let mut g = c.benchmark_group(group_name);
        for text in [true, false] {
            for &len in &SIZES {
                let (stream, count) = masked_stream(len, text);
                g.throughput(if per_message {
                    Throughput::Elements(count as u64)
                } else {
                    Throughput::Bytes(stream.len() as u64)
                });
                let kind = if text { "text" } else { "binary" };
                // Whole buffer in one read (zero-copy path) and in 4 KiB reads (frames straddle reads: copy path).
                for (read_name, chunk) in [("one_read", usize::MAX), ("4k_reads", 4096)] {
                    let id = BenchmarkId::new(format!("{kind}/{read_name}"), len);
                    let mut conn = Connection::new(Role::Server, Limits::default());
                    g.bench_function(id, |b| {
                        b.iter_batched_ref(
                            || stream.clone(),
                            |buf| black_box(decode_all(&mut conn, buf, chunk)),
                            BatchSize::LargeInput,
                        )
                    });
                }
            }
        }
        g.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for &len in &SIZES {
        let p = payload(len, false);
        g.throughput(Throughput::Elements(1));
        let mut out = Vec::with_capacity(len + 14);
        g.bench_function(BenchmarkId::new("server_frame", len), |b| {
            b.iter(|| {
                out.clear();
                write_frame(&mut out, true, OpCode::Binary, black_box(&p));
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("client_frame_masked", len), |b| {
            b.iter(|| {
                out.clear();
                write_client_frame(&mut out, true, OpCode::Binary, black_box(&p), [1, 2, 3, 4]);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
