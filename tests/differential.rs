//! Differential tests: the lock-free tracker against the sequential model (`src/model.rs`),
//! step by step, with a mock clock, and both against the harness's own safety oracle (see
//! `support/ops.rs`).
//!
//! - `proptest_matches_model`: random byte strings decoded into operation sequences
//!   (the same decoder as the cargo-fuzz target).
//! - `fixed_seeds_match_model`: a few hundred deterministic seeds, always the same.
//! - `fuzz_corpus_replays`: every input saved under `fuzz/corpus/differential/`.

mod support;

use proptest::prelude::*;
use support::ops::{Harness, Run};
use support::seeds::seeded_bytes;

proptest! {
    // 512 cases unless `PROPTEST_CASES` asks for more (a long run) or fewer (Miri).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
    ))]
    #[test]
    fn proptest_matches_model(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        Harness::run(&Run::decode(&bytes));
    }
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
        ("ids of another tracker", c.foreign_skipped),
        ("partial reports of previous(c)", c.partial_reports),
        ("events left unread across steps", c.unread_kept),
        ("informational events dropped at capacity", c.dropped),
        (
            "a second Stalled withheld while the first is unread",
            c.stalls_withheld,
        ),
        ("stalls on coarse ticks", c.coarse_stalls),
        ("stalls on the second page", c.paged_stalls),
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
