//! Feature `tokio`: the published watermark as a `tokio::sync::watch` channel, and the event
//! queue as a `futures_core::Stream`.
//!
//! # Ground rules
//!
//! - The watch sender lives in [`Watermark`](crate::watermark::Watermark) and is updated by
//!   `publish`, which only a scan calls, only with a higher value: receivers are notified of
//!   every publication and of nothing else. A receiver starts at the current value.
//! - A stream takes from the same crossbeam queue as `events()`. It parks by pushing its waker
//!   into `Queue::on_queued` and then *re-checking* the queue: every emitter pushes its event
//!   before it takes the wakers, so an event that the re-check misses was pushed after the
//!   waker was registered and its emitter wakes it (no lost wake-up).
//! - A stream holds the tracker's shared state weakly: it never keeps a tracker alive, and it
//!   ends (`None`) only once nothing can emit any more (no tracker handle, writer or scanner
//!   thread left) and the queue is drained. `Queue`'s drop wakes the parked streams for that.
//! - Nothing here blocks: the only lock is the short `on_queued` mutex.

use std::fmt;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use crossbeam_channel::{Receiver, TryRecvError};
use futures_core::Stream;

use crate::core::Shared;
use crate::sync::lock;
use crate::{Event, FlushTracker, Offset};

impl<K> FlushTracker<K>
where
    K: crate::ShapeKey,
{
    /// A [`tokio::sync::watch::Receiver`] of the published watermark (feature `tokio`).
    ///
    /// It starts at the current watermark (marked seen) and is notified whenever a scan
    /// publishes a higher one; a slow receiver sees the latest value, never a lower one.
    /// The awaiting twin of [`wait_watermark`](FlushTracker::wait_watermark), which blocks a
    /// thread: in async code, await [`changed`](tokio::sync::watch::Receiver::changed)
    /// instead. The channel never closes while the tracker's state lives.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flushwatch::Error> {
    /// use std::time::Duration;
    /// use flushwatch::{Config, FlushTracker};
    ///
    /// let tracker = FlushTracker::new(Config::default().scan_interval(Duration::from_millis(5)))?;
    /// let orders = tracker.register("orders")?;
    /// let mut watermark = tracker.watch_watermark();
    /// assert_eq!(*watermark.borrow(), 0, "starts at the current watermark");
    /// let _scanner = tracker.spawn_scanner()?;
    ///
    /// tracker.track(0x1F8, &[orders.id()])?;
    /// orders.flushed(0x1F8);
    /// let acked = *watermark.wait_for(|&w| w >= 0x1F8).await.unwrap();
    /// assert_eq!(acked, 0x1F8); // acknowledge it to the source
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn watch_watermark(&self) -> ::tokio::sync::watch::Receiver<Offset> {
        self.shared().watermark.tx.subscribe()
    }

    /// The tracker's events as a [`Stream`] (feature `tokio`), an [`EventStream`]: the same
    /// queue as [`events`](FlushTracker::events), so each event reaches one receiver or
    /// stream, in the order they were emitted, and action events are never lost.
    ///
    /// The stream is `'static` and does not keep the tracker alive. It does not end while the
    /// tracker lives; once every handle, writer and the scanner thread are gone, it yields
    /// what is left in the queue and ends. Polling takes one short lock and never blocks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), flushwatch::Error> {
    /// use flushwatch::{Config, DownCause, Event, FlushTracker};
    ///
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let mut events = tracker.event_stream();
    /// let orders = tracker.register("orders")?;
    /// tracker.track(7, &[orders.id()])?;
    /// tokio::spawn(async move { drop(orders) }); // a consumer task that gave up while pending
    ///
    /// let next = std::future::poll_fn(|cx| {
    ///     futures_core::Stream::poll_next(std::pin::Pin::new(&mut events), cx)
    /// });
    /// assert_eq!(
    ///     next.await,
    ///     Some(Event::WriterDown { key: "orders", cause: DownCause::DroppedPending })
    /// );
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn event_stream(&self) -> EventStream<K> {
        let shared = self.shared();
        EventStream {
            rx: shared.events.receiver(),
            shared: crate::sync::Arc::downgrade(shared),
        }
    }
}

/// The tracker's events as a [`futures_core::Stream`] (feature `tokio`), from
/// [`FlushTracker::event_stream`]: `Send` (for a `Send` key), `Unpin` and `'static`.
///
/// It takes from the same queue as [`Events`](crate::Events): each event reaches one receiver
/// or stream. It does not keep the tracker alive, and it ends (`None`) only once the tracker,
/// its writers and its scanner are all gone and the queue is drained. Dropping it loses
/// nothing: the events stay queued.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "a stream does nothing unless polled"]
pub struct EventStream<K> {
    rx: Receiver<Event<K>>,
    shared: Weak<Shared<K>>,
}

/// Nothing in the stream is ever pinned (it is a channel handle and a weak pointer), whatever
/// `K` is.
impl<K> Unpin for EventStream<K> {}

impl<K> fmt::Debug for EventStream<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl<K> Stream for EventStream<K> {
    type Item = Event<K>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<K>>> {
        let this = self.get_mut();
        match this.rx.try_recv() {
            Ok(event) => return Poll::Ready(Some(event)),
            // Only once the shared state (which holds the sender) is gone.
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        let Some(shared) = this.shared.upgrade() else {
            // Nothing can emit any more: the last strong reference is gone. Acquire fence:
            // pairs with the Release decrement of that reference (a failed `upgrade` reads the
            // count Relaxed), so every event pushed before it is visible to the `try_recv`.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            // Drain what is left, then end.
            return Poll::Ready(this.rx.try_recv().ok());
        };
        {
            let mut wakers = lock(&shared.events.on_queued);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Re-check after registering: an event pushed before the registration is seen here;
        // one pushed after it is followed by a wake of the waker just registered.
        let result = match this.rx.try_recv() {
            Ok(event) => Poll::Ready(Some(event)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        };
        // If this was the last strong reference, the drop wakes the waker just registered and
        // the next poll ends the stream.
        drop(shared);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn assert_send_unpin_static<T: Send + Unpin + 'static>(_: &T) {}

    #[test]
    fn the_stream_is_send_unpin_and_static() {
        let tracker = FlushTracker::<String>::new(Config::default()).unwrap();
        assert_send_unpin_static(&tracker.event_stream());
    }
}
