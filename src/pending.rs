//! The pending set: the slots a scan visits, so that a scan costs what the pending shapes cost,
//! not what the registered ones do.
//!
//! # Ground rules
//!
//! - [`Listed`] is the producer's half, behind the producer lock. `listed[i]` says that slot `i`
//!   is in the scanner's set or waiting in `incoming` for the next scan to take it.
//! - `track` lists every slot it records a commit for: a shape becomes pending only in `track`,
//!   so **every live pending shape is listed**.
//! - The scanner (scan lock held) drains `incoming` under the producer lock at the start of a
//!   scan, after it read `last_seen`: every slot listed by a `track` at or before that
//!   `last_seen` is then in its set.
//! - The scanner unlists a slot only under the producer lock, after proving *there* that the
//!   slot is caught up (`flushed >= sent`, with `sent` exact because only `track` writes it,
//!   under the same lock, and `flushed` only growing) or no longer live. A later `track` then
//!   finds it unlisted and lists it again. This is the race between the scanner's clear and a
//!   concurrent `track`, closed by the lock rather than by a fence (loom model
//!   `loom-tests/tests/pending_set.rs`).
//! - A slot's reuse by a new shape needs no care: the new shape starts caught up, and a stale
//!   entry of the old shape only makes the scanner visit the slot once more.

/// The producer's half of the pending set.
#[derive(Default)]
pub(crate) struct Listed {
    listed: Vec<bool>,
    incoming: Vec<u32>,
}

impl Listed {
    /// Makes sure the scanner visits slot `index` (producer lock held).
    #[inline]
    pub(crate) fn list(&mut self, index: u32) {
        let i = index as usize;
        if i >= self.listed.len() {
            self.listed.resize((i + 1).next_power_of_two(), false);
        }
        if !self.listed[i] {
            self.listed[i] = true;
            self.incoming.push(index);
        }
    }

    /// The slots listed since the scanner last drained this (producer lock held).
    pub(crate) fn incoming(&mut self) -> &mut Vec<u32> {
        &mut self.incoming
    }

    /// Unlists slot `index` (producer lock held; the caller proved it caught up or not live).
    pub(crate) fn unlist(&mut self, index: u32) {
        if let Some(l) = self.listed.get_mut(index as usize) {
            *l = false;
        }
    }
}
