//! The door: what a connection must pass before its `101 Switching Protocols`. Sans-IO: requests, addresses and the
//! time come in, a verdict goes out; the server writes the response.
//!
//! - [`limits`]: per-address concurrent-connection and new-connection-rate limits, one table per process shared by
//!   every worker -> `429` with `Retry-After`;
//! - [`crate::handshake::check_head`]: strict HTTP/1.1 framing (`Host`, `Content-Length`, `Transfer-Encoding`) ->
//!   `400` (`501` for an unknown transfer coding);
//! - [`origin`]: the `Origin` allowlist -> `403`;
//! - [`auth`]: a JSON Web Token at upgrade -> `401`, or the verified [`Claims`] to keep with the connection.
//!
//! The server's order of calls, for each connection:
//! 1. at accept, [`Door::admit`] with the peer's address: a [`Refusal`] is answered once the request head has been
//!    read (a client that is still sending when the socket closes would see a reset instead of the `429`); an
//!    [`IpLease`] is kept with the connection and dropped when it closes;
//! 2. for every complete request head, [`Door::check_head`]; the [`BodyLength`] it returns tells how many bytes after
//!    the head belong to the request (the server answers and closes, so a body cannot be taken for a next request);
//! 3. for a valid upgrade ([`crate::handshake::validate_upgrade`]), [`Door::check_upgrade`] before the handler's own
//!    upgrade hook; the claims go with the connection, and [`Authenticator::remaining`] says when to close it with
//!    1008.
//!
//! Every refusal carries a [`RefusalReason`] whose [`label`](RefusalReason::label) names it in metrics.

pub mod auth;
pub mod limits;
pub mod origin;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub use auth::{AuthError, AuthErrorKind, Authenticator, Claims, JwtConfig, JwtKey};
pub use limits::{Admission, IpLease, IpLimiter, LimitKind, PerIpLimits};
pub use origin::OriginPolicy;

use crate::handshake::{self, BodyLength, Request};

/// What the door checks. `#[non_exhaustive]`: start from `DoorConfig::default()` and set fields.
///
/// The default lets every request through that is well-formed and comes from a page of this server's own origin or
/// from no page at all: no token, no per-address limit.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DoorConfig {
    /// Which web pages may open a WebSocket (default: the page's own origin, `self`).
    pub allowed_origins: OriginPolicy,
    /// Token authentication at upgrade; `None` (default) = off.
    pub jwt: Option<JwtConfig>,
    /// Per-address limits (default: off).
    pub per_ip: PerIpLimits,
}

/// Why the door refused a request; [`label`](Self::label) is its name in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// A malformed or ambiguous request head (`400`, `501`).
    BadRequest,
    /// `Origin` not allowed or malformed (`403`).
    Origin,
    /// No token (`401`).
    AuthMissing,
    /// The token has expired (`401`).
    AuthExpired,
    /// The token's `nbf` is still ahead (`401`).
    AuthNotYetValid,
    /// Forged, malformed, wrong algorithm, wrong issuer or audience (`401`).
    AuthInvalid,
    /// The address has its maximum of concurrent connections (`429`).
    PerIpConnections,
    /// The address opens connections faster than its rate (`429`).
    PerIpRate,
}

impl RefusalReason {
    /// Every reason, in a fixed order (index with [`index`](Self::index), e.g. for a counter array).
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::BadRequest,
        RefusalReason::Origin,
        RefusalReason::AuthMissing,
        RefusalReason::AuthExpired,
        RefusalReason::AuthNotYetValid,
        RefusalReason::AuthInvalid,
        RefusalReason::PerIpConnections,
        RefusalReason::PerIpRate,
    ];

    /// The name in metrics and logs (`bad_request`, `origin`, `auth_missing`, ...).
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::Origin => "origin",
            RefusalReason::AuthMissing => "auth_missing",
            RefusalReason::AuthExpired => "auth_expired",
            RefusalReason::AuthNotYetValid => "auth_not_yet_valid",
            RefusalReason::AuthInvalid => "auth_invalid",
            RefusalReason::PerIpConnections => "per_ip_connections",
            RefusalReason::PerIpRate => "per_ip_rate",
        }
    }

    /// Position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The door's answer to a refused request: a complete HTTP response to send before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status to answer with.
    pub status: u16,
    /// Which check refused (for metrics).
    pub reason: RefusalReason,
    /// A short explanation, the response body (never holds a token or other request data).
    pub message: &'static str,
    /// Extra response headers (`Retry-After` with `429`, `WWW-Authenticate` with `401`).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(status: u16, reason: RefusalReason, message: &'static str) -> Self {
        Refusal {
            status,
            reason,
            message,
            headers: Vec::new(),
        }
    }

    /// The metrics label of [`reason`](Self::reason).
    pub fn label(&self) -> &'static str {
        self.reason.label()
    }

    /// Append the complete response (plain-text body, `Connection: close`).
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 1);
        headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        headers.push(("Content-Type", "text/plain"));
        let body = format!("{}\n", self.message);
        handshake::write_response(out, self.status, &headers, body.as_bytes());
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} ({}): {}",
            self.status,
            self.label(),
            self.message
        )
    }
}

impl std::error::Error for Refusal {}

/// The configured door. Build once per process and share it (`Arc<Door>`) with every worker: it is `Sync`, and the
/// per-address table inside is the one all workers count in.
#[derive(Debug)]
pub struct Door {
    origins: OriginPolicy,
    auth: Option<Authenticator>,
    limiter: Option<Arc<IpLimiter>>,
}

impl Door {
    /// Load keys and build the per-address table (only if a limit is on). Errors describe the bad setting.
    pub fn new(cfg: &DoorConfig) -> Result<Self, String> {
        let auth = cfg.jwt.as_ref().map(Authenticator::new).transpose()?;
        let limiter = if cfg.per_ip.enabled() {
            Some(IpLimiter::new(&cfg.per_ip)?)
        } else {
            cfg.per_ip.validate()?;
            None
        };
        Ok(Door {
            origins: cfg.allowed_origins.clone(),
            auth,
            limiter,
        })
    }

    /// A new connection from `peer` at `now` (monotonic). `Ok(None)` when no per-address limit is configured (no
    /// table is touched); keep an `Ok(Some(lease))` until the connection closes.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<Option<IpLease>, Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        match limiter.admit(peer, now) {
            Admission::Allow(lease) => Ok(lease),
            Admission::Deny {
                kind,
                retry_after_secs,
            } => {
                let mut r = match kind {
                    LimitKind::Connections => Refusal::new(
                        429,
                        RefusalReason::PerIpConnections,
                        "too many connections from this address",
                    ),
                    LimitKind::Rate => Refusal::new(
                        429,
                        RefusalReason::PerIpRate,
                        "too many new connections from this address",
                    ),
                };
                r.headers
                    .push(("Retry-After", retry_after_secs.to_string()));
                Err(r)
            }
        }
    }

    /// Strict framing of any request head ([`handshake::check_head`]).
    pub fn check_head(&self, req: &Request) -> Result<BodyLength, Refusal> {
        handshake::check_head(req)
            .map_err(|e| Refusal::new(e.status, RefusalReason::BadRequest, e.reason))
    }

    /// Origin, then token, for a request that [`handshake::validate_upgrade`] accepted. `Ok(None)`: allowed, no token
    /// configured; `Ok(Some(claims))`: allowed as `claims.sub`.
    pub fn check_upgrade(&self, req: &Request, now: SystemTime) -> Result<Option<Claims>, Refusal> {
        let mut origins = req.headers_named("origin");
        let origin = match (origins.next(), origins.next()) {
            (o, None) => o,
            (_, Some(_)) => {
                return Err(Refusal::new(
                    403,
                    RefusalReason::Origin,
                    "more than one Origin header",
                ))
            }
        };
        self.origins
            .check(origin, req.header("host"))
            .map_err(|e| Refusal::new(403, RefusalReason::Origin, e.reason()))?;
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        auth.authenticate(req, now).map(Some).map_err(|e| {
            let reason = match e.kind {
                AuthErrorKind::Missing => RefusalReason::AuthMissing,
                AuthErrorKind::Expired => RefusalReason::AuthExpired,
                AuthErrorKind::NotYetValid => RefusalReason::AuthNotYetValid,
                AuthErrorKind::Invalid => RefusalReason::AuthInvalid,
            };
            let mut r = Refusal::new(401, reason, e.reason());
            r.headers.push(("WWW-Authenticate", e.www_authenticate()));
            r
        })
    }

    /// The Origin allowlist in force.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    /// The token verifier, if tokens are required (for [`Authenticator::remaining`]).
    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.auth.as_ref()
    }

    /// The shared per-address table, if a limit is on (for its [`stats`](IpLimiter::stats)).
    pub fn limiter(&self) -> Option<&Arc<IpLimiter>> {
        self.limiter.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{parse_request, DEFAULT_MAX_REQUEST_SIZE};
    use std::time::Duration;

    fn req(headers: &[&str]) -> Request {
        let mut s = String::from("GET /chat HTTP/1.1\r\n");
        for h in headers {
            s += h;
            s += "\r\n";
        }
        s += "\r\n";
        parse_request(s.as_bytes(), DEFAULT_MAX_REQUEST_SIZE)
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn labels_are_unique_and_indexed() {
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(
                RefusalReason::ALL
                    .iter()
                    .filter(|o| o.label() == r.label())
                    .count(),
                1
            );
        }
    }

    #[test]
    fn default_door_checks_origin_only() {
        let door = Door::new(&DoorConfig::default()).unwrap();
        assert!(door.limiter().is_none() && door.authenticator().is_none());
        assert!(matches!(
            door.admit("127.0.0.1".parse().unwrap(), Instant::now()),
            Ok(None)
        ));
        let now = SystemTime::now();
        assert_eq!(door.check_upgrade(&req(&["Host: h:1"]), now), Ok(None));
        assert_eq!(
            door.check_upgrade(&req(&["Host: h:1", "Origin: http://h:1"]), now),
            Ok(None)
        );
        let r = door
            .check_upgrade(&req(&["Host: h:1", "Origin: http://evil.example"]), now)
            .unwrap_err();
        assert_eq!((r.status, r.label()), (403, "origin"));
        let r = door
            .check_upgrade(
                &req(&["Host: h:1", "Origin: http://h:1", "Origin: http://h:1"]),
                now,
            )
            .unwrap_err();
        assert_eq!((r.status, r.label()), (403, "origin"));
    }

    #[test]
    fn bad_heads_are_bad_request() {
        let door = Door::new(&DoorConfig::default()).unwrap();
        let r = door.check_head(&req(&["Host: a", "Host: b"])).unwrap_err();
        assert_eq!((r.status, r.label()), (400, "bad_request"));
        let r = door
            .check_head(&req(&["Host: a", "Transfer-Encoding: gzip"]))
            .unwrap_err();
        assert_eq!((r.status, r.label()), (501, "bad_request"));
        assert_eq!(door.check_head(&req(&["Host: a"])), Ok(BodyLength::None));
    }

    #[test]
    fn per_ip_refusals_carry_retry_after() {
        let mut cfg = DoorConfig::default();
        cfg.per_ip.max_connections = 1;
        cfg.per_ip.rate_per_second = 0.5;
        cfg.per_ip.burst = 2;
        let door = Door::new(&cfg).unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let lease = door.admit(a, t0).unwrap();
        assert!(lease.is_some());
        let r = door.admit(a, t0).unwrap_err();
        assert_eq!((r.status, r.label()), (429, "per_ip_connections"));
        assert_eq!(r.headers, vec![("Retry-After", "1".to_owned())]);
        drop(lease);
        drop(door.admit(a, t0).unwrap());
        let r = door.admit(a, t0 + Duration::from_millis(100)).unwrap_err();
        assert_eq!((r.status, r.label()), (429, "per_ip_rate"));
        assert_eq!(r.headers, vec![("Retry-After", "2".to_owned())]);
        // Another address is not affected.
        assert!(door
            .admit("127.0.0.2".parse().unwrap(), t0)
            .unwrap()
            .is_some());
    }

    #[test]
    fn refusal_response_format() {
        let mut r = Refusal::new(429, RefusalReason::PerIpRate, "slow down");
        r.headers.push(("Retry-After", "3".into()));
        let mut out = Vec::new();
        r.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Type: text/plain\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\nslow down\n"
        );
        assert_eq!(r.to_string(), "HTTP 429 (per_ip_rate): slow down");
    }

    #[test]
    fn invalid_config_is_an_error() {
        let mut cfg = DoorConfig::default();
        cfg.per_ip.rate_per_second = -1.0;
        assert!(Door::new(&cfg).is_err());
        let cfg = DoorConfig {
            jwt: Some(JwtConfig::new(JwtKey::Secret(Vec::new()))),
            ..DoorConfig::default()
        };
        assert!(Door::new(&cfg).is_err());
    }
}
