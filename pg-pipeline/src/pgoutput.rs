//! A small decoder of `pgoutput` messages (protocol version 1), the payloads of `XLogData`.
//!
//! `pgwire-replication` already turns `Begin`, `Commit` and logical `Message`s into events of
//! their own; everything else reaches us as raw bytes: `Relation` (the column names of a table,
//! sent before its first change in a session and again after a schema change), `Insert`,
//! `Update`, `Delete`, `Truncate`, and `Type` / `Origin` (ignored). The format is documented in
//! PostgreSQL's "Logical Replication Message Formats"; all integers are big-endian.
//!
//! Column values arrive in text form (we never ask for `binary`): `'t'` + length + bytes,
//! `'n'` for NULL, `'u'` for an unchanged TOASTed value. Values borrow from the message.

use std::fmt;

/// A decoding error: the message is shorter than its fields say, or has an unknown tag where
/// one of a fixed set is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn err<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(what.into()))
}

/// One column value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    /// An unchanged TOASTed value (only in the new tuple of an `Update`).
    Unchanged,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

/// A table's description, from a `Relation` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub columns: Vec<String>,
}

impl Relation {
    /// `namespace.name`, as the pipeline's `--tables` names tables.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value<'a>>,
    },
    Update {
        rel: u32,
        /// The old key (`'K'`) or old row (`'O'`), when the replica identity sends it.
        old: Option<Vec<Value<'a>>>,
        new: Vec<Value<'a>>,
    },
    Delete {
        rel: u32,
        old: Vec<Value<'a>>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// `Begin`, `Commit`, `Origin`, `Type`, `Message` and anything newer: not needed here.
    Other(u8),
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.b.len()
            ));
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstr(&mut self, what: &str) -> Result<String, DecodeError> {
        let Some(end) = self.b.iter().position(|&c| c == 0) else {
            return err(format!("unterminated {what}"));
        };
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Value<'a>>, DecodeError> {
        let n = self.u16("column count")?;
        let mut cols = Vec::with_capacity(n as usize);
        for _ in 0..n {
            cols.push(match self.u8("column kind")? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.u32("value length")? as usize;
                    let v = self.take(len, "value")?;
                    if kind == b't' {
                        Value::Text(v)
                    } else {
                        Value::Binary(v)
                    }
                }
                other => return err(format!("unknown column kind {other:#x}")),
            });
        }
        Ok(cols)
    }
}

/// Decodes one `XLogData` payload.
pub fn decode(data: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut c = Cursor { b: data };
    let tag = c.u8("tag")?;
    Ok(match tag {
        b'R' => {
            let id = c.u32("relation id")?;
            let namespace = c.cstr("namespace")?;
            let name = c.cstr("relation name")?;
            let _identity = c.u8("replica identity")?;
            let n = c.u16("column count")?;
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let _flags = c.u8("column flags")?;
                columns.push(c.cstr("column name")?);
                let _type = c.u32("column type")?;
                let _typmod = c.u32("column typmod")?;
            }
            Message::Relation(Relation {
                id,
                namespace: if namespace.is_empty() {
                    "pg_catalog".into() // pgoutput sends "" for pg_catalog
                } else {
                    namespace
                },
                name,
                columns,
            })
        }
        b'I' => {
            let rel = c.u32("relation id")?;
            match c.u8("insert tuple tag")? {
                b'N' => Message::Insert {
                    rel,
                    new: c.tuple()?,
                },
                other => return err(format!("insert: expected 'N', got {other:#x}")),
            }
        }
        b'U' => {
            let rel = c.u32("relation id")?;
            let mut old = None;
            let mut t = c.u8("update tuple tag")?;
            if t == b'K' || t == b'O' {
                old = Some(c.tuple()?);
                t = c.u8("update tuple tag")?;
            }
            if t != b'N' {
                return err(format!("update: expected 'N', got {t:#x}"));
            }
            Message::Update {
                rel,
                old,
                new: c.tuple()?,
            }
        }
        b'D' => {
            let rel = c.u32("relation id")?;
            match c.u8("delete tuple tag")? {
                b'K' | b'O' => Message::Delete {
                    rel,
                    old: c.tuple()?,
                },
                other => return err(format!("delete: expected 'K' or 'O', got {other:#x}")),
            }
        }
        b'T' => {
            let n = c.u32("relation count")?;
            let _options = c.u8("truncate options")?;
            let mut rels = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                rels.push(c.u32("relation id")?);
            }
            Message::Truncate { rels }
        }
        other => Message::Other(other),
    })
}

/// The integer in a text value (`b"42"`, `b"-7"`).
pub fn int_value(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Text(t) => std::str::from_utf8(t).ok()?.parse().ok(),
        _ => None,
    }
}

/// Encoders for tests: build messages exactly as the server lays them out.
#[cfg(test)]
pub mod encode {
    pub fn relation(id: u32, ns: &str, name: &str, cols: &[&str]) -> Vec<u8> {
        let mut b = vec![b'R'];
        b.extend(id.to_be_bytes());
        for s in [ns, name] {
            b.extend(s.as_bytes());
            b.push(0);
        }
        b.push(b'd');
        b.extend((cols.len() as u16).to_be_bytes());
        for (i, c) in cols.iter().enumerate() {
            b.push(u8::from(i == 0));
            b.extend(c.as_bytes());
            b.push(0);
            b.extend(20u32.to_be_bytes());
            b.extend((-1i32).to_be_bytes());
        }
        b
    }
    pub fn tuple(b: &mut Vec<u8>, vals: &[Option<&str>]) {
        b.extend((vals.len() as u16).to_be_bytes());
        for v in vals {
            match v {
                None => b.push(b'n'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
    }
    pub fn insert(rel: u32, vals: &[Option<&str>]) -> Vec<u8> {
        let mut b = vec![b'I'];
        b.extend(rel.to_be_bytes());
        b.push(b'N');
        tuple(&mut b, vals);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_and_insert() {
        let r = encode::relation(16384, "public", "t0", &["id", "payload"]);
        assert_eq!(
            decode(&r).unwrap(),
            Message::Relation(Relation {
                id: 16384,
                namespace: "public".into(),
                name: "t0".into(),
                columns: vec!["id".into(), "payload".into()],
            })
        );
        let i = encode::insert(16384, &[Some("42"), Some("hello\tworld")]);
        let m = decode(&i).unwrap();
        assert_eq!(
            m,
            Message::Insert {
                rel: 16384,
                new: vec![Value::Text(b"42"), Value::Text(b"hello\tworld")]
            }
        );
        if let Message::Insert { new, .. } = m {
            assert_eq!(int_value(&new[0]), Some(42));
            assert_eq!(int_value(&new[1]), None);
        }
    }

    #[test]
    fn update_delete_truncate_nulls() {
        let mut u = vec![b'U'];
        u.extend(7u32.to_be_bytes());
        u.push(b'K');
        encode::tuple(&mut u, &[Some("1"), None]);
        u.push(b'N');
        encode::tuple(&mut u, &[Some("2"), None]);
        assert_eq!(
            decode(&u).unwrap(),
            Message::Update {
                rel: 7,
                old: Some(vec![Value::Text(b"1"), Value::Null]),
                new: vec![Value::Text(b"2"), Value::Null],
            }
        );
        // An update without the old key, with an unchanged TOASTed column.
        let mut u = vec![b'U'];
        u.extend(7u32.to_be_bytes());
        u.push(b'N');
        u.extend(1u16.to_be_bytes());
        u.push(b'u');
        assert_eq!(
            decode(&u).unwrap(),
            Message::Update {
                rel: 7,
                old: None,
                new: vec![Value::Unchanged]
            }
        );
        let mut d = vec![b'D'];
        d.extend(7u32.to_be_bytes());
        d.push(b'K');
        encode::tuple(&mut d, &[Some("-3")]);
        let m = decode(&d).unwrap();
        assert_eq!(
            m,
            Message::Delete {
                rel: 7,
                old: vec![Value::Text(b"-3")]
            }
        );
        let mut t = vec![b'T'];
        t.extend(2u32.to_be_bytes());
        t.push(0);
        t.extend(7u32.to_be_bytes());
        t.extend(9u32.to_be_bytes());
        assert_eq!(decode(&t).unwrap(), Message::Truncate { rels: vec![7, 9] });
        assert_eq!(decode(b"Yxx").unwrap(), Message::Other(b'Y'));
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error_not_a_panic() {
        let i = encode::insert(1, &[Some("12345"), Some("payload")]);
        for n in 0..i.len() {
            assert!(decode(&i[..n]).is_err(), "prefix of {n} bytes");
        }
        let r = encode::relation(1, "public", "t", &["id"]);
        for n in 0..r.len() {
            assert!(decode(&r[..n]).is_err(), "relation prefix of {n} bytes");
        }
        let mut bad = encode::insert(1, &[Some("1")]);
        bad[5] = b'X';
        assert!(decode(&bad).is_err());
        let mut bad = encode::insert(1, &[Some("1")]);
        bad[8] = b'z'; // column kind
        assert!(decode(&bad).is_err());
        // A length that claims more than the message holds.
        let mut bad = encode::insert(1, &[Some("1")]);
        bad[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn empty_namespace_is_pg_catalog() {
        let r = encode::relation(1, "", "pg_x", &[]);
        match decode(&r).unwrap() {
            Message::Relation(r) => assert_eq!(r.qualified(), "pg_catalog.pg_x"),
            m => panic!("{m:?}"),
        }
    }
}
