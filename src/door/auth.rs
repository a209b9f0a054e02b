//! Token authentication at upgrade: a JSON Web Token (RFC 7519) verified with `jsonwebtoken` before any `101`.
//!
//! - Keys: an HS256 shared secret, or a public key in a PEM file: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`) verifies
//!   RS256, EC P-256 verifies ES256. Exactly one algorithm is accepted per key, so a token signed with another
//!   (`none`, or HS256 keyed with the public key: the algorithm-confusion attack) is refused.
//! - Where the token comes from: `Authorization: Bearer <token>`, else the `token` query parameter of the request
//!   target (percent-decoded), since browsers cannot set headers on a WebSocket handshake. An `Authorization` header
//!   with another scheme is ignored (it may belong to a proxy). A token in the URL can end up in access logs of
//!   proxies in between: prefer short-lived tokens.
//! - Claims: `sub` (non-empty string) and `exp` (seconds since the Unix epoch) are required; `nbf` is checked when
//!   present; `iss` / `aud` when the configuration names them. `exp` and `nbf` are judged against the time the caller
//!   passes in (no clock inside), with [`JwtConfig::leeway`] for clock skew.
//!
//! The server calls [`Authenticator::authenticate`] from the door; an application's own upgrade hook can do the
//! same and keep the returned [`Claims`] as its per-connection data:
//!
//! ```no_run
//! # use ringws::door::auth::{Authenticator, JwtConfig, JwtKey};
//! # fn hook(req: &ringws::handshake::Request) {
//! let auth = Authenticator::new(&JwtConfig::new(JwtKey::Secret(b"a long random secret".to_vec()))).unwrap();
//! match auth.authenticate(req, std::time::SystemTime::now()) {
//!     Ok(claims) => println!("hello {}", claims.sub),
//!     Err(e) => println!("401 {}", e.reason()),
//! }
//! # }
//! ```

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::handshake::Request;

/// Default allowance for clock skew between the token issuer and this server.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The key that verifies tokens.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// HS256 with this shared secret (use at least 32 random bytes).
    Secret(Vec<u8>),
    /// RS256 (RSA key) or ES256 (EC P-256 key): the contents of a PEM public key file.
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKey::Secret(s) => write!(f, "Secret({} bytes)", s.len()),
            JwtKey::PublicKeyPem(p) => write!(f, "PublicKeyPem({} bytes)", p.len()),
        }
    }
}

/// How tokens are verified. `#[non_exhaustive]`: build with [`JwtConfig::new`] and set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtConfig {
    /// The key tokens are verified with.
    pub key: JwtKey,
    /// Clock-skew allowance for `exp` and `nbf` (default [`DEFAULT_LEEWAY`], 30 s). A connection is closed when its
    /// token expires, at `exp + leeway`.
    pub leeway: Duration,
    /// If set, the token's `iss` must be this value.
    pub issuer: Option<String>,
    /// If set, the token's `aud` must hold this value; if unset, a token with an `aud` is still accepted.
    pub audience: Option<String>,
    /// Whether the `token` query parameter is read (default `true`: browsers cannot send `Authorization`).
    pub query_param: bool,
}

impl JwtConfig {
    /// Verify with `key`, everything else at its default.
    pub fn new(key: JwtKey) -> Self {
        JwtConfig {
            key,
            leeway: DEFAULT_LEEWAY,
            issuer: None,
            audience: None,
            query_param: true,
        }
    }
}

/// The verified claims of a token, kept with the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Every other claim (`aud`, application claims), as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The claims as they may arrive: presence and types are checked after the signature.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a request was not authenticated. Every kind is answered with `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// No token in the request.
    Missing,
    /// `exp + leeway` has passed.
    Expired,
    /// `nbf - leeway` has not come yet.
    NotYetValid,
    /// Malformed, forged (bad signature), wrong algorithm, missing or malformed claims, wrong issuer or audience.
    Invalid,
}

/// A refused token: its kind and a short reason fit for the response body and logs (it never holds the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// What went wrong, for the refusal's label.
    pub kind: AuthErrorKind,
    reason: &'static str,
}

impl AuthError {
    const fn new(kind: AuthErrorKind, reason: &'static str) -> Self {
        AuthError { kind, reason }
    }

    /// A short explanation for the `401` body and logs.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The `WWW-Authenticate` value of the `401` (RFC 6750 3).
    pub fn www_authenticate(&self) -> String {
        match self.kind {
            AuthErrorKind::Missing => "Bearer".to_owned(),
            _ => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                self.reason
            ),
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for AuthError {}

/// Verifies tokens. Built once from a [`JwtConfig`], shared by all workers (`Sync`); verifying costs one HMAC (a
/// few µs) or one RSA / ECDSA verification (tens of µs) per upgrade, and nothing per message.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
    query_param: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm())
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Load the key. Errors say what is wrong with it (an empty secret, a PEM that is neither an RSA nor an EC public
    /// key).
    pub fn new(cfg: &JwtConfig) -> Result<Self, String> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            // Only if another crate enabled a second backend; whichever wins, verification is the same.
            let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        }
        let (key, alg) = match &cfg.key {
            JwtKey::Secret(s) if s.is_empty() => return Err("the JWT secret is empty".into()),
            JwtKey::Secret(s) => (
                DecodingKey::from_secret(s).map_err(|e| format!("JWT secret: {e}"))?,
                Algorithm::HS256,
            ),
            JwtKey::PublicKeyPem(pem) => {
                if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                    (k, Algorithm::RS256)
                } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                    (k, Algorithm::ES256)
                } else {
                    return Err(
                        "the JWT public key is neither an RSA nor an EC public key in PEM form"
                            .into(),
                    );
                }
            }
        };
        let mut validation = Validation::new(alg);
        // Presence and time are checked here, against the time passed in (jsonwebtoken would read the clock).
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        match &cfg.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Authenticator {
            key,
            validation,
            leeway: cfg.leeway.as_secs(),
            query_param: cfg.query_param,
        })
    }

    /// The one algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// Find the token in a request (see the module docs) and verify it at `now`.
    pub fn authenticate(&self, req: &Request, now: SystemTime) -> Result<Claims, AuthError> {
        let token = self.token_of(req)?;
        self.verify(&token, now)
    }

    /// The token a request carries: the `Authorization: Bearer` header, else the `token` query parameter.
    pub fn token_of<'r>(&self, req: &'r Request) -> Result<Cow<'r, str>, AuthError> {
        let mut bearer = None;
        for v in req.headers_named("authorization") {
            let Some((scheme, rest)) = v.split_once([' ', '\t']) else {
                continue;
            };
            if !scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            if bearer.is_some() {
                return Err(AuthError::new(
                    AuthErrorKind::Invalid,
                    "more than one Bearer token",
                ));
            }
            bearer = Some(rest.trim_matches([' ', '\t']));
        }
        if let Some(t) = bearer {
            return Ok(Cow::Borrowed(t));
        }
        if self.query_param {
            if let Some(t) = query_param(&req.path, "token")? {
                return Ok(t);
            }
        }
        Err(AuthError::new(AuthErrorKind::Missing, "missing token"))
    }

    /// Verify a token's signature and claims at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, AuthError> {
        use AuthErrorKind::*;
        if token.is_empty() {
            return Err(AuthError::new(Missing, "missing token"));
        }
        let raw = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::new(Invalid, jwt_reason(e.kind())))?
            .claims;
        let sub = match raw.sub {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            None => return Err(AuthError::new(Invalid, "token lacks sub")),
            Some(_) => {
                return Err(AuthError::new(
                    Invalid,
                    "token sub is not a non-empty string",
                ))
            }
        };
        let exp = match raw.exp.as_ref().map(numeric_date) {
            Some(Some(exp)) => exp,
            None => return Err(AuthError::new(Invalid, "token lacks exp")),
            Some(None) => return Err(AuthError::new(Invalid, "token exp is not a NumericDate")),
        };
        let nbf = match raw.nbf.as_ref().map(numeric_date) {
            Some(None) => return Err(AuthError::new(Invalid, "token nbf is not a NumericDate")),
            n => n.flatten(),
        };
        let iat = raw.iat.as_ref().and_then(numeric_date);
        let iss = match raw.iss {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let now = unix_secs(now);
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::new(Expired, "token expired"));
        }
        if nbf.is_some_and(|nbf| now.saturating_add(self.leeway) < nbf) {
            return Err(AuthError::new(NotYetValid, "token not yet valid"));
        }
        Ok(Claims {
            sub,
            exp,
            nbf,
            iat,
            iss,
            extra: raw.extra,
        })
    }

    /// How long a verified token stays valid after `now` (until `exp + leeway`); zero if already past. The server
    /// closes the connection with 1008 when this runs out.
    pub fn remaining(&self, claims: &Claims, now: SystemTime) -> Duration {
        let end = UNIX_EPOCH + Duration::from_secs(claims.exp.saturating_add(self.leeway));
        end.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// A NumericDate (RFC 7519 2) as whole seconds: a non-negative integer, or a non-negative number with a fraction
/// (rounded down).
fn numeric_date(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn jwt_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "bad token signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "token algorithm not allowed",
        ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            "token algorithm not supported"
        }
        ErrorKind::InvalidIssuer => "wrong token issuer",
        ErrorKind::InvalidAudience => "wrong token audience",
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::MissingRequiredClaim(_) => {
            "malformed token claims"
        }
        ErrorKind::Json(_) => "malformed token header or claims",
        _ => "malformed token",
    }
}

/// The value of the first `name` parameter of a request target's query, percent-decoded. A second one is an error
/// (which of them would a proxy have looked at?), as is a value that is not UTF-8 once decoded.
fn query_param<'a>(target: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, AuthError> {
    let Some((_, query)) = target.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or("");
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            continue;
        }
        if found.is_some() {
            return Err(AuthError::new(
                AuthErrorKind::Invalid,
                "more than one token parameter",
            ));
        }
        found = Some(
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| {
                    AuthError::new(AuthErrorKind::Invalid, "token parameter is not UTF-8")
                })?,
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_extraction() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/chat", None),
            ("/chat?", None),
            ("/chat?room=a", None),
            ("/chat?token=abc", Some("abc")),
            ("/chat?room=a&token=a.b.c&x=1", Some("a.b.c")),
            ("/chat?token=a%2Eb%2ec", Some("a.b.c")),
            ("/chat?token=", Some("")),
            ("/chat?token", Some("")),
            ("/chat?xtoken=a&tokenx=b", None),
            ("/chat?token=a#frag", Some("a")),
        ];
        for &(target, want) in cases {
            assert_eq!(
                query_param(target, "token").unwrap().as_deref(),
                want,
                "{target}"
            );
        }
        assert!(query_param("/chat?token=a&token=b", "token").is_err());
        assert!(query_param("/chat?token=%ff", "token").is_err());
    }

    #[test]
    fn numeric_dates() {
        use serde_json::json;
        assert_eq!(numeric_date(&json!(1700000000)), Some(1700000000));
        assert_eq!(numeric_date(&json!(1700000000.9)), Some(1700000000));
        assert_eq!(numeric_date(&json!(-1)), None);
        assert_eq!(numeric_date(&json!("1700000000")), None);
        assert_eq!(numeric_date(&json!(null)), None);
    }

    #[test]
    fn secret_key_is_not_printed() {
        let k = JwtKey::Secret(b"hunter2hunter2".to_vec());
        assert_eq!(format!("{k:?}"), "Secret(14 bytes)");
        assert!(Authenticator::new(&JwtConfig::new(JwtKey::Secret(Vec::new()))).is_err());
        assert!(
            Authenticator::new(&JwtConfig::new(JwtKey::PublicKeyPem(b"nope".to_vec()))).is_err()
        );
    }
}
