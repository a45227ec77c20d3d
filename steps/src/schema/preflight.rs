//! The data-aware preflight: read-only queries against the live rows, before any downtime, for
//! the changes the rows would make fail or silently alter: a new UNIQUE key over duplicate
//! values, NOT NULL over NULLs, a narrowed type (or a removed ENUM/SET value) that rows use, a
//! new foreign key over orphan rows, a new CHECK that rows break. Each is a finding no allow
//! list permits ([`Destructive::data`]), with the number of rows and a few example keys.

use super::diff::{qualified, Destructive};
use super::model::*;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// How many example keys a finding shows.
const EXAMPLES: usize = 3;

/// A finding on table `(database, table)`.
pub type Finding = (String, String, Destructive);

/// Run the preflight for every table that exists on both sides.
pub async fn check(
    conn: &mut Conn,
    live: &Schema,
    desired: &Schema,
) -> Result<Vec<Finding>, mysql_async::Error> {
    let mut out = Vec::new();
    for (dbname, want_db) in &desired.databases {
        for (tname, want) in &want_db.tables {
            let Some(have) = live.table(dbname, tname) else {
                continue;
            };
            let qs = queries(live, desired, dbname, have, want);
            if qs.is_empty() {
                continue;
            }
            // One pass over the table answers whether any question finds rows; only those
            // that do are asked again, for their count and examples.
            for (i, count) in suspects(conn, dbname, have, &qs).await? {
                if let Some(d) = run(conn, dbname, have, &qs[i], count).await? {
                    out.push((dbname.clone(), tname.clone(), d));
                }
            }
        }
    }
    Ok(out)
}

/// One preflight question: rows of the table matching `condition` (a `WHERE` over alias `c`)
/// are a problem; `group` asks instead for duplicate groups of those expressions.
struct Query {
    subject: String,
    what: String,
    condition: String,
    group: Option<Vec<String>>,
    /// Columns shown for an example row when the table has no primary key.
    shown: Vec<String>,
}

fn col(c: &str) -> String {
    format!("c.{}", quote_ident(c))
}

fn queries(
    live: &Schema,
    desired: &Schema,
    dbname: &str,
    have: &Table,
    want: &Table,
) -> Vec<Query> {
    let mut out = Vec::new();
    let t = &want.name;
    let live_col = |c: &str| have.column(c);

    // columns: NOT NULL over NULLs, narrowed types
    for new in &want.columns {
        let Some(old) = live_col(&new.name) else {
            continue;
        };
        if old.generated.is_some() || new.generated.is_some() {
            continue;
        }
        let c = col(&old.name);
        if old.nullable && !new.nullable {
            out.push(Query {
                subject: format!("{dbname}.{t}.{}", new.name),
                what: format!("NULL in {t}.{}, which becomes NOT NULL", new.name),
                condition: format!("{c} IS NULL"),
                group: None,
                shown: vec![],
            });
        }
        if !old.ty.fits_in(&new.ty) {
            if let Some(cond) = does_not_fit(&c, &old.ty, &new.ty) {
                out.push(Query {
                    subject: format!("{dbname}.{t}.{}", new.name),
                    what: format!(
                        "{t}.{} holds values that {} cannot ({} now)",
                        new.name, new.ty, old.ty
                    ),
                    condition: format!("{c} IS NOT NULL AND ({cond})"),
                    group: None,
                    shown: vec![old.name.clone()],
                });
            }
        }
    }

    // new or changed UNIQUE keys and primary key
    let live_unique: Vec<Vec<KeyPart>> = have
        .primary_key
        .iter()
        .cloned()
        .chain(
            have.indexes
                .values()
                .filter(|i| i.kind == IndexKind::Unique)
                .map(|i| i.parts.clone()),
        )
        .collect();
    let mut uniques: Vec<(String, &Vec<KeyPart>)> = want
        .indexes
        .values()
        .filter(|i| i.kind == IndexKind::Unique && have.indexes.get(&i.name) != Some(i))
        .map(|i| (format!("UNIQUE key {}", i.name), &i.parts))
        .collect();
    if let Some(pk) = &want.primary_key {
        if have.primary_key.as_ref() != Some(pk) {
            uniques.push(("primary key".into(), pk));
        }
    }
    'keys: for (label, parts) in uniques {
        if live_unique.contains(parts) {
            continue;
        }
        let mut exprs = Vec::new();
        let mut not_null = Vec::new();
        for p in parts {
            match live_col(&p.column) {
                Some(_) => {
                    let e = match p.prefix {
                        Some(n) => format!("LEFT({}, {n})", col(&p.column)),
                        None => col(&p.column),
                    };
                    not_null.push(format!("{} IS NOT NULL", col(&p.column)));
                    exprs.push(e);
                }
                // a new column: every existing row gets its default; NULLs never collide
                None => match want.column(&p.column).and_then(|c| c.default.as_ref()) {
                    Some(DefaultValue::Null) | None => continue 'keys,
                    Some(_) => {}
                },
            }
        }
        let names: Vec<&str> = parts.iter().map(|p| p.column.as_str()).collect();
        out.push(Query {
            subject: format!("{dbname}.{t}"),
            what: format!(
                "duplicate values of ({}) for the new {label}",
                names.join(", ")
            ),
            condition: if not_null.is_empty() {
                "1".into()
            } else {
                not_null.join(" AND ")
            },
            group: Some(exprs),
            shown: vec![],
        });
    }

    // new or changed foreign keys: orphan rows
    for fk in want.foreign_keys.values() {
        if have.foreign_keys.get(&fk.name) == Some(fk) {
            continue;
        }
        if fk.columns.iter().any(|c| live_col(c).is_none()) {
            continue; // a new column: its default is checked by the server when it is added
        }
        let present: Vec<String> = fk
            .columns
            .iter()
            .map(|c| format!("{} IS NOT NULL", col(c)))
            .collect();
        let parent = live.table(&fk.ref_database, &fk.ref_table);
        let exists = match parent {
            Some(p) if fk.ref_columns.iter().all(|c| p.column(c).is_some()) => {
                let on: Vec<String> = fk
                    .columns
                    .iter()
                    .zip(&fk.ref_columns)
                    .map(|(c, r)| format!("p.{} = {}", quote_ident(r), col(c)))
                    .collect();
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
                    qualified(&fk.ref_database, &fk.ref_table),
                    on.join(" AND ")
                )
            }
            Some(_) => continue,
            // the parent is new, so empty: every row that names one is an orphan
            None if desired.table(&fk.ref_database, &fk.ref_table).is_some() => String::new(),
            None => continue,
        };
        out.push(Query {
            subject: format!("{dbname}.{t}.{}", fk.name),
            what: format!(
                "orphans for the new foreign key {} ({}): no such {}.{} row",
                fk.name,
                fk.columns.join(", "),
                fk.ref_database,
                fk.ref_table
            ),
            condition: format!("{}{exists}", present.join(" AND ")),
            group: None,
            shown: fk.columns.clone(),
        });
    }

    // new or changed CHECK constraints, on columns that exist now
    let mut checks: Vec<(String, &String)> = want
        .checks
        .iter()
        .filter(|(n, e)| have.checks.get(*n) != Some(*e))
        .map(|(n, e)| (format!("CHECK {n}"), e))
        .collect();
    for c in &want.columns {
        if let Some(e) = &c.check {
            if live_col(&c.name).is_some_and(|o| o.check.as_ref() != Some(e)) {
                checks.push((format!("CHECK on {}", c.name), e));
            }
        }
    }
    for (label, expr) in checks {
        let named = backquoted_names(expr);
        if named.iter().any(|n| live_col(n).is_none()) {
            continue;
        }
        let mut aliased = expr.clone();
        for n in &named {
            aliased = aliased.replace(&quote_ident(n), &col(n));
        }
        out.push(Query {
            subject: format!("{dbname}.{t}"),
            what: format!("breaks the new {label} ({expr})"),
            condition: format!("NOT ({aliased})"),
            group: None,
            shown: named.clone(),
        });
    }
    out
}

/// A condition over `c` true for values of `old` that `new` cannot hold, when one can be
/// written; `None` leaves the change to the lint.
fn does_not_fit(c: &str, old: &ColumnType, new: &ColumnType) -> Option<String> {
    let len = |t: &ColumnType| t.args.first().and_then(|a| a.parse::<u64>().ok());
    let (a, b) = (old.base.as_str(), new.base.as_str());
    if new.is_integer() && (old.is_integer() || old.is_numeric()) {
        let (min, max) = int_range(b, new.unsigned)?;
        return Some(format!("{c} < {min} OR {c} > {max}"));
    }
    let text_bytes = |t: &str| match t {
        "tinytext" | "tinyblob" => Some(255u64),
        "text" | "blob" => Some(65_535),
        "mediumtext" | "mediumblob" => Some(16_777_215),
        _ => None,
    };
    match (a, b) {
        // (a number too: its text is what a string column gets)
        (_, "char" | "varchar") => Some(format!("CHAR_LENGTH({c}) > {}", len(new)?)),
        (_, "binary" | "varbinary") => Some(format!("OCTET_LENGTH({c}) > {}", len(new)?)),
        (_, t) if text_bytes(t).is_some() => {
            Some(format!("OCTET_LENGTH({c}) > {}", text_bytes(t)?))
        }
        ("enum", "enum") => {
            let gone: Vec<&String> = old.args.iter().filter(|v| !new.args.contains(v)).collect();
            (!gone.is_empty()).then(|| {
                format!(
                    "{c} IN ({})",
                    gone.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
        }
        ("set", "set") => {
            let gone: Vec<String> = old
                .args
                .iter()
                .filter(|v| !new.args.contains(v))
                .map(|v| format!("FIND_IN_SET({v}, {c}) > 0"))
                .collect();
            (!gone.is_empty()).then(|| gone.join(" OR "))
        }
        ("decimal" | "float" | "double" | "int" | "bigint", "decimal") => {
            let p: i64 = new.args.first()?.parse().ok()?;
            let s: i64 = new.args.get(1)?.parse().ok()?;
            let mut cond = format!("ABS({c}) >= POWER(10, {})", p - s);
            if a == "decimal" {
                cond.push_str(&format!(" OR {c} <> ROUND({c}, {s})"));
            }
            if new.unsigned {
                cond.push_str(&format!(" OR {c} < 0"));
            }
            Some(cond)
        }
        _ => None,
    }
}

fn int_range(base: &str, unsigned: bool) -> Option<(String, String)> {
    let bits = match base {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" => 32,
        "bigint" => 64,
        _ => return None,
    };
    Some(if unsigned {
        ("0".into(), ((1u128 << bits) - 1).to_string())
    } else {
        (
            format!("-{}", 1u128 << (bits - 1)),
            ((1u128 << (bits - 1)) - 1).to_string(),
        )
    })
}

/// The questions that find rows, in one scan of the table (each UNIQUE as `COUNT` against
/// `COUNT(DISTINCT)`, far cheaper than grouping), with the number of rows a plain question
/// found (a UNIQUE's is counted by its groups, later).
async fn suspects(
    conn: &mut Conn,
    db: &str,
    have: &Table,
    qs: &[Query],
) -> Result<Vec<(usize, Option<u64>)>, mysql_async::Error> {
    let from = format!("{} c", qualified(db, &have.name));
    let mut terms = Vec::new();
    for q in qs {
        terms.push(match &q.group {
            None => format!(
                "COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0)",
                q.condition
            ),
            Some(exprs) if exprs.is_empty() => "COUNT(*) - LEAST(COUNT(*), 1)".into(),
            Some(exprs) => format!(
                "COUNT(CASE WHEN {} THEN 1 END) - COUNT(DISTINCT CASE WHEN {} THEN ({}) END)",
                q.condition,
                q.condition,
                exprs.join(", ")
            ),
        });
    }
    // (COUNT(DISTINCT) takes one expression under CASE: several key parts are one ROW only
    // where the server has it, so multi-part keys are asked apart)
    let multi: Vec<usize> = (0..qs.len())
        .filter(|&i| qs[i].group.as_ref().is_some_and(|g| g.len() > 1))
        .collect();
    let mut found = Vec::new();
    let single: Vec<usize> = (0..qs.len()).filter(|i| !multi.contains(i)).collect();
    if !single.is_empty() {
        let sql = format!(
            "SELECT {} FROM {from}",
            single
                .iter()
                .map(|&i| format!("CAST({} AS SIGNED)", terms[i]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let row: Option<mysql_async::Row> = conn.query_first(sql).await?;
        if let Some(row) = row {
            for (k, &i) in single.iter().enumerate() {
                let n: Option<i64> = row.get(k);
                if let Some(n) = n.filter(|n| *n > 0) {
                    let rows = qs[i].group.is_none().then_some(n as u64);
                    found.push((i, rows));
                }
            }
        }
    }
    for i in multi {
        let exprs = qs[i].group.as_ref().expect("multi-part keys group");
        let n: Option<(i64, i64)> = conn
            .query_first(format!(
                "SELECT COUNT(*), COUNT(DISTINCT {}) FROM {from} WHERE {}",
                exprs.join(", "),
                qs[i].condition
            ))
            .await?;
        if n.is_some_and(|(all, distinct)| all > distinct) {
            found.push((i, None));
        }
    }
    found.sort_unstable_by_key(|f| f.0);
    Ok(found)
}

async fn run(
    conn: &mut Conn,
    db: &str,
    have: &Table,
    q: &Query,
    known: Option<u64>,
) -> Result<Option<Destructive>, mysql_async::Error> {
    let from = format!("{} c", qualified(db, &have.name));
    let (count, examples): (u64, Vec<String>) = match &q.group {
        Some(exprs) if exprs.is_empty() => {
            // a constant key: any two rows collide
            let n: Option<u64> = conn
                .query_first(format!("SELECT COUNT(*) FROM {from}"))
                .await?;
            let n = n.unwrap_or(0);
            (if n > 1 { n } else { 0 }, Vec::new())
        }
        Some(exprs) => {
            let g = exprs.join(", ");
            let n: Option<u64> = conn
                .query_first(format!(
                    "SELECT COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) n FROM {from} WHERE {} GROUP BY {g} HAVING COUNT(*) > 1) d",
                    q.condition
                ))
                .await?;
            let shown = exprs
                .iter()
                .map(|e| format!("QUOTE({e})"))
                .collect::<Vec<_>>()
                .join(", ',', ");
            let ex: Vec<(String, u64)> = conn
                .query(format!(
                    "SELECT CONCAT('(', {shown}, ')'), COUNT(*) FROM {from} WHERE {} GROUP BY {g} HAVING COUNT(*) > 1 LIMIT {EXAMPLES}",
                    q.condition
                ))
                .await?;
            (
                n.unwrap_or(0),
                ex.into_iter().map(|(v, n)| format!("{v} x{n}")).collect(),
            )
        }
        None => {
            let n: Option<u64> = match known {
                Some(n) => Some(n),
                None => {
                    conn.query_first(format!("SELECT COUNT(*) FROM {from} WHERE {}", q.condition))
                        .await?
                }
            };
            let key: Vec<String> = match &have.primary_key {
                Some(pk) => pk.iter().map(|p| p.column.clone()).collect(),
                None => q.shown.clone(),
            };
            let ex: Vec<String> = if key.is_empty() || n.unwrap_or(0) == 0 {
                Vec::new()
            } else {
                // strings quoted, numbers as they are
                let shown = key
                    .iter()
                    .map(|k| match have.column(k) {
                        Some(c) if c.ty.is_numeric() => format!("COALESCE({}, 'NULL')", col(k)),
                        _ => format!("COALESCE(QUOTE({}), 'NULL')", col(k)),
                    })
                    .collect::<Vec<_>>()
                    .join(", ',', ");
                conn.query(format!(
                    "SELECT CONCAT({shown}) FROM {from} WHERE {} LIMIT {EXAMPLES}",
                    q.condition
                ))
                .await?
            };
            (n.unwrap_or(0), ex)
        }
    };
    if count == 0 {
        return Ok(None);
    }
    let keys = match (&q.group, &have.primary_key) {
        (Some(_), _) => "duplicates",
        (None, Some(_)) => "keys",
        (None, None) => "values",
    };
    let mut reason = format!(
        "{count} row{} of {db}.{}: {}",
        plural(count),
        have.name,
        q.what
    );
    if !examples.is_empty() {
        reason.push_str(&format!(" ({keys}: {})", examples.join("; ")));
    }
    Ok(Some(Destructive {
        subject: q.subject.clone(),
        reason,
        data: true,
    }))
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_for_narrowed_types() {
        let t = |s: &str| ColumnType::parse(s).unwrap();
        assert_eq!(
            does_not_fit("c.`a`", &t("int"), &t("tinyint unsigned")).unwrap(),
            "c.`a` < 0 OR c.`a` > 255"
        );
        assert_eq!(
            does_not_fit("c.`a`", &t("varchar(20)"), &t("varchar(5)")).unwrap(),
            "CHAR_LENGTH(c.`a`) > 5"
        );
        assert_eq!(
            does_not_fit("c.`a`", &t("enum('x','y','z')"), &t("enum('x')")).unwrap(),
            "c.`a` IN ('y','z')"
        );
        assert!(does_not_fit("c.`a`", &t("datetime"), &t("date")).is_none());
        assert_eq!(
            backquoted_names("`a`>0 and `b``c`<>'`x`'"),
            vec!["a".to_string(), "b`c".to_string()]
        );
    }
}
