//! Partitioning: the `PARTITION BY` clause of a `CREATE TABLE` ([`split`], [`parse`]), what
//! the server holds (`information_schema.PARTITIONS`, [`inspect`]), and the statements
//! between the two ([`diff`]): partitions added at the end of a RANGE or to a LIST, dropped
//! (destructive: their rows go), or the table re-partitioned.

use super::diff::{qualified, Algorithm, Destructive};
use super::model::*;
use super::objects::{Cursor, Tok};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// `RANGE`, `LIST`, `HASH`, `KEY`, `RANGE COLUMNS`, `LIST COLUMNS`, `LINEAR HASH`,
    /// `LINEAR KEY`.
    pub method: String,
    /// The expression or column list, canonical (`year(`d`)`, `` `a`,`b` ``; empty for
    /// `KEY ()`).
    pub expression: String,
    pub partitions: Vec<Partition>,
    /// `HASH`, `KEY` (`LINEAR ...`) with its expression, and the count per partition.
    pub sub: Option<(String, String, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub name: String,
    /// The `VALUES LESS THAN` / `VALUES IN` bound, canonical (`2021`, `MAXVALUE`, `1,2`); none
    /// for HASH and KEY.
    pub bound: Option<String>,
}

impl Partitioning {
    fn values_clause(&self, bound: &str) -> String {
        if self.method.starts_with("LIST") {
            format!("VALUES IN ({bound})")
        } else if bound == "MAXVALUE" {
            "VALUES LESS THAN MAXVALUE".into()
        } else {
            format!("VALUES LESS THAN ({bound})")
        }
    }

    fn definition(&self, p: &Partition) -> String {
        match &p.bound {
            Some(b) => format!(
                "PARTITION {} {}",
                quote_ident(&p.name),
                self.values_clause(b)
            ),
            None => format!("PARTITION {}", quote_ident(&p.name)),
        }
    }

    /// The clause that makes it: `PARTITION BY ...`.
    pub fn sql(&self) -> String {
        let mut s = format!("PARTITION BY {} ({})", self.method, self.expression);
        if let Some((m, e, n)) = &self.sub {
            s.push_str(&format!(" SUBPARTITION BY {m} ({e}) SUBPARTITIONS {n}"));
        }
        let default_names = self
            .partitions
            .iter()
            .enumerate()
            .all(|(i, p)| p.name == format!("p{i}"));
        if self.partitions.iter().any(|p| p.bound.is_some()) || !default_names {
            let defs: Vec<String> = self.partitions.iter().map(|p| self.definition(p)).collect();
            s.push_str(&format!(" ({})", defs.join(", ")));
        } else {
            s.push_str(&format!(" PARTITIONS {}", self.partitions.len()));
        }
        s
    }

    /// The columns its expressions name.
    pub fn columns(&self) -> Vec<String> {
        let mut out = backquoted_names(&self.expression);
        if let Some((_, sub, _)) = &self.sub {
            for c in backquoted_names(sub) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }
}

/// Cut a `CREATE TABLE` text before its `PARTITION BY` (outside parentheses and quotes):
/// the table, and the clause.
pub fn split(text: &str) -> (&str, Option<&str>) {
    if !text.to_ascii_uppercase().contains("PARTITION") {
        return (text, None);
    }
    let mut c = Cursor::new(text);
    let mut depth = 0i32;
    while let Some(t) = c.toks.get(c.i) {
        match &t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Word(w) if depth == 0 && w == "PARTITION" => {
                let at = t.start;
                c.i += 1;
                if c.peek_word() == Some("BY") {
                    return (text[..at].trim_end(), Some(text[at..].trim()));
                }
                continue;
            }
            _ => {}
        }
        c.i += 1;
    }
    (text, None)
}

/// The text between a `(` at the cursor and its `)`, and the cursor after it.
fn parenthesised(c: &mut Cursor) -> Result<String, String> {
    let Some(open) = c.toks.get(c.i).filter(|t| t.tok == Tok::Punct('(')) else {
        return Err(format!("expected ( {}", c.here()));
    };
    let start = open.end;
    let mut depth = 0;
    while let Some(t) = c.toks.get(c.i) {
        match t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    let inner = c.text[start..t.start].trim().to_string();
                    c.i += 1;
                    return Ok(inner);
                }
            }
            _ => {}
        }
        c.i += 1;
    }
    Err("unclosed (".into())
}

fn number(c: &mut Cursor) -> Result<u32, String> {
    let n = c
        .peek_word()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("expected a number {}", c.here()))?;
    c.i += 1;
    Ok(n)
}

/// `[LINEAR] HASH (expr)` / `[LINEAR] KEY [ALGORITHM = n] (cols)` / `RANGE [COLUMNS] (...)` /
/// `LIST [COLUMNS] (...)`: the method and the canonical expression.
fn read_method(c: &mut Cursor, sub: bool) -> Result<(String, String), String> {
    let linear = c.eat("LINEAR");
    let m = match c.peek_word() {
        Some(m @ ("HASH" | "KEY")) => m.to_string(),
        Some(m @ ("RANGE" | "LIST")) if !sub && !linear => m.to_string(),
        _ => {
            return Err(format!(
                "expected {} {}",
                if sub {
                    "HASH or KEY"
                } else {
                    "RANGE, LIST, HASH or KEY"
                },
                c.here()
            ))
        }
    };
    c.i += 1;
    let mut m = if linear { format!("LINEAR {m}") } else { m };
    if m.ends_with("KEY") && c.eat("ALGORITHM") {
        c.eat_punct('=');
        number(c)?;
    }
    if (m == "RANGE" || m == "LIST") && c.eat("COLUMNS") {
        m.push_str(" COLUMNS");
    }
    let expr = parenthesised(c)?;
    Ok((m, canonical_expr(&expr)))
}

/// Parse a `PARTITION BY` clause.
pub fn parse(clause: &str) -> Result<Partitioning, String> {
    let mut c = Cursor::new(clause);
    c.expect("PARTITION")?;
    c.expect("BY")?;
    let (method, expression) = read_method(&mut c, false)?;
    let mut count = None;
    if c.eat("PARTITIONS") {
        count = Some(number(&mut c)?);
    }
    let mut sub = None;
    if c.eat("SUBPARTITION") {
        c.expect("BY")?;
        let (m, e) = read_method(&mut c, true)?;
        let n = if c.eat("SUBPARTITIONS") {
            number(&mut c)?
        } else {
            1
        };
        sub = Some((m, e, n));
    }
    let ranged = method.starts_with("RANGE") || method.starts_with("LIST");
    let mut partitions = Vec::new();
    if c.toks.get(c.i).is_some_and(|t| t.tok == Tok::Punct('(')) {
        c.i += 1;
        loop {
            c.expect("PARTITION")?;
            let name = c.name_part()?;
            let bound = if c.eat("VALUES") {
                if c.eat("LESS") {
                    c.expect("THAN")?;
                    if c.eat("MAXVALUE") {
                        Some("MAXVALUE".to_string())
                    } else {
                        Some(canonical_bound(&parenthesised(&mut c)?))
                    }
                } else {
                    c.expect("IN")?;
                    Some(canonical_bound(&parenthesised(&mut c)?))
                }
            } else {
                None
            };
            if ranged && bound.is_none() {
                return Err(format!("{method} partition {name} needs VALUES"));
            }
            if !ranged && bound.is_some() {
                return Err(format!("{method} partition {name} takes no VALUES"));
            }
            // options (ENGINE = InnoDB, COMMENT ...) and subpartition definitions: skipped
            // up to the next partition
            let mut depth = 0;
            while let Some(t) = c.toks.get(c.i) {
                match t.tok {
                    Tok::Punct('(') => depth += 1,
                    Tok::Punct(')') if depth == 0 => break,
                    Tok::Punct(')') => depth -= 1,
                    Tok::Punct(',') if depth == 0 => break,
                    _ => {}
                }
                c.i += 1;
            }
            partitions.push(Partition { name, bound });
            if c.eat_punct(',') {
                continue;
            }
            if !c.eat_punct(')') {
                return Err(format!("expected ) {}", c.here()));
            }
            break;
        }
    } else if ranged {
        return Err(format!("{method} partitioning needs its partitions listed"));
    } else {
        let n = count.unwrap_or(1);
        partitions = (0..n)
            .map(|i| Partition {
                name: format!("p{i}"),
                bound: None,
            })
            .collect();
    }
    if let Some(n) = count {
        if n as usize != partitions.len() {
            return Err(format!(
                "PARTITIONS {n} but {} partitions listed",
                partitions.len()
            ));
        }
    }
    c.eat_punct(';');
    if c.i < c.toks.len() {
        return Err(format!("unexpected text {}", c.here()));
    }
    let mut names: Vec<&str> = partitions.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0].eq_ignore_ascii_case(w[1])) {
        return Err("two partitions have the same name".into());
    }
    Ok(Partitioning {
        method,
        expression,
        partitions,
        sub,
    })
}

/// A bound in canonical form: `MAXVALUE` kept a keyword.
fn canonical_bound(text: &str) -> String {
    canonical_expr(text).replace("`MAXVALUE`", "MAXVALUE")
}

/// The partitioning of every table of one database, from `information_schema.PARTITIONS`.
pub async fn inspect(
    conn: &mut mysql_async::Conn,
    db: &str,
) -> Result<BTreeMap<String, Partitioning>, mysql_async::Error> {
    use mysql_async::prelude::*;
    type Row = (
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, PARTITION_NAME, SUBPARTITION_NAME, PARTITION_METHOD, \
             SUBPARTITION_METHOD, PARTITION_EXPRESSION, SUBPARTITION_EXPRESSION, PARTITION_DESCRIPTION \
             FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = ? AND PARTITION_NAME IS NOT NULL \
             ORDER BY TABLE_NAME, PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION",
            (db,),
        )
        .await?;
    let mut out: BTreeMap<String, Partitioning> = BTreeMap::new();
    for (table, part, subpart, m, sm, e, se, desc) in rows {
        let p = out.entry(table).or_insert_with(|| Partitioning {
            method: m.clone(),
            expression: canonical_expr(&e.clone().unwrap_or_default()),
            partitions: Vec::new(),
            sub: None,
        });
        if p.partitions.last().map(|x| &x.name) != Some(&part) {
            p.partitions.push(Partition {
                name: part,
                bound: desc.map(|d| canonical_bound(&d)),
            });
        }
        if let (Some(_), Some(sm)) = (subpart, sm) {
            let first = p.partitions.len() == 1;
            match &mut p.sub {
                Some((_, _, n)) if first => *n += 1,
                Some(_) => {}
                None => p.sub = Some((sm, canonical_expr(&se.unwrap_or_default()), 1)),
            }
        }
    }
    Ok(out)
}

/// Statements that bring `have`'s partitioning to `want`'s, for table `db.t`, with their
/// algorithm and destructive findings.
pub fn diff(
    db: &str,
    t: &str,
    have: Option<&Partitioning>,
    want: Option<&Partitioning>,
) -> Vec<(String, Algorithm, Vec<Destructive>)> {
    let table = qualified(db, t);
    let whole = |w: &Partitioning| {
        (
            format!("ALTER TABLE {table} {}", w.sql()),
            Algorithm::Copy,
            Vec::new(),
        )
    };
    match (have, want) {
        (None, None) => Vec::new(),
        (Some(_), None) => vec![(
            format!("ALTER TABLE {table} REMOVE PARTITIONING"),
            Algorithm::Copy,
            Vec::new(),
        )],
        (None, Some(w)) => vec![whole(w)],
        (Some(h), Some(w)) if h == w => Vec::new(),
        (Some(h), Some(w)) => {
            let same_scheme =
                h.method == w.method && h.expression == w.expression && h.sub == w.sub;
            let ranged = w.method.starts_with("RANGE") || w.method.starts_with("LIST");
            if !(same_scheme && ranged) {
                return vec![whole(w)];
            }
            // partitions added after the existing ones (a RANGE grows at its end)
            if w.partitions.len() > h.partitions.len() && w.partitions.starts_with(&h.partitions) {
                let defs: Vec<String> = w.partitions[h.partitions.len()..]
                    .iter()
                    .map(|p| w.definition(p))
                    .collect();
                return vec![(
                    format!("ALTER TABLE {table} ADD PARTITION ({})", defs.join(", ")),
                    Algorithm::Inplace,
                    Vec::new(),
                )];
            }
            // partitions dropped, the rest unchanged: their rows go with them
            let kept: Vec<&Partition> = h
                .partitions
                .iter()
                .filter(|p| w.partitions.contains(p))
                .collect();
            if kept.len() == w.partitions.len()
                && kept.iter().zip(&w.partitions).all(|(a, b)| *a == b)
            {
                let gone: Vec<&Partition> = h
                    .partitions
                    .iter()
                    .filter(|p| !w.partitions.contains(p))
                    .collect();
                let names: Vec<String> = gone.iter().map(|p| quote_ident(&p.name)).collect();
                let destructive = gone
                    .iter()
                    .map(|p| Destructive {
                        subject: format!("{db}.{t}"),
                        reason: format!(
                            "drops partition {} of {db}.{t}, and the rows in it",
                            p.name
                        ),
                        ..Default::default()
                    })
                    .collect();
                return vec![(
                    format!("ALTER TABLE {table} DROP PARTITION {}", names.join(", ")),
                    Algorithm::Inplace,
                    destructive,
                )];
            }
            vec![whole(w)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_parse_and_render() {
        let text = "CREATE TABLE t (id int, d date) ENGINE=InnoDB\n PARTITION BY RANGE (YEAR(d)) SUBPARTITION BY HASH (to_days(d)) SUBPARTITIONS 2 (PARTITION p0 VALUES LESS THAN (2021) ENGINE = InnoDB, PARTITION pmax VALUES LESS THAN MAXVALUE)";
        let (table, clause) = split(text);
        assert_eq!(table, "CREATE TABLE t (id int, d date) ENGINE=InnoDB");
        let p = parse(clause.unwrap()).unwrap();
        assert_eq!(p.method, "RANGE");
        assert_eq!(p.expression, "year(`d`)");
        assert_eq!(p.sub, Some(("HASH".into(), "to_days(`d`)".into(), 2)));
        assert_eq!(
            p.partitions,
            vec![
                Partition {
                    name: "p0".into(),
                    bound: Some("2021".into())
                },
                Partition {
                    name: "pmax".into(),
                    bound: Some("MAXVALUE".into())
                }
            ]
        );
        assert_eq!(parse(&p.sql()).unwrap(), p, "{}", p.sql());
        let h = parse("PARTITION BY LINEAR KEY ALGORITHM=2 (id) PARTITIONS 3").unwrap();
        assert_eq!((h.method.as_str(), h.partitions.len()), ("LINEAR KEY", 3));
        let l =
            parse("PARTITION BY LIST COLUMNS (a, b) (PARTITION x VALUES IN ((1, 'a'), (2, 'b')))")
                .unwrap();
        assert_eq!(l.method, "LIST COLUMNS");
        assert_eq!(l.columns(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(split("CREATE TABLE t (partition_no int)").1, None);
        for bad in [
            "PARTITION BY RANGE (a)",
            "PARTITION BY RANGE (a) (PARTITION p0)",
            "PARTITION BY HASH (a) (PARTITION p0 VALUES IN (1))",
            "PARTITION BY HASH (a) PARTITIONS 2 (PARTITION p0, PARTITION p1, PARTITION p2)",
            "PARTITION BY RANGE (a) (PARTITION p VALUES LESS THAN (1), PARTITION p VALUES LESS THAN (2))",
            "PARTITION BY SOMETHING (a)",
            "PARTITION BY RANGE (a) SUBPARTITION BY RANGE (a) (PARTITION p VALUES LESS THAN (1))",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
