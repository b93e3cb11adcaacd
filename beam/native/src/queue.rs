//! The one place that names flushwatch's event receiver type, and how an event looks in
//! Erlang terms.

use rustler::{Encoder, Env, Term};

use flushwatch::{DownCause, Event};

use crate::atoms;
use crate::term::{bin, millis};
use crate::Key;

/// A receiver of the tracker's one event queue.
pub(crate) type Queue = flushwatch::Events<Key>;

/// The tracker's event queue.
pub(crate) fn of(tracker: &flushwatch::FlushTracker<Key>) -> Queue {
    tracker.events()
}

/// Takes every event queued now, oldest first.
pub(crate) fn take(queue: &Queue) -> Vec<Event<Key>> {
    queue.try_iter().collect()
}

/// An event as the term a subscriber receives (see the `Flushwatch` module docs, "Events").
pub(crate) fn encode<'a>(env: Env<'a>, event: &Event<Key>) -> Term<'a> {
    match event {
        Event::Suspected { key, idle } => {
            (atoms::suspected(), bin(env, key), millis(idle)).encode(env)
        }
        Event::Stalled {
            key,
            idle,
            flushed,
            sent,
            evicted,
        } => {
            let detail = crate::term::map(
                env,
                &[
                    (atoms::idle_ms(), millis(idle).encode(env)),
                    (atoms::flushed(), flushed.encode(env)),
                    (atoms::sent(), sent.encode(env)),
                    (atoms::evicted(), evicted.encode(env)),
                ],
            );
            (atoms::stalled(), bin(env, key), detail).encode(env)
        }
        Event::WriterDown { key, cause } => {
            let cause = match cause {
                DownCause::Panicked => atoms::panicked(),
                DownCause::DroppedPending => atoms::dropped_pending(),
                _ => atoms::other(),
            };
            (atoms::writer_down(), bin(env, key), cause).encode(env)
        }
        Event::Lagging { key, lag } => (atoms::lagging(), bin(env, key), *lag).encode(env),
        Event::ScanPanicked { message } => (atoms::scan_panicked(), message.as_str()).encode(env),
        other => (atoms::other(), format!("{other:?}")).encode(env),
    }
}
