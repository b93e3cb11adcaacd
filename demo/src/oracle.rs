//! The oracle: checks every published watermark it observes against what the consumers have
//! really `fsync`ed, and against the commits the producer handed to `track`.
//!
//! Two assertions, for each watermark `w`:
//! - **safety**: no live (still registered) incarnation of a shape has a commit `<= w` that is
//!   not durable;
//! - **whole transactions**: `w` is `start_at` or a commit handed to `track` (positions are
//!   sparse: a watermark between two commits would be an invented position), and it never
//!   decreases.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flushwatch::{FlushTracker, ShapeId};

use crate::{Counters, Key};

/// One incarnation of a shape (a registration), as the oracle sees it.
pub struct Incarnation {
    pub key: Key,
    pub id: ShapeId,
    pub consumer: usize,
    /// Commits tracked for it and not yet known durable, with the time they were tracked
    /// (nanoseconds since the start). Pushed by the producer before `track`.
    pub sent: Mutex<VecDeque<(u64, u64)>>,
    /// Everything tracked for it up to here is fsynced. Stored by the consumer before it
    /// reports `flushed`.
    pub durable: AtomicU64,
    /// When the consumer last reported progress (nanoseconds since the start).
    pub last_flush: AtomicU64,
}

impl Incarnation {
    pub fn new(key: Key, id: ShapeId, consumer: usize) -> Arc<Self> {
        Arc::new(Incarnation {
            key,
            id,
            consumer,
            sent: Mutex::new(VecDeque::new()),
            durable: AtomicU64::new(0),
            last_flush: AtomicU64::new(0),
        })
    }

    /// Drops the commits known durable; returns the first one that is not, with its time.
    pub fn first_undurable(&self) -> Option<(u64, u64)> {
        // Acquire: pairs with the consumer's Release store after its fsync.
        let durable = self.durable.load(Ordering::Acquire);
        let mut sent = self.sent.lock().unwrap();
        while sent.front().is_some_and(|&(c, _)| c <= durable) {
            sent.pop_front();
        }
        sent.front().copied()
    }
}

/// What the oracle found, for the verdict.
#[derive(Default)]
pub struct Findings {
    /// Watermarks checked.
    pub checks: u64,
    /// The highest watermark checked.
    pub last: u64,
    /// The first violation, as a line for the verdict.
    pub first_violation: Option<String>,
}

pub struct Oracle {
    start_at: u64,
    /// The live incarnation of every shape: set up by main, updated by the supervisor.
    live: Mutex<HashMap<Key, Arc<Incarnation>>>,
    /// Commits handed to `track` (pushed by the producer before it calls `track`), from the
    /// last checked watermark on.
    tracked: Mutex<VecDeque<u64>>,
    findings: Mutex<Findings>,
    counters: Arc<Counters>,
}

impl Oracle {
    pub fn new(start_at: u64, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(Oracle {
            start_at,
            live: Mutex::new(HashMap::new()),
            tracked: Mutex::new(VecDeque::new()),
            findings: Mutex::new(Findings {
                last: start_at,
                ..Findings::default()
            }),
            counters,
        })
    }

    /// The producer is about to `track(commit, ..)`.
    pub fn tracking(&self, commit: u64) {
        self.tracked.lock().unwrap().push_back(commit);
    }

    /// `inc` is now the live incarnation of its shape.
    pub fn adopt(&self, inc: Arc<Incarnation>) {
        self.live.lock().unwrap().insert(inc.key, inc);
    }

    /// The shape's incarnation ended (evicted, or its writer went down).
    pub fn end(&self, key: Key) -> Option<Arc<Incarnation>> {
        self.live.lock().unwrap().remove(&key)
    }

    /// The live incarnation of `key`.
    pub fn live(&self, key: Key) -> Option<Arc<Incarnation>> {
        self.live.lock().unwrap().get(&key).cloned()
    }

    /// Checks every watermark the scanner publishes until `stop`: blocks in `wait_watermark`
    /// for the next higher one (several publications between two wake-ups are seen as the
    /// latest).
    pub fn watch(&self, tracker: &FlushTracker<Key>, stop: &AtomicBool) {
        let mut last = self.start_at;
        // Relaxed: a stop request; the join synchronizes.
        while !stop.load(Ordering::Relaxed) {
            let w = tracker.wait_watermark(last.saturating_add(1), Duration::from_millis(20));
            if w != last {
                self.check(tracker, w);
                last = w;
            }
        }
    }

    /// Checks a published watermark against the tracked commits and against what is durable
    /// in every live incarnation.
    pub fn check(&self, tracker: &FlushTracker<Key>, watermark: u64) {
        let mut f = self.findings.lock().unwrap();
        f.checks += 1;
        if watermark < f.last {
            let what = format!(
                "monotonicity violated: watermark decreased from {} to {watermark}",
                f.last
            );
            self.violation(&mut f, what);
        }
        f.last = f.last.max(watermark);
        if watermark != self.start_at {
            let mut tracked = self.tracked.lock().unwrap();
            while tracked.front().is_some_and(|&c| c < watermark) {
                tracked.pop_front();
            }
            if tracked.front() != Some(&watermark) {
                self.violation(
                    &mut f,
                    format!(
                        "whole transactions violated: watermark {watermark} is neither start_at ({}) nor a tracked commit",
                        self.start_at
                    ),
                );
            }
        }
        for inc in self.live.lock().unwrap().values() {
            if let Some((first, _)) = inc.first_undurable() {
                // A violation only if the incarnation is still registered: one that was
                // evicted or removed by the scan that published this watermark no longer
                // counts.
                let registered = tracker.id_of(&inc.key) == Some(inc.id);
                if first <= watermark && registered {
                    self.violation(
                        &mut f,
                        format!(
                            "safety violated: watermark {watermark} passed commit {first} of shape-{:03}, which is not durable (durable up to {})",
                            inc.key,
                            // Acquire: pairs with the consumer's Release store.
                            inc.durable.load(Ordering::Acquire)
                        ),
                    );
                }
            }
        }
    }

    fn violation(&self, f: &mut Findings, what: String) {
        self.counters.violations.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
        f.first_violation.get_or_insert(what);
    }

    /// What was found so far.
    pub fn findings(&self) -> Findings {
        let f = self.findings.lock().unwrap();
        Findings {
            checks: f.checks,
            last: f.last,
            first_violation: f.first_violation.clone(),
        }
    }
}
