//! The opening handshake (RFC 6455 section 4): HTTP/1.1 request parsing on the server side, the
//! `101 Switching Protocols` / error responses, and the client side used by `loadtest`.
//!
//! Server flow:
//! 1. [`parse_request`] on the bytes read so far: `Ok(None)` means "read more", an `Err` is answered with
//!    [`write_response`] (`err.status`) and the connection closed.
//! 2. [`check_head`] on every parsed request (RFC 9112 framing: `Host`, `Content-Length`, `Transfer-Encoding`); an
//!    `Err` is answered like a parse error. Its [`BodyLength`] says how many bytes after the head belong to the
//!    request, so a request with a body is never mistaken for the start of the next request.
//! 3. If [`Request::is_upgrade`], [`validate_upgrade`] (which runs [`check_head`] itself and refuses any body): a [`Rejection`] is answered with [`Rejection::write`]; an
//!    [`Upgrade`] lets the server layer look at `origin`, pick one of `protocols`, and answer with
//!    [`write_accept_response`] (or refuse with any status via [`write_response`]).
//!
//! Client flow: [`ClientHandshake::new`] with 16 random bytes, [`ClientHandshake::write_request`], then
//! [`ClientHandshake::parse_response`] on the bytes read until it returns `Ok(Some(consumed))`; bytes after `consumed`
//! are already WebSocket frames.
//!
//! Nothing here panics on peer input (property-tested and fuzzed, see `tests/handshake.rs`, `fuzz/`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Default cap on the size of a request head (request line + headers).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 8192;

/// Most header lines accepted in one head; more is answered with 431. (Browsers send ~15.)
pub const MAX_HEADERS: usize = 64;

/// The GUID of RFC 6455 section 1.3, appended to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed HTTP/1.1 request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request method, case-sensitive (`GET`).
    pub method: String,
    /// The request target as sent (`/chat?room=a`).
    pub path: String,
    /// Header names lower-cased, values as sent (trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// HTTP minor version: `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of the headers with this name (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket`, any case).
    pub fn is_upgrade(&self) -> bool {
        self.headers_named("upgrade")
            .any(|v| has_token(v, "websocket"))
    }
}

/// A request that cannot be served: answer with `status` and close.
///
/// `reason` is a short human-readable explanation (fit for a log line or a response body), not the status line's
/// reason phrase (see [`reason_phrase`]).
///
/// On the client side ([`ClientHandshake::parse_response`]) `status` is the status the server answered with (e.g.
/// `403`, or `101` when the 101 response itself is invalid), or `0` when the response could not be parsed or was too
/// large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status to answer with (client side: the status the server answered with, see above).
    pub status: u16,
    /// A short explanation (not the reason phrase).
    pub reason: &'static str,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

const fn http_err(status: u16, reason: &'static str) -> HttpError {
    HttpError { status, reason }
}

/// Parse a request head from `buf`. `Ok(None)`: need more bytes. `Ok(Some((req, consumed)))`.
/// `Err`: 400 malformed, 431 larger than `max_size` (or more than [`MAX_HEADERS`] header lines). Never panics.
///
/// Header values that are not UTF-8 (obs-text) are kept lossily converted; they never make a request fail.
pub fn parse_request(buf: &[u8], max_size: usize) -> Result<Option<(Request, usize)>, HttpError> {
    // Only the first `max_size` bytes may hold the head: parsing the truncated slice either finds the end of the head
    // inside the cap, or reports it partial, in which case the head is over the cap once `buf` reaches it.
    let capped = &buf[..buf.len().min(max_size)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(capped) {
        Ok(httparse::Status::Complete(consumed)) => {
            let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version)
            else {
                return Err(http_err(400, "malformed request line"));
            };
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect();
            Ok(Some((
                Request {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers,
                    version,
                },
                consumed,
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_size => {
            Err(http_err(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(http_err(431, "too many header lines")),
        Err(_) => Err(http_err(400, "malformed request head")),
    }
}

/// How the body of a request is delimited (RFC 9112 section 6.3), as found by [`check_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// Neither `Content-Length` nor `Transfer-Encoding`: a request without a body; the next byte starts the next
    /// request (or, after a `101`, the first WebSocket frame).
    None,
    /// `Content-Length: n`: exactly `n` bytes follow the head (`0` is a valid, empty body).
    Fixed(u64),
    /// `Transfer-Encoding: chunked`: the length is known only by decoding the chunks.
    Chunked,
}

impl BodyLength {
    /// Whether bytes of a body follow the head (`Fixed(0)` has none).
    pub fn has_body(self) -> bool {
        !matches!(self, BodyLength::None | BodyLength::Fixed(0))
    }
}

/// Check the framing headers of a parsed request head as RFC 9112 asks of a server, so that ringws never reads a
/// request's length differently from a proxy in front of it (request smuggling). Returns how the body is delimited.
///
/// Refusals (the first failure decides):
/// - **400** when an HTTP/1.1 request has no `Host`, when any request has more than one, or when its value is not
///   `uri-host [ ":" port ]` (RFC 9112 3.2; an empty value is allowed by that grammar);
/// - **400** when a `Content-Length` element is not a non-negative decimal that fits in a `u64` (no sign, no spaces
///   inside, no empty element), or when the elements (over repeated lines and comma lists) are not all the same
///   value. Repeated *identical* values (`Content-Length: 5, 5` or two lines of `5`) are accepted as one, which RFC
///   9110 8.6 allows: every hop that reads them reads the same length, so they cannot desynchronise a connection;
/// - **400** when `Transfer-Encoding` comes together with `Content-Length` (RFC 9112 6.1 lets a server process such a
///   request, but refusing it is the safe reading behind a proxy), in an HTTP/1.0 request, when `chunked` is not the
///   final coding or appears twice, or when the header holds an empty element (RFC 9112 6.3);
/// - **501** when a transfer coding other than `chunked` is listed (RFC 9112 6.1: not understood).
pub fn check_head(req: &Request) -> Result<BodyLength, HttpError> {
    let mut hosts = req.headers_named("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version == 1 => return Err(http_err(400, "missing Host header")),
        (None, _) => {}
        (Some(_), Some(_)) => return Err(http_err(400, "more than one Host header")),
        (Some(h), None) if !host_is_valid(h) => {
            return Err(http_err(400, "invalid Host header value"))
        }
        (Some(_), None) => {}
    }

    let mut length: Option<u64> = None;
    for value in req.headers_named("content-length") {
        for element in value.split(',') {
            let n = parse_decimal(element.trim_matches([' ', '\t']))
                .ok_or(http_err(400, "invalid Content-Length value"))?;
            match length {
                Some(prev) if prev != n => {
                    return Err(http_err(400, "conflicting Content-Length values"))
                }
                _ => length = Some(n),
            }
        }
    }

    let mut codings = req
        .headers_named("transfer-encoding")
        .flat_map(|v| v.split(','))
        .peekable();
    if codings.peek().is_none() {
        return Ok(length.map_or(BodyLength::None, BodyLength::Fixed));
    }
    if length.is_some() {
        return Err(http_err(
            400,
            "Transfer-Encoding together with Content-Length",
        ));
    }
    if req.version != 1 {
        return Err(http_err(400, "Transfer-Encoding in an HTTP/1.0 request"));
    }
    let mut chunked_last = false;
    for coding in codings {
        // A coding may carry parameters (`gzip;q=1` is not valid here, but `x;p=v` is the grammar); only the name counts.
        let name = coding
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(http_err(400, "empty Transfer-Encoding element"));
        }
        if chunked_last {
            return Err(http_err(400, "chunked is not the final transfer coding"));
        }
        if name.eq_ignore_ascii_case("chunked") {
            chunked_last = true;
        } else {
            return Err(http_err(501, "transfer coding not implemented"));
        }
    }
    Ok(BodyLength::Chunked)
}

/// `1*DIGIT` as a `u64`; `None` if empty, not all digits, or too large.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Whether a `Host` value is `uri-host [ ":" port ]` (RFC 3986 3.2.2, 3.2.3), with the port at most 65535.
fn host_is_valid(v: &str) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("", Some(port)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match v.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        }
    };
    // reg-name = *( unreserved / pct-encoded / sub-delims ); IPv4 addresses are a subset.
    let b = host.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if b.len() > i + 2
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                i += 3;
                continue;
            }
            c if c.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    match port {
        None | Some("") => true,
        Some(p) => p.len() <= 5 && parse_decimal(p).is_some_and(|n| n <= 65535),
    }
}

/// A valid upgrade request, with what the server layer needs to accept or reject it.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The `Origin` header, if any (browsers always send one; judged by `door::origin`).
    pub origin: Option<String>,
    /// Offered subprotocols, in order.
    pub protocols: Vec<String>,
    /// Offered extensions (raw, one entry per comma-separated offer).
    pub extensions: Vec<String>,
}

/// Why an upgrade request was refused, as an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status to answer with.
    pub status: u16,
    /// A short explanation, sent as the plain-text body.
    pub reason: &'static str,
    /// Extra response headers (e.g. `Sec-WebSocket-Version: 13` with 426).
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    fn new(status: u16, reason: &'static str) -> Self {
        Rejection {
            status,
            reason,
            headers: Vec::new(),
        }
    }

    /// Append the complete response for this rejection (its headers, `reason` as a plain-text body).
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 1);
        headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        headers.push(("Content-Type", "text/plain"));
        write_response(out, self.status, &headers, self.reason.as_bytes());
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Validate an upgrade request (RFC 6455 4.2.1).
///
/// Checks, in this order (the first failure decides the answer):
/// - method `GET`, else **405** with `Allow: GET`;
/// - HTTP/1.1, else **400** (an upgrade needs HTTP/1.1 or later, and httparse only speaks 1.x);
/// - [`check_head`] (exactly one valid `Host`, coherent `Content-Length` / `Transfer-Encoding`), else its status;
/// - no body (`Content-Length` absent or `0`, no `Transfer-Encoding`), else **400**: the bytes after the head of an
///   accepted upgrade are WebSocket frames;
/// - `Upgrade` holding the token `websocket` (any case), else **400**;
/// - `Connection` holding the token `upgrade` (any case, comma-separated list, repeated headers), else **400**;
/// - `Sec-WebSocket-Version: 13` (one header), else **426** with `Sec-WebSocket-Version: 13` (RFC 6455 4.4);
/// - exactly one `Sec-WebSocket-Key` that is base64 of exactly 16 bytes, else **400**.
///
/// Origin, subprotocols and extensions are only reported: accepting or refusing them is the server layer's policy.
pub fn validate_upgrade(req: &Request) -> Result<Upgrade, Rejection> {
    if req.method != "GET" {
        let mut r = Rejection::new(405, "WebSocket upgrade requires GET");
        r.headers.push(("Allow", "GET".to_owned()));
        return Err(r);
    }
    if req.version != 1 {
        return Err(Rejection::new(400, "WebSocket upgrade requires HTTP/1.1"));
    }
    match check_head(req) {
        Ok(body) if body.has_body() => {
            // The bytes after the head would be read as WebSocket frames.
            return Err(Rejection::new(
                400,
                "a WebSocket upgrade request has no body",
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(Rejection::new(e.status, e.reason)),
    }
    if !req.is_upgrade() {
        return Err(Rejection::new(400, "missing Upgrade: websocket"));
    }
    if !req
        .headers_named("connection")
        .any(|v| has_token(v, "upgrade"))
    {
        return Err(Rejection::new(
            400,
            "Connection header lacks the upgrade token",
        ));
    }
    let mut versions = req.headers_named("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some("13"), None) => {}
        _ => {
            let mut r = Rejection::new(426, "unsupported Sec-WebSocket-Version (13 required)");
            r.headers.push(("Sec-WebSocket-Version", "13".to_owned()));
            return Err(r);
        }
    }
    let mut keys = req.headers_named("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => return Err(Rejection::new(400, "missing Sec-WebSocket-Key")),
        (Some(_), Some(_)) => return Err(Rejection::new(400, "more than one Sec-WebSocket-Key")),
    };
    if !key_is_valid(key.as_bytes()) {
        return Err(Rejection::new(
            400,
            "Sec-WebSocket-Key is not base64 of 16 bytes",
        ));
    }

    let protocols = req
        .headers_named("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let mut extensions = Vec::new();
    for v in req.headers_named("sec-websocket-extensions") {
        split_outside_quotes(v, &mut extensions);
    }
    Ok(Upgrade {
        accept: accept_key(key.as_bytes()),
        origin: req.header("origin").map(str::to_owned),
        protocols,
        extensions,
    })
}

/// Whether a `Sec-WebSocket-Key` value is base64 (with padding) of exactly 16 bytes.
fn key_is_valid(key: &[u8]) -> bool {
    // 16 bytes encode to exactly 24 characters; decoding into a 16-byte buffer rejects anything longer.
    let mut out = [0u8; 18];
    key.len() == 24 && matches!(B64.decode_slice(key, &mut out), Ok(16))
}

/// Whether a comma-separated token list (`keep-alive, Upgrade`) holds `token` (ASCII case-insensitive).
fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Split an extension offer list on commas that are not inside a quoted-string; push the trimmed non-empty parts.
fn split_outside_quotes(v: &str, out: &mut Vec<String>) {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                push_trimmed(&v[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_trimmed(&v[start..], out);
}

fn push_trimmed(s: &str, out: &mut Vec<String>) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key ++ GUID)).
///
/// One allocation (the returned 28-byte string); hashing and encoding happen on the stack.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let digest: [u8; 20] = sha.finalize().into();
    let mut out = String::with_capacity(28);
    B64.encode_string(digest, &mut out);
    out
}

/// The reason phrase for a status code (`"Switching Protocols"` for 101); `"Unknown"` for codes not listed.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Append a `101 Switching Protocols` response.
///
/// `protocol` must be one of the offered subprotocols and `extensions` a negotiated extension response; neither is
/// checked here. CR and LF are stripped from both (no header injection).
pub fn write_accept_response(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    push_header_value(out, accept);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        push_header_value(out, p);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        push_header_value(out, e);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a complete HTTP/1.1 response with `Content-Length` and `Connection: close`.
///
/// `headers` must not contain `Content-Length` or `Connection` (they are always written). CR and LF are stripped from
/// header names and values (no header injection).
pub fn write_response(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    out.reserve(64 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_header_value(out, name);
        out.extend_from_slice(b": ");
        push_header_value(out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(body);
}

/// Append `v` without CR/LF bytes.
fn push_header_value(out: &mut Vec<u8>, v: &str) {
    let b = v.as_bytes();
    if b.iter().any(|&c| c == b'\r' || c == b'\n') {
        out.extend(b.iter().copied().filter(|&c| c != b'\r' && c != b'\n'));
    } else {
        out.extend_from_slice(b);
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// What a valid `101` response negotiated (see [`ClientHandshake::parse_response_details`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// Length of the response head; bytes after it are WebSocket frames.
    pub consumed: usize,
    /// `Sec-WebSocket-Protocol` chosen by the server, if any. The caller checks it was one it offered.
    pub protocol: Option<String>,
    /// `Sec-WebSocket-Extensions` the server selected (its header values joined by `, `), if the client offered
    /// extensions ([`ClientHandshake::with_extensions`]) and the server selected any. The caller validates it against
    /// its offer (for permessage-deflate: [`crate::deflate::negotiate::parse_response`]).
    pub extensions: Option<String>,
}

/// Client side of the handshake.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    /// The `Sec-WebSocket-Accept` the server must answer with, computed once.
    accept: String,
    /// The `Sec-WebSocket-Extensions` offer sent, if any.
    extensions: Option<String>,
}

impl ClientHandshake {
    /// `key_bytes` must be random (RFC 6455 4.1: a fresh nonce per connection), e.g. from `getrandom`.
    pub fn new(key_bytes: [u8; 16]) -> Self {
        let key = B64.encode(key_bytes);
        let accept = accept_key(key.as_bytes());
        ClientHandshake {
            key,
            accept,
            extensions: None,
        }
    }

    /// Offer extensions: `offer` is sent as the `Sec-WebSocket-Extensions` value (e.g.
    /// [`crate::deflate::negotiate::CLIENT_OFFER`]), and the server may then select one
    /// ([`ClientResponse::extensions`]). Without this a response that selects an extension fails.
    pub fn with_extensions(mut self, offer: &str) -> Self {
        self.extensions = Some(offer.to_owned());
        self
    }

    /// The `Sec-WebSocket-Key` this client sends (base64 of the 16 nonce bytes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value a server must answer with.
    pub fn expected_accept(&self) -> &str {
        &self.accept
    }

    /// Append the GET upgrade request. `protocols` (if any) go in one `Sec-WebSocket-Protocol` header, in order.
    /// CR and LF are stripped from `host`, `path` and the protocols.
    pub fn write_request(&self, out: &mut Vec<u8>, host: &str, path: &str, protocols: &[&str]) {
        out.extend_from_slice(b"GET ");
        push_header_value(out, if path.is_empty() { "/" } else { path });
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        push_header_value(out, host);
        out.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
        );
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !protocols.is_empty() {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            for (i, p) in protocols.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                push_header_value(out, p);
            }
            out.extend_from_slice(b"\r\n");
        }
        if let Some(e) = &self.extensions {
            out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            push_header_value(out, e);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// `Ok(None)`: need more bytes. `Ok(Some(consumed))`: a valid 101 with the right accept key.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        Ok(self.parse_response_details(buf)?.map(|r| r.consumed))
    }

    /// As [`parse_response`](Self::parse_response), also returning the negotiated subprotocol.
    ///
    /// Fails (see [`HttpError`] for the meaning of `status` here) on: a head over [`DEFAULT_MAX_REQUEST_SIZE`]
    /// bytes, a malformed head, a status other than 101, a missing `Upgrade: websocket` or `Connection: upgrade`, a
    /// missing or wrong `Sec-WebSocket-Accept`, or a `Sec-WebSocket-Extensions` when this client offered none (the
    /// server may not select one then: RFC 6455 4.1).
    pub fn parse_response_details(&self, buf: &[u8]) -> Result<Option<ClientResponse>, HttpError> {
        let max = DEFAULT_MAX_REQUEST_SIZE;
        let capped = &buf[..buf.len().min(max)];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let consumed = match resp.parse(capped) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= max => {
                return Err(http_err(0, "response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(http_err(0, "too many header lines"))
            }
            Err(_) => return Err(http_err(0, "malformed response head")),
        };
        let status = resp.code.unwrap_or(0);
        if status != 101 {
            return Err(http_err(status, "server did not switch protocols"));
        }
        let values = |name: &'static str| {
            resp.headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap_or("").trim())
        };
        if !values("upgrade").any(|v| has_token(v, "websocket")) {
            return Err(http_err(101, "response lacks Upgrade: websocket"));
        }
        if !values("connection").any(|v| has_token(v, "upgrade")) {
            return Err(http_err(101, "response lacks Connection: upgrade"));
        }
        let mut accepts = values("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(a), None) if a == self.accept => {}
            (None, _) => return Err(http_err(101, "response lacks Sec-WebSocket-Accept")),
            _ => return Err(http_err(101, "Sec-WebSocket-Accept does not match the key")),
        }
        let selected: Vec<&str> = values("sec-websocket-extensions")
            .filter(|v| !v.is_empty())
            .collect();
        let extensions = match (selected.is_empty(), &self.extensions) {
            (true, _) => None,
            (false, Some(_)) => Some(selected.join(", ")),
            (false, None) => {
                return Err(http_err(
                    101,
                    "server selected an extension that was not offered",
                ))
            }
        };
        let mut protos = values("sec-websocket-protocol");
        let protocol = match (protos.next(), protos.next()) {
            (None, _) => None,
            (Some(p), None) if !p.is_empty() && !p.contains(',') => Some(p.to_owned()),
            _ => return Err(http_err(101, "invalid Sec-WebSocket-Protocol in response")),
        };
        Ok(Some(ClientResponse {
            consumed,
            protocol,
            extensions,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().as_bytes());
        }
    }
}
