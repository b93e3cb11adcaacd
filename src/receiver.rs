//! [`Events`], the public receiver of a tracker's one event queue, its iterators and its
//! errors.
//!
//! # Ground rules
//!
//! - A receiver wraps the private channel of [`Queue`](crate::events::Queue); no channel type
//!   is public, so the channel crate can change without a breaking release.
//! - It holds no reference to the tracker: it never keeps one alive. The queue's sender lives
//!   in the tracker's shared state, which every tracker handle, every writer and the scanner
//!   thread hold, so a receiver is disconnected only once all of them are gone and the queue
//!   is drained: nothing can emit any more.

use std::fmt;
use std::iter::FusedIterator;
use std::time::Duration;

use crate::Event;

/// A receiver of a tracker's events ([`FlushTracker::events`](crate::FlushTracker::events)).
///
/// Every receiver (and, with the `tokio` feature, every `EventStream`) takes from the
/// tracker's **one** queue, in the order the events were emitted: each event reaches exactly
/// one of them. Cloning a receiver makes another receiver of the same queue. Dropping one loses nothing: the events
/// stay queued for the other receivers, or for the next call to `events()`.
///
/// Receiving never blocks the tracker: the scanner, `remove` and a writer's drop never wait
/// for a reader.
///
/// **Disconnection.** While the tracker lives (any [`FlushTracker`](crate::FlushTracker)
/// handle, [`Writer`](crate::Writer) or running scanner), [`recv`](Events::recv) waits and the
/// errors are only `Empty` and `Timeout`. Once all of them are gone, nothing can emit any
/// more: the receiver yields what is left in the queue, then reports `Disconnected`.
///
/// Under `--cfg loom`, use the non-blocking [`try_recv`](Events::try_recv) and
/// [`try_iter`](Events::try_iter): a blocking receive is invisible to the model.
///
/// ```
/// use std::time::Duration;
/// use flushwatch::{Config, DownCause, Event, FlushTracker, RecvTimeoutError};
///
/// let tracker = FlushTracker::new(Config::default())?;
/// let events = tracker.events();
/// let orders = tracker.register("orders")?;
/// tracker.track(7, &[orders.id()])?;
/// std::thread::spawn(move || drop(orders)); // a consumer that gave up while pending
///
/// let event = events.recv_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!(event, Event::WriterDown { key: "orders", cause: DownCause::DroppedPending });
/// assert!(events.is_empty());
/// assert_eq!(
///     events.recv_timeout(Duration::from_millis(1)),
///     Err(RecvTimeoutError::Timeout),
///     "the tracker lives: no more events yet, but not disconnected"
/// );
/// # Ok::<(), flushwatch::Error>(())
/// ```
pub struct Events<K> {
    rx: crossbeam_channel::Receiver<Event<K>>,
}

impl<K> Events<K> {
    pub(crate) fn new(rx: crossbeam_channel::Receiver<Event<K>>) -> Self {
        Events { rx }
    }

    /// The next event, waiting for one as long as it takes. Fails only once the tracker is
    /// gone and the queue is drained (see "Disconnection" above).
    ///
    /// # Errors
    ///
    /// [`RecvError`] when the queue is empty and nothing can emit any more.
    pub fn recv(&self) -> Result<Event<K>, RecvError> {
        self.rx.recv().map_err(|_| RecvError)
    }

    /// The next event if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when none is queued; [`TryRecvError::Disconnected`] when none
    /// is queued and nothing can emit any more.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker, TryRecvError};
    /// let tracker = FlushTracker::<u32>::new(Config::default())?;
    /// let events = tracker.events();
    /// assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
    /// drop(tracker);
    /// assert_eq!(events.try_recv(), Err(TryRecvError::Disconnected));
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<Event<K>, TryRecvError> {
        self.rx.try_recv().map_err(|e| match e {
            crossbeam_channel::TryRecvError::Empty => TryRecvError::Empty,
            crossbeam_channel::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// The next event, waiting at most `timeout` for one. A timeout too large for
    /// [`Instant`](std::time::Instant) (`Duration::MAX` included) waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when none came in time;
    /// [`RecvTimeoutError::Disconnected`] when the queue is empty and nothing can emit any more.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event<K>, RecvTimeoutError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => RecvTimeoutError::Timeout,
            crossbeam_channel::RecvTimeoutError::Disconnected => RecvTimeoutError::Disconnected,
        })
    }

    /// An iterator over the events queued now: it never waits, and ends when the queue is
    /// empty.
    ///
    /// ```
    /// use flushwatch::{Config, Event, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let (a, b) = (tracker.register("a")?, tracker.register("b")?);
    /// tracker.track(1, &[a.id(), b.id()])?;
    /// drop((a, b)); // both pending: two WriterDown events
    /// let keys: Vec<_> = tracker
    ///     .events()
    ///     .try_iter()
    ///     .map(|e| match e {
    ///         Event::WriterDown { key, .. } => key,
    ///         other => panic!("unexpected {other:?}"),
    ///     })
    ///     .collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, K> {
        TryIter(self.rx.try_iter())
    }

    /// A blocking iterator: each item waits for the next event, as [`recv`](Events::recv)
    /// does. It ends only once the tracker is gone and the queue is drained, so it suits a
    /// dedicated thread that handles events for the tracker's whole life.
    ///
    /// ```
    /// use flushwatch::{Config, Event, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let events = tracker.events();
    /// let handler = std::thread::spawn(move || {
    ///     let mut down = Vec::new();
    ///     for event in events.iter() {
    ///         if let Event::WriterDown { key, .. } = event {
    ///             down.push(key); // rebuild the shape
    ///         }
    ///     }
    ///     down // the loop ends once the tracker is gone
    /// });
    /// let w = tracker.register("orders")?;
    /// tracker.track(1, &[w.id()])?;
    /// drop(w);
    /// drop(tracker);
    /// assert_eq!(handler.join().unwrap(), ["orders"]);
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, K> {
        Iter(self.rx.iter())
    }

    /// The number of events queued now (for every receiver of the queue).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event is queued now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<K> Clone for Events<K> {
    /// Another receiver of the same queue.
    fn clone(&self) -> Self {
        Events {
            rx: self.rx.clone(),
        }
    }
}

impl<K> fmt::Debug for Events<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl<'a, K> IntoIterator for &'a Events<K> {
    type Item = Event<K>;
    type IntoIter = Iter<'a, K>;

    /// [`Events::iter`].
    fn into_iter(self) -> Iter<'a, K> {
        self.iter()
    }
}

impl<K> IntoIterator for Events<K> {
    type Item = Event<K>;
    type IntoIter = IntoIter<K>;

    /// A blocking iterator that owns the receiver (see [`Events::iter`]).
    fn into_iter(self) -> IntoIter<K> {
        IntoIter(self.rx.into_iter())
    }
}

/// The blocking iterator of [`Events::iter`]: it ends once the tracker is gone and the queue
/// is drained.
pub struct Iter<'a, K>(crossbeam_channel::Iter<'a, Event<K>>);

/// The non-blocking iterator of [`Events::try_iter`]: it ends when the queue is empty.
pub struct TryIter<'a, K>(crossbeam_channel::TryIter<'a, Event<K>>);

/// The blocking iterator that owns an [`Events`] (`for event in tracker.events()`): it ends
/// once the tracker is gone and the queue is drained.
pub struct IntoIter<K>(crossbeam_channel::IntoIter<Event<K>>);

impl<K> Iterator for Iter<'_, K> {
    type Item = Event<K>;

    fn next(&mut self) -> Option<Event<K>> {
        self.0.next()
    }
}

impl<K> Iterator for TryIter<'_, K> {
    type Item = Event<K>;

    fn next(&mut self) -> Option<Event<K>> {
        self.0.next()
    }
}

impl<K> Iterator for IntoIter<K> {
    type Item = Event<K>;

    fn next(&mut self) -> Option<Event<K>> {
        self.0.next()
    }
}

/// Once `None` (disconnected and drained), always `None`.
impl<K> FusedIterator for Iter<'_, K> {}
/// Once `None` (disconnected and drained), always `None`.
impl<K> FusedIterator for IntoIter<K> {}

impl<K> fmt::Debug for Iter<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<K> fmt::Debug for TryIter<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter").finish_non_exhaustive()
    }
}

impl<K> fmt::Debug for IntoIter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter").finish_non_exhaustive()
    }
}

/// [`Events::recv`] failed: the queue is empty and nothing can emit any more (the tracker,
/// its writers and its scanner are all gone).
///
/// The outcomes of a receive are complete as they stand (as for `std::sync::mpsc`), so the
/// receive errors are not `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecvError;

/// Why [`Events::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryRecvError {
    /// No event is queued now; the tracker lives, so more may come.
    Empty,
    /// No event is queued and nothing can emit any more.
    Disconnected,
}

/// Why [`Events::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvTimeoutError {
    /// No event came within the timeout; the tracker lives, so more may come.
    Timeout,
    /// No event is queued and nothing can emit any more.
    Disconnected,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event queue is empty and its tracker is gone")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no event is queued"),
            TryRecvError::Disconnected => RecvError.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("no event came within the timeout"),
            RecvTimeoutError::Disconnected => RecvError.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        TryRecvError::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        RecvTimeoutError::Disconnected
    }
}
