//! The one place that looks shapes up by key. Keys are binaries (`Arc<[u8]>`, cheap to clone
//! into events); lookups borrow the bytes (`Arc<[u8]>: Borrow<[u8]>`), no allocation.

use flushwatch::{FlushTracker, ShapeId, ShapeStatus};

use crate::Key;

pub(crate) fn id_of(t: &FlushTracker<Key>, bytes: &[u8]) -> Option<ShapeId> {
    t.id_of(bytes)
}

pub(crate) fn remove(t: &FlushTracker<Key>, bytes: &[u8]) -> bool {
    t.remove(bytes)
}

pub(crate) fn status(t: &FlushTracker<Key>, bytes: &[u8]) -> Option<ShapeStatus<Key>> {
    t.status(bytes)
}
