//! [`ShapeKey`]: the bounds on a shape's key, in one nameable place.

use std::hash::Hash;

/// What a shape's key must be: `Hash + Eq + Clone + Send + Sync + 'static` (with the
/// `tracing` feature, also [`Debug`](std::fmt::Debug): the stall warnings name the shape).
///
/// Implemented for every type with those bounds; it cannot be implemented otherwise. Name it
/// in generic code that holds a tracker:
///
/// ```
/// use flushwatch::{FlushTracker, ShapeKey};
///
/// fn registered<K: ShapeKey>(tracker: &FlushTracker<K>, key: &K) -> bool {
///     tracker.id_of(key).is_some()
/// }
/// ```
///
/// Without `tracing`, a key needs no `Debug`:
///
/// ```
/// # #[cfg(not(feature = "tracing"))] {
/// use flushwatch::{Config, FlushTracker};
///
/// #[derive(Hash, PartialEq, Eq, Clone)]
/// struct Opaque(u64); // no Debug
///
/// let tracker = FlushTracker::new(Config::default())?;
/// let w = tracker.register(Opaque(1))?;
/// tracker.track(5, &[w.id()])?;
/// w.flushed(5);
/// tracker.scan();
/// assert_eq!(tracker.watermark(), 5);
/// # }
/// # Ok::<(), flushwatch::Error>(())
/// ```
#[cfg(not(feature = "tracing"))]
pub trait ShapeKey: Hash + Eq + Clone + Send + Sync + 'static {}

#[cfg(not(feature = "tracing"))]
impl<K: Hash + Eq + Clone + Send + Sync + 'static> ShapeKey for K {}

/// What a shape's key must be: `Hash + Eq + Clone + Send + Sync + 'static` (with the
/// `tracing` feature, also [`Debug`](std::fmt::Debug): the stall warnings name the shape).
///
/// Implemented for every type with those bounds; it cannot be implemented otherwise. Name it
/// in generic code that holds a tracker:
///
/// ```
/// use flushwatch::{FlushTracker, ShapeKey};
///
/// fn registered<K: ShapeKey>(tracker: &FlushTracker<K>, key: &K) -> bool {
///     tracker.id_of(key).is_some()
/// }
/// ```
#[cfg(feature = "tracing")]
pub trait ShapeKey: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static {}

#[cfg(feature = "tracing")]
impl<K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static> ShapeKey for K {}
