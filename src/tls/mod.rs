//! TLS between the ring and the HTTP/WebSocket layers (rustls, `ring` provider), sans-IO.
//!
//! ```text
//! recv (provided buffer) --ciphertext--> TlsSession::read_tls --plaintext--> HTTP head / proto::Connection
//! send queue <--ciphertext-- TlsSession::encrypt / close <--plaintext-- frames from the layer above
//! ```
//!
//! - [`config`]: PEM certificate chain and key loading with clear errors; [`TlsConfigStore`] (reloadable,
//!   shared by the workers) and [`TlsAcceptor`] (one per worker, lock-free on the accept path).
//! - [`session`]: [`TlsSession`], one connection's TLS state over rustls' unbuffered API: no buffer while idle.
//! - [`sniff`]: the first bytes on the TLS port: plain HTTP and garbage are told apart from TLS at once.
//!
//! What the reactor uses: [`TlsSession::is_handshaking`] to cap concurrent handshakes per worker and to run the
//! handshake timeout; [`TlsError::NotTls`] to count plain HTTP on the TLS port (and optionally answer with
//! [`PLAIN_HTTP_RESPONSE`]); [`ReadOutcome::peer_closed`] as the clean end of stream; [`TlsError::reason`] as a metric
//! label; [`TlsSession::is_resumed`] to count resumptions.
//!
//! - `record`: TLS 1.3 records after the handshake, on the traffic keys rustls hands over (a few hundred bytes per
//!   idle session instead of rustls' ~3.3 KiB; perf/tls-choice.md).
//!
//! Kernel TLS offload (kTLS) seam: the reactor only ever calls `read_tls`, `encrypt` and `close`, and a TLS 1.3
//! session already leaves rustls after its handshake through the API kTLS needs
//! (`UnbufferedServerConnection::dangerous_into_kernel_connection`, `ServerConfig::enable_secret_extraction`). A kTLS
//! variant would install those secrets with `setsockopt(SOL_TLS)` instead of keeping them in `record::Records`, and
//! pass bytes through unchanged from then on (handling only the KeyUpdates the kernel hands back). Not built: this
//! machine's kernel has no `CONFIG_TLS`.

pub mod config;
mod record;
pub mod session;
pub mod sniff;

pub use config::{
    load_cert_chain, load_private_key, TlsAcceptor, TlsConfigError, TlsConfigErrorKind,
    TlsConfigStore, TlsFiles, TlsOptions,
};
pub use session::{ReadOutcome, TlsSession, MAX_PENDING_TLS};
pub use sniff::{NotTls, PLAIN_HTTP_RESPONSE};

use std::fmt;

/// Why a TLS session failed. A peer's bad input is one of these, never a panic.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The first bytes on the connection are not a TLS handshake record.
    NotTls(NotTls),
    /// The peer sent a fatal alert (it aborted the handshake or the connection).
    PeerAlert(rustls::AlertDescription),
    /// The peer broke the TLS protocol or offered nothing we support; a fatal alert for it is in `out`.
    Protocol(rustls::Error),
    /// The peer made the session hold more than [`MAX_PENDING_TLS`] bytes of incomplete input.
    TooLarge,
    /// Application data before the handshake completed.
    Handshaking,
    /// The session failed earlier or `close_notify` was already sent.
    Closed,
    /// rustls could not encrypt (traffic keys exhausted) or encode.
    Encrypt(String),
    /// rustls returned a state this layer does not handle (early data is never enabled).
    Unexpected,
}

impl TlsError {
    /// A short stable label for metrics ("failures by reason").
    pub fn reason(&self) -> &'static str {
        use rustls::Error as E;
        match self {
            TlsError::NotTls(NotTls::PlainHttp) => "plain_http",
            TlsError::NotTls(NotTls::Garbage) => "not_tls",
            TlsError::PeerAlert(_) => "peer_alert",
            TlsError::Protocol(E::PeerIncompatible(_) | E::NoApplicationProtocol) => "incompatible",
            TlsError::Protocol(E::NoCertificatesPresented | E::InvalidCertificate(_)) => {
                "certificate"
            }
            TlsError::Protocol(_) => "protocol",
            TlsError::TooLarge => "too_large",
            TlsError::Handshaking
            | TlsError::Closed
            | TlsError::Encrypt(_)
            | TlsError::Unexpected => "local",
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        match e {
            rustls::Error::AlertReceived(a) => TlsError::PeerAlert(a),
            e => TlsError::Protocol(e),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::NotTls(NotTls::PlainHttp) => f.write_str("plain HTTP on the TLS port"),
            TlsError::NotTls(NotTls::Garbage) => {
                f.write_str("the first bytes are not a TLS handshake")
            }
            TlsError::PeerAlert(a) => write!(f, "the peer sent a fatal alert: {a:?}"),
            TlsError::Protocol(e) => write!(f, "TLS error: {e}"),
            TlsError::TooLarge => write!(
                f,
                "more than {MAX_PENDING_TLS} bytes of incomplete TLS input"
            ),
            TlsError::Handshaking => f.write_str("the TLS handshake has not completed"),
            TlsError::Closed => f.write_str("the TLS session is closed"),
            TlsError::Encrypt(e) => write!(f, "TLS encrypt: {e}"),
            TlsError::Unexpected => f.write_str("unexpected TLS state (early data?)"),
        }
    }
}

impl std::error::Error for TlsError {}
