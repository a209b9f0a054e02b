//! The client side of `wss://`: rustls (ring provider) as a sans-IO layer between the reactor's sockets and the
//! WebSocket code. Bytes in, bytes out: the reactor hands received ciphertext to [`TlsClient::receive`] and gets
//! plaintext back; it hands plaintext to [`TlsClient::seal`] and gets the ciphertext to send (the TLS handshake's own
//! records come out of the same call). Nothing here knows io_uring or sockets.
//!
//! Trust: the certificates of `--ca-file` (PEM), or, with `--insecure`, any certificate (signatures are still
//! checked, so the handshake costs the same as a verified one). The server name checked is the URL's host.
//! The first TLS failure of the process is printed once with a hint; every failure is counted as `tls`.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How every connection of the run speaks TLS: one shared rustls configuration and the name to verify.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// Which certificates the client accepts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The CA certificates in this PEM file.
    CaFile(&'a Path),
    /// Any certificate (`--insecure`).
    Insecure,
}

impl TlsSetup {
    /// The configuration for `host` (the URL's host, without the port). `resume`: keep the session tickets the
    /// server sends and offer them on the next connection (TLS 1.3 resumption). The error is the user's message.
    pub fn new(trust: Trust<'_>, host: &str, resume: bool) -> Result<TlsSetup, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut config = match trust {
            Trust::CaFile(path) => builder
                .with_root_certificates(load_roots(path)?)
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Ok(TlsSetup {
            config: Arc::new(config),
            name: server_name(host)?,
        })
    }

    /// A client session for one connection.
    pub fn client(&self) -> Result<TlsClient, String> {
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| format!("TLS client: {e}"))?;
        // The send buffer is bounded by the reactor (one send's worth of messages), not by rustls.
        conn.set_buffer_limit(None);
        Ok(TlsClient { conn })
    }
}

/// The TLS setup the command line asks for: `None` for ws://; for wss:// exactly one of `--ca-file` / `--insecure`.
pub fn setup_from_args(
    args: &crate::cli::Args,
    target: &crate::cli::Target,
) -> Result<Option<TlsSetup>, String> {
    if !target.tls {
        if args.ca_file.is_some() || args.insecure || args.resume {
            return Err("--ca-file, --insecure and --resume need a wss:// URL".into());
        }
        return Ok(None);
    }
    let trust = match (&args.ca_file, args.insecure) {
        (Some(p), false) => Trust::CaFile(p),
        (None, true) => Trust::Insecure,
        _ => return Err("wss:// needs --ca-file PATH (the CA to trust) or --insecure".into()),
    };
    TlsSetup::new(trust, &target.host, args.resume).map(Some)
}

/// The host part of `HOST[:PORT]` / `[V6]:PORT` as the name the certificate must carry.
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(h.to_string()).map_err(|_| format!("{h:?} is not a valid TLS server name"))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca-file {}: no certificate in the file",
            path.display()
        ));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// One connection's TLS session.
pub struct TlsClient {
    conn: ClientConnection,
}

impl TlsClient {
    /// Encrypt `buf` (plaintext; kept by rustls until the handshake is done) and replace it by everything that is
    /// ready to be sent: handshake records, alerts and the encrypted data.
    pub fn seal(&mut self, buf: &mut Vec<u8>) {
        if !buf.is_empty() {
            // Writes into rustls' own buffers cannot fail (no buffer limit is set below).
            let _ = self.conn.writer().write_all(buf);
            buf.clear();
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(buf).is_err() {
                break;
            }
        }
    }

    /// Ciphertext to send is waiting (a handshake message, an alert, data written before the handshake ended).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Received ciphertext: process it and append the plaintext it carried to `plain`. An error ends the
    /// connection (a bad certificate, a bad record, an alert from the server).
    pub fn receive(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        while !data.is_empty() {
            // Reading from a slice cannot fail; rustls takes at most what fits its buffer, so loop.
            match self.conn.read_tls(&mut data) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let state = self.conn.process_new_packets().inspect_err(report_once)?;
            let mut want = state.plaintext_bytes_to_read();
            while want > 0 {
                let at = plain.len();
                plain.resize(at + want, 0);
                let n = self.conn.reader().read(&mut plain[at..]).unwrap_or(0);
                plain.truncate(at + n);
                if n == 0 {
                    break;
                }
                want -= n;
            }
        }
        Ok(())
    }

    /// The TLS handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queue a close_notify alert (sent by the next [`TlsClient::seal`]).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// This session resumed an earlier one (TLS 1.3 ticket or TLS 1.2 session).
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }
}

/// Print the first TLS failure of the process (every one is counted; one message is enough to see why).
fn report_once(e: &rustls::Error) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::Relaxed) {
        eprintln!(
            "loadtest: TLS failed: {e} (check --ca-file, or pass --insecure to accept any certificate)"
        );
    }
}

/// `--insecure`: every certificate is accepted, the handshake signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches!(
            server_name("127.0.0.1:9").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:9").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost:9").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
    }

    #[test]
    fn missing_ca_file_is_a_clear_error() {
        let e = TlsSetup::new(
            Trust::CaFile(Path::new("/nonexistent/ca.pem")),
            "localhost",
            false,
        )
        .unwrap_err();
        assert!(e.contains("--ca-file"), "{e}");
    }
}
