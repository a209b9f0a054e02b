//! Token authentication at upgrade (`ringws::door::auth`), with tokens and keys made in the test: an HS256 secret,
//! an RSA key (RS256) and an EC P-256 key (ES256), all generated at run time.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringws::door::auth::{AuthErrorKind, Authenticator, JwtConfig, JwtKey};
use ringws::door::{Door, DoorConfig};
use ringws::handshake::{parse_request, Request, DEFAULT_MAX_REQUEST_SIZE};
use serde_json::{json, Value};

const SECRET: &[u8] = b"a test secret of more than thirty-two bytes";
/// A fixed "now" so that expiry is deterministic.
const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// A key pair as PEM: (private PKCS#8, public SPKI).
struct Pair {
    private: String,
    public: String,
}

fn rsa_pair() -> &'static Pair {
    static P: OnceLock<Pair> = OnceLock::new();
    P.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::Generate;
        let key = rsa::PrivateKey::generate();
        Pair {
            private: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    })
}

fn ec_pair() -> Pair {
    use p256::ecdsa::SigningKey;
    use p256::elliptic_curve::Generate;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = SigningKey::generate();
    Pair {
        private: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public: key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET).unwrap(),
        claims,
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn valid_claims() -> Value {
    json!({"sub": "alice", "exp": NOW + 600, "iat": NOW - 10, "room": "lobby"})
}

fn secret_auth() -> Authenticator {
    Authenticator::new(&JwtConfig::new(JwtKey::Secret(SECRET.to_vec()))).unwrap()
}

fn request(target: &str, headers: &[String]) -> Request {
    let mut s = format!("GET {target} HTTP/1.1\r\nHost: h\r\n");
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

fn kind_of(auth: &Authenticator, token: &str) -> AuthErrorKind {
    auth.verify(token, now()).unwrap_err().kind
}

#[test]
fn valid_hs256_token_gives_its_claims() {
    let auth = secret_auth();
    assert_eq!(auth.algorithm(), Algorithm::HS256);
    let c = auth.verify(&hs256(&valid_claims()), now()).unwrap();
    assert_eq!(c.sub, "alice");
    assert_eq!(c.exp, NOW + 600);
    assert_eq!(c.iat, Some(NOW - 10));
    assert_eq!(c.extra.get("room"), Some(&json!("lobby")));
    // Default leeway 30 s: valid until exp + 30.
    assert_eq!(auth.remaining(&c, now()), Duration::from_secs(630));
    assert_eq!(
        auth.remaining(&c, now() + Duration::from_secs(700)),
        Duration::ZERO
    );
}

#[test]
fn token_from_bearer_header_or_query_parameter() {
    let auth = secret_auth();
    let t = hs256(&valid_claims());
    for req in [
        request("/chat", &[format!("Authorization: Bearer {t}")]),
        request("/chat", &[format!("authorization: bearer   {t}")]),
        request(&format!("/chat?room=a&token={t}"), &[]),
        // Percent-encoded, as `encodeURIComponent` may leave it.
        request(
            &format!("/chat?token={}", t.replace('.', "%2E")),
            &["Authorization: Basic dXNlcjpwdw==".into()],
        ),
    ] {
        assert_eq!(
            auth.authenticate(&req, now()).unwrap().sub,
            "alice",
            "{req:?}"
        );
    }
    // The header wins over the query parameter.
    let other = hs256(&json!({"sub": "bob", "exp": NOW + 600}));
    let req = request(
        &format!("/chat?token={other}"),
        &[format!("Authorization: Bearer {t}")],
    );
    assert_eq!(auth.authenticate(&req, now()).unwrap().sub, "alice");

    // Query parameter off: only the header counts.
    let mut cfg = JwtConfig::new(JwtKey::Secret(SECRET.to_vec()));
    cfg.query_param = false;
    let strict = Authenticator::new(&cfg).unwrap();
    let req = request(&format!("/chat?token={t}"), &[]);
    assert_eq!(
        strict.authenticate(&req, now()).unwrap_err().kind,
        AuthErrorKind::Missing
    );
}

#[test]
fn missing_token() {
    let auth = secret_auth();
    for req in [
        request("/chat", &[]),
        request("/chat?room=a", &[]),
        request("/chat", &["Authorization: Basic dXNlcjpwdw==".into()]),
        request("/chat", &["Authorization: Bearer ".into()]),
        request("/chat?token=", &[]),
    ] {
        let e = auth.authenticate(&req, now()).unwrap_err();
        assert_eq!(e.kind, AuthErrorKind::Missing, "{req:?}");
        assert_eq!(e.www_authenticate(), "Bearer");
    }
    let t = hs256(&valid_claims());
    let twice = request(
        "/chat",
        &[
            format!("Authorization: Bearer {t}"),
            format!("Authorization: Bearer {t}"),
        ],
    );
    assert_eq!(
        auth.authenticate(&twice, now()).unwrap_err().kind,
        AuthErrorKind::Invalid
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let auth = secret_auth();
    let at = |exp: u64, nbf: Option<u64>| {
        let mut c = json!({"sub": "alice", "exp": exp});
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        hs256(&c)
    };
    assert_eq!(kind_of(&auth, &at(NOW - 31, None)), AuthErrorKind::Expired);
    assert_eq!(kind_of(&auth, &at(NOW - 30, None)), AuthErrorKind::Expired);
    // Within the leeway.
    assert!(auth.verify(&at(NOW - 29, None), now()).is_ok());
    assert_eq!(
        kind_of(&auth, &at(NOW + 600, Some(NOW + 31))),
        AuthErrorKind::NotYetValid
    );
    assert!(auth.verify(&at(NOW + 600, Some(NOW + 30)), now()).is_ok());

    let mut cfg = JwtConfig::new(JwtKey::Secret(SECRET.to_vec()));
    cfg.leeway = Duration::ZERO;
    let exact = Authenticator::new(&cfg).unwrap();
    assert_eq!(kind_of(&exact, &at(NOW, None)), AuthErrorKind::Expired);
    assert!(exact.verify(&at(NOW + 1, None), now()).is_ok());
    assert_eq!(
        kind_of(&exact, &at(NOW + 600, Some(NOW + 1))),
        AuthErrorKind::NotYetValid
    );
}

#[test]
fn forged_and_malformed_tokens_are_invalid() {
    let auth = secret_auth();
    let good = hs256(&valid_claims());
    let other_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret").unwrap(),
        &valid_claims(),
    );
    // Swap the payload for one claiming another subject, keep the signature.
    let evil = hs256(&json!({"sub": "mallory", "exp": NOW + 600}));
    let parts: Vec<&str> = good.split('.').collect();
    let evil_parts: Vec<&str> = evil.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], evil_parts[1], parts[2]);
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (t, why) in [
        (other_key.as_str(), "bad token signature"),
        (spliced.as_str(), "bad token signature"),
        (flipped.as_str(), "bad token signature"),
        ("not.a.token", "malformed token"),
        ("abc", "malformed token"),
        (
            // Unsigned: {"alg":"none"}.
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.",
            "",
        ),
    ] {
        let e = auth.verify(t, now()).unwrap_err();
        assert_eq!(e.kind, AuthErrorKind::Invalid, "{t}");
        if !why.is_empty() {
            assert_eq!(e.reason(), why, "{t}");
        }
        assert!(e
            .www_authenticate()
            .starts_with("Bearer error=\"invalid_token\""));
    }
}

#[test]
fn required_claims() {
    let auth = secret_auth();
    for (claims, why) in [
        (json!({"exp": NOW + 600}), "token lacks sub"),
        (
            json!({"sub": "", "exp": NOW + 600}),
            "token sub is not a non-empty string",
        ),
        (
            json!({"sub": 7, "exp": NOW + 600}),
            "token sub is not a non-empty string",
        ),
        (json!({"sub": "alice"}), "token lacks exp"),
        (
            json!({"sub": "alice", "exp": "soon"}),
            "token exp is not a NumericDate",
        ),
        (
            json!({"sub": "alice", "exp": NOW + 600, "nbf": "x"}),
            "token nbf is not a NumericDate",
        ),
    ] {
        let e = auth.verify(&hs256(&claims), now()).unwrap_err();
        assert_eq!(
            (e.kind, e.reason()),
            (AuthErrorKind::Invalid, why),
            "{claims}"
        );
    }
}

#[test]
fn wrong_algorithm_is_refused() {
    let auth = secret_auth();
    // Same secret, another HMAC algorithm.
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET).unwrap(),
        &valid_claims(),
    );
    let e = auth.verify(&hs384, now()).unwrap_err();
    assert_eq!(
        (e.kind, e.reason()),
        (AuthErrorKind::Invalid, "token algorithm not allowed")
    );

    // Algorithm confusion: an RS256 server must not accept HS256 keyed with its public key.
    let pair = rsa_pair();
    let rs = Authenticator::new(&JwtConfig::new(JwtKey::PublicKeyPem(
        pair.public.clone().into_bytes(),
    )))
    .unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(pair.public.as_bytes()).unwrap(),
        &valid_claims(),
    );
    let e = rs.verify(&confused, now()).unwrap_err();
    assert_eq!(
        (e.kind, e.reason()),
        (AuthErrorKind::Invalid, "token algorithm not allowed")
    );
    // And an RS256 token is refused by an HS256 server.
    let rs_token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(pair.private.as_bytes()).unwrap(),
        &valid_claims(),
    );
    assert_eq!(kind_of(&auth, &rs_token), AuthErrorKind::Invalid);
}

#[test]
fn rs256_public_key() {
    let pair = rsa_pair();
    let auth = Authenticator::new(&JwtConfig::new(JwtKey::PublicKeyPem(
        pair.public.clone().into_bytes(),
    )))
    .unwrap();
    assert_eq!(auth.algorithm(), Algorithm::RS256);
    let key = EncodingKey::from_rsa_pem(pair.private.as_bytes()).unwrap();
    let c = auth
        .verify(&sign(Algorithm::RS256, &key, &valid_claims()), now())
        .unwrap();
    assert_eq!(c.sub, "alice");
    let expired = sign(
        Algorithm::RS256,
        &key,
        &json!({"sub": "a", "exp": NOW - 100}),
    );
    assert_eq!(kind_of(&auth, &expired), AuthErrorKind::Expired);
    // RS384 with the same key is another algorithm.
    let rs384 = sign(Algorithm::RS384, &key, &valid_claims());
    assert_eq!(kind_of(&auth, &rs384), AuthErrorKind::Invalid);
}

#[test]
fn es256_public_key() {
    let pair = ec_pair();
    let auth = Authenticator::new(&JwtConfig::new(JwtKey::PublicKeyPem(
        pair.public.clone().into_bytes(),
    )))
    .unwrap();
    assert_eq!(auth.algorithm(), Algorithm::ES256);
    let key = EncodingKey::from_ec_pem(pair.private.as_bytes()).unwrap();
    let c = auth
        .verify(&sign(Algorithm::ES256, &key, &valid_claims()), now())
        .unwrap();
    assert_eq!(c.sub, "alice");
    // Signed by another EC key: forged.
    let other = ec_pair();
    let forged = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(other.private.as_bytes()).unwrap(),
        &valid_claims(),
    );
    let e = auth.verify(&forged, now()).unwrap_err();
    assert_eq!(
        (e.kind, e.reason()),
        (AuthErrorKind::Invalid, "bad token signature")
    );
}

#[test]
fn a_private_key_file_is_not_a_public_key() {
    // The server is given only public keys; a private key PEM is refused rather than half-understood.
    let pair = ec_pair();
    assert!(Authenticator::new(&JwtConfig::new(JwtKey::PublicKeyPem(
        pair.private.into_bytes()
    )))
    .is_err());
}

#[test]
fn issuer_and_audience() {
    let mut cfg = JwtConfig::new(JwtKey::Secret(SECRET.to_vec()));
    cfg.issuer = Some("https://issuer.example".into());
    cfg.audience = Some("ringws".into());
    let auth = Authenticator::new(&cfg).unwrap();
    let with = |iss: &str, aud: Value| {
        hs256(&json!({"sub": "a", "exp": NOW + 60, "iss": iss, "aud": aud}))
    };
    assert!(auth
        .verify(&with("https://issuer.example", json!("ringws")), now())
        .is_ok());
    assert!(auth
        .verify(
            &with("https://issuer.example", json!(["x", "ringws"])),
            now()
        )
        .is_ok());
    let e = auth
        .verify(&with("https://evil.example", json!("ringws")), now())
        .unwrap_err();
    assert_eq!(e.reason(), "wrong token issuer");
    let e = auth
        .verify(&with("https://issuer.example", json!("other")), now())
        .unwrap_err();
    assert_eq!(e.reason(), "wrong token audience");

    // Without an audience configured, a token with one is still accepted.
    let plain = secret_auth();
    let c = plain.verify(&with("any", json!("x")), now()).unwrap();
    assert_eq!(c.iss.as_deref(), Some("any"));
    assert_eq!(c.extra.get("aud"), Some(&json!("x")));
}

#[test]
fn door_answers_401_with_reason_labels() {
    let mut cfg = DoorConfig::default();
    cfg.jwt = Some(JwtConfig::new(JwtKey::Secret(SECRET.to_vec())));
    let door = Door::new(&cfg).unwrap();
    let ok = request(&format!("/chat?token={}", hs256(&valid_claims())), &[]);
    assert_eq!(
        door.check_upgrade(&ok, now()).unwrap().unwrap().sub,
        "alice"
    );
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"x").unwrap(),
        &valid_claims(),
    );
    let cases = [
        (request("/chat", &[]), "auth_missing"),
        (
            request(
                &format!(
                    "/chat?token={}",
                    hs256(&json!({"sub": "a", "exp": NOW - 100}))
                ),
                &[],
            ),
            "auth_expired",
        ),
        (
            request(
                &format!(
                    "/chat?token={}",
                    hs256(&json!({"sub": "a", "exp": NOW + 100, "nbf": NOW + 90}))
                ),
                &[],
            ),
            "auth_not_yet_valid",
        ),
        (
            request(&format!("/chat?token={forged}"), &[]),
            "auth_invalid",
        ),
    ];
    for (req, label) in cases {
        let r = door.check_upgrade(&req, now()).unwrap_err();
        assert_eq!((r.status, r.label()), (401, label));
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| *n == "WWW-Authenticate" && v.starts_with("Bearer")));
        let mut out = Vec::new();
        r.write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(!text.contains(&forged), "a refusal never echoes the token");
    }
    // Origin is checked before the token: a foreign page gets 403 even with a valid token.
    let foreign = request(
        &format!("/chat?token={}", hs256(&valid_claims())),
        &["Origin: http://evil.example".into()],
    );
    assert_eq!(door.check_upgrade(&foreign, now()).unwrap_err().status, 403);
}
