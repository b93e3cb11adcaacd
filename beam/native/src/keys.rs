//! The one place that looks shapes up by key. Keys are binaries (`Arc<[u8]>`, cheap to clone
//! into events); lookups build a key from the borrowed bytes.

use flushwatch::{FlushTracker, ShapeId, ShapeStatus};

use crate::Key;

fn key(bytes: &[u8]) -> Key {
    bytes.into()
}

pub(crate) fn id_of(t: &FlushTracker<Key>, bytes: &[u8]) -> Option<ShapeId> {
    t.id_of(&key(bytes))
}

pub(crate) fn remove(t: &FlushTracker<Key>, bytes: &[u8]) -> bool {
    t.remove(&key(bytes))
}

pub(crate) fn status(t: &FlushTracker<Key>, bytes: &[u8]) -> Option<ShapeStatus<Key>> {
    t.status(&key(bytes))
}
