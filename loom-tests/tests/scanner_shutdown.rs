//! Race: the background scanner's shutdown against the last tracker handle being dropped.
//!
//! The scan interval is an hour, so a spawned scanner thread scans once (its first grid point
//! is "now") and then waits on its stop signal; under loom `Condvar::wait_timeout` waits for a
//! notification, so only a stop ends the wait.
//!
//! - `last_handle_drop_stops_scanner`: the last `FlushTracker` handle is dropped on another
//!   thread while the `Scanner` guard lives on. The scanner thread must stop by itself: the
//!   main thread waits (yielding) until the event channel reports `Disconnected`, which
//!   happens only when the scanner thread has exited and dropped the shared state. A scanner
//!   that never stops makes loom report the spin (branch limit) or a deadlock.
//! - `guard_drop_vs_last_handle_drop`: the guard and the last handle are dropped on two
//!   threads at once. Both stop the same thread; the guard's join returns; nothing leaks
//!   (loom checks every `Arc` is freed at the end of each execution).
//! - `scanner_scans_while_writer_reports`: a spawned scanner's one scan races a report; the
//!   watermark it publishes is safe, and a restart after the guard is dropped works (a second
//!   `spawn_scanner` while one runs is `ScannerRunning`).
//!
//! Bound: preemption bound 2: three loom threads (main, a dropper, the scanner); the shutdown
//! protocol is one mutex-protected flag and one notification, so two preemptions already put
//! the stop before, during and after the scanner's wait; the scan itself is explored by the
//! other models.
#![cfg(loom)]

use flushwatch::Error;
use flushwatch::TryRecvError;
use flushwatch_loom_tests::{assert_safe, explore, tracker, ShapeFacts};
use loom::thread;

#[test]
fn last_handle_drop_stops_scanner() {
    explore(2, || {
        let (t, _mock) = tracker();
        let rx = t.events();
        let guard = t.spawn_scanner().unwrap();
        let dropper = thread::spawn(move || drop(t));
        dropper.join().unwrap();
        // The shared state (and with it the event sender) goes away only when the scanner
        // thread has exited.
        loop {
            match rx.try_recv() {
                Err(TryRecvError::Disconnected) => break,
                Ok(_) | Err(TryRecvError::Empty) => thread::yield_now(),
            }
        }
        drop(guard); // joins a thread that has already exited
    });
}

#[test]
fn guard_drop_vs_last_handle_drop() {
    explore(2, || {
        let (t, _mock) = tracker();
        let w = t.register("a").unwrap();
        let guard = t.spawn_scanner().unwrap();
        let dropper = thread::spawn(move || drop(t));
        drop(guard);
        dropper.join().unwrap();
        drop(w);
    });
}

#[test]
fn scanner_scans_while_writer_reports() {
    explore(2, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        t.track(25, &[a.id()]).unwrap(); // a: sent 25, flushed 0 (start_at)
        let guard = t.spawn_scanner().unwrap();
        assert_eq!(t.spawn_scanner().unwrap_err(), Error::ScannerRunning);
        let writer = thread::spawn(move || {
            a.flushed(10);
            a
        });
        let a = writer.join().unwrap();
        let during = t.watermark();
        drop(guard); // stops and joins
        let published = t.watermark();
        assert_safe(
            published,
            &[0, 10, 25],
            &[ShapeFacts {
                tracked: &[10, 25],
                durable: 10,
                live: true,
            }],
            &"the scanner's scan",
        );
        assert!(during <= published, "{during} {published}");
        // One grid point has passed: one scan, or none if the stop came before the thread ran.
        match t.stats().scans {
            0 => assert_eq!(published, 0),
            1 => assert!(published == 0 || published == 10, "{published}"),
            n => panic!("{n} scans at one grid point"),
        }
        let guard = t
            .spawn_scanner()
            .expect("a stopped scanner can be restarted");
        drop(guard);
        assert_eq!(t.scan().watermark, 10);
        drop(a);
    });
}
