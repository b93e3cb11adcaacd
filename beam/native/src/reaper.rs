//! Where collected writers are dropped: one background thread, not the scheduler that
//! collected them.
//!
//! A writer's drop ends its shape (the producer lock, a map removal, maybe an event): about
//! 3 µs. A process holding many writers (an adapter holding 100k shapes, say) frees them all
//! when it exits, inside the scheduler that runs the exit: measured at ~290 ms for 100k
//! inline, a stalled scheduler. The resource's destructor hands the writer to this thread
//! instead (one channel send); the shape ends a moment later, the same way.

use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

use flushwatch::Writer;

use crate::Key;

static REAPER: OnceLock<Option<Sender<Writer<Key>>>> = OnceLock::new();

fn reaper() -> Option<&'static Sender<Writer<Key>>> {
    REAPER
        .get_or_init(|| {
            let (tx, rx) = channel::<Writer<Key>>();
            std::thread::Builder::new()
                .name("flushwatch-reaper".into())
                .spawn(move || rx.into_iter().for_each(drop))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Drops `writer` on the reaper thread (inline if that thread could not start).
pub(crate) fn hand_over(writer: Writer<Key>) {
    match reaper() {
        Some(tx) => {
            if let Err(returned) = tx.send(writer) {
                drop(returned.0);
            }
        }
        None => drop(writer),
    }
}
