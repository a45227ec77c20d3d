//! The differ: the statements that turn a live schema into a desired one, in an order MySQL
//! accepts, deterministic for the same two models; and the lint that marks what may lose data.
//!
//! Only databases the desired schema names are looked at: a server's other databases are not
//! the release's business. Statement order:
//! 1. `CREATE DATABASE` / `ALTER DATABASE`;
//! 2. `DROP FOREIGN KEY` for keys that go, change, or stand on a column or index that changes
//!    (they are added back in step 5);
//! 3. `CREATE TABLE` for new tables, parents before children (foreign keys between new tables
//!    inline when the parent comes first, the rest in step 5);
//! 4. one `ALTER TABLE` per changed table: indexes that change or go are dropped, columns added
//!    and modified in their desired position, then the primary key, indexes, table options;
//! 5. `ADD FOREIGN KEY`;
//! 6. `DROP COLUMN`, then 7. `DROP TABLE`: drops last.
//!
//! Every statement is idempotent in effect when the migration re-diffs before running: a
//! migration that died after statement k starts again from a new diff, which no longer
//! contains what statement k did.

use super::model::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One statement of a migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub sql: String,
    pub database: String,
    pub table: Option<String>,
    /// Why this statement may lose data; empty when it cannot.
    pub destructive: Vec<Destructive>,
    /// `view`, `trigger` or `event` for statements about those (run with the database as the
    /// connection's current one, since a view's query names tables as the file wrote them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// For an `ALTER TABLE`: the algorithm the server is expected to use (the apply asks for
    /// the cheapest first and records the one it got).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
}

/// A [`change`] that is an `ALTER TABLE` the server carries out with `algorithm`.
fn alter(sql: String, db: &str, table: Option<&String>, algorithm: Algorithm) -> Change {
    Change {
        algorithm: Some(algorithm),
        ..change(sql, db, table)
    }
}

/// How the server carries out an `ALTER TABLE`, cheapest first: `Instant` changes metadata
/// only; `Nocopy` and `InplaceOnline` work in place while the table stays readable and
/// writable (an index build, a rebuild); `Inplace` blocks writes; `Copy` copies the table with
/// writes blocked. All but `Instant` cost time in proportion to the table's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Algorithm {
    Instant,
    Nocopy,
    InplaceOnline,
    Inplace,
    Copy,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Instant,
        Algorithm::Nocopy,
        Algorithm::InplaceOnline,
        Algorithm::Inplace,
        Algorithm::Copy,
    ];

    /// The clause that asks for it (`COPY` is what the server does when nothing is asked).
    pub fn clause(self) -> &'static str {
        match self {
            Algorithm::Instant => ", ALGORITHM=INSTANT",
            Algorithm::Nocopy => ", ALGORITHM=NOCOPY",
            Algorithm::InplaceOnline => ", ALGORITHM=INPLACE, LOCK=NONE",
            Algorithm::Inplace => ", ALGORITHM=INPLACE",
            Algorithm::Copy => "",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Instant => "INSTANT",
            Algorithm::Nocopy => "NOCOPY",
            Algorithm::InplaceOnline => "INPLACE, LOCK=NONE",
            Algorithm::Inplace => "INPLACE",
            Algorithm::Copy => "COPY",
        }
    }
}

/// A lint finding: what may be lost, and the subject an allow-list names to permit it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destructive {
    /// `db.table`, or `db.table.column` / `db.table.index` for what is inside a table.
    pub subject: String,
    pub reason: String,
    /// Found in the live rows by the preflight (duplicates, NULLs, values that do not fit,
    /// orphans): the change would fail or alter those rows, so no allow list permits it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data: bool,
}

/// Which destructive changes are permitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// Everything (`--allow-destructive`).
    #[serde(default)]
    pub all: bool,
    /// Subjects the vendor vouches for (`release.toml` `allow_destructive`).
    #[serde(default)]
    pub subjects: Vec<String>,
}

impl Allow {
    pub fn permits(&self, d: &Destructive) -> bool {
        !d.data
            && (self.all
                || self
                    .subjects
                    .iter()
                    .any(|s| s == &d.subject || d.subject.starts_with(&format!("{s}."))))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub changes: Vec<Change>,
}

impl Migration {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Every destructive finding, in statement order.
    pub fn destructive(&self) -> Vec<&Destructive> {
        self.changes
            .iter()
            .flat_map(|c| c.destructive.iter())
            .collect()
    }

    /// The findings `allow` does not permit.
    pub fn refused(&self, allow: &Allow) -> Vec<&Destructive> {
        self.destructive()
            .into_iter()
            .filter(|d| !allow.permits(d))
            .collect()
    }

    pub fn statements(&self) -> Vec<&str> {
        self.changes.iter().map(|c| c.sql.as_str()).collect()
    }
}

/// Whether a table holds rows: `Some(false)` when known empty, `None` when unknown (a diff of
/// two files), which the lint treats as "may have rows".
pub type HasRows<'a> = &'a dyn Fn(&str, &str) -> Option<bool>;

/// The migration from `live` to `desired`.
pub fn diff(live: &Schema, desired: &Schema, has_rows: HasRows<'_>) -> Migration {
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    // 0. renames the desired schema asks for, made first; the rest compares with their result
    let renamed;
    let mut renames = Vec::new();
    let live = if desired.renames.is_empty() {
        live
    } else {
        (renamed, renames) = apply_renames(live, desired);
        &renamed
    };
    // 1. databases
    for (name, want) in &desired.databases {
        match live.databases.get(name) {
            None => {
                let mut sql = format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(name));
                sql.push_str(&charset_clause(&want.charset, &want.collation, " DEFAULT"));
                out.push(change(sql, name, None));
            }
            Some(have) => {
                let cs = want.charset.is_some() && want.charset != have.charset;
                let co = want.collation.is_some() && want.collation != have.collation;
                if cs || co {
                    let sql = format!(
                        "ALTER DATABASE {}{}",
                        quote_ident(name),
                        charset_clause(&want.charset, &want.collation, " DEFAULT")
                    );
                    out.push(change(sql, name, None));
                }
            }
        }
    }

    // What changes in each table that exists on both sides.
    let mut plans: BTreeMap<(String, String), TablePlan> = BTreeMap::new();
    for (dbname, want_db) in &desired.databases {
        let have_tables = live.databases.get(dbname).map_or(&empty, |d| &d.tables);
        for (tname, want) in &want_db.tables {
            if let Some(have) = have_tables.get(tname) {
                plans.insert((dbname.clone(), tname.clone()), TablePlan::new(have, want));
            }
        }
    }
    let dropped_tables: BTreeSet<(String, String)> = desired
        .databases
        .iter()
        .flat_map(|(dbname, want_db)| {
            live.databases
                .get(dbname)
                .map(|d| {
                    d.tables
                        .keys()
                        .filter(|t| !want_db.tables.contains_key(*t))
                        .map(|t| (dbname.clone(), t.clone()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();

    out.extend(renames);

    // views, triggers and events that go or change are dropped before the tables change
    let (objects_first, objects_last) = super::objects::diff(live, desired);
    out.extend(objects_first);

    // 2. foreign keys to drop first
    let mut readd: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (dbname, have_db) in &live.databases {
        let Some(want_db) = desired.databases.get(dbname) else {
            continue;
        };
        for (tname, have) in &have_db.tables {
            let want = want_db.tables.get(tname);
            let mut drops = Vec::new();
            for (fkname, fk) in &have.foreign_keys {
                let key = (fk.ref_database.clone(), fk.ref_table.clone());
                let reason_drop = match want {
                    // a table that goes: its key goes first when its parent goes or changes
                    // what the key stands on (the server refuses to drop a parent's index or
                    // column a foreign key needs)
                    None => {
                        (dropped_tables.contains(&key) && key != (dbname.clone(), tname.clone()))
                            || plans
                                .get(&key)
                                .is_some_and(|p| fk.ref_columns.iter().any(|c| p.touches_column(c)))
                            // a partitioned table has no foreign keys pointing at it
                            || desired
                                .table(&key.0, &key.1)
                                .is_some_and(|p| p.partitioning.is_some())
                    }
                    Some(w) => {
                        let plan = &plans[&(dbname.clone(), tname.clone())];
                        let changed = w.foreign_keys.get(fkname) != Some(fk);
                        let own_cols = fk.columns.iter().any(|c| plan.touches_column(c));
                        let parent = plans
                            .get(&key)
                            .is_some_and(|p| fk.ref_columns.iter().any(|c| p.touches_column(c)));
                        if !changed && (own_cols || parent) {
                            readd.insert((dbname.clone(), tname.clone(), fkname.clone()));
                        }
                        changed || own_cols || parent
                    }
                };
                if reason_drop {
                    drops.push(format!("DROP FOREIGN KEY {}", quote_ident(fkname)));
                }
            }
            if !drops.is_empty() {
                out.push(alter(
                    format!(
                        "ALTER TABLE {} {}",
                        qualified(dbname, tname),
                        drops.join(", ")
                    ),
                    dbname,
                    Some(tname),
                    Algorithm::Instant,
                ));
            }
        }
    }

    // 3. new tables, parents first
    let mut new_tables: Vec<(&str, &Table)> = Vec::new();
    for (dbname, want_db) in &desired.databases {
        for (tname, t) in &want_db.tables {
            if live.table(dbname, tname).is_none() {
                new_tables.push((dbname, t));
            }
        }
    }
    let order = fk_order(&new_tables);
    let mut created: BTreeSet<(String, String)> = BTreeSet::new();
    let mut deferred: Vec<(String, String, ForeignKey)> = Vec::new();
    for i in order {
        let (dbname, t) = new_tables[i];
        let me = (dbname.to_string(), t.name.clone());
        let mut inline = Vec::new();
        for fk in t.foreign_keys.values() {
            let parent = (fk.ref_database.clone(), fk.ref_table.clone());
            if parent == me || created.contains(&parent) {
                inline.push(fk);
            } else {
                deferred.push((dbname.to_string(), t.name.clone(), fk.clone()));
            }
        }
        out.push(change(
            create_table_sql(dbname, t, &inline),
            dbname,
            Some(&t.name),
        ));
        created.insert(me);
    }

    // Partitioning that goes is removed before the table's other changes (a new UNIQUE key,
    // FULLTEXT index or foreign key may need it gone); the rest comes after them.
    let mut partitions_late = Vec::new();
    for (dbname, tname) in plans.keys() {
        let have = live.table(dbname, tname).expect("planned tables are live");
        let want = desired
            .table(dbname, tname)
            .expect("planned tables are desired");
        for (sql, algorithm, destructive) in super::partition::diff(
            dbname,
            tname,
            have.partitioning.as_ref(),
            want.partitioning.as_ref(),
        ) {
            let c = Change {
                destructive,
                ..alter(sql, dbname, Some(tname), algorithm)
            };
            if want.partitioning.is_none() {
                out.push(c);
            } else {
                partitions_late.push(c);
            }
        }
    }

    // 4. one ALTER TABLE per changed table
    for ((dbname, tname), plan) in &plans {
        let clauses = &plan.clauses;
        let mut destructive = plan.destructive.clone();
        let rows = has_rows(dbname, tname);
        for d in &mut destructive {
            d.subject = format!("{dbname}.{tname}{}", d.subject);
        }
        for (col, why) in &plan.needs_rows {
            if rows != Some(false) {
                destructive.push(Destructive {
                    subject: format!("{dbname}.{tname}.{col}"),
                    reason: format!("{why}{}", rows_note(rows)),
                    ..Default::default()
                });
            }
        }
        if clauses.is_empty() {
            continue;
        }
        let statement = |clauses: &[&(String, Algorithm)], destructive: Vec<Destructive>| Change {
            sql: format!(
                "ALTER TABLE {} {}",
                qualified(dbname, tname),
                clauses
                    .iter()
                    .map(|c| c.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            database: dbname.clone(),
            table: Some(tname.clone()),
            algorithm: clauses.iter().map(|c| c.1).max(),
            destructive,
            object: None,
        };
        // New columns the server adds instantly go in a statement of their own when the rest
        // would rebuild or copy the table (one statement takes its slowest clause's way).
        // Not when the rest moves columns: positions are resolved clause by clause.
        let (instant, rest): (Vec<_>, Vec<_>) = clauses
            .iter()
            .partition(|c| c.1 == Algorithm::Instant && c.0.starts_with("ADD COLUMN "));
        let rest_slow = rest.iter().any(|c| c.1 > Algorithm::Instant);
        // (nor when the rest adds or drops columns: a generated column replaced is dropped and
        // added in one statement, and a new column's AFTER may name another new one)
        let rest_moves = rest.iter().any(|c| {
            c.0.starts_with("ADD COLUMN ")
                || c.0.starts_with("DROP COLUMN ")
                || (c.0.starts_with("MODIFY COLUMN ")
                    && (c.0.ends_with(" FIRST") || c.0.contains(" AFTER `")))
        });
        if !instant.is_empty() && rest_slow && !rest_moves {
            out.push(statement(&instant, Vec::new()));
            out.push(statement(&rest, destructive));
        } else {
            let all: Vec<&(String, Algorithm)> = clauses.iter().collect();
            out.push(statement(&all, destructive));
        }
    }

    // 4b. partitioning, on the columns and keys as they now are
    out.extend(partitions_late);

    // 5. foreign keys
    let mut adds: BTreeMap<(String, String), Vec<ForeignKey>> = BTreeMap::new();
    for (dbname, tname, fk) in deferred {
        adds.entry((dbname, tname)).or_default().push(fk);
    }
    for ((dbname, tname), _) in plans.iter() {
        let want = desired
            .table(dbname, tname)
            .expect("planned tables are desired");
        let have = live.table(dbname, tname).expect("planned tables are live");
        for (fkname, fk) in &want.foreign_keys {
            if have.foreign_keys.get(fkname) != Some(fk)
                || readd.contains(&(dbname.clone(), tname.clone(), fkname.clone()))
            {
                adds.entry((dbname.clone(), tname.clone()))
                    .or_default()
                    .push(fk.clone());
            }
        }
    }
    for ((dbname, tname), fks) in adds {
        let want = desired
            .table(&dbname, &tname)
            .expect("foreign keys are added to desired tables");
        // A key the server named (`t_ibfk_N`) is added unnamed when the server gives it the
        // same name (the next number): added by name, the server would also rename the index
        // it made for the old key after the constraint, where a fresh install has it named
        // after the column.
        let prefix = format!("{tname}_ibfk_");
        let number = |n: &str| n.strip_prefix(&prefix).and_then(|d| d.parse::<u32>().ok());
        let mut next = want
            .foreign_keys
            .keys()
            .filter(|n| !fks.iter().any(|f| &f.name == *n))
            .filter_map(|n| number(n))
            .max()
            .unwrap_or(0)
            + 1;
        let mut ordered = fks;
        ordered.sort_by_key(|f| (number(&f.name).unwrap_or(u32::MAX), f.name.clone()));
        let clauses: Vec<String> = ordered
            .iter()
            .map(|fk| {
                if number(&fk.name) == Some(next) {
                    next += 1;
                    format!("ADD {}", fk_sql_unnamed(fk))
                } else {
                    format!("ADD {}", fk_sql(fk))
                }
            })
            .collect();
        // with foreign_key_checks on, the server checks every row by copying the table
        out.push(alter(
            format!(
                "ALTER TABLE {} {}",
                qualified(&dbname, &tname),
                clauses.join(", ")
            ),
            &dbname,
            Some(&tname),
            Algorithm::Copy,
        ));
    }

    // 6. columns to drop
    for ((dbname, tname), plan) in &plans {
        if plan.drop_columns.is_empty() {
            continue;
        }
        let rows = has_rows(dbname, tname);
        let mut clauses: Vec<String> = plan
            .drop_columns
            .iter()
            .map(|c| format!("DROP COLUMN {}", quote_ident(c)))
            .collect();
        // MariaDB drops a CHECK that names no column whenever a column is dropped: put such
        // checks back in the same statement
        let want_t = desired
            .table(dbname, tname)
            .expect("planned tables are desired");
        let constant: Vec<(&String, &String)> = want_t
            .checks
            .iter()
            .filter(|(_, e)| !e.contains('`'))
            .collect();
        for (name, expr) in &constant {
            clauses.push(format!(
                "DROP CONSTRAINT IF EXISTS {n}, ADD CONSTRAINT {n} CHECK ({expr})",
                n = quote_ident(name)
            ));
        }
        let have = live.table(dbname, tname).expect("planned tables are live");
        let want = desired
            .table(dbname, tname)
            .expect("planned tables are desired");
        let destructive = plan
            .drop_columns
            .iter()
            .map(|c| Destructive {
                subject: format!("{dbname}.{tname}.{c}"),
                reason: format!(
                    "drops column {dbname}.{tname}.{c}{}{}",
                    rows_note(rows),
                    column_rename_hint(dbname, have, want, c)
                ),
                ..Default::default()
            })
            .collect();
        out.push(Change {
            sql: format!(
                "ALTER TABLE {} {}",
                qualified(dbname, tname),
                clauses.join(", ")
            ),
            database: dbname.clone(),
            table: Some(tname.clone()),
            algorithm: Some(if constant.is_empty() {
                Algorithm::Instant
            } else {
                Algorithm::Copy
            }),
            destructive,
            object: None,
        });
    }

    // 7. tables to drop
    for (dbname, tname) in &dropped_tables {
        let rows = has_rows(dbname, tname);
        out.push(Change {
            sql: format!("DROP TABLE {}", qualified(dbname, tname)),
            database: dbname.clone(),
            table: Some(tname.clone()),
            destructive: vec![Destructive {
                subject: format!("{dbname}.{tname}"),
                reason: format!(
                    "drops table {dbname}.{tname}{}{}",
                    rows_note(rows),
                    table_rename_hint(live, desired, dbname, tname)
                ),
                ..Default::default()
            }],
            object: None,
            algorithm: None,
        });
    }
    // 8. views, triggers and events, on the tables as they now are
    out.extend(objects_last);
    Migration { changes: out }
}

/// The live schema with the desired renames made, and the statements that make them. A rename
/// is made when its old name is live and its new one is not, and the desired schema has the
/// new name and not the old: so a migration that resumes after it finds nothing left to do.
fn apply_renames(live: &Schema, desired: &Schema) -> (Schema, Vec<Change>) {
    let mut live = live.clone();
    let mut out = Vec::new();
    // tables first: a column rename names its table as desired
    for (from, to) in &desired.renames {
        let parts: Vec<&str> = from.split('.').collect();
        let [db, old] = parts.as_slice() else {
            continue;
        };
        let wanted = desired.table(db, to).is_some() && desired.table(db, old).is_none();
        let Some(d) = live.databases.get_mut(*db) else {
            continue;
        };
        if !wanted || d.tables.contains_key(to) || d.views.contains_key(to) {
            continue;
        }
        let Some(mut t) = d.tables.remove(*old) else {
            continue;
        };
        t.name = to.clone();
        d.tables.insert(to.clone(), t);
        for trig in d.triggers.values_mut() {
            if trig.table == *old {
                trig.table = to.clone();
            }
        }
        // the server points foreign keys at the new name
        for d in live.databases.values_mut() {
            for t in d.tables.values_mut() {
                for fk in t.foreign_keys.values_mut() {
                    if fk.ref_database == *db && fk.ref_table == *old {
                        fk.ref_table = to.clone();
                    }
                }
            }
        }
        out.push(change(
            format!(
                "RENAME TABLE {} TO {}",
                qualified(db, old),
                qualified(db, to)
            ),
            db,
            Some(to),
        ));
    }
    for (from, to) in &desired.renames {
        let parts: Vec<&str> = from.split('.').collect();
        let [db, table, old] = parts.as_slice() else {
            continue;
        };
        let Some(want) = desired.table(db, table) else {
            continue;
        };
        if want.column(to).is_none() || want.column(old).is_some() {
            continue;
        }
        let Some(t) = live
            .databases
            .get_mut(*db)
            .and_then(|d| d.tables.get_mut(*table))
        else {
            continue;
        };
        if t.column(to).is_some() {
            continue;
        }
        let Some(c) = t
            .columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(old))
        else {
            continue;
        };
        let old_name = c.name.clone();
        c.name = to.clone();
        for k in t
            .primary_key
            .iter_mut()
            .flatten()
            .chain(t.indexes.values_mut().flat_map(|i| i.parts.iter_mut()))
        {
            if k.column == old_name {
                k.column = to.clone();
            }
        }
        for fk in t.foreign_keys.values_mut() {
            for c in fk.columns.iter_mut().filter(|c| **c == old_name) {
                *c = to.clone();
            }
        }
        for d in live.databases.values_mut() {
            for other in d.tables.values_mut() {
                for fk in other.foreign_keys.values_mut() {
                    if fk.ref_database == *db && fk.ref_table == *table {
                        for c in fk.ref_columns.iter_mut().filter(|c| **c == old_name) {
                            *c = to.clone();
                        }
                    }
                }
            }
        }
        out.push(alter(
            format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {}",
                qualified(db, table),
                quote_ident(&old_name),
                quote_ident(to)
            ),
            db,
            Some(&table.to_string()),
            Algorithm::Instant,
        ));
    }
    (live, out)
}

/// The renames that undo `renames`: a table back to its old name, a column back to its old
/// name in the table as it was named before.
pub fn inverse_renames(renames: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tables: BTreeMap<(String, String), String> = BTreeMap::new(); // (db, new) -> old
    for (from, to) in renames {
        if let [db, old] = from.split('.').collect::<Vec<_>>().as_slice() {
            tables.insert((db.to_string(), to.clone()), old.to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (from, to) in renames {
        match from.split('.').collect::<Vec<_>>().as_slice() {
            [db, old] => {
                out.insert(format!("{db}.{to}"), old.to_string());
            }
            [db, table, old] => {
                let before = tables
                    .get(&(db.to_string(), table.to_string()))
                    .map_or(*table, String::as_str);
                out.insert(format!("{db}.{before}.{to}"), old.to_string());
            }
            _ => {}
        }
    }
    out
}

/// "; looks like a rename ..." when a column of the same definition is added to the table.
fn column_rename_hint(db: &str, have: &Table, want: &Table, dropped: &str) -> String {
    let Some(old) = have.column(dropped) else {
        return String::new();
    };
    let same =
        |c: &Column| c.ty == old.ty && c.nullable == old.nullable && c.generated == old.generated;
    match want
        .columns
        .iter()
        .find(|c| have.column(&c.name).is_none() && same(c))
    {
        Some(new) => format!(
            "; it looks like a rename to {}: `\"{db}.{}.{dropped}\" = \"{}\"` under [renames] in release.toml renames it and keeps the data",
            new.name, want.name, new.name
        ),
        None => String::new(),
    }
}

/// "; looks like a rename ..." when a new table has columns of the dropped one's types.
fn table_rename_hint(live: &Schema, desired: &Schema, db: &str, dropped: &str) -> String {
    let (Some(old), Some(want_db)) = (live.table(db, dropped), desired.databases.get(db)) else {
        return String::new();
    };
    // the same column types in the same order (names may have changed too)
    let shape = |t: &Table| -> Vec<String> { t.columns.iter().map(|c| c.ty.to_string()).collect() };
    match want_db
        .tables
        .values()
        .find(|t| live.table(db, &t.name).is_none() && shape(t) == shape(old))
    {
        Some(new) => format!(
            "; it looks like a rename to {}: `\"{db}.{dropped}\" = \"{}\"` under [renames] in release.toml renames it and keeps the data",
            new.name, new.name
        ),
        None => String::new(),
    }
}

fn rows_note(rows: Option<bool>) -> &'static str {
    match rows {
        Some(true) => ", which has rows",
        Some(false) => " (empty)",
        None => "",
    }
}

pub(super) fn change(sql: String, db: &str, table: Option<&String>) -> Change {
    Change {
        sql,
        database: db.to_string(),
        table: table.cloned(),
        destructive: Vec::new(),
        object: None,
        algorithm: None,
    }
}

/// What one existing table needs.
struct TablePlan {
    /// Clauses of the table's `ALTER TABLE`, with the algorithm each is expected to need.
    clauses: Vec<(String, Algorithm)>,
    /// Columns whose definition changes (modified), by name.
    modified: BTreeSet<String>,
    /// Columns in a key that is dropped or changed.
    rekeyed: BTreeSet<String>,
    drop_columns: Vec<String>,
    /// Subjects relative to the table (".col" or "") and reasons.
    destructive: Vec<Destructive>,
    /// Findings that depend on whether the table has rows: (column, reason).
    needs_rows: Vec<(String, String)>,
    /// CHECK constraints added or changed: (name, expression).
    new_checks: Vec<(String, String)>,
}

impl TablePlan {
    fn new(have: &Table, want: &Table) -> TablePlan {
        let mut p = TablePlan {
            clauses: Vec::new(),
            modified: BTreeSet::new(),
            rekeyed: BTreeSet::new(),
            drop_columns: Vec::new(),
            destructive: Vec::new(),
            needs_rows: Vec::new(),
            new_checks: Vec::new(),
        };
        let pk_changes = have.primary_key != want.primary_key
            || (want.primary_key.is_some() && have.primary_comment != want.primary_comment);
        let has_fulltext = have
            .indexes
            .values()
            .chain(want.indexes.values())
            .any(|i| i.kind == IndexKind::Fulltext);
        if pk_changes && have.primary_key.is_some() {
            p.clauses
                .push(("DROP PRIMARY KEY".into(), Algorithm::InplaceOnline));
            p.rekeyed
                .extend(have.primary_key.iter().flatten().map(|k| k.column.clone()));
        }
        for (name, expr) in &have.checks {
            if want.checks.get(name) != Some(expr) {
                p.clauses.push((
                    format!("DROP CONSTRAINT {}", quote_ident(name)),
                    Algorithm::Instant,
                ));
            }
        }
        for (name, ix) in &have.indexes {
            let keep = want.indexes.get(name) == Some(ix);
            if !keep {
                p.clauses.push((
                    format!("DROP INDEX {}", quote_ident(name)),
                    Algorithm::Nocopy,
                ));
                p.rekeyed.extend(ix.parts.iter().map(|k| k.column.clone()));
                if !want.indexes.contains_key(name) {
                    p.destructive.push(Destructive {
                        subject: format!(".{name}"),
                        reason: format!("drops index {name} on {}", have.name),
                        ..Default::default()
                    });
                }
            }
        }
        // columns, in desired order
        let retained_live: Vec<&str> = have
            .columns
            .iter()
            .filter(|c| want.column(&c.name).is_some())
            .map(|c| c.name.as_str())
            .collect();
        let retained_want: Vec<&str> = want
            .columns
            .iter()
            .filter(|c| have.column(&c.name).is_some())
            .map(|c| c.name.as_str())
            .collect();
        let stable = lcs(&retained_live, &retained_want);
        let mut prev: Option<&str> = None;
        for c in &want.columns {
            let position = match prev {
                None => " FIRST".to_string(),
                Some(p) => format!(" AFTER {}", quote_ident(p)),
            };
            match have.column(&c.name) {
                None => {
                    // the server adds a column instantly, but not to a table with a FULLTEXT
                    // index, nor a stored generated one (computed for every row)
                    let algorithm = if c.generated.as_ref().is_some_and(|g| g.stored) {
                        Algorithm::Copy
                    } else if has_fulltext {
                        Algorithm::Inplace
                    } else {
                        Algorithm::Instant
                    };
                    p.clauses
                        .push((format!("ADD COLUMN {}{position}", column_sql(c)), algorithm));
                    if !c.nullable
                        && c.default.is_none()
                        && !c.auto_increment
                        && c.generated.is_none()
                    {
                        p.needs_rows.push((c.name.clone(), format!("adds NOT NULL column {}.{} without a default: existing rows get an invented value", want.name, c.name)));
                    }
                }
                Some(old) if old.generated != c.generated => {
                    // MariaDB cannot turn a column into (or out of) a generated one, nor change
                    // a generated column's kind, in place: drop it and add it back.
                    p.clauses.push((
                        format!("DROP COLUMN {}", quote_ident(&c.name)),
                        Algorithm::Instant,
                    ));
                    p.clauses.push((
                        format!("ADD COLUMN {}{position}", column_sql(c)),
                        if c.generated.as_ref().is_some_and(|g| g.stored) {
                            Algorithm::Copy
                        } else {
                            Algorithm::Instant
                        },
                    ));
                    p.modified.insert(c.name.clone());
                    if old.generated.is_none() {
                        p.destructive.push(Destructive {
                            subject: format!(".{}", c.name),
                            reason: format!(
                                "replaces the values of {}.{} with a generated column",
                                want.name, c.name
                            ),
                            ..Default::default()
                        });
                    }
                }
                Some(old) => {
                    let differs = column_differs(old, c);
                    let moved = !stable.contains(c.name.as_str());
                    if differs {
                        p.modified.insert(c.name.clone());
                        p.lint_column(want, old, c);
                    }
                    if differs || moved {
                        // What the desired schema leaves unsaid stays as it is: MODIFY without
                        // a charset would reset the column to the table's default.
                        let mut kept = c.clone();
                        if kept.charset.is_none() && kept.collation.is_none() {
                            kept.charset.clone_from(&old.charset);
                            kept.collation.clone_from(&old.collation);
                        }
                        p.clauses.push((
                            format!(
                                "MODIFY COLUMN {}{}",
                                column_sql(&kept),
                                if moved { position } else { String::new() }
                            ),
                            modify_algorithm(old, &kept),
                        ));
                    }
                }
            }
            prev = Some(&c.name);
        }
        if pk_changes {
            if let Some(pk) = &want.primary_key {
                p.clauses.push((
                    format!("ADD {}", primary_key_sql(pk, &want.primary_comment)),
                    Algorithm::InplaceOnline,
                ));
            }
        }
        let mut wanted: Vec<&Index> = want.indexes.values().collect();
        wanted.sort_by_key(|i| (i.position, i.name.clone()));
        for ix in wanted {
            let name = &ix.name;
            if have.indexes.get(name) != Some(ix) {
                p.clauses
                    .push((format!("ADD {}", index_sql(ix)), Algorithm::Nocopy));
            }
        }
        for (name, expr) in &want.checks {
            if have.checks.get(name) != Some(expr) {
                // every row is checked, by copying the table
                p.clauses.push((
                    format!("ADD CONSTRAINT {} CHECK ({expr})", quote_ident(name)),
                    Algorithm::Copy,
                ));
                p.new_checks.push((name.clone(), expr.clone()));
            }
        }
        let o = (&have.options, &want.options);
        let mut opts = Vec::new();
        if o.1.engine.is_some() && o.1.engine != o.0.engine {
            opts.push((
                format!("ENGINE={}", o.1.engine.as_deref().unwrap_or_default()),
                Algorithm::InplaceOnline,
            ));
        }
        if (o.1.charset.is_some() && o.1.charset != o.0.charset)
            || (o.1.collation.is_some() && o.1.collation != o.0.collation)
        {
            opts.push((
                charset_clause(&o.1.charset, &o.1.collation, " DEFAULT")
                    .trim()
                    .to_string(),
                Algorithm::Instant,
            ));
        }
        if o.1.comment != o.0.comment {
            opts.push((
                format!("COMMENT={}", quote_str(&o.1.comment)),
                Algorithm::Instant,
            ));
        }
        // An unstated row format is the engine's default, as in a fresh install.
        if o.1.row_format != o.0.row_format {
            let format = o.1.row_format.as_deref().unwrap_or("default");
            opts.push((
                format!("ROW_FORMAT={}", format.to_ascii_uppercase()),
                Algorithm::InplaceOnline,
            ));
        }
        for (k, v) in &o.1.extra {
            if o.0.extra.get(k) != Some(v) {
                opts.push((
                    format!("{}={v}", k.to_ascii_uppercase()),
                    extra_algorithm(k),
                ));
            }
        }
        for k in o.0.extra.keys().filter(|k| !o.1.extra.contains_key(*k)) {
            let zero = EXTRA_TABLE_OPTIONS.iter().any(|(x, z)| x == k && *z);
            let value = if zero { "0" } else { "DEFAULT" };
            opts.push((
                format!("{}={value}", k.to_ascii_uppercase()),
                extra_algorithm(k),
            ));
        }
        p.clauses.extend(opts);
        for c in &have.columns {
            if want.column(&c.name).is_none() {
                p.drop_columns.push(c.name.clone());
            }
        }
        p
    }

    fn lint_column(&mut self, t: &Table, old: &Column, new: &Column) {
        if !old.ty.fits_in(&new.ty) {
            self.destructive.push(Destructive {
                subject: format!(".{}", new.name),
                reason: format!(
                    "changes {}.{} from {} to {}, which may not hold every value",
                    t.name, new.name, old.ty, new.ty
                ),
                ..Default::default()
            });
        }
        if let (Some(a), Some(b)) = (&old.charset, &new.charset) {
            let widening = b == "utf8mb4" && matches!(a.as_str(), "ascii" | "utf8mb3" | "utf8mb4");
            if a != b && !widening {
                self.destructive.push(Destructive {
                    subject: format!(".{}", new.name),
                    reason: format!(
                        "converts {}.{} from {a} to {b}, which may not hold every character",
                        t.name, new.name
                    ),
                    ..Default::default()
                });
            }
        }
        if old.nullable && !new.nullable {
            self.needs_rows.push((
                new.name.clone(),
                format!(
                    "makes {}.{} NOT NULL: existing NULLs fail the change or are replaced",
                    t.name, new.name
                ),
            ));
        }
    }

    /// Whether a column's definition or a key over it changes.
    fn touches_column(&self, c: &str) -> bool {
        self.modified.contains(c)
            || self.rekeyed.contains(c)
            || self.drop_columns.iter().any(|d| d == c)
    }
}

/// What a change of a table option needs: compression rebuilds the table, the rest is
/// metadata.
fn extra_algorithm(option: &str) -> Algorithm {
    match option {
        "key_block_size" | "page_compressed" | "page_compression_level" | "checksum" => {
            Algorithm::InplaceOnline
        }
        _ => Algorithm::Instant,
    }
}

fn primary_key_sql(pk: &[KeyPart], comment: &str) -> String {
    let mut s = format!("PRIMARY KEY ({})", key_parts_sql(pk));
    if !comment.is_empty() {
        s.push_str(&format!(" COMMENT {}", quote_str(comment)));
    }
    s
}

/// What a `MODIFY COLUMN` from `old` to `new` is expected to need: metadata only for a
/// default, a comment, a position or a longer VARCHAR; a rebuild in place for NULL-ness; a
/// copy for a new type or character set.
fn modify_algorithm(old: &Column, new: &Column) -> Algorithm {
    let same_text = old.charset == new.charset && old.collation == new.collation;
    let type_ok = old.ty == new.ty
        || (old.ty.base == "varchar"
            && new.ty.base == "varchar"
            && old.ty.fits_in(&new.ty)
            && same_text);
    if !type_ok || !same_text || old.auto_increment != new.auto_increment || old.srid != new.srid {
        Algorithm::Copy
    } else if old.nullable != new.nullable {
        Algorithm::InplaceOnline
    } else {
        Algorithm::Instant
    }
}

fn column_differs(have: &Column, want: &Column) -> bool {
    have.ty != want.ty
        || have.nullable != want.nullable
        || have.default != want.default
        || have.on_update != want.on_update
        || have.auto_increment != want.auto_increment
        || have.generated != want.generated
        || have.comment != want.comment
        || have.check != want.check
        || have.srid != want.srid
        || (want.charset.is_some() && have.charset != want.charset)
        || (want.collation.is_some() && have.collation != want.collation)
}

/// Longest common subsequence of two name lists (the columns that need not move).
fn lcs<'a>(a: &[&'a str], b: &[&'a str]) -> BTreeSet<&'a str> {
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[i][j] = if a[i] == b[j] {
                dp[i + 1][j + 1] + 1
            } else {
                dp[i + 1][j].max(dp[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = BTreeSet::new();
    while i < n && j < m {
        if a[i] == b[j] {
            out.insert(a[i]);
            i += 1;
            j += 1;
        } else if dp[i + 1][j] >= dp[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// New tables in creation order: parents before children, ties and cycles by name.
fn fk_order(tables: &[(&str, &Table)]) -> Vec<usize> {
    let key = |i: usize| (tables[i].0.to_string(), tables[i].1.name.clone());
    let index: BTreeMap<(String, String), usize> = (0..tables.len()).map(|i| (key(i), i)).collect();
    let deps: Vec<BTreeSet<usize>> = (0..tables.len())
        .map(|i| {
            tables[i]
                .1
                .foreign_keys
                .values()
                .filter_map(|fk| {
                    index
                        .get(&(fk.ref_database.clone(), fk.ref_table.clone()))
                        .copied()
                })
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut done = vec![false; tables.len()];
    let mut order = Vec::new();
    while order.len() < tables.len() {
        let ready = (0..tables.len())
            .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .min_by_key(|&i| key(i));
        // A cycle: take the first remaining table by name; its foreign keys into the cycle are
        // added after the tables exist.
        let next = ready.unwrap_or_else(|| {
            (0..tables.len())
                .filter(|&i| !done[i])
                .min_by_key(|&i| key(i))
                .expect("some table remains")
        });
        done[next] = true;
        order.push(next);
    }
    order
}

pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}

fn charset_clause(charset: &Option<String>, collation: &Option<String>, prefix: &str) -> String {
    let mut s = String::new();
    if let Some(cs) = charset {
        s.push_str(&format!("{prefix} CHARACTER SET {cs}"));
    }
    if let Some(co) = collation {
        s.push_str(&format!("{prefix} COLLATE {co}"));
    }
    s
}

/// A column's definition as `CREATE TABLE` and `ALTER TABLE` take it.
pub fn column_sql(c: &Column) -> String {
    let mut s = format!("{} {}", quote_ident(&c.name), c.ty);
    if let Some(srid) = c.srid {
        s.push_str(&format!(" REF_SYSTEM_ID={srid}"));
    }
    if c.ty.is_textual() {
        if let Some(co) = &c.collation {
            s.push_str(&format!(" CHARACTER SET {} COLLATE {co}", charset_of(co)));
        } else if let Some(cs) = &c.charset {
            s.push_str(&format!(" CHARACTER SET {cs}"));
        }
    }
    if let Some(g) = &c.generated {
        s.push_str(&format!(
            " AS ({}) {}",
            g.expr,
            if g.stored { "STORED" } else { "VIRTUAL" }
        ));
    } else {
        s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
        match &c.default {
            None => {}
            Some(DefaultValue::Null) => s.push_str(" DEFAULT NULL"),
            Some(DefaultValue::Literal(v)) => {
                let bare = (c.ty.is_numeric() && v.parse::<f64>().is_ok()) || v.starts_with("b'");
                s.push_str(&format!(
                    " DEFAULT {}",
                    if bare { v.clone() } else { quote_str(v) }
                ));
            }
            Some(DefaultValue::Expr(e)) if e.starts_with("current_timestamp") => {
                s.push_str(&format!(" DEFAULT {e}"))
            }
            Some(DefaultValue::Expr(e)) => s.push_str(&format!(" DEFAULT ({e})")),
        }
        if let Some(u) = &c.on_update {
            s.push_str(&format!(" ON UPDATE {u}"));
        }
        if c.auto_increment {
            s.push_str(" AUTO_INCREMENT");
        }
    }
    if !c.comment.is_empty() {
        s.push_str(&format!(" COMMENT {}", quote_str(&c.comment)));
    }
    if let Some(check) = &c.check {
        s.push_str(&format!(" CHECK ({check})"));
    }
    s
}

fn key_parts_sql(parts: &[KeyPart]) -> String {
    parts
        .iter()
        .map(|k| {
            let mut s = quote_ident(&k.column);
            if let Some(n) = k.prefix {
                s.push_str(&format!("({n})"));
            }
            if k.desc {
                s.push_str(" DESC");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn index_sql(ix: &Index) -> String {
    let kind = match ix.kind {
        IndexKind::Index => "INDEX",
        IndexKind::Unique => "UNIQUE INDEX",
        IndexKind::Fulltext => "FULLTEXT INDEX",
        IndexKind::Spatial => "SPATIAL INDEX",
    };
    let mut s = format!(
        "{kind} {} ({})",
        quote_ident(&ix.name),
        key_parts_sql(&ix.parts)
    );
    if let Some(u) = &ix.using {
        s.push_str(&format!(" USING {u}"));
    }
    if !ix.comment.is_empty() {
        s.push_str(&format!(" COMMENT {}", quote_str(&ix.comment)));
    }
    s
}

/// `FOREIGN KEY ...` without `CONSTRAINT name`: the server names it.
fn fk_sql_unnamed(fk: &ForeignKey) -> String {
    let named = fk_sql(fk);
    let at = named
        .find("FOREIGN KEY")
        .expect("fk_sql writes FOREIGN KEY");
    named[at..].to_string()
}

fn fk_sql(fk: &ForeignKey) -> String {
    let cols = |v: &[String]| {
        v.iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {}",
        quote_ident(&fk.name),
        cols(&fk.columns),
        qualified(&fk.ref_database, &fk.ref_table),
        cols(&fk.ref_columns),
        fk.on_delete.sql(),
        fk.on_update.sql()
    )
}

/// `CREATE TABLE` for a table, with the given foreign keys inline.
pub fn create_table_sql(db: &str, t: &Table, fks: &[&ForeignKey]) -> String {
    let mut lines: Vec<String> = t.columns.iter().map(column_sql).collect();
    if let Some(pk) = &t.primary_key {
        lines.push(primary_key_sql(pk, &t.primary_comment));
    }
    // in the order the file declares them, as a fresh install creates them
    let mut indexes: Vec<&Index> = t.indexes.values().collect();
    indexes.sort_by_key(|i| (i.position, i.name.clone()));
    lines.extend(indexes.into_iter().map(index_sql));
    lines.extend(fks.iter().map(|fk| fk_sql(fk)));
    lines.extend(
        t.checks
            .iter()
            .map(|(name, expr)| format!("CONSTRAINT {} CHECK ({expr})", quote_ident(name))),
    );
    let mut s = format!(
        "CREATE TABLE {} (\n  {}\n)",
        qualified(db, &t.name),
        lines.join(",\n  ")
    );
    let o = &t.options;
    if let Some(e) = &o.engine {
        s.push_str(&format!(" ENGINE={e}"));
    }
    s.push_str(&charset_clause(&o.charset, &o.collation, " DEFAULT"));
    if !o.comment.is_empty() {
        s.push_str(&format!(" COMMENT={}", quote_str(&o.comment)));
    }
    if let Some(r) = &o.row_format {
        s.push_str(&format!(" ROW_FORMAT={}", r.to_ascii_uppercase()));
    }
    for (k, v) in &o.extra {
        s.push_str(&format!(" {}={v}", k.to_ascii_uppercase()));
    }
    if let Some(p) = &t.partitioning {
        s.push_str(&format!(" {}", p.sql()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::sql::{load, LoadOptions};
    use proptest::prelude::*;

    fn schema(text: &str) -> Schema {
        load(
            text,
            &LoadOptions {
                default_database: Some("d".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .schema
    }

    fn unknown(_: &str, _: &str) -> Option<bool> {
        None
    }

    #[test]
    #[ignore = "nuwax suite: needs ../shared/fixtures/nuwax; scripts/test.sh runs it with --ignored"]
    fn same_schema_is_no_change_and_nuwax_steps_are_additive() {
        let dir = format!(
            "{}/../../shared/fixtures/nuwax/mysql",
            env!("CARGO_MANIFEST_DIR")
        );
        let files: Vec<Schema> = (1..=4)
            .map(|v| {
                load(
                    &std::fs::read_to_string(format!("{dir}/v{v}_init_mysql.sql")).unwrap(),
                    &LoadOptions::default(),
                )
                .unwrap()
                .schema
            })
            .collect();
        for s in &files {
            assert!(diff(s, s, &unknown).is_empty());
        }
        for w in files.windows(2) {
            let m = diff(&w[0], &w[1], &unknown);
            assert!(!m.is_empty());
            let again = diff(&w[0], &w[1], &unknown);
            assert_eq!(m, again, "deterministic");
        }
    }

    #[test]
    fn order_parents_first_drops_last_and_lint() {
        let a = schema("USE d; create table keep (id int primary key, old_col int, n varchar(64)); create table gone (id int primary key);");
        let b = schema(
            "USE d; create table child (id int primary key, pid int, constraint fk foreign key (pid) references parent (id));\n\
             create table parent (id int primary key);\n\
             create table keep (id int primary key, n varchar(32), extra int not null);",
        );
        let m = diff(&a, &b, &|_, _| Some(true));
        let sql = m.statements();
        let pos = |needle: &str| {
            sql.iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("{needle} in {sql:#?}"))
        };
        assert!(pos("CREATE TABLE `d`.`parent`") < pos("CREATE TABLE `d`.`child`"));
        assert!(
            sql[pos("CREATE TABLE `d`.`child`")].contains("FOREIGN KEY"),
            "inline when the parent exists"
        );
        assert!(pos("DROP COLUMN `old_col`") > pos("MODIFY COLUMN `n`"));
        assert_eq!(pos("DROP TABLE `d`.`gone`"), sql.len() - 1);
        let subjects: Vec<&str> = m.destructive().iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(
            subjects,
            ["d.keep.n", "d.keep.extra", "d.keep.old_col", "d.gone"],
            "{:#?}",
            m.destructive()
        );
        let allow = Allow {
            all: false,
            subjects: vec!["d.keep".into()],
        };
        assert_eq!(m.refused(&allow).len(), 1);
        assert!(m
            .refused(&Allow {
                all: true,
                subjects: vec![]
            })
            .is_empty());
        // on an empty table, the NOT NULL column is harmless
        let m = diff(&a, &b, &|_, _| Some(false));
        assert!(!m.destructive().iter().any(|d| d.subject == "d.keep.extra"));
    }

    #[test]
    fn an_unstated_collation_is_kept_when_a_column_is_modified() {
        let live = schema("USE d; create table t (a varchar(10) collate utf8mb4_bin, b int);");
        let want = schema("USE d; create table t (a varchar(20), b int);");
        let m = diff(&live, &want, &unknown);
        assert_eq!(m.statements(), ["ALTER TABLE `d`.`t` MODIFY COLUMN `a` varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL DEFAULT NULL"]);
    }

    /// Apply `ALTER TABLE` column clauses the way MySQL does, on a list of names.
    fn simulate(mut cols: Vec<String>, clauses: &str) -> Vec<String> {
        for clause in clauses.split(", ") {
            let words: Vec<&str> = clause.split(' ').collect();
            let (add, modify) = (
                clause.starts_with("ADD COLUMN"),
                clause.starts_with("MODIFY COLUMN"),
            );
            if !(add || modify) {
                continue;
            }
            let name = words[2].trim_matches('`').to_string();
            if modify && !clause.contains(" FIRST") && !clause.contains(" AFTER ") {
                continue;
            }
            cols.retain(|c| c != &name);
            if clause.ends_with(" FIRST") {
                cols.insert(0, name);
            } else {
                let after = clause.rsplit(" AFTER ").next().unwrap().trim_matches('`');
                let at = cols.iter().position(|c| c == after).unwrap() + 1;
                cols.insert(at, name);
            }
        }
        cols
    }

    proptest! {
        #[test]
        fn column_moves_reach_the_desired_order(
            live in proptest::sample::subsequence((0..8).collect::<Vec<u8>>(), 0..=8).prop_shuffle(),
            want in proptest::sample::subsequence((0..8).collect::<Vec<u8>>(), 1..=8).prop_shuffle(),
        ) {
            prop_assume!(!live.is_empty());
            let table = |cols: &[u8]| {
                let defs: Vec<String> = cols.iter().map(|c| format!("c{c} int")).collect();
                schema(&format!("USE d; create table t ({});", defs.join(", ")))
            };
            let (a, b) = (table(&live), table(&want));
            let m = diff(&a, &b, &unknown);
            let names = |v: &[u8]| v.iter().map(|c| format!("c{c}")).collect::<Vec<_>>();
            let mut cols = names(&live);
            for c in &m.changes {
                if let Some(rest) = c.sql.strip_prefix("ALTER TABLE `d`.`t` ") {
                    cols = simulate(cols, rest);
                    if rest.starts_with("DROP COLUMN") {
                        let drops: Vec<String> = rest.split(", ").map(|d| d.trim_start_matches("DROP COLUMN ").trim_matches('`').to_string()).collect();
                        cols.retain(|c| !drops.contains(c));
                    }
                }
            }
            prop_assert_eq!(cols, names(&want));
        }
    }
}
