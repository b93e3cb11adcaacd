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
//! `snap` for a row copied from a snapshot by a rebuild; `<op>` is `I`, `U`, `D` (the key's
//! row is gone) or `T` (a `TRUNCATE` of the table: every row of the shape is gone; key 0);
//! `<payload>` is the text of the row's other columns joined by tabs, with `\`, tab and newline
//! escaped and NULL written `\N`. A file is the shape's log: applied in order, each line
//! setting or removing its key, it must end equal to the shape's rows. Replayed lines (after a
//! crash) repeat a suffix of the log, which applying again does not change.

use std::fmt;
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
        (0..self.tables.len())
            .flat_map(move |t| (0..self.per_table).map(move |k| ShapeKey { table: t as u16, k }))
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

/// Appends one line to `out`. `commit` is `None` for a snapshot row; a `None` column is SQL
/// NULL, written `\N` (a backslash in a value is written `\\`, so the two never meet).
pub fn push_line(out: &mut Vec<u8>, commit: Option<u64>, op: u8, key: i64, cols: &[Option<&[u8]>]) {
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
        let Some(col) = col else {
            out.extend_from_slice(b"\\N");
            continue;
        };
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

/// For tests: a fresh output directory for one table of four shapes, and its layout.
#[cfg(test)]
pub fn test_dir(name: &str) -> (Layout, PathBuf) {
    let out = std::env::temp_dir().join(format!("pgp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let layout = Layout {
        tables: vec!["public.t0".into()],
        per_table: 4,
        key_column: "id".into(),
    };
    std::fs::create_dir_all(layout.dir(&out, 0)).unwrap();
    (layout, out)
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
    fn routing() {
        let l = layout();
        assert_eq!(l.count(), 32);
        assert_eq!(l.keys().count(), 32);
        assert_eq!(l.shape_of(1, 35), ShapeKey { table: 1, k: 3 });
        // Negative keys: rem_euclid, never a shape index out of range (the workload's keys
        // are positive identities, where this is PostgreSQL's `key % N`).
        assert_eq!(l.shape_of(0, -1), ShapeKey { table: 0, k: 15 });
        assert_eq!(l.table_index("public.t1"), Some(1));
        assert_eq!(l.table_index("public.t9"), None);
        assert_eq!(
            quote_qualified("public.odd\"name"),
            "\"public\".\"odd\"\"name\""
        );
    }

    #[test]
    fn lines_escape_and_null() {
        let mut v = Vec::new();
        push_line(
            &mut v,
            None,
            b'I',
            1,
            &[Some(b"a\tb\nc\\"), None, Some(b"")],
        );
        push_line(&mut v, Some(0x10), b'D', 2, &[]);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "snap I 1 a\\tb\\nc\\\\\t\\N\t\n10 D 2 \n"
        );
    }
}
