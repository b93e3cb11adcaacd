//! Loom models of flushwatch's race windows live in `tests/`; this crate has no code of its own.
//!
//! Run them with `scripts/loom` (or `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! cargo test -p flushwatch-loom-tests --release`).
