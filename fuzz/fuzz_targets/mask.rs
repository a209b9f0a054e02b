//! Differential fuzzing of every mask kernel (and the dispatched `apply_mask`) against the scalar reference, for
//! arbitrary key, phase, buffer offset (alignment) and data, whole and split in two pieces.
//!
//! Input: `key[4] phase off split data...`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws::mask::{apply_mask, apply_mask_scalar, kernels, Kernel};

fuzz_target!(|input: &[u8]| {
    if input.len() < 7 {
        return;
    }
    let key = [input[0], input[1], input[2], input[3]];
    let phase = input[4] as usize;
    let off = (input[5] & 63) as usize;
    let data = &input[7..];
    let split = if data.is_empty() { 0 } else { input[6] as usize % (data.len() + 1) };

    // The slice sits `off` bytes into a larger buffer with sentinels around it: a kernel writing outside it fails.
    let mut backing = vec![0xA5u8; off + data.len() + 64];
    backing[off..off + data.len()].copy_from_slice(data);
    let mut want = backing.clone();
    apply_mask_scalar(key, phase, &mut want[off..off + data.len()]);

    let mut all: Vec<(&str, Kernel)> = kernels::all();
    all.push(("apply_mask", apply_mask as Kernel));
    for (name, f) in all {
        let mut got = backing.clone();
        f(key, phase, &mut got[off..off + data.len()]);
        assert!(got == want, "{name} differs from the reference (whole)");

        let mut got = backing.clone();
        f(key, phase, &mut got[off..off + split]);
        f(key, phase + split, &mut got[off + split..off + data.len()]);
        assert!(got == want, "{name} differs from the reference (split at {split})");
    }
});
