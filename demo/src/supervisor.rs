//! The supervisor: reads the tracker's events, measures each stall, and rebuilds every shape
//! that was evicted (or whose writer went down) on a healthy consumer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use flushwatch::{Error, Event, FlushTracker};

use crate::consumers::Msg;
use crate::oracle::{Incarnation, Oracle};
use crate::producer::Route;
use crate::view::Ui;
use crate::{nanos, Key};

pub struct Supervisor {
    pub tracker: FlushTracker<Key>,
    pub txs: Vec<Sender<Msg>>,
    /// New routes for the producer.
    pub ctl: Sender<(Key, Route)>,
    pub oracle: Arc<Oracle>,
    pub healthy: Vec<bool>,
    pub next: usize,
    pub rebuilds: HashMap<Key, u32>,
    pub dir: PathBuf,
    pub ui: Ui,
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
    /// Lines about shapes, grouped until the event queue is momentarily empty (one scan
    /// suspects or stalls a wedged consumer's shapes together).
    pub notes: Vec<(Note, Key, Duration)>,
    pub report: SupervisorReport,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Suspected,
    Evicted,
    Stalled,
}

/// A stall, measured.
pub struct Detection {
    pub key: Key,
    pub consumer: usize,
    /// From the shape's last progress (as seen by the oracle) to the event's arrival.
    pub latency: Duration,
    /// The tracker's own idle time in the event.
    pub idle: Duration,
    /// The shape's flushed position when it stalled.
    pub flushed: u64,
    pub evicted: bool,
}

#[derive(Default)]
pub struct SupervisorReport {
    pub detections: Vec<Detection>,
    pub suspected: usize,
    pub rebuilt: usize,
    pub writers_down: usize,
}

impl Supervisor {
    pub fn run(mut self) -> SupervisorReport {
        let events = self.tracker.events();
        loop {
            // An error is a timeout: the queue cannot close while this supervisor holds the
            // tracker.
            let Ok(event) = events.recv_timeout(Duration::from_millis(20)) else {
                // Relaxed: a request; the join synchronizes.
                if self.stop.load(Ordering::Relaxed) {
                    return self.report;
                }
                continue;
            };
            match event {
                Event::Suspected { key, idle } => {
                    self.report.suspected += 1;
                    self.notes.push((Note::Suspected, key, idle));
                }
                Event::Stalled {
                    key,
                    idle,
                    flushed,
                    evicted,
                    ..
                } => self.stalled(key, idle, flushed, evicted),
                Event::WriterDown { key, cause } => {
                    self.report.writers_down += 1;
                    self.ui.line(
                        self.started,
                        format!("writer of shape-{key:03} down ({cause:?}); rebuilding"),
                    );
                    if let Some(inc) = self.oracle.end(key) {
                        self.healthy[inc.consumer] = false;
                    }
                    self.rebuild(key);
                }
                _ => {}
            }
            if events.is_empty() {
                self.flush_notes();
            }
        }
    }

    /// Prints the grouped notes: one line per kind, listing the shapes.
    fn flush_notes(&mut self) {
        for kind in [Note::Suspected, Note::Evicted, Note::Stalled] {
            let group: Vec<(Key, Duration)> = self
                .notes
                .iter()
                .filter(|n| n.0 == kind)
                .map(|n| (n.1, n.2))
                .collect();
            if group.is_empty() {
                continue;
            }
            let names: Vec<String> = group.iter().map(|(k, _)| format!("shape-{k:03}")).collect();
            let lo = group
                .iter()
                .map(|g| g.1)
                .min()
                .unwrap_or_default()
                .as_secs_f64();
            let hi = group
                .iter()
                .map(|g| g.1)
                .max()
                .unwrap_or_default()
                .as_secs_f64();
            let range = if hi - lo < 0.0005 {
                format!("{lo:.3} s")
            } else {
                format!("{lo:.3}-{hi:.3} s")
            };
            let line = match kind {
                Note::Suspected => format!("suspected {} (idle {range})", names.join(" ")),
                Note::Evicted => format!(
                    "evicted {}, {range} after their last progress; rebuilt on healthy consumers",
                    names.join(" ")
                ),
                Note::Stalled => format!(
                    "stalled {}, {range} after their last progress (reported only: they keep pinning the watermark)",
                    names.join(" ")
                ),
            };
            self.ui.line(self.started, line);
        }
        self.notes.clear();
    }

    fn stalled(&mut self, key: Key, idle: Duration, flushed: u64, evicted: bool) {
        let arrived = nanos(self.started);
        let Some(inc) = self.oracle.live(key) else {
            return;
        };
        // The shape's last progress: its last report, or the first commit tracked after it
        // (which made it pending), whichever is later.
        // Acquire: pairs with the consumer's Release store.
        let last_flush = inc.last_flush.load(Ordering::Acquire);
        let pending_since = inc.first_undurable().map_or(0, |(_, t)| t);
        let latency = Duration::from_nanos(arrived.saturating_sub(last_flush.max(pending_since)));
        self.report.detections.push(Detection {
            key,
            consumer: inc.consumer,
            latency,
            idle,
            flushed,
            evicted,
        });
        if !evicted {
            self.notes.push((Note::Stalled, key, latency));
            return;
        }
        self.notes.push((Note::Evicted, key, latency));
        self.oracle.end(key);
        self.healthy[inc.consumer] = false;
        self.rebuild(key);
    }

    /// Registers `key` again and hands it to a healthy consumer; the producer routes to it
    /// from its next burst on.
    fn rebuild(&mut self, key: Key) {
        let n = self.healthy.len();
        let Some(consumer) = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&c| self.healthy[c])
        else {
            self.ui.line(self.started, "no healthy consumer left");
            return;
        };
        self.next = (consumer + 1) % n;
        // The eviction frees the key; its event may arrive a moment before that completes.
        let mut tries = 0;
        let writer = loop {
            match self.tracker.register(key) {
                Ok(w) => break w,
                Err(Error::DuplicateShape) if tries < 1000 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    self.ui
                        .line(self.started, format!("re-registering shape-{key:03}: {e}"));
                    return;
                }
            }
        };
        let inc = Incarnation::new(key, writer.id(), consumer);
        let generation = self.rebuilds.entry(key).or_insert(0);
        *generation += 1;
        let path = self
            .dir
            .join(format!("shape-{key:03}.rebuilt-{generation}.log"));
        if self.txs[consumer]
            .send(Msg::Adopt {
                writer,
                inc: inc.clone(),
                path,
            })
            .is_err()
        {
            return;
        }
        self.oracle.adopt(inc.clone());
        self.report.rebuilt += 1;
        let _ = self.ctl.send((key, Route { inc, consumer }));
    }
}
