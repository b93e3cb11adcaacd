//! Arbitrary `Config` values (zero and huge durations, `start_at` at 0 and `u64::MAX`, zero
//! and huge capacities, both policies) and a short arbitrary operation sequence: no panic, and
//! only the errors `docs/contract.md` documents.
//!
//! The logic is `tests/support/config_fuzz.rs`, shared with `tests/fuzz_config.rs`, which
//! replays this target's corpus (`fuzz/corpus/config/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/config_fuzz.rs"]
mod config_fuzz;

fuzz_target!(|data: &[u8]| {
    config_fuzz::run_bytes(data);
});
