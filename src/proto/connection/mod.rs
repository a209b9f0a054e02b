//! Per-connection protocol state (sans-IO).
//!
//! Call order, per read: `handle_read(input, on_event)` (unmasks `input` in place; events borrow either `input` or the
//! connection's reassembly buffer, hence the callback) -> `poll_transmit(out)` (appends pending control frames: pongs,
//! close) -> `poll_timeout()` to learn the next deadline; `handle_timeout(now)` when it passes.
//!
//! # When the transport may shut down
//! Once [`Connection::state`] is [`State::Closed`] and `poll_transmit` has been drained, the transport may flush and
//! close the TCP connection. `Closed` is reached when:
//! - the peer sent a close frame and our reply has been handed out by `poll_transmit` (the server then closes TCP,
//!   RFC 6455 7.1.1);
//! - we initiated (`close`), our close frame has been handed out and the peer's close frame arrived;
//! - the peer violated the protocol (`handle_read` returned `Err`) and our close frame carrying the error code has
//!   been handed out (the connection is failed; we do not wait for the peer's close);
//! - we initiated and the close timeout passed (`handle_timeout`).
//!
//! After a close frame was sent or received no further data messages (nor pings) are delivered; after the peer's
//! close frame or a protocol error all further input is ignored.
//!
//! # Size
//! `size_of::<Connection>()` is 96 bytes on 64-bit targets (pinned by a unit test). While idle (no partial message)
//! it owns no heap memory: the reassembly buffer is released at the end of every `handle_read` that leaves it empty,
//! and the queue for control frames is released once drained (it stays allocated only while closing).

use std::time::{Duration, Instant};

use super::compression::{DecompressError, Decompressor};
use super::frame::{self, HeaderError, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};

mod read;

/// Which end of the connection this core plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Expects masked frames from the peer, sends unmasked ones.
    Server,
    /// Expects unmasked frames from the peer.
    Client,
}

/// Protocol limits enforced by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (sum of its fragments); over it: close 1009, detected from the header.
    pub max_message_size: usize,
    /// Largest single frame payload; over it: close 1009.
    pub max_frame_size: usize,
    /// How long to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// A close status code (RFC 6455 7.4).
pub type CloseCode = u16;

/// Whether `code` may appear in a close frame on the wire (RFC 6455 7.4.1/7.4.2 plus the IANA-registered 1012-1014):
/// 1000-1003, 1007-1014, 3000-4999. 1004-1006, 1015, codes below 1000, 1016-2999 and 5000+ are not.
#[inline]
pub fn is_valid_close_code(code: CloseCode) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's (or the peer's close was answered and we wait to shut down).
    Closing,
    /// The close handshake is complete (or failed): the transport should be shut down after flushing `poll_transmit`.
    Closed,
}

/// What the peer did. Payloads borrow the input buffer or the reassembly buffer and are valid only in the callback.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (UTF-8 validated).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the pong is already queued. Every ping is answered (none are coalesced).
    Ping(&'a [u8]),
    /// A pong (an answer to a ping, or unsolicited).
    Pong(&'a [u8]),
    /// The peer's close frame; our answer (echoing the code; 1000 for an empty close) is already queued, unless we had
    /// sent or queued our own close first. `code` None = no status sent (1005). No event follows this one.
    Close {
        /// The status code, if the frame carried one.
        code: Option<CloseCode>,
        /// The reason text (valid UTF-8, possibly empty).
        reason: &'a str,
    },
}

/// A protocol violation by the peer. A close frame with `code` is already queued; the connection is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code sent to the peer (1002, 1007 or 1009).
    pub code: CloseCode,
    /// What the peer did wrong, for logs.
    pub reason: &'static str,
}

const fn perr(code: CloseCode, reason: &'static str) -> ProtocolError {
    ProtocolError { code, reason }
}

// The reasons are sent in the close frame (short, ASCII).
const E_OPCODE: ProtocolError = perr(1002, "reserved opcode");
const E_RSV: ProtocolError = perr(1002, "reserved bits set");
const E_UNMASKED: ProtocolError = perr(1002, "unmasked client frame");
const E_MASKED: ProtocolError = perr(1002, "masked server frame");
const E_CTRL_FRAGMENTED: ProtocolError = perr(1002, "fragmented control frame");
const E_CTRL_TOO_LONG: ProtocolError = perr(1002, "control frame over 125 bytes");
const E_CONT_NO_START: ProtocolError = perr(1002, "continuation without a message");
const E_DATA_IN_FRAGMENTED: ProtocolError = perr(1002, "new message inside a fragmented one");
const E_NON_MINIMAL: ProtocolError = perr(1002, "non-minimal length encoding");
const E_LEN_MSB: ProtocolError = perr(1002, "64-bit length with MSB set");
const E_CLOSE_LEN1: ProtocolError = perr(1002, "close payload of 1 byte");
const E_CLOSE_CODE: ProtocolError = perr(1002, "invalid close code");
const E_CLOSE_UTF8: ProtocolError = perr(1007, "close reason is not UTF-8");
const E_UTF8: ProtocolError = perr(1007, "text is not UTF-8");
const E_FRAME_TOO_BIG: ProtocolError = perr(1009, "frame too big");
const E_MESSAGE_TOO_BIG: ProtocolError = perr(1009, "message too big");
const E_INFLATED_TOO_BIG: ProtocolError = perr(1009, "decompressed message too big");
const E_INFLATE_CORRUPT: ProtocolError = perr(1007, "invalid compressed data");

impl From<DecompressError> for ProtocolError {
    fn from(e: DecompressError) -> Self {
        match e {
            DecompressError::TooBig => E_INFLATED_TOO_BIG,
            DecompressError::Corrupt => E_INFLATE_CORRUPT,
            DecompressError::InvalidUtf8 => E_UTF8,
        }
    }
}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::NonMinimalLength => E_NON_MINIMAL,
            HeaderError::LengthMsbSet => E_LEN_MSB,
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol error {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

// `flags` bits.
const F_CLIENT: u8 = 1 << 0;
const F_ALLOW_RSV1: u8 = 1 << 1;
/// The message being assembled had RSV1 set (compressed by an extension): no UTF-8 check, delivered as binary.
const F_MSG_RSV1: u8 = 1 << 2;
/// Inside a frame's payload (its header is parsed, `remaining` bytes are still to come).
const F_IN_PAYLOAD: u8 = 1 << 3;
/// The current frame has FIN set.
const F_FIN: u8 = 1 << 4;
/// Pings are answered by the application (see `set_auto_pong`), not queued here.
const F_NO_AUTO_PONG: u8 = 1 << 5;

// `close` bits.
/// Our close frame is queued (or already sent).
const C_QUEUED: u8 = 1 << 0;
/// Our close frame was handed out by `poll_transmit`.
const C_SENT: u8 = 1 << 1;
/// The peer's close frame arrived.
const C_RECEIVED: u8 = 1 << 2;
/// The peer violated the protocol.
const C_FAILED: u8 = 1 << 3;
/// The close timeout passed.
const C_TIMED_OUT: u8 = 1 << 4;

/// Reassembly capacity kept between messages inside one `handle_read`; above it the buffer is released at once.
const KEEP_CAPACITY: usize = 64 << 10;
/// Largest up-front reservation for a partially received frame (a declared length is not trusted further).
const MAX_RESERVE: u64 = 64 << 10;

/// Rarely needed state, boxed so the hot struct stays small: queued control frames and the close bookkeeping.
#[derive(Debug, Default)]
struct Cold {
    /// Encoded control frames waiting for `poll_transmit`.
    out: Vec<u8>,
    deadline: Option<Instant>,
    error: Option<ProtocolError>,
}

/// Per-connection protocol state. Small: 96 bytes plus any partially assembled message (see the module docs).
#[derive(Debug)]
pub struct Connection {
    /// Reassembly buffer: the data message being assembled, followed by the partial payload of a control frame split
    /// over reads (removed again as soon as the control frame is complete).
    buf: Vec<u8>,
    cold: Option<Box<Cold>>,
    /// Payload bytes of the current frame not yet received.
    remaining: u64,
    max_message: u64,
    max_frame: u64,
    close_timeout_ns: u64,
    /// Mask key of the current frame (zero when unmasked).
    key: [u8; 4],
    /// A partial header carried over reads.
    spill: [u8; MAX_HEADER_LEN],
    spill_len: u8,
    /// Mask phase (payload bytes of the current frame consumed, mod 4).
    phase: u8,
    /// Opcode of the current frame.
    op: u8,
    /// Opcode (1 text, 2 binary) of the data message being assembled, 0 when none.
    msg_op: u8,
    /// Payload length of the current control frame.
    ctrl_len: u8,
    /// Trailing bytes of the assembled text that form an incomplete (so far valid) UTF-8 sequence (0..=3).
    utf8_tail: u8,
    flags: u8,
    close: u8,
}

impl Connection {
    /// A connection in the `Open` state (after the opening handshake) playing `role` under `limits`.
    pub fn new(role: Role, limits: Limits) -> Self {
        Connection {
            buf: Vec::new(),
            cold: None,
            remaining: 0,
            max_message: limits.max_message_size as u64,
            max_frame: limits.max_frame_size as u64,
            close_timeout_ns: u64::try_from(limits.close_timeout.as_nanos()).unwrap_or(u64::MAX),
            key: [0; 4],
            spill: [0; MAX_HEADER_LEN],
            spill_len: 0,
            phase: 0,
            op: 0,
            msg_op: 0,
            ctrl_len: 0,
            utf8_tail: 0,
            flags: if role == Role::Client { F_CLIENT } else { 0 },
            close: 0,
        }
    }

    /// The role given at creation.
    pub fn role(&self) -> Role {
        if self.flags & F_CLIENT != 0 {
            Role::Client
        } else {
            Role::Server
        }
    }

    /// Accept RSV1 on the first frame of data messages (negotiated by an extension such as permessage-deflate;
    /// default off: any RSV bit fails the connection with 1002). Read with [`Connection::handle_read_with`], such a
    /// message is decompressed by the caller's [`Decompressor`], then validated and delivered like any other; read
    /// with [`Connection::handle_read`], it is not UTF-8 checked and is delivered raw as [`Event::Binary`], even when
    /// its opcode is text. RSV1 on control or continuation frames is still an error (1002).
    pub fn set_rsv1_allowed(&mut self, allowed: bool) {
        if allowed {
            self.flags |= F_ALLOW_RSV1;
        } else {
            self.flags &= !F_ALLOW_RSV1;
        }
    }

    /// Whether a ping is answered by queueing a pong for `poll_transmit` (default true). A server that writes its own
    /// outbound stream turns this off and answers `Event::Ping` itself, so the pong keeps its place among the
    /// messages produced by the same read (a pong for a ping that arrived before a message goes out before its echo).
    pub fn set_auto_pong(&mut self, on: bool) {
        if on {
            self.flags &= !F_NO_AUTO_PONG;
        } else {
            self.flags |= F_NO_AUTO_PONG;
        }
    }

    /// Heap bytes held by this connection (reassembly buffer and control queue capacity), for memory metrics.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
            + self
                .cold
                .as_ref()
                .map_or(0, |c| std::mem::size_of::<Cold>() + c.out.capacity())
    }

    /// Feed bytes read from the transport (unmasked in place). Calls `on_event` for every complete event.
    /// After an `Err`, a close frame is queued and further input is ignored (later calls return the same error).
    pub fn handle_read(
        &mut self,
        input: &mut [u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        self.read(input, None, on_event)
    }

    /// Like [`Connection::handle_read`], with a decompressor for messages with RSV1 set (see
    /// [`Connection::set_rsv1_allowed`]). Such a message's payload is assembled whole (its compressed size bounded
    /// by `max_message_size`), decompressed once its last frame arrived (the output bounded by `max_message_size`
    /// too: over it 1009; corrupt data 1007), validated as UTF-8 if text (1007) and delivered as `Text`/`Binary`
    /// borrowing the decompressor's output. Messages without RSV1 take the usual zero-copy path.
    pub fn handle_read_with(
        &mut self,
        input: &mut [u8],
        decompressor: &mut dyn Decompressor,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        self.read(input, Some(decompressor), on_event)
    }

    fn read(
        &mut self,
        input: &mut [u8],
        mut dec: Option<&mut dyn Decompressor>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        if self.close & (C_RECEIVED | C_FAILED | C_TIMED_OUT) != 0 {
            return match self.cold.as_ref().and_then(|c| c.error) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        let r = self.read_frames(input, &mut dec, on_event);
        if let Err(e) = r {
            self.fail(e);
        } else if self.buf.is_empty() && self.buf.capacity() != 0 {
            // Idle connections hold no reassembly memory.
            self.buf = Vec::new();
        }
        r
    }

    /// Append pending control frames (pongs, close) to `out`. Returns true if anything was written.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(cold) = self.cold.as_mut() else {
            return false;
        };
        if cold.out.is_empty() {
            return false;
        }
        out.extend_from_slice(&cold.out);
        if self.close & C_QUEUED != 0 {
            cold.out.clear();
            self.close |= C_SENT;
        } else {
            // Only pongs were queued: release the queue.
            self.cold = None;
        }
        true
    }

    /// Start the closing handshake with `code` and `reason` (queued for `poll_transmit`); `now` starts the close timer.
    /// No-op if a close frame was already queued. A `code` that may not be sent (see [`is_valid_close_code`]) is
    /// replaced by 1000; `reason` is cut to 123 bytes at a character boundary.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) {
        if self.close & C_QUEUED != 0 {
            return;
        }
        let code = if is_valid_close_code(code) {
            code
        } else {
            1000
        };
        self.queue_close(code, reason);
        let deadline = now.checked_add(Duration::from_nanos(self.close_timeout_ns));
        self.cold_mut().deadline = deadline;
    }

    /// Queue a ping with `payload` (at most 125 bytes). Returns false (and queues nothing) if the payload is too long
    /// or the connection is no longer open.
    pub fn ping(&mut self, payload: &[u8]) -> bool {
        if payload.len() > MAX_CONTROL_PAYLOAD || self.close & C_QUEUED != 0 {
            return false;
        }
        self.queue_control(OpCode::Ping, payload);
        true
    }

    /// Next deadline (close timeout), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state() != State::Closing {
            return None;
        }
        self.cold.as_ref().and_then(|c| c.deadline)
    }

    /// Tell the connection that time `now` has come; a passed close timeout moves it to `Closed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout() {
            if now >= deadline {
                self.close |= C_TIMED_OUT;
                self.buf = Vec::new();
            }
        }
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        let c = self.close;
        if c & C_QUEUED == 0 {
            State::Open
        } else if c & C_TIMED_OUT != 0 || (c & C_SENT != 0 && c & (C_RECEIVED | C_FAILED) != 0) {
            State::Closed
        } else {
            State::Closing
        }
    }

    /// Whether the application may still send data messages (state is `Open`).
    pub fn can_send(&self) -> bool {
        self.state() == State::Open
    }

    // ---- output ----

    fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Default::default)
    }

    fn queue_control(&mut self, op: OpCode, payload: &[u8]) {
        let client = self.flags & F_CLIENT != 0;
        let out = &mut self.cold_mut().out;
        if client {
            frame::write_client_frame(out, true, op, payload, mask_key());
        } else {
            frame::write_frame(out, true, op, payload);
        }
    }

    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
        self.queue_control(OpCode::Close, &payload[..2 + cut]);
        self.close |= C_QUEUED;
    }

    /// Fail the connection: queue a close frame with the error's code (unless one is queued already).
    #[cold]
    fn fail(&mut self, e: ProtocolError) {
        self.close |= C_FAILED;
        if self.close & C_QUEUED == 0 {
            self.queue_close(e.code, e.reason);
        }
        self.cold_mut().error = Some(e);
        self.buf = Vec::new();
        self.flags &= !F_IN_PAYLOAD;
        self.spill_len = 0;
        self.msg_op = 0;
        self.utf8_tail = 0;
    }
}

/// A fresh masking key for a client frame (RFC 6455 5.3: unpredictable). Only control frames queued by the core use
/// it; a failure of the OS source falls back to a fixed key (masking then still works, only predictably).
fn mask_key() -> [u8; 4] {
    let mut k = [0u8; 4];
    if getrandom::getrandom(&mut k).is_err() {
        k = [0x5a, 0xa5, 0x3c, 0xc3];
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_is_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 96, "size_of::<Connection>() = {size}");
    }
}
