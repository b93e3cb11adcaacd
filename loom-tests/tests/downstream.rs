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
//! - use a mock clock, `flushwatch::quanta::Clock::mock()`, and advance it only outside the
//!   racing threads: time is not modelled, and a real clock makes executions differ;
//! - a `spawn_scanner` thread scans once and then waits for its stop (under loom a condvar
//!   timeout is not modelled); call `scan()` directly to drive scans.
//!
//! Bound: preemption bound 2. The user's protocol is two messages through a loom channel; two
//! preemptions already put each report anywhere relative to the producer's next `track` and
//! to the scan.
#![cfg(loom)]

use flushwatch::{quanta, Config, FlushTracker};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::{mpsc, Arc};
use loom::thread;

#[test]
fn acknowledged_position_is_durable() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let (clock, _mock) = quanta::Clock::mock();
        let tracker = FlushTracker::new(Config::default().clock(clock).event_capacity(8)).unwrap();
        let writer = tracker.register("orders").unwrap();
        let id = writer.id();
        // What our consumer has written durably: the ground truth the acknowledgement must
        // never pass.
        let durable = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<u64>();

        let producer = {
            let tracker = tracker.clone();
            thread::spawn(move || {
                for commit in [10, 11] {
                    tracker.track(commit, &[id]).unwrap();
                    tx.send(commit).unwrap();
                }
            })
        };
        let consumer = {
            let durable = durable.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let commit = rx.recv().unwrap();
                    // ... write and fsync `commit` ...
                    // Release: pairs with the acknowledging thread's Acquire load.
                    durable.store(commit, Ordering::Release);
                    writer.flushed(commit);
                }
            })
        };

        // The acknowledging thread: what it would send to Postgres must be durable.
        let ack = tracker.scan().watermark;
        // Acquire: pairs with the consumer's Release store.
        let written = durable.load(Ordering::Acquire);
        // Below 10 there is no transaction of ours; from 10 on, every acknowledged commit must
        // be written.
        assert!(
            ack < 10 || written >= ack,
            "acknowledged {ack}, durable {written}"
        );

        producer.join().unwrap();
        consumer.join().unwrap();
        assert_eq!(tracker.scan().watermark, 11);
    });
}
