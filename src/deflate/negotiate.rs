//! permessage-deflate negotiation (RFC 7692 section 5 and 7.1), sans-IO.
//!
//! [`negotiate`] takes the client's `Sec-WebSocket-Extensions` offers (one string per offer as
//! [`crate::handshake::Upgrade::extensions`] holds them, or whole header values: commas outside quoted strings are
//! split here too) and the server's [`Compression`] policy, and returns the response header value with the
//! [`DeflateParams`] both sides then use. Offers are tried in order; an offer with an unknown or repeated parameter,
//! a value where none is allowed, a missing value where one is required, or a value that is not an integer 8..=15
//! written without leading zeros (bare or as a quoted string) is declined and the next one is tried. When none is
//! acceptable the answer is `None`: the connection proceeds without compression, the handshake never fails over it.
//!
//! What the server answers (RFC 7692 section 7: a response never claims what the offer does not allow):
//!
//! | offer has | `Shared` answers | `Dedicated { window_bits: W }` answers |
//! |---|---|---|
//! | (anything) | `server_no_context_takeover; client_no_context_takeover` | `server_no_context_takeover` only if offered |
//! | `server_max_window_bits=N` | `server_max_window_bits=N` | `server_max_window_bits=min(N, W)` |
//! | `client_max_window_bits[=V]` | nothing (the client's window does not matter without context takeover) | `client_max_window_bits=min(V, W)` (V = 15 when bare) |
//! | no `client_max_window_bits` | | nothing: the client compresses with up to 15 bits, the server keeps 32 KiB of its history |
//!
//! `client_no_context_takeover` in an offer is only a hint (the client can work without context); `Dedicated`
//! ignores it to keep the better ratio, `Shared` always asks for it. Both `*_no_context_takeover` parameters may be
//! sent unsolicited (RFC 7692 7.1.1.1 and 7.1.1.2); `*_max_window_bits` only in answer to the offer's own.
//!
//! # A window of 8 bits
//! zlib and its ports cannot produce raw deflate with an 8-bit window (`deflateInit2` turns 8 into 9, `flate2`
//! panics on it). The offer is still accepted: the server answers `server_max_window_bits=8` and compresses with a
//! 9-bit compressor. That is valid because a zlib-family compressor never emits a distance larger than
//! `w_size - MIN_LOOKAHEAD` = 512 - 262 = 250 bytes (`max_dist()` bounds every match search, in every strategy of
//! zlib-rs 0.6), which fits a 256-byte window. The test `window_9_output_inflates_with_an_8_bit_window`
//! (`tests/deflate_codec.rs`) checks it with an inflater whose whole window is a 256-byte ring buffer (a longer
//! distance reads overwritten bytes), over many inputs, levels, with and without context takeover, next to a control
//! that the checker does catch a 15-bit stream; a backend change that broke the property would fail the tests.

/// The server's compression policy (chosen in the server config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No permessage-deflate: offers are ignored.
    Off,
    /// No context takeover in either direction: every message is compressed and inflated on its own by the worker's
    /// shared streams, so a connection holds no compression state at all between messages.
    #[default]
    Shared,
    /// Context takeover both ways (better ratios on repetitive traffic) with an LZ77 window of `window_bits` (9..=15)
    /// for the server's own compression and, when the client offers `client_max_window_bits`, for the client's. Costs
    /// per connection the window history of each direction (see [`super::codec`]).
    Dedicated {
        /// The LZ77 window, 9..=15 (2^W bytes of history per direction and connection).
        window_bits: u8,
    },
}

impl Compression {
    /// Check the policy's own values (`Dedicated` window 9..=15).
    pub fn validate(&self) -> Result<(), &'static str> {
        match *self {
            Compression::Dedicated { window_bits } if !(9..=15).contains(&window_bits) => {
                Err("compression window_bits must be within 9..=15")
            }
            _ => Ok(()),
        }
    }
}

/// The agreed parameters of one connection (RFC 7692 7.1), as both ends use them. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compressor for every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor for every message (the server need not keep the client's history).
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (8..=15) the server may use when compressing.
    pub server_max_window_bits: u8,
    /// The largest LZ77 window (8..=15) the client may use when compressing.
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// The window the server's compressor is built with: the agreed window, and 9 for an agreed 8 (see the module
    /// docs for why that stays within an 8-bit window).
    pub fn server_compress_bits(&self) -> u8 {
        self.server_max_window_bits.max(9)
    }

    /// Messages compressed without context can be shared between connections whose `class` is equal: the class is
    /// the server's compression window (9..=15).
    pub fn class(&self) -> u8 {
        self.server_compress_bits()
    }

    /// The response header value for these parameters. `server_max_window_bits` / `client_max_window_bits` are
    /// written only when `with_server_bits` / `with_client_bits` (the offer named them).
    fn response(&self, with_server_bits: bool, with_client_bits: bool) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if with_server_bits {
            s.push_str("; server_max_window_bits=");
            s.push_str(&self.server_max_window_bits.to_string());
        }
        if with_client_bits {
            s.push_str("; client_max_window_bits=");
            s.push_str(&self.client_max_window_bits.to_string());
        }
        s
    }
}

/// The outcome of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// What both ends use.
    pub params: DeflateParams,
    /// The `Sec-WebSocket-Extensions` response header value.
    pub response: String,
}

/// One parsed permessage-deflate offer. `client_max_window_bits: Some(None)` = the parameter without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// `server_no_context_takeover` was offered.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` was offered.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (bare: `Some(None)`, with a value: `Some(Some(V))`).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer was declined (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Another extension (not permessage-deflate).
    OtherExtension,
    /// Malformed syntax (bad token, unterminated quoted string, empty parameter).
    Syntax,
    /// A parameter RFC 7692 does not define.
    UnknownParameter,
    /// A parameter given twice in one offer.
    RepeatedParameter,
    /// A value where none is allowed, none where one is required, or not an integer 8..=15 without leading zeros.
    BadValue,
}

/// Choose the first acceptable permessage-deflate offer for `policy`; `None` means no extension.
pub fn negotiate<'a, I>(offers: I, policy: Compression) -> Option<Negotiated>
where
    I: IntoIterator<Item = &'a str>,
{
    if policy == Compression::Off {
        return None;
    }
    for value in offers {
        for offer in split_offers(value) {
            if let Ok(o) = parse_offer(offer) {
                return Some(accept(&o, policy));
            }
        }
    }
    None
}

/// The answer to one acceptable offer under an enabled policy (see the table in the module docs).
pub fn accept(o: &Offer, policy: Compression) -> Negotiated {
    let (params, with_client_bits) = match policy {
        Compression::Dedicated { window_bits } => {
            let w = window_bits.clamp(9, 15);
            let client_bits = match o.client_max_window_bits {
                Some(v) => v.unwrap_or(15).min(w),
                None => 15,
            };
            (
                DeflateParams {
                    server_no_context_takeover: o.server_no_context_takeover,
                    client_no_context_takeover: false,
                    server_max_window_bits: o.server_max_window_bits.map_or(w, |n| n.min(w)),
                    client_max_window_bits: client_bits,
                },
                o.client_max_window_bits.is_some(),
            )
        }
        Compression::Shared | Compression::Off => (
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: o.server_max_window_bits.unwrap_or(15),
                client_max_window_bits: 15,
            },
            false,
        ),
    };
    let response = params.response(o.server_max_window_bits.is_some(), with_client_bits);
    Negotiated { params, response }
}

/// Split a header value into offers on commas outside quoted strings (trimmed, empty parts skipped).
pub fn split_offers(v: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(v);
    std::iter::from_fn(move || loop {
        let s = rest?;
        let end = find_outside_quotes(s, b',');
        let (part, next) = match end {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        rest = next;
        let part = part.trim();
        if !part.is_empty() {
            return Some(part);
        }
    })
}

/// Index of the first `sep` outside a quoted string (with backslash escapes inside quotes).
fn find_outside_quotes(s: &str, sep: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            return Some(i);
        }
    }
    None
}

/// Parse one offer (`permessage-deflate; a; b=1; c="12"`).
pub fn parse_offer(offer: &str) -> Result<Offer, Decline> {
    let mut parts = Parts(Some(offer));
    let name = parts.next().ok_or(Decline::Syntax)?;
    if !is_token(name) {
        return Err(Decline::Syntax);
    }
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(Decline::OtherExtension);
    }
    let mut o = Offer::default();
    for p in parts {
        let (key, value) = match find_outside_quotes(p, b'=') {
            Some(i) => (p[..i].trim(), Some(unquote(p[i + 1..].trim())?)),
            None => (p, None),
        };
        if !is_token(key) {
            return Err(Decline::Syntax);
        }
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(Decline::BadValue);
                }
                let flag = if key.starts_with("server") {
                    &mut o.server_no_context_takeover
                } else {
                    &mut o.client_no_context_takeover
                };
                if *flag {
                    return Err(Decline::RepeatedParameter);
                }
                *flag = true;
            }
            "server_max_window_bits" => {
                if o.server_max_window_bits.is_some() {
                    return Err(Decline::RepeatedParameter);
                }
                let v = value.ok_or(Decline::BadValue)?;
                o.server_max_window_bits = Some(window_bits(&v)?);
            }
            "client_max_window_bits" => {
                if o.client_max_window_bits.is_some() {
                    return Err(Decline::RepeatedParameter);
                }
                o.client_max_window_bits = Some(match value {
                    Some(v) => Some(window_bits(&v)?),
                    None => None,
                });
            }
            _ => return Err(Decline::UnknownParameter),
        }
    }
    Ok(o)
}

/// `;`-separated parts outside quoted strings, trimmed; an empty part (`a;;b`, trailing `;`) is yielded as "" so the
/// caller declines it as a syntax error.
struct Parts<'a>(Option<&'a str>);

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.0?;
        match find_outside_quotes(s, b';') {
            Some(i) => {
                self.0 = Some(&s[i + 1..]);
                Some(s[..i].trim())
            }
            None => {
                self.0 = None;
                Some(s.trim())
            }
        }
    }
}

/// A token or a quoted string's content (quoted-pairs unescaped).
fn unquote(v: &str) -> Result<String, Decline> {
    let Some(inner) = v.strip_prefix('"') else {
        return if is_token(v) {
            Ok(v.to_owned())
        } else {
            Err(Decline::Syntax)
        };
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err(Decline::Syntax),
            Some('"') => break,
            Some('\\') => out.push(chars.next().ok_or(Decline::Syntax)?),
            Some(c) => out.push(c),
        }
    }
    if chars.next().is_some() {
        return Err(Decline::Syntax);
    }
    Ok(out)
}

/// RFC 7230 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An LZ77 window size: decimal 8..=15, no leading zero, no sign.
fn window_bits(v: &str) -> Result<u8, Decline> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(Decline::BadValue),
    }
}

/// The offer a client (such as `loadtest --deflate`) sends: any server window, and the client's window may be
/// limited by the server.
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Validate a server's response to [`CLIENT_OFFER`] (client side). Any window the server names is accepted (8..=15);
/// an unknown or repeated parameter or a bad value fails the handshake, as RFC 7692 7.1 requires of clients.
pub fn parse_response(value: &str) -> Result<DeflateParams, Decline> {
    let mut offers = split_offers(value);
    let one = offers.next().ok_or(Decline::Syntax)?;
    if offers.next().is_some() {
        return Err(Decline::RepeatedParameter);
    }
    let o = parse_offer(one)?;
    Ok(DeflateParams {
        server_no_context_takeover: o.server_no_context_takeover,
        client_no_context_takeover: o.client_no_context_takeover,
        server_max_window_bits: o.server_max_window_bits.unwrap_or(15),
        client_max_window_bits: match o.client_max_window_bits {
            Some(Some(v)) => v,
            Some(None) => return Err(Decline::BadValue),
            None => 15,
        },
    })
}
