//! The door on arbitrary input: a request head through `Door::check_head` and `Door::check_upgrade` (default policy,
//! an explicit origin list, and HS256 tokens), and an arbitrary allowlist text through `OriginPolicy::parse`. Never
//! panics; every refusal has the status its reason implies; a policy prints to text that parses back to itself.
//!
//! Input: `selector data...`: bit 0 of the selector picks what `data` is (a request head, or `list\nOrigin\nHost`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::door::{Door, DoorConfig, JwtConfig, JwtKey, OriginPolicy, RefusalReason};
use ringws::handshake::{parse_request, DEFAULT_MAX_REQUEST_SIZE};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn doors() -> &'static [Door; 2] {
    static D: OnceLock<[Door; 2]> = OnceLock::new();
    D.get_or_init(|| {
        let plain = Door::new(&DoorConfig::default()).unwrap();
        let mut cfg = DoorConfig::default();
        cfg.allowed_origins = OriginPolicy::parse("self,https://a.example,http://[::1]:3000").unwrap();
        cfg.jwt = Some(JwtConfig::new(JwtKey::Secret(b"fuzz secret".to_vec())));
        [plain, Door::new(&cfg).unwrap()]
    })
}

fn expected_status(r: RefusalReason) -> &'static [u16] {
    match r {
        RefusalReason::BadRequest => &[400, 501],
        RefusalReason::Origin => &[403],
        RefusalReason::PerIpConnections | RefusalReason::PerIpRate => &[429],
        _ => &[401],
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        let Ok(Some((req, _))) = parse_request(data, DEFAULT_MAX_REQUEST_SIZE) else {
            return;
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for door in doors() {
            if let Err(r) = door.check_head(&req) {
                assert!(expected_status(r.reason).contains(&r.status), "{r:?}");
            }
            match door.check_upgrade(&req, now) {
                Ok(Some(claims)) => assert!(!claims.sub.is_empty()),
                Ok(None) => assert!(door.authenticator().is_none()),
                Err(r) => assert!(expected_status(r.reason).contains(&r.status), "{r:?}"),
            }
        }
    } else {
        let text = String::from_utf8_lossy(data);
        let mut parts = text.splitn(3, '\n');
        let (list, origin, host) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        if let Ok(p) = OriginPolicy::parse(list) {
            assert_eq!(OriginPolicy::parse(&p.to_string()).as_ref(), Ok(&p), "{list:?} -> {p}");
            let verdict = p.check(origin, host);
            if origin.is_none() || p.allows_any() {
                assert!(verdict.is_ok());
            }
        }
    }
});
