//! The broker envelope on arbitrary bytes (what any publisher on a shared Redis can send): `decode` never panics,
//! and whatever it accepts re-encodes to exactly the same bytes (one meaning per input: no two inputs look like the
//! same message, so origin and sequence checks cannot be fooled by an alternative encoding). Also the other way:
//! a header built from the input round-trips through `encode` and `decode`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::broker::envelope::{decode, encode, EnvelopeError, Header, Kind, HEADER_LEN};

fuzz_target!(|input: &[u8]| {
    match decode(input) {
        Ok((h, payload)) => {
            let mut again = Vec::new();
            encode(&h, payload, &mut again);
            assert_eq!(again, input, "decode accepted bytes that encode differently");
            if h.is_text {
                assert!(std::str::from_utf8(payload).is_ok());
            }
        }
        Err(EnvelopeError::Truncated) => assert!(input.len() < HEADER_LEN),
        Err(_) => assert!(input.len() >= HEADER_LEN),
    }

    if input.len() >= 21 {
        let u64_at = |i: usize| u64::from_le_bytes(input[i..i + 8].try_into().unwrap());
        let h = Header {
            kind: if input[0] & 1 == 0 { Kind::Data } else { Kind::Probe },
            is_text: input[0] & 2 != 0,
            origin: u64_at(1),
            epoch: u32::from_le_bytes(input[9..13].try_into().unwrap()),
            seq: u64_at(13),
        };
        let payload = &input[21..];
        let mut buf = Vec::new();
        encode(&h, payload, &mut buf);
        match decode(&buf) {
            Ok(got) => assert_eq!(got, (h, payload)),
            Err(e) => {
                assert_eq!(e, EnvelopeError::BadUtf8);
                assert!(h.is_text && std::str::from_utf8(payload).is_err());
            }
        }
    }
});
