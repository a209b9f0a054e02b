//! Frame header encoding and decoding (RFC 6455 section 5.2).
//!
//! SKELETON: signatures are the contract; bodies are being implemented.

/// Largest possible frame header: 2 + 8 (length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Write a frame header into `out`; returns its length (2..=14). `mask: Some(key)` sets the MASK bit (client frames).
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    let _ = (out, fin, opcode, payload_len, mask);
    todo!()
}

/// Append a complete unmasked (server) frame.
pub fn write_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8]) {
    let _ = (out, fin, opcode, payload);
    todo!()
}

/// Append a complete masked (client) frame with `key`.
pub fn write_client_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    key: [u8; 4],
) {
    let _ = (out, fin, opcode, payload, key);
    todo!()
}
