//! Helpers for the TLS tests: certificates made at test time (rcgen), an in-memory rustls client wired to a
//! server [`TlsSession`], with the bytes between them split wherever the test says.
#![allow(dead_code)]

use ringws::tls::{TlsConfigStore, TlsError, TlsFiles, TlsOptions, TlsSession};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringws-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed ECDSA P-256 certificate for `localhost`, made now.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub fn make_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    TestCert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

/// Writes `cert` as `cert.pem` + `key.pem` into `dir`.
pub fn write_cert(dir: &TempDir, cert: &TestCert) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.path("cert.pem"),
        key: dir.path("key.pem"),
    };
    std::fs::write(&files.cert, &cert.cert_pem).unwrap();
    std::fs::write(&files.key, &cert.key_pem).unwrap();
    files
}

/// A store with a fresh certificate; the TempDir must outlive reloads.
pub fn store() -> (Arc<TlsConfigStore>, TestCert, TempDir) {
    let dir = TempDir::new("store");
    let cert = make_cert();
    let files = write_cert(&dir, &cert);
    let store = TlsConfigStore::open(files, TlsOptions::default()).unwrap();
    (Arc::new(store), cert, dir)
}

pub fn client_config(
    trust: &CertificateDer<'static>,
    version: &'static SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    client_config_with(trust, version, rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client that offers only the suite whose name contains `suite` (e.g. "AES_128_GCM").
pub fn client_config_suite(trust: &CertificateDer<'static>, suite: &str) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| {
        s.version() == &rustls::version::TLS13 && format!("{:?}", s.suite()).contains(suite)
    });
    assert_eq!(provider.cipher_suites.len(), 1, "one suite named {suite}");
    client_config_with(trust, &rustls::version::TLS13, provider)
}

fn client_config_with(
    trust: &CertificateDer<'static>,
    version: &'static SupportedProtocolVersion,
    provider: rustls::crypto::CryptoProvider,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

pub fn client(config: &Arc<ClientConfig>) -> ClientConnection {
    let mut c = ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    c.set_buffer_limit(None);
    c
}

/// A client and a server session joined in memory. Client-to-server bytes are cut into pieces whose sizes come
/// from `cuts` (cycled; empty = whole).
pub struct Pair {
    pub client: ClientConnection,
    pub server: TlsSession,
    /// Plaintext the server session delivered, in order.
    pub server_got: Vec<u8>,
    /// Plaintext the client read.
    pub client_got: Vec<u8>,
    pub cuts: Vec<usize>,
    cut_at: usize,
    pub peer_closed: bool,
    pub handshake_events: usize,
    /// Ciphertext the server produced (kept for inspection in failure tests).
    pub last_server_out: Vec<u8>,
    /// The first error the client hit (for example the alert the server sent).
    pub client_error: Option<rustls::Error>,
    /// Feed the server with `read_tls_in_place` (plaintext left in the chunk) instead of `read_tls`.
    pub in_place: bool,
    /// Chunks whose plaintext (some of it) went through the sink although the session had nothing held before
    /// them, after the hand-over (with `in_place`: plaintext of whole records must stay in place).
    pub sink_without_held: usize,
}

impl Pair {
    pub fn new(client: ClientConnection, server: TlsSession) -> Self {
        Pair {
            client,
            server,
            server_got: Vec::new(),
            client_got: Vec::new(),
            cuts: Vec::new(),
            cut_at: 0,
            peer_closed: false,
            handshake_events: 0,
            last_server_out: Vec::new(),
            client_error: None,
            in_place: false,
            sink_without_held: 0,
        }
    }

    fn next_cut(&mut self, left: usize) -> usize {
        if self.cuts.is_empty() {
            return left;
        }
        let c = self.cuts[self.cut_at % self.cuts.len()].max(1);
        self.cut_at += 1;
        c.min(left)
    }

    /// Feeds raw bytes to the server as the client would send them (split by `cuts`); server output goes to the
    /// client.
    pub fn feed_server(&mut self, mut bytes: &[u8]) -> Result<(), TlsError> {
        while !bytes.is_empty() {
            let n = self.next_cut(bytes.len());
            let mut chunk = bytes[..n].to_vec();
            bytes = &bytes[n..];
            let mut out = Vec::new();
            let got = &mut self.server_got;
            let res = if self.in_place {
                let held = self.server.pending_len();
                let handed_over = self.server.is_handed_over();
                let before = got.len();
                let res = self
                    .server
                    .read_tls_in_place(&mut chunk, &mut out, &mut |p| got.extend_from_slice(p));
                if handed_over && held == 0 && got.len() > before {
                    self.sink_without_held += 1;
                }
                res.map(|(o, plain)| {
                    assert!(plain.end <= n, "the plaintext range lies in the chunk");
                    got.extend_from_slice(&chunk[plain]);
                    o
                })
            } else {
                self.server
                    .read_tls(&mut chunk, &mut out, &mut |p| got.extend_from_slice(p))
            };
            self.last_server_out = out.clone();
            self.deliver_to_client(&out);
            let o = res?;
            self.peer_closed |= o.peer_closed;
            self.handshake_events += o.handshake_completed as usize;
        }
        Ok(())
    }

    /// Ciphertext from the server into the client, and whatever the client can read out of it.
    pub fn deliver_to_client(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.client_error.is_some() {
                return;
            }
            let n = self.client.read_tls(&mut bytes).unwrap();
            assert!(n > 0);
            if let Err(e) = self.client.process_new_packets() {
                self.client_error = Some(e);
                return;
            }
            self.drain_client();
        }
        self.drain_client();
    }

    fn drain_client(&mut self) {
        let mut buf = [0u8; 16384];
        loop {
            match self.client.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.client_got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }

    /// The client's pending output, as bytes.
    pub fn client_output(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut v).unwrap();
        }
        v
    }

    /// Runs both sides until neither has anything to send.
    pub fn pump(&mut self) -> Result<(), TlsError> {
        for _ in 0..64 {
            let bytes = self.client_output();
            if bytes.is_empty() {
                return Ok(());
            }
            self.feed_server(&bytes)?;
        }
        panic!("no quiescence after 64 rounds");
    }

    pub fn handshake(&mut self) -> Result<(), TlsError> {
        self.pump()?;
        assert!(!self.client.is_handshaking(), "client still handshaking");
        assert!(!self.server.is_handshaking(), "server still handshaking");
        Ok(())
    }

    /// The client sends `data`; the server must deliver exactly it.
    pub fn client_sends(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.client.writer().write_all(data).unwrap();
        let before = self.server_got.len();
        self.pump()?;
        assert_eq!(&self.server_got[before..], data, "server plaintext differs");
        Ok(())
    }

    /// The server encrypts `data`; the client must read exactly it.
    pub fn server_sends(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.server_sends_parts(&[data]).map(|_| ())
    }

    /// The server encrypts `parts` in one `encrypt_parts` call; the client must read exactly their concatenation.
    /// Returns the ciphertext.
    pub fn server_sends_parts(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>, TlsError> {
        let data = parts.concat();
        let mut out = Vec::new();
        if parts.len() == 1 {
            self.server.encrypt(parts[0], &mut out)?;
        } else {
            self.server
                .encrypt_parts(&mut parts.iter().copied(), &mut out)?;
        }
        let before = self.client_got.len();
        self.deliver_to_client(&out);
        assert_eq!(self.client_got.len() - before, data.len());
        assert!(
            self.client_got[before..] == *data,
            "client plaintext differs"
        );
        Ok(out)
    }
}

pub fn pair(store: &Arc<TlsConfigStore>, client_cfg: &Arc<ClientConfig>) -> Pair {
    Pair::new(client(client_cfg), store.acceptor().accept().unwrap())
}
