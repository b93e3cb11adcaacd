//! Differential tests: the lock-free tracker against the sequential model (`src/model.rs`),
//! step by step, with a mock clock.
//!
//! - `proptest_matches_model`: random byte strings decoded into operation sequences
//!   (the same decoder as the cargo-fuzz target).
//! - `fixed_seeds_match_model`: a few hundred deterministic seeds, always the same.
//! - `fuzz_corpus_replays`: every input saved under `fuzz/corpus/differential/`.

mod support;

use proptest::prelude::*;
use support::ops::{Harness, Run};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn proptest_matches_model(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        Harness::run(&Run::decode(&bytes));
    }
}

/// A tiny deterministic generator for the fixed seeds (splitmix64).
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[test]
fn fixed_seeds_match_model() {
    let mut total = support::ops::Coverage::default();
    for seed in 0..300u64 {
        let bytes = seeded_bytes(seed, 512 + (seed as usize % 7) * 256);
        total.add(&Harness::run(&Run::decode(&bytes)));
    }
    // The seeds must reach every rule, or the comparison above proves little.
    println!("{total:?}");
    let c = total;
    for (name, n) in [
        ("advanced", c.advanced),
        ("suspected", c.suspected),
        ("evicted", c.evicted),
        ("stalled under Report", c.stalled_reported),
        ("writer down, panicked", c.down_panicked),
        ("writer down, dropped pending", c.down_pending),
        ("lagging", c.lagging),
        ("skipped ids", c.skipped),
        ("track errors", c.track_errors),
        ("defer answering a challenge", c.defer_answered),
    ] {
        assert!(
            n >= 3,
            "the fixed seeds reached '{name}' only {n} times: {c:?}"
        );
    }
}

#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/differential");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("missing corpus directory {}", dir.display());
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        Harness::run(&Run::decode(&bytes));
        n += 1;
    }
    assert!(n > 0, "the saved corpus is empty");
}
