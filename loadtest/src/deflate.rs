//! `--deflate`: permessage-deflate (RFC 7692) on the client side, through ringws' sans-IO codec
//! (`ringws::deflate`, zlib-rs at level 2, the same code the server runs).
//!
//! - **Offer** ([`Offer`]): `permessage-deflate; client_max_window_bits` plus what the options ask for
//!   (`--deflate-no-context-takeover`, `--deflate-server-window-bits`, `--deflate-client-window-bits`).
//! - **Response** ([`Offer::accept`]): the server's selection is parsed by `ringws::deflate::negotiate::
//!   parse_response` and checked against the offer (RFC 7692 7.1: a server must not claim more than was offered);
//!   a response that breaks it fails that connection's handshake. No selection: the connection runs uncompressed and
//!   counts as declined (the summary says "not negotiated").
//! - **Sending** ([`write_message`]): every data message is compressed (no threshold; a message that would not
//!   shrink goes plain, as the format allows). With client context takeover (the server did not ask for
//!   `client_no_context_takeover`) each connection keeps its own compressor, as browsers do: a zlib-rs stream of
//!   some 250-380 KiB once the connection has sent, so many sending connections cost the client that much each; with
//!   no context takeover the thread's one compressor per window is reset before each message.
//! - **Receiving** ([`Rx`]): compressed messages are inflated by the thread's one inflater (primed with the
//!   connection's window history when the server keeps its context), bounded by the core's `max_message_size`; the
//!   workload then checks every echo against what was sent, exactly as without compression.
//! - **Counting** ([`DeflateStats`]): messages and payload bytes before and after compression in both directions,
//!   inside the measured window, and the negotiated parameters.

use ringws::deflate::codec::Primed;
use ringws::deflate::negotiate::{parse_response, CLIENT_OFFER};
use ringws::deflate::{
    encode_message, Compressor, DedicatedDeflater, DeflateParams, Deflater, InflateHistory,
    Inflater, DEFAULT_LEVEL,
};
use ringws::proto::{DecompressError, Decompressor, OpCode};
use serde::Serialize;

/// What `--deflate` and its options offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The `Sec-WebSocket-Extensions` value sent.
    pub header: String,
    /// `server_no_context_takeover` and `client_no_context_takeover` were offered.
    pub no_context_takeover: bool,
    /// `server_max_window_bits=N` was offered.
    pub server_bits: Option<u8>,
    /// `client_max_window_bits=N` was offered (otherwise the bare parameter: any window the server names).
    pub client_bits: Option<u8>,
}

impl Offer {
    /// The offer for the options (`None`: compression not asked for). Any of the options implies `--deflate`.
    pub fn new(
        deflate: bool,
        no_context_takeover: bool,
        server_bits: Option<u8>,
        client_bits: Option<u8>,
    ) -> Result<Option<Offer>, String> {
        if !(deflate || no_context_takeover || server_bits.is_some() || client_bits.is_some()) {
            return Ok(None);
        }
        for (name, b) in [("server", server_bits), ("client", client_bits)] {
            if let Some(b) = b {
                if !(8..=15).contains(&b) {
                    return Err(format!(
                        "--deflate-{name}-window-bits must be 8..=15 (RFC 7692), got {b}"
                    ));
                }
            }
        }
        let mut header = String::from("permessage-deflate");
        if no_context_takeover {
            header.push_str("; server_no_context_takeover; client_no_context_takeover");
        }
        if let Some(b) = server_bits {
            header.push_str(&format!("; server_max_window_bits={b}"));
        }
        match client_bits {
            Some(b) => header.push_str(&format!("; client_max_window_bits={b}")),
            None => header.push_str(&CLIENT_OFFER["permessage-deflate".len()..]),
        }
        Ok(Some(Offer {
            header,
            no_context_takeover,
            server_bits,
            client_bits,
        }))
    }

    /// Check the server's `Sec-WebSocket-Extensions` selection against this offer; the parameters both ends use.
    pub fn accept(&self, response: &str) -> Result<DeflateParams, String> {
        let mut p = parse_response(response)
            .map_err(|e| format!("bad permessage-deflate response {response:?}: {e:?}"))?;
        if self.no_context_takeover && !p.server_no_context_takeover {
            return Err(format!(
                "server ignored the offered server_no_context_takeover: {response:?}"
            ));
        }
        if let Some(b) = self.server_bits {
            let named = response.contains("server_max_window_bits");
            if !named || p.server_max_window_bits > b {
                return Err(format!(
                    "server_max_window_bits={b} was offered, the response does not keep to it: {response:?}"
                ));
            }
        }
        if let Some(b) = self.client_bits {
            if p.client_max_window_bits > b {
                return Err(format!(
                    "client_max_window_bits={b} was offered, the response names more: {response:?}"
                ));
            }
            p.client_max_window_bits = p.client_max_window_bits.min(b);
        }
        Ok(p)
    }
}

/// `--json-payload`: `size` bytes of JSON-like records (`{"id":…,"user":"user_…","event":"click","ts":…,"value":…}`,
/// fields drawn from a fixed pseudo-random sequence, so every run sends the same text), the first
/// [`crate::frames::seq_len`] bytes zero digits for the sequence number, like [`crate::frames::make_payload`].
pub fn json_like_payload(size: usize) -> Vec<u8> {
    const EVENTS: [&str; 6] = ["click", "view", "scroll", "purchase", "login", "share"];
    let mut s = String::with_capacity(size + 128);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    s.push('[');
    while s.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"user_{}\",\"event\":\"{}\",\"ts\":{},\"value\":{}}},",
            x % 100_000,
            (x >> 20) % 500,
            EVENTS[((x >> 30) % 6) as usize],
            1_764_000_000_000 + (x >> 24) % 1_000_000,
            (x >> 40) % 1000
        ));
    }
    let mut p = s.into_bytes();
    p.truncate(size);
    let n = crate::frames::seq_len(size);
    crate::frames::write_seq(&mut p[..n], 0);
    p
}

/// The negotiated parameters as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamsReport {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}

impl From<DeflateParams> for ParamsReport {
    fn from(p: DeflateParams) -> Self {
        ParamsReport {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover,
            server_max_window_bits: p.server_max_window_bits,
            client_max_window_bits: p.client_max_window_bits,
        }
    }
}

/// Per-thread counters (merged at the end). Byte counts are payload bytes; "wire" is what the frames carried.
#[derive(Debug, Clone, Default)]
pub struct DeflateStats {
    /// Connections whose server selected permessage-deflate / answered without it.
    pub negotiated: u64,
    pub declined: u64,
    /// The first connection's parameters and the server's response; whether any connection's differed.
    pub params: Option<ParamsReport>,
    pub response: Option<String>,
    pub params_differ: bool,
    /// The first response that broke the offer (that connection's handshake failed).
    pub bad_response: Option<String>,
    /// Sent in the measured window: messages compressed / sent plain (no gain), their bytes before and on the wire.
    pub sent_compressed: u64,
    pub sent_plain: u64,
    pub sent_bytes: u64,
    pub sent_wire_bytes: u64,
    /// Received in the measured window: data messages, of them compressed; bytes after inflating and on the wire.
    pub recv_msgs: u64,
    pub recv_compressed: u64,
    pub recv_bytes: u64,
    pub recv_wire_bytes: u64,
}

impl DeflateStats {
    pub fn merge(&mut self, o: &DeflateStats) {
        self.negotiated += o.negotiated;
        self.declined += o.declined;
        match (&self.params, &o.params) {
            (None, Some(_)) => {
                self.params = o.params;
                self.response = o.response.clone();
            }
            (Some(a), Some(b)) if a != b => self.params_differ = true,
            _ => {}
        }
        self.params_differ |= o.params_differ;
        if self.bad_response.is_none() {
            self.bad_response = o.bad_response.clone();
        }
        self.sent_compressed += o.sent_compressed;
        self.sent_plain += o.sent_plain;
        self.sent_bytes += o.sent_bytes;
        self.sent_wire_bytes += o.sent_wire_bytes;
        self.recv_msgs += o.recv_msgs;
        self.recv_compressed += o.recv_compressed;
        self.recv_bytes += o.recv_bytes;
        self.recv_wire_bytes += o.recv_wire_bytes;
    }

    /// A connection's handshake ended: `params` is what it negotiated (None: the server declined).
    pub fn note_handshake(&mut self, params: Option<DeflateParams>, response: Option<&str>) {
        let Some(p) = params else {
            self.declined += 1;
            return;
        };
        self.negotiated += 1;
        let r = ParamsReport::from(p);
        match self.params {
            None => {
                self.params = Some(r);
                self.response = response.map(str::to_owned);
            }
            Some(q) if q != r => self.params_differ = true,
            Some(_) => {}
        }
    }

    /// A data message of `len` bytes (after inflating) arrived on a connection with the extension, in the window.
    pub fn note_received(&mut self, len: usize) {
        self.recv_msgs += 1;
        self.recv_bytes += len as u64;
        self.recv_wire_bytes += len as u64;
    }

    /// Absorb what a [`Rx`] counted during one read (its compressed messages were also counted by
    /// [`DeflateStats::note_received`] at their inflated size).
    pub fn absorb(&mut self, rx: RxCount) {
        self.recv_compressed += rx.msgs;
        self.recv_wire_bytes =
            (self.recv_wire_bytes + rx.wire_bytes).saturating_sub(rx.plain_bytes);
    }
}

/// The extension's state for one connection that negotiated it.
#[derive(Debug)]
pub struct ConnDeflate {
    params: DeflateParams,
    /// Client context takeover: this connection's own compressor (its zlib stream built on the first send).
    tx: Option<DedicatedDeflater>,
    /// Server context takeover: the last `2^server_max_window_bits` bytes received, to prime the inflater.
    rx: Option<InflateHistory>,
}

impl ConnDeflate {
    pub fn new(params: DeflateParams) -> Self {
        ConnDeflate {
            params,
            tx: (!params.client_no_context_takeover)
                .then(|| DedicatedDeflater::new(params.client_max_window_bits, DEFAULT_LEVEL)),
            rx: (!params.server_no_context_takeover)
                .then(|| InflateHistory::new(params.server_max_window_bits)),
        }
    }
}

/// A thread's codecs: one inflater, one compressor per client window (used reset, without context), scratch space.
pub struct ThreadDeflate {
    inflater: Inflater,
    shared: Vec<Option<Deflater>>,
    scratch: Vec<u8>,
}

impl Default for ThreadDeflate {
    fn default() -> Self {
        ThreadDeflate {
            inflater: Inflater::new(),
            shared: (0..16).map(|_| None).collect(),
            scratch: Vec::new(),
        }
    }
}

/// Append the masked frame of one data message, compressed when that makes it smaller; counted in `stats` when
/// `count` (the measured window).
#[allow(clippy::too_many_arguments)]
pub fn write_message(
    td: &mut ThreadDeflate,
    cd: &mut ConnDeflate,
    out: &mut Vec<u8>,
    opcode: OpCode,
    msg: &[u8],
    key: [u8; 4],
    stats: &mut DeflateStats,
    count: bool,
) {
    let compressor = match &mut cd.tx {
        Some(d) => Compressor::Dedicated(d),
        None => {
            let bits = cd.params.client_max_window_bits.clamp(8, 15);
            Compressor::Shared(
                td.shared[bits as usize].get_or_insert_with(|| Deflater::new(bits, DEFAULT_LEVEL)),
            )
        }
    };
    let r = encode_message(out, opcode, msg, Some(key), 0, compressor, &mut td.scratch);
    if count {
        stats.sent_bytes += msg.len() as u64;
        match r {
            Ok(n) => {
                stats.sent_compressed += 1;
                stats.sent_wire_bytes += n as u64;
            }
            Err(_) => {
                stats.sent_plain += 1;
                stats.sent_wire_bytes += msg.len() as u64;
            }
        }
    }
}

/// What an [`Rx`] inflated during one read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxCount {
    pub msgs: u64,
    pub wire_bytes: u64,
    pub plain_bytes: u64,
}

/// The decompressor for one read on one connection (the thread's inflater, primed with the connection's history
/// when the server keeps its context), counting what it inflates when `count`.
pub struct Rx<'a> {
    inner: RxInner<'a>,
    pub count: Option<RxCount>,
}

enum RxInner<'a> {
    Plain(&'a mut Inflater),
    Primed(Primed<'a>),
}

impl<'a> Rx<'a> {
    pub fn new(td: &'a mut ThreadDeflate, cd: &'a mut ConnDeflate, count: bool) -> Self {
        let inner = match &mut cd.rx {
            Some(h) => RxInner::Primed(td.inflater.with_history(h)),
            None => RxInner::Plain(&mut td.inflater),
        };
        Rx {
            inner,
            count: count.then(RxCount::default),
        }
    }
}

impl Decompressor for Rx<'_> {
    fn decompress(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        let out = match &mut self.inner {
            RxInner::Plain(i) => i.inflate(payload, text, max_len)?,
            RxInner::Primed(p) => p.decompress(payload, text, max_len)?,
        };
        if let Some(c) = &mut self.count {
            c.msgs += 1;
            c.wire_bytes += payload.len() as u64;
            c.plain_bytes += out.len() as u64;
        }
        Ok(out)
    }
}

/// The summary's `deflate` section.
#[derive(Debug, Clone, Serialize)]
pub struct DeflateSummary {
    /// The offer sent.
    pub offer: String,
    /// Whether any connection negotiated the extension.
    pub negotiated: bool,
    pub negotiated_conns: u64,
    pub declined_conns: u64,
    /// The server's response and the parameters (of the first connection that negotiated).
    pub response: Option<String>,
    pub params: Option<ParamsReport>,
    /// Some connections negotiated other parameters than the first.
    pub params_differ: bool,
    /// A response that broke the offer (its connection failed the handshake).
    pub bad_response: Option<String>,
    pub sent_compressed: u64,
    pub sent_plain: u64,
    /// Payload bytes on the wire / before compression (sent), lower is better.
    pub sent_ratio: Option<f64>,
    pub received: u64,
    pub received_compressed: u64,
    /// Payload bytes on the wire / after inflating (received).
    pub received_ratio: Option<f64>,
}

impl DeflateSummary {
    pub fn new(offer: &Offer, s: &DeflateStats) -> Self {
        let ratio = |wire: u64, plain: u64| (plain > 0).then(|| wire as f64 / plain as f64);
        DeflateSummary {
            offer: offer.header.clone(),
            negotiated: s.negotiated > 0,
            negotiated_conns: s.negotiated,
            declined_conns: s.declined,
            response: s.response.clone(),
            params: s.params,
            params_differ: s.params_differ,
            bad_response: s.bad_response.clone(),
            sent_compressed: s.sent_compressed,
            sent_plain: s.sent_plain,
            sent_ratio: ratio(s.sent_wire_bytes, s.sent_bytes),
            received: s.recv_msgs,
            received_compressed: s.recv_compressed,
            received_ratio: ratio(s.recv_wire_bytes, s.recv_bytes),
        }
    }

    /// The text report's lines.
    pub fn text(&self) -> String {
        let total = self.negotiated_conns + self.declined_conns;
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.3}"));
        let mut s = String::new();
        if let Some(e) = &self.bad_response {
            s.push_str(&format!("deflate:  handshake failed: {e}\n"));
        }
        if !self.negotiated {
            s.push_str(&format!(
                "deflate:  not negotiated: the server declined the offer on all {total} connections ({})\n",
                self.offer
            ));
            return s;
        }
        s.push_str(&format!(
            "deflate:  negotiated on {} of {total} connections: {}{}\n",
            self.negotiated_conns,
            self.response.as_deref().unwrap_or("?"),
            if self.params_differ {
                " (other connections negotiated other parameters)"
            } else {
                ""
            }
        ));
        s.push_str(&format!(
            "deflate:  sent {} compressed + {} plain, wire/plain {}; received {} ({} compressed), wire/plain {}\n",
            self.sent_compressed,
            self.sent_plain,
            ratio(self.sent_ratio),
            self.received,
            self.received_compressed,
            ratio(self.received_ratio)
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringws::deflate::{negotiate, Compression};
    use ringws::proto::{Connection, Event, Limits, Role};

    #[test]
    fn json_payload_is_text_of_the_size() {
        for n in [0usize, 5, 20, 200, 16384] {
            let p = json_like_payload(n);
            assert_eq!(p.len(), n);
            assert!(p.is_ascii());
            assert!(crate::frames::verify_payload(&p, &p, 0));
        }
        assert!(std::str::from_utf8(&json_like_payload(300))
            .unwrap()
            .contains("\"event\":"));
    }

    #[test]
    fn offers() {
        assert_eq!(Offer::new(false, false, None, None).unwrap(), None);
        let o = Offer::new(true, false, None, None).unwrap().unwrap();
        assert_eq!(o.header, CLIENT_OFFER);
        let o = Offer::new(false, true, Some(10), Some(9)).unwrap().unwrap();
        assert_eq!(
            o.header,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        assert!(Offer::new(true, false, Some(7), None).is_err());
        assert!(Offer::new(true, false, None, Some(16)).is_err());
    }

    #[test]
    fn responses_checked_against_the_offer() {
        let o = Offer::new(true, true, Some(10), None).unwrap().unwrap();
        assert!(o
            .accept("permessage-deflate; client_max_window_bits=10")
            .is_err());
        assert!(o
            .accept("permessage-deflate; server_no_context_takeover; server_max_window_bits=11")
            .is_err());
        let p = o
            .accept("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")
            .unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert!(o.accept("x-other").is_err());
    }

    /// What the client sends inflates on a ringws server core, and what a ringws server sends comes back out,
    /// for the parameters both ringws modes answer with.
    #[test]
    fn round_trip_with_ringws_server_side() {
        for policy in [
            Compression::Shared,
            Compression::Dedicated { window_bits: 12 },
        ] {
            let offer = Offer::new(true, false, None, None).unwrap().unwrap();
            let n = negotiate::negotiate([offer.header.as_str()], policy).expect("negotiated");
            let params = offer.accept(&n.response).unwrap();
            let mut td = ThreadDeflate::default();
            let mut cd = ConnDeflate::new(params);
            let mut stats = DeflateStats::default();
            let mut server = Connection::new(Role::Server, Limits::default());
            server.set_rsv1_allowed(true);
            let mut server_inflater = Inflater::new();
            let mut server_hist = InflateHistory::new(params.client_max_window_bits);
            let msgs: Vec<Vec<u8>> = (0..20)
                .map(|i| format!("{{\"n\":{i},\"text\":\"hello hello hello world\"}}").into_bytes())
                .collect();
            let mut wire = Vec::new();
            for m in &msgs {
                write_message(
                    &mut td,
                    &mut cd,
                    &mut wire,
                    OpCode::Text,
                    m,
                    [1, 2, 3, 4],
                    &mut stats,
                    true,
                );
            }
            assert_eq!(stats.sent_compressed, 20, "{policy:?}");
            assert!(stats.sent_wire_bytes < stats.sent_bytes);
            let mut got = Vec::new();
            let mut on = |ev: Event<'_>| {
                if let Event::Text(t) = ev {
                    got.push(t.as_bytes().to_vec())
                }
            };
            if params.client_no_context_takeover {
                server
                    .handle_read_with(&mut wire, &mut server_inflater, &mut on)
                    .unwrap();
            } else {
                let mut p = server_inflater.with_history(&mut server_hist);
                server.handle_read_with(&mut wire, &mut p, &mut on).unwrap();
            }
            assert_eq!(got, msgs, "{policy:?}");

            // Server to client: compressed with the server's context (dedicated) or reset (shared).
            let mut client = Connection::new(Role::Client, Limits::default());
            client.set_rsv1_allowed(true);
            let mut dd = DedicatedDeflater::new(params.server_compress_bits(), DEFAULT_LEVEL);
            let mut sd = Deflater::new(params.server_compress_bits(), DEFAULT_LEVEL);
            let mut down = Vec::new();
            let mut scratch = Vec::new();
            for m in &msgs {
                let c = if params.server_no_context_takeover {
                    Compressor::Shared(&mut sd)
                } else {
                    Compressor::Dedicated(&mut dd)
                };
                encode_message(&mut down, OpCode::Text, m, None, 0, c, &mut scratch).unwrap();
            }
            let mut back = Vec::new();
            let mut rx = Rx::new(&mut td, &mut cd, true);
            client
                .handle_read_with(&mut down, &mut rx, &mut |ev| {
                    if let Event::Text(t) = ev {
                        back.push(t.as_bytes().to_vec())
                    }
                })
                .unwrap();
            assert_eq!(back, msgs, "{policy:?}");
            let c = rx.count.unwrap();
            assert_eq!(c.msgs, 20);
            assert!(c.wire_bytes < c.plain_bytes);
        }
    }
}
