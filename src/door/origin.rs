//! The `Origin` allowlist: which web pages may open a WebSocket to this server (cross-site WebSocket hijacking
//! defence).
//!
//! A browser sends `Origin` with every WebSocket handshake, and a page cannot forge it; non-browser clients usually
//! send none. A WebSocket handshake is not subject to the same-origin policy, so without this check any page a user
//! visits can open `ws://127.0.0.1:1338/chat` with that user's cookies and network position.
//!
//! A policy ([`OriginPolicy`]) is a list of entries, parsed from text such as `self,https://app.example`:
//! - `self`: the page's own origin, i.e. an `Origin` whose host and port are those of the `Host` the request came
//!   to (the default policy is `self` alone);
//! - `*`: every origin;
//! - `scheme://host[:port]`: one origin, compared after normalisation (scheme and host lower-cased, the default port
//!   of `http` (80) and `https` (443) made explicit).
//!
//! A request without `Origin` is always allowed (it does not come from a browser page; authenticate such clients
//! with a token, see `door::auth`). The `null` origin (sandboxed frames, `file:` pages, some redirects) matches only
//! `*`: it cannot be listed, since any site can produce it.
//!
//! How `self` compares: the host is compared case-insensitively (IP literals by value), the port as the effective
//! port. A `Host` without a port matches an `Origin` on its scheme's default port (`http://h` and `https://h` both
//! match `Host: h`), because a server behind a TLS-terminating proxy sees plain HTTP while the page is `https`; the
//! scheme is otherwise not visible to the server. A `Host` with a port matches an `Origin` whose effective port is
//! that port (`Host: h:443` matches `https://h`, `Host: h:8080` matches `http://h:8080`). Only `http` and `https`
//! origins can match `self`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A parsed, normalised origin (`scheme://host[:port]`, RFC 6454).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Lower-cased scheme.
    scheme: String,
    /// Lower-cased host; an IPv6 literal keeps its brackets, in the canonical form of [`Ipv6Addr`].
    host: String,
    /// Effective port: the explicit one, or 80 / 443 for `http` / `https`; `None` for another scheme without one.
    port: Option<u16>,
}

impl Origin {
    /// Parse an `Origin` header value or an allowlist entry. Strict: no path, query, user info or empty port.
    pub fn parse(s: &str) -> Result<Origin, &'static str> {
        let (scheme, rest) = s.split_once("://").ok_or("origin lacks scheme://")?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err("invalid origin scheme");
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_host_port(rest).ok_or("invalid origin host or port")?;
        if host.is_empty() {
            return Err("origin lacks a host");
        }
        let port = match port {
            Some(p) => Some(p),
            None => default_port(&scheme),
        };
        Ok(Origin { scheme, host, port })
    }

    fn is_http(&self) -> bool {
        self.scheme == "http" || self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Split `host[:port]` (with `[v6]` literals) into a normalised host and an optional port. `None` when malformed.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = literal.parse().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{ip}]"), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'));
        if !ok {
            return None;
        }
        let host = match h.parse::<Ipv4Addr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => h.to_ascii_lowercase(),
        };
        (host, p)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Why [`OriginPolicy::check`] refused a request (all are answered with `403`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginRefusal {
    /// A well-formed origin that the policy does not allow.
    NotAllowed,
    /// An `Origin` value that is not `scheme://host[:port]` (or `null`, which only `*` allows).
    Malformed,
}

impl OriginRefusal {
    /// A short text for the response body and logs.
    pub fn reason(self) -> &'static str {
        match self {
            OriginRefusal::NotAllowed => "Origin not allowed",
            OriginRefusal::Malformed => "malformed Origin",
        }
    }
}

/// Which origins may open a WebSocket. See the [module docs](self) for the comparison rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    any: bool,
    same_origin: bool,
    allowed: Vec<Origin>,
}

impl Default for OriginPolicy {
    /// `self`: the page's own origin only (plus requests without `Origin`).
    fn default() -> Self {
        OriginPolicy::same_origin()
    }
}

impl OriginPolicy {
    /// The page's own origin only (`self`).
    pub fn same_origin() -> Self {
        OriginPolicy {
            any: false,
            same_origin: true,
            allowed: Vec::new(),
        }
    }

    /// Every origin (`*`): no protection against cross-site pages; for public, token-authenticated APIs.
    pub fn any() -> Self {
        OriginPolicy {
            any: true,
            same_origin: false,
            allowed: Vec::new(),
        }
    }

    /// Parse a comma-separated list of `self`, `*` and origins (`https://a.example,http://localhost:3000`). An
    /// explicit list replaces the default: add `self` to keep the page's own origin. Blank entries are skipped; a
    /// trailing `/` on an origin is tolerated (it is what a copied URL looks like). An empty list allows no browser
    /// page at all (requests without `Origin` still pass).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut p = OriginPolicy {
            any: false,
            same_origin: false,
            allowed: Vec::new(),
        };
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry {
                "*" => p.any = true,
                _ if entry.eq_ignore_ascii_case("self") => p.same_origin = true,
                _ if entry.eq_ignore_ascii_case("null") => {
                    return Err(
                        "the null origin cannot be allowed (any site can produce it); use * to allow every origin"
                            .to_owned(),
                    )
                }
                _ => {
                    let o = Origin::parse(entry.strip_suffix('/').unwrap_or(entry))
                        .map_err(|e| format!("allowed origin {entry:?}: {e}"))?;
                    if !p.allowed.contains(&o) {
                        p.allowed.push(o);
                    }
                }
            }
        }
        Ok(p)
    }

    /// Whether every origin is allowed (then [`check`](Self::check) never refuses).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Decide on a request's `Origin` value (`None`: the header is absent) given its `Host` value.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), OriginRefusal> {
        let Some(origin) = origin else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let origin = Origin::parse(origin).map_err(|_| OriginRefusal::Malformed)?;
        if self.allowed.contains(&origin) {
            return Ok(());
        }
        if self.same_origin && origin.is_http() && host.is_some_and(|h| same_host(&origin, h)) {
            return Ok(());
        }
        Err(OriginRefusal::NotAllowed)
    }
}

impl fmt::Display for OriginPolicy {
    /// The policy in the syntax [`OriginPolicy::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.any {
            parts.push("*".into());
        }
        if self.same_origin {
            parts.push("self".into());
        }
        parts.extend(self.allowed.iter().map(Origin::to_string));
        f.write_str(&parts.join(","))
    }
}

/// Whether an http(s) origin names the host and port of a `Host` value (see the module docs).
fn same_host(origin: &Origin, host: &str) -> bool {
    let Some((h, port)) = split_host_port(host) else {
        return false;
    };
    if h != origin.host {
        return false;
    }
    match port {
        Some(p) => origin.port == Some(p),
        None => origin.port == default_port(&origin.scheme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: bool = true;
    const DENY: bool = false;

    #[test]
    fn default_policy_is_same_origin() {
        let p = OriginPolicy::default();
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            // No Origin: not a browser page.
            (None, Some("example.com"), ALLOW),
            (None, None, ALLOW),
            // Host without a port: the origin's default port.
            (Some("http://example.com"), Some("example.com"), ALLOW),
            (Some("https://example.com"), Some("example.com"), ALLOW),
            (Some("http://example.com:80"), Some("example.com"), ALLOW),
            (Some("https://example.com:443"), Some("example.com"), ALLOW),
            (Some("http://example.com:8080"), Some("example.com"), DENY),
            (Some("https://example.com:80"), Some("example.com"), DENY),
            // Host with a port: the origin's effective port must be it.
            (Some("http://127.0.0.1:1338"), Some("127.0.0.1:1338"), ALLOW),
            (
                Some("https://127.0.0.1:1338"),
                Some("127.0.0.1:1338"),
                ALLOW,
            ),
            (Some("http://127.0.0.1"), Some("127.0.0.1:1338"), DENY),
            (Some("http://127.0.0.1:1339"), Some("127.0.0.1:1338"), DENY),
            (Some("https://example.com"), Some("example.com:443"), ALLOW),
            (Some("http://example.com"), Some("example.com:80"), ALLOW),
            (Some("http://example.com"), Some("example.com:443"), DENY),
            // Case-insensitive host; IP literals by value.
            (Some("HTTP://EXAMPLE.com"), Some("example.COM"), ALLOW),
            (Some("http://[::1]:1338"), Some("[0:0::1]:1338"), ALLOW),
            (Some("http://[::1]:1338"), Some("[::2]:1338"), DENY),
            (Some("http://localhost:1338"), Some("127.0.0.1:1338"), DENY),
            // Other hosts, look-alikes, other schemes.
            (Some("http://evil.example"), Some("example.com"), DENY),
            (
                Some("http://example.com.evil.example"),
                Some("example.com"),
                DENY,
            ),
            (Some("http://evilexample.com"), Some("example.com"), DENY),
            (Some("ws://example.com"), Some("example.com"), DENY),
            (
                Some("chrome-extension://example.com"),
                Some("example.com"),
                DENY,
            ),
            // No or bad Host: nothing to be the same as.
            (Some("http://example.com"), None, DENY),
            (Some("http://example.com"), Some("exa mple.com"), DENY),
            // Malformed origins and `null`.
            (Some("null"), Some("example.com"), DENY),
            (Some("example.com"), Some("example.com"), DENY),
            (Some("http://example.com/"), Some("example.com"), DENY),
            (Some("http://example.com/path"), Some("example.com"), DENY),
            (Some("http://user@example.com"), Some("example.com"), DENY),
            (Some("http://example.com:"), Some("example.com"), DENY),
            (Some("http://example.com:99999"), Some("example.com"), DENY),
            (Some("http://"), Some(""), DENY),
            (Some(""), Some("example.com"), DENY),
        ];
        for &(origin, host, want) in cases {
            assert_eq!(
                p.check(origin, host).is_ok(),
                want,
                "{origin:?} at {host:?}"
            );
        }
    }

    #[test]
    fn refusal_kinds() {
        let p = OriginPolicy::default();
        assert_eq!(
            p.check(Some("null"), Some("h")),
            Err(OriginRefusal::Malformed)
        );
        assert_eq!(
            p.check(Some("http://other"), Some("h")),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(OriginRefusal::NotAllowed.reason(), "Origin not allowed");
    }

    #[test]
    fn star_allows_everything() {
        let p = OriginPolicy::parse("*").unwrap();
        assert!(p.allows_any());
        for o in [
            "null",
            "http://evil.example",
            "garbage",
            "chrome-extension://abc",
        ] {
            assert_eq!(p.check(Some(o), Some("example.com")), Ok(()), "{o}");
        }
        assert_eq!(OriginPolicy::any(), p);
    }

    #[test]
    fn explicit_list() {
        let p = OriginPolicy::parse(
            "https://a.example, http://localhost:3000/ ,,HTTPS://B.Example:8443",
        )
        .unwrap();
        let cases: &[(&str, &str, bool)] = &[
            ("https://a.example", "ws.example", ALLOW),
            ("https://a.example:443", "ws.example", ALLOW),
            ("https://A.EXAMPLE", "ws.example", ALLOW),
            ("http://a.example", "ws.example", DENY),
            ("https://a.example:8443", "ws.example", DENY),
            ("http://localhost:3000", "ws.example", ALLOW),
            ("http://localhost", "ws.example", DENY),
            ("https://b.example:8443", "ws.example", ALLOW),
            ("https://b.example", "ws.example", DENY),
            // The list replaces the default: the page's own origin is not in it.
            ("http://ws.example", "ws.example", DENY),
        ];
        for &(origin, host, want) in cases {
            assert_eq!(
                p.check(Some(origin), Some(host)).is_ok(),
                want,
                "{origin} at {host}"
            );
        }
        assert_eq!(p.check(None, Some("ws.example")), Ok(()));
        assert_eq!(
            p.to_string(),
            "https://a.example,http://localhost:3000,https://b.example:8443"
        );
    }

    #[test]
    fn list_with_self() {
        let p = OriginPolicy::parse("self,https://app.example").unwrap();
        assert_eq!(
            p.check(Some("http://ws.example"), Some("ws.example")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("https://app.example"), Some("ws.example")),
            Ok(())
        );
        assert!(p
            .check(Some("https://evil.example"), Some("ws.example"))
            .is_err());
        assert_eq!(
            OriginPolicy::parse("self").unwrap(),
            OriginPolicy::default()
        );
        assert_eq!(OriginPolicy::default().to_string(), "self");
    }

    #[test]
    fn empty_list_allows_no_page() {
        let p = OriginPolicy::parse("").unwrap();
        assert!(p.check(Some("http://h"), Some("h")).is_err());
        assert_eq!(p.check(None, Some("h")), Ok(()));
    }

    #[test]
    fn bad_lists_are_errors() {
        for list in [
            "null",
            "a.example",
            "https://a.example/path",
            "https://a.example:0x50",
            "https://",
            "1http://a",
            "https://[::1",
        ] {
            assert!(OriginPolicy::parse(list).is_err(), "{list}");
        }
    }

    #[test]
    fn origin_normalisation() {
        let o = Origin::parse("HTTPS://WWW.Example.COM:443").unwrap();
        assert_eq!(o.to_string(), "https://www.example.com");
        assert_eq!(o, Origin::parse("https://www.example.com").unwrap());
        assert_eq!(
            Origin::parse("http://[0:0:0:0:0:0:0:1]:8080")
                .unwrap()
                .to_string(),
            "http://[::1]:8080"
        );
        assert_eq!(Origin::parse("app://x").unwrap().port, None);
    }
}
