//! Every mask kernel against the scalar reference: all lengths 0..=300 x buffer offsets 0..64 x phases 0..4, large
//! sizes, and piecewise unmasking (a frame split over reads) against whole.

use proptest::prelude::*;
use ringws::mask::{apply_mask, apply_mask_scalar, kernels, Kernel};

const KEYS: [[u8; 4]; 3] = [
    [0x37, 0xfa, 0x21, 0x3d],
    [0xff, 0x00, 0xff, 0x00],
    [1, 2, 3, 4],
];

/// The kernels under test, plus the dispatched entry point.
fn candidates() -> Vec<(&'static str, Kernel)> {
    let mut v = kernels::all();
    v.push(("apply_mask", apply_mask as Kernel));
    v
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Mask `buf[off..off + len]` of a larger allocation with `f` and with the reference; the bytes around the window
/// must be untouched (no kernel writes outside its slice).
fn check(
    name: &str,
    f: Kernel,
    key: [u8; 4],
    phase: usize,
    off: usize,
    len: usize,
    backing: &[u8],
) {
    let mut got = backing.to_vec();
    let mut want = backing.to_vec();
    f(key, phase, &mut got[off..off + len]);
    apply_mask_scalar(key, phase, &mut want[off..off + len]);
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
        panic!("{name}: key={key:?} phase={phase} off={off} len={len}: first difference at byte {first}");
    }
}

#[test]
fn reports_the_kernels_present() {
    let names: Vec<_> = kernels::all().iter().map(|(n, _)| *n).collect();
    eprintln!(
        "kernels on this CPU: {names:?}; dispatched: {}",
        kernels::selected()
    );
    assert!(names.contains(&"scalar") && names.contains(&"word"));
    #[cfg(target_arch = "x86_64")]
    assert!(names.contains(&"sse2"));
}

#[test]
fn every_length_offset_phase() {
    // The allocation is 64-byte aligned or not depending on the allocator; offsets 0..64 cover every alignment class
    // for every vector width either way.
    let backing = pattern(300 + 64 + 64, 7);
    for (name, f) in candidates() {
        for len in 0..=300 {
            for off in 0..64 {
                for phase in 0..4 {
                    check(name, f, KEYS[0], phase, off, len, &backing);
                }
            }
        }
    }
}

#[test]
fn other_keys_and_large_phases() {
    let backing = pattern(200, 99);
    for (name, f) in candidates() {
        for key in KEYS {
            for len in [
                0, 1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130,
            ] {
                for phase in [0, 1, 2, 3, 4, 5, 1001, usize::MAX] {
                    check(name, f, key, phase, 5, len, &backing);
                }
            }
        }
    }
}

#[test]
fn large_sizes() {
    let backing = pattern(1 << 20 | 200, 3);
    for (name, f) in candidates() {
        for len in [4096, 4096 + 1, 16384, 16384 + 7, 65536 + 13, 1 << 20] {
            for (off, phase) in [(0, 0), (1, 3), (3, 1), (64, 2), (33, 0)] {
                check(name, f, KEYS[0], phase, off, len, &backing);
            }
        }
    }
}

#[test]
fn masking_twice_is_identity() {
    let orig = pattern(1000, 1);
    for (name, f) in candidates() {
        let mut b = orig.clone();
        f(KEYS[1], 2, &mut b);
        f(KEYS[1], 2, &mut b);
        assert_eq!(b, orig, "{name}");
    }
}

proptest! {
    #[test]
    fn piecewise_equals_whole(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        key in any::<[u8; 4]>(),
        phase0 in 0usize..4,
        cuts in proptest::collection::vec(0usize..3000, 0..12),
    ) {
        let mut whole = data.clone();
        apply_mask(key, phase0, &mut whole);
        let mut reference = data.clone();
        apply_mask_scalar(key, phase0, &mut reference);
        prop_assert_eq!(&whole, &reference);

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        for (name, f) in candidates() {
            let mut pieces = data.clone();
            for w in cuts.windows(2) {
                // The phase advances with the bytes already unmasked, as in a frame split over reads.
                f(key, phase0 + w[0], &mut pieces[w[0]..w[1]]);
            }
            prop_assert_eq!(&pieces, &whole, "{}", name);
        }
    }
}
