//! Race: two threads register the same key at once.
//!
//! `register` looks the key up, takes a slot under the producer lock, and only then inserts the
//! key into the map; the insertion replaces an existing entry only if it maps to the shape the
//! lookup saw ended (that shape's end unregisters it by id a moment later). Two registers of a
//! free key both pass the lookup, so the second to insert finds the first one's *live* shape in
//! the map and must fail (`Error::DuplicateShape`, "the existing shape is untouched"), giving
//! its slot back quietly.
//!
//! Checked in every interleaving (`register`'s docs: `DuplicateShape` "if `key` is registered;
//! the existing shape is untouched"): exactly one register succeeds and the other fails with
//! `DuplicateShape`; the key maps to the winner's id and `status` describes it; the loser leaves
//! nothing behind (one shape registered, no event, `track` counts the winner only); once the
//! winner's writer is dropped the key is free. A register that replaced the live entry
//! (`scripts/loom-mutations register-replaces-live`) would leave two writers for one key, one
//! of them unregistered.
//!
//! The key map (`DashMap`) is not a loom object, so loom does not see that a lookup which
//! finds another thread's entry acquires the shard lock that thread released after inserting
//! it. Without that edge loom lets the second register find the first one's entry and still
//! read its slot's state word as it was before the first register initialised it (not live),
//! take it for an ended shape and replace it: a failure no real execution has. The model's key
//! type ([`Key`]) puts the edge back: its `Hash`, which the map runs just before each lookup or
//! insertion (before it takes the shard lock, with no loom operation between the two; it
//! rehashes under the lock only when a table grows, which one key never makes it do), takes a
//! loom lock of its own. A lookup that finds an entry then hashed after its insertion
//! hashed, and so happens after everything its inserter did before: as with the shard lock.
//!
//! Bound: preemption bound 2: one preemption puts the second register's lookup between the
//! first one's lookup and its insertion, one brings it back.
#![cfg(loom)]

use std::fmt;
use std::hash::{Hash, Hasher};

use flushwatch::{Error, FlushTracker};
use flushwatch_loom_tests::{config, drain, explore};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A shape key whose `Hash` takes a loom lock, standing in for the key map's shard lock (see
/// the module docs). Equal by name.
#[derive(Clone)]
struct Key {
    name: &'static str,
    shard: Arc<Mutex<()>>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        drop(self.shard.lock().unwrap());
        self.name.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[test]
fn two_registers_of_one_key() {
    explore(2, || {
        let (config, _mock) = config();
        let t = FlushTracker::new(config).unwrap();
        let a = Key {
            name: "a",
            shard: Arc::new(Mutex::new(())),
        };
        let other = {
            let (t, a) = (t.clone(), a.clone());
            thread::spawn(move || t.register(a))
        };
        let mine = t.register(a.clone());
        let theirs = other.join().unwrap();

        let (winner, loser) = match (mine, theirs) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
            (mine, theirs) => panic!("two registers of one key: {mine:?} and {theirs:?}"),
        };
        assert_eq!(loser, Error::DuplicateShape);
        assert_eq!(t.id_of(&a), Some(winner.id()));
        let s = t.status(&a).expect("the winner is registered");
        assert_eq!((s.key, s.sent, s.pending), (a.clone(), 0, false));
        assert_eq!(t.stats().registered, 1, "the loser gave its slot back");
        assert_eq!(t.register(a.clone()).unwrap_err(), Error::DuplicateShape);

        let tr = t.track(10, &[winner.id()]).unwrap();
        assert_eq!((tr.tracked, tr.skipped), (1, 0));
        winner.flushed(10);
        assert_eq!(t.scan().watermark, 10);
        assert!(drain(&t).is_empty(), "a lost register is quiet");

        drop(winner);
        assert_eq!(t.id_of(&a), None, "the winner's drop frees the key");
        assert!(t.register(a.clone()).is_ok());
    });
}
