//! What an idle TLS session costs, measured with a counting global allocator: the heap held per session after the
//! handshake and one small echo, for the session this crate uses (rustls' unbuffered API during the handshake and
//! for TLS 1.2; the crate's record layer for TLS 1.3 after it) and for rustls' buffered `ServerConnection`. `tls_idle_heap` asserts the bound the reactor's memory goal needs;
//! `tls_cpu_per_small_record` (ignored: a measurement, run it alone in an optimized build) prints CPU per 20-byte
//! record both ways. The figures are written up in perf/tls-choice.md.

mod tls_util;

use ringws::tls::{TlsConfigStore, TlsSession};
use rustls::ServerConnection;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::mem::size_of;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use tls_util::*;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's arguments; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

const N: usize = 200;
const MSG: &[u8] = b"twenty bytes of echo";

/// One session through the handshake and a 20-byte echo, the client then dropped: the unbuffered session.
fn idle_unbuffered(store: &Arc<TlsConfigStore>, cfg: &Arc<rustls::ClientConfig>) -> TlsSession {
    let mut p = Pair::new(client(cfg), store.acceptor().accept().unwrap());
    p.handshake().unwrap();
    p.client_sends(MSG).unwrap();
    p.server_sends(MSG).unwrap();
    assert_eq!(p.server.pending_len(), 0);
    p.server
}

/// Moves everything `from` wants to write into `to` and lets `to` process it.
fn pump<A: rustls::SideData, B: rustls::SideData>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    wire: &mut Vec<u8>,
) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).unwrap();
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

/// The same with rustls' buffered `ServerConnection`.
fn idle_buffered(store: &Arc<TlsConfigStore>, cfg: &Arc<rustls::ClientConfig>) -> ServerConnection {
    let mut c = client(cfg);
    let mut s = ServerConnection::new(store.current()).unwrap();
    let mut wire = Vec::new();
    let mut sent = false;
    let mut got = Vec::new();
    for _ in 0..32 {
        pump(&mut c, &mut s, &mut wire);
        let mut buf = [0u8; 64];
        while let Ok(n) = s.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        pump(&mut s, &mut c, &mut wire);
        if !c.is_handshaking() && !sent {
            c.writer().write_all(MSG).unwrap();
            sent = true;
        } else if got == MSG {
            s.writer().write_all(MSG).unwrap();
            wire.clear();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets().unwrap();
            let mut back = [0u8; 64];
            assert_eq!(c.reader().read(&mut back).unwrap(), MSG.len());
            return s;
        }
    }
    panic!("buffered pair did not finish");
}

/// Makes `N` idle sessions and returns them with the heap bytes and blocks each holds (the Vec holding the sessions
/// themselves is allocated before the first reading, so only what the sessions own is counted).
fn per_session<T>(mut make: impl FnMut() -> T) -> (Vec<T>, isize, isize) {
    drop(make()); // warm lazily built state (ring's CPU detection, the ticketer's first key)
    let mut v: Vec<T> = Vec::with_capacity(N);
    let (b0, n0) = live();
    for _ in 0..N {
        v.push(make());
    }
    let (b1, n1) = live();
    (v, (b1 - b0) / N as isize, (n1 - n0) / N as isize)
}

#[test]
fn tls_idle_heap() {
    let (store, cert, _dir) = store();
    println!("size_of::<TlsSession>() = {} B", size_of::<TlsSession>());
    println!(
        "size_of::<UnbufferedServerConnection>() = {} B",
        size_of::<rustls::server::UnbufferedServerConnection>()
    );
    println!(
        "size_of::<ServerConnection>() = {} B",
        size_of::<ServerConnection>()
    );
    let mut ours = Vec::new();
    for (name, v) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        // A fresh client config per session: no resumption, each handshake is a full one. (The cipher suite does
        // not change the figures: ring's AEAD key is one enum sized for AES-GCM.)
        let (keep, bytes, blocks) =
            per_session(|| idle_unbuffered(&store, &client_config(&cert.der, v)));
        println!(
            "TlsSession {name}: {bytes} B heap in {blocks} blocks per idle session (+ {} B inline){}",
            size_of::<TlsSession>(),
            if keep[0].is_handed_over() { ", handed over to the record layer" } else { ", rustls unbuffered" }
        );
        ours.push((name, bytes));
        drop(keep);
        let (keep, bytes, blocks) =
            per_session(|| idle_buffered(&store, &client_config(&cert.der, v)));
        println!(
            "buffered   {name}: {bytes} B heap in {blocks} blocks per idle session (+ {} B inline)",
            size_of::<ServerConnection>()
        );
        drop(keep);
    }
    // Regression guards (perf/tls-choice.md): TLS 1.3 on the record layer keeps the traffic keys and rustls'
    // key-update state only; TLS 1.2 keeps rustls' whole unbuffered connection. No plaintext or ciphertext buffer
    // is among either.
    for (name, b) in ours {
        let bound = if name == "TLS 1.3" { 1024 } else { 3584 };
        assert!(
            b <= bound,
            "an idle {name} session holds {b} B of heap (bound {bound})"
        );
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const RECORDS: usize = 20_000;

/// `RECORDS` client records of 20 bytes each, after a handshake with the given server driver.
fn client_records(c: &mut rustls::ClientConnection) -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|_| {
            c.writer().write_all(MSG).unwrap();
            let mut v = Vec::new();
            c.write_tls(&mut v).unwrap();
            v
        })
        .collect()
}

#[test]
#[ignore = "measurement: run alone in an optimized build"]
fn tls_cpu_per_small_record() {
    let (store, cert, _dir) = store();
    for (name, v) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        // Unbuffered (TlsSession).
        let mut p = Pair::new(
            client(&client_config(&cert.der, v)),
            store.acceptor().accept().unwrap(),
        );
        p.handshake().unwrap();
        let mut recs = client_records(&mut p.client);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut got = 0usize;
        let t0 = thread_cpu_ns();
        for r in recs.iter_mut() {
            p.server
                .read_tls(r, &mut out, &mut |pl| got += pl.len())
                .unwrap();
        }
        let t1 = thread_cpu_ns();
        for _ in 0..RECORDS {
            out.clear();
            p.server.encrypt(MSG, &mut out).unwrap();
        }
        let t2 = thread_cpu_ns();
        assert_eq!(got, RECORDS * MSG.len());
        println!(
            "TlsSession {name}: decrypt {} ns, encrypt {} ns per 20 B record",
            (t1 - t0) / RECORDS as u64,
            (t2 - t1) / RECORDS as u64
        );

        // Buffered ServerConnection, driven the usual way (read_tls, process_new_packets, reader; writer, write_tls).
        let mut c = client(&client_config(&cert.der, v));
        let mut s = idle_buffered_pair(&store, &mut c);
        let recs = client_records(&mut c);
        let mut buf = [0u8; 64];
        let mut got = 0usize;
        let t0 = thread_cpu_ns();
        for r in recs.iter() {
            s.read_tls(&mut &r[..]).unwrap();
            s.process_new_packets().unwrap();
            got += s.reader().read(&mut buf).unwrap();
        }
        let t1 = thread_cpu_ns();
        for _ in 0..RECORDS {
            out.clear();
            s.writer().write_all(MSG).unwrap();
            s.write_tls(&mut out).unwrap();
        }
        let t2 = thread_cpu_ns();
        assert_eq!(got, RECORDS * MSG.len());
        println!(
            "buffered   {name}: decrypt {} ns, encrypt {} ns per 20 B record",
            (t1 - t0) / RECORDS as u64,
            (t2 - t1) / RECORDS as u64
        );
    }
}

/// A buffered server connection whose handshake with `c` is complete.
fn idle_buffered_pair(
    store: &Arc<TlsConfigStore>,
    c: &mut rustls::ClientConnection,
) -> ServerConnection {
    let mut s = ServerConnection::new(store.current()).unwrap();
    let mut wire = Vec::new();
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    s
}

#[test]
#[ignore = "measurement: run alone in an optimized build"]
fn tls_cpu_per_record_sizes() {
    // TLS 1.3 on the record layer: a small record with the expanded keys kept (a busy session) and expanded per
    // call (an idle one: swept before each call); a 16 KiB message in one record against 4 bytes more, which need a
    // second record (the 2^14-byte plaintext limit: a 16 KiB WebSocket payload behind its frame header).
    let (store, cert, _dir) = store();
    let mut p = Pair::new(
        client(&client_config(&cert.der, &rustls::version::TLS13)),
        store.acceptor().accept().unwrap(),
    );
    p.handshake().unwrap();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut per = |what: &str, n: usize, f: &mut dyn FnMut(&mut Vec<u8>)| {
        let t0 = thread_cpu_ns();
        for _ in 0..n {
            out.clear();
            f(&mut out);
        }
        println!(
            "record layer: {what}: {} ns",
            (thread_cpu_ns() - t0) / n as u64
        );
    };
    let s = &mut p.server;
    per("warm-up", RECORDS, &mut |o| s.encrypt(MSG, o).unwrap());
    per("encrypt 20 B, keys kept", RECORDS, &mut |o| {
        s.encrypt(MSG, o).unwrap()
    });
    per("encrypt 20 B, keys expanded per call", RECORDS, &mut |o| {
        s.sweep();
        s.encrypt(MSG, o).unwrap()
    });
    let big = vec![7u8; 16388];
    for n in [16384, 16388] {
        per(&format!("encrypt {n} B"), 2000, &mut |o| {
            s.encrypt(&big[..n], o).unwrap()
        });
    }
    for n in [16384usize, 16388] {
        // In batches of 8 messages (128 KiB, in cache as a receive buffer is), the client's encryption not timed.
        let (mut got, mut ns) = (0, 0);
        for _ in 0..250 {
            let recs: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    p.client.writer().write_all(&big[..n]).unwrap();
                    let mut v = Vec::new();
                    while p.client.wants_write() {
                        p.client.write_tls(&mut v).unwrap();
                    }
                    v
                })
                .collect();
            let t0 = thread_cpu_ns();
            for mut r in recs {
                let (_, plain) = p
                    .server
                    .read_tls_in_place(&mut r, &mut out, &mut |_| ())
                    .unwrap();
                got += plain.len();
            }
            ns += thread_cpu_ns() - t0;
        }
        assert_eq!(got, 2000 * n);
        println!("record layer: decrypt {n} B in place: {} ns", ns / 2000);
    }
}
