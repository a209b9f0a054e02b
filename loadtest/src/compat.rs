//! TEMPORARY stand-ins with the exact signatures of `ringws::proto::frame` and `ringws::handshake::ClientHandshake`,
//! used only until the `proto` and `core2` branches land (their bodies are `todo!()` on the skeleton). Removed on merge.

pub mod frame {
    pub use ringws::proto::frame::{OpCode, MAX_HEADER_LEN};

    pub fn encode_header(
        out: &mut [u8; MAX_HEADER_LEN],
        fin: bool,
        opcode: OpCode,
        payload_len: u64,
        mask: Option<[u8; 4]>,
    ) -> usize {
        out[0] = (if fin { 0x80 } else { 0 }) | opcode as u8;
        let m = if mask.is_some() { 0x80 } else { 0 };
        let mut n = if payload_len < 126 {
            out[1] = m | payload_len as u8;
            2
        } else if payload_len <= 0xffff {
            out[1] = m | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = m | 127;
            out[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        };
        if let Some(k) = mask {
            out[n..n + 4].copy_from_slice(&k);
            n += 4;
        }
        n
    }

    pub fn write_client_frame(
        out: &mut Vec<u8>,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
        key: [u8; 4],
    ) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, fin, opcode, payload.len() as u64, Some(key));
        out.extend_from_slice(&h[..n]);
        let start = out.len();
        out.extend_from_slice(payload);
        ringws::mask::apply_mask(key, 0, &mut out[start..]);
    }
}

pub mod handshake {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HttpError {
        pub status: u16,
        pub reason: &'static str,
    }

    #[derive(Debug, Clone)]
    pub struct ClientHandshake {
        key: String,
    }

    fn b64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let v = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            s.push(T[(v >> 18) as usize & 63] as char);
            s.push(T[(v >> 12) as usize & 63] as char);
            s.push(if c.len() > 1 {
                T[(v >> 6) as usize & 63] as char
            } else {
                '='
            });
            s.push(if c.len() > 2 {
                T[v as usize & 63] as char
            } else {
                '='
            });
        }
        s
    }

    impl ClientHandshake {
        pub fn new(key_bytes: [u8; 16]) -> Self {
            ClientHandshake {
                key: b64(&key_bytes),
            }
        }
        #[allow(dead_code)]
        pub fn key(&self) -> &str {
            &self.key
        }
        pub fn write_request(&self, out: &mut Vec<u8>, host: &str, path: &str, protocols: &[&str]) {
            let _ = protocols;
            out.extend_from_slice(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    self.key
                )
                .as_bytes(),
            );
        }
        /// Stand-in: checks the status line only (no accept-key check).
        pub fn parse_response(&self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if buf.len() > 8192 {
                    return Err(HttpError {
                        status: 0,
                        reason: "response head too large",
                    });
                }
                return Ok(None);
            };
            if buf.starts_with(b"HTTP/1.1 101") {
                Ok(Some(end + 4))
            } else {
                Err(HttpError {
                    status: 0,
                    reason: "not a 101 response",
                })
            }
        }
    }
}
