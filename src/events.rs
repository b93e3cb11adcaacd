//! The event queue: one ordered queue in which action events are never lost.
//!
//! # Ground rules
//!
//! - One unbounded `crossbeam` channel carries every event, in the order they were emitted;
//!   every [`Events`](crate::Events) receiver from `events()` (and every `event_stream()`)
//!   takes from it, so each event reaches one of them. The channel stays private: the public
//!   receivers wrap it (`receiver.rs`).
//! - **Informational** events (`Suspected`, `Lagging`, `ScanPanicked`) are queued only while
//!   the queue holds fewer than `capacity` events; otherwise they are dropped and counted.
//! - **Action** events (`Stalled`, `WriterDown`) are always queued: missing one means a shape
//!   silently stops replicating. They are bounded by the shapes that ended or stalled: a
//!   shape has at most one unread `Stalled` (see [`Queue::stalled`]).
//! - Emitting never waits on a reader. It takes `order`, a mutex held for one channel push,
//!   so that sequence numbers follow the queue's order (which is what lets `Queue::is_read`
//!   tell whether an event was taken).

use crossbeam_channel::{Receiver, Sender};

use crate::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::Event;

/// The sequence number of an emitted event: its index in the stream of queued events.
pub(crate) type Seq = u64;

/// The one event queue of a tracker.
pub(crate) struct Queue<K> {
    tx: Sender<Event<K>>,
    rx: Receiver<Event<K>>,
    capacity: usize,
    /// Events queued so far. Written only under the lock (so it matches the queue's order).
    order: Mutex<Seq>,
    /// Informational events dropped at capacity. `Relaxed`: a statistic.
    pub(crate) dropped: AtomicU64,
    /// Wakers of async streams waiting for an event; all are woken after each queued event.
    pub(crate) on_queued: Mutex<Vec<std::task::Waker>>,
}

impl<K> Queue<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Queue {
            tx,
            rx,
            capacity,
            order: Mutex::new(0),
            dropped: AtomicU64::new(0),
            on_queued: Mutex::new(Vec::new()),
        }
    }

    /// A receiver of the one queue.
    pub(crate) fn receiver(&self) -> Receiver<Event<K>> {
        self.rx.clone()
    }

    /// Queues an informational event, or drops and counts it when the queue is full.
    pub(crate) fn info(&self, event: Event<K>) {
        let queued = {
            let mut seq = lock(&self.order);
            if self.tx.len() >= self.capacity {
                false
            } else {
                self.push(&mut seq, event);
                true
            }
        };
        if queued {
            self.wake();
        } else {
            // Relaxed: a statistic.
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an action event, whatever the queue's length. Returns its sequence number.
    pub(crate) fn action(&self, event: Event<K>) -> Seq {
        let seq = {
            let mut seq = lock(&self.order);
            self.push(&mut seq, event)
        };
        self.wake();
        seq
    }

    /// Queues a `Stalled` event unless `previous` (the shape's last `Stalled`) is still
    /// unread: a shape has at most one unread `Stalled`. Returns the sequence number of the
    /// unread one (the new one, or `previous`).
    pub(crate) fn stalled(&self, event: Event<K>, previous: Option<Seq>) -> Seq {
        let seq = {
            let mut seq = lock(&self.order);
            match previous {
                Some(p) if !self.read_locked(*seq, p) => return p,
                _ => self.push(&mut seq, event),
            }
        };
        self.wake();
        seq
    }

    /// Whether the event numbered `seq` was taken by a receiver (or stream).
    #[cfg(test)]
    pub(crate) fn is_read(&self, seq: Seq) -> bool {
        let total = lock(&self.order);
        self.read_locked(*total, seq)
    }

    /// With the order lock held: events taken so far are `queued - len` (the queue is FIFO),
    /// so `seq` was taken iff it is below that. Receivers may take more while this runs: the
    /// answer can only be "unread" for an event taken a moment later, never the reverse.
    fn read_locked(&self, queued: Seq, seq: Seq) -> bool {
        let taken = queued.saturating_sub(self.tx.len() as u64);
        seq < taken
    }

    /// Pushes `event` (order lock held) and returns its sequence number.
    fn push(&self, seq: &mut Seq, event: Event<K>) -> Seq {
        let this = *seq;
        // The receiver lives in `self`, so the channel is never disconnected.
        let _ = self.tx.send(event);
        *seq += 1;
        this
    }

    /// Wakes the async streams waiting for an event.
    fn wake(&self) {
        let wakers = std::mem::take(&mut *lock(&self.on_queued));
        for w in wakers {
            w.wake();
        }
    }
}

/// Wakes the parked streams when the queue goes away: they end once it is drained.
impl<K> Drop for Queue<K> {
    fn drop(&mut self) {
        self.wake();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn suspected(key: u32) -> Event<u32> {
        Event::Suspected {
            key,
            idle: std::time::Duration::ZERO,
        }
    }

    fn down(key: u32) -> Event<u32> {
        Event::WriterDown {
            key,
            cause: crate::DownCause::Panicked,
        }
    }

    #[test]
    fn informational_events_are_dropped_at_capacity_and_actions_are_not() {
        let q = Queue::new(2);
        q.info(suspected(1));
        q.info(suspected(2));
        q.info(suspected(3)); // full: dropped
        q.action(down(4)); // queued beyond capacity
        q.action(down(5));
        q.info(suspected(6)); // still full: dropped
        let got: Vec<_> = q.receiver().try_iter().collect();
        assert_eq!(got, vec![suspected(1), suspected(2), down(4), down(5)]);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_stall_is_queued_again_only_after_the_previous_one_was_read() {
        let q = Queue::new(1);
        let stall = |key| Event::Stalled {
            key,
            idle: std::time::Duration::ZERO,
            flushed: 0,
            sent: 1,
            evicted: false,
        };
        let first = q.stalled(stall(1), None);
        assert!(!q.is_read(first));
        assert_eq!(
            q.stalled(stall(1), Some(first)),
            first,
            "unread: not queued again"
        );
        assert_eq!(q.receiver().len(), 1);
        assert_eq!(q.receiver().try_recv().unwrap(), stall(1));
        assert!(q.is_read(first));
        let second = q.stalled(stall(1), Some(first));
        assert_ne!(second, first);
        assert_eq!(q.receiver().len(), 1);
    }
}
