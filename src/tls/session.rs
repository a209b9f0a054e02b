//! One server-side TLS session, sans-IO: ciphertext in, plaintext out to the layer above; plaintext in, ciphertext
//! out to be queued for sending.
//!
//! The handshake (and a TLS 1.2 session throughout) runs on rustls' unbuffered API (`UnbufferedServerConnection`):
//! rustls decrypts records out of the bytes the caller passes (the provided receive buffer) and encrypts into a
//! buffer the caller owns. A TLS 1.3 session is then handed over to `record.rs`, which decrypts in place and keeps
//! only the traffic keys. Either way the session keeps no plaintext or ciphertext buffer of its own: the only bytes it
//! ever holds are the tail of an incomplete record (or of a handshake message split over records) between two reads,
//! in `pending`, freed as soon as it empties. `perf/tls-choice.md` has the measurements behind this design.

use std::ops::Range;

use super::record::{ReadOutcome, Records};
use super::sniff::{sniff, Sniff};
use super::TlsError;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::HandshakeKind;

/// The most bytes of incomplete TLS input a session holds between reads: the largest handshake message rustls
/// accepts (64 KiB - 1) plus one full record (5-byte header + 16 KiB + 2 KiB expansion). A complete record never
/// needs more than 18 KiB; only a peer that stops mid-record (or mid-handshake-message) makes a session hold
/// anything, and the reactor's timeouts bound how long. Past this the peer is cut off ([`TlsError::TooLarge`]).
pub const MAX_PENDING_TLS: usize = 0xffff + 5 + 16 * 1024 + 2048;

/// Bytes added per record when encrypting (5-byte header, up to 8-byte explicit nonce in TLS 1.2, 16-byte AEAD tag,
/// 1 content type byte in TLS 1.3), rounded up; only sizes the first try, a short guess is retried exactly.
const RECORD_OVERHEAD: usize = 32;
/// The largest plaintext per TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;

const SNIFFED: u8 = 1;
const HANDSHAKE_DONE: u8 = 2;
const PEER_CLOSED: u8 = 4;
const CLOSE_SENT: u8 = 8;
const FAILED: u8 = 16;
const RESUMED: u8 = 32;
const ALPN: u8 = 64;

/// Where the session's TLS state lives.
enum Inner {
    /// During the handshake, and for a TLS 1.2 session throughout: rustls' unbuffered connection.
    Rustls(Box<UnbufferedServerConnection>),
    /// A TLS 1.3 session after its handshake: the traffic keys and this crate's record layer (`record.rs`).
    Records(Box<Records>),
    /// After a failed hand-over (the session is failed).
    Gone,
}

/// A server TLS session. Call order, per connection:
///
/// 1. For every chunk of bytes received: [`read_tls`](Self::read_tls)`(bytes, out, sink)`. `sink` gets each
///    decrypted plaintext chunk in order; `out` gets ciphertext to send (handshake flights, alerts, key updates);
///    the returned [`ReadOutcome`] says when the handshake completed and when the peer closed cleanly.
///    [`read_tls_in_place`](Self::read_tls_in_place) is the same but leaves the plaintext of whole records in the
///    given bytes (after what went to `sink`), so the layer above can parse it, and send from it, where it lies.
/// 2. Once the handshake completed, [`encrypt`](Self::encrypt)`(plaintext, out)` (or
///    [`encrypt_parts`](Self::encrypt_parts) for plaintext in pieces) for everything the layer above wants to
///    send, in order.
/// 3. To close: [`close`](Self::close)`(out)` queues `close_notify`.
///
/// After any error, queue what [`read_tls`](Self::read_tls) left in `out` (usually a fatal alert), send it if
/// cheap, and close the connection; the session refuses further input.
///
/// `size_of::<TlsSession>()` is 48 bytes; the TLS state is boxed.
///
/// A TLS 1.3 session, once its handshake completes, is handed over from rustls to this crate's record layer
/// (rustls' kernel-offload API: it keeps only what derives the next keys), which keeps a few hundred bytes instead
/// of rustls' ~3.3 KiB. TLS 1.2 sessions stay with rustls.
pub struct TlsSession {
    inner: Inner,
    /// Bytes received but not yet consumed by rustls (an incomplete record); empty and unallocated while idle.
    pending: Vec<u8>,
    flags: u8,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("handed_over", &self.is_handed_over())
            .field("pending", &self.pending.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl TlsSession {
    pub(crate) fn new(conn: UnbufferedServerConnection) -> Self {
        Self {
            inner: Inner::Rustls(Box::new(conn)),
            pending: Vec::new(),
            flags: 0,
        }
    }

    /// True until the handshake completes: the reactor counts these against its per-worker handshake cap and runs
    /// its handshake timeout while this holds.
    pub fn is_handshaking(&self) -> bool {
        self.flags & HANDSHAKE_DONE == 0
    }

    /// The handshake was an abbreviated one (session resumption by ticket or session id). `None` while handshaking.
    pub fn is_resumed(&self) -> Option<bool> {
        (!self.is_handshaking()).then_some(self.flags & RESUMED != 0)
    }

    /// The negotiated TLS version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.inner {
            Inner::Rustls(c) => c.protocol_version(),
            Inner::Records(_) => Some(rustls::ProtocolVersion::TLSv1_3),
            Inner::Gone => None,
        }
    }

    /// The ALPN protocol agreed with the client (`http/1.1`), if the client offered ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Rustls(c) => c.alpn_protocol(),
            _ => (self.flags & ALPN != 0).then_some(&b"http/1.1"[..]),
        }
    }

    /// Whether the session runs on this crate's TLS 1.3 record layer (handed over after its handshake).
    pub fn is_handed_over(&self) -> bool {
        matches!(self.inner, Inner::Records(_))
    }

    /// Tests only: how many records one send key protects before the session updates it (TLS 1.3 after the
    /// hand-over; the default is the cipher's confidentiality limit).
    #[doc(hidden)]
    pub fn set_key_update_interval(&mut self, records: u64) {
        if let Inner::Records(r) = &mut self.inner {
            r.set_tx_limit(records);
        }
    }

    /// Call about once a second (the reactor's timer sweep): a session that was (nearly) idle since the last call
    /// drops the expanded AEAD keys a busy one keeps between records (~1.1 KiB), so an idle session holds none.
    pub fn sweep(&mut self) {
        if let Inner::Records(r) = &mut self.inner {
            r.sweep();
        }
    }

    /// Whether the session holds expanded keys right now (see [`sweep`](Self::sweep)).
    #[doc(hidden)]
    pub fn holds_keys(&self) -> bool {
        matches!(&self.inner, Inner::Records(r) if r.holds_keys())
    }

    /// The peer sent `close_notify`.
    pub fn is_peer_closed(&self) -> bool {
        self.flags & PEER_CLOSED != 0
    }

    /// Bytes of incomplete input held right now (0 while idle).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds received ciphertext. Decrypted plaintext goes to `sink` in order; ciphertext to send is appended to
    /// `out`. `data` is decrypted in place when it holds whole records (so it may be clobbered: pass the provided
    /// receive buffer, it is returned to the ring afterwards anyway); a trailing incomplete record is copied into
    /// the session until the rest arrives.
    ///
    /// Errors: [`TlsError::NotTls`] when the first bytes are not a TLS handshake record (plain HTTP, garbage);
    /// [`TlsError::TooLarge`] past [`MAX_PENDING_TLS`]; the peer's fatal alert; any TLS protocol violation (a fatal
    /// alert to send is then in `out`). Input after `close_notify` is ignored, as TLS requires.
    pub fn read_tls(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<ReadOutcome, TlsError> {
        let (outcome, plain) = self.read_tls_in_place(data, out, sink)?;
        if !plain.is_empty() {
            sink(&data[plain]);
        }
        Ok(outcome)
    }

    /// [`read_tls`](Self::read_tls) without copying the plaintext of the whole records in `data`: it is left in
    /// `data` itself, contiguous, at the returned range, and comes after everything given to `sink`. `sink` only
    /// gets plaintext that was not in `data` as whole records (a record completed out of input held from an earlier
    /// call) and what rustls decrypts (the handshake, TLS 1.2). The range is empty when there is no such plaintext.
    pub fn read_tls_in_place(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(ReadOutcome, Range<usize>), TlsError> {
        if self.flags & FAILED != 0 {
            return Err(TlsError::Closed);
        }
        let mut outcome = ReadOutcome::default();
        if data.is_empty() {
            return Ok((outcome, 0..0));
        }
        if self.flags & SNIFFED == 0 {
            let mut first = [0u8; 2];
            let have = self.pending.len().min(2);
            first[..have].copy_from_slice(&self.pending[..have]);
            let more = (2 - have).min(data.len());
            first[have..have + more].copy_from_slice(&data[..more]);
            match sniff(&first[..have + more]) {
                Sniff::Tls => self.flags |= SNIFFED,
                Sniff::NeedMore => {}
                Sniff::Not(why) => return Err(self.fail(TlsError::NotTls(why))),
            }
        }
        let res = self.read_inner(data, out, sink, &mut outcome);
        if outcome.peer_closed {
            self.flags |= PEER_CLOSED;
        }
        let plain = match res {
            Ok(p) => p,
            Err(e) => return Err(self.fail(e)),
        };
        if let Inner::Rustls(c) = &self.inner {
            if self.flags & HANDSHAKE_DONE == 0 && !c.is_handshaking() {
                self.flags |= HANDSHAKE_DONE;
                if c.handshake_kind() == Some(HandshakeKind::Resumed) {
                    self.flags |= RESUMED;
                }
                if c.alpn_protocol().is_some() {
                    self.flags |= ALPN;
                }
                outcome.handshake_completed = true;
                self.hand_over()?;
            }
        }
        Ok((outcome, plain))
    }

    /// A TLS 1.3 session whose handshake completed goes from rustls to the record layer, unless rustls still has
    /// records to send (then it stays with rustls, which is only bigger).
    fn hand_over(&mut self) -> Result<(), TlsError> {
        let ready = matches!(&self.inner, Inner::Rustls(c)
            if c.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) && !c.wants_write());
        if !ready {
            return Ok(());
        }
        let Inner::Rustls(conn) = std::mem::replace(&mut self.inner, Inner::Gone) else {
            return Ok(());
        };
        let records = conn
            .dangerous_into_kernel_connection()
            .map_err(TlsError::from)
            .and_then(|(secrets, kernel)| Records::new(secrets, kernel, self.is_peer_closed()));
        match records {
            Ok(r) => {
                self.inner = Inner::Records(Box::new(r));
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Returns where plaintext left in place lies in `data` (see [`read_tls_in_place`](Self::read_tls_in_place)).
    fn read_inner(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
        outcome: &mut ReadOutcome,
    ) -> Result<Range<usize>, TlsError> {
        let mut at = 0;
        if !self.pending.is_empty() {
            // Complete the held record from the front of `data`, so that the rest can be decrypted in place.
            loop {
                let take = bytes_to_record_boundary(&self.pending).min(data.len() - at);
                if take == 0 {
                    break;
                }
                self.pending.extend_from_slice(&data[at..at + take]);
                at += take;
            }
            self.drive_pending(out, sink, outcome)?;
            if !self.pending.is_empty() {
                // Still incomplete (or a handshake message spans records rustls must see contiguously).
                self.pending.extend_from_slice(&data[at..]);
                self.drive_pending(out, sink, outcome)?;
                self.keep_pending_small()?;
                return Ok(0..0);
            }
            self.pending = Vec::new();
        }
        let data = &mut data[at..];
        if data.is_empty() {
            return Ok(0..0);
        }
        let (used, plain) = drive_inner(&mut self.inner, data, out, sink, outcome)?;
        let rest = &data[used..];
        if rest.len() > MAX_PENDING_TLS {
            return Err(TlsError::TooLarge);
        }
        if !rest.is_empty() {
            self.pending = rest.to_vec();
        }
        Ok(at + plain.start..at + plain.end)
    }

    /// Feeds the held input; its plaintext goes to `sink`.
    fn drive_pending(
        &mut self,
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]),
        outcome: &mut ReadOutcome,
    ) -> Result<(), TlsError> {
        let (used, plain) = drive_inner(&mut self.inner, &mut self.pending, out, sink, outcome)?;
        if !plain.is_empty() {
            sink(&self.pending[plain]);
        }
        self.pending.drain(..used);
        Ok(())
    }

    fn keep_pending_small(&mut self) -> Result<(), TlsError> {
        if self.pending.len() > MAX_PENDING_TLS {
            return Err(TlsError::TooLarge);
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        } else if self.pending.capacity() > 2 * self.pending.len() {
            self.pending.shrink_to_fit();
        }
        Ok(())
    }

    /// Encrypts `plaintext` (any length; split into records of at most 16 KiB) and appends the records to `out`.
    /// Only after the handshake completed ([`TlsError::Handshaking`] before), and not after [`close`](Self::close).
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if plaintext.is_empty() {
            return Ok(());
        }
        self.encrypt_parts(&mut std::iter::once(plaintext), out)
    }

    /// [`encrypt`](Self::encrypt) for plaintext in several pieces, as if they were one: after the hand-over a
    /// record holds up to 16 KiB across piece boundaries (a frame header and its payload in separate buffers make
    /// one record, not two), and each byte is copied once, into `out`, where it is encrypted. rustls (TLS 1.2)
    /// encrypts each piece on its own.
    pub fn encrypt_parts(
        &mut self,
        parts: &mut dyn Iterator<Item = &[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if self.flags & (FAILED | CLOSE_SENT) != 0 {
            return Err(TlsError::Closed);
        }
        if let Inner::Records(r) = &mut self.inner {
            let res = r.encrypt(parts, out);
            if res.is_err() {
                self.flags |= FAILED;
            }
            return res;
        }
        for p in parts {
            self.encrypt_rustls(p, out)?;
        }
        Ok(())
    }

    /// Encrypts with rustls (during the handshake's hand-over window and for TLS 1.2).
    fn encrypt_rustls(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if plaintext.is_empty() {
            return Ok(());
        }
        let records = plaintext.len().div_ceil(MAX_FRAGMENT);
        let guess = plaintext.len() + records * RECORD_OVERHEAD + 64;
        self.with_write_traffic(out, |wt, out| {
            let start = out.len();
            out.resize(start + guess, 0);
            let n = match wt.encrypt(plaintext, &mut out[start..]) {
                Ok(n) => n,
                Err(EncryptError::InsufficientSize(e)) => {
                    out.resize(start + e.required_size, 0);
                    wt.encrypt(plaintext, &mut out[start..])
                        .map_err(|e| TlsError::Encrypt(e.to_string()))?
                }
                Err(e) => {
                    out.truncate(start);
                    return Err(TlsError::Encrypt(e.to_string()));
                }
            };
            out.truncate(start + n);
            Ok(())
        })
    }

    /// Queues `close_notify` (appended to `out`). Returns false if there was nothing to do: the handshake had not
    /// completed (then simply close the socket) or it was already sent.
    pub fn close(&mut self, out: &mut Vec<u8>) -> Result<bool, TlsError> {
        if self.flags & (FAILED | CLOSE_SENT) != 0 || self.is_handshaking() {
            return Ok(false);
        }
        self.flags |= CLOSE_SENT;
        if let Inner::Records(r) = &mut self.inner {
            return r.close(out).map(|()| true);
        }
        self.with_write_traffic(out, |wt, out| {
            let start = out.len();
            out.resize(start + 64, 0);
            let n = wt
                .queue_close_notify(&mut out[start..])
                .map_err(|e| TlsError::Encrypt(e.to_string()))?;
            out.truncate(start + n);
            Ok(true)
        })
    }

    /// Runs rustls (over the held incomplete input, which it must always see) until it offers to write, flushing
    /// whatever it wants to send first.
    fn with_write_traffic<R>(
        &mut self,
        out: &mut Vec<u8>,
        f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> Result<R, TlsError>,
    ) -> Result<R, TlsError> {
        let Inner::Rustls(conn) = &mut self.inner else {
            return Err(TlsError::Closed);
        };
        let mut f = Some(f);
        loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut self.pending);
            let result = match state.map_err(TlsError::from) {
                Err(e) => Some(Err(e)),
                Ok(ConnectionState::EncodeTlsData(mut enc)) => encode(&mut enc, out).err().map(Err),
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut wt)) => match f.take() {
                    Some(f) => Some(f(&mut wt, out)),
                    None => Some(Err(TlsError::Closed)),
                },
                Ok(ConnectionState::PeerClosed) => {
                    self.flags |= PEER_CLOSED;
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Err(TlsError::Handshaking)),
                Ok(ConnectionState::Closed) => Some(Err(TlsError::Closed)),
                // The held input is never a whole record (`read_tls` consumes those), so no plaintext can appear
                // here; early data is not enabled.
                Ok(_) => Some(Err(TlsError::Unexpected)),
            };
            self.pending.drain(..discard);
            if let Some(r) = result {
                if let Err(e) = &r {
                    if !matches!(e, TlsError::Handshaking | TlsError::Closed) {
                        self.flags |= FAILED;
                    }
                }
                return r;
            }
        }
    }

    fn fail(&mut self, e: TlsError) -> TlsError {
        self.flags |= FAILED;
        self.pending = Vec::new();
        e
    }
}

/// Feeds `buf` to whichever holds the session's state; returns how many bytes at the front it is done with.
/// The record layer leaves its plaintext in `buf` (at the returned range); rustls' goes to `sink`.
fn drive_inner(
    inner: &mut Inner,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    sink: &mut dyn FnMut(&[u8]),
    outcome: &mut ReadOutcome,
) -> Result<(usize, Range<usize>), TlsError> {
    match inner {
        Inner::Rustls(conn) => drive(conn, buf, out, sink, outcome).map(|used| (used, 0..0)),
        Inner::Records(r) => r.read(buf, out, outcome),
        Inner::Gone => Err(TlsError::Closed),
    }
}

/// Feeds `buf` to rustls until it needs more input. Returns how many bytes at the front of `buf` rustls is done
/// with (the rest is an incomplete record, or handshake records it will join once the message is complete).
fn drive(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    sink: &mut dyn FnMut(&[u8]),
    outcome: &mut ReadOutcome,
) -> Result<usize, TlsError> {
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut buf[used..]);
        let stop = match state {
            Err(e) => {
                flush_alert(conn, &mut buf[used + discard..], out);
                return Err(e.into());
            }
            Ok(ConnectionState::ReadTraffic(mut rt)) => {
                while let Some(rec) = rt.next_record() {
                    let rec = rec?;
                    discard += rec.discard;
                    sink(rec.payload);
                }
                false
            }
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                encode(&mut enc, out)?;
                false
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                // The bytes are in `out`, which the caller queues in order: that is all "transmitted" has to mean.
                t.done();
                false
            }
            Ok(ConnectionState::PeerClosed) => {
                outcome.peer_closed = true;
                false
            }
            Ok(ConnectionState::Closed)
            | Ok(ConnectionState::BlockedHandshake)
            | Ok(ConnectionState::WriteTraffic(_)) => true,
            Ok(_) => return Err(TlsError::Unexpected),
        };
        used += discard;
        if stop {
            return Ok(used);
        }
    }
}

/// After a failure rustls usually has a fatal alert queued: put it in `out`. Only while rustls says it has records
/// to send, so that it pops them and never deframes again: re-reading the failed input would make it fail (and
/// alert) twice, and an empty slice would not match what its handshake joiner points into.
fn flush_alert(conn: &mut UnbufferedServerConnection, rest: &mut [u8], out: &mut Vec<u8>) {
    while conn.wants_write() {
        let UnbufferedStatus { state, .. } = conn.process_tls_records(rest);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                if encode(&mut enc, out).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Appends one encoded handshake/alert record (sized exactly) to `out`.
fn encode(
    enc: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let need = match enc.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(e)) => e.required_size,
        Err(e) => return Err(TlsError::Encrypt(e.to_string())),
    };
    let start = out.len();
    out.resize(start + need, 0);
    match enc.encode(&mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(TlsError::Encrypt(e.to_string()))
        }
    }
}

/// How many more bytes complete the last record in `held` (0 if it ends on a record boundary). When the last
/// record's header is itself incomplete, the answer covers the header only; the caller asks again.
fn bytes_to_record_boundary(held: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let left = held.len() - at;
        if left == 0 {
            return 0;
        }
        if left < 5 {
            return 5 - left;
        }
        let len = u16::from_be_bytes([held[at + 3], held[at + 4]]) as usize;
        let end = at + 5 + len;
        if end > held.len() {
            return end - held.len();
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_boundary() {
        assert_eq!(bytes_to_record_boundary(&[]), 0);
        assert_eq!(bytes_to_record_boundary(&[0x17, 3]), 3);
        assert_eq!(bytes_to_record_boundary(&[0x17, 3, 3, 0, 4]), 4);
        assert_eq!(bytes_to_record_boundary(&[0x17, 3, 3, 0, 2, 1, 2]), 0);
        assert_eq!(bytes_to_record_boundary(&[0x17, 3, 3, 0, 1, 9, 0x17, 3]), 3);
    }

    #[test]
    fn session_is_small() {
        assert!(std::mem::size_of::<TlsSession>() <= 48);
    }
}
