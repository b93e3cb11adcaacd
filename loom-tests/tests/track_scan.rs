//! Race: `track` publishing `last_seen` against a `scan` (a scan between the slot updates and
//! the publication).
//!
//! Sparse positions: `a` was sent 10 and is caught up at 10 (its floor is still 0, the raise
//! of commit 10); `b` was sent 20 and is caught up at 20 (floor 10); `last_seen` is 20. One
//! thread runs `track(35, [a, b])`, which raises both to the previous commit, 20, makes them
//! pending and lists them in the pending set; the other runs `scan()`. The scan may run
//! before, during or after the track.
//!
//! - `scan_between_slot_updates_and_last_seen`: nothing has been scanned yet (both slots are
//!   still listed from their first commit).
//! - `..._after_unlist`: a scan saw both caught up and unlisted them, so the racing scan
//!   counts them only if it takes the slots the track lists again: it reads `last_seen` and
//!   then takes the listed slots under the producer lock, so a `last_seen` of 35 comes with
//!   both slots in its set (the gather half of `pending_set.rs`).
//!
//! Checked in every interleaving:
//! - safety: the published watermark is a tracked commit or start_at and never passes 20
//!   (commit 35 is durable nowhere). A scan that sees the new `last_seen` with an old `sent`
//!   (caught up) would publish 35;
//! - exactness: the watermark before the track and after it are both 20, and the scan
//!   publishes exactly that: a scan that sees a new `sent` with an old floor would publish 10
//!   (`a`'s report) although everything up to 20 was durable;
//! - the scan's own view is consistent: when it read `last_seen == 35` it saw both shapes
//!   pending at 20 (with the old `last_seen` it may see either slot old or new).
//!
//! Bound: preemption bound 3, enough for the scan to run between any two steps of the track
//! (which touches two slots and then `last_seen`) and vice versa; loom explores every value
//! each `Acquire`/`Relaxed` load may return regardless of the bound.
#![cfg(loom)]

use flushwatch_loom_tests::{assert_safe, explore, tracker, ShapeFacts};
use loom::thread;

const POSITIONS: [u64; 4] = [0, 10, 20, 35];

fn track_vs_scan(unlisted: bool) {
    explore(3, move || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(10, &[a.id()]).unwrap();
        a.flushed(10);
        t.track(20, &[b.id()]).unwrap();
        b.flushed(20);
        if unlisted {
            let r = t.scan();
            assert_eq!((r.watermark, r.pending), (20, 0));
        }
        let ids = [a.id(), b.id()];

        let producer = {
            let t = t.clone();
            thread::spawn(move || {
                let tracked = t.track(35, &ids).unwrap();
                assert_eq!(
                    (tracked.tracked, tracked.skipped, tracked.previous),
                    (2, 0, 20)
                );
            })
        };
        let r = t.scan();
        producer.join().unwrap();

        let bound = assert_safe(
            r.watermark,
            &POSITIONS,
            &[
                ShapeFacts {
                    tracked: &[10, 35],
                    durable: 10,
                    live: true,
                },
                ShapeFacts {
                    tracked: &[20, 35],
                    durable: 20,
                    live: true,
                },
            ],
            &r,
        );
        assert_eq!(bound, 20);
        assert_eq!(
            r.watermark, 20,
            "the watermark before the track and after it is 20: {r:?}"
        );
        match r.last_seen {
            35 => assert_eq!(r.pending, 2, "{r:?}"),
            // The slots may already show the new `sent` (raised to 20): pending or not, the
            // watermark is `last_seen`, 20.
            20 => assert!(r.pending <= 2, "{r:?}"),
            other => panic!("last_seen {other}"),
        }

        // After both: exactly 20, then 35 once both report.
        assert_eq!(t.scan().watermark, 20);
        a.flushed(35);
        b.flushed(35);
        assert_eq!(t.scan().watermark, 35);
        assert_eq!(t.watermark(), 35);
    });
}

#[test]
fn scan_between_slot_updates_and_last_seen() {
    track_vs_scan(false);
}

#[test]
fn scan_between_slot_updates_and_last_seen_after_unlist() {
    track_vs_scan(true);
}
