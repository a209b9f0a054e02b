//! The opening handshake on arbitrary bytes: server `parse_request` + `check_head` + `validate_upgrade` and client
//! `parse_response` never panic, `check_head`'s body length agrees with the framing headers it accepted, and feeding the bytes in two pieces (a prefix first, as a server reading twice would) agrees with
//! feeding them whole: a prefix that already gives an answer (request or error) gives the same one as the whole.
//!
//! Input: `split cap data...` (`cap` >= 128 selects a small head cap to reach the 431 path).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::handshake::{
    check_head, parse_request, validate_upgrade, BodyLength, ClientHandshake, HttpError, Request,
    DEFAULT_MAX_REQUEST_SIZE,
};

type Parsed = Result<Option<(String, String, Vec<(String, String)>, u8, usize)>, HttpError>;

fn server(buf: &[u8], cap: usize) -> Parsed {
    let r = parse_request(buf, cap)?;
    Ok(r.map(|(req, n): (Request, usize)| {
        assert!(n <= buf.len() && n <= cap, "consumed {n} of {} (cap {cap})", buf.len());
        assert!(req.headers.iter().all(|(name, _)| !name.bytes().any(|b| b.is_ascii_uppercase())));
        let lengths = req.headers_named("content-length").count();
        let codings = req.headers_named("transfer-encoding").count();
        match check_head(&req) {
            Ok(body) => {
                if req.version == 1 {
                    assert_eq!(req.headers_named("host").count(), 1);
                }
                match body {
                    BodyLength::None => assert_eq!((lengths, codings), (0, 0)),
                    BodyLength::Fixed(n) => {
                        assert_eq!(codings, 0);
                        for v in req.headers_named("content-length") {
                            assert!(v.split(',').all(|e| e.trim().parse::<u64>() == Ok(n)), "{v:?} vs {n}");
                        }
                    }
                    BodyLength::Chunked => assert_eq!((lengths, req.version), (0, 1)),
                }
            }
            Err(e) => assert!(matches!(e.status, 400 | 501), "{e:?}"),
        }
        match validate_upgrade(&req) {
            Ok(up) => {
                assert_eq!(up.accept.len(), 28);
                assert!(up.protocols.iter().all(|p| !p.is_empty() && !p.contains(',')));
            }
            Err(rej) => assert!(matches!(rej.status, 400 | 405 | 426 | 501), "{rej:?}"),
        }
        (req.method, req.path, req.headers, req.version, n)
    }))
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let data = &input[2..];
    let split = input[0] as usize % (data.len() + 1);
    let cap = if input[1] < 128 { DEFAULT_MAX_REQUEST_SIZE } else { (input[1] as usize - 128) * 8 };

    let whole = server(data, cap);
    if let Err(e) = &whole {
        assert!(matches!(e.status, 400 | 431), "{e:?}");
    }
    let first = server(&data[..split], cap);
    if !matches!(first, Ok(None)) {
        assert_eq!(first, whole, "prefix of {split} bytes disagrees with the whole");
    }

    let client = ClientHandshake::new(*b"the sample nonce");
    let whole = client.parse_response_details(data);
    if let Ok(Some(r)) = &whole {
        assert!(r.consumed <= data.len());
    }
    let first = client.parse_response_details(&data[..split]);
    if !matches!(first, Ok(None)) {
        assert_eq!(first, whole, "client: prefix of {split} bytes disagrees with the whole");
    }
});
