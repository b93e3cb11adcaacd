//! Feature `metrics`: the background scanner records through the global recorder (its own
//! process: installing a global recorder is once per process).
#![cfg(feature = "metrics")]

use std::time::{Duration, Instant};

use flushwatch::{Config, FlushTracker};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn the_background_scanner_records_every_scan() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    recorder.install().unwrap();

    let tracker =
        FlushTracker::new(Config::default().scan_interval(Duration::from_millis(2))).unwrap();
    let w = tracker.register("orders").unwrap();
    tracker.track(0x1A0, &[w.id()]).unwrap();
    tracker.track(0x1F8, &[]).unwrap();
    let scanner = tracker.spawn_scanner().unwrap();
    w.flushed(0x1A0);
    assert_eq!(
        tracker.wait_watermark(0x1F8, Duration::from_secs(10)),
        0x1F8
    );
    // The publication precedes the recording: wait for one more whole scan.
    let scans = tracker.stats().scans;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracker.stats().scans < scans + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(scanner); // joins: no scan runs after this
    let scans = tracker.stats().scans;

    let mut watermark = None;
    let mut histogram = 0;
    for (ck, _, _, value) in snapshots.snapshot().into_vec() {
        match (ck.key().name(), value) {
            ("flushwatch_watermark", DebugValue::Gauge(g)) => watermark = Some(g.into_inner()),
            ("flushwatch_scan_seconds", DebugValue::Histogram(h)) => histogram = h.len(),
            _ => {}
        }
    }
    assert_eq!(watermark, Some(0x1F8 as f64));
    assert_eq!(histogram as u64, scans, "one sample per scan");
}
