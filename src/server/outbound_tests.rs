//! Unit tests of the outbound queue: order, short sends, backpressure, TLS sealing, ring segments.
use super::*;

/// The bytes the next send would write (prepare_send, read back through the iovecs it filled).
fn prepared(o: &mut Outbound) -> Vec<u8> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    match o.prepare_send(&mut iov) {
        // SAFETY: the pointers describe live segments of `o`, which is not modified until complete_send.
        Prepared::Single(p, n) => unsafe { std::slice::from_raw_parts(p, n) }.to_vec(),
        Prepared::Vectored(k) => iov[..k]
            .iter()
            // SAFETY: as above.
            .flat_map(|v| {
                unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }.to_vec()
            })
            .collect(),
    }
}

fn drain_all(o: &mut Outbound, pool: &mut BufPool) -> Vec<u8> {
    let mut all = Vec::new();
    while o.has_unsent() {
        let chunk = prepared(o);
        // Simulate a short send of at most 7 bytes to exercise resumption.
        let w = chunk.len().min(7);
        all.extend_from_slice(&chunk[..w]);
        o.complete_send(w, pool);
    }
    all
}

#[test]
fn order_is_kept_across_owned_and_shared_segments_and_short_sends() {
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    assert_eq!(
        o.push_frame(OpCode::Text, b"one", &Backpressure::new(1 << 20), &mut pool),
        SendStatus::Sent
    );
    assert_eq!(
        o.push_shared(
            Bytes::from_static(b"\x81\x03two"),
            &Backpressure::new(1 << 20)
        ),
        SendStatus::Buffered
    );
    o.push_control(OpCode::Pong, b"", &mut pool);
    assert_eq!(
        o.push_frame(
            OpCode::Binary,
            b"three",
            &Backpressure::new(1 << 20),
            &mut pool
        ),
        SendStatus::Buffered
    );
    let expect = [
        &b"\x81\x03one"[..],
        b"\x81\x03two",
        b"\x8a\x00",
        b"\x82\x05three",
    ]
    .concat();
    assert_eq!(o.queued(), expect.len());
    assert_eq!(drain_all(&mut o, &mut pool), expect);
    assert_eq!(o.queued(), 0);
}

#[test]
fn bytes_queued_while_in_flight_go_after_the_in_flight_ones() {
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    o.push_frame(OpCode::Text, b"a", &Backpressure::new(1 << 20), &mut pool);
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOV];
    let Prepared::Single(p, n) = o.prepare_send(&mut iov) else {
        panic!("one segment")
    };
    assert!(!o.has_unsent());
    o.push_frame(OpCode::Text, b"b", &Backpressure::new(1 << 20), &mut pool);
    // The in-flight bytes were not touched by the second push.
    // SAFETY: p/n describe the in-flight segment, alive until complete_send.
    assert_eq!(unsafe { std::slice::from_raw_parts(p, n) }, b"\x81\x01a");
    o.complete_send(n, &mut pool);
    assert_eq!(drain_all(&mut o, &mut pool), b"\x81\x01b");
}

/// The capacities of the owned segments queued, in order.
fn owned_caps(o: &Outbound) -> Vec<usize> {
    o.segs
        .iter()
        .filter_map(|s| match s {
            Seg::Owned(v) => Some(v.capacity()),
            _ => None,
        })
        .collect()
}

#[test]
fn one_small_frame_holds_a_tiny_buffer_and_a_batch_goes_on_in_a_small_one() {
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    let bp = Backpressure::new(1 << 20);
    o.push_frame(OpCode::Text, &[b'x'; 20], &bp, &mut pool);
    assert_eq!(owned_caps(&o), [TINY_CAP]);
    // A batch: 250 x 22 B fill the tiny buffer, then continue in small buffers, never a chain of tiny ones.
    let mut want = b"\x81\x14".to_vec();
    want.extend_from_slice(&[b'x'; 20]);
    for i in 0..249u8 {
        o.push_frame(OpCode::Binary, &[i; 20], &bp, &mut pool);
        want.extend_from_slice(&[0x82, 20]);
        want.extend_from_slice(&[i; 20]);
    }
    assert_eq!(owned_caps(&o), [TINY_CAP, SMALL_CAP, SMALL_CAP]);
    assert_eq!(drain_all(&mut o, &mut pool), want);
    // They go back to their classes in the pool and are reused.
    assert_eq!((pool.tiny.len(), pool.small.len()), (1, 2));
    assert_eq!(pool.pooled_bytes(), TINY_CAP + 2 * SMALL_CAP);
    o.push_frame(OpCode::Text, b"again", &bp, &mut pool);
    assert_eq!(pool.tiny.len(), 0);
}

#[test]
fn queue_is_bounded_but_admits_one_large_message_when_empty() {
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    let big = vec![0u8; 5000];
    assert_eq!(
        o.push_frame(OpCode::Binary, &big, &Backpressure::new(4096), &mut pool),
        SendStatus::Sent
    );
    assert_eq!(
        o.push_frame(OpCode::Binary, b"x", &Backpressure::new(4096), &mut pool),
        SendStatus::Dropped
    );
    assert_eq!(
        o.push_shared(Bytes::from_static(b"\x82\x00"), &Backpressure::new(4096)),
        SendStatus::Dropped
    );
    // Control frames are never dropped.
    o.push_control(OpCode::Pong, b"p", &mut pool);
    assert_eq!(o.queued(), 5000 + 4 + 3);
}

/// A stand-in cipher: "[" + the run's plaintext + "]" per call, so order and boundaries are visible.
fn bracket(run: &mut dyn Iterator<Item = &[u8]>, out: &mut Vec<u8>) -> Result<(), ()> {
    out.push(b'[');
    for p in run {
        out.extend_from_slice(p);
    }
    out.push(b']');
    Ok(())
}

#[test]
fn seal_encrypts_plaintext_in_order_after_what_is_sealed() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    o.push_sealed(b"HS", &mut pool);
    o.push_frame(OpCode::Text, b"a", &bp, &mut pool);
    o.push_shared(Bytes::from_static(b"SH"), &bp);
    o.push_control(OpCode::Pong, b"", &mut pool);
    o.seal(&mut pool, bracket).unwrap();
    // One run: the tail's frame, the shared frame and the pong share records.
    let expect = [&b"HS"[..], b"[\x81\x01aSH\x8a\x00]"].concat();
    assert_eq!(o.queued(), expect.len());
    // A short send, then more plaintext and ciphertext produced by a read (sealed first).
    let _ = prepared(&mut o);
    o.complete_send(3, &mut pool);
    o.push_frame(OpCode::Text, b"b", &bp, &mut pool);
    o.seal(&mut pool, bracket).unwrap();
    o.push_sealed(b"KU", &mut pool);
    o.push_frame(OpCode::Text, b"c", &bp, &mut pool);
    o.seal(&mut pool, bracket).unwrap();
    let rest = drain_all(&mut o, &mut pool);
    let expect = [&expect[3..], b"[\x81\x01b]", b"KU", b"[\x81\x01c]"].concat();
    assert_eq!(rest, expect);
    assert_eq!(o.queued(), 0);
}

#[test]
fn seal_error_drops_the_rest() {
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    o.push_frame(OpCode::Text, b"a", &Backpressure::new(1 << 20), &mut pool);
    assert_eq!(o.seal(&mut pool, |_, _| Err("no keys")), Err("no keys"));
    assert_eq!(o.queued(), 0);
}

/// Send everything queued in one go (no short send).
fn send_whole(o: &mut Outbound, pool: &mut BufPool) -> Vec<u8> {
    let bytes = prepared(o);
    o.complete_send(bytes.len(), pool);
    bytes
}

fn ring_pool() -> BufPool {
    BufPool {
        ring_cap: 16,
        ..BufPool::default()
    }
}

#[test]
fn a_ring_segment_goes_out_uncopied_and_releases_its_hold_when_written() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = ring_pool();
    let mut o = Outbound::default();
    let rx = vec![7u8; 5000]; // stands in for a receive buffer
    assert_eq!(
        o.push_frame_in_ring(OpCode::Binary, &rx, 3, &bp, &mut pool),
        SendStatus::Sent
    );
    assert_eq!(pool.ring_holds, [3]);
    assert!(pool.ring_releases.is_empty());
    let mut want = Vec::new();
    write_frame(&mut want, true, OpCode::Binary, &rx);
    assert_eq!(o.queued(), want.len());
    assert_eq!(send_whole(&mut o, &mut pool), want);
    assert_eq!(pool.ring_releases, [3], "written: the hold ends");
    assert_eq!(o.queued(), 0);
}

#[test]
fn a_short_send_copies_the_rest_of_ring_segments_out_and_ends_their_holds() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = ring_pool();
    let mut o = Outbound::default();
    let a = vec![1u8; 6000];
    let b: Vec<u8> = (0..7000u32).map(|i| i as u8).collect();
    o.push_frame_in_ring(OpCode::Binary, &a, 1, &bp, &mut pool);
    o.push_frame_in_ring(OpCode::Binary, &b, 2, &bp, &mut pool);
    let mut want = Vec::new();
    write_frame(&mut want, true, OpCode::Binary, &a);
    write_frame(&mut want, true, OpCode::Binary, &b);
    // A short send of 7 bytes spills both ring segments.
    let _ = prepared(&mut o);
    o.complete_send(7, &mut pool);
    let mut released = pool.ring_releases.clone();
    released.sort();
    assert_eq!(
        released,
        [1, 2],
        "no receive buffer is held after a short send"
    );
    // What was not written yet still comes out intact, from the copies.
    let rest = drain_all(&mut o, &mut pool);
    assert_eq!([&want[..7], &rest[..]].concat(), want);
}

#[test]
fn abandoning_a_queue_ends_its_ring_holds() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = ring_pool();
    let mut o = Outbound::default();
    let rx = vec![0u8; 4096];
    o.push_frame_in_ring(OpCode::Text, &rx, 5, &bp, &mut pool);
    o.abandon(&mut pool);
    assert_eq!(pool.ring_releases, [5]);
}

#[test]
fn sealing_copies_ring_segments_and_ends_their_holds() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = ring_pool();
    let mut o = Outbound::default();
    let rx = vec![9u8; 4096];
    o.push_frame_in_ring(OpCode::Binary, &rx, 4, &bp, &mut pool);
    o.seal(&mut pool, bracket).unwrap();
    assert_eq!(pool.ring_releases, [4]);
    // The header (in the tail) and the payload (copied from the ring) are sealed as one run.
    let want = [&b"[\x82\x7e\x10\x00"[..], &rx[..], b"]"].concat();
    assert_eq!(send_whole(&mut o, &mut pool), want);
}

#[test]
fn a_seal_run_holds_what_one_large_buffer_holds_and_at_least_one_segment() {
    let bp = Backpressure::new(1 << 20);
    let mut pool = BufPool::default();
    let mut o = Outbound::default();
    let big = Bytes::from(vec![b'b'; 40_000]);
    for s in [&b"x"[..], b"y", &big, &big, b"z"] {
        o.push_shared(Bytes::copy_from_slice(s), &bp);
    }
    let huge = Bytes::from(vec![b'h'; 100_000]);
    o.push_shared(huge.clone(), &bp);
    o.seal(&mut pool, bracket).unwrap();
    let expect = [
        &b"[xy"[..],
        &big,
        b"]",
        b"[",
        &big,
        b"z]",
        b"[",
        &huge,
        b"]",
    ]
    .concat();
    assert_eq!(o.queued(), expect.len());
    assert_eq!(drain_all(&mut o, &mut pool), expect);
}
