//! TLS on a connection (when `Config::tls` is set): the session sits between recv and the connection's phase.
//! Received ciphertext goes through [`read`], and the decrypted plaintext on to the HTTP phase or the WebSocket
//! session exactly as plain bytes would; everything those phases queue is plaintext, encrypted by [`seal`] right
//! before each send. Also the per-worker handshake cap and its gauge.
//!
//! No buffer is held per connection: records are decrypted in the receive buffer and their plaintext is parsed there
//! (a large echo is sent from there, sealed into the send buffer: its one copy); only plaintext the session cannot
//! leave in place (a record completed from a held tail, the handshake, TLS 1.2) lands in one per-worker buffer.
//! Ciphertext goes to the connection's pooled send buffers, and the session keeps only its keys (and the tail of an
//! incomplete record).

use std::sync::Arc;
use std::time::Instant;

use crate::proto::{Limits, State};
use crate::tls::{NotTls, TlsAcceptor, TlsConfigStore, TlsError, TlsSession, PLAIN_HTTP_RESPONSE};

use super::super::handler::Handler;
use super::super::local::{Local, RxSpan};
use super::super::stats::Counters;
use super::conn::{Conn, Phase, CLOSE_AFTER_FLUSH};
use super::{http, session};

/// A worker's TLS state: its acceptor (the certificate for new handshakes) and scratch buffers shared by its
/// connections.
pub(super) struct TlsWorker {
    acceptor: TlsAcceptor,
    /// Plaintext of the read being processed.
    plain: Vec<u8>,
    /// Ciphertext the read being processed produced (handshake flights, alerts, key updates).
    cipher: Vec<u8>,
    max_handshakes: usize,
}

impl TlsWorker {
    pub(super) fn new(store: &Arc<TlsConfigStore>, max_handshakes: usize) -> Self {
        TlsWorker {
            acceptor: store.acceptor(),
            plain: Vec::new(),
            cipher: Vec::new(),
            max_handshakes,
        }
    }

    /// A session for a just-accepted connection, or `None` when the worker is at its handshake cap (counted).
    pub(super) fn accept(&mut self, c: &mut Counters) -> Option<Box<TlsSession>> {
        if c.tls_handshaking as usize >= self.max_handshakes {
            c.tls_capped += 1;
            return None;
        }
        match self.acceptor.accept() {
            Ok(s) => {
                c.tls_handshaking += 1;
                Some(Box::new(s))
            }
            Err(e) => {
                tracing::warn!("cannot start a TLS session: {e}");
                None
            }
        }
    }
}

/// A connection goes away: a handshake it had under way no longer counts against the cap.
pub(super) fn forget(c: &mut Counters, s: &TlsSession) {
    if s.is_handshaking() {
        c.tls_handshaking -= 1;
    }
}

fn count_failure(c: &mut Counters, e: &TlsError) {
    match e {
        TlsError::NotTls(NotTls::PlainHttp) => c.tls_plain_http += 1,
        TlsError::NotTls(NotTls::Garbage) => c.tls_not_tls += 1,
        TlsError::PeerAlert(_) => c.tls_peer_alerts += 1,
        _ => c.tls_errors += 1,
    }
}

/// Ciphertext arrived for a TLS connection (`rx`: where it lies in the receive ring, None if copied out of it). The
/// records are decrypted in place and their plaintext parsed where it lies. Returns true when the connection must
/// be torn down now (the peer closed TLS with `close_notify`, or TLS failed on an open WebSocket); a failure during
/// the HTTP phase instead queues what there is to say (an alert, or a 400 for plain HTTP) and closes after it is
/// written.
#[allow(clippy::too_many_arguments)]
pub(super) fn read<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    tw: &mut TlsWorker,
    slot: u32,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
    rx: Option<RxSpan>,
    now: Instant,
) -> bool {
    let Some(sess) = conn.tls.as_deref_mut() else {
        return false;
    };
    let before = conn.out.queued();
    // Records this read produces go after everything already queued: encrypt that first.
    if conn
        .out
        .seal(&mut local.pool, |p, v| sess.encrypt_parts(p, v))
        .is_err()
    {
        return true;
    }
    tw.plain.clear();
    tw.cipher.clear();
    let plain = &mut tw.plain;
    let res = sess.read_tls_in_place(data, &mut tw.cipher, &mut |p| plain.extend_from_slice(p));
    conn.out.push_sealed(&tw.cipher, &mut local.pool);
    let resumed = sess.is_resumed() == Some(true);
    let (outcome, in_place) = match res {
        Ok(o) => o,
        Err(e) => {
            count_failure(&mut local.c, &e);
            tracing::debug!(slot, "TLS: {e}");
            if matches!(e, TlsError::NotTls(NotTls::PlainHttp)) {
                conn.out.push_sealed(PLAIN_HTTP_RESPONSE, &mut local.pool);
            }
            if matches!(conn.phase, Phase::Ws { .. }) {
                return true;
            }
            conn.phase = Phase::Done;
            conn.flags |= CLOSE_AFTER_FLUSH;
            local.note_queued(slot, before);
            return false;
        }
    };
    if conn.out.queued() > before {
        local.note_queued(slot, before);
    }
    if outcome.handshake_completed {
        local.c.tls_handshaking -= 1;
        local.c.tls_handshakes += 1;
        local.c.tls_resumed += resumed as u64;
    }
    // The plaintext: what the session could not leave in place (copied), then what it left in `data`. When there
    // is both (a record completed from held input, then more records in the same read), the second is appended to
    // the first, so the layers above see one chunk.
    let mut plain = &mut data[in_place];
    let mut rx = rx;
    if !tw.plain.is_empty() && !plain.is_empty() {
        tw.plain.extend_from_slice(plain);
        plain = &mut [];
    }
    if !tw.plain.is_empty() {
        plain = &mut tw.plain;
        rx = None;
    }
    if !plain.is_empty() {
        match conn.phase {
            Phase::Ws { .. } => {
                // Large payloads still in the receive buffer are sent from there (sealed before the next send).
                local.rx = rx;
                session::read(h, local, slot, conn, plain, now);
                local.rx = None;
            }
            Phase::Http { .. } => http::read(h, local, limits, slot, conn, plain, now),
            Phase::Done => {}
        }
    }
    outcome.peer_closed
}

/// Before a send on a TLS connection: encrypt what the phases queued, and after the last bytes of a connection
/// that is closing, a `close_notify`. Returns false if TLS failed (tear the connection down).
pub(super) fn seal<D>(conn: &mut Conn<D>, local: &mut Local) -> bool {
    let Some(sess) = conn.tls.as_deref_mut() else {
        return true;
    };
    if conn
        .out
        .seal(&mut local.pool, |p, v| sess.encrypt_parts(p, v))
        .is_err()
    {
        return false;
    }
    let closing = conn.flags & CLOSE_AFTER_FLUSH != 0
        || matches!(&conn.phase, Phase::Ws { proto, .. } if proto.state() == State::Closed);
    if closing {
        let mut v = Vec::new();
        if let Ok(true) = sess.close(&mut v) {
            conn.out.push_sealed(&v, &mut local.pool);
        }
    }
    true
}
