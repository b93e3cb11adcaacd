//! Race: `track` publishing `last_seen` against a `scan` (a scan between the slot updates and
//! the publication).
//!
//! `a` is caught up at 3, `b` at 4, `last_seen` is 4 and nothing has been scanned yet. One
//! thread runs `track(6, [a, b])`, which raises both to 5 and makes them pending; the other
//! runs `scan()`. The scan may run before, during or after the track.
//!
//! Checked in every interleaving:
//! - safety: the published watermark never passes 5 (commit 6 is durable nowhere). A scan
//!   that sees the new `last_seen` with an old `sent` (caught up) would publish 6;
//! - exactness: the scan publishes the watermark of the state before the track (4) or after it
//!   (5), never less: a scan that sees a new `sent` with an old raise would publish 3 although
//!   nothing durable was ever below 4;
//! - the scan's own view is consistent: when it read `last_seen == 6` it saw both shapes
//!   pending at 5.
//!
//! Bound: preemption bound 3, enough for the scan to run between any two steps of the track
//! (which touches two slots and then `last_seen`) and vice versa; loom explores every value
//! each `Acquire`/`Relaxed` load may return regardless of the bound.
#![cfg(loom)]

use flushwatch_loom_tests::{explore, safe_bound, tracker, ShapeFacts};
use loom::thread;

#[test]
fn scan_between_slot_updates_and_last_seen() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(3, &[a.id()]).unwrap();
        a.flushed(3);
        t.track(4, &[b.id()]).unwrap();
        b.flushed(4);
        let ids = [a.id(), b.id()];

        let producer = {
            let t = t.clone();
            thread::spawn(move || {
                let tracked = t.track(6, &ids).unwrap();
                assert_eq!((tracked.tracked, tracked.skipped), (2, 0));
            })
        };
        let r = t.scan();
        producer.join().unwrap();

        let bound = safe_bound(&[
            ShapeFacts {
                tracked: &[3, 6],
                durable: 3,
                live: true,
            },
            ShapeFacts {
                tracked: &[4, 6],
                durable: 4,
                live: true,
            },
        ]);
        assert_eq!(bound, 5);
        assert!(r.watermark <= bound, "unsafe: {} > {bound}", r.watermark);
        assert!(
            r.watermark >= 4,
            "the watermark before the track was 4, after it 5; the scan published {}",
            r.watermark
        );
        match r.last_seen {
            6 => assert_eq!((r.watermark, r.pending), (5, 2)),
            4 => assert_eq!(r.watermark, 4),
            other => panic!("last_seen {other}"),
        }

        // After both: exactly 5, then 6 once both report.
        assert_eq!(t.scan().watermark, 5);
        a.flushed(6);
        b.flushed(6);
        assert_eq!(t.scan().watermark, 6);
    });
}
