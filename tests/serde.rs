//! Feature `serde`: the exact JSON of the report types (serde's defaults: externally tagged
//! enums, `Duration` as `{secs, nanos}`).
#![cfg(feature = "serde")]

use std::time::Duration;

use flushwatch::Clock;
use flushwatch::{Config, Event, FlushTracker};

#[test]
fn stats_status_report_tracked_and_events_serialize_exactly() {
    let (clock, mock) = Clock::mock();
    let tracker = FlushTracker::new(
        Config::default()
            .grace(Duration::from_secs(10))
            .challenge(Duration::from_secs(2))
            .start_at(100)
            .clock(clock),
    )
    .unwrap();
    let events = tracker.events();
    let orders = tracker.register("orders").unwrap();
    let users = tracker.register("users").unwrap();

    let t = tracker.track(0x1A0, &[orders.id(), users.id()]).unwrap();
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#"{"tracked":2,"skipped":0,"previous":100}"#
    );
    tracker.track(0x1F8, &[orders.id()]).unwrap();
    users.flushed(0x1A0);
    mock.increment(Duration::new(4, 500));
    assert_eq!(
        serde_json::to_string(&tracker.status(&"orders").unwrap()).unwrap(),
        r#"{"key":"orders","sent":504,"flushed":100,"pending":true,"idle":{"secs":4,"nanos":500},"suspected":false,"lag":404}"#
    );

    mock.increment(Duration::from_secs(7)); // idle 11 s: suspected
    let report = tracker.scan();
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        r#"{"watermark":100,"last_seen":504,"pending":1,"suspected":["orders"],"stalled":[],"lagging":[],"pinned_by":"orders","registered":2}"#
    );
    mock.increment(Duration::from_secs(3)); // no answer for 3 s: stalled, evicted
    tracker.scan();

    let json: Vec<String> = events
        .try_iter()
        .map(|e| serde_json::to_string(&e).unwrap())
        .collect();
    assert_eq!(
        json,
        [
            r#"{"Suspected":{"key":"orders","idle":{"secs":11,"nanos":500}}}"#,
            r#"{"Stalled":{"key":"orders","idle":{"secs":14,"nanos":500},"flushed":100,"sent":504,"evicted":true}}"#,
        ]
    );

    tracker.track(0x200, &[users.id()]).unwrap();
    drop(users); // pending: WriterDown
    assert_eq!(
        serde_json::to_string(&events.try_recv().unwrap()).unwrap(),
        r#"{"WriterDown":{"key":"users","cause":"DroppedPending"}}"#
    );
    let down = Event::WriterDown {
        key: 7u64,
        cause: flushwatch::DownCause::Panicked,
    };
    assert_eq!(
        serde_json::to_string(&down).unwrap(),
        r#"{"WriterDown":{"key":7,"cause":"Panicked"}}"#
    );

    let mut stats = tracker.stats();
    stats.last_scan = Duration::new(0, 1234); // the one field the real clock sets
    assert_eq!(
        serde_json::to_string(&stats).unwrap(),
        r#"{"registered":0,"pending":0,"suspected":0,"stalled":1,"evicted":1,"writers_down":1,"events_dropped":0,"scans":2,"scan_panics":0,"last_scan":{"secs":0,"nanos":1234},"last_seen":512,"watermark":504}"#
    );
}
