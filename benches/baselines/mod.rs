//! The designs a user would otherwise pick, behind one interface, so that the benches can put
//! `flushwatch` next to them in the same run.
//!
//! Every baseline implements the behaviour of `docs/contract.md` at transaction granularity,
//! exactly like `flushwatch` and like the reference [`Model`]:
//!
//! - `track(c, shapes)`: `sent(s) = c`; a caught-up shape that becomes pending has its flushed
//!   position raised to the previous commit (`last_seen` before this `track`); `last_seen = c`.
//! - `flushed(s, p)`: `p` is clamped to `sent(s)`; only a strict increase is progress.
//! - `watermark()`: `min(last_seen, min flushed(s) over pending s)`.
//!
//! They are small on purpose, and honest: each uses the standard tools in the obvious way (std
//! `HashMap` with its default hasher, `dashmap` with its default hasher, `crossbeam_channel`), does
//! no work that its design does not need, and skips none that it does. Shapes are `u64` keys; a
//! bench gives the same `Vec` indexing to every design so that only the flush itself differs.
//!
//! | design | flush | watermark |
//! | --- | --- | --- |
//! | [`Electric`] | lock, map update, move the shape between two sets of an ordered tree | first tree key |
//! | [`MutexMap`] | lock, map update | lock, scan the map |
//! | [`Dash`] | `DashMap::get_mut` | scan the map |
//! | [`Actor`] | send a message to a tracker thread that owns the `Electric` structure | round trip |
//!
//! [`Floor`] is not a design but the floor of any design: two `Release` stores to a 64-byte
//! aligned slot plus a `Relaxed` read of a coarse tick in another cache line, with none of the
//! checks (clamp, progress, eviction) that a correct tracker needs.
//!
//! Each bench binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use flushwatch::{Config, FlushTracker, ShapeId, Writer};

/// A shape key, as the baselines see it.
pub type Shape = u64;

/// The operations every design offers. `Sync` so that the thread benches can share one instance.
pub trait Design: Send + Sync {
    /// The name used in bench ids and tables.
    const NAME: &'static str;
    /// An empty tracker with `start_at = 0`.
    fn create() -> Self;
    /// Registers a shape: caught up, nothing sent.
    fn register(&self, shape: Shape);
    /// The producer: commit `commit` (strictly increasing, >= 1) touches `shapes`.
    fn track(&self, commit: u64, shapes: &[Shape]);
    /// The consumer of `shape` reports `pos` durable: the hot path.
    fn flushed(&self, shape: Shape, pos: u64);
    /// `min(last_seen, min flushed over pending shapes)`. For [`Actor`] this is a round trip, so
    /// every message sent before it has been processed when it returns.
    fn watermark(&self) -> u64;
}

/// One shape's state: the highest commit tracked for it and the highest position durable for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub sent: u64,
    pub flushed: u64,
}

impl Entry {
    /// `flushed < sent`.
    #[inline]
    pub fn pending(&self) -> bool {
        self.flushed < self.sent
    }

    /// Applies `track(commit)`, `previous` being the commit tracked before it. Returns the new
    /// flushed position when the shape just became pending (raised to `previous`), `None` when
    /// it was pending already.
    #[inline]
    pub fn track(&mut self, commit: u64, previous: u64) -> Option<u64> {
        let was_pending = self.pending();
        self.sent = commit;
        if was_pending {
            None
        } else {
            // Caught up (`flushed == sent < commit`): durable for all it was sent before, and
            // the commits in between did not touch it.
            self.flushed = previous;
            Some(self.flushed)
        }
    }

    /// Applies a report. Returns the old flushed position when it was progress (the shape was
    /// pending then), `None` when the report was ignored.
    #[inline]
    pub fn flushed(&mut self, pos: u64) -> Option<u64> {
        let p = pos.min(self.sent);
        if p > self.flushed {
            let old = self.flushed;
            self.flushed = p;
            Some(old)
        } else {
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a bench is a bug in the bench: poisoning does not matter here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A commit far beyond any bench run: every shape tracked at it stays pending throughout.
pub const BIG: u64 = u64::MAX / 2;

/// The `flushwatch` setup every bench shares: `n` shapes (keys `0..n`) registered and tracked
/// at commit 1 (pending, flushed 0). The grace is far beyond any run, so a scan never suspects
/// anyone.
pub fn flushwatch_tracked(n: usize, config: Config) -> (FlushTracker<u64>, Vec<Writer<u64>>) {
    let config = config.grace(std::time::Duration::from_secs(24 * 3600));
    let tracker = FlushTracker::new(config).expect("valid config");
    let writers: Vec<Writer<u64>> = (0..n as u64)
        .map(|k| tracker.register(k).expect("fresh key"))
        .collect();
    let ids: Vec<ShapeId> = writers.iter().map(Writer::id).collect();
    tracker.track(1, &ids).expect("first commit");
    (tracker, writers)
}

/// [`flushwatch_tracked`], then every shape tracked again at [`BIG`]: all stay pending and any
/// report below `BIG` is progress.
pub fn flushwatch_pending(n: usize, config: Config) -> (FlushTracker<u64>, Vec<Writer<u64>>) {
    let (tracker, writers) = flushwatch_tracked(n, config);
    let ids: Vec<ShapeId> = writers.iter().map(Writer::id).collect();
    tracker.track(BIG, &ids).expect("increasing commit");
    (tracker, writers)
}

// ---------------------------------------------------------------------------------------------
// (a) Electric's FlushTracker, ported.

/// The state of Electric's `FlushTracker`: a map of shapes and an ordered tree from flushed
/// offset to the pending shapes at that offset, kept up to date on every report, so the
/// watermark is the first key of the tree.
#[derive(Default)]
pub struct ElectricState {
    shapes: HashMap<Shape, Entry>,
    min_tree: BTreeMap<u64, HashSet<Shape>>,
    last_seen: u64,
}

impl ElectricState {
    pub fn register(&mut self, shape: Shape) {
        self.shapes.entry(shape).or_default();
    }

    pub fn track(&mut self, commit: u64, shapes: &[Shape]) {
        for s in shapes {
            if let Some(e) = self.shapes.get_mut(s) {
                if let Some(raised) = e.track(commit, self.last_seen) {
                    self.min_tree.entry(raised).or_default().insert(*s);
                }
            }
        }
        self.last_seen = commit;
    }

    pub fn flushed(&mut self, shape: Shape, pos: u64) {
        let Some(e) = self.shapes.get_mut(&shape) else {
            return;
        };
        let Some(old) = e.flushed(pos) else { return };
        // Progress means the shape was pending at `old`: take it out of that set...
        if let Some(set) = self.min_tree.get_mut(&old) {
            set.remove(&shape);
            if set.is_empty() {
                self.min_tree.remove(&old);
            }
        }
        // ...and file it under its new position if it is still pending.
        if e.pending() {
            self.min_tree.entry(e.flushed).or_default().insert(shape);
        }
    }

    pub fn watermark(&self) -> u64 {
        match self.min_tree.first_key_value() {
            Some((k, _)) => (*k).min(self.last_seen),
            None => self.last_seen,
        }
    }
}

/// (a) Electric-style port: `Mutex<HashMap + BTreeMap<offset, HashSet<shape>>>`.
#[derive(Default)]
pub struct Electric(Mutex<ElectricState>);

impl Design for Electric {
    const NAME: &'static str = "electric";
    fn create() -> Self {
        Self::default()
    }
    fn register(&self, shape: Shape) {
        lock(&self.0).register(shape);
    }
    fn track(&self, commit: u64, shapes: &[Shape]) {
        lock(&self.0).track(commit, shapes);
    }
    fn flushed(&self, shape: Shape, pos: u64) {
        lock(&self.0).flushed(shape, pos);
    }
    fn watermark(&self) -> u64 {
        lock(&self.0).watermark()
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Mutex<HashMap>, no minimum structure.

#[derive(Default)]
struct MapState {
    shapes: HashMap<Shape, Entry>,
    last_seen: u64,
}

/// (b) `Mutex<HashMap>` without a minimum structure: flushes are cheap map updates, the
/// watermark is a scan of the map.
#[derive(Default)]
pub struct MutexMap(Mutex<MapState>);

impl Design for MutexMap {
    const NAME: &'static str = "mutex_hashmap";
    fn create() -> Self {
        Self::default()
    }
    fn register(&self, shape: Shape) {
        lock(&self.0).shapes.entry(shape).or_default();
    }
    fn track(&self, commit: u64, shapes: &[Shape]) {
        let mut st = lock(&self.0);
        let previous = st.last_seen;
        for s in shapes {
            if let Some(e) = st.shapes.get_mut(s) {
                e.track(commit, previous);
            }
        }
        st.last_seen = commit;
    }
    fn flushed(&self, shape: Shape, pos: u64) {
        if let Some(e) = lock(&self.0).shapes.get_mut(&shape) {
            e.flushed(pos);
        }
    }
    fn watermark(&self) -> u64 {
        let st = lock(&self.0);
        st.shapes
            .values()
            .filter(|e| e.pending())
            .map(|e| e.flushed)
            .fold(st.last_seen, u64::min)
    }
}

// ---------------------------------------------------------------------------------------------
// (c) DashMap::get_mut.

/// (c) `DashMap<shape, Entry>`: a flush is `get_mut` (a shard write lock); the watermark is a
/// scan of the shards. `track` is called by one producer at a time, as the contract
/// (`docs/contract.md`) allows.
#[derive(Default)]
pub struct Dash {
    shapes: DashMap<Shape, Entry>,
    last_seen: AtomicU64,
}

impl Design for Dash {
    const NAME: &'static str = "dashmap";
    fn create() -> Self {
        Self::default()
    }
    fn register(&self, shape: Shape) {
        self.shapes.entry(shape).or_default();
    }
    fn track(&self, commit: u64, shapes: &[Shape]) {
        // Relaxed: only the (single) producer stores `last_seen`; this is its own last store.
        let previous = self.last_seen.load(Ordering::Relaxed);
        for s in shapes {
            if let Some(mut e) = self.shapes.get_mut(s) {
                e.track(commit, previous);
            }
        }
        // Release: publishes the entries updated above (through the shard locks too) before
        // `last_seen`; pairs with the Acquire load in `watermark`, as the contract orders them.
        self.last_seen.store(commit, Ordering::Release);
    }
    fn flushed(&self, shape: Shape, pos: u64) {
        if let Some(mut e) = self.shapes.get_mut(&shape) {
            e.flushed(pos);
        }
    }
    fn watermark(&self) -> u64 {
        // Acquire: pairs with the Release store in `track`; read before the entries.
        let last_seen = self.last_seen.load(Ordering::Acquire);
        self.shapes
            .iter()
            .filter(|e| e.pending())
            .map(|e| e.flushed)
            .fold(last_seen, u64::min)
    }
}

// ---------------------------------------------------------------------------------------------
// (d) A central tracker thread fed through crossbeam_channel.

enum Msg {
    Register(Shape),
    Track(u64, Vec<Shape>),
    Flushed(Shape, u64),
    Watermark(Sender<u64>),
}

/// (d) The actor style: one tracker thread owns an [`ElectricState`]; producers and consumers
/// send it messages over an unbounded `crossbeam_channel` (a mailbox, like Electric's
/// GenServer). `flushed` only sends; `watermark` is a round trip, which the benches use to make
/// sure every message sent before it was processed, so their timings are end to end.
pub struct Actor {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

impl Actor {
    fn tx(&self) -> &Sender<Msg> {
        self.tx.as_ref().expect("actor is running")
    }

    fn serve(rx: Receiver<Msg>) {
        let mut st = ElectricState::default();
        for msg in rx {
            match msg {
                Msg::Register(s) => st.register(s),
                Msg::Track(c, shapes) => st.track(c, &shapes),
                Msg::Flushed(s, p) => st.flushed(s, p),
                Msg::Watermark(reply) => {
                    let _ = reply.send(st.watermark());
                }
            }
        }
    }
}

impl Design for Actor {
    const NAME: &'static str = "actor";
    fn create() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("baseline-actor".into())
            .spawn(move || Actor::serve(rx))
            .expect("spawn the actor thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
        }
    }
    fn register(&self, shape: Shape) {
        let _ = self.tx().send(Msg::Register(shape));
    }
    fn track(&self, commit: u64, shapes: &[Shape]) {
        let _ = self.tx().send(Msg::Track(commit, shapes.to_vec()));
    }
    fn flushed(&self, shape: Shape, pos: u64) {
        let _ = self.tx().send(Msg::Flushed(shape, pos));
    }
    fn watermark(&self) -> u64 {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let _ = self.tx().send(Msg::Watermark(reply));
        answer.recv().expect("the actor answers")
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        drop(self.tx.take()); // closes the mailbox: the thread drains it and returns
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The floor.

/// A coarse tick that the floor reads on every flush, alone in its cache line. Nobody advances
/// it during a bench: a ticker that writes it every millisecond would add one cache miss per
/// millisecond per flushing core, which is below what these benches resolve.
pub static COARSE_TICK: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(1));

/// The floor's per-shape slot: 64-byte aligned, so two slots never share a line.
#[repr(align(64))]
#[derive(Default)]
pub struct FloorSlot {
    flushed: AtomicU64,
    tick: AtomicU64,
    /// Only [`FloorSlot::flushed_checked`] reads it.
    sent: AtomicU64,
}

impl FloorSlot {
    /// A slot that was sent everything up to `sent` (for [`FloorSlot::flushed_checked`]).
    pub fn with_sent(sent: u64) -> Self {
        Self {
            sent: AtomicU64::new(sent),
            ..Self::default()
        }
    }

    /// The floor of a *correct* flush: the same two stores, after the two loads that the clamp
    /// to `sent` and the progress check need (from the slot's own line). This is the minimum
    /// any design that honours the contract's clamp and "only a strict increase is progress" pays;
    /// it still skips eviction and suspicion.
    #[inline]
    pub fn flushed_checked(&self, pos: u64) {
        // Acquire: pairs with a producer's Release store of `sent` (none runs in the floor).
        let pos = pos.min(self.sent.load(Ordering::Acquire));
        // Relaxed: only this slot's one writer stores `flushed`.
        if pos > self.flushed.load(Ordering::Relaxed) {
            // Relaxed: a coarse clock value; nothing is published through it.
            let now = COARSE_TICK.load(Ordering::Relaxed);
            // Relaxed: published by the Release store of `flushed` below.
            self.tick.store(now, Ordering::Relaxed);
            // Release: publishes the position (and the tick) to a scanner's Acquire load.
            self.flushed.store(pos, Ordering::Release);
        }
    }

    /// `flushed_checked` made monotonic under sharing: the position is raised with
    /// `fetch_max` (a compare-and-swap loop on x86) instead of a plain store, what a `Writer`
    /// that several threads may call at once would pay on every flush.
    #[inline]
    pub fn flushed_shared(&self, pos: u64) {
        // Acquire: pairs with a producer's Release store of `sent` (none runs in the floor).
        let pos = pos.min(self.sent.load(Ordering::Acquire));
        // Relaxed: a pre-check; the fetch_max below decides.
        if pos > self.flushed.load(Ordering::Relaxed) {
            // Relaxed: a coarse clock value; nothing is published through it.
            let now = COARSE_TICK.load(Ordering::Relaxed);
            // Relaxed: published by the Release fetch_max of `flushed` below.
            self.tick.store(now, Ordering::Relaxed);
            // Release: publishes the position (and the tick) to a scanner's Acquire load; the
            // read-modify-write never lowers it, whoever races.
            self.flushed.fetch_max(pos, Ordering::Release);
        }
    }

    /// Two `Release` stores and one `Relaxed` tick read: the least a lock-free slot with a
    /// progress tick can do, with no clamp and no progress check.
    #[inline]
    pub fn flushed(&self, pos: u64) {
        // Relaxed: a coarse clock value; nothing is published through it.
        let now = COARSE_TICK.load(Ordering::Relaxed);
        // Release: publishes the position to a scanner's Acquire load (none runs in the floor).
        self.flushed.store(pos, Ordering::Release);
        // Release: publishes the tick after the position, as a scanner would pair it.
        self.tick.store(now, Ordering::Release);
    }

    /// The last stored position, for the benches' sanity checks.
    pub fn position(&self) -> u64 {
        // Acquire: pairs with the Release store in `flushed`.
        self.flushed.load(Ordering::Acquire)
    }
}

/// The floor of any scan over per-shape cache lines: the minimum flushed position over the
/// pending slots (two `Acquire` loads from each slot's line, a compare, a min), with none of
/// the stall machine, the registration check or the lag classifier. `slots` is a slice, or a
/// strided walk over one (`slots.iter().step_by(100)`: the floor of a 1% pending set).
pub fn floor_scan<'a>(slots: impl IntoIterator<Item = &'a FloorSlot>, last_seen: u64) -> u64 {
    slots.into_iter().fold(last_seen, |min, s| {
        // Acquire: pairs with a producer's Release store of `sent`.
        let sent = s.sent.load(Ordering::Acquire);
        let flushed = s.position();
        if flushed < sent {
            min.min(flushed)
        } else {
            min
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The reference model and a self check, run by every bench before it measures anything.

/// The executable form of the watermark rules, as plain as possible: a vector of entries.
#[derive(Default)]
pub struct Model {
    shapes: Vec<Entry>,
    last_seen: u64,
}

impl Model {
    pub fn register(&mut self) {
        self.shapes.push(Entry::default());
    }
    pub fn track(&mut self, commit: u64, shapes: &[Shape]) {
        let mut seen = HashSet::new();
        for &s in shapes {
            if seen.insert(s) {
                self.shapes[s as usize].track(commit, self.last_seen);
            }
        }
        self.last_seen = commit;
    }
    pub fn flushed(&mut self, shape: Shape, pos: u64) {
        self.shapes[shape as usize].flushed(pos);
    }
    pub fn watermark(&self) -> u64 {
        self.shapes
            .iter()
            .filter(|e| e.pending())
            .map(|e| e.flushed)
            .fold(self.last_seen, u64::min)
    }
}

/// `flushwatch` behind the [`Design`] interface, for the self check only: the lookup through a
/// locked map makes it useless for timing (the benches drive `Writer`s directly).
pub struct FlushwatchAdapter {
    tracker: FlushTracker<u64>,
    writers: Mutex<HashMap<Shape, Writer<u64>>>,
    ids: Mutex<HashMap<Shape, ShapeId>>,
}

impl Design for FlushwatchAdapter {
    const NAME: &'static str = "flushwatch";
    fn create() -> Self {
        Self {
            tracker: FlushTracker::new(Config::default()).expect("default config"),
            writers: Mutex::default(),
            ids: Mutex::default(),
        }
    }
    fn register(&self, shape: Shape) {
        let w = self.tracker.register(shape).expect("fresh key");
        lock(&self.ids).insert(shape, w.id());
        lock(&self.writers).insert(shape, w);
    }
    fn track(&self, commit: u64, shapes: &[Shape]) {
        let ids = lock(&self.ids);
        let ids: Vec<ShapeId> = shapes.iter().map(|s| ids[s]).collect();
        self.tracker.track(commit, &ids).expect("increasing commit");
    }
    fn flushed(&self, shape: Shape, pos: u64) {
        lock(&self.writers)[&shape].flushed(pos);
    }
    fn watermark(&self) -> u64 {
        self.tracker.scan().watermark
    }
}

/// Whether a measurement that a bench makes outside criterion (named `id`) should run: not when
/// listing, testing or profiling, nor when the command line gives filters and none of them is a
/// substring of `id` (criterion's filters are regexes; plain substrings are what we honour).
pub fn wanted(id: &str) -> bool {
    const VALUED: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "--list" || a == "--test" || a == "--profile-time")
    {
        return false;
    }
    let mut filters = Vec::new();
    let mut skip_value = false;
    for a in &args {
        if skip_value {
            skip_value = false;
        } else if a.starts_with('-') {
            skip_value = VALUED.contains(&a.as_str());
        } else {
            filters.push(a.as_str());
        }
    }
    filters.is_empty() || filters.iter().any(|f| id.contains(f))
}

/// A tiny xorshift64 generator: deterministic, no dependency, ~1 ns per number.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` by multiply-shift (no division on the hot path).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// One step of the fixed scenario: what it does, the operation, the watermark after it.
type Step<'a, D> = (&'a str, &'a dyn Fn(&D), u64);

/// Runs a fixed scenario with hand-computed watermarks, then a random differential run against
/// [`Model`]. Panics on the first difference.
pub fn self_check<D: Design>() {
    let d = D::create();
    for s in 0..4 {
        d.register(s);
    }
    let steps: &[Step<D>] = &[
        ("nothing tracked", &|_| {}, 0),
        (
            "track 5 -> {0,1}: raised to start_at",
            &|d| d.track(5, &[0, 1]),
            0,
        ),
        ("0 flushes 5", &|d| d.flushed(0, 5), 0),
        (
            "1 overshoots to 100: clamped to 5",
            &|d| d.flushed(1, 100),
            5,
        ),
        ("track 10 -> {2}: raised to 5", &|d| d.track(10, &[2]), 5),
        ("2 reports 5 again: ignored", &|d| d.flushed(2, 5), 5),
        (
            "track 12 -> {0,2,2}: 0 raised to 10",
            &|d| d.track(12, &[0, 2, 2]),
            5,
        ),
        ("2 flushes 12", &|d| d.flushed(2, 12), 10),
        ("0 repeats 10: ignored", &|d| d.flushed(0, 10), 10),
        ("0 flushes 12", &|d| d.flushed(0, 12), 12),
        ("track 13 -> {3}", &|d| d.track(13, &[3]), 12),
    ];
    for (what, step, want) in steps {
        step(&d);
        let got = d.watermark();
        assert_eq!(
            got,
            *want,
            "{}: {what}: watermark {got}, want {want}",
            D::NAME
        );
    }

    const SHAPES: u64 = 16;
    let d = D::create();
    let mut model = Model::default();
    for s in 0..SHAPES {
        d.register(s);
        model.register();
    }
    let mut rng = XorShift::new(0x5eed_u64 ^ D::NAME.len() as u64);
    let mut commit = 0;
    for step in 0..2_000 {
        match rng.below(3) {
            0 => {
                commit += 1 + rng.below(3) as u64;
                let n = 1 + rng.below(4);
                let shapes: Vec<Shape> =
                    (0..n).map(|_| rng.below(SHAPES as usize) as u64).collect();
                d.track(commit, &shapes);
                model.track(commit, &shapes);
            }
            _ => {
                let s = rng.below(SHAPES as usize) as u64;
                let pos = rng.below(commit as usize + 3) as u64;
                d.flushed(s, pos);
                model.flushed(s, pos);
            }
        }
        assert_eq!(
            d.watermark(),
            model.watermark(),
            "{} differs from the model at step {step}",
            D::NAME
        );
    }
}

/// [`self_check`] for every design, `flushwatch` included.
pub fn self_check_all() {
    self_check::<Electric>();
    self_check::<MutexMap>();
    self_check::<Dash>();
    self_check::<Actor>();
    self_check::<FlushwatchAdapter>();
    let floor = FloorSlot::default();
    floor.flushed(7);
    assert_eq!(floor.position(), 7);
    let floor = FloorSlot::with_sent(10);
    floor.flushed_checked(12);
    assert_eq!(floor.position(), 10, "clamped to sent");
    floor.flushed_checked(4);
    assert_eq!(floor.position(), 10, "not progress: ignored");
}
