//! Arbitrary operation sequences (register, track with sparse commits, track_keys, flushed of
//! received commits or their `previous`, ids of another tracker, defer, retire, drop, remove,
//! time steps, scan) through the lock-free tracker and the
//! sequential model (`flushwatch::model`), compared after every step.
//!
//! The decoder and the checker are `tests/support/ops.rs`, shared with `tests/differential.rs`,
//! which replays this target's corpus (`fuzz/corpus/differential/`) on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/ops.rs"]
mod ops;

fuzz_target!(|data: &[u8]| {
    ops::Harness::run_with(&ops::Run::decode(data), ops::Checks::Touched);
});
