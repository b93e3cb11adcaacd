//! Races on the pending set (`src/pending.rs`): the slots a scan visits. `track` lists every
//! slot it records a commit for (producer lock); a scan takes the listed slots after reading
//! `last_seen`, visits only its set, and at its end unlists the slots it saw caught up or
//! ended, each only after proving under the producer lock that it still is. A pending shape
//! missing from the set would not count: the watermark would pass commits it never made
//! durable.
//!
//! Sparse positions (start_at 0, commits 10, 25, 40).
//!
//! - `prune_vs_track`: `a` was sent 10, is in the scanner's set (a scan saw it pending) and has
//!   just caught up (`flushed(10)`). One thread runs `track(25, [a])`, the other scans. The
//!   scan may see `a` caught up and then, before it unlists it, the track makes `a` pending
//!   again (finding it still listed, so not listing it again): the unlist must then see, under
//!   the producer lock, that `a` is pending and keep it. Checked: the racing scan is safe and
//!   exact (10); every later scan sees `a` pending at 10 until it reports 25 (never 25 while
//!   commit 25 is not durable); after `a` catches up and is unlisted, a new commit lists it
//!   again.
//! - `reuse_vs_prune`: `a` (sent 10, made nothing durable) is in the set. One thread drops
//!   `a`'s writer, registers `c` (which reuses `a`'s slot, still in the set and still listed)
//!   and runs `track(25, [c])`; the other scans. The scan may see the slot free (and prune it)
//!   or see `c` in it at any stage. Checked: the racing scan is safe and publishes 0 (`a`
//!   counted) or 10 (`c` pending at 10, or not tracked yet), never 25; every later scan
//!   counts `c` pending at 10 until it reports; exactly one `WriterDown` for `a`.
//! - The gather half (a scan taking the slots a concurrent `track` listed, after reading
//!   `last_seen`) is `track_scan.rs`, `..._after_unlist`.
//!
//! Bound: preemption bound 3. Two threads each; `track` is a dozen loom steps under the
//! producer lock, the scan takes that lock twice (gather, prune) around a visit of a few loads
//! per slot; three preemptions put the track (or the drop, register and track) before,
//! between and after the scan's visit and its prune, and back. Loom explores every value each
//! load may return regardless of the bound.
#![cfg(loom)]

use flushwatch::{DownCause, Event};
use flushwatch_loom_tests::{assert_safe, drain, explore, tracker, ShapeFacts};
use loom::thread;

const POSITIONS: [u64; 4] = [0, 10, 25, 40];

#[test]
fn prune_vs_track() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        let r = t.scan(); // `a` joins the scanner's set
        assert_eq!((r.watermark, r.pending), (0, 1));
        a.flushed(10); // caught up, still in the set
        let a_id = a.id();

        let producer = {
            let t = t.clone();
            thread::spawn(move || t.track(25, &[a_id]).unwrap())
        };
        let r = t.scan();
        let tr = producer.join().unwrap();
        assert_eq!((tr.tracked, tr.previous), (1, 10));

        let a_facts = |durable| ShapeFacts {
            tracked: &[10, 25],
            durable,
            live: true,
        };
        assert_safe(r.watermark, &POSITIONS, &[a_facts(10)], &r);
        assert_eq!(
            r.watermark, 10,
            "before the track 10 (caught up), after it 10 (pending)"
        );

        // `a` is pending at 10 until it reports 25: every later scan must still visit it.
        for _ in 0..2 {
            let r = t.scan();
            assert_safe(r.watermark, &POSITIONS, &[a_facts(10)], &r);
            assert_eq!(
                (r.watermark, r.pending, r.pinned_by),
                (10, 1, Some("a")),
                "{r:?}"
            );
        }
        a.flushed(25);
        let r = t.scan(); // sees `a` caught up and unlists it
        assert_eq!((r.watermark, r.pending), (25, 0), "{r:?}");
        t.track(40, &[a_id]).unwrap(); // lists it again
        let r = t.scan();
        assert_eq!(
            (r.watermark, r.pending, r.pinned_by),
            (25, 1, Some("a")),
            "{r:?}"
        );
        a.flushed(40);
        assert_eq!(t.scan().watermark, 40);
    });
}

#[test]
fn reuse_vs_prune() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        let r = t.scan(); // `a`'s slot joins the scanner's set
        assert_eq!((r.watermark, r.pending), (0, 1));

        let reuser = {
            let t = t.clone();
            thread::spawn(move || {
                drop(a); // pending: WriterDown; the slot goes back to the free list
                let c = t.register("c").unwrap(); // reuses the slot
                let tr = t.track(25, &[c.id()]).unwrap();
                assert_eq!((tr.tracked, tr.previous), (1, 10));
                c
            })
        };
        let r = t.scan();
        let c = reuser.join().unwrap();

        // `a` counted (pending at 0) or not (dropped first); `c` pending at 10 or not yet
        // tracked (then `last_seen` is 10).
        assert!(r.watermark == 0 || r.watermark == 10, "{r:?}");
        assert_safe(
            r.watermark,
            &POSITIONS,
            &[
                ShapeFacts {
                    tracked: &[10],
                    durable: 0,
                    live: false,
                },
                ShapeFacts {
                    tracked: &[25],
                    durable: 0,
                    live: true,
                },
            ],
            &r,
        );

        // From now on `c` pends at 10 in every scan, however the racing scan pruned the slot.
        for _ in 0..2 {
            let r = t.scan();
            assert_eq!(
                (r.watermark, r.pending, r.pinned_by),
                (10, 1, Some("c")),
                "{r:?}"
            );
        }
        assert_eq!(
            drain(&t),
            vec![Event::WriterDown {
                key: "a",
                cause: DownCause::DroppedPending
            }]
        );
        c.flushed(25);
        let r = t.scan();
        assert_eq!((r.watermark, r.pending), (25, 0), "{r:?}");
    });
}
