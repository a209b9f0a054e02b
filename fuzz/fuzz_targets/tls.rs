//! A server TLS session on arbitrary bytes: never a panic, never plaintext before a handshake, and feeding the bytes
//! in chunks (sizes from the input) ends the same way as feeding them whole: the same error reason (or none), the
//! same handshaking state, the same amount of input held.
//!
//! Input layout: byte 0 = number of chunk-size bytes (low 4 bits), then that many chunk sizes (each byte + 1,
//! cycled), then the stream. The certificate is made once per process (rcgen), in a temp directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws::tls::{TlsAcceptor, TlsConfigStore, TlsFiles, TlsOptions};
use std::sync::{Arc, Mutex, OnceLock};

fn acceptor() -> &'static Mutex<TlsAcceptor> {
    static A: OnceLock<Mutex<TlsAcceptor>> = OnceLock::new();
    A.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("ringws-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, ck.cert.pem()).unwrap();
        std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
        let store = Arc::new(TlsConfigStore::open(files, TlsOptions::default()).unwrap());
        Mutex::new(store.acceptor())
    })
}

#[derive(Debug, PartialEq)]
struct Outcome {
    error: Option<&'static str>,
    handshaking: bool,
    pending: usize,
    plaintext: usize,
}

fn run(stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut s = acceptor().lock().unwrap().accept().unwrap();
    let mut plaintext = 0usize;
    let mut error = None;
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if cuts.is_empty() { rest.len() } else { cuts[i % cuts.len()].min(rest.len()) };
        i += 1;
        let mut chunk = rest[..n].to_vec();
        rest = &rest[n..];
        let mut out = Vec::new();
        match s.read_tls(&mut chunk, &mut out, &mut |p| plaintext += p.len()) {
            Ok(o) => assert!(!o.handshake_completed, "a handshake cannot complete against random input"),
            Err(e) => {
                error = Some(e.reason());
                break;
            }
        }
    }
    Outcome {
        error,
        handshaking: s.is_handshaking(),
        pending: if error.is_some() { 0 } else { s.pending_len() },
        plaintext,
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let ncuts = ((flags & 0x0f) as usize).min(rest.len());
    let cuts: Vec<usize> = rest[..ncuts].iter().map(|&b| b as usize + 1).collect();
    let stream = &rest[ncuts..];
    let whole = run(stream, &[]);
    assert_eq!(whole.plaintext, 0, "plaintext without a handshake");
    assert!(whole.pending <= ringws::tls::MAX_PENDING_TLS);
    let chunked = run(stream, &cuts);
    assert_eq!(whole, chunked, "chunks {cuts:?} disagree with the whole");
});
