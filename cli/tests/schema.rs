//! `molt schema diff|plan|apply` against a real MariaDB: crashes after each statement, then
//! resume; destructive changes refused; unparsable SQL refused; nothing applied on refusal.

mod common;

use common::{aborted, text, MOLT};
use mysql_async::prelude::Queryable;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use steps::schema::live;
use steps::schema::Schema;
use tests::db::{connect, database_url, drop_databases, run_file, scratch_name, show_create_all};

/// Schema A: the release before.
fn schema_a(db: &str) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
         USE {db};\n\
         GRANT SELECT ON {db}.* TO 'nobody'@'%';\n\
         create table account (id bigint auto_increment primary key, email varchar(64) not null, legacy int null,\n\
           created datetime default CURRENT_TIMESTAMP not null) comment 'accounts';\n\
         create index idx_email on account (email);\n\
         create table note (id bigint auto_increment primary key, account_id bigint not null, body text null);\n"
    )
}

/// Schema B: new tables with foreign keys, new and changed columns, index changes, a drop.
fn schema_b(db: &str) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
         USE {db};\n\
         create table account (id bigint auto_increment primary key, name varchar(100) default '' not null,\n\
           email varchar(128) not null, created datetime default CURRENT_TIMESTAMP not null,\n\
           modified datetime default CURRENT_TIMESTAMP not null on update CURRENT_TIMESTAMP,\n\
           constraint uk_email unique (email)) comment 'user accounts';\n\
         create table tag (id bigint auto_increment primary key, label varchar(32) not null, parent_id bigint null,\n\
           constraint fk_tag_parent foreign key (parent_id) references tag (id));\n\
         create index idx_label on tag (label(10));\n\
         create table note (id bigint auto_increment primary key, account_id bigint not null, body mediumtext null,\n\
           tag_id bigint null, constraint fk_note_account foreign key (account_id) references account (id) on delete cascade,\n\
           constraint fk_note_tag foreign key (tag_id) references tag (id));"
    )
}

fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn molt(root: &Path, failpoints: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(MOLT);
    c.arg("--root")
        .arg(root)
        .args(args)
        .env("MOLT_LOG", "error")
        .env("MOLT_DATABASE_URL", database_url())
        .env_remove("MOLT_FAILPOINTS");
    if let Some(fp) = failpoints {
        c.env("MOLT_FAILPOINTS", fp);
    }
    c.output().unwrap()
}

async fn model(db: &str) -> Schema {
    let mut conn = connect().await;
    let mut s = live::inspect(&mut conn, &[db.to_string()]).await.unwrap();
    s.rename_database(db, "x");
    s
}

/// A database created from `text` (which names `db`): its model and SHOW CREATE TABLEs.
async fn fresh(db: &str, text: &str) -> (Schema, BTreeMap<String, String>) {
    let mut conn = connect().await;
    run_file(&mut conn, text, &BTreeMap::new()).await;
    (model(db).await, show_create_all(&mut conn, db).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_each_statement_then_resumed_ends_equal_to_a_fresh_install() {
    let tmp = tempfile::tempdir().unwrap();
    let want_db = scratch_name("want");
    let (want_model, want_show) = fresh(&want_db, &schema_b(&want_db)).await;
    let mut conn = connect().await;
    let mut cleanup = vec![want_db.clone()];
    // How many statements the migration has.
    let probe_db = scratch_name("probe");
    cleanup.push(probe_db.clone());
    run_file(&mut conn, &schema_a(&probe_db), &BTreeMap::new()).await;
    let b_file = write(tmp.path(), "probe_b.sql", &schema_b(&probe_db));
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "plan",
            "--desired",
            b_file.to_str().unwrap(),
            "--allow-destructive",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = plan["statements"].as_array().unwrap().len();
    assert!(n >= 5, "a migration of several statements: {plan:#}");

    for k in 0..n {
        let root = tmp.path().join(format!("k{k}"));
        std::fs::create_dir_all(&root).unwrap();
        let db = scratch_name(&format!("k{k}"));
        cleanup.push(db.clone());
        run_file(&mut conn, &schema_a(&db), &BTreeMap::new()).await;
        let b = write(&root, "b.sql", &schema_b(&db));
        let fp = format!("steps::schema::statement_done={k}*off->return");
        let out = molt(
            &root,
            Some(&fp),
            &[
                "schema",
                "apply",
                "--desired",
                b.to_str().unwrap(),
                "--allow-destructive",
            ],
        );
        assert!(aborted(&out), "k={k}: {}", text(&out));
        // the audit shows exactly the statements that ran
        let status = molt(&root, None, &["journal", "list", "--json"]);
        assert_eq!(status.status.code(), Some(0), "{}", text(&status));
        let out = if k % 2 == 0 {
            molt(&root, None, &["resume"])
        } else {
            molt(&root, None, &["recover"])
        };
        assert_eq!(out.status.code(), Some(0), "k={k}: {}", text(&out));
        assert_eq!(model(&db).await, want_model, "k={k}: schema after resume");
        assert_eq!(
            show_create_all(&mut conn, &db).await,
            want_show,
            "k={k}: SHOW CREATE TABLE"
        );
        // the receipt lists every statement, over both attempts, once each as done
        let show = molt(&root, None, &["journal", "show", "1", "--json"]);
        let shown = String::from_utf8_lossy(&show.stdout);
        assert!(
            shown.contains("\"phase\": \"done\"") || shown.contains("\"phase\":\"done\""),
            "{shown}"
        );
        // and applying again changes nothing
        let out = molt(
            &root,
            None,
            &["schema", "plan", "--desired", b.to_str().unwrap(), "--json"],
        );
        let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            again["statements"].as_array().unwrap().len(),
            0,
            "k={k}: {again:#}"
        );
    }
    drop_databases(&mut conn, &cleanup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_crash_even_killed_itself_returns_to_the_schema_before() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conn = connect().await;
    let db = scratch_name("rb");
    run_file(&mut conn, &schema_a(&db), &BTreeMap::new()).await;
    let before = model(&db).await;
    let before_show = show_create_all(&mut conn, &db).await;
    let b = write(tmp.path(), "b.sql", &schema_b(&db));
    let out = molt(
        tmp.path(),
        Some("steps::schema::statement_done=2*off->return"),
        &[
            "schema",
            "apply",
            "--desired",
            b.to_str().unwrap(),
            "--allow-destructive",
        ],
    );
    assert!(aborted(&out), "{}", text(&out));
    // the rollback itself is killed after its first statement, then run again
    let out = molt(
        tmp.path(),
        Some("steps::schema::statement_done=return"),
        &["rollback"],
    );
    assert!(aborted(&out), "{}", text(&out));
    let out = molt(tmp.path(), None, &["rollback"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = model(&db).await;
    // Columns the migration dropped come back (empty: data returns from a backup).
    assert_eq!(
        after.databases["x"].tables.keys().collect::<Vec<_>>(),
        before.databases["x"].tables.keys().collect::<Vec<_>>()
    );
    assert_eq!(after, before);
    assert_eq!(show_create_all(&mut conn, &db).await, before_show);
    drop_databases(&mut conn, &[db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_and_unparsable_migrations_are_refused_with_nothing_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conn = connect().await;
    let db = scratch_name("refuse");
    run_file(&mut conn, &schema_a(&db), &BTreeMap::new()).await;
    conn.query_drop(format!(
        "INSERT INTO `{db}`.account (email, legacy) VALUES ('a@b', 7)"
    ))
    .await
    .unwrap();
    let before = model(&db).await;

    // dropping `legacy` (which has data) without the flag: refused, exit 8, no run journaled
    let b = write(tmp.path(), "b.sql", &schema_b(&db));
    let out = molt(
        tmp.path(),
        None,
        &["schema", "apply", "--desired", b.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("drops column")
            && err.contains("legacy")
            && err.contains("before anything ran"),
        "{err}"
    );
    assert_eq!(model(&db).await, before, "nothing applied");
    assert!(
        !tmp.path().join("journal").exists(),
        "a refused migration starts no run"
    );
    let out = molt(
        tmp.path(),
        None,
        &["schema", "plan", "--desired", b.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REFUSED"),
        "{}",
        text(&out)
    );
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "apply",
            "--dry-run",
            "--allow-destructive",
            "--desired",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(model(&db).await, before, "a dry run changes nothing");

    // SQL that does not parse: the error names the line; nothing applied
    let bad = write(tmp.path(), "bad.sql", &format!("USE {db};\ncreate table account (\n  id bigint primary key,\n  email varchar(64) not null,\n  oops this is not sql\n);\n"));
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "apply",
            "--allow-destructive",
            "--desired",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.sql") && err.contains("line 5"), "{err}");
    assert_eq!(model(&db).await, before, "nothing applied");

    // a construct MariaDB would refuse: a clear error naming the statement's line
    let part = write(
        tmp.path(),
        "part.sql",
        &format!("USE {db};\n\ncreate table p (id int, k int, primary key (id)) partition by hash(k) partitions 4;\n"),
    );
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "diff",
            b.to_str().unwrap(),
            part.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("partitioning function"),
        "{err}"
    );

    // with the flag it applies, and the data in the kept column is still there
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "apply",
            "--allow-destructive",
            "--desired",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let email: Option<String> = conn
        .query_first(format!("SELECT email FROM `{db}`.account"))
        .await
        .unwrap();
    assert_eq!(email.as_deref(), Some("a@b"));
    drop_databases(&mut conn, &[db]).await;
}

#[test]
#[ignore = "nuwax suite: needs ../shared/fixtures/nuwax; scripts/test.sh runs it with --ignored"]
fn nuwax_diff_of_two_files_lists_statements_and_reports_grants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nuwax/mysql");
    let tmp = tempfile::tempdir().unwrap();
    let out = molt(
        tmp.path(),
        None,
        &[
            "schema",
            "diff",
            dir.join("v3_init_mysql.sql").to_str().unwrap(),
            dir.join("v4_init_mysql.sql").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CREATE TABLE `agent_platform`.`custom_page_build`"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GRANT is not schema"), "{stderr}");
    let out = molt(
        tmp.path(),
        None,
        &[
            "--json",
            "schema",
            "diff",
            dir.join("v1_init_mysql.sql").to_str().unwrap(),
            dir.join("v4_init_mysql.sql").to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["statements"].as_array().unwrap().len() > 5);
    assert_eq!(v["skipped"]["new"][0]["kind"], "GRANT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_release_names_the_schema_and_what_it_allows_and_the_password_comes_from_env() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut conn = connect().await;
    let db = scratch_name("rel");
    run_file(&mut conn, &schema_a(&db), &BTreeMap::new()).await;
    // release 2 ships schema B and vouches for dropping account.legacy and its old index
    let rel = root.join("releases/2");
    std::fs::create_dir_all(rel.join("schema")).unwrap();
    std::fs::write(rel.join("schema/init.sql"), schema_b(&db)).unwrap();
    std::fs::write(
        rel.join("release.toml"),
        format!("format = 1\nversion = \"2\"\nallow_destructive = [\"{db}.account.legacy\", \"{db}.account.idx_email\"]\n[database]\nservice = \"db\"\nschema = \"schema/init.sql\"\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink("releases/2", root.join("current")).unwrap();
    // molt.toml names the password through the operator's .env
    let opts = mysql_async::Opts::from_url(&database_url()).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(
        root.join("shared/.env"),
        format!("DB_PASSWORD={}\n", opts.pass().unwrap_or("")),
    )
    .unwrap();
    std::fs::write(
        root.join("molt.toml"),
        format!(
            "database_url = \"mysql://{}:${{DB_PASSWORD}}@{}:{}/\"\n",
            opts.user().unwrap(),
            opts.ip_or_hostname(),
            opts.tcp_port()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(MOLT)
            .arg("--root")
            .arg(root)
            .args(args)
            .env("MOLT_LOG", "error")
            .env_remove("MOLT_DATABASE_URL")
            .env_remove("MOLT_FAILPOINTS")
            .output()
            .unwrap()
    };
    let out = run(&["schema", "plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("destructive (allowed): drops column") && stdout.contains("legacy"),
        "{stdout}"
    );
    let out = run(&["schema", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (want, _) = {
        let fresh_db = scratch_name("relwant");
        let r = fresh(&fresh_db, &schema_b(&fresh_db)).await;
        drop_databases(&mut conn, &[fresh_db]).await;
        r
    };
    assert_eq!(model(&db).await, want);
    // the journal holds no password
    let journal = std::fs::read_dir(root.join("journal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file());
    for f in journal {
        let bytes = std::fs::read(f.path()).unwrap();
        let pw = opts.pass().unwrap_or("").as_bytes();
        assert!(
            pw.is_empty() || !bytes.windows(pw.len()).any(|w| w == pw),
            "{} holds the password",
            f.path().display()
        );
    }
    drop_databases(&mut conn, &[db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_given_on_the_command_line_keeps_the_column_and_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conn = connect().await;
    let db = scratch_name("cli_rename");
    run_file(
        &mut conn,
        &format!("CREATE DATABASE {db}; USE {db}; CREATE TABLE account (id INT PRIMARY KEY, legacy INT);"),
        &BTreeMap::new(),
    )
    .await;
    conn.query_drop(format!("INSERT INTO `{db}`.account VALUES (1, 7), (2, 8)"))
        .await
        .unwrap();
    let b = write(
        tmp.path(),
        "b.sql",
        &format!(
            "CREATE DATABASE {db}; USE {db}; CREATE TABLE account (id INT PRIMARY KEY, kept INT);"
        ),
    );
    let b = b.to_str().unwrap();
    // without the rename: refused, and the plan says it looks like one
    let out = molt(tmp.path(), None, &["schema", "plan", "--desired", b]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(
        text(&out).contains("looks like a rename to kept"),
        "{}",
        text(&out)
    );
    for bad in [
        "legacy=kept",
        &format!("{db}.account.legacy"),
        &format!("{db}.account.legacy=a.b"),
    ] {
        let out = molt(
            tmp.path(),
            None,
            &["schema", "apply", "--desired", b, "--rename", bad],
        );
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            text(&out).contains("expected db.table=new_table"),
            "{}",
            text(&out)
        );
    }
    let rename = format!("{db}.account.legacy=kept");
    let out = molt(
        tmp.path(),
        None,
        &["schema", "apply", "--desired", b, "--rename", &rename],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<(u32, u32)> = conn
        .query(format!("SELECT id, kept FROM `{db}`.account ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, 7), (2, 8)]);
    // the run's receipt lists the rename
    let show = molt(tmp.path(), None, &["journal", "show", "1", "--json"]);
    assert!(
        text(&show).contains("RENAME COLUMN `legacy` TO `kept`"),
        "{}",
        text(&show)
    );
    drop_databases(&mut conn, &[db]).await;
}
