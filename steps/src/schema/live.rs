//! The live side: inspect a server through `information_schema`, plan against it, apply a
//! migration under `GET_LOCK`.
//!
//! Inspection reads six catalog views once each for all the databases asked about (not once
//! per table), so it costs a handful of round trips whatever the number of tables.

use super::diff::{diff, Allow, Change, Migration};
use super::model::*;
use mysql_async::prelude::*;
pub use mysql_async::Conn;
use mysql_async::{Opts, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The lock every molt migration of a server takes (one migration at a time per server).
pub const LOCK_NAME: &str = "molt.schema.migrate";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("bad database URL: {0}")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(mysql_async::Error),
    #[error("{what}: {source}")]
    Query {
        what: String,
        source: mysql_async::Error,
    },
    #[error("another migration holds the schema lock ({LOCK_NAME}) after {0:?}")]
    Locked(Duration),
    #[error("refused: the migration would {}; allow it with --allow-destructive or in release.toml's allow_destructive", .0.join("; "))]
    Destructive(Vec<String>),
    #[error("statement {index} failed: {sql}: {source}")]
    Statement {
        index: usize,
        sql: String,
        source: mysql_async::Error,
    },
    #[error(
        "after the migration the live schema still differs from the desired one; remaining: {0}"
    )]
    Diverged(String),
    #[error("{0}")]
    Model(String),
}

fn q(what: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> LiveError {
    let what = what.into();
    move |source| LiveError::Query { what, source }
}

/// Parse a `mysql://user:password@host:port/database` URL.
pub fn parse_url(url: &str) -> Result<Opts, LiveError> {
    Opts::from_url(url).map_err(|e| LiveError::Url(e.to_string()))
}

pub async fn connect(url: &str) -> Result<Conn, LiveError> {
    let opts = parse_url(url)?;
    let mut conn = Conn::new(opts).await.map_err(LiveError::Connect)?;
    // Same rules for every migration, whatever the server's defaults.
    conn.query_drop("SET SESSION foreign_key_checks = 1")
        .await
        .map_err(q("set foreign_key_checks"))?;
    let _ = conn
        .query_drop("SET SESSION explicit_defaults_for_timestamp = 1")
        .await;
    Ok(conn)
}

/// The database a URL names, if any.
pub fn url_database(url: &str) -> Result<Option<String>, LiveError> {
    Ok(parse_url(url)?.db_name().map(str::to_string))
}

fn in_list(n: usize) -> String {
    vec!["?"; n.max(1)].join(",")
}

fn params(dbs: &[String]) -> Vec<mysql_async::Value> {
    if dbs.is_empty() {
        return vec![mysql_async::Value::from("")];
    }
    dbs.iter()
        .map(|d| mysql_async::Value::from(d.as_str()))
        .collect()
}

fn get_str(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<String>, _>(i)
        .and_then(|r| r.ok())
        .flatten()
}

/// The first three text columns of a catalog row (database, table, and a third name).
fn first_three(row: &Row) -> (String, String, String) {
    let s = |i| get_str(row, i).unwrap_or_default();
    (s(0), s(1), s(2))
}

fn table_mut<'s>(schema: &'s mut Schema, db: &str, table: &str) -> Option<&'s mut Table> {
    schema
        .databases
        .get_mut(db)
        .and_then(|d| d.tables.get_mut(table))
}

fn get_u64(row: &Row, i: usize) -> Option<u64> {
    row.get_opt::<Option<u64>, _>(i)
        .and_then(|r| r.ok())
        .flatten()
}

/// Read the schema of `databases` (those that exist) from the server.
///
/// One database at a time: MariaDB's catalog answers `TABLE_SCHEMA = ?` by opening that
/// database only, but `TABLE_SCHEMA IN (?, ?)` by scanning every database on the server.
pub async fn inspect(conn: &mut Conn, databases: &[String]) -> Result<Schema, LiveError> {
    let mut schema = Schema::default();
    for db in databases {
        let one = inspect_in(conn, std::slice::from_ref(db)).await?;
        schema.databases.extend(one.databases);
    }
    Ok(schema)
}

async fn inspect_in(conn: &mut Conn, databases: &[String]) -> Result<Schema, LiveError> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(q("read the server version"))?
        .unwrap_or_default();
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let list = in_list(databases.len());
    let p = params(databases);
    let mut schema = Schema::default();

    let rows: Vec<Row> = conn
        .exec(format!("SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({list})"), p.clone())
        .await
        .map_err(q("read information_schema.SCHEMATA"))?;
    for r in rows {
        let name = get_str(&r, 0).unwrap_or_default();
        schema.databases.insert(
            name.clone(),
            Database {
                name,
                charset: get_str(&r, 1).map(|c| canonical_charset(&c)),
                collation: get_str(&r, 2).map(|c| canonical_charset(&c)),
                tables: BTreeMap::new(),
            },
        );
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE, TABLE_COLLATION, TABLE_COMMENT, CREATE_OPTIONS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({list}) AND TABLE_TYPE = 'BASE TABLE'"
            ),
            p.clone(),
        )
        .await
        .map_err(q("read information_schema.TABLES"))?;
    for r in rows {
        let (db, name) = (
            get_str(&r, 0).unwrap_or_default(),
            get_str(&r, 1).unwrap_or_default(),
        );
        let collation = get_str(&r, 3).map(|c| canonical_charset(&c));
        let row_format = get_str(&r, 5).and_then(|o| {
            o.split_whitespace().find_map(|kv| {
                kv.to_ascii_lowercase()
                    .strip_prefix("row_format=")
                    .map(str::to_string)
            })
        });
        let table = Table {
            name: name.clone(),
            columns: Vec::new(),
            primary_key: None,
            indexes: BTreeMap::new(),
            foreign_keys: BTreeMap::new(),
            options: TableOptions {
                engine: get_str(&r, 2).map(|e| e.to_ascii_lowercase()),
                charset: collation.as_deref().map(charset_of),
                collation,
                comment: get_str(&r, 4).unwrap_or_default(),
                row_format,
            },
        };
        if let Some(d) = schema.databases.get_mut(&db) {
            d.tables.insert(name, table);
        }
    }

    // json columns in MariaDB are longtext with a json_valid check
    let mut json_checks: BTreeSet<(String, String, String)> = BTreeSet::new();
    let checks: Result<Vec<Row>, _> = conn
        .exec(format!("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ({list})"), p.clone())
        .await;
    if let Ok(rows) = checks {
        for r in rows {
            let clause = canonical_expr(&get_str(&r, 2).unwrap_or_default());
            if let Some(col) = clause
                .strip_prefix("json_valid(`")
                .and_then(|s| s.strip_suffix("`)"))
            {
                json_checks.insert((
                    get_str(&r, 0).unwrap_or_default(),
                    get_str(&r, 1).unwrap_or_default(),
                    col.replace("``", "`"),
                ));
            }
        }
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, \
                 CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_COMMENT, GENERATION_EXPRESSION FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA IN ({list}) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ),
            p.clone(),
        )
        .await
        .map_err(q("read information_schema.COLUMNS"))?;
    for r in rows {
        let (db, tname, cname) = first_three(&r);
        let Some(t) = table_mut(&mut schema, &db, &tname) else {
            continue;
        };
        let type_text = get_str(&r, 3).unwrap_or_default();
        let mut ty = ColumnType::parse(&type_text)
            .map_err(|e| LiveError::Model(format!("{db}.{tname}.{cname}: {e}")))?;
        let extra = get_str(&r, 6).unwrap_or_default().to_ascii_lowercase();
        let is_json = ty.base == "longtext"
            && json_checks.contains(&(db.clone(), tname.clone(), cname.clone()));
        if is_json {
            ty = ColumnType::parse("json").expect("json parses");
        }
        let generated = if extra.contains("generated") && !extra.contains("default_generated") {
            Some(Generated {
                expr: canonical_expr(&get_str(&r, 10).unwrap_or_default()),
                stored: extra.contains("stored") || extra.contains("persistent"),
            })
        } else {
            None
        };
        let default = match get_str(&r, 5) {
            None => None,
            Some(_) if generated.is_some() => None,
            Some(d) => Some(parse_live_default(
                &d,
                &ty,
                mariadb,
                extra.contains("default_generated"),
            )),
        };
        let on_update = extra.find("on update ").map(|i| {
            let rest = &extra[i + "on update ".len()..];
            canonical_expr(rest.split_whitespace().next().unwrap_or(rest))
        });
        let textual = ty.is_textual();
        let mut col = Column {
            name: cname,
            ty,
            nullable: get_str(&r, 4).as_deref() == Some("YES"),
            default,
            on_update,
            auto_increment: extra.contains("auto_increment"),
            generated,
            comment: get_str(&r, 9).unwrap_or_default(),
            charset: if textual {
                get_str(&r, 7).map(|c| canonical_charset(&c))
            } else {
                None
            },
            collation: if textual {
                get_str(&r, 8).map(|c| canonical_charset(&c))
            } else {
                None
            },
        };
        col.canonicalize();
        t.columns.push(col);
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, COLLATION, INDEX_TYPE, INDEX_COMMENT \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN ({list}) ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
            ),
            p.clone(),
        )
        .await
        .map_err(q("read information_schema.STATISTICS"))?;
    for r in rows {
        let (db, tname, iname) = first_three(&r);
        let Some(t) = table_mut(&mut schema, &db, &tname) else {
            continue;
        };
        let part = KeyPart {
            column: get_str(&r, 4).unwrap_or_default(),
            prefix: get_u64(&r, 5).map(|n| n as u32),
            desc: get_str(&r, 6).as_deref() == Some("D"),
        };
        if iname == "PRIMARY" {
            t.primary_key.get_or_insert_with(Vec::new).push(part);
            continue;
        }
        let index_type = get_str(&r, 7).unwrap_or_default().to_ascii_uppercase();
        let kind = match (index_type.as_str(), get_u64(&r, 3)) {
            ("FULLTEXT", _) => IndexKind::Fulltext,
            ("SPATIAL", _) => IndexKind::Spatial,
            (_, Some(0)) => IndexKind::Unique,
            _ => IndexKind::Index,
        };
        let comment = get_str(&r, 8).unwrap_or_default();
        t.indexes
            .entry(iname.clone())
            .or_insert_with(|| Index {
                name: iname,
                kind,
                parts: Vec::new(),
                comment,
            })
            .parts
            .push(part);
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
                 k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.DELETE_RULE, r.UPDATE_RULE \
                 FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
                 ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
                 WHERE k.TABLE_SCHEMA IN ({list}) AND k.REFERENCED_TABLE_NAME IS NOT NULL \
                 ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
            ),
            p,
        )
        .await
        .map_err(q("read information_schema.KEY_COLUMN_USAGE"))?;
    for r in rows {
        let (db, tname, fname) = first_three(&r);
        let Some(t) = table_mut(&mut schema, &db, &tname) else {
            continue;
        };
        let action = |i: usize| {
            get_str(&r, i)
                .and_then(|a| RefAction::parse(&a))
                .unwrap_or(RefAction::Restrict)
        };
        let fk = t
            .foreign_keys
            .entry(fname.clone())
            .or_insert_with(|| ForeignKey {
                name: fname,
                columns: Vec::new(),
                ref_database: get_str(&r, 4).unwrap_or_default(),
                ref_table: get_str(&r, 5).unwrap_or_default(),
                ref_columns: Vec::new(),
                on_delete: action(7),
                on_update: action(8),
            });
        fk.columns.push(get_str(&r, 3).unwrap_or_default());
        fk.ref_columns.push(get_str(&r, 6).unwrap_or_default());
    }
    Ok(schema)
}

/// `COLUMN_DEFAULT` as MariaDB (10.2.7+: literals quoted, expressions bare, `NULL`) or MySQL
/// (literals bare, expressions marked `DEFAULT_GENERATED`) shows it.
fn parse_live_default(
    d: &str,
    ty: &ColumnType,
    mariadb: bool,
    generated_expr: bool,
) -> DefaultValue {
    let chars: Vec<char> = d.chars().collect();
    if mariadb {
        if d == "NULL" {
            return DefaultValue::Null;
        }
        if chars.first() == Some(&'\'') {
            if let Some((v, end)) = read_quoted(&chars, 0) {
                if end == chars.len() {
                    return DefaultValue::Literal(canonical_literal(ty, &v));
                }
            }
        }
        if d.parse::<f64>().is_ok() || d.starts_with("b'") {
            return DefaultValue::Literal(canonical_literal(ty, d));
        }
        return DefaultValue::Expr(canonical_expr(d));
    }
    let upper = d.to_ascii_uppercase();
    if generated_expr || upper.starts_with("CURRENT_TIMESTAMP") {
        return DefaultValue::Expr(canonical_expr(d));
    }
    DefaultValue::Literal(canonical_literal(ty, d))
}

/// Which of the tables a migration finds destructive hold rows.
async fn rows_of(
    conn: &mut Conn,
    tables: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), bool>, LiveError> {
    let mut out = BTreeMap::new();
    for (db, t) in tables {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", super::diff::qualified(db, t));
        let any: Option<u8> = conn
            .query_first(sql)
            .await
            .map_err(q(format!("count rows of {db}.{t}")))?;
        out.insert((db.clone(), t.clone()), any.is_some());
    }
    Ok(out)
}

/// Fill in what SQL text leaves to the server: the collation a `CHARACTER SET` alone means
/// (that charset's default collation on this server).
pub async fn resolve_server_defaults(
    conn: &mut Conn,
    desired: &Schema,
) -> Result<Schema, LiveError> {
    let rows: Vec<(String, String)> = conn
        .query("SELECT CHARACTER_SET_NAME, DEFAULT_COLLATE_NAME FROM information_schema.CHARACTER_SETS")
        .await
        .map_err(q("read information_schema.CHARACTER_SETS"))?;
    let defaults: BTreeMap<String, String> = rows
        .into_iter()
        .map(|(c, d)| (canonical_charset(&c), canonical_charset(&d)))
        .collect();
    let fill = |charset: &Option<String>, collation: &mut Option<String>| {
        if let (Some(cs), None) = (charset, &collation) {
            *collation = defaults.get(cs).cloned();
        }
    };
    let mut out = desired.clone();
    for db in out.databases.values_mut() {
        fill(&db.charset, &mut db.collation);
        for t in db.tables.values_mut() {
            fill(&t.options.charset, &mut t.options.collation);
            for c in &mut t.columns {
                fill(&c.charset, &mut c.collation);
            }
        }
    }
    Ok(out)
}

/// The migration from the live server to `desired`, its lint informed by which tables hold rows.
pub async fn plan(conn: &mut Conn, desired: &Schema) -> Result<(Schema, Migration), LiveError> {
    let desired = &resolve_server_defaults(conn, desired).await?;
    let dbs: Vec<String> = desired.databases.keys().cloned().collect();
    let live = inspect(conn, &dbs).await?;
    let first = diff(&live, desired, &|_, _| None);
    let risky: BTreeSet<(String, String)> = first
        .changes
        .iter()
        .filter(|c| !c.destructive.is_empty())
        .filter_map(|c| c.table.clone().map(|t| (c.database.clone(), t)))
        .filter(|(d, t)| live.table(d, t).is_some())
        .collect();
    if risky.is_empty() {
        return Ok((live, first));
    }
    let rows = rows_of(conn, &risky).await?;
    let m = diff(&live, desired, &|d, t| {
        rows.get(&(d.to_string(), t.to_string())).copied()
    });
    Ok((live, m))
}

/// What happens around each statement, for the audit.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    Before {
        index: usize,
        change: &'a Change,
    },
    After {
        index: usize,
        change: &'a Change,
        elapsed: Duration,
    },
    Failed {
        index: usize,
        change: &'a Change,
        error: String,
    },
}

/// Take the server-wide migration lock, waiting up to `wait`.
pub async fn lock(conn: &mut Conn, wait: Duration) -> Result<(), LiveError> {
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, ?)", (LOCK_NAME, wait.as_secs()))
        .await
        .map_err(q("take the migration lock"))?;
    match got.flatten() {
        Some(1) => Ok(()),
        _ => Err(LiveError::Locked(wait)),
    }
}

pub async fn unlock(conn: &mut Conn) {
    let _ = conn.exec_drop("SELECT RELEASE_LOCK(?)", (LOCK_NAME,)).await;
}

/// Bring the server to `desired`: plan, refuse what `allow` does not permit (before running
/// anything), run each statement with `audit` called around it, and check that nothing remains.
/// Call it under [`lock`]. Returns the statements it ran.
pub async fn apply(
    conn: &mut Conn,
    desired: &Schema,
    allow: &Allow,
    audit: &mut (dyn FnMut(Event<'_>) -> Result<(), String> + Send),
) -> Result<Vec<Change>, LiveError> {
    let (_, migration) = plan(conn, desired).await?;
    let refused = migration.refused(allow);
    if !refused.is_empty() {
        return Err(LiveError::Destructive(
            refused.iter().map(|d| d.reason.clone()).collect(),
        ));
    }
    for (index, change) in migration.changes.iter().enumerate() {
        audit(Event::Before { index, change }).map_err(LiveError::Model)?;
        let started = Instant::now();
        if let Err(e) = conn.query_drop(&change.sql).await {
            let _ = audit(Event::Failed {
                index,
                change,
                error: e.to_string(),
            });
            return Err(LiveError::Statement {
                index,
                sql: change.sql.clone(),
                source: e,
            });
        }
        audit(Event::After {
            index,
            change,
            elapsed: started.elapsed(),
        })
        .map_err(LiveError::Model)?;
    }
    let (_, remaining) = plan(conn, desired).await?;
    if !remaining.is_empty() {
        return Err(LiveError::Diverged(remaining.statements().join("; ")));
    }
    Ok(migration.changes)
}
