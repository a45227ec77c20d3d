//! A real MariaDB for the schema tests: the URL `scripts/test.sh` made for this run, scratch
//! databases with unique names, and running a SQL file verbatim the way `mysql < file` would.

use mysql_async::prelude::*;
use mysql_async::Conn;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use steps::schema::sql::{split, LoadOptions};

/// The test server's URL (no database in it). Fails loudly when there is none: the schema
/// tests never pass by skipping.
pub fn database_url() -> String {
    if let Ok(url) = std::env::var("MOLT_TEST_DATABASE_URL") {
        return url;
    }
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/molt-test-database.url");
    match std::fs::read_to_string(&file) {
        Ok(url) => url.trim().to_string(),
        Err(_) => panic!(
            "no test database: set MOLT_TEST_DATABASE_URL or run `bash scripts/test.sh`, which installs and starts MariaDB \
             and writes {}",
            file.display()
        ),
    }
}

/// A connection with molt's session settings (foreign key checks on), as a migration has.
pub async fn connect_for_migration() -> Conn {
    steps::schema::live::connect(&database_url())
        .await
        .expect("connect to the test MariaDB")
}

pub async fn connect() -> Conn {
    let url = database_url();
    let mut conn = Conn::new(mysql_async::Opts::from_url(&url).expect("test URL parses"))
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to the test MariaDB ({e}); is it running? `bash scripts/test.sh` starts it")
        });
    if !CLEANED.swap(true, Ordering::SeqCst) {
        drop_stale(&mut conn).await;
    }
    conn
}

static CLEANED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Drop scratch databases left by test processes that are gone (a failed or killed run).
async fn drop_stale(conn: &mut Conn) {
    let names: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'molt\\_t%'")
        .await
        .unwrap();
    for name in names {
        let pid = name
            .trim_start_matches("molt_t")
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await
                .unwrap();
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh database name unique to this process: `molt_t<pid>_<n>_<tag>`.
pub fn scratch_name(tag: &str) -> String {
    format!(
        "molt_t{}_{}_{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn drop_databases(conn: &mut Conn, names: &[String]) {
    for n in names {
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{n}`"))
            .await
            .unwrap();
    }
}

/// Run a schema file statement by statement, as the `mysql` client would, with database names
/// replaced; statements that are not schema (GRANT, SET ...) are left out, as the loader
/// reports them.
pub async fn run_file(conn: &mut Conn, text: &str, rename: &BTreeMap<String, String>) {
    if let Err(e) = try_run_file(conn, text, rename).await {
        panic!("{e}");
    }
}

/// [`run_file`], returning what failed (with the whole file) instead of panicking.
pub async fn try_run_file(
    conn: &mut Conn,
    text: &str,
    rename: &BTreeMap<String, String>,
) -> Result<(), String> {
    let opts = LoadOptions {
        rename: rename.clone(),
        ..Default::default()
    };
    let loaded = steps::schema::sql::load(text, &opts)
        .map_err(|e| format!("molt cannot load the file: {e}\n{text}"))?;
    let skipped: Vec<usize> = loaded
        .skipped
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "GRANT" | "REVOKE" | "FLUSH"))
        .map(|s| s.line)
        .collect();
    for st in split(text).unwrap() {
        if skipped.contains(&st.line) {
            continue;
        }
        let mut sql = st.text.clone();
        let upper = sql.to_ascii_uppercase();
        if upper.starts_with("CREATE DATABASE") || upper.starts_with("USE") {
            for (from, to) in rename {
                sql = sql.replace(from.as_str(), to);
            }
        }
        if let Err(e) = conn.query_drop(&sql).await {
            return Err(format!("line {}: {e}: {sql}\nin:\n{text}", st.line));
        }
    }
    Ok(())
}

/// `SHOW CREATE TABLE` of every table of a database, normalised: the AUTO_INCREMENT counter is
/// dropped and the key and constraint lines are sorted (their order is creation order).
pub async fn show_create_all(conn: &mut Conn, db: &str) -> BTreeMap<String, String> {
    let tables: Vec<String> = conn
        .exec("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", (db,))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let row: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE `{db}`.`{t}`"))
            .await
            .unwrap();
        let text = row.unwrap().1;
        let mut cols = Vec::new();
        let mut keys = Vec::new();
        let mut tail = String::new();
        for line in text.lines().skip(1) {
            let l = line.trim().trim_end_matches(',').to_string();
            if l.starts_with(')') {
                tail = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with("AUTO_INCREMENT="))
                    .collect::<Vec<_>>()
                    .join(" ");
            } else if l.starts_with('`') {
                cols.push(l);
            } else {
                keys.push(l);
            }
        }
        keys.sort();
        out.insert(
            t,
            format!("{}\n{}\n{tail}", cols.join("\n"), keys.join("\n")),
        );
    }
    out
}

/// `mariadb-dump --no-data ARGS...` of the test server (from Debian's mariadb-client): the
/// schema as an operator would dump it. Panics with its stderr when it fails.
pub fn dump_schema(args: &[&str]) -> String {
    let opts = mysql_async::Opts::from_url(&database_url()).expect("test URL parses");
    let port = opts.tcp_port().to_string();
    let out = std::process::Command::new("mariadb-dump")
        .args(["--no-data", "-h", opts.ip_or_hostname(), "-P", &port])
        .args(["-u", opts.user().unwrap_or("root")])
        .args(args)
        .env("MYSQL_PWD", opts.pass().unwrap_or(""))
        .output()
        .expect("mariadb-dump (Debian's mariadb-client) runs");
    assert!(
        out.status.success(),
        "mariadb-dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the dump is UTF-8")
}

/// `SHOW CREATE` of every view, trigger and event of a database, normalised so that a migrated
/// database and a fresh one compare: the definer and the database's own name are left out; a
/// trigger's statement (as written by whoever created it) is parsed into its parts with its
/// body's layout collapsed; views and events are shown by the server in one form whoever wrote
/// them.
pub async fn show_create_objects(conn: &mut Conn, db: &str) -> BTreeMap<String, String> {
    use steps::schema::model::canonical_body;
    let strip = |text: &str| -> String {
        let mut t = text.replace(&format!("`{db}`."), "");
        if let Some(at) = t.find("DEFINER=") {
            let end = t[at..].find(' ').map_or(t.len(), |e| at + e);
            t.replace_range(at..=end.min(t.len() - 1), "");
        }
        t
    };
    let mut out = BTreeMap::new();
    let views: Vec<String> = conn
        .exec("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", (db,))
        .await
        .unwrap();
    for v in views {
        let text = show_create(conn, "VIEW", db, &v, 1).await;
        out.insert(format!("view {v}"), strip(&text));
    }
    let triggers: Vec<(String, u64)> = conn
        .exec("SELECT TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME", (db,))
        .await
        .unwrap();
    for (t, order) in triggers {
        let statement = show_create(conn, "TRIGGER", db, &t, 2).await;
        let tr = steps::schema::objects::parse_trigger(&statement)
            .unwrap()
            .trigger;
        out.insert(
            format!("trigger {t}"),
            format!(
                "{} {} ON {} order {order}: {}",
                tr.timing,
                tr.event,
                tr.table,
                canonical_body(&tr.body)
            ),
        );
    }
    let events: Vec<String> = conn
        .exec("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME", (db,))
        .await
        .unwrap();
    for e in events {
        let text = show_create(conn, "EVENT", db, &e, 3).await;
        out.insert(format!("event {e}"), strip(&text));
    }
    out
}

/// Column `column` of `SHOW CREATE <what> db.name` (where each kind puts its statement).
async fn show_create(conn: &mut Conn, what: &str, db: &str, name: &str, column: usize) -> String {
    let row: Option<mysql_async::Row> = conn
        .query_first(format!("SHOW CREATE {what} `{db}`.`{name}`"))
        .await
        .unwrap();
    row.unwrap().get(column).unwrap()
}
