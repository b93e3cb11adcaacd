//! Loom models of flushwatch's race windows live in `tests/`, one file per race; this library
//! holds only what they share: a model runner with a per-model preemption bound, a tracker on a
//! mock clock, and the safety bound computed from what each thread of a model did.
//!
//! Run them with `scripts/loom` (or `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! cargo test -p flushwatch-loom-tests --release`). See `README.md` beside this crate.
//!
//! Without `--cfg loom` this crate is empty and its tests compile to nothing, so a plain
//! `cargo test --workspace` stays fast.

#![cfg_attr(not(loom), allow(unused))]

#[cfg(loom)]
pub use harness::*;

#[cfg(loom)]
mod harness {
    use std::time::Duration;

    use flushwatch::{Clock, MockClock};
    use flushwatch::{Config, Event, FlushTracker, Offset, Writer};
    // `Clock::mock` hands out a std `Arc` (made outside any model is fine).
    use std::sync::Arc;

    /// Runs `f` under every interleaving loom explores with at most `bound` preemptions
    /// (`LOOM_MAX_PREEMPTIONS` overrides it, to explore deeper by hand).
    pub fn explore<F>(bound: usize, f: F)
    where
        F: Fn() + Sync + Send + 'static,
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(bound);
        }
        // The scans visit every slot of a page and take several locks: give the branch
        // budget room (the default of 1 000 is meant for single data structures).
        builder.max_branches = builder.max_branches.max(10_000);
        // A std counter (outside the model): how many executions loom explored, so a model
        // that silently explores almost nothing shows up in the test output.
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        let started = std::time::Instant::now();
        builder.check(move || {
            // Relaxed: a statistic, read after `check` returns.
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        });
        eprintln!(
            "loom: {} executions in {:.2?} (preemption bound {:?})",
            // Relaxed: `check` has returned; every execution has finished.
            runs.load(std::sync::atomic::Ordering::Relaxed),
            started.elapsed(),
            builder.preemption_bound,
        );
    }

    /// One millisecond of mock time.
    pub const MS: Duration = Duration::from_millis(1);

    /// A small configuration for models: a mock clock, a small event queue (loom rebuilds the
    /// tracker on every execution), no lagging classifier, and a scan interval so long that a
    /// spawned scanner does exactly one scan and then waits for its stop (under loom a
    /// `Condvar` timeout is not modelled, and real time never reaches the next grid point).
    pub fn config() -> (Config, Arc<MockClock>) {
        let (clock, mock) = Clock::mock();
        let config = Config::default()
            .clock(clock)
            .event_capacity(16)
            .lag_window(0)
            .scan_interval(Duration::from_secs(3600));
        (config, mock)
    }

    /// A tracker on a mock clock with the defaults of [`config`] (grace 60 s, challenge 5 s:
    /// nothing stalls unless the model moves the clock).
    pub fn tracker() -> (FlushTracker<&'static str>, Arc<MockClock>) {
        let (config, mock) = config();
        (FlushTracker::new(config).expect("valid config"), mock)
    }

    /// What a model knows of one shape when it checks the safety invariant.
    #[derive(Debug, Clone, Copy)]
    pub struct ShapeFacts<'a> {
        /// Every commit tracked for the shape.
        pub tracked: &'a [Offset],
        /// The highest position the shape's consumer made durable (and reported) before the
        /// check: every tracked commit `<=` it is durable. A position it received (a commit,
        /// or the `Tracked::previous` of one), never arithmetic on a commit.
        pub durable: Offset,
        /// Whether the shape still counts (not evicted, removed, retired or dropped) as far as
        /// the checked scan is concerned.
        pub live: bool,
    }

    /// The safety bound of the contract at transaction granularity: the largest of `positions`
    /// (`start_at` and every commit handed to `track` in the model, in any order) such that
    /// every commit `<=` it is durable in every live shape it was tracked for (`docs/contract.md`).
    ///
    /// Positions are sparse: the bound is always one of `positions`, never a commit minus one
    /// (acknowledging `c - 1` acknowledges part of `c` under Postgres' end-LSN convention).
    pub fn safe_bound(positions: &[Offset], shapes: &[ShapeFacts<'_>]) -> Offset {
        for s in shapes {
            for c in s.tracked {
                assert!(
                    positions.contains(c),
                    "model error: commit {c} tracked for a shape is not in the positions {positions:?}"
                );
            }
        }
        // The first commit some live shape has not made durable.
        let first_undurable = shapes
            .iter()
            .filter(|s| s.live)
            .filter_map(|s| s.tracked.iter().copied().filter(|&c| c > s.durable).min())
            .min();
        positions
            .iter()
            .copied()
            .filter(|&p| first_undurable.is_none_or(|c| p < c))
            .max()
            .expect("positions hold start_at, which is below every commit")
    }

    /// Asserts that a published `watermark` is `start_at` or a tracked commit (one of
    /// `positions`): never a position between two commits.
    pub fn assert_position(watermark: Offset, positions: &[Offset], context: &dyn std::fmt::Debug) {
        assert!(
            positions.contains(&watermark),
            "published {watermark}, which is neither start_at nor a tracked commit \
             {positions:?}: {context:?}"
        );
    }

    /// Asserts the safety invariant for a published `watermark` (context: the scan report):
    /// it is one of `positions` ([`assert_position`]) and at most [`safe_bound`]. Returns the
    /// bound it was checked against.
    pub fn assert_safe(
        watermark: Offset,
        positions: &[Offset],
        shapes: &[ShapeFacts<'_>],
        context: &dyn std::fmt::Debug,
    ) -> Offset {
        assert_position(watermark, positions, context);
        let bound = safe_bound(positions, shapes);
        assert!(
            watermark <= bound,
            "unsafe: {watermark} > {bound}: {context:?}"
        );
        bound
    }

    /// The positions of the [`a_pending_b_caught_up`] fixture: `start_at` and its commits.
    pub const AB_POSITIONS: [Offset; 3] = [0, 10, 25];

    /// The fixture of the models that end or stall a shape, on sparse positions: `a` tracked
    /// at 10 and 25 (pending, flushed 0: raised to `start_at` when 10 made it pending), `b`
    /// tracked at 10 and caught up; `last_seen` is 25. Check it with [`assert_safe_ab`].
    pub fn a_pending_b_caught_up(
        t: &FlushTracker<&'static str>,
    ) -> (Writer<&'static str>, Writer<&'static str>) {
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        let tr = t.track(10, &[a.id(), b.id()]).unwrap();
        assert_eq!((tr.tracked, tr.previous), (2, 0));
        let tr = t.track(25, &[a.id()]).unwrap();
        assert_eq!((tr.tracked, tr.previous), (1, 10));
        b.flushed(10);
        (a, b)
    }

    /// [`assert_safe`] for the [`a_pending_b_caught_up`] fixture (positions
    /// [`AB_POSITIONS`]): `a` made `a_durable` durable and counts if `a_live`; `b` is durable
    /// at 10 and counts.
    pub fn assert_safe_ab(
        watermark: Offset,
        a_durable: Offset,
        a_live: bool,
        context: &dyn std::fmt::Debug,
    ) -> Offset {
        assert_safe(
            watermark,
            &AB_POSITIONS,
            &[
                ShapeFacts {
                    tracked: &[10, 25],
                    durable: a_durable,
                    live: a_live,
                },
                ShapeFacts {
                    tracked: &[10],
                    durable: 10,
                    live: true,
                },
            ],
            context,
        )
    }

    /// A flag that a thread ending a shape sets once its call returned; a model reads it just
    /// before a step to know whether the end happened before that step.
    #[derive(Clone)]
    pub struct Returned(loom::sync::Arc<loom::sync::atomic::AtomicBool>);

    impl Returned {
        /// Not returned yet.
        pub fn new() -> Self {
            Returned(loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(
                false,
            )))
        }

        /// The end's call returned (everything it did before is published).
        pub fn set(&self) {
            // Release: pairs with the Acquire load in `get`.
            self.0.store(true, loom::sync::atomic::Ordering::Release);
        }

        /// Whether the end's call has returned; if so, everything it did is visible.
        pub fn get(&self) -> bool {
            // Acquire: pairs with the Release store in `set`.
            self.0.load(loom::sync::atomic::Ordering::Acquire)
        }
    }

    impl Default for Returned {
        fn default() -> Self {
            Self::new()
        }
    }

    /// `remove(key)` on a new thread, which asserts that it ended the shape and then sets the
    /// returned flag.
    pub fn spawn_remove(
        t: &FlushTracker<&'static str>,
        key: &'static str,
    ) -> (loom::thread::JoinHandle<()>, Returned) {
        let returned = Returned::new();
        let remover = {
            let (t, returned) = (t.clone(), returned.clone());
            loom::thread::spawn(move || {
                assert!(t.remove(&key), "`{key}` was live: remove ends it");
                returned.set();
            })
        };
        (remover, returned)
    }

    /// Checks a scan of the [`a_pending_b_caught_up`] fixture that raced the end of `a`, which
    /// made `a_durable` durable: safe ([`assert_safe_ab`]), and not counting `a` if the end had
    /// returned before the scan started (`ended_before`). Returns whether it counted `a`.
    pub fn check_scan_vs_end_of_a(
        r: &flushwatch::ScanReport<&'static str>,
        a_durable: Offset,
        ended_before: bool,
    ) -> bool {
        // `b` is caught up, so the scan counted `a` iff it saw one pending shape.
        let saw_a = r.pending == 1;
        assert!(r.pending <= 1, "{r:?}");
        assert_safe_ab(r.watermark, a_durable, saw_a, r);
        if ended_before {
            assert!(
                !saw_a,
                "an end that returned before the scan counts at once: {r:?}"
            );
        }
        saw_a
    }

    /// The [`a_pending_b_caught_up`] fixture with zero grace and challenge under `policy`, at
    /// tick 0: the first scan after the clock moves suspects `a`, the next one acts.
    pub fn stalling(
        policy: flushwatch::StallPolicy,
    ) -> (
        FlushTracker<&'static str>,
        Arc<MockClock>,
        Writer<&'static str>,
        Writer<&'static str>,
    ) {
        let (config, mock) = config();
        let t = FlushTracker::new(
            config
                .grace(Duration::ZERO)
                .challenge(Duration::ZERO)
                .stall_policy(policy),
        )
        .expect("valid config");
        let (a, b) = a_pending_b_caught_up(&t);
        (t, mock, a, b)
    }

    /// [`stalling`] under `StallPolicy::Evict`, `a` already suspected and overdue: the next
    /// scan evicts it. Events drained.
    pub fn about_to_evict() -> (
        FlushTracker<&'static str>,
        Writer<&'static str>,
        Writer<&'static str>,
    ) {
        let (t, mock, a, b) = stalling(flushwatch::StallPolicy::Evict);
        mock.increment(10 * MS);
        assert_eq!(t.scan().suspected, vec!["a"]);
        mock.increment(10 * MS);
        drain(&t);
        (t, a, b)
    }

    /// Every event queued so far.
    pub fn drain<K>(tracker: &FlushTracker<K>) -> Vec<Event<K>>
    where
        K: std::hash::Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        tracker.events().try_iter().collect()
    }
}
