//! Parsing `test_decoding` output and formatting LSNs. Pure functions, unit-tested.
//!
//! `test_decoding` (the output plugin shipped with PostgreSQL's contrib) prints one text row
//! per event:
//!
//! ```text
//! BEGIN 735
//! table public.orders: INSERT: id[bigint]:1 note[text]:'hello'
//! table public.orders: UPDATE: id[bigint]:1 note[text]:'bye'
//! COMMIT 735
//! ```
//!
//! Table names are printed with `quote_qualified_identifier`, so a name that needs quoting
//! (`public."odd: name"`) arrives quoted, with embedded quotes doubled.

use std::fmt;

/// One decoded row of `test_decoding` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row<'a> {
    /// `BEGIN [xid]`.
    Begin,
    /// `COMMIT [xid]`: the row's `lsn` is the end of the commit record.
    Commit,
    /// A change to a table: its qualified name as printed (`public.orders`).
    Change {
        /// The qualified table name, as printed (quotes kept).
        table: &'a str,
        /// `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`.
        action: &'a str,
    },
    /// Anything else (`message: ...` rows): carried with the transaction, routed nowhere.
    Other,
}

/// Classifies one `data` value of `pg_logical_slot_get_changes`.
pub fn parse(data: &str) -> Row<'_> {
    if data == "BEGIN" || data.starts_with("BEGIN ") {
        return Row::Begin;
    }
    if data == "COMMIT" || data.starts_with("COMMIT ") {
        return Row::Commit;
    }
    if let Some(rest) = data.strip_prefix("table ") {
        if let Some(len) = qualified_name_len(rest) {
            let (table, after) = rest.split_at(len);
            if let Some(after) = after.strip_prefix(": ") {
                let action = after.split(':').next().unwrap_or("");
                return Row::Change { table, action };
            }
        }
    }
    Row::Other
}

/// Length of the qualified identifier at the start of `s`: `ident ('.' ident)*`, where an
/// identifier is either `"..."` (with `""` for a quote) or a run of characters other than
/// `.`, `:`, space and `"`.
fn qualified_name_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            let start = i;
            while let Some(&c) = b.get(i) {
                if matches!(c, b'.' | b':' | b' ' | b'"') {
                    break;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(i);
        }
    }
}

/// The value of the first column of an `INSERT` row when it is an integer named `column`
/// (`id[bigint]:42` gives `Some(42)` for `column == "id"`).
pub fn insert_id(data: &str, column: &str) -> Option<(String, i64)> {
    let Row::Change {
        table,
        action: "INSERT",
    } = parse(data)
    else {
        return None;
    };
    let cols = data.split_once(": INSERT: ")?.1;
    let rest = cols.strip_prefix(column)?.strip_prefix('[')?;
    let (_ty, rest) = rest.split_once("]:")?;
    let digits: &str = rest.split(' ').next()?;
    Some((table.to_string(), digits.parse().ok()?))
}

/// An LSN in PostgreSQL's text form (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A file name for a shape's output: the table name with anything but `[A-Za-z0-9_.-]`
/// replaced by `_` (quotes included), so `public."odd: name"` gives `public._odd__name_`.
pub fn file_stem(table: &str) -> String {
    table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_commit_and_changes() {
        assert_eq!(parse("BEGIN 735"), Row::Begin);
        assert_eq!(parse("BEGIN"), Row::Begin);
        assert_eq!(parse("COMMIT 735"), Row::Commit);
        assert_eq!(
            parse("table public.t1: INSERT: id[bigint]:5 payload[text]:'a: b'"),
            Row::Change {
                table: "public.t1",
                action: "INSERT"
            }
        );
        assert_eq!(
            parse("table public.t1: TRUNCATE: (no-flags)"),
            Row::Change {
                table: "public.t1",
                action: "TRUNCATE"
            }
        );
        assert_eq!(
            parse("message: transactional: 1 prefix: p, sz: 1 content:x"),
            Row::Other
        );
        assert_eq!(parse("BEGINNING"), Row::Other);
    }

    #[test]
    fn quoted_names() {
        assert_eq!(
            parse(r#"table "my schema"."odd: ""name""": DELETE: id[integer]:1"#),
            Row::Change {
                table: r#""my schema"."odd: ""name""""#,
                action: "DELETE"
            }
        );
        assert_eq!(parse(r#"table "unterminated: INSERT: x"#), Row::Other);
    }

    #[test]
    fn insert_ids() {
        assert_eq!(
            insert_id(
                "table public.t1: INSERT: id[bigint]:42 payload[text]:'x'",
                "id"
            ),
            Some(("public.t1".to_string(), 42))
        );
        assert_eq!(
            insert_id("table public.t1: UPDATE: id[bigint]:42", "id"),
            None
        );
        assert_eq!(
            insert_id("table public.t1: INSERT: other[bigint]:42", "id"),
            None
        );
    }

    #[test]
    fn lsn_text() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem(r#"public."odd: name""#), "public._odd__name_");
        assert_eq!(file_stem("public.t0"), "public.t0");
    }
}
