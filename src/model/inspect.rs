//! What the model answers without changing: positions, shape states, status, and the event
//! queue's reads and counters.

use std::hash::Hash;
use std::time::Duration;

use super::{Ended, Model, ModelId};
use crate::{Event, Offset, ShapeStatus};

impl<K: Hash + Eq + Clone> Model<K> {
    /// The published watermark.
    pub fn watermark(&self) -> Offset {
        self.watermark
    }

    /// The highest commit tracked.
    pub fn last_seen(&self) -> Offset {
        self.last_seen
    }

    /// Whether registration `id` is suspected and unanswered.
    pub fn is_suspected(&self, id: ModelId) -> bool {
        self.shapes
            .get(&id)
            .is_some_and(|s| s.ended.is_none() && s.suspected_at.is_some())
    }

    /// Whether registration `id` was evicted or removed.
    pub fn is_evicted(&self, id: ModelId) -> bool {
        self.shapes
            .get(&id)
            .is_some_and(|s| matches!(s.ended, Some(Ended::Evicted | Ended::Removed)))
    }

    /// How registration `id` ended, if it did.
    pub fn ended(&self, id: ModelId) -> Option<Ended> {
        self.shapes.get(&id).and_then(|s| s.ended)
    }

    /// The status of a registered key at time `now`.
    pub fn status(&self, key: &K, now: u64) -> Option<ShapeStatus<K>> {
        let s = &self.shapes[self.by_key.get(key)?];
        let pending = s.pending();
        Some(ShapeStatus {
            key: s.key.clone(),
            sent: s.sent,
            flushed: s.flushed,
            pending,
            idle: Duration::from_nanos(if pending {
                now.saturating_sub(s.last_progress())
            } else {
                0
            }),
            suspected: s.suspected_at.is_some(),
            lag: if pending {
                self.last_seen.saturating_sub(s.flushed)
            } else {
                0
            },
        })
    }

    /// Keys of the live pending shapes with the lowest flushed position: any of them may be
    /// reported as `pinned_by`.
    pub fn pinned_candidates(&self) -> Vec<K> {
        let live = || {
            self.shapes
                .values()
                .filter(|s| s.ended.is_none() && s.pending())
        };
        let Some(min) = live().map(|s| s.flushed).min() else {
            return Vec::new();
        };
        live()
            .filter(|s| s.flushed == min)
            .map(|s| s.key.clone())
            .collect()
    }

    /// Reads every queued event with its emission number (its index among all events
    /// emitted, queued or dropped at capacity).
    pub fn take_events_numbered(&mut self) -> Vec<(u64, Event<K>)> {
        self.queue.drain(..).map(|(_, n, e)| (n, e)).collect()
    }

    /// The informational events dropped at capacity since the last call, with their emission
    /// numbers. Which of the events of one scan are dropped depends on the order in which
    /// the scan visits the shapes, which the model does not follow.
    pub fn take_dropped(&mut self) -> Vec<(u64, Event<K>)> {
        std::mem::take(&mut self.dropped_unread)
    }

    /// Informational events dropped at capacity (`FlushTracker::events_dropped`) as the model
    /// ordered them.
    pub fn events_dropped(&self) -> u64 {
        self.dropped
    }

    /// The fewest and the most informational events a tracker could have dropped at
    /// capacity: equal unless a scan at capacity emitted both action and informational events
    /// (then the count depends on the order of its visits).
    pub fn events_dropped_range(&self) -> (u64, u64) {
        self.dropped_range
    }

    /// Events emitted so far, queued (read or not) or dropped: the next one's emission number.
    pub fn events_emitted(&self) -> u64 {
        self.emitted
    }

    /// `Stalled` events not queued because the shape's previous `Stalled` was still unread.
    pub fn stalls_withheld(&self) -> u64 {
        self.withheld
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Model, ModelConfig};

    #[test]
    fn the_range_of_drops_at_capacity_is_exact() {
        // Room for one event; a scan emits two `Suspected` (informational): one is dropped,
        // whatever the order of the visits.
        let mut m = Model::new(ModelConfig {
            grace: 10,
            event_capacity: 1,
            ..ModelConfig::default()
        });
        let a = m.register("a", 0).unwrap();
        let b = m.register("b", 0).unwrap();
        m.track(5, &[a, b], 0).unwrap();
        let r = m.scan(100);
        assert_eq!(r.suspected.len(), 2, "{r:?}");
        assert_eq!(m.events_dropped_range(), (1, 1));
        assert_eq!(m.events_dropped(), 1);
    }
}
