//! The seam between the core and a compression extension (permessage-deflate, [`crate::deflate`]).
//!
//! The core stays IO-free and knows no codec: for a message whose first frame had RSV1 set it hands the complete
//! compressed payload (all fragments assembled) to a [`Decompressor`] the caller supplies to
//! [`super::Connection::handle_read_with`], then validates text and delivers the event from the decompressor's
//! output. The caller decides whose state that is: the worker's shared inflater (no context takeover, nothing per
//! connection) or one primed with the connection's history (context takeover).

/// Why a compressed message could not be decompressed. The core closes with the code in parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecompressError {
    /// The output passed `max_len` (1009); detected while decompressing.
    TooBig,
    /// Not valid compressed data (1007).
    Corrupt,
    /// A text message whose decompressed bytes are not UTF-8 (1007), found before the whole message was inflated.
    InvalidUtf8,
}

/// Decompresses one whole message for the core.
pub trait Decompressor {
    /// Decompress `payload` (the message's assembled payload, as received) into at most `max_len` bytes. `text`:
    /// the message is text, so the output may be checked for UTF-8 while it is produced (the core validates the
    /// whole output again before delivering it, so an implementation may skip that).
    fn decompress(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError>;
}
