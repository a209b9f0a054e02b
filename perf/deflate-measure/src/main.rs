//! Memory per stream and CPU per message of deflate backends (permessage-deflate workloads).
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

struct Counting;
static CUR: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        CUR.fetch_add(l.size() as isize, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        CUR.fetch_add(l.size() as isize, Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CUR.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn json(n: usize, seed: u64) -> Vec<u8> {
    let mut s = String::new();
    let mut x = seed;
    let words = ["click", "view", "scroll", "purchase", "login", "logout"];
    let mut i = 0;
    while s.len() < n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let r = (x >> 33) as usize;
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"user_{}\",\"event\":\"{}\",\"ts\":{},\"value\":{}.{:03}}},",
            i, r % 1000, words[r % words.len()], 1_700_000_000 + r % 100_000, r % 100, r % 1000
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

trait Codec {
    fn name() -> &'static str;
    fn new_c(level: u32, wbits: u8) -> Self;
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>);
    fn reset(&mut self);
}
trait Deco {
    fn new_d(wbits: u8) -> Self;
    fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>);
    fn reset(&mut self);
}

#[cfg(feature = "flate2")]
mod f {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    pub struct C(Compress);
    pub struct D(Decompress);
    impl super::Codec for C {
        fn name() -> &'static str {
            if cfg!(feature = "zlib") { "flate2+zlib(C)" } else if cfg!(feature = "zlibrs") { "flate2+zlib-rs" } else { "flate2+miniz_oxide" }
        }
        #[allow(unused_variables)]
        fn new_c(level: u32, wbits: u8) -> Self {
            #[cfg(not(feature = "miniz"))]
            return C(Compress::new_with_window_bits(Compression::new(level), false, wbits));
            #[cfg(feature = "miniz")]
            return C(Compress::new(Compression::new(level), false));
        }
        fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
            out.clear();
            out.reserve(input.len() + 64);
            let before = self.0.total_in();
            loop {
                let done = (self.0.total_in() - before) as usize;
                self.0.compress_vec(&input[done..], out, FlushCompress::Sync).unwrap();
                if (self.0.total_in() - before) as usize == input.len() && out.len() < out.capacity() { break; }
                out.reserve(4096);
            }
        }
        fn reset(&mut self) { self.0.reset() }
    }
    impl super::Deco for D {
        #[allow(unused_variables)]
        fn new_d(wbits: u8) -> Self {
            #[cfg(not(feature = "miniz"))]
            return D(Decompress::new_with_window_bits(false, wbits));
            #[cfg(feature = "miniz")]
            return D(Decompress::new(false));
        }
        fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) {
            out.clear();
            let before = self.0.total_in();
            loop {
                out.reserve(16384);
                let done = (self.0.total_in() - before) as usize;
                self.0.decompress_vec(&input[done..], out, FlushDecompress::Sync).unwrap();
                if (self.0.total_in() - before) as usize == input.len() && out.len() < out.capacity() { break; }
            }
        }
        fn reset(&mut self) { self.0.reset(false) }
    }
}

#[cfg(feature = "direct")]
mod f {
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush};
    pub struct C(Deflate);
    pub struct D(Inflate);
    pub static MEM: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(8);
    impl super::Codec for C {
        fn name() -> &'static str { "zlib-rs direct" }
        fn new_c(level: u32, wbits: u8) -> Self {
            let mem = MEM.load(std::sync::atomic::Ordering::Relaxed);
            C(Deflate::new_with_config(DeflateConfig { level: level as i32, window_bits: -(wbits as i32), mem_level: mem, ..DeflateConfig::default() }))
        }
        fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
            out.clear();
            out.resize(input.len() + 64, 0);
            let (bi, bo) = (self.0.total_in(), self.0.total_out());
            loop {
                let i = (self.0.total_in() - bi) as usize;
                let o = (self.0.total_out() - bo) as usize;
                self.0.compress(&input[i..], &mut out[o..], DeflateFlush::SyncFlush).unwrap();
                let o2 = (self.0.total_out() - bo) as usize;
                if (self.0.total_in() - bi) as usize == input.len() && o2 < out.len() { out.truncate(o2); break; }
                out.resize(out.len() + 4096, 0);
            }
        }
        fn reset(&mut self) { self.0.reset() }
    }
    impl super::Deco for D {
        fn new_d(wbits: u8) -> Self { D(Inflate::new(false, wbits)) }
        fn decompress(&mut self, input: &[u8], out: &mut Vec<u8>) {
            out.clear();
            out.resize(16384, 0);
            let (bi, bo) = (self.0.total_in(), self.0.total_out());
            loop {
                let i = (self.0.total_in() - bi) as usize;
                let o = (self.0.total_out() - bo) as usize;
                self.0.decompress(&input[i..], &mut out[o..], InflateFlush::SyncFlush).unwrap();
                let o2 = (self.0.total_out() - bo) as usize;
                if (self.0.total_in() - bi) as usize == input.len() && o2 < out.len() { out.truncate(o2); break; }
                out.resize(out.len() + 16384, 0);
            }
        }
        fn reset(&mut self) { self.0.reset(false) }
    }
}

use f::{C, D};

fn mem_of<T>(make: impl FnOnce() -> T, use_it: impl FnOnce(&mut T)) -> (isize, isize, T) {
    let a = CUR.load(Relaxed);
    let mut t = make();
    let b = CUR.load(Relaxed);
    use_it(&mut t);
    let c = CUR.load(Relaxed);
    (b - a, c - a, t)
}

fn bench(level: u32, size: usize, iters: usize) {
    let msgs: Vec<Vec<u8>> = (0..64).map(|i| json(size, i as u64 + 1)).collect();
    let mut c = C::new_c(level, 15);
    let mut d = D::new_d(15);
    let mut z = Vec::new();
    let mut o = Vec::new();
    // warm
    for m in &msgs { c.reset(); c.compress(m, &mut z); }
    let (mut tin, mut tout) = (0usize, 0usize);
    let t0 = cpu_ns();
    for k in 0..iters { let m = &msgs[k % 64]; c.reset(); c.compress(m, &mut z); tin += m.len(); tout += z.len() - 4; }
    let ct = (cpu_ns() - t0) as f64 / iters as f64;
    let comp: Vec<Vec<u8>> = msgs.iter().map(|m| { c.reset(); let mut z = Vec::new(); c.compress(m, &mut z); z }).collect();
    let t0 = cpu_ns();
    for k in 0..iters { d.reset(); d.decompress(&comp[k % 64], &mut o); assert_eq!(o.len(), msgs[k % 64].len()); }
    let dt = (cpu_ns() - t0) as f64 / iters as f64;
    println!("| {} | level {} | {} B | compress {:.2} µs | inflate {:.2} µs | ratio {:.3} |", C::name(), level, size, ct / 1000.0, dt / 1000.0, tout as f64 / tin as f64);
}

fn main() {
    #[cfg(feature = "direct")]
    if std::env::var("EXTRA").is_ok() { extra(); return; }
    #[cfg(feature = "direct")]
    if let Ok(size) = std::env::var("SMALL") { small(size.parse().expect("SMALL=message size in bytes")); return; }
    #[cfg(feature = "direct")]
    if let Ok(m) = std::env::var("MEM") { f::MEM.store(m.parse().unwrap(), Relaxed); }
    let sample = json(16384, 7);
    for wbits in [9u8, 12, 15] {
        let (created, used, _c) = mem_of(|| C::new_c(1, wbits), |c| { let mut z = Vec::new(); c.compress(&sample, &mut z) });
        let (dcreated, dused, _d) = mem_of(|| D::new_d(wbits), |d| {
            let mut c = C::new_c(1, wbits); let mut z = Vec::new(); c.compress(&sample, &mut z);
            let a = CUR.load(Relaxed); let mut o = Vec::new(); d.decompress(&z, &mut o); let _ = a;
        });
        let _ = dused;
        println!("| {} | wbits {} | deflate stream {} B after init, {} B in use | inflate stream {} B after init |", C::name(), wbits, created, used, dcreated);
    }
    // inflate in-use: measure separately so the compressor in the closure is not counted
    {
        let mut c = C::new_c(1, 15); let mut z = Vec::new(); c.compress(&sample, &mut z);
        let a = CUR.load(Relaxed);
        let mut d = D::new_d(15);
        let mut o = Vec::with_capacity(40000);
        let b = CUR.load(Relaxed);
        d.decompress(&z, &mut o);
        let e = CUR.load(Relaxed);
        println!("| {} | inflate wbits 15 | {} B after init, {} B after one message (excluding output) |", C::name(), b - a - 40000, e - a - o.capacity() as isize);
    }
    for level in [1u32, 6] {
        bench(level, 200, 200_000);
        bench(level, 16384, 4_000);
    }
}

#[cfg(feature = "direct")]
pub fn extra() {
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush};
    let msgs: Vec<Vec<u8>> = (0..64).map(|i| json(200, i as u64 + 1)).collect();
    let hist = json(32768, 99);
    for level in [1, 2, 3, 6] {
        let mut c = Deflate::new_with_config(DeflateConfig { level, window_bits: -15, ..DeflateConfig::default() });
        let mut out = vec![0u8; 1024];
        let n = 200_000;
        let t0 = cpu_ns();
        for k in 0..n { c.reset(); c.compress(&msgs[k % 64], &mut out, DeflateFlush::SyncFlush).unwrap(); }
        let with_reset = (cpu_ns() - t0) as f64 / n as f64;
        let mut c = Deflate::new_with_config(DeflateConfig { level, window_bits: -15, ..DeflateConfig::default() });
        let t0 = cpu_ns();
        for k in 0..n { c.compress(&msgs[k % 64], &mut out, DeflateFlush::SyncFlush).unwrap(); }
        let no_reset = (cpu_ns() - t0) as f64 / n as f64;
        let t0 = cpu_ns();
        for _ in 0..n { c.reset(); }
        let reset_only = (cpu_ns() - t0) as f64 / n as f64;
        println!("level {level}: 200 B with reset {:.2} µs, streaming (context takeover) {:.2} µs, reset alone {:.2} µs", with_reset / 1e3, no_reset / 1e3, reset_only / 1e3);
    }
    for dict in [512usize, 1024, 4096, 32768] {
        let mut c = Deflate::new_with_config(DeflateConfig { level: 1, window_bits: -15, ..DeflateConfig::default() });
        let mut out = vec![0u8; 1024];
        let n = 50_000;
        let t0 = cpu_ns();
        for k in 0..n { c.reset(); c.set_dictionary(&hist[..dict]).unwrap(); c.compress(&msgs[k % 64], &mut out, DeflateFlush::SyncFlush).unwrap(); }
        let t = (cpu_ns() - t0) as f64 / n as f64;
        let mut d = Inflate::new(false, 15);
        let mut o = vec![0u8; 1024];
        let t0 = cpu_ns();
        for _ in 0..n { d.reset(false); d.set_dictionary(&hist[..dict]).unwrap(); let _ = d.decompress(&[0, 0, 0xff, 0xff], &mut o, InflateFlush::SyncFlush); }
        let ti = (cpu_ns() - t0) as f64 / n as f64;
        println!("dictionary {dict} B: deflate reset+set_dictionary+200 B {:.2} µs; inflate reset+set_dictionary {:.2} µs", t / 1e3, ti / 1e3);
    }
}

/// Shared mode by `memLevel`: level 2, window 15, a reset stream per message of `size` bytes of JSON-like text;
/// µs per message and compressed/original size.
#[cfg(feature = "direct")]
pub fn small(size: usize) {
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush};
    let msgs: Vec<Vec<u8>> = (0..64).map(|i| json(size, i as u64 + 1)).collect();
    for mem_level in [1, 2, 4, 8] {
        let mut c = Deflate::new_with_config(DeflateConfig { level: 2, window_bits: -15, mem_level, ..DeflateConfig::default() });
        let mut out = vec![0u8; size * 2 + 1024];
        let n = 20_000_000 / (size + 100);
        let (mut inb, mut outb) = (0u64, 0u64);
        let t0 = cpu_ns();
        for k in 0..n {
            c.reset();
            let m = &msgs[k % 64];
            let o0 = c.total_out();
            c.compress(m, &mut out, DeflateFlush::SyncFlush).unwrap();
            inb += m.len() as u64;
            outb += c.total_out() - o0 - 4;
        }
        let t = (cpu_ns() - t0) as f64 / n as f64;
        println!("{size} B, level 2, window 15, memLevel {mem_level}: {:.2} µs, ratio {:.3}", t / 1e3, outb as f64 / inb as f64);
    }
}
