//! Per-connection protocol state (sans-IO).
//!
//! SKELETON: signatures are the contract the server is written against; bodies are being implemented.
//!
//! Call order, per read: `handle_read(input, on_event)` (unmasks `input` in place; events borrow either `input` or the
//! connection's reassembly buffer, hence the callback) -> `poll_transmit(out)` (appends pending control frames: pongs,
//! close) -> `poll_timeout()` to learn the next deadline; `handle_timeout(now)` when it passes.

use std::time::{Duration, Instant};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
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
    /// A ping; the pong is already queued.
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The peer's close frame; our answer (echoing the code) is already queued. `code` None = no status sent (1005).
    Close {
        code: Option<CloseCode>,
        reason: &'a str,
    },
}

/// A protocol violation by the peer. A close frame with `code` is already queued; the connection is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: CloseCode,
    pub reason: &'static str,
}

/// Per-connection protocol state. Small: tens of bytes plus any partially assembled message.
#[derive(Debug)]
pub struct Connection {
    _private: (),
}

impl Connection {
    pub fn new(role: Role, limits: Limits) -> Self {
        let _ = (role, limits);
        todo!()
    }

    /// Feed bytes read from the transport (unmasked in place). Calls `on_event` for every complete event.
    /// After an `Err`, a close frame is queued and further input is ignored.
    pub fn handle_read(
        &mut self,
        input: &mut [u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        let _ = (input, on_event);
        todo!()
    }

    /// Append pending control frames (pongs, close) to `out`. Returns true if anything was written.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        todo!()
    }

    /// Start the closing handshake with `code` and `reason` (queued for `poll_transmit`); `now` starts the close timer.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) {
        let _ = (code, reason, now);
        todo!()
    }

    /// Next deadline (close timeout), if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Tell the connection that time `now` has come; a passed close timeout moves it to `Closed`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    pub fn state(&self) -> State {
        todo!()
    }

    /// Whether the application may still send data messages (state is `Open`).
    pub fn can_send(&self) -> bool {
        self.state() == State::Open
    }
}
