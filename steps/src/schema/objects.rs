//! Views, triggers and events: what the schema file says about them ([`parse_view`],
//! [`parse_trigger`], [`parse_event`]), what the server holds ([`inspect`]), and the statements
//! between the two ([`diff`]).
//!
//! The server keeps trigger and event bodies as written, so they are compared as text
//! ([`canonical_body`]). A view's query is rewritten by the server (names qualified, columns
//! aliased, `*` expanded against the tables as they are when it is created), so a desired view
//! is compared through the server's own rendering of it: `live::resolve_views` creates it under
//! a probe name once the tables are settled, reads the rendering back, and drops the probe.
//! Until then its definition is unknown and the differ replaces it (`CREATE OR REPLACE VIEW`,
//! cheap: a view holds no data).

use super::diff::{qualified, Change};
use super::model::*;
use std::collections::{BTreeMap, BTreeSet};

/// Prefix of the probe views `live::resolve_views` makes; never part of a model.
pub const PROBE_PREFIX: &str = "_molt_probe_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    /// A bare word, uppercase.
    Word(String),
    /// A back-quoted identifier, unquoted.
    Ident(String),
    /// A quoted string, unescaped.
    Str(String),
    Punct(char),
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    /// Byte offsets in the statement.
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) fn tokenize(text: &str) -> Vec<Token> {
    tokenize_up_to(text, usize::MAX)
}

/// The first `max` tokens of `text` (the rest is not read).
fn tokenize_up_to(text: &str, max: usize) -> Vec<Token> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() && out.len() < max {
        let (start, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' || c == '`' {
            let plain: Vec<char> = chars.iter().map(|c| c.1).collect();
            let (value, next) = read_quoted(&plain, i)
                .unwrap_or_else(|| (plain[i + 1..].iter().collect(), plain.len()));
            let tok = if c == '`' {
                Tok::Ident(value)
            } else {
                Tok::Str(value)
            };
            out.push(Token {
                tok,
                start,
                end: at(next),
            });
            i = next;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let s = i;
            while i < chars.len()
                && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '$'))
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(text[start..at(i)].to_ascii_uppercase()),
                start: chars[s].0,
                end: at(i),
            });
        } else {
            i += 1;
            out.push(Token {
                tok: Tok::Punct(c),
                start,
                end: at(i),
            });
        }
    }
    out
}

/// A cursor over a statement's tokens.
pub(super) struct Cursor<'a> {
    pub(super) text: &'a str,
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            toks: tokenize(text),
            i: 0,
        }
    }

    pub(super) fn peek_word(&self) -> Option<&str> {
        match self.toks.get(self.i).map(|t| &t.tok) {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    pub(super) fn eat(&mut self, word: &str) -> bool {
        if self.peek_word() == Some(word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn eat_punct(&mut self, p: char) -> bool {
        if self.toks.get(self.i).map(|t| &t.tok) == Some(&Tok::Punct(p)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect(&mut self, word: &str) -> Result<(), String> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(format!("expected {word} {}", self.here()))
        }
    }

    pub(super) fn here(&self) -> String {
        match self.toks.get(self.i) {
            Some(t) => format!("at {:?}", excerpt(&self.text[t.start..])),
            None => "at the end of the statement".into(),
        }
    }

    /// A name part: a word or a back-quoted identifier, as written.
    pub(super) fn name_part(&mut self) -> Result<String, String> {
        let t = self.toks.get(self.i).cloned();
        match t {
            Some(Token {
                tok: Tok::Ident(n), ..
            }) => {
                self.i += 1;
                Ok(n)
            }
            Some(Token {
                tok: Tok::Word(_),
                start,
                end,
            }) => {
                self.i += 1;
                Ok(self.text[start..end].to_string())
            }
            _ => Err(format!("expected a name {}", self.here())),
        }
    }

    /// `name` or `db.name`.
    fn object_name(&mut self) -> Result<(Option<String>, String), String> {
        let first = self.name_part()?;
        if self.eat_punct('.') {
            Ok((Some(first), self.name_part()?))
        } else {
            Ok((None, first))
        }
    }

    /// `CREATE [OR REPLACE] [ALGORITHM = a] [DEFINER = d] [SQL SECURITY s] <object> [IF NOT
    /// EXISTS]`.
    fn header(&mut self, object: &str) -> Result<Header, String> {
        let mut algorithm = None;
        let mut security = None;
        self.expect("CREATE")?;
        let or_replace = self.eat("OR");
        if or_replace {
            self.expect("REPLACE")?;
        }
        loop {
            if self.eat("ALGORITHM") {
                self.eat_punct('=');
                algorithm = Some(self.peek_word().ok_or("ALGORITHM without a value")?.into());
                self.i += 1;
            } else if self.eat("DEFINER") {
                self.eat_punct('=');
                self.i += 1; // user, CURRENT_USER or 'user'
                if self.eat_punct('@') {
                    self.i += 1;
                } else if self.eat_punct('(') {
                    self.eat_punct(')');
                }
            } else if self.eat("SQL") {
                self.expect("SECURITY")?;
                security = Some(
                    self.peek_word()
                        .ok_or("SQL SECURITY without a value")?
                        .into(),
                );
                self.i += 1;
            } else {
                break;
            }
        }
        self.expect(object)?;
        let if_not_exists = self.eat("IF");
        if if_not_exists {
            self.expect("NOT")?;
            self.expect("EXISTS")?;
        }
        Ok(Header {
            algorithm,
            security,
            or_replace,
            if_not_exists,
        })
    }

    /// The text from the current token to the end, trimmed.
    pub(super) fn rest(&self) -> &'a str {
        match self.toks.get(self.i) {
            Some(t) => self.text[t.start..].trim(),
            None => "",
        }
    }
}

/// The kind of object a `CREATE`, `ALTER` or `DROP` statement is about (`TABLE`, `VIEW`,
/// `TRIGGER` ...), past `OR REPLACE`, `DEFINER = ...`, `ALGORITHM = ...`, `SQL SECURITY ...`,
/// `TEMPORARY`, `UNIQUE` and the like.
pub fn object_kind(text: &str) -> Option<String> {
    const KINDS: &[&str] = &[
        "TABLE",
        "VIEW",
        "TRIGGER",
        "EVENT",
        "PROCEDURE",
        "FUNCTION",
        "INDEX",
        "DATABASE",
        "SCHEMA",
        "USER",
        "ROLE",
        "SEQUENCE",
        "SERVER",
        "TABLESPACE",
        "PACKAGE",
    ];
    tokenize_up_to(text, 17)
        .into_iter()
        .skip(1)
        .find_map(|t| match t.tok {
            Tok::Word(w) if KINDS.contains(&w.as_str()) => Some(w),
            _ => None,
        })
}

fn excerpt(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one.chars().take(40).collect()
}

/// A name as written: the database when given, and the name.
pub type QualifiedName = (Option<String>, String);

/// `DROP VIEW|TRIGGER|EVENT [IF EXISTS] name [, name ...]`: whether `IF EXISTS` was given, and
/// the names.
pub fn parse_drop(text: &str, kind: &str) -> Result<(bool, Vec<QualifiedName>), String> {
    let mut c = Cursor::new(text);
    c.expect("DROP")?;
    c.expect(kind)?;
    let if_exists = c.eat("IF");
    if if_exists {
        c.expect("EXISTS")?;
    }
    let mut names = vec![c.object_name()?];
    while c.eat_punct(',') {
        names.push(c.object_name()?);
    }
    c.eat("RESTRICT");
    c.eat("CASCADE");
    c.eat_punct(';');
    if c.i < c.toks.len() {
        return Err(format!("unexpected text {}", c.here()));
    }
    Ok((if_exists, names))
}

/// What the header of a `CREATE` says, past the object's kind.
struct Header {
    algorithm: Option<String>,
    security: Option<String>,
    or_replace: bool,
    if_not_exists: bool,
}

/// A `CREATE VIEW` of a schema file.
#[derive(Debug)]
pub struct ViewDef {
    pub database: Option<String>,
    pub view: View,
    /// `OR REPLACE` and `IF NOT EXISTS`, as written.
    pub or_replace: bool,
    pub if_not_exists: bool,
    /// The SELECT, and the number of lines before it in the statement (for error lines).
    pub query: String,
    pub query_line: usize,
}

pub fn parse_view(text: &str, line: usize) -> Result<ViewDef, String> {
    let mut c = Cursor::new(text);
    let header = c.header("VIEW")?;
    let (database, name) = c.object_name()?;
    let source = c.rest().trim_end_matches(';').trim_end().to_string();
    if c.eat_punct('(') {
        let mut depth = 1;
        while depth > 0 {
            match c.toks.get(c.i).map(|t| &t.tok) {
                Some(Tok::Punct('(')) => depth += 1,
                Some(Tok::Punct(')')) => depth -= 1,
                None => return Err("unclosed column list".into()),
                _ => {}
            }
            c.i += 1;
        }
    }
    c.expect("AS")?;
    let query_start = c.toks.get(c.i).map_or(text.len(), |t| t.start);
    // WITH [CASCADED | LOCAL] CHECK OPTION at the end
    let words: Vec<&Tok> = c.toks[c.i..].iter().map(|t| &t.tok).collect();
    let w = |s: &str| Tok::Word(s.into());
    let mut check_option = "NONE".to_string();
    let mut query_end = text.len();
    let n = words.len();
    if n >= 3 && *words[n - 1] == w("OPTION") && *words[n - 2] == w("CHECK") {
        let (with_at, kind) = match words.get(n.wrapping_sub(3)) {
            Some(Tok::Word(k)) if k == "CASCADED" || k == "LOCAL" => (n - 4, k.clone()),
            _ => (n - 3, "CASCADED".to_string()),
        };
        if words.get(with_at) == Some(&&w("WITH")) {
            check_option = kind;
            query_end = c.toks[c.i + with_at].start;
        }
    }
    let query = text[query_start..query_end]
        .trim()
        .trim_end_matches(';')
        .to_string();
    if query.is_empty() {
        return Err(format!("view {name} has no query"));
    }
    Ok(ViewDef {
        database,
        or_replace: header.or_replace,
        if_not_exists: header.if_not_exists,
        query_line: text[..query_start].matches('\n').count(),
        query,
        view: View {
            name,
            source,
            definition: None,
            check_option,
            security: header.security.unwrap_or_else(|| "DEFINER".into()),
            algorithm: header.algorithm.unwrap_or_else(|| "UNDEFINED".into()),
            line,
        },
    })
}

/// A `CREATE TRIGGER` of a schema file.
#[derive(Debug)]
pub struct TriggerDef {
    pub database: Option<String>,
    /// The database its `ON` names, if it names one.
    pub table_database: Option<String>,
    pub trigger: Trigger,
    /// `FOLLOWS other` (false) or `PRECEDES other` (true).
    pub anchor: Option<(bool, String)>,
}

pub fn parse_trigger(text: &str) -> Result<TriggerDef, String> {
    let mut c = Cursor::new(text);
    c.header("TRIGGER")?;
    let (database, name) = c.object_name()?;
    let timing = match c.peek_word() {
        Some(t @ ("BEFORE" | "AFTER")) => t.to_string(),
        _ => return Err(format!("expected BEFORE or AFTER {}", c.here())),
    };
    c.i += 1;
    let event = match c.peek_word() {
        Some(e @ ("INSERT" | "UPDATE" | "DELETE")) => e.to_string(),
        _ => return Err(format!("expected INSERT, UPDATE or DELETE {}", c.here())),
    };
    c.i += 1;
    c.expect("ON")?;
    let (table_database, table) = c.object_name()?;
    c.expect("FOR")?;
    c.expect("EACH")?;
    c.expect("ROW")?;
    let anchor = if c.eat("FOLLOWS") {
        Some((false, c.name_part()?))
    } else if c.eat("PRECEDES") {
        Some((true, c.name_part()?))
    } else {
        None
    };
    let body = c.rest().to_string();
    if body.is_empty() {
        return Err(format!("trigger {name} has no body"));
    }
    Ok(TriggerDef {
        database,
        table_database,
        anchor,
        trigger: Trigger {
            name,
            table,
            timing,
            event,
            order: 0,
            body,
        },
    })
}

/// A `CREATE EVENT` of a schema file.
#[derive(Debug)]
pub struct EventDef {
    pub database: Option<String>,
    pub event: Event,
}

/// A time as the server shows it, when `toks` is one string literal.
fn literal_time(toks: &[Token]) -> Option<String> {
    match toks {
        [Token {
            tok: Tok::Str(s), ..
        }] => {
            let s = s.trim();
            Some(if s.len() == 10 {
                format!("{s} 00:00:00")
            } else {
                s.to_string()
            })
        }
        _ => None,
    }
}

pub fn parse_event(text: &str) -> Result<EventDef, String> {
    let mut c = Cursor::new(text);
    c.header("EVENT")?;
    let (database, name) = c.object_name()?;
    c.expect("ON")?;
    c.expect("SCHEDULE")?;
    // The schedule runs to the first clause keyword.
    let sched_from = c.i;
    let clause = |c: &Cursor, j: usize| match c.toks.get(j).map(|t| &t.tok) {
        Some(Tok::Word(w)) => {
            matches!(w.as_str(), "ENABLE" | "DISABLE" | "COMMENT" | "DO")
                || (w == "ON"
                    && c.toks.get(j + 1).map(|t| &t.tok) == Some(&Tok::Word("COMPLETION".into())))
        }
        _ => false,
    };
    let mut j = sched_from;
    while j < c.toks.len() && !clause(&c, j) {
        j += 1;
    }
    let sched = &c.toks[sched_from..j];
    let schedule_end = c.toks.get(j).map_or(text.len(), |t| t.start);
    let schedule_sql = text[c.toks.get(sched_from).map_or(text.len(), |t| t.start)..schedule_end]
        .trim()
        .to_string();
    let word = |t: &Token, w: &str| t.tok == Tok::Word(w.into());
    let schedule = match sched.first() {
        Some(t) if word(t, "AT") => Schedule::At(literal_time(&sched[1..])),
        Some(t) if word(t, "EVERY") => {
            let stop = |w: &str| sched.iter().position(|t| word(t, w));
            let starts_at = stop("STARTS");
            let ends_at = stop("ENDS");
            let interval_end = starts_at.or(ends_at).unwrap_or(sched.len());
            let interval = &sched[1..interval_end];
            let Some((field, value)) = interval.split_last() else {
                return Err(format!("event {name}: EVERY without an interval"));
            };
            let Tok::Word(field) = &field.tok else {
                return Err(format!("event {name}: EVERY needs a unit (HOUR, DAY ...)"));
            };
            let value = match value {
                [Token {
                    tok: Tok::Str(s), ..
                }] => s.clone(),
                [one] => text[one.start..one.end].to_string(),
                _ if !value.is_empty() => {
                    text[value[0].start..value[value.len() - 1].end].to_string()
                }
                _ => return Err(format!("event {name}: EVERY without a value")),
            };
            let part = |from: Option<usize>| {
                from.and_then(|f| {
                    let end = [starts_at, ends_at]
                        .into_iter()
                        .flatten()
                        .filter(|&e| e > f)
                        .min()
                        .unwrap_or(sched.len());
                    literal_time(&sched[f + 1..end])
                })
            };
            Schedule::Every {
                value,
                field: field.clone(),
                starts: part(starts_at),
                ends: part(ends_at),
            }
        }
        _ => return Err(format!("event {name}: ON SCHEDULE needs AT or EVERY")),
    };
    c.i = j;
    let mut preserve = false;
    let mut status = "ENABLED".to_string();
    let mut comment = String::new();
    loop {
        if c.eat("ON") {
            c.expect("COMPLETION")?;
            preserve = !c.eat("NOT");
            c.expect("PRESERVE")?;
        } else if c.eat("ENABLE") {
            status = "ENABLED".into();
        } else if c.eat("DISABLE") {
            status = "DISABLED".into();
            if c.eat("ON") {
                c.expect("SLAVE")?;
                status = "SLAVESIDE_DISABLED".into();
            }
        } else if c.eat("COMMENT") {
            match c.toks.get(c.i).map(|t| &t.tok) {
                Some(Tok::Str(s)) => comment = s.clone(),
                _ => return Err(format!("event {name}: COMMENT needs a string")),
            }
            c.i += 1;
        } else {
            break;
        }
    }
    c.expect("DO")?;
    let body = c.rest().to_string();
    if body.is_empty() {
        return Err(format!("event {name} has no body"));
    }
    Ok(EventDef {
        database,
        event: Event {
            name,
            schedule,
            schedule_sql,
            preserve,
            status,
            comment,
            body,
        },
    })
}

/// Put a trigger in its table's order: after `FOLLOWS x`, before `PRECEDES x`, else last.
pub fn place_trigger(db: &mut Database, def: TriggerDef) -> Result<(), String> {
    let t = &def.trigger;
    let mut group: Vec<Trigger> = db
        .triggers
        .values()
        .filter(|o| o.table == t.table && o.timing == t.timing && o.event == t.event)
        .cloned()
        .collect();
    group.sort_by_key(|o| o.order);
    let at = match &def.anchor {
        None => group.len(),
        Some((precedes, other)) => {
            let Some(p) = group.iter().position(|o| o.name == *other) else {
                return Err(format!(
                    "trigger {} {} {other}, which is not an earlier {} {} trigger on {}",
                    t.name,
                    if *precedes { "PRECEDES" } else { "FOLLOWS" },
                    t.timing,
                    t.event,
                    t.table
                ));
            };
            if *precedes {
                p
            } else {
                p + 1
            }
        }
    };
    group.insert(at, def.trigger);
    for (i, mut o) in group.into_iter().enumerate() {
        o.order = i as u32 + 1;
        db.triggers.insert(o.name.clone(), o);
    }
    Ok(())
}

/// Inspect the views, triggers and events of one database into `db`.
pub async fn inspect(
    conn: &mut mysql_async::Conn,
    name: &str,
    db: &mut Database,
) -> Result<(), mysql_async::Error> {
    use mysql_async::prelude::*;
    let rows: Vec<(String, String, String, String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE, ALGORITHM \
             FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
            (name,),
        )
        .await?;
    for (vname, def, check, security, algorithm) in rows {
        if vname.starts_with(PROBE_PREFIX) {
            continue;
        }
        let mut source = format!("AS {def}");
        if check != "NONE" {
            source.push_str(&format!(" WITH {check} CHECK OPTION"));
        }
        db.views.insert(
            vname.clone(),
            View {
                name: vname,
                source,
                definition: Some(canonical_expr(&def)),
                check_option: check,
                security,
                algorithm,
                line: 0,
            },
        );
    }
    let rows: Vec<(String, String, String, String, u32, String)> = conn
        .exec(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, \
             CAST(ACTION_ORDER AS UNSIGNED), ACTION_STATEMENT FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = ?",
            (name,),
        )
        .await?;
    for (tname, table, timing, event, order, body) in rows {
        db.triggers.insert(
            tname.clone(),
            Trigger {
                name: tname,
                table,
                timing,
                event,
                order,
                body,
            },
        );
    }
    let fmt = |c: &str| format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s')");
    type EventRow = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<EventRow> = conn
        .exec(
            format!(
                "SELECT EVENT_NAME, EVENT_TYPE, {}, INTERVAL_VALUE, INTERVAL_FIELD, {}, {}, \
                 ON_COMPLETION, STATUS, EVENT_COMMENT, EVENT_DEFINITION \
                 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
                fmt("EXECUTE_AT"),
                fmt("STARTS"),
                fmt("ENDS")
            ),
            (name,),
        )
        .await?;
    for (ename, kind, at, value, field, starts, ends, completion, status, comment, body) in rows {
        let (schedule, schedule_sql) = if kind == "ONE TIME" {
            let at = at.unwrap_or_default();
            (
                Schedule::At(Some(at.clone())),
                format!("AT {}", quote_str(&at)),
            )
        } else {
            // composite intervals are shown quoted: '1:30'
            let value = value.unwrap_or_default();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map_or(value.clone(), str::to_string);
            let field = field.unwrap_or_default();
            let mut sql = if value.chars().all(|c| c.is_ascii_digit()) && !value.is_empty() {
                format!("EVERY {value} {field}")
            } else {
                format!("EVERY {} {field}", quote_str(&value))
            };
            if let Some(s) = &starts {
                sql.push_str(&format!(" STARTS {}", quote_str(s)));
            }
            if let Some(e) = &ends {
                sql.push_str(&format!(" ENDS {}", quote_str(e)));
            }
            (
                Schedule::Every {
                    value,
                    field,
                    starts,
                    ends,
                },
                sql,
            )
        };
        db.events.insert(
            ename.clone(),
            Event {
                name: ename,
                schedule,
                schedule_sql,
                preserve: completion == "PRESERVE",
                status,
                comment,
                body,
            },
        );
    }
    Ok(())
}

/// `CREATE OR REPLACE VIEW` for `view` under `name` in `db`.
pub fn create_view_sql(db: &str, name: &str, view: &View) -> String {
    format!(
        "CREATE OR REPLACE ALGORITHM={} SQL SECURITY {} VIEW {} {}",
        view.algorithm,
        view.security,
        qualified(db, name),
        view.source
    )
}

fn create_trigger_sql(db: &str, t: &Trigger) -> String {
    format!(
        "CREATE TRIGGER {} {} {} ON {} FOR EACH ROW {}",
        qualified(db, &t.name),
        t.timing,
        t.event,
        qualified(db, &t.table),
        t.body
    )
}

fn create_event_sql(db: &str, e: &Event) -> String {
    let mut s = format!(
        "CREATE EVENT {} ON SCHEDULE {} ON COMPLETION {}PRESERVE {}",
        qualified(db, &e.name),
        e.schedule_sql,
        if e.preserve { "" } else { "NOT " },
        match e.status.as_str() {
            "DISABLED" => "DISABLE",
            "SLAVESIDE_DISABLED" => "DISABLE ON SLAVE",
            _ => "ENABLE",
        }
    );
    if !e.comment.is_empty() {
        s.push_str(&format!(" COMMENT {}", quote_str(&e.comment)));
    }
    s.push_str(&format!(" DO {}", e.body));
    s
}

fn object_change(sql: String, db: &str, kind: &str) -> Change {
    Change {
        object: Some(kind.to_string()),
        ..super::diff::change(sql, db, None)
    }
}

fn view_matches(have: &View, want: &View) -> bool {
    want.definition.is_some()
        && have.definition == want.definition
        && have.check_option == want.check_option
        && have.security == want.security
        && have.algorithm == want.algorithm
}

fn trigger_matches(have: &Trigger, want: &Trigger) -> bool {
    have.table == want.table
        && have.timing == want.timing
        && have.event == want.event
        && have.order == want.order
        && canonical_body(&have.body) == canonical_body(&want.body)
}

fn event_matches(have: &Event, want: &Event) -> bool {
    want.schedule.satisfied_by(&have.schedule)
        && have.preserve == want.preserve
        && have.status == want.status
        && have.comment == want.comment
        && canonical_body(&have.body) == canonical_body(&want.body)
}

/// Whether `source` names `other` as a word outside strings (a view reading another).
pub fn mentions(source: &str, other: &str) -> bool {
    tokenize(source).iter().any(|t| match &t.tok {
        Tok::Ident(n) => n.eq_ignore_ascii_case(other),
        Tok::Word(w) => w.eq_ignore_ascii_case(other),
        _ => false,
    })
}

/// The desired views of a database in creation order: a view after the views it reads.
pub fn view_order(db: &Database) -> Vec<&View> {
    let names: Vec<&String> = db.views.keys().collect();
    let deps: BTreeMap<&String, BTreeSet<&String>> = db
        .views
        .iter()
        .map(|(n, v)| {
            let d = names
                .iter()
                .copied()
                .filter(|o| *o != n && mentions(&v.source, o))
                .collect();
            (n, d)
        })
        .collect();
    let mut done: BTreeSet<&String> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < names.len() {
        let next = names
            .iter()
            .copied()
            .find(|n| !done.contains(n) && deps[n].iter().all(|d| done.contains(d)))
            // a cycle (the server refuses it anyway): by name
            .or_else(|| names.iter().copied().find(|n| !done.contains(n)))
            .expect("a view remains");
        done.insert(next);
        out.push(&db.views[next]);
    }
    out
}

/// Statements for views, triggers and events: `(first, last)`. `first` drops what goes or
/// changes (before the tables change); `last` creates what is new or changed (after them).
/// Only databases `desired` names are looked at.
pub fn diff(live: &Schema, desired: &Schema) -> (Vec<Change>, Vec<Change>) {
    let mut first = Vec::new();
    let mut last = Vec::new();
    let empty = Database::default();
    for (dbname, want) in &desired.databases {
        let have = live.databases.get(dbname).unwrap_or(&empty);

        // triggers, by (table, timing, event) group: a group that differs is made anew in order
        type Group = (String, String, String);
        let group_of = |t: &Trigger| (t.table.clone(), t.timing.clone(), t.event.clone());
        let mut groups: BTreeMap<Group, (Vec<&Trigger>, Vec<&Trigger>)> = BTreeMap::new();
        for t in have.triggers.values() {
            groups.entry(group_of(t)).or_default().0.push(t);
        }
        for t in want.triggers.values() {
            groups.entry(group_of(t)).or_default().1.push(t);
        }
        for (h, w) in groups.values_mut() {
            h.sort_by_key(|t| t.order);
            w.sort_by_key(|t| t.order);
            let same = h.len() == w.len()
                && h.iter()
                    .zip(w.iter())
                    .all(|(a, b)| a.name == b.name && trigger_matches(a, b));
            if same {
                continue;
            }
            for t in h.iter() {
                first.push(object_change(
                    format!("DROP TRIGGER IF EXISTS {}", qualified(dbname, &t.name)),
                    dbname,
                    "trigger",
                ));
            }
            for t in w.iter() {
                last.push(object_change(
                    create_trigger_sql(dbname, t),
                    dbname,
                    "trigger",
                ));
            }
        }
        // a trigger moved to another group is dropped by its old group, created by its new one

        for (name, e) in &have.events {
            let keep = want.events.get(name).is_some_and(|w| event_matches(e, w));
            if !keep {
                first.push(object_change(
                    format!("DROP EVENT IF EXISTS {}", qualified(dbname, name)),
                    dbname,
                    "event",
                ));
            }
        }
        for (name, e) in &want.events {
            if !have.events.get(name).is_some_and(|h| event_matches(h, e)) {
                last.push(object_change(create_event_sql(dbname, e), dbname, "event"));
            }
        }

        for name in have.views.keys() {
            if !want.views.contains_key(name) {
                first.push(object_change(
                    format!("DROP VIEW IF EXISTS {}", qualified(dbname, name)),
                    dbname,
                    "view",
                ));
            }
        }
        // A view that changes makes the views reading it change too (`*` is expanded when a
        // view is created).
        let order = view_order(want);
        let mut replaced: BTreeSet<&str> = BTreeSet::new();
        for v in order {
            let stale = !have.views.get(&v.name).is_some_and(|h| view_matches(h, v))
                || replaced.iter().any(|r| mentions(&v.source, r));
            if stale {
                replaced.insert(&v.name);
                last.push(object_change(
                    create_view_sql(dbname, &v.name, v),
                    dbname,
                    "view",
                ));
            }
        }
    }
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse() {
        let v = parse_view(
            "CREATE OR REPLACE ALGORITHM=MERGE DEFINER=`root`@`localhost` SQL SECURITY INVOKER VIEW `db`.`v` (a, b) AS\n  SELECT x, y FROM t WHERE x > 1 WITH LOCAL CHECK OPTION",
            3,
        )
        .unwrap();
        assert_eq!(v.database.as_deref(), Some("db"));
        assert_eq!(v.view.name, "v");
        assert_eq!(v.view.algorithm, "MERGE");
        assert_eq!(v.view.security, "INVOKER");
        assert_eq!(v.view.check_option, "LOCAL");
        assert_eq!(v.query, "SELECT x, y FROM t WHERE x > 1");
        assert_eq!(v.query_line, 1);
        assert!(v.view.source.starts_with("(a, b) AS"));

        let t = parse_trigger(
            "CREATE DEFINER=CURRENT_USER TRIGGER trg BEFORE UPDATE ON db.t FOR EACH ROW FOLLOWS other SET NEW.a = 1",
        )
        .unwrap();
        assert_eq!(
            (t.trigger.timing.as_str(), t.trigger.event.as_str()),
            ("BEFORE", "UPDATE")
        );
        assert_eq!(t.table_database.as_deref(), Some("db"));
        assert_eq!(t.anchor, Some((false, "other".into())));
        assert_eq!(t.trigger.body, "SET NEW.a = 1");

        let e = parse_event(
            "CREATE EVENT IF NOT EXISTS e ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2030-01-01' ON COMPLETION PRESERVE DISABLE COMMENT 'it''s' DO DELETE FROM t",
        )
        .unwrap()
        .event;
        assert_eq!(
            e.schedule,
            Schedule::Every {
                value: "1:30".into(),
                field: "HOUR_MINUTE".into(),
                starts: Some("2030-01-01 00:00:00".into()),
                ends: None
            }
        );
        assert!(e.preserve);
        assert_eq!(e.status, "DISABLED");
        assert_eq!(e.comment, "it's");
        assert_eq!(e.body, "DELETE FROM t");
        let at = parse_event(
            "CREATE EVENT e ON SCHEDULE AT CURRENT_TIMESTAMP + INTERVAL 1 HOUR DO SELECT 1",
        )
        .unwrap()
        .event;
        assert_eq!(at.schedule, Schedule::At(None));
        assert_eq!(at.schedule_sql, "AT CURRENT_TIMESTAMP + INTERVAL 1 HOUR");

        assert!(
            parse_trigger("CREATE TRIGGER t DURING INSERT ON x FOR EACH ROW SET @a=1").is_err()
        );
        assert!(parse_event("CREATE EVENT e ON SCHEDULE SOMETIMES DO SELECT 1").is_err());
        assert!(parse_view("CREATE VIEW v AS", 1).is_err());
    }
}
