//! The opening handshake (RFC 6455 section 4): HTTP/1.1 request parsing on the server side, the
//! `101 Switching Protocols` / error responses, and the client side used by `loadtest`.
//!
//! SKELETON: signatures are the contract the server and loadtest are written against; bodies are being implemented.

/// Default cap on the size of a request head (request line + headers).
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 8192;

/// A parsed HTTP/1.1 request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, values as sent (trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let _ = name;
        todo!()
    }
    /// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket`, any case).
    pub fn is_upgrade(&self) -> bool {
        todo!()
    }
}

/// A request that cannot be served: answer with `status` and close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

/// Parse a request head from `buf`. `Ok(None)`: need more bytes. `Ok(Some((req, consumed)))`.
/// `Err`: 400 malformed, 431 larger than `max_size`. Never panics.
pub fn parse_request(buf: &[u8], max_size: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let _ = (buf, max_size);
    todo!()
}

/// A valid upgrade request, with what the server layer needs to accept or reject it.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept` value.
    pub accept: String,
    pub origin: Option<String>,
    /// Offered subprotocols, in order.
    pub protocols: Vec<String>,
    /// Offered extensions (raw, one entry per comma-separated offer).
    pub extensions: Vec<String>,
}

/// Why an upgrade request was refused, as an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    /// Extra response headers (e.g. `Sec-WebSocket-Version: 13` with 426).
    pub headers: Vec<(&'static str, String)>,
}

/// Validate an upgrade request (RFC 6455 4.2.1).
pub fn validate_upgrade(req: &Request) -> Result<Upgrade, Rejection> {
    let _ = req;
    todo!()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let _ = key;
    todo!()
}

/// Append a `101 Switching Protocols` response.
pub fn write_accept_response(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    let _ = (out, accept, protocol, extensions);
    todo!()
}

/// Append a complete HTTP/1.1 response with `Content-Length` and `Connection: close`.
pub fn write_response(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let _ = (out, status, headers, body);
    todo!()
}

/// Client side of the handshake.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
}

impl ClientHandshake {
    pub fn new(key_bytes: [u8; 16]) -> Self {
        let _ = key_bytes;
        todo!()
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Append the GET upgrade request.
    pub fn write_request(&self, out: &mut Vec<u8>, host: &str, path: &str, protocols: &[&str]) {
        let _ = (out, host, path, protocols);
        todo!()
    }
    /// `Ok(None)`: need more bytes. `Ok(Some(consumed))`: a valid 101 with the right accept key.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        let _ = buf;
        todo!()
    }
}
