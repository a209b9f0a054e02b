//! Certificate loading and reload: each bad file gives an error that names it and says what is wrong (never a
//! panic); a reload swaps the certificate for new handshakes only; a failed reload keeps the old one.

mod tls_util;

use ringws::tls::{TlsConfigErrorKind, TlsConfigStore, TlsFiles, TlsOptions};
use std::sync::Arc;
use tls_util::*;

fn open(files: &TlsFiles) -> Result<TlsConfigStore, ringws::tls::TlsConfigError> {
    TlsConfigStore::open(files.clone(), TlsOptions::default())
}

#[test]
fn missing_files_are_named() {
    let dir = TempDir::new("missing");
    let cert = make_cert();
    let good = write_cert(&dir, &cert);
    let no_cert = TlsFiles {
        cert: dir.path("nope.pem"),
        key: good.key.clone(),
    };
    let e = open(&no_cert).unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Read(_)), "{e:?}");
    assert_eq!(e.path.as_deref(), Some(no_cert.cert.as_path()));
    let msg = e.to_string();
    assert!(
        msg.contains("nope.pem") && msg.contains("cannot read"),
        "{msg}"
    );

    let no_key = TlsFiles {
        cert: good.cert.clone(),
        key: dir.path("nokey.pem"),
    };
    let e = open(&no_key).unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Read(_)), "{e:?}");
    assert!(e.to_string().contains("nokey.pem"));
}

#[test]
fn wrong_contents_are_explained() {
    let dir = TempDir::new("contents");
    let cert = make_cert();
    let good = write_cert(&dir, &cert);
    let write = |name: &str, text: &str| {
        let p = dir.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    // A certificate file without certificates (here: the key).
    let e = open(&TlsFiles {
        cert: good.key.clone(),
        key: good.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::NoCertificate), "{e:?}");
    assert!(e.to_string().contains("no certificate found"), "{e}");

    // A key file without a key (here: the certificate).
    let e = open(&TlsFiles {
        cert: good.cert.clone(),
        key: good.cert.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::NoPrivateKey), "{e:?}");
    assert!(e.to_string().contains("no private key found"), "{e}");

    // An empty file.
    let empty = write("empty.pem", "");
    let e = open(&TlsFiles {
        cert: empty.clone(),
        key: good.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::NoCertificate), "{e:?}");
    assert_eq!(e.path.as_deref(), Some(empty.as_path()));

    // Broken PEM: a BEGIN line without END, and bad base64.
    let cut = write("cut.pem", &cert.cert_pem[..cert.cert_pem.len() / 2]);
    let e = open(&TlsFiles {
        cert: cut.clone(),
        key: good.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Pem(_)), "{e:?}");
    assert!(e.to_string().contains("cut.pem"), "{e}");
    let bad64 = write(
        "bad64.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let e = open(&TlsFiles {
        cert: bad64,
        key: good.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Pem(_)), "{e:?}");

    // A certificate that is not DER inside valid PEM.
    let junk = write(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    );
    let e = open(&TlsFiles {
        cert: junk,
        key: good.key.clone(),
    })
    .unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Rejected(_)), "{e:?}");
}

#[test]
fn key_of_another_certificate_is_refused() {
    let dir = TempDir::new("mismatch");
    let a = make_cert();
    let b = make_cert();
    let files = write_cert(&dir, &a);
    std::fs::write(&files.key, &b.key_pem).unwrap();
    let e = open(&files).unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Rejected(_)), "{e:?}");
    assert_eq!(e.path.as_deref(), Some(files.key.as_path()));
    assert!(
        e.to_string().contains("does not match the certificate"),
        "{e}"
    );
}

#[test]
fn reload_switches_new_handshakes_only() {
    let dir = TempDir::new("reload");
    let old = make_cert();
    let files = write_cert(&dir, &old);
    let store = Arc::new(open(&files).unwrap());
    assert_eq!(store.generation(), 0);
    let mut acceptor = store.acceptor();
    let v = &rustls::version::TLS13;

    let mut before = Pair::new(
        client(&client_config(&old.der, v)),
        acceptor.accept().unwrap(),
    );
    before.handshake().unwrap();
    before.client_sends(b"one").unwrap();

    let new = make_cert();
    write_cert(&dir, &new);
    store.reload().unwrap();
    assert_eq!(store.generation(), 1);

    // The connection from before goes on with its keys.
    before.client_sends(b"two").unwrap();
    before.server_sends(b"still here").unwrap();

    // A new handshake presents the new certificate (a client trusting only the old one fails, one trusting the
    // new one succeeds and sees it).
    let mut after = Pair::new(
        client(&client_config(&new.der, v)),
        acceptor.accept().unwrap(),
    );
    after.handshake().unwrap();
    assert_eq!(after.client.peer_certificates().unwrap()[0], new.der);
    let mut stale = Pair::new(
        client(&client_config(&old.der, v)),
        acceptor.accept().unwrap(),
    );
    stale.pump().ok();
    assert!(
        stale.client_error.is_some(),
        "the old certificate is no longer served"
    );
}

#[test]
fn failed_reload_keeps_the_old_certificate() {
    let dir = TempDir::new("badreload");
    let cert = make_cert();
    let files = write_cert(&dir, &cert);
    let store = Arc::new(open(&files).unwrap());
    let mut acceptor = store.acceptor();

    std::fs::write(&files.cert, "not a certificate").unwrap();
    let e = store.reload().unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::NoCertificate), "{e:?}");
    assert!(e.to_string().contains("cert.pem"), "{e}");
    write_cert(&dir, &cert);
    std::fs::remove_file(&files.key).unwrap();
    let e = store.reload().unwrap_err();
    assert!(matches!(e.kind, TlsConfigErrorKind::Read(_)), "{e:?}");
    assert_eq!(store.generation(), 0, "a failed reload changes nothing");

    let mut p = Pair::new(
        client(&client_config(&cert.der, &rustls::version::TLS12)),
        acceptor.accept().unwrap(),
    );
    p.handshake().unwrap();
    assert_eq!(p.client.peer_certificates().unwrap()[0], cert.der);
}

#[test]
fn options_turn_resumption_off() {
    let dir = TempDir::new("noresume");
    let cert = make_cert();
    let files = write_cert(&dir, &cert);
    let mut options = TlsOptions::default();
    options.session_cache_entries = 0;
    options.tls13_tickets = 0;
    let store = Arc::new(TlsConfigStore::open(files, options).unwrap());
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config(&cert.der, v);
        let mut first = pair(&store, &cfg);
        first.handshake().unwrap();
        first.client_sends(b"x").unwrap();
        let mut second = pair(&store, &cfg);
        second.handshake().unwrap();
        assert_eq!(second.server.is_resumed(), Some(false));
    }
}
