//! `pg-pipeline verify`: no acknowledged row is missing from the files.
//!
//! Run while no pipeline runs (after a kill, say). It reads, in this order:
//! 1. every row of every table (what is committed now), then flushes the WAL;
//! 2. the transactions the ack slot has not acknowledged yet (`pg_logical_slot_peek_changes`
//!    on the slot: what a restarted pipeline will replay);
//! 3. every row in the shape files.
//!
//! A row from 1 that is in neither 2 nor 3 was acknowledged to PostgreSQL without being
//! written: data loss. Rows seen more than once in the files were replayed after a crash
//! (the window between the last acknowledgement and the crash): duplicates, counted.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls};

use crate::{decode, files};

/// Options of `pg-pipeline verify`.
#[derive(Debug, Clone)]
pub struct VerifyOpts {
    pub conn: String,
    pub slot: String,
    pub out: PathBuf,
    pub tables: usize,
    pub caught_up: bool,
}

pub fn run(o: &VerifyOpts) -> Result<()> {
    let mut client = Client::connect(&o.conn, NoTls).context("connecting to PostgreSQL")?;

    let mut committed: HashMap<String, Vec<i64>> = HashMap::new();
    for i in 0..o.tables {
        let ids = client
            .query(&format!("SELECT id FROM public.t{i}"), &[])?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        committed.insert(format!("public.t{i}"), ids);
    }

    // Rows are visible once committed, but logical decoding reads only WAL that is flushed,
    // and with synchronous_commit = off a commit record can wait in memory. A synchronous
    // commit of our own flushes the WAL up to it, so the peek below sees every commit above.
    client.batch_execute(
        "SET synchronous_commit = on; BEGIN; SELECT pg_current_xact_id(); COMMIT;",
    )?;
    let unacked = unacknowledged(&mut client, &o.slot)?;
    let in_files = files::inserted_rows(&o.out, "id")
        .with_context(|| format!("reading {}", o.out.display()))?;

    let (mut db_rows, mut written, mut pending, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    for (table, ids) in &committed {
        let seen = in_files.get(table);
        let tail = unacked.get(table);
        for id in ids {
            db_rows += 1;
            if seen.is_some_and(|s| s.contains_key(id)) {
                written += 1;
            } else if tail.is_some_and(|t| t.contains(id)) {
                pending += 1;
            } else {
                lost += 1;
                if examples.len() < 5 {
                    examples.push(format!("{table} id={id}"));
                }
            }
        }
    }
    let known: HashMap<&String, HashSet<i64>> = committed
        .iter()
        .map(|(t, ids)| (t, ids.iter().copied().collect()))
        .collect();
    let (mut duplicates, mut max_copies, mut extra) = (0u64, 0u32, 0u64);
    for (table, ids) in &in_files {
        for (id, &n) in ids {
            duplicates += u64::from(n - 1);
            max_copies = max_copies.max(n);
            if !known.get(table).is_some_and(|k| k.contains(id)) {
                extra += 1;
            }
        }
    }
    println!(
        "verify: db_rows={db_rows} in_files={written} unacked={pending} lost={lost} duplicates={duplicates} max_copies={max_copies} extra={extra}"
    );
    if lost > 0 {
        bail!("{lost} committed rows are neither in the files nor unacknowledged (e.g. {examples:?}): data loss");
    }
    if extra > 0 {
        bail!("{extra} rows in the files were never committed");
    }
    if o.caught_up && pending > 0 {
        bail!("{pending} committed rows are not acknowledged yet, expected the pipeline to have caught up");
    }
    Ok(())
}

/// The inserted rows of the transactions after `slot`'s confirmed position. Retries while
/// the slot is briefly held by a dying backend.
fn unacknowledged(client: &mut Client, slot: &str) -> Result<HashMap<String, HashSet<i64>>> {
    let mut tries = 0;
    let rows = loop {
        match client.query(
            "SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL, 'skip-empty-xacts', '1')",
            &[&slot],
        ) {
            Ok(rows) => break rows,
            Err(e) if tries < 50 && e.to_string().contains("active for PID") => {
                tries += 1;
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e).context("peeking the ack slot"),
        }
    };
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    for row in rows {
        if let Some((table, id)) = decode::insert_id(row.get(0), "id") {
            out.entry(table).or_default().insert(id);
        }
    }
    Ok(out)
}
