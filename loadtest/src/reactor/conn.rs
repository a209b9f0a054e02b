//! One connection's slot: where it is in its life ([`St`]), its buffers, counters and protocol state. Slots are
//! created for every connection before the ramp-up and never reused.

use std::collections::VecDeque;

use ringws::handshake::ClientHandshake;
use ringws::proto::Connection;

use crate::deflate::ConnDeflate;
use crate::frames::FrameTemplate;
use crate::tls::TlsClient;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
    Idle,
    Connecting,
    Handshaking,
    Open,
    /// Our close frame is queued or sent; waiting for the server's close and EOF.
    Closing,
    Dead,
}

pub(super) struct Conn {
    pub(super) fd: i32,
    pub(super) st: St,
    /// A connect is in flight.
    pub(super) connecting: bool,
    /// A receive (plain or multishot) is armed.
    pub(super) recv_armed: bool,
    /// A send is in flight.
    pub(super) send_busy: bool,
    /// Listed in the reactor's dirty list (flushed at the end of the turn).
    pub(super) dirty: bool,
    /// A publisher (pubsub mode); otherwise a subscriber or a plain echo/rate/flood connection.
    pub(super) publisher: bool,
    pub(super) got_close: bool,
    /// This connection's masking key.
    pub(super) key: [u8; 4],
    /// Bytes in `rbuf` (plain receives and the handshake).
    pub(super) rlen: u32,
    /// Bytes of `sbuf` already sent.
    pub(super) soff: u32,
    /// Messages sent and not yet echoed (echo/flood/rate).
    pub(super) outstanding: u32,
    /// Messages scheduled and not yet written (rate/pubsub).
    pub(super) due: u32,
    pub(super) send_seq: u64,
    pub(super) recv_seq: u64,
    /// When the connect started (ns), for the connect+handshake time and the handshake timeout.
    pub(super) t_start: u64,
    pub(super) rbuf: Box<[u8]>,
    pub(super) sbuf: Vec<u8>,
    /// Pending control frames / join message.
    pub(super) ctrl: Vec<u8>,
    /// Send time (ns) of each outstanding message, oldest first (echo/rate; pubsub publishers: intended times).
    pub(super) stamps: VecDeque<u64>,
    pub(super) tmpl: Option<FrameTemplate>,
    pub(super) hs: Option<Box<ClientHandshake>>,
    /// The ringws protocol core for this connection (decodes the server's frames).
    pub(super) proto: Option<Connection>,
    /// wss://: the connection's TLS session (from the TCP connect on).
    pub(super) tls: Option<Box<TlsClient>>,
    /// permessage-deflate state, when negotiated (`--deflate`).
    pub(super) deflate: Option<Box<ConnDeflate>>,
}

impl Conn {
    pub(super) fn new(key: [u8; 4], publisher: bool) -> Self {
        Conn {
            fd: -1,
            st: St::Idle,
            connecting: false,
            recv_armed: false,
            send_busy: false,
            dirty: false,
            publisher,
            got_close: false,
            key,
            rlen: 0,
            soff: 0,
            outstanding: 0,
            due: 0,
            send_seq: 0,
            recv_seq: 0,
            t_start: 0,
            rbuf: Box::default(),
            sbuf: Vec::new(),
            ctrl: Vec::new(),
            stamps: VecDeque::new(),
            tmpl: None,
            hs: None,
            proto: None,
            tls: None,
            deflate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slot_is_small() {
        let n = std::mem::size_of::<Conn>();
        eprintln!("size_of::<Conn>() = {n}");
        assert!(n <= 320, "Conn grew to {n} bytes");
    }
}
