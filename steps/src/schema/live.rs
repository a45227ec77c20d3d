//! The live side: inspect a server through `information_schema`, plan against it, apply a
//! migration under `GET_LOCK`.
//!
//! Inspection reads six catalog views once each for all the databases asked about (not once
//! per table), so it costs a handful of round trips whatever the number of tables.

use super::diff::{diff, Algorithm, Allow, Change, Migration};
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
    #[error("refused before anything ran: {}. A change that may lose data can be allowed (--allow-destructive, release.toml's allow_destructive); rows that a change would break must be fixed first", .0.join("; "))]
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

/// Whether the server is MariaDB (else MySQL).
async fn is_mariadb(conn: &mut Conn) -> Result<bool, LiveError> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(q("read the server version"))?
        .unwrap_or_default();
    Ok(version.to_ascii_lowercase().contains("mariadb"))
}

async fn inspect_in(conn: &mut Conn, databases: &[String]) -> Result<Schema, LiveError> {
    let mariadb = is_mariadb(conn).await?;
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
                ..Default::default()
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
    // databases with a partitioned table (information_schema.PARTITIONS opens every table)
    let mut partitioned: BTreeSet<String> = BTreeSet::new();
    for r in rows {
        let (db, name) = (
            get_str(&r, 0).unwrap_or_default(),
            get_str(&r, 1).unwrap_or_default(),
        );
        let collation = get_str(&r, 3).map(|c| canonical_charset(&c));
        let create_options = get_str(&r, 5).unwrap_or_default();
        let mut row_format = None;
        let mut extra = BTreeMap::new();
        for kv in create_options.split_whitespace() {
            let Some((k, v)) = kv.split_once('=') else {
                if kv.eq_ignore_ascii_case("partitioned") {
                    partitioned.insert(db.clone());
                }
                continue;
            };
            if k.eq_ignore_ascii_case("row_format") {
                row_format = Some(v.to_ascii_lowercase());
            } else {
                set_extra_option(&mut extra, k, v.trim_matches('\''));
            }
        }
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
                extra,
            },
            primary_comment: String::new(),
            partitioning: None,
            checks: BTreeMap::new(),
        };
        if let Some(d) = schema.databases.get_mut(&db) {
            d.tables.insert(name, table);
        }
    }

    // CHECK constraints: MariaDB's json columns are longtext with a json_valid check at column
    // level; other column-level checks belong to their column (named after it), the rest to the
    // table. MySQL has no LEVEL column: its checks are all table-level.
    let checks: Vec<Row> = match conn
        .exec(format!("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE, LEVEL FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ({list})"), p.clone())
        .await
    {
        Ok(rows) => rows,
        Err(_) => conn
            .exec(format!("SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE, 'Table' FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ({list})"), p.clone())
            .await
            .map_err(q("read information_schema.CHECK_CONSTRAINTS"))?,
    };
    let mut json_checks: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut column_checks: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for r in checks {
        let (db, tname, cname) = first_three(&r);
        let clause = canonical_expr(&get_str(&r, 3).unwrap_or_default());
        let column_level = get_str(&r, 4).as_deref() == Some("Column");
        if column_level && clause == format!("json_valid({})", quote_ident(&cname)) {
            json_checks.insert((db, tname, cname));
        } else if column_level {
            column_checks.insert((db, tname, cname), clause);
        } else if let Some(t) = table_mut(&mut schema, &db, &tname) {
            t.checks.insert(cname, clause);
        }
    }

    // geometry columns' spatial reference systems (MariaDB; absent elsewhere)
    let mut srids: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    let geo: Result<Vec<(String, String, String, u32)>, _> = conn
        .exec(
            format!("SELECT G_TABLE_SCHEMA, G_TABLE_NAME, G_GEOMETRY_COLUMN, SRID FROM information_schema.GEOMETRY_COLUMNS WHERE G_TABLE_SCHEMA IN ({list}) AND SRID <> 0"),
            p.clone(),
        )
        .await;
    for (d, t, c, srid) in geo.unwrap_or_default() {
        srids.insert((d, t, c), srid);
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
        let check = column_checks.remove(&(db.clone(), tname.clone(), cname.clone()));
        let srid = srids
            .get(&(db.clone(), tname.clone(), cname.clone()))
            .copied();
        let mut col = Column {
            name: cname,
            ty,
            nullable: get_str(&r, 4).as_deref() == Some("YES"),
            default,
            on_update,
            auto_increment: extra.contains("auto_increment"),
            generated,
            comment: get_str(&r, 9).unwrap_or_default(),
            check,
            srid,
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
            t.primary_comment = get_str(&r, 8).unwrap_or_default();
            continue;
        }
        let index_type = get_str(&r, 7).unwrap_or_default().to_ascii_uppercase();
        // (the catalog shows a SPATIAL key part as a 32-byte prefix no text can write)
        let part = if index_type == "SPATIAL" {
            KeyPart {
                prefix: None,
                ..part
            }
        } else {
            part
        };
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
                using: None,
                position: 0,
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
    for (name, db) in schema.databases.iter_mut() {
        super::objects::inspect(conn, name, db)
            .await
            .map_err(q(format!("read the views, triggers and events of {name}")))?;
        if !partitioned.contains(name) {
            continue;
        }
        let parts = super::partition::inspect(conn, name)
            .await
            .map_err(q(format!("read the partitions of {name}")))?;
        for (t, p) in parts {
            if let Some(t) = db.tables.get_mut(&t) {
                t.partitioning = Some(p);
            }
        }
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
    let mariadb = is_mariadb(conn).await?;
    let mut out = desired.clone();
    for db in out.databases.values_mut() {
        fill(&db.charset, &mut db.collation);
        for t in db.tables.values_mut() {
            fill(&t.options.charset, &mut t.options.collation);
            for c in &mut t.columns {
                fill(&c.charset, &mut c.collation);
                // MySQL 8 shows no display widths but tinyint(1)'s: what the live side reads
                // back is the type's default
                let boolean = c.ty.base == "tinyint" && c.ty.args == ["1"];
                if !mariadb && c.ty.is_integer() && !c.ty.zerofill && !boolean {
                    c.ty.args = vec![default_int_width(&c.ty.base, c.ty.unsigned).to_string()];
                }
            }
        }
    }
    canonical_checks(conn, &mut out).await?;
    computed_bounds(conn, &mut out).await?;
    Ok(out)
}

/// A partition bound written as an expression (`TO_DAYS('2024-01-01')`) is stored by the server
/// as its value: ask the server for it.
async fn computed_bounds(conn: &mut Conn, desired: &mut Schema) -> Result<(), LiveError> {
    for db in desired.databases.values_mut() {
        for t in db.tables.values_mut() {
            let Some(p) = &mut t.partitioning else {
                continue;
            };
            if p.method.contains("COLUMNS") {
                continue; // column lists hold literals
            }
            for part in &mut p.partitions {
                let Some(b) = &part.bound else { continue };
                if !b.contains('(') {
                    continue;
                }
                let v: Option<String> = conn
                    .query_first(format!("SELECT CAST(({b}) AS CHAR)"))
                    .await
                    .map_err(|e| {
                        LiveError::Model(format!(
                            "table {}: partition {} bound {b}: {e}",
                            t.name, part.name
                        ))
                    })?;
                if let Some(v) = v {
                    part.bound = Some(v);
                }
            }
        }
    }
    Ok(())
}

/// The name of the temporary table [`canonical_checks`] makes (visible to its session only).
const CHECKS_PROBE: &str = "_molt_canon_checks";

/// Put the desired CHECK constraints in the server's own words. The server rewrites a check
/// (`NOT a > 0` -> `a <= 0`, `length` -> `octet_length`, `IN (1)` -> `= 1` ...), so each table's
/// checks are made on a temporary table of the same columns (seen by this session only, gone
/// with it) and read back. Databases that do not exist yet are left as written: the check after
/// the migration sees them resolved. A check the server refuses is an error, before anything runs.
async fn canonical_checks(conn: &mut Conn, desired: &mut Schema) -> Result<(), LiveError> {
    for (dbname, db) in desired.databases.iter_mut() {
        let tables: Vec<&mut Table> = db
            .tables
            .values_mut()
            .filter(|t| !t.checks.is_empty() || t.columns.iter().any(|c| c.check.is_some()))
            .collect();
        if tables.is_empty() {
            continue;
        }
        let exists: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (dbname.as_str(),),
            )
            .await
            .map_err(q("read information_schema.SCHEMATA"))?;
        if exists.is_none() {
            continue;
        }
        let probe = super::diff::qualified(dbname, CHECKS_PROBE);
        for t in tables {
            let mut lines: Vec<String> = t
                .columns
                .iter()
                .map(|c| {
                    let ty = if c.ty.base == "json" {
                        "longtext".to_string()
                    } else {
                        c.ty.to_string()
                    };
                    let mut l = format!("{} {ty}", quote_ident(&c.name));
                    if let Some(check) = &c.check {
                        l.push_str(&format!(" CHECK ({check})"));
                    }
                    l
                })
                .collect();
            lines.extend(
                t.checks
                    .iter()
                    .map(|(n, e)| format!("CONSTRAINT {} CHECK ({e})", quote_ident(n))),
            );
            let _ = conn
                .query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {probe}"))
                .await;
            conn.query_drop(format!(
                "CREATE TEMPORARY TABLE {probe} ({})",
                lines.join(", ")
            ))
            .await
            .map_err(|e| {
                LiveError::Model(format!(
                    "table {dbname}.{}: the server refuses its CHECK constraints: {e}",
                    t.name
                ))
            })?;
            let shown: Option<(String, String)> = conn
                .query_first(format!("SHOW CREATE TABLE {probe}"))
                .await
                .map_err(q("read back the CHECK constraints"))?;
            let _ = conn
                .query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {probe}"))
                .await;
            let text = shown.map(|s| s.1).unwrap_or_default();
            for line in text.lines() {
                let line = line.trim().trim_end_matches(',');
                let Some((head, expr)) = line.split_once(" CHECK (") else {
                    continue;
                };
                let expr = canonical_expr(expr.strip_suffix(')').unwrap_or(expr));
                let chars: Vec<char> = head.chars().collect();
                if let Some(rest) = head.strip_prefix("CONSTRAINT ") {
                    let rest: Vec<char> = rest.chars().collect();
                    if let Some((name, _)) = read_quoted(&rest, 0) {
                        t.checks.insert(name, expr);
                    }
                } else if chars.first() == Some(&'`') {
                    if let Some((name, _)) = read_quoted(&chars, 0) {
                        if let Some(c) = t.columns.iter_mut().find(|c| c.name == name) {
                            c.check = Some(expr);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Put the desired views in the server's own words: each is made under a probe name (in
/// dependency order) from its source, on the tables as they are now, and its rendering read
/// back. Only meaningful once the tables are as desired (`plan` calls it then). A view that
/// reads other views of the file and fails is left unknown (the differ replaces it, and the
/// check after the migration compares it); one that reads only tables and fails is an error
/// naming its line, before anything runs.
async fn resolve_views(conn: &mut Conn, desired: &mut Schema) -> Result<(), LiveError> {
    let probe = format!("{}{}", super::objects::PROBE_PREFIX, std::process::id());
    for (dbname, db) in desired.databases.iter_mut() {
        if db.views.is_empty() {
            continue;
        }
        conn.query_drop(format!("USE {}", quote_ident(dbname)))
            .await
            .map_err(q(format!("use database {dbname}")))?;
        let order: Vec<String> = super::objects::view_order(db)
            .into_iter()
            .map(|v| v.name.clone())
            .collect();
        for name in order {
            let view = &db.views[&name];
            let reads_views = db
                .views
                .keys()
                .any(|o| *o != name && super::objects::mentions(&view.source, o));
            let sql = super::objects::create_view_sql(dbname, &probe, view);
            if let Err(e) = conn.query_drop(&sql).await {
                if reads_views {
                    continue;
                }
                return Err(LiveError::Model(format!(
                    "view {dbname}.{name} (schema file line {}): the server refuses it: {e}",
                    view.line
                )));
            }
            let row: Option<(String, String, String, String)> = conn
                .exec_first(
                    "SELECT VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE, ALGORITHM                      FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (dbname.as_str(), probe.as_str()),
                )
                .await
                .map_err(q("read back a probe view"))?;
            conn.query_drop(format!(
                "DROP VIEW IF EXISTS {}",
                super::diff::qualified(dbname, &probe)
            ))
            .await
            .map_err(q("drop a probe view"))?;
            if let (Some((definition, check, security, algorithm)), Some(v)) =
                (row, db.views.get_mut(&name))
            {
                v.definition = Some(canonical_expr(&definition));
                v.check_option = check;
                v.security = security;
                v.algorithm = algorithm;
            }
        }
    }
    Ok(())
}

/// `USING BTREE|HASH` of the live indexes of the desired tables that have B-tree indexes: the
/// server shows it in `SHOW CREATE TABLE` only (its catalog says BTREE either way). A UNIQUE
/// over a whole TEXT or BLOB column is a hash index whatever the text says: taken as written.
async fn index_methods(
    conn: &mut Conn,
    live: &mut Schema,
    desired: &Schema,
) -> Result<(), LiveError> {
    for (dbname, db) in &desired.databases {
        for (tname, t) in &db.tables {
            let Some(lt) = table_mut(live, dbname, tname) else {
                continue;
            };
            let btree = |i: &Index| matches!(i.kind, IndexKind::Index | IndexKind::Unique);
            if !lt.indexes.values().any(btree) {
                continue;
            }
            let shown: Option<(String, String)> = conn
                .query_first(format!(
                    "SHOW CREATE TABLE {}",
                    super::diff::qualified(dbname, tname)
                ))
                .await
                .map_err(q(format!("read {dbname}.{tname}'s index methods")))?;
            let text = shown.map(|s| s.1).unwrap_or_default();
            // whole TEXT/BLOB columns: a UNIQUE over one is a hash index whatever the text says
            let long: BTreeSet<String> = lt
                .columns
                .iter()
                .filter(|c| c.ty.base.ends_with("text") || c.ty.base.ends_with("blob"))
                .map(|c| c.name.clone())
                .collect();
            for line in text.lines() {
                let line = line.trim();
                let Some(at) = line.find("KEY `") else {
                    continue;
                };
                let chars: Vec<char> = line[at + 4..].chars().collect();
                let Some((name, _)) = read_quoted(&chars, 0) else {
                    continue;
                };
                let using = ["BTREE", "HASH"]
                    .into_iter()
                    .find(|m| line.contains(&format!(") USING {m}")));
                let Some(ix) = lt.indexes.get_mut(&name) else {
                    continue;
                };
                let long_unique = ix.kind == IndexKind::Unique
                    && ix
                        .parts
                        .iter()
                        .any(|p| p.prefix.is_none() && long.contains(&p.column));
                ix.using = if long_unique {
                    t.indexes.get(&name).and_then(|i| i.using.clone())
                } else {
                    using.map(str::to_string)
                };
            }
        }
    }
    Ok(())
}

/// Drop probe views a killed molt left behind (under the migration lock).
async fn drop_stale_probes(conn: &mut Conn, desired: &Schema) -> Result<(), LiveError> {
    for dbname in desired.databases.keys() {
        let pattern = format!("{}%", super::objects::PROBE_PREFIX.replace('_', "\\_"));
        let stale: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ?",
                (dbname.as_str(), pattern.as_str()),
            )
            .await
            .map_err(q("look for leftover probe views"))?;
        for v in stale {
            conn.query_drop(format!(
                "DROP VIEW IF EXISTS {}",
                super::diff::qualified(dbname, &v)
            ))
            .await
            .map_err(q("drop a leftover probe view"))?;
        }
    }
    Ok(())
}

/// The migration from the live server to `desired`, its lint informed by which tables hold rows.
pub async fn plan(conn: &mut Conn, desired: &Schema) -> Result<(Schema, Migration), LiveError> {
    let desired = &resolve_server_defaults(conn, desired).await?;
    let dbs: Vec<String> = desired.databases.keys().cloned().collect();
    let mut live = inspect(conn, &dbs).await?;
    index_methods(conn, &mut live, desired).await?;
    let mut first = diff(&live, desired, &|_, _| None);
    // Views are compared in the server's words, which need the tables as desired.
    let mut resolved;
    let mut desired = desired;
    let has_views = desired.databases.values().any(|d| !d.views.is_empty());
    if has_views && first.changes.iter().all(|c| c.object.is_some()) {
        resolved = desired.clone();
        resolve_views(conn, &mut resolved).await?;
        desired = &resolved;
        first = diff(&live, desired, &|_, _| None);
    }
    let risky: BTreeSet<(String, String)> = first
        .changes
        .iter()
        .filter(|c| !c.destructive.is_empty())
        .filter_map(|c| c.table.clone().map(|t| (c.database.clone(), t)))
        .filter(|(d, t)| live.table(d, t).is_some())
        .collect();
    let mut m = if risky.is_empty() {
        first
    } else {
        let rows = rows_of(conn, &risky).await?;
        diff(&live, desired, &|d, t| {
            rows.get(&(d.to_string(), t.to_string())).copied()
        })
    };
    // The rows themselves: what the change would fail on or silently alter.
    let findings = super::preflight::check(conn, &live, desired)
        .await
        .map_err(q("check the live rows (preflight)"))?;
    for (db, table, finding) in findings {
        let at = m
            .changes
            .iter()
            .position(|c| c.database == db && c.table.as_deref() == Some(table.as_str()))
            .unwrap_or(0);
        if let Some(c) = m.changes.get_mut(at) {
            c.destructive.push(finding);
        }
    }
    Ok((live, m))
}

/// Run one statement. An `ALTER TABLE` asks for the cheapest algorithm first and falls back
/// when the server answers that it cannot (it refuses before touching anything): the online
/// ways keep the table readable and writable, and a copy happens only when nothing else can.
/// Returns the algorithm that ran, for an `ALTER TABLE`.
async fn run_change(
    conn: &mut Conn,
    change: &Change,
) -> Result<Option<Algorithm>, mysql_async::Error> {
    if change.algorithm.is_none() {
        return conn.query_drop(&change.sql).await.map(|_| None);
    }
    for algorithm in Algorithm::ALL {
        let sql = format!("{}{}", change.sql, algorithm.clause());
        match conn.query_drop(&sql).await {
            Ok(()) => return Ok(Some(algorithm)),
            // 1845/1846: not supported for this operation; 1064: a server without this
            // algorithm's keyword (MySQL has no NOCOPY)
            Err(mysql_async::Error::Server(e))
                if algorithm != Algorithm::Copy && matches!(e.code, 1845 | 1846 | 1064) => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last algorithm asks for nothing and returns")
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
        /// The algorithm an `ALTER TABLE` ran with.
        algorithm: Option<Algorithm>,
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
    drop_stale_probes(conn, desired).await?;
    let (_, migration) = plan(conn, desired).await?;
    let refused = migration.refused(allow);
    if !refused.is_empty() {
        return Err(LiveError::Destructive(
            refused.iter().map(|d| d.reason.clone()).collect(),
        ));
    }
    for (index, change) in migration.changes.iter().enumerate() {
        audit(Event::Before { index, change }).map_err(LiveError::Model)?;
        if change.object.is_some() {
            // a view's query names tables as the file wrote them
            conn.query_drop(format!("USE {}", quote_ident(&change.database)))
                .await
                .map_err(q(format!("use database {}", change.database)))?;
        }
        let started = Instant::now();
        let algorithm = match run_change(conn, change).await {
            Ok(a) => a,
            Err(e) => {
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
        };
        audit(Event::After {
            index,
            change,
            elapsed: started.elapsed(),
            algorithm,
        })
        .map_err(LiveError::Model)?;
    }
    let (_, remaining) = plan(conn, desired).await?;
    if !remaining.is_empty() {
        return Err(LiveError::Diverged(remaining.statements().join("; ")));
    }
    Ok(migration.changes)
}
