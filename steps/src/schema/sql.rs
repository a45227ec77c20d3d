//! Loader from SQL text: the vendor's schema file or a mysqldump.
//!
//! Two stages. molt's own splitter cuts the text into statements the way the `mysql` client
//! does (`;` outside strings and comments, `DELIMITER` lines, `--`/`#`/`/* */` comments,
//! executable comments `/*!40101 ... */` and `/*M!... */` unwrapped), keeping each statement's
//! first line. Each statement is then classified by its leading words: tables, indexes and
//! `ALTER TABLE`s go to sqlparser's MySQL dialect and into the model (an `ALTER TABLE` folded
//! into the table as the server would apply it); views, triggers and events to
//! [`super::objects`]; statements that are not schema (GRANT, SET, INSERT ...) are reported in
//! [`Loaded::skipped`], never silently dropped; routines, sequences and anything else are an
//! error naming the line.

use super::model::*;
use super::objects;
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, CreateIndex, CreateTable,
    CreateTableOptions, Expr, GeneratedExpressionMode, IndexColumn, IndexOption,
    MySQLColumnPosition, ObjectName, ObjectType, OrderBySort, SqlOption, Statement,
    TableConstraint, Use, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use std::collections::BTreeMap;

/// One statement of a SQL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStatement {
    /// 1-based line of the statement's first character.
    pub line: usize,
    pub text: String,
}

/// A statement the loader read but did not turn into schema.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub line: usize,
    /// What it is: "GRANT", "SET", "INSERT", "CREATE VIEW" ...
    pub kind: String,
    /// Its first 80 characters.
    pub excerpt: String,
}

/// The result of loading a file.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub schema: Schema,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Database for tables named without one before any `USE` (a dump of one database).
    pub default_database: Option<String>,
    /// Database names to replace while loading (`agent_platform` -> `scratch_1`).
    pub rename: BTreeMap<String, String>,
}

/// A statement that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SqlError {
    pub line: usize,
    pub message: String,
}

/// Split SQL text into statements like the `mysql` command-line client.
pub fn split(text: &str) -> Result<Vec<RawStatement>, SqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_line = 0usize; // 0: statement not started
    let mut line = 1usize;
    let mut delimiter: Vec<char> = vec![';'];
    let mut in_exec_comment = false;
    let mut exec_comment_line = 0;
    let mut i = 0;
    let at_line_start = |cur: &str| cur.trim().is_empty();
    while i < chars.len() {
        let c = chars[i];
        // DELIMITER is a client command, valid only at the start of a statement.
        if cur_line == 0 && at_line_start(&cur) && starts_word(&chars, i, "DELIMITER") {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            let arg: String = chars[i + 9..end].iter().collect();
            let arg = arg.trim();
            if arg.is_empty() {
                return Err(SqlError {
                    line,
                    message: "DELIMITER without a delimiter".into(),
                });
            }
            delimiter = arg.chars().collect();
            i = end;
            cur.clear();
            continue;
        }
        if chars[i..].starts_with(&delimiter) {
            push_statement(&mut out, &mut cur, &mut cur_line);
            i += delimiter.len();
            continue;
        }
        match c {
            '\n' => {
                line += 1;
                cur.push('\n');
                i += 1;
            }
            '\'' | '"' | '`' => {
                let start_line = line;
                if cur_line == 0 {
                    cur_line = line;
                }
                let mut j = i + 1;
                loop {
                    let Some(&d) = chars.get(j) else {
                        return Err(SqlError {
                            line: start_line,
                            message: format!("unterminated {c} quote"),
                        });
                    };
                    if d == '\n' {
                        line += 1;
                    }
                    if d == '\\' && c != '`' {
                        j += 2;
                        continue;
                    }
                    if d == c {
                        if chars.get(j + 1) == Some(&c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                cur.extend(&chars[i..=j]);
                i = j + 1;
            }
            '#' => skip_line_comment(&chars, &mut i),
            '-' if chars.get(i + 1) == Some(&'-')
                && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) =>
            {
                skip_line_comment(&chars, &mut i)
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let marker = if chars.get(i + 2) == Some(&'!') {
                    3
                } else if chars.get(i + 2) == Some(&'M') && chars.get(i + 3) == Some(&'!') {
                    4
                } else {
                    0
                };
                let version: String = chars[(i + marker).min(chars.len())..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                // A version no server reaches (`/*M!999999\- enable the sandbox mode */`, a
                // client command in MariaDB's dumps) is an ordinary comment.
                let exec = marker > 0 && version.parse::<u64>().map_or(true, |v| v < 999_999);
                if exec {
                    // executable comment: its body is SQL; drop the marker and version
                    i += if chars[i + 2] == 'M' { 4 } else { 3 };
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    cur.push(' ');
                    in_exec_comment = true;
                    exec_comment_line = line;
                } else {
                    let start_line = line;
                    let mut j = i + 2;
                    loop {
                        if j + 1 >= chars.len() {
                            return Err(SqlError {
                                line: start_line,
                                message: "unterminated /* comment".into(),
                            });
                        }
                        if chars[j] == '\n' {
                            line += 1;
                            cur.push('\n');
                        }
                        if chars[j] == '*' && chars[j + 1] == '/' {
                            break;
                        }
                        j += 1;
                    }
                    cur.push(' ');
                    i = j + 2;
                }
            }
            '*' if in_exec_comment && chars.get(i + 1) == Some(&'/') => {
                in_exec_comment = false;
                cur.push(' ');
                i += 2;
            }
            c => {
                if cur_line == 0 && !c.is_whitespace() {
                    cur_line = line;
                }
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_exec_comment {
        return Err(SqlError {
            line: exec_comment_line,
            message: "unterminated /*! comment".into(),
        });
    }
    push_statement(&mut out, &mut cur, &mut cur_line);
    Ok(out)
}

fn starts_word(chars: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    chars.len() >= i + w.len()
        && chars[i..i + w.len()]
            .iter()
            .zip(&w)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
        && chars.get(i + w.len()).is_none_or(|c| c.is_whitespace())
}

fn skip_line_comment(chars: &[char], i: &mut usize) {
    while *i < chars.len() && chars[*i] != '\n' {
        *i += 1;
    }
}

fn push_statement(out: &mut Vec<RawStatement>, cur: &mut String, cur_line: &mut usize) {
    // Text before the first non-blank character (blank lines, comments) is dropped so that
    // line numbers inside the statement count from its first line.
    let trimmed = cur.trim();
    if !trimmed.is_empty() {
        out.push(RawStatement {
            line: *cur_line,
            text: trimmed.to_string(),
        });
    }
    cur.clear();
    *cur_line = 0;
}

/// Load SQL text into a schema model.
pub fn load(text: &str, opts: &LoadOptions) -> Result<Loaded, SqlError> {
    let mut loader = Loader {
        opts,
        current: opts.default_database.as_ref().map(|d| rename(opts, d)),
        out: Loaded::default(),
    };
    // The database the connection names is in scope even when the file has nothing for it:
    // "no tables" there is what the file says, not "nothing to do".
    if let Some(db) = loader.current.clone() {
        loader.database(&db);
    }
    for stmt in split(text)? {
        loader.statement(&stmt)?;
    }
    for db in loader.out.schema.databases.values_mut() {
        for t in db.tables.values_mut() {
            finish_table(t);
        }
    }
    Ok(loader.out)
}

fn rename(opts: &LoadOptions, db: &str) -> String {
    opts.rename
        .get(db)
        .cloned()
        .unwrap_or_else(|| db.to_string())
}

/// An index as written: name (unnamed ones are named when settled), parts, kind, comment,
/// `USING` method.
type PendingIndex = (
    Option<String>,
    Vec<KeyPart>,
    IndexKind,
    String,
    Option<String>,
);

/// What a table's definition leaves for [`Loader::settle`].
#[derive(Default)]
struct TableBuild {
    /// Indexes in the order written.
    pending: Vec<PendingIndex>,
    /// Columns written `longtext ... CHECK (json_valid(col))`: MariaDB's json.
    json_cols: Vec<String>,
    unnamed_checks: usize,
    /// Foreign keys added: name, and whether the text named it.
    fks: Vec<(String, bool)>,
}

struct Loader<'a> {
    opts: &'a LoadOptions,
    current: Option<String>,
    out: Loaded,
}

/// Leading words of a statement, uppercase, skipping `DEFINER=...`, `OR REPLACE`,
/// `ALGORITHM=...`, `SQL SECURITY ...` so that views and routines classify.
fn leading_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for w in text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
    {
        let u = w.to_ascii_uppercase();
        if u.starts_with("DEFINER")
            || u.starts_with("ALGORITHM")
            || u == "OR"
            || u == "REPLACE" && words.len() == 1
        {
            continue;
        }
        words.push(u);
        if words.len() == 4 {
            break;
        }
    }
    words
}

const NOT_SCHEMA: &[&str] = &[
    "GRANT",
    "REVOKE",
    "FLUSH",
    "SET",
    "INSERT",
    "REPLACE",
    "UPDATE",
    "DELETE",
    "LOCK",
    "UNLOCK",
    "START",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "ANALYZE",
    "OPTIMIZE",
    "TRUNCATE",
    "CALL",
    "DO",
    "SELECT",
    "SAVEPOINT",
    "RELEASE",
    "CHECKSUM",
];
/// Objects that are not the schema's (accounts); views, triggers, events and routines are
/// handled before this list is consulted.
const NOT_SCHEMA_OBJECTS: &[&str] = &["USER", "ROLE", "SERVER"];

impl Loader<'_> {
    fn statement(&mut self, stmt: &RawStatement) -> Result<(), SqlError> {
        let words = leading_words(&stmt.text);
        let first = words.first().map(String::as_str).unwrap_or("");
        let second = words.get(1).map(String::as_str).unwrap_or("");
        let object_word = words
            .iter()
            .skip(1)
            .find(|w| {
                !matches!(
                    w.as_str(),
                    "SQL" | "SECURITY" | "INVOKER" | "DEFINER" | "AGGREGATE" | "TEMPORARY"
                )
            })
            .map(String::as_str)
            .unwrap_or("");
        if matches!(first, "CREATE" | "DROP" | "ALTER") {
            let kind = objects::object_kind(&stmt.text).unwrap_or_default();
            match (first, kind.as_str()) {
                ("CREATE" | "ALTER", "VIEW") => return self.create_view(stmt, first == "ALTER"),
                ("CREATE", "TRIGGER") => return self.create_trigger(stmt),
                ("CREATE", "EVENT") => return self.create_event(stmt),
                ("DROP", "VIEW" | "TRIGGER" | "EVENT") => return self.drop_object(stmt, &kind),
                ("ALTER", "TRIGGER" | "EVENT") => {
                    return Err(self.err(
                        stmt,
                        format!("ALTER {kind} in a schema file is not supported: write the {} as it should end up, with CREATE {kind}", kind.to_ascii_lowercase()),
                    ))
                }
                (_, "PROCEDURE" | "FUNCTION" | "PACKAGE" | "SEQUENCE") => {
                    return Err(self.err(
                        stmt,
                        format!("{first} {kind}: stored procedures, functions, packages and sequences are not modelled by molt's schema migration, so it could not keep them as the file says (remove them from the schema file, or create them from the application)"),
                    ))
                }
                _ => {}
            }
        }
        if NOT_SCHEMA.contains(&first)
            || (matches!(first, "CREATE" | "DROP" | "ALTER")
                && NOT_SCHEMA_OBJECTS.contains(&object_word))
        {
            let kind = if matches!(first, "CREATE" | "DROP" | "ALTER") {
                format!("{first} {object_word}")
            } else {
                first.to_string()
            };
            return self.skip(stmt, kind);
        }
        if first == "ALTER" && second == "TABLE" {
            let upper = stmt.text.to_ascii_uppercase();
            let tail: Vec<&str> = upper.split_whitespace().rev().take(2).collect();
            if tail.len() == 2 && tail[0] == "KEYS" && (tail[1] == "DISABLE" || tail[1] == "ENABLE")
            {
                return self.skip(stmt, format!("ALTER TABLE {} KEYS", tail[1]));
            }
        }
        if first == "CREATE" && matches!(second, "FULLTEXT" | "SPATIAL") {
            // sqlparser knows CREATE [UNIQUE] INDEX only: parse without the kind, then set it.
            let pos = stmt.text.to_ascii_uppercase().find(second).unwrap_or(0);
            let text = format!("{}{}", &stmt.text[..pos], &stmt.text[pos + second.len()..]);
            let parsed = self.parse(&RawStatement {
                line: stmt.line,
                text,
            })?;
            let kind = if second == "FULLTEXT" {
                IndexKind::Fulltext
            } else {
                IndexKind::Spatial
            };
            return match parsed {
                Statement::CreateIndex(ci) => self.create_index(stmt, &ci, Some(kind)),
                _ => Err(self.err(stmt, format!("expected CREATE {second} INDEX"))),
            };
        }
        if first == "CREATE" && objects::object_kind(&stmt.text).as_deref() == Some("TABLE") {
            // PARTITION BY is molt's own parsing: sqlparser gets the table without it
            if let (table, Some(clause)) = super::partition::split(&stmt.text) {
                let partitioning = super::partition::parse(clause)
                    .map_err(|m| self.err(stmt, format!("PARTITION BY: {m}")))?;
                let table_stmt = RawStatement {
                    line: stmt.line,
                    text: table.to_string(),
                };
                let Statement::CreateTable(ct) = self.parse(&table_stmt)? else {
                    return Err(self.err(stmt, "expected CREATE TABLE".into()));
                };
                self.create_table(stmt, &ct)?;
                let (db, name) = self.qualify(stmt, &ct.name)?;
                let t = self
                    .out
                    .schema
                    .databases
                    .get_mut(&db)
                    .and_then(|d| d.tables.get_mut(&name))
                    .expect("just created");
                // what MariaDB refuses: every unique key must hold the partitioning columns
                let cols = partitioning.columns();
                for c in &cols {
                    if t.column(c).is_none() {
                        return Err(
                            self.err(stmt, format!("PARTITION BY names unknown column {c}"))
                        );
                    }
                }
                let uniques = t
                    .primary_key
                    .iter()
                    .map(|k| ("PRIMARY KEY".to_string(), k))
                    .chain(
                        t.indexes
                            .values()
                            .filter(|i| i.kind == IndexKind::Unique)
                            .map(|i| (format!("UNIQUE key {}", i.name), &i.parts)),
                    );
                for (what, parts) in uniques {
                    if let Some(c) = cols
                        .iter()
                        .find(|c| !parts.iter().any(|p| p.column.eq_ignore_ascii_case(c)))
                    {
                        return Err(self.err(
                            stmt,
                            format!("table {name}: the {what} must include every column of the partitioning function ({c} is not in it), or MariaDB refuses the table"),
                        ));
                    }
                }
                if !t.foreign_keys.is_empty() {
                    return Err(self.err(
                        stmt,
                        format!("table {name}: InnoDB has no foreign keys on partitioned tables"),
                    ));
                }
                t.partitioning = Some(partitioning);
                return Ok(());
            }
        }
        if has_word_outside_strings(&stmt.text, "PARTITION") {
            return Err(self.err(
                stmt,
                "PARTITION outside a CREATE TABLE's PARTITION BY is not supported: write the partitioning into the CREATE TABLE".into(),
            ));
        }
        match self.parse(stmt)? {
            Statement::CreateDatabase {
                db_name,
                default_charset,
                default_collation,
                ..
            } => {
                let name = rename(self.opts, &last_name(&db_name));
                let db = self.database(&name);
                if let Some(cs) = default_charset {
                    db.charset = Some(canonical_charset(&cs));
                }
                if let Some(co) = default_collation {
                    let co = canonical_charset(&co);
                    db.charset = Some(charset_of(&co));
                    db.collation = Some(co);
                }
                Ok(())
            }
            Statement::Use(u) => {
                let name = match u {
                    Use::Object(n) | Use::Database(n) | Use::Schema(n) => last_name(&n),
                    other => return Err(self.err(stmt, format!("unsupported USE form: {other}"))),
                };
                let name = rename(self.opts, &name);
                self.database(&name);
                self.current = Some(name);
                Ok(())
            }
            Statement::CreateTable(ct) => self.create_table(stmt, &ct),
            Statement::AlterTable(at) => self.alter_table(stmt, &at),
            Statement::RenameTable(pairs) => {
                for r in pairs {
                    let (db, from) = self.qualify(stmt, &r.old_name)?;
                    let (to_db, to) = self.qualify(stmt, &r.new_name)?;
                    if to_db != db {
                        return Err(self.err(
                            stmt,
                            format!(
                                "RENAME TABLE {db}.{from} to another database is not supported"
                            ),
                        ));
                    }
                    self.rename_table(stmt, &db, &from, &to)?;
                }
                Ok(())
            }
            Statement::Drop {
                object_type: ObjectType::Index,
                names,
                table: Some(on),
                ..
            } => {
                let (db, table) = self.qualify(stmt, &on)?;
                let Some(t) = self
                    .out
                    .schema
                    .databases
                    .get_mut(&db)
                    .and_then(|d| d.tables.get_mut(&table))
                else {
                    return Err(self.err(
                        stmt,
                        format!("DROP INDEX on {db}.{table}, which no earlier statement creates"),
                    ));
                };
                for n in names {
                    let ix = last_name(&n);
                    let gone = if ix.eq_ignore_ascii_case("PRIMARY") {
                        t.primary_key.take().is_some()
                    } else {
                        t.indexes.remove(&ix).is_some()
                    };
                    if !gone {
                        return Err(self.err(
                            stmt,
                            format!("DROP INDEX {ix}: no such index on {db}.{table}"),
                        ));
                    }
                }
                Ok(())
            }
            Statement::CreateIndex(ci) => self.create_index(stmt, &ci, None),
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                if_exists,
                ..
            } => {
                for n in names {
                    let (db, table) = self.qualify(stmt, &n)?;
                    let removed = self
                        .out
                        .schema
                        .databases
                        .get_mut(&db)
                        .and_then(|d| d.tables.remove(&table));
                    if removed.is_none() && !if_exists {
                        return Err(self.err(
                            stmt,
                            format!("DROP TABLE {db}.{table}: no such table earlier in the file"),
                        ));
                    }
                }
                Ok(())
            }
            other => Err(self.err(
                stmt,
                format!(
                    "unsupported statement in a schema file: {}",
                    excerpt(&other.to_string())
                ),
            )),
        }
    }

    /// The database an object named `db.name` or `name` belongs to.
    fn object_db(
        &self,
        stmt: &RawStatement,
        db: Option<String>,
        name: &str,
    ) -> Result<String, SqlError> {
        match db {
            Some(d) => Ok(rename(self.opts, &d)),
            None => self.current.clone().ok_or_else(|| {
                self.err(
                    stmt,
                    format!("{name} has no database: add USE or CREATE DATABASE before it"),
                )
            }),
        }
    }

    fn create_view(&mut self, stmt: &RawStatement, alter: bool) -> Result<(), SqlError> {
        let text = if alter {
            // ALTER VIEW takes the same clauses as CREATE VIEW
            let at = stmt.text.to_ascii_uppercase().find("ALTER").unwrap_or(0);
            format!("{}CREATE{}", &stmt.text[..at], &stmt.text[at + 5..])
        } else {
            stmt.text.clone()
        };
        let def = objects::parse_view(&text, stmt.line).map_err(|m| self.err(stmt, m))?;
        let db = self.object_db(stmt, def.database.clone(), &def.view.name)?;
        // The query must parse, and read only tables and views the file made before it.
        let parsed = Parser::parse_sql(&MySqlDialect {}, &def.query).map_err(|e| {
            let (line, msg) = absolute_location(&e.to_string(), stmt.line + def.query_line);
            SqlError {
                line,
                message: format!("view {}: cannot parse its query: {msg}", def.view.name),
            }
        })?;
        let query = match parsed.as_slice() {
            [Statement::Query(q)] => q,
            _ => {
                return Err(self.err(
                    stmt,
                    format!("view {}: its query is not one SELECT", def.view.name),
                ))
            }
        };
        let ctes: Vec<String> = query
            .with
            .iter()
            .flat_map(|w| {
                w.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_ascii_lowercase())
            })
            .collect();
        let mut missing = None;
        let _ = sqlparser::ast::visit_relations(query.as_ref(), |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| unquote_ident(&p.to_string()))
                .collect();
            let (rdb, rname) = match parts.as_slice() {
                [t] if ctes.contains(&t.to_ascii_lowercase()) || t.eq_ignore_ascii_case("dual") => {
                    return std::ops::ControlFlow::<()>::Continue(())
                }
                [t] => (db.clone(), t.clone()),
                [d, t] => (rename(self.opts, d), t.clone()),
                _ => (String::new(), name.to_string()),
            };
            let known = self
                .out
                .schema
                .databases
                .get(&rdb)
                .is_some_and(|d| d.tables.contains_key(&rname) || d.views.contains_key(&rname));
            if !known && missing.is_none() {
                missing = Some(format!("{rdb}.{rname}"));
            }
            std::ops::ControlFlow::Continue(())
        });
        if let Some(m) = missing {
            return Err(self.err(
                stmt,
                format!(
                    "view {} reads {m}, which no earlier statement of the file creates",
                    def.view.name
                ),
            ));
        }
        let name = def.view.name.clone();
        let d = self.database(&db);
        if d.tables.contains_key(&name) {
            return Err(self.err(stmt, format!("view {db}.{name} has the name of a table")));
        }
        if alter && !d.views.contains_key(&name) {
            return Err(self.err(
                stmt,
                format!("ALTER VIEW {db}.{name}: no such view earlier in the file"),
            ));
        }
        if d.views.contains_key(&name) && !alter && !def.or_replace {
            if def.if_not_exists {
                return Ok(());
            }
            return Err(self.err(stmt, format!("view {db}.{name} is created twice")));
        }
        d.views.insert(name, def.view);
        Ok(())
    }

    fn create_trigger(&mut self, stmt: &RawStatement) -> Result<(), SqlError> {
        let def = objects::parse_trigger(&stmt.text).map_err(|m| self.err(stmt, m))?;
        let db = self.object_db(stmt, def.database.clone(), &def.trigger.name)?;
        let table_db = match &def.table_database {
            Some(d) => rename(self.opts, d),
            None => db.clone(),
        };
        if table_db != db {
            return Err(self.err(
                stmt,
                format!(
                    "trigger {} is in {db} but its table is in {table_db}",
                    def.trigger.name
                ),
            ));
        }
        let name = def.trigger.name.clone();
        let d = self.database(&db);
        if !d.tables.contains_key(&def.trigger.table) {
            return Err(self.err(
                stmt,
                format!(
                    "trigger {name} is on {db}.{}, which no earlier statement of the file creates",
                    def.trigger.table
                ),
            ));
        }
        if d.triggers.contains_key(&name) {
            return Err(self.err(stmt, format!("trigger {db}.{name} is created twice")));
        }
        objects::place_trigger(d, def).map_err(|m| self.err(stmt, m))
    }

    fn create_event(&mut self, stmt: &RawStatement) -> Result<(), SqlError> {
        let def = objects::parse_event(&stmt.text).map_err(|m| self.err(stmt, m))?;
        let db = self.object_db(stmt, def.database, &def.event.name)?;
        let name = def.event.name.clone();
        let d = self.database(&db);
        if d.events.contains_key(&name) {
            return Err(self.err(stmt, format!("event {db}.{name} is created twice")));
        }
        d.events.insert(name, def.event);
        Ok(())
    }

    fn drop_object(&mut self, stmt: &RawStatement, kind: &str) -> Result<(), SqlError> {
        let (if_exists, names) =
            objects::parse_drop(&stmt.text, kind).map_err(|m| self.err(stmt, m))?;
        for (db, name) in names {
            let db = self.object_db(stmt, db, &name)?;
            let d = self.database(&db);
            let removed = match kind {
                "VIEW" => d.views.remove(&name).is_some(),
                "TRIGGER" => d.triggers.remove(&name).is_some(),
                _ => d.events.remove(&name).is_some(),
            };
            if !removed && !if_exists {
                return Err(self.err(
                    stmt,
                    format!(
                        "DROP {kind} {db}.{name}: no such {} earlier in the file",
                        kind.to_ascii_lowercase()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn skip(&mut self, stmt: &RawStatement, kind: String) -> Result<(), SqlError> {
        self.out.skipped.push(Skipped {
            line: stmt.line,
            kind,
            excerpt: excerpt(&stmt.text),
        });
        Ok(())
    }

    fn err(&self, stmt: &RawStatement, message: String) -> SqlError {
        SqlError {
            line: stmt.line,
            message,
        }
    }

    fn parse(&self, stmt: &RawStatement) -> Result<Statement, SqlError> {
        let text = binary_attribute(&stmt.text);
        let mut parsed = Parser::parse_sql(&MySqlDialect {}, &text).map_err(|e| {
            // sqlparser counts lines from the statement's start; make them the file's.
            let msg = e.to_string();
            let (line, msg) = absolute_location(&msg, stmt.line);
            SqlError {
                line,
                message: format!("cannot parse: {msg}"),
            }
        })?;
        if parsed.len() != 1 {
            return Err(self.err(
                stmt,
                format!("expected one statement, found {}", parsed.len()),
            ));
        }
        Ok(parsed.remove(0))
    }

    fn database(&mut self, name: &str) -> &mut Database {
        self.out
            .schema
            .databases
            .entry(name.to_string())
            .or_insert_with(|| Database {
                name: name.to_string(),
                ..Default::default()
            })
    }

    fn qualify(
        &self,
        stmt: &RawStatement,
        name: &ObjectName,
    ) -> Result<(String, String), SqlError> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string())
            .map(|s| unquote_ident(&s))
            .collect();
        match parts.as_slice() {
            [t] => match &self.current {
                Some(db) => Ok((db.clone(), t.clone())),
                None => Err(self.err(
                    stmt,
                    format!("table {t} has no database: add USE or CREATE DATABASE before it"),
                )),
            },
            [db, t] => Ok((rename(self.opts, db), t.clone())),
            _ => Err(self.err(stmt, format!("unexpected name {name}"))),
        }
    }

    fn create_table(&mut self, stmt: &RawStatement, ct: &CreateTable) -> Result<(), SqlError> {
        if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
            return Err(self.err(
                stmt,
                "CREATE TABLE ... AS/LIKE is not supported: write the columns out".into(),
            ));
        }
        if ct.temporary {
            return self.skip(stmt, "CREATE TEMPORARY TABLE".into());
        }
        let (db_name, name) = self.qualify(stmt, &ct.name)?;
        let (db_charset, db_collation) = {
            let db = self.database(&db_name);
            (db.charset.clone(), db.collation.clone())
        };
        let mut options = TableOptions::default();
        if let Some(c) = &ct.comment {
            options.comment = c.to_string();
        }
        let opts: &[SqlOption] = match &ct.table_options {
            CreateTableOptions::None => &[],
            CreateTableOptions::With(o)
            | CreateTableOptions::Options(o)
            | CreateTableOptions::Plain(o)
            | CreateTableOptions::TableProperties(o) => o,
        };
        for o in opts {
            match o {
                SqlOption::KeyValue { key, value } => {
                    let k = key.to_string().to_ascii_uppercase().replace('`', "");
                    let k = k.strip_prefix("DEFAULT ").unwrap_or(&k).to_string();
                    let v = unquote_value(&value.to_string());
                    match k.as_str() {
                        "ENGINE" => options.engine = Some(v.to_ascii_lowercase()),
                        "CHARSET" | "CHARACTER SET" => {
                            options.charset = Some(canonical_charset(&v))
                        }
                        "COLLATE" => options.collation = Some(canonical_charset(&v)),
                        "ROW_FORMAT" => options.row_format = Some(v.to_ascii_lowercase()),
                        "COMMENT" => options.comment = v,
                        // AUTO_INCREMENT is a counter, not schema shape; the rest the server
                        // keeps and shows
                        other => set_extra_option(&mut options.extra, other, &v),
                    }
                }
                SqlOption::NamedParenthesizedList(l)
                    if l.key.value.eq_ignore_ascii_case("ENGINE") =>
                {
                    options.engine = l.name.as_ref().map(|n| n.value.to_ascii_lowercase());
                }
                SqlOption::Comment(c) => options.comment = c.to_string(),
                _ => {}
            }
        }
        if let Some(co) = &options.collation {
            options.charset = Some(charset_of(co));
        } else if options.charset.is_none() {
            options.charset = db_charset;
            options.collation = db_collation;
        }
        // (CHARSET alone means that charset's default collation, which only the server knows:
        // `live::resolve_server_defaults` fills it in)
        let mut table = Table {
            name: name.clone(),
            columns: Vec::new(),
            primary_key: None,
            indexes: BTreeMap::new(),
            foreign_keys: BTreeMap::new(),
            options,
            primary_comment: String::new(),
            partitioning: None,
            checks: BTreeMap::new(),
        };
        let mut build = TableBuild::default();
        for cd in &ct.columns {
            let col = self.column(
                stmt,
                &mut table,
                &db_name,
                &cd.name,
                &cd.data_type,
                cd.options.iter().map(|o| &o.option),
                &mut build,
            )?;
            table.columns.push(col);
        }
        for tc in &ct.constraints {
            self.constraint(stmt, &mut table, &db_name, tc, &mut build)?;
        }
        self.settle(stmt, &mut table, build)?;
        let db = self.database(&db_name);
        if db.tables.contains_key(&name) && !ct.if_not_exists {
            return Err(self.err(stmt, format!("table {db_name}.{name} is created twice")));
        }
        db.tables.entry(name).or_insert(table);
        Ok(())
    }

    /// Rename a table of the model (and the foreign keys that point at it).
    fn rename_table(
        &mut self,
        stmt: &RawStatement,
        db: &str,
        from: &str,
        to: &str,
    ) -> Result<(), SqlError> {
        let d = self.database(db);
        if d.tables.contains_key(to) || d.views.contains_key(to) {
            return Err(self.err(
                stmt,
                format!("RENAME TABLE {db}.{from} to {to}: {to} exists"),
            ));
        }
        let Some(mut t) = d.tables.remove(from) else {
            return Err(self.err(
                stmt,
                format!("RENAME TABLE {db}.{from}: no such table earlier in the file"),
            ));
        };
        t.name = to.to_string();
        d.tables.insert(to.to_string(), t);
        for d in self.out.schema.databases.values_mut() {
            for t in d.tables.values_mut() {
                for fk in t.foreign_keys.values_mut() {
                    if fk.ref_database == db && fk.ref_table == from {
                        fk.ref_table = to.to_string();
                    }
                }
            }
        }
        Ok(())
    }

    /// `ALTER TABLE` after the table's `CREATE TABLE`, folded into the model as the server
    /// would apply it.
    fn alter_table(
        &mut self,
        stmt: &RawStatement,
        at: &sqlparser::ast::AlterTable,
    ) -> Result<(), SqlError> {
        let (db_name, name) = self.qualify(stmt, &at.name)?;
        let Some(mut table) = self
            .out
            .schema
            .databases
            .get_mut(&db_name)
            .and_then(|d| d.tables.get(&name))
            .cloned()
        else {
            if at.if_exists {
                return Ok(());
            }
            return Err(self.err(
                stmt,
                format!("ALTER TABLE {db_name}.{name}: no such table earlier in the file"),
            ));
        };
        let mut build = TableBuild {
            unnamed_checks: table
                .checks
                .keys()
                .filter_map(|k| k.strip_prefix("CONSTRAINT_")?.parse::<usize>().ok())
                .max()
                .unwrap_or(0),
            ..Default::default()
        };
        let mut rename_to = None;
        for op in &at.operations {
            self.alter_op(stmt, &mut table, &db_name, op, &mut build, &mut rename_to)?;
        }
        self.settle(stmt, &mut table, build)?;
        self.database(&db_name).tables.insert(name.clone(), table);
        if let Some(to) = rename_to {
            self.rename_table(stmt, &db_name, &name, &to)?;
        }
        Ok(())
    }

    fn alter_op(
        &self,
        stmt: &RawStatement,
        table: &mut Table,
        db_name: &str,
        op: &AlterTableOperation,
        build: &mut TableBuild,
        rename_to: &mut Option<String>,
    ) -> Result<(), SqlError> {
        let tname = table.name.clone();
        let missing =
            |what: &str, n: &str| self.err(stmt, format!("ALTER TABLE {tname}: no {what} {n}"));
        let position = |table: &Table,
                        p: &Option<MySQLColumnPosition>,
                        default: usize|
         -> Result<usize, SqlError> {
            match p {
                None => Ok(default),
                Some(MySQLColumnPosition::First) => Ok(0),
                Some(MySQLColumnPosition::After(c)) => table
                    .columns
                    .iter()
                    .position(|x| x.name.eq_ignore_ascii_case(&c.value))
                    .map(|i| i + 1)
                    .ok_or_else(|| missing("column", &c.value)),
            }
        };
        let index_of = |table: &Table, c: &str| {
            table
                .columns
                .iter()
                .position(|x| x.name.eq_ignore_ascii_case(c))
        };
        match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def: cd,
                column_position,
                ..
            } => {
                if table.column(&cd.name.value).is_some() {
                    if *if_not_exists {
                        return Ok(());
                    }
                    return Err(self.err(stmt, format!("ALTER TABLE {tname}: column {} exists", cd.name.value)));
                }
                let col = self.column(stmt, table, db_name, &cd.name, &cd.data_type, cd.options.iter().map(|o| &o.option), build)?;
                let at = position(table, column_position, table.columns.len())?;
                table.columns.insert(at, col);
            }
            AlterTableOperation::AddConstraint { constraint, .. } => {
                self.constraint(stmt, table, db_name, constraint, build)?;
            }
            AlterTableOperation::ModifyColumn { col_name, data_type, options, column_position } => {
                let i = index_of(table, &col_name.value).ok_or_else(|| missing("column", &col_name.value))?;
                let col = self.column(stmt, table, db_name, col_name, data_type, options.iter(), build)?;
                table.columns.remove(i);
                let at = position(table, column_position, i)?;
                table.columns.insert(at, col);
            }
            AlterTableOperation::ChangeColumn { old_name, new_name, data_type, options, column_position } => {
                let i = index_of(table, &old_name.value).ok_or_else(|| missing("column", &old_name.value))?;
                let col = self.column(stmt, table, db_name, new_name, data_type, options.iter(), build)?;
                table.columns.remove(i);
                rename_column_refs(table, &old_name.value, &new_name.value);
                let at = position(table, column_position, i)?;
                table.columns.insert(at, col);
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                let i = index_of(table, &old_column_name.value).ok_or_else(|| missing("column", &old_column_name.value))?;
                table.columns[i].name = new_column_name.value.clone();
                rename_column_refs(table, &old_column_name.value, &new_column_name.value);
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let i = index_of(table, &column_name.value).ok_or_else(|| missing("column", &column_name.value))?;
                let col = &mut table.columns[i];
                match op {
                    AlterColumnOperation::SetDefault { value } => {
                        col.default = Some(match default_from_expr(value) {
                            DefaultValue::Literal(v) => DefaultValue::Literal(canonical_literal(&col.ty, &v)),
                            other => other,
                        });
                    }
                    AlterColumnOperation::DropDefault => col.default = None,
                    other => return Err(self.err(stmt, format!("ALTER TABLE {tname}: unsupported ALTER COLUMN {other}"))),
                }
            }
            AlterTableOperation::DropColumn { column_names, if_exists, .. } => {
                for c in column_names {
                    let Some(i) = index_of(table, &c.value) else {
                        if *if_exists {
                            continue;
                        }
                        return Err(missing("column", &c.value));
                    };
                    if let Some(fk) = table.foreign_keys.values().find(|fk| fk.columns.iter().any(|x| x.eq_ignore_ascii_case(&c.value))) {
                        return Err(self.err(stmt, format!("ALTER TABLE {tname}: column {} is in foreign key {}: drop the key first", c.value, fk.name)));
                    }
                    table.columns.remove(i);
                    // the server takes the column out of its keys, and drops a key left empty
                    let keep = |k: &KeyPart| !k.column.eq_ignore_ascii_case(&c.value);
                    for ix in table.indexes.values_mut() {
                        ix.parts.retain(keep);
                    }
                    table.indexes.retain(|_, ix| !ix.parts.is_empty());
                    if let Some(pk) = &mut table.primary_key {
                        pk.retain(keep);
                        if pk.is_empty() {
                            table.primary_key = None;
                        }
                    }
                }
            }
            AlterTableOperation::DropConstraint { name, if_exists, .. } => {
                let n = &name.value;
                let gone = table.checks.remove(n).is_some()
                    || table.foreign_keys.remove(n).is_some()
                    || table.indexes.get(n).is_some_and(|i| i.kind == IndexKind::Unique) && table.indexes.remove(n).is_some();
                if !gone && !if_exists {
                    return Err(missing("constraint", n));
                }
            }
            AlterTableOperation::DropForeignKey { name, .. } => {
                if table.foreign_keys.remove(&name.value).is_none() {
                    return Err(missing("foreign key", &name.value));
                }
            }
            AlterTableOperation::DropIndex { name } => {
                if table.indexes.remove(&name.value).is_none() {
                    return Err(missing("index", &name.value));
                }
            }
            AlterTableOperation::DropPrimaryKey { .. } => {
                if table.primary_key.take().is_none() {
                    return Err(missing("primary key", ""));
                }
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (sqlparser::ast::RenameTableNameKind::As(n) | sqlparser::ast::RenameTableNameKind::To(n)) = table_name;
                let (db, to) = self.qualify(stmt, n)?;
                if db != db_name {
                    return Err(self.err(stmt, format!("ALTER TABLE {tname} RENAME to another database is not supported")));
                }
                *rename_to = Some(to);
            }
            // how, not what: the server chooses again when molt migrates
            AlterTableOperation::Algorithm { .. } | AlterTableOperation::Lock { .. } | AlterTableOperation::AutoIncrement { .. } => {}
            other => {
                return Err(self.err(
                    stmt,
                    format!("ALTER TABLE {tname}: {other} is not supported in a schema file (write it into the CREATE TABLE)"),
                ))
            }
        }
        Ok(())
    }

    /// A column from its definition (`CREATE TABLE`, `ADD COLUMN`, `MODIFY`, `CHANGE`); keys and
    /// foreign keys written in it go to `build` and `table`.
    #[allow(clippy::too_many_arguments)]
    fn column<'o>(
        &self,
        stmt: &RawStatement,
        table: &mut Table,
        db_name: &str,
        name: &sqlparser::ast::Ident,
        data_type: &sqlparser::ast::DataType,
        options: impl Iterator<Item = &'o ColumnOption>,
        build: &mut TableBuild,
    ) -> Result<Column, SqlError> {
        let cname = name.value.clone();
        let ty_text = data_type.to_string();
        let ty = ColumnType::parse(&ty_text)
            .map_err(|m| self.err(stmt, format!("column {cname}: {m}")))?;
        let mut col = Column {
            name: cname.clone(),
            ty: ty.clone(),
            nullable: true,
            default: None,
            on_update: None,
            auto_increment: false,
            generated: None,
            comment: String::new(),
            charset: None,
            collation: None,
            check: None,
            srid: None,
        };
        for option in options {
            match option {
                ColumnOption::Null => col.nullable = true,
                ColumnOption::NotNull => col.nullable = false,
                ColumnOption::Default(e) => col.default = Some(default_from_expr(e)),
                ColumnOption::OnUpdate(e) => col.on_update = Some(canonical_expr(&e.to_string())),
                ColumnOption::Comment(c) => col.comment = c.clone(),
                ColumnOption::CharacterSet(n) => {
                    col.charset = Some(canonical_charset(&unquote_ident(&n.to_string())))
                }
                ColumnOption::Collation(n) => {
                    col.collation = Some(canonical_charset(&unquote_ident(&n.to_string())))
                }
                ColumnOption::PrimaryKey(_) => {
                    table.primary_key = Some(vec![KeyPart {
                        column: cname.clone(),
                        prefix: None,
                        desc: false,
                    }]);
                }
                ColumnOption::Unique(_) => {
                    build.pending.push((
                        None,
                        vec![KeyPart {
                            column: cname.clone(),
                            prefix: None,
                            desc: false,
                        }],
                        IndexKind::Unique,
                        String::new(),
                        None,
                    ));
                }
                ColumnOption::Srid(e) => {
                    let n = e.to_string().trim().parse::<u32>().map_err(|_| {
                        self.err(stmt, format!("column {cname}: bad reference system {e}"))
                    })?;
                    col.srid = (n != 0).then_some(n);
                }
                ColumnOption::DialectSpecific(tokens) => {
                    let t: Vec<String> = tokens
                        .iter()
                        .map(|t| t.to_string().to_ascii_uppercase())
                        .collect();
                    match t.join(" ").as_str() {
                        "AUTO_INCREMENT" => col.auto_increment = true,
                        other => {
                            return Err(self
                                .err(stmt, format!("column {cname}: unsupported option {other}")))
                        }
                    }
                }
                ColumnOption::Generated {
                    generation_expr: Some(e),
                    generation_expr_mode,
                    ..
                } => {
                    col.generated = Some(Generated {
                        expr: canonical_expr(&e.to_string()),
                        stored: matches!(
                            generation_expr_mode,
                            Some(GeneratedExpressionMode::Stored)
                        ),
                    });
                }
                ColumnOption::Check(c) => {
                    let e = canonical_expr(&c.expr.to_string());
                    if e == format!("json_valid({})", quote_ident(&cname)) {
                        build.json_cols.push(cname.clone());
                    } else if col.check.replace(e).is_some() {
                        return Err(self.err(
                            stmt,
                            format!("column {cname}: two CHECK constraints (MariaDB keeps one per column: write them as one with AND)"),
                        ));
                    }
                }
                ColumnOption::ForeignKey(fk) => {
                    let fk = sqlparser::ast::ForeignKeyConstraint {
                        columns: vec![name.clone()],
                        ..fk.clone()
                    };
                    self.add_fk(stmt, table, db_name, &fk, build)?;
                }
                other => {
                    return Err(
                        self.err(stmt, format!("column {cname}: unsupported option {other}"))
                    )
                }
            }
        }
        // the BINARY attribute (rewritten before parsing): the charset's binary collation
        let binary = col.collation.as_deref() == Some(BINARY_ATTRIBUTE);
        if binary {
            col.collation = None;
            let charset = col
                .charset
                .clone()
                .or_else(|| table.options.charset.clone());
            let Some(cs) = charset else {
                return Err(self.err(
                    stmt,
                    format!("column {cname}: BINARY needs the character set (of the column, table or database) written out"),
                ));
            };
            col.collation = Some(format!("{cs}_bin"));
        }
        if ty.base == "json" && col.check.is_some() {
            // MariaDB's json is longtext with json_valid as its column check: a check of its
            // own takes that place, and what is left is the longtext
            col.ty = ColumnType::parse("longtext").expect("longtext parses");
            col.charset = Some("utf8mb4".into());
            col.collation = Some("utf8mb4_bin".into());
        } else if ty.base == "json" {
            col.charset = None;
            col.collation = None;
        } else if ty.is_textual() {
            if let Some(co) = &col.collation {
                col.charset = Some(charset_of(co));
            } else if col.charset.is_none() {
                col.charset = table.options.charset.clone();
                col.collation = table.options.collation.clone();
            }
        } else {
            col.charset = None;
            col.collation = None;
        }
        if let Some(DefaultValue::Literal(v)) = &col.default {
            col.default = Some(DefaultValue::Literal(canonical_literal(&ty, v)));
        }
        Ok(col)
    }

    /// A table constraint (`CREATE TABLE`, `ALTER TABLE ... ADD`).
    fn constraint(
        &self,
        stmt: &RawStatement,
        table: &mut Table,
        db_name: &str,
        tc: &TableConstraint,
        build: &mut TableBuild,
    ) -> Result<(), SqlError> {
        match tc {
            TableConstraint::PrimaryKey(pk) => {
                table.primary_key = Some(self.key_parts(stmt, &pk.columns)?);
                table.primary_comment = index_comment(&pk.index_options);
            }
            TableConstraint::Unique(u) => {
                let name = u
                    .name
                    .as_ref()
                    .or(u.index_name.as_ref())
                    .map(|i| i.value.clone());
                build.pending.push((
                    name,
                    self.key_parts(stmt, &u.columns)?,
                    IndexKind::Unique,
                    index_comment(&u.index_options),
                    index_using(u.index_type.as_ref(), &u.index_options),
                ));
            }
            TableConstraint::Index(ix) => {
                let name = ix.name.as_ref().map(|i| i.value.clone());
                build.pending.push((
                    name,
                    self.key_parts(stmt, &ix.columns)?,
                    IndexKind::Index,
                    index_comment(&ix.index_options),
                    index_using(ix.index_type.as_ref(), &ix.index_options),
                ));
            }
            TableConstraint::FulltextOrSpatial(f) => {
                let kind = if f.fulltext {
                    IndexKind::Fulltext
                } else {
                    IndexKind::Spatial
                };
                let name = f.opt_index_name.as_ref().map(|i| i.value.clone());
                build.pending.push((
                    name,
                    self.key_parts(stmt, &f.columns)?,
                    kind,
                    String::new(),
                    None,
                ));
            }
            TableConstraint::ForeignKey(fk) => self.add_fk(stmt, table, db_name, fk, build)?,
            TableConstraint::Check(c) => {
                if c.enforced == Some(false) {
                    return Err(self.err(
                        stmt,
                        format!(
                            "table {}: NOT ENFORCED checks are MySQL's; MariaDB does not have them",
                            table.name
                        ),
                    ));
                }
                let check_name = match &c.name {
                    Some(n) => n.value.clone(),
                    None => {
                        build.unnamed_checks += 1;
                        format!("CONSTRAINT_{}", build.unnamed_checks)
                    }
                };
                let e = canonical_expr(&c.expr.to_string());
                if table.checks.insert(check_name.clone(), e).is_some() {
                    return Err(self.err(
                        stmt,
                        format!(
                            "table {}: duplicate CHECK constraint {check_name}",
                            table.name
                        ),
                    ));
                }
            }
            other => {
                return Err(self.err(
                    stmt,
                    format!("table {}: unsupported constraint {other}", table.name),
                ))
            }
        }
        Ok(())
    }

    /// After a table's columns and constraints: json columns, the indexes with their names,
    /// NOT NULL primary key columns, and keys naming only columns that exist.
    fn settle(
        &self,
        stmt: &RawStatement,
        table: &mut Table,
        build: TableBuild,
    ) -> Result<(), SqlError> {
        for c in &build.json_cols {
            if let Some(col) = table.columns.iter_mut().find(|x| &x.name == c) {
                if col.ty.base == "longtext" {
                    col.ty = ColumnType::parse("json").expect("json parses");
                    col.charset = None;
                    col.collation = None;
                }
            }
        }
        for (name, mut parts, kind, comment, using) in build.pending {
            if using.as_deref() == Some("HASH") {
                // the server keeps no order in a hash index
                parts.iter_mut().for_each(|p| p.desc = false);
            }
            let name = name.unwrap_or_else(|| auto_index_name(table, &parts[0].column));
            if table.indexes.contains_key(&name) {
                return Err(self.err(
                    stmt,
                    format!("table {}: duplicate index name {name}", table.name),
                ));
            }
            let position = next_position(table);
            table.indexes.insert(
                name.clone(),
                Index {
                    name,
                    kind,
                    parts,
                    comment,
                    using,
                    position,
                },
            );
        }
        // InnoDB needs an index whose leading columns are a foreign key's; it makes one when
        // there is none, named after the constraint, or for an unnamed constraint after its
        // first column as an unnamed key would be.
        for (fk_name, named) in &build.fks {
            let Some(fk) = table.foreign_keys.get(fk_name).cloned() else {
                continue;
            };
            let covered = table
                .primary_key
                .iter()
                .chain(
                    table
                        .indexes
                        .values()
                        .filter(|i| matches!(i.kind, IndexKind::Index | IndexKind::Unique))
                        .map(|i| &i.parts),
                )
                .any(|parts| {
                    parts.len() >= fk.columns.len()
                        && parts
                            .iter()
                            .zip(&fk.columns)
                            .all(|(p, c)| p.column.eq_ignore_ascii_case(c) && p.prefix.is_none())
                });
            if covered {
                continue;
            }
            let name = if *named {
                fk.name.clone()
            } else {
                auto_index_name(table, &fk.columns[0])
            };
            let parts = fk
                .columns
                .iter()
                .map(|c| KeyPart {
                    column: c.clone(),
                    prefix: None,
                    desc: false,
                })
                .collect();
            let position = next_position(table);
            table.indexes.insert(
                name.clone(),
                Index {
                    name,
                    kind: IndexKind::Index,
                    parts,
                    comment: String::new(),
                    using: None,
                    position,
                },
            );
        }
        // Primary key columns are NOT NULL whatever the text says.
        if let Some(pk) = &table.primary_key {
            for part in pk {
                if let Some(c) = table
                    .columns
                    .iter_mut()
                    .find(|c| c.name.eq_ignore_ascii_case(&part.column))
                {
                    c.nullable = false;
                }
            }
        }
        for part in table
            .primary_key
            .iter()
            .flatten()
            .chain(table.indexes.values().flat_map(|i| i.parts.iter()))
        {
            if table.column(&part.column).is_none() {
                return Err(self.err(
                    stmt,
                    format!(
                        "table {}: key names unknown column {}",
                        table.name, part.column
                    ),
                ));
            }
        }
        Ok(())
    }

    fn add_fk(
        &self,
        stmt: &RawStatement,
        table: &mut Table,
        db: &str,
        fk: &sqlparser::ast::ForeignKeyConstraint,
        build: &mut TableBuild,
    ) -> Result<(), SqlError> {
        // The server numbers unnamed ones after the highest number in use.
        let prefix = format!("{}_ibfk_", table.name);
        let n = table
            .foreign_keys
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.parse::<u32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let name = fk
            .name
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_else(|| format!("{prefix}{n}"));
        build.fks.push((name.clone(), fk.name.is_some()));
        let (ref_db, ref_table) = {
            let parts: Vec<String> = fk
                .foreign_table
                .0
                .iter()
                .map(|p| unquote_ident(&p.to_string()))
                .collect();
            match parts.as_slice() {
                [t] => (db.to_string(), t.clone()),
                [d, t] => (rename(self.opts, d), t.clone()),
                _ => return Err(self.err(stmt, format!("unexpected name {}", fk.foreign_table))),
            }
        };
        let action = |a: &Option<sqlparser::ast::ReferentialAction>| {
            a.as_ref()
                .and_then(|a| RefAction::parse(&a.to_string()))
                .unwrap_or(RefAction::Restrict)
        };
        let columns: Vec<String> = fk.columns.iter().map(|c| c.value.clone()).collect();
        // InnoDB needs an index whose leading columns are the foreign key's; it creates one
        // named after the constraint (or the given index name) when there is none.
        let index_name = fk.index_name.as_ref().map(|i| i.value.clone());
        let fk = ForeignKey {
            name: name.clone(),
            columns: columns.clone(),
            ref_database: ref_db,
            ref_table,
            ref_columns: fk
                .referred_columns
                .iter()
                .map(|c| c.value.clone())
                .collect(),
            on_delete: action(&fk.on_delete),
            on_update: action(&fk.on_update),
        };
        if table.foreign_keys.insert(name.clone(), fk).is_some() {
            return Err(self.err(
                stmt,
                format!("table {}: duplicate foreign key {name}", table.name),
            ));
        }
        if let Some(ix) = index_name {
            let position = next_position(table);
            table.indexes.insert(
                ix.clone(),
                Index {
                    name: ix,
                    kind: IndexKind::Index,
                    using: None,
                    position,
                    parts: columns
                        .iter()
                        .map(|c| KeyPart {
                            column: c.clone(),
                            prefix: None,
                            desc: false,
                        })
                        .collect(),
                    comment: String::new(),
                },
            );
        }
        Ok(())
    }

    fn key_parts(
        &self,
        stmt: &RawStatement,
        cols: &[IndexColumn],
    ) -> Result<Vec<KeyPart>, SqlError> {
        cols.iter()
            .map(|ic| {
                let desc = matches!(ic.column.options.sort, Some(OrderBySort::Desc));
                let (column, prefix) = match &ic.column.expr {
                    Expr::Identifier(i) => (i.value.clone(), None),
                    Expr::Function(f) => {
                        let args = f.args.to_string();
                        let n: Option<u32> = args
                            .trim_matches(|c| c == '(' || c == ')')
                            .trim()
                            .parse()
                            .ok();
                        match n {
                            Some(n) => (unquote_ident(&f.name.to_string()), Some(n)),
                            None => {
                                return Err(self
                                    .err(stmt, format!("unsupported key part {}", ic.column.expr)))
                            }
                        }
                    }
                    other => {
                        return Err(self.err(
                            stmt,
                            format!("functional key parts are not supported: {other}"),
                        ))
                    }
                };
                Ok(KeyPart {
                    column,
                    prefix,
                    desc,
                })
            })
            .collect()
    }

    fn create_index(
        &mut self,
        stmt: &RawStatement,
        ci: &CreateIndex,
        kind: Option<IndexKind>,
    ) -> Result<(), SqlError> {
        let (db, table) = self.qualify(stmt, &ci.table_name)?;
        let parts = self.key_parts(stmt, &ci.columns)?;
        let Some(t) = self
            .out
            .schema
            .databases
            .get_mut(&db)
            .and_then(|d| d.tables.get_mut(&table))
        else {
            return Err(self.err(
                stmt,
                format!("CREATE INDEX on {db}.{table}, which no earlier statement creates"),
            ));
        };
        let Some(name) = ci.name.as_ref().map(|n| unquote_ident(&n.to_string())) else {
            return Err(self.err(stmt, "CREATE INDEX without a name".into()));
        };
        for p in &parts {
            if t.column(&p.column).is_none() {
                return Err(SqlError {
                    line: stmt.line,
                    message: format!("index {name} names unknown column {}.{}", table, p.column),
                });
            }
        }
        if t.indexes.contains_key(&name) {
            if ci.if_not_exists {
                return Ok(());
            }
            return Err(SqlError {
                line: stmt.line,
                message: format!("index {name} on {table} is created twice"),
            });
        }
        let kind = kind.unwrap_or(if ci.unique {
            IndexKind::Unique
        } else {
            IndexKind::Index
        });
        let position = next_position(t);
        let using = index_using(ci.using.as_ref(), &ci.index_options);
        let mut parts = parts;
        if using.as_deref() == Some("HASH") {
            // the server keeps no order in a hash index
            parts.iter_mut().for_each(|p| p.desc = false);
        }
        t.indexes.insert(
            name.clone(),
            Index {
                name,
                kind,
                parts,
                comment: index_comment(&ci.index_options),
                using,
                position,
            },
        );
        Ok(())
    }
}

/// The collation [`binary_attribute`] writes for a `BINARY` column attribute.
const BINARY_ATTRIBUTE: &str = "molt_binary_attribute";

/// `VARCHAR(10) BINARY` (the charset's binary collation, an old MySQL spelling sqlparser does
/// not know) rewritten as `VARCHAR(10) COLLATE molt_binary_attribute`, resolved when the
/// column's charset is known.
fn binary_attribute(text: &str) -> std::borrow::Cow<'_, str> {
    let upper = text.to_ascii_uppercase();
    let mut out = std::borrow::Cow::Borrowed(text);
    if upper.contains("REF_SYSTEM_ID") {
        out = std::borrow::Cow::Owned(ref_system_id(&out));
    }
    if upper.contains("BINARY") {
        out = std::borrow::Cow::Owned(binary_attribute_rewrite(&out));
    }
    out
}

/// MariaDB's `REF_SYSTEM_ID = 4326` column attribute, which sqlparser does not know, written as
/// MySQL's `SRID 4326`, which it does.
fn ref_system_id(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            let end = read_quoted(&chars, i).map_or(chars.len(), |(_, n)| n);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        let word_start = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let rest: String = chars[i..chars.len().min(i + 13)].iter().collect();
        if word_start && rest.eq_ignore_ascii_case("REF_SYSTEM_ID") {
            let mut j = i + 13;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if chars.get(j) == Some(&'=') {
                out.push_str("SRID ");
                i = j + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn binary_attribute_rewrite(text: &str) -> String {
    const CHAR_TYPES: &[&str] = &[
        "CHAR",
        "VARCHAR",
        "CHARACTER",
        "TINYTEXT",
        "TEXT",
        "MEDIUMTEXT",
        "LONGTEXT",
        "ENUM",
        "SET",
    ];
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut words: Vec<String> = Vec::new(); // the words before, uppercase; ")" for a closed list
    let mut depth_word: Vec<usize> = Vec::new(); // words.len() at each open '('
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            let end = read_quoted(&chars, i).map_or(chars.len(), |(_, n)| n);
            out.extend(&chars[i..end]);
            words.push(String::new());
            i = end;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            let upper = w.to_ascii_uppercase();
            let after_type = words
                .last()
                .is_some_and(|p| CHAR_TYPES.contains(&p.as_str()));
            if upper == "BINARY" && after_type {
                out.push_str(&format!("COLLATE {BINARY_ATTRIBUTE}"));
            } else {
                out.push_str(&w);
            }
            words.push(upper);
        } else {
            if c == '(' {
                depth_word.push(words.len());
            } else if c == ')' {
                // the list belongs to the word before it: `VARCHAR(10)` ends as `VARCHAR`
                if let Some(n) = depth_word.pop() {
                    let owner = n.checked_sub(1).and_then(|k| words.get(k)).cloned();
                    words.truncate(n);
                    if let Some(o) = owner {
                        words.push(o);
                    }
                }
            } else if !c.is_whitespace() {
                words.push(c.to_string());
            }
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A column renamed in its table's keys.
fn rename_column_refs(t: &mut Table, from: &str, to: &str) {
    let rename = |c: &mut String| {
        if c.eq_ignore_ascii_case(from) {
            *c = to.to_string();
        }
    };
    for k in t
        .primary_key
        .iter_mut()
        .flatten()
        .chain(t.indexes.values_mut().flat_map(|i| i.parts.iter_mut()))
    {
        rename(&mut k.column);
    }
    for fk in t.foreign_keys.values_mut() {
        fk.columns.iter_mut().for_each(rename);
    }
}

/// After the whole file: columns in the server's form.
fn finish_table(t: &mut Table) {
    for c in &mut t.columns {
        c.canonicalize();
    }
}

/// MySQL names an unnamed index after its first column, then `_2`, `_3` ...
fn auto_index_name(t: &Table, first: &str) -> String {
    if !t.indexes.contains_key(first) && !first.eq_ignore_ascii_case("PRIMARY") {
        return first.to_string();
    }
    (2..)
        .map(|n| format!("{first}_{n}"))
        .find(|n| !t.indexes.contains_key(n))
        .expect("some suffix is free")
}

/// Where the next index of a table stands in its declared order.
fn next_position(t: &Table) -> u32 {
    t.indexes.values().map(|i| i.position).max().unwrap_or(0) + 1
}

/// `USING BTREE|HASH`, given before the columns or among the options.
fn index_using(ty: Option<&sqlparser::ast::IndexType>, opts: &[IndexOption]) -> Option<String> {
    ty.or_else(|| {
        opts.iter().find_map(|o| match o {
            IndexOption::Using(t) => Some(t),
            _ => None,
        })
    })
    .map(|t| t.to_string().to_ascii_uppercase())
}

fn index_comment(opts: &[IndexOption]) -> String {
    opts.iter()
        .find_map(|o| match o {
            IndexOption::Comment(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn default_from_expr(e: &Expr) -> DefaultValue {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => DefaultValue::Null,
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                DefaultValue::Literal(s.clone())
            }
            Value::Number(n, _) => DefaultValue::Literal(n.to_string()),
            Value::Boolean(b) => DefaultValue::Literal(if *b { "1" } else { "0" }.into()),
            other => DefaultValue::Expr(canonical_expr(&other.to_string())),
        },
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match default_from_expr(expr) {
            DefaultValue::Literal(n) => DefaultValue::Literal(format!("-{n}")),
            _ => DefaultValue::Expr(canonical_expr(&e.to_string())),
        },
        Expr::Nested(inner) => match inner.as_ref() {
            Expr::Value(_) => default_from_expr(inner),
            _ => DefaultValue::Expr(canonical_expr(&inner.to_string())),
        },
        other => DefaultValue::Expr(canonical_expr(&other.to_string())),
    }
}

fn last_name(n: &ObjectName) -> String {
    n.0.last()
        .map(|p| unquote_ident(&p.to_string()))
        .unwrap_or_default()
}

fn unquote_ident(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && (s.starts_with('`') && s.ends_with('`') || s.starts_with('"') && s.ends_with('"'))
    {
        s[1..s.len() - 1].replace("``", "`")
    } else {
        s.to_string()
    }
}

fn unquote_value(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    if chars.first().is_some_and(|c| *c == '\'' || *c == '"') {
        if let Some((v, _)) = read_quoted(&chars, 0) {
            return v;
        }
    }
    unquote_ident(s)
}

fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(77).collect::<String>())
    } else {
        one_line
    }
}

/// Whether `word` occurs as a bare word outside quotes.
fn has_word_outside_strings(text: &str, word: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            match read_quoted(&chars, i) {
                Some((_, next)) => i = next,
                None => return false,
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            if w.eq_ignore_ascii_case(word) {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// Rewrite sqlparser's "Line: L, Column: C" (relative to the statement) into the file's line.
fn absolute_location(msg: &str, first_line: usize) -> (usize, String) {
    if let Some(pos) = msg.find("Line: ") {
        let rest = &msg[pos + 6..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(rel) = digits.parse::<usize>() {
            let abs = first_line + rel.saturating_sub(1);
            let fixed = format!("{}Line: {abs}{}", &msg[..pos], &rest[digits.len()..]);
            return (abs, fixed);
        }
    }
    (first_line, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_handles_comments_strings_delimiters_and_executable_comments() {
        let text = "/*M!999999\\- enable the sandbox mode */ \n-- a comment; with a semicolon\n\
                    /*!40101 SET @OLD=@@SQL_MODE */;\n\
                    CREATE TABLE t (a varchar(3) DEFAULT 'x;y' COMMENT \"it's\") # trailing ; comment\n;\n\
                    DELIMITER ;;\n\
                    CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 'b'; END ;;\n\
                    DELIMITER ;\n\
                    /* block\n comment */ USE db;";
        let st = split(text).unwrap();
        let texts: Vec<&str> = st.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(st.len(), 4, "{texts:#?}");
        assert!(texts[0].starts_with("SET @OLD"));
        assert_eq!(st[0].line, 3);
        assert!(texts[1].contains("'x;y'"));
        assert_eq!(st[1].line, 4);
        assert!(texts[2].starts_with("CREATE TRIGGER") && texts[2].contains("END"));
        assert_eq!(texts[3], "USE db");
        assert_eq!(st[3].line, 10);
        assert!(split("SELECT 'abc")
            .unwrap_err()
            .message
            .contains("unterminated"));
    }

    #[test]
    #[ignore = "nuwax suite: needs ../shared/fixtures/nuwax; scripts/test.sh runs it with --ignored"]
    fn nuwax_files_load_with_their_grants_reported() {
        for v in 1..=4 {
            let path = format!(
                "{}/../../shared/fixtures/nuwax/mysql/v{v}_init_mysql.sql",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let loaded =
                load(&text, &LoadOptions::default()).unwrap_or_else(|e| panic!("v{v}: {e}"));
            let kinds: Vec<&str> = loaded.skipped.iter().map(|s| s.kind.as_str()).collect();
            assert_eq!(kinds, ["GRANT", "GRANT", "FLUSH"], "v{v}");
            let p = &loaded.schema.databases["agent_platform"];
            assert_eq!(p.collation.as_deref(), Some("utf8mb4_unicode_ci"));
            assert!(p.tables.len() > 40, "v{v}: {} tables", p.tables.len());
            let t = &p.tables["agent_config"];
            assert_eq!(t.primary_key.as_ref().unwrap()[0].column, "id");
            assert!(t.indexes.contains_key("idx_space_id"));
            let modified = t.column("modified").unwrap();
            assert_eq!(modified.on_update.as_deref(), Some("current_timestamp()"));
            assert_eq!(
                modified.default,
                Some(DefaultValue::Expr("current_timestamp()".into()))
            );
            let tenant = t.column("_tenant_id").unwrap();
            assert_eq!(tenant.default, Some(DefaultValue::Literal("-1".into())));
            assert_eq!(
                t.column("uid").unwrap().collation.as_deref(),
                Some("utf8mb4_unicode_ci")
            );
        }
    }

    #[test]
    fn not_schema_is_reported_and_unsupported_is_an_error_with_its_line() {
        let text = "CREATE DATABASE d;\nUSE d;\nSET NAMES utf8mb4;\nINSERT INTO t VALUES (1);\n\
                    CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW v AS SELECT 1;\n\
                    LOCK TABLES t WRITE;\nUNLOCK TABLES;\n";
        let l = load(text, &LoadOptions::default()).unwrap();
        let kinds: Vec<&str> = l.skipped.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["SET", "INSERT", "LOCK", "UNLOCK"]);
        let v = &l.schema.databases["d"].views["v"];
        assert_eq!((v.line, v.source.as_str()), (5, "AS SELECT 1"));
        let e = load_err("USE d;\nDELIMITER //\nCREATE DEFINER = `a`@`%` PROCEDURE p()\nBEGIN\n SELECT 1;\nEND //\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("not modelled"), "{e}");
        let e = load_err("USE d;\nCREATE TABLE t (a int);\nCREATE VIEW v AS\n  SELECT a FROM t\n  WHERE a > ) 1;");
        assert_eq!(e.line, 5, "{e}");
        let e = load_err("USE d;\nCREATE TABLE t (a int);\nCREATE VIEW v AS SELECT a FROM t JOIN nope USING (a);");
        assert!(e.message.contains("d.nope"), "{e}");
        let e = load_err("USE d;\nCREATE TABLE t (a int);\n\nALTER TABLE nope ADD COLUMN b int;");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("d.nope"), "{e}");
        let e = load_err("USE d;\nCREATE TABLE t (a int);\nALTER TABLE t DROP COLUMN b;");
        assert!(e.message.contains("no column b"), "{e}");
        let e = load_err("USE d;\nCREATE TABLE t (a int);\n\nCREATE TRIGGER g BEFORE INSERT ON missing FOR EACH ROW SET NEW.a = 1;");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("d.missing"), "{e}");
        let e = load_err("USE d;\n\ncreate table t (a int)\npartition by range(a);");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("PARTITION BY"), "{e}");
        let e = load_err("USE d;\ncreate table t (id int primary key, d date) partition by range (year(d)) (partition p0 values less than (2020));");
        assert!(e.message.contains("PRIMARY KEY must include"), "{e}");
        let l = load(
            "USE d;\ncreate table t (a int)\npartition by hash(a) partitions 3;",
            &LoadOptions::default(),
        )
        .unwrap();
        let p = l.schema.databases["d"].tables["t"]
            .partitioning
            .as_ref()
            .unwrap();
        assert_eq!(p.partitions.len(), 3);
        let e = load_err("USE d;\ncreate table t (\n  a int,\n  b nonsense type here\n);");
        assert_eq!(e.line, 4, "{e}");
        let e = load_err("create table t (a int);");
        assert!(e.message.contains("no database"), "{e}");
    }

    /// The error loading `text` (with no options) gives.
    fn load_err(text: &str) -> SqlError {
        load(text, &LoadOptions::default()).unwrap_err()
    }

    #[test]
    fn a_view_made_twice_needs_or_replace_or_if_not_exists() {
        // a name of multibyte letters: nothing cuts the statement at a byte count
        let name = "é".repeat(20);
        let base =
            format!("USE d;\nCREATE TABLE t (a int);\nCREATE VIEW `{name}` AS SELECT a FROM t;\n");
        let v = |text: &str| load(&format!("{base}{text}"), &LoadOptions::default());
        let replaced = v(&format!(
            "CREATE OR REPLACE VIEW `{name}` AS SELECT a + 1 AS b FROM t;"
        ))
        .unwrap();
        assert!(replaced.schema.databases["d"].views[&name]
            .source
            .contains("a + 1"));
        let kept = v(&format!(
            "CREATE VIEW IF NOT EXISTS `{name}` AS SELECT 2 AS c;"
        ))
        .unwrap();
        assert!(kept.schema.databases["d"].views[&name]
            .source
            .contains("SELECT a FROM t"));
        let e = v(&format!("CREATE VIEW `{name}` AS SELECT 3 AS c;")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("created twice"), "{e}");
    }

    #[test]
    fn mysqldump_output_loads() {
        let text = "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
            DROP TABLE IF EXISTS `parent`;\n\
            CREATE TABLE `parent` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `name` (`name`(10))\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;\n\
            CREATE TABLE `child` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n  `doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`doc`)),\n  PRIMARY KEY (`id`),\n  KEY `fk_p` (`pid`),\n  CONSTRAINT `fk_p` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`) ON DELETE CASCADE\n) ENGINE=InnoDB;\n\
            /*!40000 ALTER TABLE `child` DISABLE KEYS */;\n\
            INSERT INTO `child` VALUES (1,NULL,NULL);\n";
        let opts = LoadOptions {
            default_database: Some("app".into()),
            ..Default::default()
        };
        let l = load(text, &opts).unwrap();
        let app = &l.schema.databases["app"];
        let child = &app.tables["child"];
        assert_eq!(child.column("doc").unwrap().ty.base, "json");
        assert_eq!(child.foreign_keys["fk_p"].on_delete, RefAction::Cascade);
        assert_eq!(
            child.indexes.len(),
            1,
            "the explicit index serves the foreign key"
        );
        assert_eq!(
            app.tables["parent"].indexes["name"].parts[0].prefix,
            Some(10)
        );
        let kinds: Vec<&str> = l.skipped.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["SET", "ALTER TABLE DISABLE KEYS", "INSERT"]);
    }
}
