//! The first bytes on a TLS port: is this a TLS handshake record at all?
//!
//! A TLS connection opens with a handshake record: content type `0x16`, then a record version whose major byte is
//! `0x03`. Anything else is not TLS, and deserves a distinct, countable error so the reactor can close it at once
//! (rather than after a handshake timeout) and report how often plain HTTP reaches the TLS port.

/// Why the first bytes on a TLS port are not TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTls {
    /// An uppercase token, as an HTTP request line starts (`GET /`, `POST`, `PRI *` of HTTP/2 prior knowledge):
    /// a client speaking plain HTTP to the TLS port.
    PlainHttp,
    /// Neither TLS nor HTTP (an SSLv2 hello, a port scanner, random bytes).
    Garbage,
}

/// What the first bytes say so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// The bytes start like a TLS handshake record.
    Tls,
    /// Too few bytes to tell (only the content type byte `0x16` so far).
    NeedMore,
    /// Not TLS.
    Not(NotTls),
}

/// TLS record content type of a handshake message.
const HANDSHAKE: u8 = 0x16;

/// Looks at the first (up to two) bytes ever received on a connection.
pub(crate) fn sniff(first: &[u8]) -> Sniff {
    match first {
        [] | [HANDSHAKE] => Sniff::NeedMore,
        [HANDSHAKE, 0x03, ..] => Sniff::Tls,
        [b'A'..=b'Z', ..] => Sniff::Not(NotTls::PlainHttp),
        _ => Sniff::Not(NotTls::Garbage),
    }
}

/// What a server may answer to a plain HTTP request on its TLS port before closing (as nginx does): a `400` that
/// says why, so a person with `curl http://` sees the reason instead of an empty reply. Sending it is optional.
pub const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 44\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// or wss://";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(&[0x16]), Sniff::NeedMore);
        assert_eq!(sniff(&[0x16, 0x03, 0x01]), Sniff::Tls);
        assert_eq!(sniff(&[0x16, 0x03]), Sniff::Tls);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Not(NotTls::PlainHttp));
        assert_eq!(sniff(b"PRI * HTTP/2.0"), Sniff::Not(NotTls::PlainHttp));
        assert_eq!(sniff(&[0x16, 0x02]), Sniff::Not(NotTls::Garbage));
        assert_eq!(sniff(&[0x80, 0x2e]), Sniff::Not(NotTls::Garbage));
        assert_eq!(sniff(b"get /"), Sniff::Not(NotTls::Garbage));
        assert_eq!(sniff(&[0x17, 0x03, 0x03]), Sniff::Not(NotTls::Garbage));
    }

    #[test]
    fn plain_http_response_length_is_right() {
        let s = std::str::from_utf8(PLAIN_HTTP_RESPONSE).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
