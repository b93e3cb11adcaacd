//! flushwatch inside a downstream crate's own loom model, written the way a user would.
//!
//! A pipeline crate that embeds flushwatch model-checks its own producer/consumer protocol.
//! It builds its tests with `RUSTFLAGS="--cfg loom"`; the flag reaches every crate of the
//! build, so flushwatch's atomics, locks and threads come from loom as well (flushwatch routes
//! them through its `sync` shim), and loom explores flushwatch's internals together with the
//! user's code. Requirements for the user:
//!
//! - depend on the same loom minor version as flushwatch (`loom = "0.7"`), so cargo builds one
//!   loom runtime: two would not see each other's threads;
//! - create the tracker inside the model closure (loom objects live for one execution);
//! - use a mock clock, `flushwatch::Clock::mock()`, and advance it only outside the
//!   racing threads: time is not modelled, and a real clock makes executions differ;
//! - a `spawn_scanner` thread scans once and then waits for its stop (under loom a condvar
//!   timeout is not modelled); call `scan()` directly to drive scans.
//!
//! The user's producer hands each consumer the commit and `Tracked::previous` with it; the
//! consumer reports `previous` once it has written everything before the commit (before it
//! starts the commit's own writes) and the commit once that is durable. Positions are sparse
//! (commit end LSNs): the acknowledged position must be a commit or `start_at`, never a
//! position in between.
//!
//! Bound: preemption bound 2 unless `LOOM_MAX_PREEMPTIONS` says otherwise. The user's protocol is two messages through a loom channel; two
//! preemptions already put each report anywhere relative to the producer's next `track` and
//! to the scan.
#![cfg(loom)]

use flushwatch::{Clock, Config, FlushTracker};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{mpsc, Arc};
use loom::thread;

#[test]
fn acknowledged_position_is_durable() {
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` (read by `Builder::new`) wins, so `scripts/loom deep` deepens it.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(|| {
        let (clock, _mock) = Clock::mock();
        let tracker = FlushTracker::new(Config::default().clock(clock).event_capacity(8)).unwrap();
        let writer = tracker.register("orders").unwrap();
        let id = writer.id();
        // What our consumer has written durably: the ground truth the acknowledgement must
        // never pass.
        let durable = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<(u64, u64)>();

        let producer = {
            let tracker = tracker.clone();
            thread::spawn(move || {
                for commit in [0x1A0, 0x1F8] {
                    let tracked = tracker.track(commit, &[id]).unwrap();
                    tx.send((commit, tracked.previous)).unwrap();
                }
            })
        };
        let consumer = {
            let durable = durable.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let (commit, previous) = rx.recv().unwrap();
                    // Everything before `commit` is durable: say so before writing it.
                    writer.flushed(previous);
                    // ... write and fsync `commit` ...
                    // Release: pairs with the acknowledging thread's Acquire load.
                    durable.store(commit, Ordering::Release);
                    writer.flushed(commit);
                }
            })
        };

        // The acknowledging thread: what it would send to Postgres must be durable.
        tracker.scan();
        let ack = tracker.watermark();
        // Acquire: pairs with the consumer's Release store.
        let written = durable.load(Ordering::Acquire);
        // start_at or a commit, never in between (acknowledging a position inside a commit
        // acknowledges part of it); from the first commit on, it must be written.
        assert!(
            [0, 0x1A0, 0x1F8].contains(&ack),
            "acknowledged {ack:#x}: not a commit"
        );
        assert!(
            ack == 0 || written >= ack,
            "acknowledged {ack:#x}, durable {written:#x}"
        );

        producer.join().unwrap();
        consumer.join().unwrap();
        tracker.scan();
        assert_eq!(tracker.watermark(), 0x1F8);
    });
}
