//! The model's scan: the watermark, stall detection and the lagging classifier, one pass over
//! every live shape, then the event queue's rules.

use std::hash::Hash;
use std::time::Duration;

use super::{Ended, Model, ModelId};
use crate::{Event, ScanReport, StallPolicy};

impl<K: Hash + Eq + Clone> Model<K> {
    /// `FlushTracker::scan` at time `now`.
    pub fn scan(&mut self, now: u64) -> ScanReport<K> {
        let c = self.config;
        let mut report = ScanReport {
            watermark: 0,
            last_seen: self.last_seen,
            pending: 0,
            suspected: Vec::new(),
            stalled: Vec::new(),
            lagging: Vec::new(),
            pinned_by: None,
            registered: 0,
        };
        let mut min = self.last_seen;
        let mut holder: Option<K> = None;
        let mut evicted = Vec::new();
        // Emitted in this order after the pass (the queue's rules need `self`).
        let mut emitted: Vec<(Option<ModelId>, Event<K>)> = Vec::new();
        let prev_end = self.scan_tick;
        for (&id, s) in self.shapes.iter_mut().filter(|(_, s)| s.ended.is_none()) {
            report.registered += 1;
            let changed = std::mem::take(&mut s.changed);
            let counted = std::mem::take(&mut s.counted);
            if !s.pending() {
                s.suspected_at = None;
                s.reset_lag();
                continue;
            }
            // Events report the time since the last progress; a re-arm restarts only the
            // stall timer, which `stall_idle` measures.
            let idle = now.saturating_sub(s.last_progress());
            let stall_idle = if c.coarse {
                // A progress first seen by this scan (or a shape this scan starts anew) is
                // dated by this scan's end: never overdue now. Else by the previous scan's
                // end, once.
                if !counted || changed {
                    s.seen = None;
                } else if s.seen.is_none() {
                    s.seen = Some(prev_end);
                }
                s.seen.map_or(0, |seen| now.saturating_sub(seen))
            } else {
                now.saturating_sub(s.progress_tick())
            };
            let overdue = stall_idle > c.grace;
            match s.suspected_at {
                Some(at) if overdue && now.saturating_sub(at) > c.challenge => {
                    let evict = c.policy == StallPolicy::Evict;
                    emitted.push((
                        (!evict).then_some(id),
                        Event::Stalled {
                            key: s.key.clone(),
                            idle: Duration::from_nanos(idle),
                            flushed: s.flushed,
                            sent: s.sent,
                            evicted: evict,
                        },
                    ));
                    report.stalled.push(s.key.clone());
                    s.suspected_at = None;
                    if evict {
                        evicted.push(id);
                        continue;
                    }
                    s.rearm = now;
                    // The re-arm answers the challenge: progress for the coarse rule.
                    s.changed = true;
                }
                Some(_) => {}
                None if overdue => {
                    s.suspected_at = Some(now);
                    emitted.push((
                        None,
                        Event::Suspected {
                            key: s.key.clone(),
                            idle: Duration::from_nanos(idle),
                        },
                    ));
                    report.suspected.push(s.key.clone());
                }
                None => {}
            }
            report.pending += 1;
            s.counted = true;
            if s.flushed < min || holder.is_none() {
                min = min.min(s.flushed);
                holder = Some(s.key.clone());
            }
            if c.lag_window > 0 {
                let lag = self.last_seen.saturating_sub(s.flushed);
                if s.lag_run == 0 || lag < s.lag_prev {
                    s.lag_run = 1;
                    s.lag_first = lag;
                    s.flushed_first = s.flushed;
                    s.lagging = false;
                } else {
                    s.lag_run = s.lag_run.saturating_add(1);
                }
                s.lag_prev = lag;
                if !s.lagging
                    && s.lag_run > c.lag_window
                    && lag > s.lag_first
                    && s.flushed > s.flushed_first
                {
                    s.lagging = true;
                    emitted.push((
                        None,
                        Event::Lagging {
                            key: s.key.clone(),
                            lag,
                        },
                    ));
                    report.lagging.push(s.key.clone());
                }
            }
        }
        for id in evicted {
            self.end(id, Ended::Evicted);
        }
        let room = self.config.event_capacity.saturating_sub(self.queue.len()) as u64;
        let (mut actions, mut infos) = (0u64, 0u64);
        for (stalling, event) in emitted {
            match (&event, stalling) {
                (Event::Stalled { .. }, Some(id)) => {
                    // Re-armed (`Report`): queued unless its previous `Stalled` is unread.
                    let previous = self.shapes[&id].stalled_seq;
                    if previous.is_none_or(|p| self.is_read(p)) {
                        actions += 1;
                        let seq = self.push(event);
                        self.shapes.get_mut(&id).expect("shape").stalled_seq = Some(seq);
                    } else {
                        self.withheld += 1;
                    }
                }
                (Event::Stalled { .. }, None) => {
                    actions += 1;
                    self.push(event);
                }
                _ => {
                    infos += 1;
                    self.info(event);
                }
            }
        }
        // Informational events first, or actions first.
        self.dropped_range.0 += infos.saturating_sub(room);
        self.dropped_range.1 += infos.saturating_sub(room.saturating_sub(actions));
        self.scan_tick = self.scan_tick.max(now);
        if min > self.watermark {
            self.watermark = min;
        }
        report.watermark = self.watermark;
        report.pinned_by = holder;
        report
    }
}
