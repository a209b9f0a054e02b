//! TLS 1.3 records after the handshake, without rustls' connection state (RFC 8446 section 5).
//!
//! Once a TLS 1.3 handshake completes, the session hands rustls' connection over to its kernel-offload API
//! (`dangerous_into_kernel_connection`): rustls keeps only what it needs to derive the next traffic secrets (a
//! `KernelConnection`), and the records are protected here with `ring`'s AEAD. This is the seam kernel TLS would use;
//! here the "kernel" is this file. It exists for memory: rustls' full connection keeps ~3.3 KiB per idle session
//! (perf/tls-choice.md); this keeps the raw traffic keys (32-byte key, 12-byte IV, sequence number each way), and
//! the expanded keys only while the session is busy (dropped by the timer sweep once it idles), so an idle session
//! holds a few hundred bytes.
//!
//! What it does: application data both ways (records of at most 16 KiB; received ones decrypted and joined in
//! place, sent ones filled across the caller's pieces and encrypted where they are written); `close_notify` and
//! fatal alerts from the peer; KeyUpdate from the peer (new receive keys, and an answer with new send keys when the
//! peer asks); a KeyUpdate of our own before the send keys reach the cipher's confidentiality limit; our own fatal
//! alert (encrypted) on any violation. Anything else after the handshake (other handshake messages, a handshake
//! message split over records, ChangeCipherSpec, unencrypted records) is an `unexpected_message`.

use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, ConnectionTrafficSecrets, ExtractedSecrets, InvalidMessage};
use zeroize::Zeroize;

use super::TlsError;

/// What a call to [`super::TlsSession::read_tls`] observed besides plaintext.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The handshake completed during this call: the layer above may start (and [`super::TlsSession::encrypt`] works).
    pub handshake_completed: bool,
    /// The peer sent `close_notify`: it sends nothing more. A clean close for the layer above (end of stream);
    /// answer with [`super::TlsSession::close`] and close the socket once it is sent.
    pub peer_closed: bool,
}

const APPLICATION_DATA: u8 = 0x17;
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const KEY_UPDATE: u8 = 24;
/// Largest plaintext per record, and largest ciphertext (RFC 8446 5.1, 5.2).
const MAX_PLAIN: usize = 1 << 14;
const MAX_CIPHER: usize = (1 << 14) + 256;
const TAG: usize = 16;
/// Never let a sequence number get near wrapping, whatever the suite's limit.
const SEQ_CEILING: u64 = 1 << 62;
/// A session that made at least this many calls (reads and encrypts) between two sweeps keeps its expanded keys
/// through the next period; below it they are dropped, so an idle (or nearly idle) session holds none.
const HOT_CALLS: u8 = 8;

/// An expanded AEAD key, boxed so that keeping it or handing it around moves a pointer.
type Key = Box<LessSafeKey>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Alg {
    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Alg::Aes128Gcm => &aead::AES_128_GCM,
            Alg::Aes256Gcm => &aead::AES_256_GCM,
            Alg::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's traffic key, IV and record sequence number.
struct Keys {
    alg: Alg,
    key: [u8; 32],
    key_len: u8,
    iv: [u8; 12],
    seq: u64,
}

impl Keys {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Self, TlsError> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Alg::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Alg::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Alg::Chacha20Poly1305, key, iv)
            }
            _ => return Err(TlsError::Unexpected),
        };
        let (key, iv) = (key.as_ref(), iv.as_ref());
        if key.len() != alg.ring().key_len() || key.len() > 32 || iv.len() != 12 {
            return Err(TlsError::Unexpected);
        }
        let mut k = Keys {
            alg,
            key: [0; 32],
            key_len: key.len() as u8,
            iv: [0; 12],
            seq,
        };
        k.key[..key.len()].copy_from_slice(key);
        k.iv.copy_from_slice(iv);
        Ok(k)
    }

    /// The expanded AEAD key (~560 bytes: kept only by busy sessions, see [`Records::sweep`]).
    fn expand(&self) -> Result<Key, TlsError> {
        UnboundKey::new(self.alg.ring(), &self.key[..self.key_len as usize])
            .map(|k| Box::new(LessSafeKey::new(k)))
            .map_err(|_| TlsError::Unexpected)
    }

    /// The per-record nonce: the IV XOR the sequence number (RFC 8446 5.3).
    fn nonce(&self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// A TLS 1.3 session past its handshake. `read` takes whole records from the front of a buffer; the caller keeps
/// an incomplete tail for the next read, exactly as with rustls.
pub(crate) struct Records {
    kernel: KernelConnection<ServerConnectionData>,
    tx: Keys,
    rx: Keys,
    /// Records we may send with one key before updating it.
    tx_limit: u64,
    peer_closed: bool,
    /// The expanded keys of a busy session (expanding one costs about as much as sealing a small record); None
    /// while idle.
    hot_tx: Option<Key>,
    hot_rx: Option<Key>,
    /// Calls since the last sweep (saturating).
    calls: u8,
}

impl Records {
    pub(crate) fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
        peer_closed: bool,
    ) -> Result<Self, TlsError> {
        let tx_limit = match kernel.negotiated_cipher_suite() {
            rustls::SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            _ => return Err(TlsError::Unexpected),
        }
        .min(SEQ_CEILING);
        Ok(Records {
            tx: Keys::new(secrets.tx.0, secrets.tx.1)?,
            rx: Keys::new(secrets.rx.0, secrets.rx.1)?,
            kernel,
            tx_limit,
            peer_closed,
            hot_tx: None,
            hot_rx: None,
            calls: 0,
        })
    }

    /// Once a second or so: a session that was (nearly) idle since the last sweep drops its expanded keys.
    pub(crate) fn sweep(&mut self) {
        if self.calls < HOT_CALLS {
            self.hot_tx = None;
            self.hot_rx = None;
        }
        self.calls = 0;
    }

    /// Whether the expanded keys of this call are kept for the next.
    fn hot(&mut self) -> bool {
        self.calls = self.calls.saturating_add(1);
        self.calls >= HOT_CALLS
    }

    /// Tests: whether the session holds expanded keys.
    pub(crate) fn holds_keys(&self) -> bool {
        self.hot_tx.is_some() || self.hot_rx.is_some()
    }

    /// Sets how many records one send key protects before a KeyUpdate (tests make it small).
    pub(crate) fn set_tx_limit(&mut self, records: u64) {
        self.tx_limit = records.clamp(2, SEQ_CEILING);
    }

    /// Decrypts the whole records at the front of `buf` in place. Returns the bytes used and where their plaintext
    /// now lies in `buf`, contiguous: the first record's plaintext stays where it was decrypted, the later ones' are
    /// moved down behind it (over the headers and tags in between, so only the bytes after the first record move).
    /// On a violation an encrypted fatal alert is appended to `out`.
    pub(crate) fn read(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        outcome: &mut ReadOutcome,
    ) -> Result<(usize, Range<usize>), TlsError> {
        let mut key = self.hot_rx.take();
        let res = self.read_records(buf, out, outcome, &mut key);
        if self.hot() {
            self.hot_rx = key;
        }
        match res {
            Ok(r) => Ok(r),
            Err((alert, e)) => {
                if let Some(a) = alert {
                    // Best effort: the connection is failing anyway.
                    let _ = self.seal(&mut None, ALERT, &[2, u8::from(a)], out);
                }
                Err(e)
            }
        }
    }

    fn read_records(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<u8>,
        outcome: &mut ReadOutcome,
        key: &mut Option<Key>,
    ) -> Result<(usize, Range<usize>), (Option<AlertDescription>, TlsError)> {
        let local = |e: TlsError| (None, e);
        let mut used = 0;
        let mut plain = 0..0;
        loop {
            if self.peer_closed {
                // Nothing after close_notify counts (RFC 8446 6.1).
                return Ok((buf.len(), plain));
            }
            let rest = &mut buf[used..];
            if rest.len() < 5 {
                return Ok((used, plain));
            }
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if len > MAX_CIPHER {
                return Err(fatal(
                    AlertDescription::RecordOverflow,
                    rustls::Error::PeerSentOversizedRecord,
                ));
            }
            if rest.len() < 5 + len {
                return Ok((used, plain));
            }
            if rest[0] != APPLICATION_DATA {
                return Err(unexpected(
                    "a record that is not protected after the handshake",
                ));
            }
            if len < TAG + 1 {
                return Err(fatal(
                    AlertDescription::DecodeError,
                    rustls::Error::DecryptError,
                ));
            }
            let header = [rest[0], rest[1], rest[2], rest[3], rest[4]];
            let body = &mut rest[5..5 + len];
            let k = match key {
                Some(k) => k,
                None => key.insert(self.rx.expand().map_err(local)?),
            };
            let decrypted = k
                .open_in_place(self.rx.nonce(), Aad::from(header), body)
                .map_err(|_| fatal(AlertDescription::BadRecordMac, rustls::Error::DecryptError))?;
            self.rx.seq += 1;
            // The content type is the last non-zero byte; zeros after it are padding.
            let Some(at) = decrypted.iter().rposition(|&b| b != 0) else {
                return Err(unexpected("a record of padding only"));
            };
            let (content, typ) = (&decrypted[..at], decrypted[at]);
            if content.len() > MAX_PLAIN {
                return Err(fatal(
                    AlertDescription::RecordOverflow,
                    rustls::Error::PeerSentOversizedRecord,
                ));
            }
            match typ {
                APPLICATION_DATA => {
                    let from = used + 5;
                    if plain.is_empty() {
                        plain = from..from + at;
                    } else {
                        // Behind the plaintext so far: `plain.end <= used`, the move is down and never overlaps
                        // bytes still to be read.
                        buf.copy_within(from..from + at, plain.end);
                        plain.end += at;
                    }
                }
                ALERT => match content {
                    [_, 0] => {
                        self.peer_closed = true;
                        outcome.peer_closed = true;
                    }
                    // user_canceled announces a close_notify; it ends nothing by itself.
                    [_, 90] => {}
                    [_, d] => return Err((None, TlsError::PeerAlert(AlertDescription::from(*d)))),
                    _ => {
                        return Err(fatal(
                            AlertDescription::DecodeError,
                            InvalidMessage::MessageTooShort.into(),
                        ))
                    }
                },
                HANDSHAKE => {
                    // The only message a client may send after the handshake here is KeyUpdate, and it must end
                    // its record (it changes keys). A split handshake message is refused, not joined.
                    let [KEY_UPDATE, 0, 0, 1, request] = *content else {
                        return Err(unexpected("a handshake message after the handshake"));
                    };
                    if request > 1 {
                        return Err(fatal(
                            AlertDescription::IllegalParameter,
                            InvalidMessage::InvalidKeyUpdate.into(),
                        ));
                    }
                    let (seq, s) = self
                        .kernel
                        .update_rx_secret()
                        .map_err(|e| local(e.into()))?;
                    self.rx = Keys::new(seq, s).map_err(local)?;
                    *key = None;
                    if request == 1 {
                        self.update_tx(out).map_err(local)?;
                    }
                }
                _ => return Err(unexpected("an unknown content type")),
            }
            used += 5 + len;
        }
    }

    /// Encrypts the bytes of `parts`, in order, as application-data records appended to `out`: each record is
    /// filled to 16 KiB across part boundaries, so the parts cost the records their total needs, not one each.
    /// The plaintext is copied once, into its place in `out`, and encrypted there.
    pub(crate) fn encrypt(
        &mut self,
        parts: &mut dyn Iterator<Item = &[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        let mut key = self.hot_tx.take();
        let res = self.encrypt_with(parts, out, &mut key);
        if self.hot() {
            self.hot_tx = key;
        }
        res
    }

    fn encrypt_with(
        &mut self,
        parts: &mut dyn Iterator<Item = &[u8]>,
        out: &mut Vec<u8>,
        key: &mut Option<Key>,
    ) -> Result<(), TlsError> {
        let mut part: &[u8] = &[];
        loop {
            while part.is_empty() {
                match parts.next() {
                    Some(p) => part = p,
                    None => return Ok(()),
                }
            }
            if self.tx.seq + 1 >= self.tx_limit {
                self.update_tx(out)?;
                *key = None;
            }
            let start = out.len();
            out.extend_from_slice(&[0; 5]);
            let mut n = 0;
            loop {
                let take = part.len().min(MAX_PLAIN - n);
                out.extend_from_slice(&part[..take]);
                part = &part[take..];
                n += take;
                if n == MAX_PLAIN {
                    break;
                }
                match parts.next() {
                    Some(p) => part = p,
                    None => break,
                }
            }
            self.seal_tail(key, APPLICATION_DATA, out, start)?;
        }
    }

    /// Appends an encrypted `close_notify`.
    pub(crate) fn close(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.seal(&mut None, ALERT, &[1, 0], out)
    }

    /// Sends a KeyUpdate (not asking the peer for one) under the current keys, then switches to the next ones.
    /// A caller holding the expanded send key drops it.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.hot_tx = None;
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, 0, KEY_UPDATE, 0, 0, 1, 0]);
        self.seal_tail(&mut None, HANDSHAKE, out, start)?;
        let (seq, s) = self.kernel.update_tx_secret()?;
        self.tx = Keys::new(seq, s)?;
        Ok(())
    }

    /// One record of `typ` holding `content` (<= 16 KiB), updating the send keys first when they are used up.
    fn seal(
        &mut self,
        key: &mut Option<Key>,
        typ: u8,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if self.tx.seq + 1 >= self.tx_limit {
            self.update_tx(out)?;
            *key = None;
        }
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        out.extend_from_slice(content);
        self.seal_tail(key, typ, out, start)
    }

    /// Turns `out[start..]` (5 bytes of room for the header, then at most 16 KiB of content) into one record of
    /// `typ`, encrypted in place under the current send keys (`key`: their expansion, made on first use).
    fn seal_tail(
        &mut self,
        key: &mut Option<Key>,
        typ: u8,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), TlsError> {
        debug_assert!(out.len() - start - 5 <= MAX_PLAIN);
        out.push(typ);
        let len = out.len() - start - 5 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        out[start..start + 5].copy_from_slice(&header);
        let k = match key {
            Some(k) => k,
            None => key.insert(self.tx.expand()?),
        };
        let tag = k
            .seal_in_place_separate_tag(self.tx.nonce(), Aad::from(header), &mut out[start + 5..])
            .map_err(|_| TlsError::Encrypt("AEAD seal failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        Ok(())
    }
}

fn fatal(alert: AlertDescription, e: rustls::Error) -> (Option<AlertDescription>, TlsError) {
    (Some(alert), TlsError::Protocol(e))
}

fn unexpected(what: &'static str) -> (Option<AlertDescription>, TlsError) {
    fatal(
        AlertDescription::UnexpectedMessage,
        InvalidMessage::UnexpectedMessage(what).into(),
    )
}
