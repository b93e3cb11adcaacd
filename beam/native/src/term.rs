//! Small encoding helpers: binaries, maps with atom keys, durations, reports.

use std::time::Duration;

use rustler::types::atom::Atom;
use rustler::{Encoder, Env, NewBinary, Term};

use flushwatch::{ScanReport, ShapeStatus, Stats, Tracked};

use crate::atoms;
use crate::Key;

/// A copy of `bytes` as an Erlang binary.
pub(crate) fn bin<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    NewBinary::from_slice(env, bytes).into()
}

/// Whole milliseconds (saturating).
pub(crate) fn millis(d: &Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A map with atom keys. The keys are distinct literals at every call site, so building it
/// cannot fail; `nil` stands in if it ever did.
pub(crate) fn map<'a>(env: Env<'a>, pairs: &[(Atom, Term<'a>)]) -> Term<'a> {
    Term::map_from_pairs(env, pairs).unwrap_or_else(|_| atoms::nil().encode(env))
}

fn keys<'a>(env: Env<'a>, keys: &[Key]) -> Term<'a> {
    keys.iter()
        .map(|k| bin(env, k))
        .collect::<Vec<_>>()
        .encode(env)
}

fn opt_key<'a>(env: Env<'a>, key: Option<&Key>) -> Term<'a> {
    key.map_or_else(|| atoms::nil().encode(env), |k| bin(env, k))
}

/// `%{tracked:, skipped:, previous:}`.
pub(crate) fn tracked<'a>(env: Env<'a>, t: &Tracked, extra_skipped: usize) -> Term<'a> {
    map(
        env,
        &[
            (atoms::tracked(), t.tracked.encode(env)),
            (atoms::skipped(), (t.skipped + extra_skipped).encode(env)),
            (atoms::previous(), t.previous.encode(env)),
        ],
    )
}

/// A scan report as a map.
pub(crate) fn report<'a>(env: Env<'a>, r: &ScanReport<Key>) -> Term<'a> {
    map(
        env,
        &[
            (atoms::watermark(), r.watermark.encode(env)),
            (atoms::last_seen(), r.last_seen.encode(env)),
            (atoms::pending(), r.pending.encode(env)),
            (atoms::registered(), r.registered.encode(env)),
            (atoms::suspected(), keys(env, &r.suspected)),
            (atoms::stalled(), keys(env, &r.stalled)),
            (atoms::lagging(), keys(env, &r.lagging)),
            (atoms::pinned_by(), opt_key(env, r.pinned_by.as_ref())),
        ],
    )
}

/// A shape's status as a map, or `nil`.
pub(crate) fn status<'a>(env: Env<'a>, s: Option<&ShapeStatus<Key>>) -> Term<'a> {
    let Some(s) = s else {
        return atoms::nil().encode(env);
    };
    map(
        env,
        &[
            (atoms::key(), bin(env, &s.key)),
            (atoms::sent(), s.sent.encode(env)),
            (atoms::flushed(), s.flushed.encode(env)),
            (atoms::pending(), s.pending.encode(env)),
            (atoms::idle_ms(), millis(&s.idle).encode(env)),
            (atoms::suspected(), s.suspected.encode(env)),
            (atoms::lag(), s.lag.encode(env)),
        ],
    )
}

/// The tracker's counters as a map.
pub(crate) fn stats<'a>(env: Env<'a>, s: &Stats) -> Term<'a> {
    map(
        env,
        &[
            (atoms::registered(), s.registered.encode(env)),
            (atoms::pending(), s.pending.encode(env)),
            (atoms::suspected(), s.suspected.encode(env)),
            (atoms::stalled(), s.stalled.encode(env)),
            (atoms::evicted(), s.evicted.encode(env)),
            (atoms::writers_down(), s.writers_down.encode(env)),
            (atoms::events_dropped(), s.events_dropped.encode(env)),
            (atoms::scans(), s.scans.encode(env)),
            (atoms::scan_panics(), s.scan_panics.encode(env)),
            (
                atoms::last_scan_us(),
                u64::try_from(s.last_scan.as_micros())
                    .unwrap_or(u64::MAX)
                    .encode(env),
            ),
            (atoms::last_seen(), s.last_seen.encode(env)),
            (atoms::watermark(), s.watermark.encode(env)),
        ],
    )
}
