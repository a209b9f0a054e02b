//! permessage-deflate negotiation (RFC 7692 section 7.1): every parameter combination under each policy, malformed
//! and repeated parameters, several offers and headers, and the client side.

use ringws::deflate::negotiate::{
    parse_offer, parse_response, split_offers, Decline, Offer, CLIENT_OFFER,
};
use ringws::deflate::{negotiate, Compression, DeflateParams};

const SHARED: Compression = Compression::Shared;
const DEDICATED: Compression = Compression::Dedicated { window_bits: 12 };

fn answer(offers: &[&str], policy: Compression) -> Option<(String, DeflateParams)> {
    negotiate(offers.iter().copied(), policy).map(|n| (n.response, n.params))
}

fn response(offers: &[&str], policy: Compression) -> Option<String> {
    answer(offers, policy).map(|a| a.0)
}

/// Every combination of the four parameters (each absent or present; window bits with each kind of value).
fn all_offers() -> Vec<(String, Offer)> {
    let mut v = Vec::new();
    for snct in [false, true] {
        for cnct in [false, true] {
            for smwb in [None, Some(8u8), Some(9), Some(12), Some(15)] {
                for cmwb in [
                    None,
                    Some(None),
                    Some(Some(8u8)),
                    Some(Some(10)),
                    Some(Some(15)),
                ] {
                    let mut s = String::from("permessage-deflate");
                    if snct {
                        s.push_str("; server_no_context_takeover");
                    }
                    if cnct {
                        s.push_str("; client_no_context_takeover");
                    }
                    if let Some(b) = smwb {
                        s.push_str(&format!("; server_max_window_bits={b}"));
                    }
                    match cmwb {
                        None => {}
                        Some(None) => s.push_str("; client_max_window_bits"),
                        Some(Some(b)) => s.push_str(&format!("; client_max_window_bits={b}")),
                    }
                    let o = Offer {
                        server_no_context_takeover: snct,
                        client_no_context_takeover: cnct,
                        server_max_window_bits: smwb,
                        client_max_window_bits: cmwb,
                    };
                    v.push((s, o));
                }
            }
        }
    }
    v
}

/// What RFC 7692 7.1 allows a response to say about an offer, checked on the parsed response.
fn assert_allowed(offer: &Offer, resp: &str) {
    let r = parse_offer(resp).expect("response parses");
    match (offer.server_max_window_bits, r.server_max_window_bits) {
        (None, Some(_)) => panic!("server_max_window_bits not offered: {resp}"),
        (Some(_), None) => panic!("offered server_max_window_bits must be answered: {resp}"),
        (Some(o), Some(a)) => assert!(a <= o, "{resp}"),
        (None, None) => {}
    }
    match (offer.client_max_window_bits, r.client_max_window_bits) {
        (None, Some(_)) => panic!("client_max_window_bits not offered: {resp}"),
        (Some(o), Some(a)) => {
            let a = a.expect("a response's client_max_window_bits has a value");
            assert!(a <= o.unwrap_or(15), "{resp}");
        }
        _ => {}
    }
    if offer.server_no_context_takeover {
        assert!(
            r.server_no_context_takeover,
            "offered snct must be accepted: {resp}"
        );
    }
}

#[test]
fn every_combination_under_shared() {
    for (s, o) in all_offers() {
        assert_eq!(parse_offer(&s), Ok(o), "{s}");
        let (resp, p) = answer(&[&s], SHARED).expect(&s);
        assert_allowed(&o, &resp);
        assert!(
            p.server_no_context_takeover && p.client_no_context_takeover,
            "{s}"
        );
        assert!(resp.contains("; server_no_context_takeover; client_no_context_takeover"));
        assert!(!resp.contains("client_max_window_bits"), "{resp}");
        assert_eq!(
            p.server_max_window_bits,
            o.server_max_window_bits.unwrap_or(15)
        );
        assert_eq!(p.server_compress_bits(), p.server_max_window_bits.max(9));
        // The response is what the client would parse into the same parameters.
        assert_eq!(parse_response(&resp), Ok(p), "{resp}");
    }
}

#[test]
fn every_combination_under_dedicated() {
    for (s, o) in all_offers() {
        let (resp, p) = answer(&[&s], DEDICATED).expect(&s);
        assert_allowed(&o, &resp);
        assert!(
            !p.client_no_context_takeover,
            "{s}: dedicated keeps client context"
        );
        assert_eq!(p.server_no_context_takeover, o.server_no_context_takeover);
        assert_eq!(
            p.server_max_window_bits,
            o.server_max_window_bits.map_or(12, |b| b.min(12))
        );
        let want_client = match o.client_max_window_bits {
            None => 15,
            Some(v) => v.unwrap_or(15).min(12),
        };
        assert_eq!(p.client_max_window_bits, want_client, "{s}");
        // The client sees the same, except a server window it did not ask to limit (the server may compress with a
        // smaller window than the client's 15 bits without saying so).
        let seen = DeflateParams {
            server_max_window_bits: o.server_max_window_bits.map_or(15, |b| b.min(12)),
            ..p
        };
        assert_eq!(parse_response(&resp), Ok(seen), "{resp}");
    }
}

#[test]
fn exact_responses() {
    let cases: &[(&str, Compression, &str)] = &[
        (
            "permessage-deflate",
            SHARED,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            SHARED,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            SHARED,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
        ),
        ("permessage-deflate", DEDICATED, "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits",
            DEDICATED,
            "permessage-deflate; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits=9",
            DEDICATED,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            DEDICATED,
            "permessage-deflate; server_no_context_takeover",
        ),
        // An 8-bit server window is accepted (compressed with a 9-bit compressor whose matches stay within 250 bytes).
        (
            "permessage-deflate; server_max_window_bits=8",
            SHARED,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8",
        ),
    ];
    for (offer, policy, want) in cases {
        assert_eq!(
            response(&[offer], *policy).as_deref(),
            Some(*want),
            "{offer}"
        );
    }
}

#[test]
fn off_ignores_every_offer() {
    for (s, _) in all_offers() {
        assert_eq!(response(&[&s], Compression::Off), None);
    }
}

#[test]
fn malformed_and_repeated_parameters_are_declined() {
    let bad: &[(&str, Decline)] = &[
        ("permessage-deflate; foo", Decline::UnknownParameter),
        ("permessage-deflate; foo=1", Decline::UnknownParameter),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            Decline::RepeatedParameter,
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            Decline::RepeatedParameter,
        ),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            Decline::RepeatedParameter,
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            Decline::RepeatedParameter,
        ),
        (
            "permessage-deflate; server_max_window_bits",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=7",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=010",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=+9",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"\"",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; client_max_window_bits=0",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; client_max_window_bits=\"16\"",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; client_no_context_takeover=\"\"",
            Decline::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=1 0",
            Decline::Syntax,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10",
            Decline::Syntax,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"x",
            Decline::Syntax,
        ),
        ("permessage-deflate;", Decline::Syntax),
        (
            "permessage-deflate;; client_max_window_bits",
            Decline::Syntax,
        ),
        ("permessage-deflate; =10", Decline::Syntax),
        ("x-webkit-deflate-frame", Decline::OtherExtension),
        ("permessage-deflat", Decline::OtherExtension),
    ];
    for (offer, why) in bad {
        assert_eq!(parse_offer(offer), Err(*why), "{offer}");
        for policy in [SHARED, DEDICATED] {
            assert_eq!(response(&[offer], policy), None, "{offer}");
        }
    }
}

#[test]
fn quoted_values_and_case() {
    let o = parse_offer(
        "Permessage-Deflate ; Server_Max_Window_Bits = \"10\" ; client_max_window_bits=\"1\\5\"",
    )
    .unwrap();
    assert_eq!(o.server_max_window_bits, Some(10));
    assert_eq!(o.client_max_window_bits, Some(Some(15)));
}

#[test]
fn a_declined_offer_falls_through_to_the_next() {
    // One header with several offers, the first two unacceptable.
    let v = "permessage-deflate; foo, permessage-deflate; server_max_window_bits=20, \
             permessage-deflate; server_max_window_bits=11";
    let (resp, p) = answer(&[v], SHARED).unwrap();
    assert_eq!(p.server_max_window_bits, 11);
    assert!(resp.ends_with("server_max_window_bits=11"));
    // Offers spread over several headers (as the handshake hands them: one entry per offer).
    let (_, p) = answer(
        &[
            "x-foo; a=\"1,2\"",
            "permessage-deflate; bad",
            "permessage-deflate; server_max_window_bits=9",
        ],
        SHARED,
    )
    .unwrap();
    assert_eq!(p.server_max_window_bits, 9);
    // Nothing acceptable: no extension (never a failed handshake).
    assert_eq!(
        response(&["permessage-deflate; bad", "x-foo"], SHARED),
        None
    );
    assert_eq!(response(&[], SHARED), None);
}

#[test]
fn commas_inside_quotes_do_not_split() {
    let v: Vec<&str> = split_offers("a; x=\"1,2\" , b,,  c ;y").collect();
    assert_eq!(v, ["a; x=\"1,2\"", "b", "c ;y"]);
}

#[test]
fn client_side() {
    assert_eq!(
        parse_offer(CLIENT_OFFER).unwrap().client_max_window_bits,
        Some(None)
    );
    let p =
        parse_response("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
            .unwrap();
    assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (15, 10)
    );
    // A response must name one configuration with values everywhere.
    assert!(parse_response("permessage-deflate; client_max_window_bits").is_err());
    assert!(parse_response("permessage-deflate, permessage-deflate").is_err());
    assert!(parse_response("permessage-deflate; x").is_err());
    assert!(parse_response("").is_err());
}

#[test]
fn policy_validation() {
    assert!(Compression::Dedicated { window_bits: 8 }
        .validate()
        .is_err());
    assert!(Compression::Dedicated { window_bits: 16 }
        .validate()
        .is_err());
    assert!(Compression::Dedicated { window_bits: 9 }.validate().is_ok());
    assert!(Compression::Shared.validate().is_ok());
    assert_eq!(Compression::default(), Compression::Shared);
}
