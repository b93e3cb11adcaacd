//! A slot's state word: its layout and the pure functions over it. The word itself is an
//! atomic of the slot (`slot.rs`, where its orderings are); nothing here touches memory.

// --- the state word -------------------------------------------------------------------------
//
// bits 0..4   phase
// bit  4      SUSPECTED (only with LIVE)
// bit  5      DEFERRED: set by every `defer`, cleared by the scan that sees it (see below)
// bits 8..32  counter: bumped by `defer` and by clearing a suspicion, so that a CAS by the
//             scanner that expected the word it saw at suspicion fails if anything answered
// bits 32..64 low 32 bits of the slot's generation
//
// The counter wraps after 2^24 bumps, so it alone cannot prove that a word the scan saw
// before is unchanged: exactly 2^24 defers between two looks would leave the word as it was,
// and a shape that deferred a moment ago would be suspected. DEFERRED closes that: the scan
// clears it (a compare-and-swap loop, [`Slot::clear_deferred`]) before it decides anything
// from the word, so every defer after that sets a bit the scan's word lacks. The scan's later
// compare-and-swaps (suspect, stall, re-arm) from that word then fail however many defers
// came, and the next scan sees the bit: no wrap can hide a defer.

/// Mask of the phase bits.
pub(crate) const PHASE: u64 = 0xF;
/// Free: on the free list, or being initialised.
pub(crate) const FREE: u64 = 0;
/// Registered and counting.
pub(crate) const LIVE: u64 = 1;
/// Stalled and evicted by the scanner; the writer still exists and is inert.
pub(crate) const EVICTED: u64 = 2;
/// Removed by `FlushTracker::remove`; the writer still exists and is inert.
pub(crate) const REMOVED: u64 = 3;
/// Being evicted (by the scanner) or removed (by `remove`): no longer counting and inert, but
/// its key is not free yet, so `is_evicted()` stays false until the key is freed and `EVICTED`
/// or `REMOVED` is stored.
pub(crate) const ENDING: u64 = 4;
/// Suspected by the scanner and not answered yet.
pub(crate) const SUSPECTED: u64 = 0x10;
/// A `defer` since the scan last cleared the bit (see the state word's layout above).
pub(crate) const DEFERRED: u64 = 0x20;
const COUNTER_SHIFT: u32 = 8;
const COUNTER_MASK: u64 = 0xFF_FFFF << COUNTER_SHIFT;

/// The phase of a state word.
#[inline]
pub(crate) const fn phase(s: u64) -> u64 {
    s & PHASE
}

/// Whether a state word is `LIVE` (suspected or not).
#[inline]
pub(crate) const fn is_live(s: u64) -> bool {
    phase(s) == LIVE
}

/// Whether a state word is `LIVE` and suspected.
#[inline]
pub(crate) const fn is_suspected(s: u64) -> bool {
    s & (PHASE | SUSPECTED) == LIVE | SUSPECTED
}

/// The answer counter of a state word (bumped by every `defer` and answered challenge).
#[inline]
pub(crate) const fn counter(s: u64) -> u32 {
    ((s & COUNTER_MASK) >> COUNTER_SHIFT) as u32
}

/// The low 32 bits of the generation in a state word.
#[inline]
pub(crate) const fn gen32(s: u64) -> u32 {
    (s >> 32) as u32
}

/// A fresh `LIVE` word for generation `gen`.
#[inline]
pub(crate) const fn live_word(gen: u64) -> u64 {
    (gen << 32) | LIVE
}

/// `s` with its phase replaced (suspicion cleared); generation and counter kept.
#[inline]
pub(crate) const fn with_phase(s: u64, phase: u64) -> u64 {
    (s & !(PHASE | SUSPECTED)) | phase
}

/// `s` with its suspicion cleared and its counter bumped (wrapping within its 24 bits).
#[inline]
pub(crate) const fn answered(s: u64) -> u64 {
    let counter = ((s & COUNTER_MASK) + (1 << COUNTER_SHIFT)) & COUNTER_MASK;
    (s & !(COUNTER_MASK | SUSPECTED)) | counter
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn state_word_round_trips() {
        let w = live_word(7);
        assert!(is_live(w));
        assert!(!is_suspected(w));
        assert_eq!(gen32(w), 7);
        let s = w | SUSPECTED;
        assert!(is_suspected(s));
        let a = answered(s);
        assert!(is_live(a) && !is_suspected(a));
        assert_ne!(a, w, "answering bumps the counter");
        assert_eq!(gen32(a), 7);
        assert_eq!(phase(with_phase(s, EVICTED)), EVICTED);
        assert!(!is_suspected(with_phase(s, EVICTED)));
        // The counter wraps inside its bits and never touches the generation.
        let x = answered(w | COUNTER_MASK);
        assert_eq!(x & COUNTER_MASK, 0);
        assert_eq!(gen32(x), 7);
        assert!(is_live(x));
    }
}
