//! The schema model both loaders produce and the differ compares.
//!
//! Values are kept in one canonical form, so that a model read from SQL text and one read from
//! a live server compare equal when the server would store the same thing: types lowercase
//! with integer display widths dropped and aliases resolved (`integer` -> `int`, `bool` ->
//! `tinyint`, `numeric(5)` -> `decimal(5,0)`), defaults as literal text or a canonical
//! expression (`current_timestamp(3)`), expressions with identifiers back-quoted and no
//! insignificant spaces.
//!
//! Optional attributes (`charset`, `collation`, `engine`, `row_format`) are `None` when the SQL
//! text did not say and they could not be inherited: the differ leaves them alone then (a
//! desired schema is a specification; what it does not specify is not changed).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub databases: BTreeMap<String, Database>,
    /// For a desired schema: renames to make instead of a drop and an add, `"db.table"` ->
    /// new table name, `"db.table.column"` -> new column name (table as desired). Empty for a
    /// live one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renames: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub tables: BTreeMap<String, Table>,
    #[serde(default)]
    pub views: BTreeMap<String, View>,
    #[serde(default)]
    pub triggers: BTreeMap<String, Trigger>,
    #[serde(default)]
    pub events: BTreeMap<String, Event>,
}

/// A view. The server stores a rewritten query (names qualified, every column aliased, `*`
/// expanded), which only the server can produce from the text: `definition` is that form,
/// read from `information_schema.VIEWS` or, for a desired view, from a probe view the server
/// made from `source` (`live::resolve_views`). `None` until then; the differ replaces a view
/// whose definition is unknown or different.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub name: String,
    /// What follows the view's name in `CREATE VIEW name ...`: `[(columns)] AS select ...
    /// [WITH ... CHECK OPTION]`, as written (or as the server shows it, for a live view).
    pub source: String,
    /// The server's form of the query (`VIEW_DEFINITION`), canonical (see [`canonical_expr`]).
    pub definition: Option<String>,
    /// `NONE`, `CASCADED` or `LOCAL`.
    pub check_option: String,
    /// `DEFINER` or `INVOKER`.
    pub security: String,
    /// `UNDEFINED`, `MERGE` or `TEMPTABLE`.
    pub algorithm: String,
    /// Line of the `CREATE VIEW` in the schema file (0 for a live view), for errors.
    #[serde(default)]
    pub line: usize,
}

/// A trigger. Its body is stored by the server as written, so it is compared as text with
/// whitespace outside strings collapsed ([`canonical_body`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub name: String,
    pub table: String,
    /// `BEFORE` or `AFTER`.
    pub timing: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub event: String,
    /// 1-based position among the table's triggers of the same timing and event.
    pub order: u32,
    /// The statement after `FOR EACH ROW`, as written.
    pub body: String,
}

/// An event of the event scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    pub schedule: Schedule,
    /// The schedule as `CREATE EVENT` takes it (`EVERY 1 HOUR STARTS '...'`), as written.
    pub schedule_sql: String,
    /// `ON COMPLETION PRESERVE`.
    pub preserve: bool,
    /// `ENABLED`, `DISABLED` or `SLAVESIDE_DISABLED`.
    pub status: String,
    pub comment: String,
    /// The statement after `DO`, as written.
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// `AT` a time: the literal `YYYY-MM-DD HH:MM:SS`, or `None` for an expression (evaluated
    /// when the event is created, so not compared).
    At(Option<String>),
    Every {
        /// `INTERVAL_VALUE` as the server shows it (`1`, `'1:30'` -> `1:30`).
        value: String,
        /// `HOUR`, `DAY`, `HOUR_MINUTE` ...
        field: String,
        /// Literal times; `None` when unstated or an expression (not compared).
        starts: Option<String>,
        ends: Option<String>,
    },
}

impl Schedule {
    /// Whether `live` is what `self` (desired) asks for: unstated and computed times match
    /// anything.
    pub fn satisfied_by(&self, live: &Schedule) -> bool {
        let opt = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        match (self, live) {
            (Schedule::At(w), Schedule::At(h)) => opt(w, h),
            (
                Schedule::Every {
                    value,
                    field,
                    starts,
                    ends,
                },
                Schedule::Every {
                    value: v2,
                    field: f2,
                    starts: s2,
                    ends: e2,
                },
            ) => value == v2 && field == f2 && opt(starts, s2) && opt(ends, e2),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Option<Vec<KeyPart>>,
    /// Secondary indexes by name (unique, plain, fulltext, spatial).
    pub indexes: BTreeMap<String, Index>,
    pub foreign_keys: BTreeMap<String, ForeignKey>,
    pub options: TableOptions,
    /// The primary key's COMMENT.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub primary_comment: String,
    /// `PARTITION BY ...`, when the table is partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<super::partition::Partitioning>,
    /// Table-level CHECK constraints by name (unnamed ones are `CONSTRAINT_1`, `_2` ... in
    /// order, as the server names them), canonical expression text. Column-level ones are
    /// [`Column::check`].
    #[serde(default)]
    pub checks: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    pub engine: Option<String>,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub comment: String,
    pub row_format: Option<String>,
    /// The other options the server keeps and shows (`KEY_BLOCK_SIZE`, `STATS_PERSISTENT`,
    /// `PACK_KEYS`, `CHECKSUM` ...): lowercase name -> value, without those at their default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Table options kept in [`TableOptions::extra`], and whether `0` is their default (shown as
/// absent) rather than a value.
pub const EXTRA_TABLE_OPTIONS: &[(&str, bool)] = &[
    ("key_block_size", true),
    ("stats_persistent", false),
    ("stats_auto_recalc", false),
    ("stats_sample_pages", false),
    ("pack_keys", false),
    ("checksum", true),
    ("delay_key_write", true),
    ("page_compressed", true),
    ("page_compression_level", false),
    ("min_rows", true),
    ("max_rows", true),
    ("avg_row_length", true),
];

/// Put a table option in [`TableOptions::extra`] when it is one molt keeps and not at its
/// default.
pub fn set_extra_option(extra: &mut BTreeMap<String, String>, key: &str, value: &str) {
    let key = key.to_ascii_lowercase();
    let value = value.trim().to_ascii_uppercase();
    let Some((_, zero_is_default)) = EXTRA_TABLE_OPTIONS.iter().find(|(k, _)| *k == key) else {
        return;
    };
    if value == "DEFAULT" || (*zero_is_default && value == "0") {
        extra.remove(&key);
    } else {
        extra.insert(key, value);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub default: Option<DefaultValue>,
    pub on_update: Option<String>,
    pub auto_increment: bool,
    pub generated: Option<Generated>,
    pub comment: String,
    pub charset: Option<String>,
    pub collation: Option<String>,
    /// A column-level CHECK constraint (written in the column's definition; the server names
    /// it after the column), canonical expression text. MariaDB's `json` is a `longtext` with
    /// `json_valid` as its check: that one is the type, not this.
    #[serde(default)]
    pub check: Option<String>,
    /// The spatial reference system of a geometry column (`REF_SYSTEM_ID=4326`; MariaDB keeps
    /// it in `information_schema.GEOMETRY_COLUMNS`), when not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srid: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// Canonical expression text (see [`canonical_expr`]).
    pub expr: String,
    pub stored: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultValue {
    Null,
    /// A literal, unquoted and unescaped, in the column type's canonical form.
    Literal(String),
    /// An expression such as `current_timestamp()`, canonical.
    Expr(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPart {
    pub column: String,
    /// Prefix length (`name(10)`).
    pub prefix: Option<u32>,
    pub desc: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    Index,
    Unique,
    Fulltext,
    Spatial,
}

#[derive(Clone, Debug, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub kind: IndexKind,
    pub parts: Vec<KeyPart>,
    pub comment: String,
    /// `USING BTREE|HASH` as the file writes it (the server shows it, but its catalog does
    /// not: read from `SHOW CREATE TABLE` when a desired index names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    /// Where the file declares it among the table's indexes (1-based; 0 when unknown, as on a
    /// live table): a new table's indexes are created in this order, as a fresh install does.
    /// Not part of the comparison.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub position: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Index {
    /// The method as compared. A UNIQUE `USING HASH` is a hash index until the table is next
    /// rebuilt, when MariaDB makes it a B-tree and stops showing the method: not compared.
    fn compared_method(&self) -> Option<&str> {
        match (self.kind, self.using.as_deref()) {
            (IndexKind::Unique, Some("HASH")) => None,
            (_, m) => m,
        }
    }
}

impl PartialEq for Index {
    fn eq(&self, other: &Index) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.parts == other.parts
            && self.comment == other.comment
            && self.compared_method() == other.compared_method()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefAction {
    /// Also what an unstated action means.
    Restrict,
    /// Checked like `RESTRICT` by InnoDB, but shown (and kept) as written.
    NoAction,
    Cascade,
    SetNull,
    SetDefault,
}

impl RefAction {
    pub fn parse(s: &str) -> Option<RefAction> {
        match s.to_ascii_uppercase().as_str() {
            "RESTRICT" => Some(RefAction::Restrict),
            "NO ACTION" => Some(RefAction::NoAction),
            "CASCADE" => Some(RefAction::Cascade),
            "SET NULL" => Some(RefAction::SetNull),
            "SET DEFAULT" => Some(RefAction::SetDefault),
            _ => None,
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            RefAction::Restrict => "RESTRICT",
            RefAction::NoAction => "NO ACTION",
            RefAction::Cascade => "CASCADE",
            RefAction::SetNull => "SET NULL",
            RefAction::SetDefault => "SET DEFAULT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_database: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub on_delete: RefAction,
    pub on_update: RefAction,
}

/// A column type in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnType {
    /// Lowercase base name: `bigint`, `varchar`, `decimal`, `enum`, `json` ...
    pub base: String,
    /// Arguments: lengths and precisions as digits, enum/set values as quoted SQL strings.
    pub args: Vec<String>,
    pub unsigned: bool,
    pub zerofill: bool,
}

const INT_TYPES: &[&str] = &["tinyint", "smallint", "mediumint", "int", "bigint"];
const TEXT_TYPES: &[&str] = &["tinytext", "text", "mediumtext", "longtext"];
const BLOB_TYPES: &[&str] = &["tinyblob", "blob", "mediumblob", "longblob"];

impl ColumnType {
    /// Parse a type as SQL text writes it or as `information_schema.COLUMNS.COLUMN_TYPE`
    /// shows it, into canonical form.
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let toks = type_tokens(text)?;
        let mut words = Vec::new();
        let mut args = Vec::new();
        let mut unsigned = false;
        let mut zerofill = false;
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                TypeTok::Word(w) => {
                    let lw = w.to_ascii_lowercase();
                    match lw.as_str() {
                        "unsigned" => unsigned = true,
                        "signed" => {}
                        "zerofill" => zerofill = true,
                        _ if args.is_empty() && !unsigned && !zerofill => words.push(lw),
                        _ => return Err(format!("unexpected {w:?} in type {text:?}")),
                    }
                }
                TypeTok::Args(a) => {
                    if !args.is_empty() {
                        return Err(format!("two argument lists in type {text:?}"));
                    }
                    args = a.clone();
                }
            }
            i += 1;
        }
        if words.is_empty() {
            return Err(format!("no type name in {text:?}"));
        }
        let mut base = words.join(" ");
        base = match base.as_str() {
            "integer" => "int".into(),
            "int1" => "tinyint".into(),
            "int2" => "smallint".into(),
            "int3" | "middleint" => "mediumint".into(),
            "int4" => "int".into(),
            "int8" => "bigint".into(),
            "bool" | "boolean" => {
                args = vec!["1".into()];
                "tinyint".into()
            }
            "double precision" | "real" | "float8" => "double".into(),
            "float4" => "float".into(),
            "dec" | "numeric" | "fixed" => "decimal".into(),
            "character" => "char".into(),
            "character varying" | "char varying" => "varchar".into(),
            "long" | "long varchar" => "mediumtext".into(),
            "long varbinary" => "mediumblob".into(),
            _ => base,
        };
        if zerofill {
            unsigned = true;
        }
        match base.as_str() {
            // MariaDB keeps display widths (`tinyint(1)` is how drivers mark a boolean) and
            // fills in the type's own when none is written; MySQL 8 shows them only for
            // `tinyint(1)` (`live::resolve_server_defaults` handles that server).
            b if INT_TYPES.contains(&b) && args.is_empty() => {
                args.push(default_int_width(b, unsigned).to_string());
            }
            "decimal" => match args.len() {
                0 => args = vec!["10".into(), "0".into()],
                1 => args.push("0".into()),
                _ => {}
            },
            "float" if args.len() == 1 => {
                let p: u32 = args[0]
                    .parse()
                    .map_err(|_| format!("bad float precision in {text:?}"))?;
                args.clear();
                if p > 24 {
                    base = "double".into();
                }
            }
            "char" | "binary" | "bit" if args.is_empty() => args.push("1".into()),
            "datetime" | "timestamp" | "time" if args.first().is_some_and(|a| a == "0") => {
                args.clear()
            }
            "year" => args.clear(),
            b if TEXT_TYPES.contains(&b) || BLOB_TYPES.contains(&b) => args.clear(),
            _ => {}
        }
        Ok(ColumnType {
            base,
            args,
            unsigned,
            zerofill,
        })
    }

    /// Character columns carry a charset and collation; others do not.
    pub fn is_textual(&self) -> bool {
        matches!(self.base.as_str(), "char" | "varchar" | "enum" | "set")
            || TEXT_TYPES.contains(&self.base.as_str())
    }

    pub fn is_integer(&self) -> bool {
        INT_TYPES.contains(&self.base.as_str())
    }

    pub fn is_numeric(&self) -> bool {
        self.is_integer() || matches!(self.base.as_str(), "decimal" | "float" | "double")
    }

    pub fn is_temporal(&self) -> bool {
        matches!(self.base.as_str(), "datetime" | "timestamp")
    }

    /// Whether every value of `self` fits `new` unchanged (a widening or no change).
    pub fn fits_in(&self, new: &ColumnType) -> bool {
        if self == new {
            return true;
        }
        let num = |i: usize, t: &ColumnType| t.args.get(i).and_then(|a| a.parse::<u64>().ok());
        let rank = |list: &[&str], b: &str| list.iter().position(|x| *x == b);
        let (a, b) = (self.base.as_str(), new.base.as_str());
        if self.zerofill != new.zerofill {
            return false;
        }
        if let (Some(ra), Some(rb)) = (rank(INT_TYPES, a), rank(INT_TYPES, b)) {
            return match (self.unsigned, new.unsigned) {
                (false, false) | (true, true) => rb >= ra,
                (true, false) => rb > ra,
                (false, true) => false,
            };
        }
        // (an unsigned decimal fits a signed one of the same size)
        if !self.unsigned && new.unsigned {
            return false;
        }
        let len_a = num(0, self).unwrap_or(0);
        let len_b = num(0, new).unwrap_or(0);
        match (a, b) {
            ("char", "char") | ("char", "varchar") | ("varchar", "varchar") => len_b >= len_a,
            ("binary", "binary") | ("binary", "varbinary") | ("varbinary", "varbinary") => {
                len_b >= len_a
            }
            ("char" | "varchar", t) if TEXT_TYPES.contains(&t) => {
                // character counts: tinytext holds 255 bytes, the rest at least 65535
                t != "tinytext" || len_a <= 63
            }
            (x, y) if TEXT_TYPES.contains(&x) && TEXT_TYPES.contains(&y) => {
                rank(TEXT_TYPES, y) >= rank(TEXT_TYPES, x)
            }
            (x, y) if BLOB_TYPES.contains(&x) && BLOB_TYPES.contains(&y) => {
                rank(BLOB_TYPES, y) >= rank(BLOB_TYPES, x)
            }
            ("decimal", "decimal") => {
                let (pa, sa) = (len_a, num(1, self).unwrap_or(0));
                let (pb, sb) = (len_b, num(1, new).unwrap_or(0));
                sb >= sa && pb - sb.min(pb) >= pa - sa.min(pa)
            }
            ("float", "double") => true,
            ("enum", "enum") | ("set", "set") => self.args.iter().all(|v| new.args.contains(v)),
            ("datetime", "datetime") | ("timestamp", "timestamp") | ("time", "time") => {
                len_b >= len_a
            }
            ("bit", "bit") => len_b >= len_a,
            _ => false,
        }
    }
}

/// The display width MariaDB gives an integer type written without one.
pub fn default_int_width(base: &str, unsigned: bool) -> u32 {
    match (base, unsigned) {
        ("tinyint", false) => 4,
        ("tinyint", true) => 3,
        ("smallint", false) => 6,
        ("smallint", true) => 5,
        ("mediumint", false) => 9,
        ("mediumint", true) => 8,
        ("int", false) => 11,
        ("int", true) => 10,
        _ => 20,
    }
}

/// A trigger's or event's body as compared: whitespace outside quotes collapsed to one space,
/// trimmed, without a trailing `;`. The server stores bodies as written, so nothing else is
/// rewritten.
pub fn canonical_body(text: &str) -> String {
    let chars: Vec<char> = text
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .chars()
        .collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '\\' && c != '`' {
                    i += 2;
                    continue;
                }
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
        } else if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args.join(","))?;
        }
        if self.unsigned && !self.zerofill {
            f.write_str(" unsigned")?;
        }
        if self.zerofill {
            f.write_str(" unsigned zerofill")?;
        }
        Ok(())
    }
}

enum TypeTok {
    Word(String),
    Args(Vec<String>),
}

fn type_tokens(text: &str) -> Result<Vec<TypeTok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            i += 1;
            let mut args = Vec::new();
            let mut cur = String::new();
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(format!("unclosed '(' in type {text:?}"));
                };
                match c {
                    ')' => {
                        i += 1;
                        break;
                    }
                    ',' => {
                        args.push(std::mem::take(&mut cur));
                        i += 1;
                    }
                    '\'' | '"' => {
                        let (s, next) = read_quoted(&chars, i)
                            .ok_or_else(|| format!("unclosed quote in type {text:?}"))?;
                        cur = quote_str(&s);
                        i = next;
                    }
                    c if c.is_whitespace() => i += 1,
                    c => {
                        cur.push(c);
                        i += 1;
                    }
                }
            }
            args.push(cur);
            if args.len() == 1 && args[0].is_empty() {
                args.clear();
            }
            out.push(TypeTok::Args(args));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(TypeTok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected {c:?} in type {text:?}"));
        }
    }
    Ok(out)
}

/// Read a quoted string starting at `chars[i]` (the quote), with `''` and backslash escapes.
/// Returns the unescaped value and the index after the closing quote.
pub fn read_quoted(chars: &[char], i: usize) -> Option<(String, usize)> {
    let q = chars[i];
    let mut s = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j];
        if c == '\\' && j + 1 < chars.len() {
            s.push(match chars[j + 1] {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'Z' => '\x1a',
                o => o,
            });
            j += 2;
        } else if c == q {
            if chars.get(j + 1) == Some(&q) {
                s.push(q);
                j += 2;
            } else {
                return Some((s, j + 1));
            }
        } else {
            s.push(c);
            j += 1;
        }
    }
    None
}

/// A string as a single-quoted SQL literal.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An identifier back-quoted.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Canonical text of an expression: identifiers back-quoted, keywords and function names
/// lowercase, string literals single-quoted, no spaces except between two words.
pub fn canonical_expr(text: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "not",
        "null",
        "is",
        "in",
        "like",
        "between",
        "case",
        "when",
        "then",
        "else",
        "end",
        "div",
        "mod",
        "xor",
        "true",
        "false",
        "interval",
        "collate",
        "binary",
        "as",
        "distinct",
        "regexp",
        "rlike",
        "escape",
        "char",
        "using",
        "separator",
        "day",
        "hour",
        "minute",
        "second",
        "month",
        "year",
        "week",
        "microsecond",
        "quarter",
    ];
    let chars: Vec<char> = text.chars().collect();
    let mut toks: Vec<(bool, String)> = Vec::new(); // (is_word, text)
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            match read_quoted(&chars, i) {
                Some((s, next)) => {
                    toks.push((false, quote_str(&s)));
                    i = next;
                }
                None => {
                    toks.push((false, chars[i..].iter().collect()));
                    break;
                }
            }
        } else if c == '`' {
            let mut j = i + 1;
            let mut name = String::new();
            while j < chars.len() {
                if chars[j] == '`' {
                    if chars.get(j + 1) == Some(&'`') {
                        name.push('`');
                        j += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[j]);
                j += 1;
            }
            i = j + 1;
            toks.push((true, quote_ident(&name)));
        } else if c.is_alphanumeric()
            || c == '_'
            || c == '$'
            || c == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '$'
                    || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next_paren = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
            let lw = word.to_ascii_lowercase();
            let is_number = word
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '.');
            let text = if is_number || next_paren || KEYWORDS.contains(&lw.as_str()) {
                lw
            } else if lw == "current_timestamp"
                || lw == "now"
                || lw == "localtime"
                || lw == "localtimestamp"
            {
                "current_timestamp()".into()
            } else {
                quote_ident(&word)
            };
            toks.push((true, text));
        } else {
            // operators: keep multi-char ones together
            let start = i;
            i += 1;
            while i < chars.len() && "<>=!|&".contains(chars[i]) && "<>=!|&".contains(c) {
                i += 1;
            }
            toks.push((false, chars[start..i].iter().collect()));
        }
    }
    let mut out = String::new();
    let mut prev_word = false;
    for (is_word, t) in toks {
        if is_word && prev_word {
            out.push(' ');
        }
        out.push_str(&t);
        prev_word = is_word;
    }
    canonical_now(&out)
}

/// `now()`, `localtimestamp(3)`, `current_timestamp` ... -> `current_timestamp()` /
/// `current_timestamp(3)`.
fn canonical_now(expr: &str) -> String {
    for name in ["now", "localtime", "localtimestamp", "current_timestamp"] {
        if let Some(rest) = expr.strip_prefix(name) {
            let rest = rest.strip_prefix("()").unwrap_or(rest);
            if rest.is_empty() || rest == "(0)" {
                return "current_timestamp()".into();
            }
            if rest.starts_with('(')
                && rest.ends_with(')')
                && rest[1..rest.len() - 1].chars().all(|c| c.is_ascii_digit())
            {
                return format!("current_timestamp{rest}");
            }
            if rest == "()()" {
                return "current_timestamp()".into();
            }
        }
    }
    expr.to_string()
}

/// The back-quoted identifiers of a canonical expression (the columns it names), once each,
/// strings skipped.
pub fn backquoted_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' => i = read_quoted(&chars, i).map_or(chars.len(), |(_, n)| n),
            '`' => {
                let (name, next) = read_quoted(&chars, i).unwrap_or_default();
                if !out.contains(&name) {
                    out.push(name);
                }
                i = next.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// Put a literal default in the canonical form the server shows for the column's type.
pub fn canonical_literal(ty: &ColumnType, value: &str) -> String {
    let v = value.trim();
    if ty.is_integer() {
        if let Ok(n) = v.parse::<i128>() {
            return n.to_string();
        }
        if let Ok(f) = v.parse::<f64>() {
            return format!("{}", f.round() as i128);
        }
        return value.to_string();
    }
    match ty.base.as_str() {
        "decimal" => {
            let scale: usize = ty.args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let (neg, digits) = match v.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, v.strip_prefix('+').unwrap_or(v)),
            };
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            if int.chars().all(|c| c.is_ascii_digit()) && frac.chars().all(|c| c.is_ascii_digit()) {
                // Round half away from zero to the scale, as the server stores it.
                let mut digits: Vec<u8> = int
                    .bytes()
                    .chain(frac.bytes().chain(std::iter::repeat(b'0')).take(scale))
                    .collect();
                if frac.as_bytes().get(scale).is_some_and(|d| *d >= b'5') {
                    let mut i = digits.len();
                    loop {
                        if i == 0 {
                            digits.insert(0, b'1');
                            break;
                        }
                        i -= 1;
                        if digits[i] == b'9' {
                            digits[i] = b'0';
                        } else {
                            digits[i] += 1;
                            break;
                        }
                    }
                }
                let split = digits.len() - scale;
                let int_part = String::from_utf8_lossy(&digits[..split])
                    .trim_start_matches('0')
                    .to_string();
                let int = if int_part.is_empty() {
                    "0".to_string()
                } else {
                    int_part
                };
                let frac = String::from_utf8_lossy(&digits[split..]).to_string();
                let sign = if neg && (int != "0" || frac.chars().any(|c| c != '0')) {
                    "-"
                } else {
                    ""
                };
                return if scale == 0 {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac}")
                };
            }
            value.to_string()
        }
        "float" | "double" => match v.parse::<f64>() {
            Ok(f) => format!("{f}"),
            Err(_) => value.to_string(),
        },
        "datetime" | "timestamp" => {
            let mut s = v.to_string();
            if s.len() == 10 {
                s.push_str(" 00:00:00");
            }
            let precision: usize = ty.args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
            if precision > 0 && s.len() == 19 {
                s.push('.');
                s.push_str(&"0".repeat(precision));
            }
            s
        }
        _ => value.to_string(),
    }
}

/// Charset of a collation name (`utf8mb4_unicode_ci` -> `utf8mb4`).
pub fn charset_of(collation: &str) -> String {
    if collation == "binary" {
        return "binary".into();
    }
    collation.split('_').next().unwrap_or(collation).to_string()
}

/// `utf8` is `utf8mb3` in MariaDB 10.6+ and MySQL 8; lowercase everything.
pub fn canonical_charset(name: &str) -> String {
    let l = name.to_ascii_lowercase();
    if l == "utf8" {
        "utf8mb3".into()
    } else if let Some(rest) = l.strip_prefix("utf8_") {
        format!("utf8mb3_{rest}")
    } else {
        l
    }
}

impl Schema {
    pub fn table(&self, db: &str, table: &str) -> Option<&Table> {
        self.databases.get(db).and_then(|d| d.tables.get(table))
    }

    /// Number of tables over all databases.
    pub fn table_count(&self) -> usize {
        self.databases.values().map(|d| d.tables.len()).sum()
    }

    /// Rename a database everywhere it is named (its entry and foreign keys pointing into it).
    pub fn rename_database(&mut self, from: &str, to: &str) {
        if let Some(mut db) = self.databases.remove(from) {
            db.name = to.to_string();
            self.databases.insert(to.to_string(), db);
        }
        for db in self.databases.values_mut() {
            for t in db.tables.values_mut() {
                for fk in t.foreign_keys.values_mut() {
                    if fk.ref_database == from {
                        fk.ref_database = to.to_string();
                    }
                }
            }
        }
    }
}

impl Column {
    /// The server's view of an unstated default: a nullable column defaults to NULL.
    pub fn canonicalize(&mut self) {
        if self.auto_increment {
            // the server makes an AUTO_INCREMENT column NOT NULL whatever the text says
            self.nullable = false;
        }
        if self.generated.is_some() || self.auto_increment {
            self.default = None;
        } else if self.nullable && self.default.is_none() {
            self.default = Some(DefaultValue::Null);
        }
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_sql_and_from_the_server_agree() {
        let same = [
            ("BIGINT", "bigint(20)"),
            ("INT UNSIGNED", "int(10) unsigned"),
            ("integer", "int(11)"),
            ("BOOLEAN", "tinyint(1)"),
            ("TINYINT", "tinyint(4)"),
            ("BOOL", "tinyint(1)"),
            ("SMALLINT UNSIGNED", "smallint(5) unsigned"),
            ("NUMERIC(5)", "decimal(5,0)"),
            ("DECIMAL", "decimal(10,0)"),
            ("ENUM('Open', 'Close')", "enum('Open','Close')"),
            ("VARCHAR(64)", "varchar(64)"),
            ("CHAR", "char(1)"),
            ("DATETIME(0)", "datetime"),
            ("DOUBLE PRECISION", "double"),
            ("FLOAT(30)", "double"),
            ("INT(5) ZEROFILL", "int(5) unsigned zerofill"),
            ("TEXT(100)", "text"),
        ];
        for (sql, live) in same {
            assert_eq!(
                ColumnType::parse(sql).unwrap(),
                ColumnType::parse(live).unwrap(),
                "{sql} vs {live}"
            );
        }
        assert_eq!(
            ColumnType::parse("enum('a''b','c')").unwrap().to_string(),
            "enum('a''b','c')"
        );
        assert_ne!(
            ColumnType::parse("tinyint(1)").unwrap(),
            ColumnType::parse("tinyint(4)").unwrap(),
            "a boolean's width is kept"
        );
        assert!(ColumnType::parse("tinyint(4)")
            .unwrap()
            .fits_in(&ColumnType::parse("tinyint(1)").unwrap()));
        assert!(ColumnType::parse("varchar(").is_err());
        assert!(ColumnType::parse("").is_err());
    }

    #[test]
    fn bodies_compare_without_layout() {
        assert_eq!(
            canonical_body("  SET NEW.a =\n\t1;  "),
            canonical_body("SET NEW.a = 1")
        );
        assert_ne!(
            canonical_body("SET NEW.b = 'a  b'"),
            canonical_body("SET NEW.b = 'a b'")
        );
        assert_eq!(canonical_body("SET x = 'it''s  ' ;"), "SET x = 'it''s  '");
    }

    #[test]
    fn widening_and_narrowing() {
        let t = |s: &str| ColumnType::parse(s).unwrap();
        assert!(t("varchar(32)").fits_in(&t("varchar(64)")));
        assert!(!t("varchar(64)").fits_in(&t("varchar(32)")));
        assert!(t("int").fits_in(&t("bigint")));
        assert!(!t("bigint").fits_in(&t("int")));
        assert!(!t("int").fits_in(&t("int unsigned")));
        assert!(t("int unsigned").fits_in(&t("bigint")));
        assert!(t("text").fits_in(&t("longtext")));
        assert!(!t("mediumtext").fits_in(&t("text")));
        assert!(t("enum('a','b')").fits_in(&t("enum('a','b','c')")));
        assert!(!t("enum('a','b')").fits_in(&t("enum('a')")));
        assert!(t("decimal(10,2)").fits_in(&t("decimal(12,2)")));
        assert!(!t("decimal(10,2)").fits_in(&t("decimal(10,1)")));
        assert!(!t("varchar(10)").fits_in(&t("int")));
        assert!(t("varchar(255)").fits_in(&t("text")));
    }

    #[test]
    fn expressions_and_literals() {
        assert_eq!(canonical_expr("CURRENT_TIMESTAMP"), "current_timestamp()");
        assert_eq!(canonical_expr("current_timestamp()"), "current_timestamp()");
        assert_eq!(canonical_expr("NOW(3)"), "current_timestamp(3)");
        assert_eq!(canonical_expr("a + 1"), canonical_expr("`a`+1"));
        assert_eq!(canonical_expr("concat(a, 'x y')"), "concat(`a`,'x y')");
        assert_eq!(canonical_expr("x IS NOT NULL"), "`x` is not null");
        let dec = ColumnType::parse("decimal(10,2)").unwrap();
        assert_eq!(canonical_literal(&dec, "1"), "1.00");
        assert_eq!(canonical_literal(&dec, "-0.5"), "-0.50");
        assert_eq!(canonical_literal(&dec, "9.995"), "10.00");
        let dec0 = ColumnType::parse("decimal(10,0)").unwrap();
        assert_eq!(canonical_literal(&dec0, "1.5"), "2");
        assert_eq!(canonical_literal(&dec0, "-1.4"), "-1");
        let int = ColumnType::parse("int").unwrap();
        assert_eq!(canonical_literal(&int, "007"), "7");
        let dt = ColumnType::parse("datetime(3)").unwrap();
        assert_eq!(
            canonical_literal(&dt, "2020-01-02"),
            "2020-01-02 00:00:00.000"
        );
    }
}
