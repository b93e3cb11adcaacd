//! Feature `metrics`: exact values recorded by each scan, through `metrics-util`'s debugging
//! recorder set as the thread's local recorder; nothing recorded outside a scan.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::time::Duration;

use flushwatch::Clock;
use flushwatch::{Config, FlushTracker};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// What a snapshot holds, by `name` or `name{label=value}`. The debugging recorder resets
/// counters and gauges when snapshotted, so each snapshot shows what was recorded since the
/// previous one (a gauge that was not set since reads 0).
fn take(s: &Snapshotter) -> BTreeMap<String, DebugValue> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, v)| {
            let key = ck.key();
            let labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                key.name().to_string()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            (name, v)
        })
        .collect()
}

fn gauge(v: f64) -> DebugValue {
    DebugValue::Gauge(v.into())
}

/// A snapshot of the metrics after nothing was recorded since the previous one.
fn nothing() -> BTreeMap<String, DebugValue> {
    let mut m = scan_metrics(0.0, 0.0, 0.0, 0, 0, 0, 0, 0, Duration::ZERO);
    m.insert(
        "flushwatch_scan_seconds".into(),
        DebugValue::Histogram(vec![]),
    );
    m
}

fn secs(d: Duration) -> DebugValue {
    DebugValue::Histogram(vec![d.as_secs_f64().into()])
}

/// The metrics one scan records, given the scan's values.
#[allow(clippy::too_many_arguments)]
fn scan_metrics(
    watermark: f64,
    lag: f64,
    pending: f64,
    suspected: u64,
    stalled: u64,
    panicked: u64,
    dropped_pending: u64,
    events_dropped: u64,
    took: Duration,
) -> BTreeMap<String, DebugValue> {
    [
        ("flushwatch_watermark", gauge(watermark)),
        ("flushwatch_lag", gauge(lag)),
        ("flushwatch_pending_shapes", gauge(pending)),
        ("flushwatch_suspected_total", DebugValue::Counter(suspected)),
        ("flushwatch_stalled_total", DebugValue::Counter(stalled)),
        (
            "flushwatch_writer_down_total{cause=panicked}",
            DebugValue::Counter(panicked),
        ),
        (
            "flushwatch_writer_down_total{cause=dropped_pending}",
            DebugValue::Counter(dropped_pending),
        ),
        (
            "flushwatch_events_dropped_total",
            DebugValue::Counter(events_dropped),
        ),
        ("flushwatch_scan_seconds", secs(took)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn every_scan_records_exact_gauges_counter_deltas_and_its_duration() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let (clock, mock) = Clock::mock();
        let tracker = FlushTracker::new(
            Config::default()
                .grace(Duration::from_secs(10))
                .challenge(Duration::from_secs(2))
                .event_capacity(1)
                .start_at(100)
                .clock(clock),
        )
        .unwrap();
        let (a, b, c, d) = (
            tracker.register("a").unwrap(),
            tracker.register("b").unwrap(),
            tracker.register("c").unwrap(),
            tracker.register("d").unwrap(),
        );
        tracker.track(200, &[a.id(), b.id(), c.id()]).unwrap();
        tracker.track(300, &[a.id(), d.id()]).unwrap();
        b.flushed(200);
        d.flushed(300);
        assert!(take(&snapshots).is_empty(), "nothing before the first scan");

        // Scan 1: a and c pending at 100 (start_at).
        tracker.scan();
        let took = tracker.stats().last_scan;
        assert_eq!(
            take(&snapshots),
            scan_metrics(100.0, 200.0, 2.0, 0, 0, 0, 0, 0, took)
        );

        // c's consumer returns early while pending; d's panics (after it was tracked again).
        drop(c);
        tracker.track(400, &[d.id()]).unwrap();
        std::thread::spawn(move || {
            let _d = d;
            panic!("consumer d fails");
        })
        .join()
        .unwrap_err();
        assert_eq!(
            take(&snapshots),
            nothing(),
            "a writer's drop records nothing"
        );

        // Scan 2, 11 s later: a (the only pending shape, at 100) is suspected; its
        // `Suspected` finds the queue full of the two `WriterDown` and is dropped.
        mock.increment(Duration::from_secs(11));
        let r = tracker.scan();
        assert_eq!(r.suspected, vec!["a"]);
        let took = tracker.stats().last_scan;
        assert_eq!(
            take(&snapshots),
            scan_metrics(100.0, 300.0, 1.0, 1, 0, 1, 1, 1, took)
        );

        // Scan 3, 3 s later: a stalls and is evicted; nothing is pending.
        mock.increment(Duration::from_secs(3));
        assert_eq!(tracker.scan().stalled, vec!["a"]);
        let took = tracker.stats().last_scan;
        assert_eq!(
            take(&snapshots),
            scan_metrics(400.0, 0.0, 0.0, 0, 1, 0, 0, 0, took)
        );

        // Scan 4: no change; the gauges are set again, every counter adds 0.
        tracker.scan();
        let took = tracker.stats().last_scan;
        assert_eq!(
            take(&snapshots),
            scan_metrics(400.0, 0.0, 0.0, 0, 0, 0, 0, 0, took)
        );

        let s = tracker.stats();
        assert_eq!((s.stalled, s.writers_down, s.events_dropped), (1, 2, 1));
        drop((a, b));
    });
}

#[test]
fn every_metric_is_described_with_its_unit() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let tracker = FlushTracker::<u32>::new(Config::default()).unwrap();
        tracker.scan();
    });
    let mut units: Vec<(String, Option<Unit>, bool)> = snapshots
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, unit, desc, _)| {
            let described = desc.is_some_and(|d| d.len() > 20);
            (ck.key().name().to_string(), unit, described)
        })
        .collect();
    units.sort_by(|a, b| a.0.cmp(&b.0));
    units.dedup();
    let count = Some(Unit::Count);
    assert_eq!(
        units,
        vec![
            ("flushwatch_events_dropped_total".into(), count, true),
            ("flushwatch_lag".into(), count, true),
            ("flushwatch_pending_shapes".into(), count, true),
            ("flushwatch_scan_seconds".into(), Some(Unit::Seconds), true),
            ("flushwatch_stalled_total".into(), count, true),
            ("flushwatch_suspected_total".into(), count, true),
            ("flushwatch_watermark".into(), count, true),
            ("flushwatch_writer_down_total".into(), count, true),
        ]
    );
}

#[test]
fn descriptions_reach_a_recorder_set_after_the_tracker_was_created() {
    let tracker = FlushTracker::<u32>::new(Config::default()).unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || tracker.scan());
    let snapshot = snapshots.snapshot().into_vec();
    assert_eq!(snapshot.len(), 9);
    assert!(snapshot
        .iter()
        .all(|(_, unit, desc, _)| unit.is_some() && desc.is_some()));
}

/// The hot path, and everything else outside a scan, records nothing.
#[test]
fn only_scans_record_never_the_hot_path() {
    let recorder = DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    let tracker = FlushTracker::new(Config::default()).unwrap();
    let writers: Vec<_> = (0..8u32).map(|k| tracker.register(k).unwrap()).collect();
    metrics::with_local_recorder(&recorder, || {
        let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
        for commit in 1..=1000 {
            tracker.track(commit, &ids).unwrap();
            for w in &writers {
                w.flushed(commit);
                w.defer();
            }
        }
        let extra = tracker.register(99).unwrap();
        tracker.track(1001, &[extra.id()]).unwrap();
        drop(extra); // WriterDown: counted, recorded only by a scan
        assert!(tracker.remove(&0));
        let _ = (tracker.watermark(), tracker.stats(), tracker.status(&1));
    });
    assert!(
        snapshots.snapshot().into_vec().is_empty(),
        "recorded outside a scan"
    );

    metrics::with_local_recorder(&recorder, || tracker.scan());
    let got = take(&snapshots);
    assert_eq!(got["flushwatch_watermark"], gauge(1001.0));
    assert_eq!(
        got["flushwatch_writer_down_total{cause=dropped_pending}"],
        DebugValue::Counter(1)
    );
}
