//! The published watermark, and the ways to wait for it.
//!
//! # Ground rules
//!
//! - Only a scan (scan lock held) calls [`Watermark::publish`], with a value above the current
//!   one: the published watermark never decreases.
//! - Readers load `value` (`Acquire`) without a lock. Waiters block on `cv` under `lock`; the
//!   publisher takes `lock` after storing the value, so a waiter that checked the value under
//!   `lock` and went to sleep is always woken by the next publication.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{lock, AtomicU64, Condvar, Mutex, Ordering};
use crate::Offset;

pub(crate) struct Watermark {
    value: CachePadded<AtomicU64>,
    lock: Mutex<()>,
    cv: Condvar,
    /// Feature `tokio`: every publication, for `FlushTracker::watch_watermark`.
    #[cfg(all(feature = "tokio", not(loom)))]
    pub(crate) tx: tokio::sync::watch::Sender<Offset>,
}

impl Watermark {
    pub(crate) fn new(start_at: Offset) -> Self {
        Watermark {
            value: CachePadded::new(AtomicU64::new(start_at)),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            #[cfg(all(feature = "tokio", not(loom)))]
            tx: tokio::sync::watch::Sender::new(start_at),
        }
    }

    /// The published watermark.
    #[inline]
    pub(crate) fn get(&self) -> Offset {
        // Acquire: pairs with the Release store in `publish`.
        self.value.load(Ordering::Acquire)
    }

    /// Publishes a higher watermark and wakes every waiter.
    pub(crate) fn publish(&self, w: Offset) {
        // Release: pairs with the Acquire loads in `get`.
        self.value.store(w, Ordering::Release);
        drop(lock(&self.lock));
        self.cv.notify_all();
        #[cfg(all(feature = "tokio", not(loom)))]
        self.tx.send_replace(w);
    }

    /// Blocks until the watermark is `>= at_least` or `timeout` passed; returns it. A timeout
    /// beyond `Instant`'s range waits for ever.
    pub(crate) fn wait(&self, at_least: Offset, timeout: Duration) -> Offset {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.lock);
        loop {
            let w = self.get();
            if w >= at_least {
                return w;
            }
            guard = match deadline {
                None => self.cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return w;
                    }
                    match self.cv.wait_timeout(guard, deadline - now) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }
}
