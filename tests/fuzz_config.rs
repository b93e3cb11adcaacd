//! Replays the `config` fuzz target (`fuzz/fuzz_targets/config.rs`) on stable: its saved
//! corpus, a few hundred fixed seeds, and hand-picked edge configurations, through the same
//! logic (`tests/support/config_fuzz.rs`). See that file for what is asserted.

#[path = "support/config_fuzz.rs"]
mod config_fuzz;
#[path = "support/seeds.rs"]
mod seeds;

use std::time::Duration;

use config_fuzz::{Cap, Commit, Dur, FuzzConfig, Input, Op, Pos, Start};
use flushwatch::{Config, FlushTracker};
use seeds::seeded_bytes;

#[test]
fn fixed_seeds() {
    let mut valid = 0;
    for seed in 0..300u64 {
        let bytes = seeded_bytes(seed ^ 0xC0F1_6000, 64 + (seed as usize % 9) * 48);
        if let Some(input) = Input::decode(&bytes) {
            valid += usize::from(!input.config.scan_interval.get().is_zero());
            config_fuzz::run(&input);
        }
    }
    assert!(
        valid > 100,
        "the seeds reach valid configurations only {valid} times"
    );
}

#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("missing corpus directory {}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        config_fuzz::run_bytes(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "the saved corpus is empty");
}

fn edge(config: FuzzConfig) -> Input {
    use Op::*;
    Input {
        config,
        ops: vec![
            Register(0),
            Register(1),
            Track {
                commit: Commit::Next(0),
                writers: vec![0, 1],
            },
            TrackKeys {
                commit: Commit::Max,
                keys: vec![0, 1, 5],
            },
            Track {
                commit: Commit::Zero,
                writers: vec![0],
            },
            Track {
                commit: Commit::Same,
                writers: vec![0],
            },
            Flushed {
                writer: 0,
                pos: Pos::Max,
            },
            FlushedPrevious { writer: 1 },
            Advance(Dur::Max),
            Scan,
            Scan,
            Defer(1),
            Rewind(Dur::Max),
            Scan,
            Status(0),
            Status(1),
            Query,
            TrackStale {
                commit: Commit::Raw(3),
                ids: vec![0, 1],
            },
            Remove(0),
            Drop(0),
            Register(0),
            Scan,
        ],
    }
}

#[test]
fn edge_configurations() {
    let durs = [Dur::Zero, Dur::Nanos(1), Dur::Secs(60), Dur::Max];
    let starts = [Start::Zero, Start::Small(7), Start::NearMax(1), Start::Max];
    let caps = [Cap::Zero, Cap::Small(1), Cap::Medium(4096)];
    for &grace in &durs {
        for &challenge in &durs {
            for &start_at in &starts {
                for &event_capacity in &caps {
                    for report in [false, true] {
                        config_fuzz::run(&edge(FuzzConfig {
                            grace,
                            challenge,
                            scan_interval: Dur::Millis(100),
                            start_at,
                            event_capacity,
                            lag_window: 1,
                            report,
                        }));
                    }
                }
            }
        }
    }
    for scan_interval in [Dur::Zero, Dur::Nanos(1), Dur::Secs(u32::MAX)] {
        let mut input = edge(FuzzConfig {
            grace: Dur::Zero,
            challenge: Dur::Zero,
            scan_interval,
            start_at: Start::Zero,
            event_capacity: Cap::Small(2),
            lag_window: 0,
            report: false,
        });
        input.ops.insert(0, Op::SpawnScanner);
        input.ops.insert(5, Op::SpawnScanner);
        input.ops.insert(9, Op::StopScanner);
        input.ops.insert(10, Op::SpawnScanner);
        config_fuzz::run(&input);
    }
}

// Regressions for the two bugs this target found (issue 4): both values are now bounded by
// flushwatch itself (the event queue is clamped to 2^20; the scanner's schedule saturates).

/// A huge `event_capacity` used to pass validation and then make `FlushTracker::new` panic
/// ("bounded channel capacity is too large") or abort on the allocation of the queue.
#[test]
fn huge_event_capacity_is_accepted_or_rejected_cleanly() {
    let r = std::panic::catch_unwind(|| {
        FlushTracker::<u8>::new(Config::default().event_capacity(usize::MAX)).map(|_| ())
    });
    assert!(
        matches!(r, Ok(Ok(()))),
        "event_capacity(usize::MAX): {:?}",
        r.map_err(|_| "panicked")
    );
}

/// A huge `scan_interval` used to make the scanner thread panic after its first scan
/// (`Instant` overflow): detection stopped silently and the scanner could never be restarted
/// (`ScannerRunning` forever).
#[test]
fn huge_scan_interval_scanner_stops_and_restarts() {
    let tracker = FlushTracker::<u8>::new(Config::default().scan_interval(Duration::MAX)).unwrap();
    let scanner = tracker.spawn_scanner().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tracker.stats().scans == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    // "Never again until stopped": a past deadline would make it scan without a pause.
    assert_eq!(tracker.stats().scans, 1, "one scan, then none");
    drop(scanner);
    assert!(
        tracker.spawn_scanner().is_ok(),
        "the scanner thread died: it cannot be restarted"
    );
}
