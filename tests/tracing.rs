//! Feature `tracing`: a stall is logged at warn level, with the shape and its positions, at
//! most 10 times per minute (the rest counted and summarised in the next warning).
//!
//! A minimal `tracing::Subscriber` (no extra crate) records every event of the thread that
//! scans.
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flushwatch::{Clock, Config, FlushTracker, StallPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One recorded event: its level and its fields as `name=value` (values in `Debug` form).
#[derive(Debug, Clone)]
struct Logged {
    level: Level,
    fields: Vec<(String, String)>,
}

impl Logged {
    fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no field {name} in {self:?}"))
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Logged>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Logged {
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn stalls_are_logged_at_warn_level_at_most_ten_per_minute() {
    let (clock, mock) = Clock::mock();
    let tracker = FlushTracker::new(
        Config::default()
            .clock(clock)
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO)
            .stall_policy(StallPolicy::Evict),
    )
    .unwrap();
    let writers: Vec<_> = (0..12u32).map(|k| tracker.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    tracker.track(10, &ids).unwrap();
    writers[0].flushed(10); // caught up: never stalls

    let recorder = Recorder::default();
    let report = tracing::subscriber::with_default(recorder.clone(), || {
        mock.increment(Duration::from_nanos(1));
        let first = tracker.scan();
        assert_eq!(first.suspected.len(), 11, "{first:?}");
        mock.increment(Duration::from_nanos(1));
        tracker.scan()
    });
    assert_eq!(report.stalled.len(), 11, "{report:?}");

    let logged = recorder.0.lock().unwrap().clone();
    // Suspicions are not logged; the first ten stalls are, the eleventh is suppressed.
    assert_eq!(logged.len(), 10, "{logged:#?}");
    let mut shapes = Vec::new();
    for l in &logged {
        assert_eq!(l.level, Level::WARN);
        assert_eq!(
            l.field("message"),
            "flushwatch: shape stalled and was evicted"
        );
        assert_eq!(l.field("evicted"), "true");
        assert_eq!(l.field("flushed"), "0");
        assert_eq!(l.field("sent"), "10");
        assert_eq!(l.field("suppressed"), "0");
        assert_eq!(l.field("idle"), "2ns");
        shapes.push(l.field("shape").parse::<u32>().unwrap());
    }
    shapes.sort_unstable();
    shapes.dedup();
    assert_eq!(shapes.len(), 10, "ten different shapes: {shapes:?}");
    assert!(shapes.iter().all(|&k| (1..12).contains(&k)), "{shapes:?}");
}
