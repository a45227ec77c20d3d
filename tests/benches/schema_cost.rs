//! Benchmark: the schema differ and live inspection, each against a baseline in the same run.
//!
//! - diff of the nuwax chain (v1->v2->v3->v4: load both files, diff) and of a generated
//!   1,000-table schema pair, against sqlparser alone parsing the same text (the floor any
//!   SQL loader pays);
//! - live inspection of a 1,000-table database, against `mariadb-dump --no-data` of it (the
//!   operator's usual way to read a schema);
//! - on a 1,000,000-row table: molt adding a nullable column, and a column with an index,
//!   against a plain `ALTER TABLE ... ALGORITHM=COPY` of the same on an identical copy; and
//!   the data-aware preflight (NOT NULL, a new UNIQUE, a narrowed type, a CHECK) against one
//!   `SELECT COUNT(*)` of the table.
//!
//! Run: `cargo bench -p tests --bench schema_cost [-- ROUNDS]` with the test MariaDB running
//! (`scripts/test.sh` starts it).

use mysql_async::prelude::Queryable;
use std::time::Instant;
use steps::schema::diff::{diff, Allow};
use steps::schema::live;
use steps::schema::sql::{load, LoadOptions};
use tests::db::{connect, database_url, drop_databases, dump_schema, run_file, scratch_name};
use tests::median;

fn nuwax(v: u32) -> String {
    std::fs::read_to_string(format!(
        "{}/../../shared/fixtures/nuwax/mysql/v{v}_init_mysql.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A 1,000-table schema; `variant` 1 changes every tenth table (a column added, one widened,
/// an index added) and drops one table per hundred.
fn generated(db: &str, variant: u32) -> String {
    let mut s = format!("CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\nUSE {db};\n");
    for t in 0..1000 {
        if variant == 1 && t % 100 == 99 {
            continue;
        }
        let changed = variant == 1 && t % 10 == 0;
        let parent = if t > 0 {
            format!(
                ",\n  constraint fk_{t} foreign key (parent_id) references t{} (id)",
                t - 1
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            "create table t{t} (\n  id bigint auto_increment primary key,\n  parent_id bigint null,\n  name varchar({}) not null default '' comment 'name',\n  \
             status enum('new','done') default 'new' not null,\n  amount decimal(12,2) default 0 not null,\n  body text null,\n  doc json null,\n  \
             created datetime default CURRENT_TIMESTAMP not null,\n  modified datetime default CURRENT_TIMESTAMP not null on update CURRENT_TIMESTAMP{}{parent}\n) comment 'table {t}';\n\
             create index idx_name_{t} on t{t} (name);\n{}",
            if changed { 128 } else { 64 },
            if changed { ",\n  extra int null" } else { "" },
            if changed { format!("create index idx_status_{t} on t{t} (status, created);\n") } else { String::new() },
        ));
    }
    // `variant` 1 drops tables t99, t199...; their children's foreign keys go with them
    if variant == 1 {
        s = s
            .lines()
            .filter(|l| !(0..10).any(|k| l.contains(&format!("references t{} (id)", k * 100 + 99))))
            .collect::<Vec<_>>()
            .join("\n");
        s = s.replace(",\n)", "\n)");
    }
    s
}

fn parse_only(text: &str) -> usize {
    // the statements sqlparser takes, as molt's splitter hands them over
    let stmts = steps::schema::sql::split(text).unwrap();
    let mut n = 0;
    for st in stmts {
        let upper = st.text.to_ascii_uppercase();
        if upper.starts_with("GRANT") || upper.starts_with("FLUSH") {
            continue;
        }
        n += sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MySqlDialect {}, &st.text)
            .unwrap()
            .len();
    }
    n
}

fn load_and_diff(a: &str, b: &str) -> usize {
    let a = load(a, &LoadOptions::default()).unwrap().schema;
    let b = load(b, &LoadOptions::default()).unwrap().schema;
    diff(&a, &b, &|_, _| None).changes.len()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);

    // 1. the nuwax chain
    let files: Vec<String> = (1..=4).map(nuwax).collect();
    let (mut molt, mut base) = (Vec::new(), Vec::new());
    let mut statements = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        statements = files
            .windows(2)
            .map(|w| load_and_diff(&w[0], &w[1]))
            .sum::<usize>();
        molt.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n: usize = files
            .windows(2)
            .map(|w| parse_only(&w[0]) + parse_only(&w[1]))
            .sum();
        assert!(n > 0);
        base.push(t.elapsed().as_secs_f64());
    }
    let (m, b) = (median(molt), median(base));
    println!(
        "nuwax v1->v4 chain: load+diff {:.1} ms ({statements} statements), sqlparser parse alone {:.1} ms, ratio {:.2}x",
        m * 1e3,
        b * 1e3,
        m / b
    );

    // 2. a generated 1,000-table pair
    let (ga, gb) = (generated("gen", 0), generated("gen", 1));
    let (mut molt, mut base) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        statements = load_and_diff(&ga, &gb);
        molt.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert!(parse_only(&ga) + parse_only(&gb) > 0);
        base.push(t.elapsed().as_secs_f64());
    }
    let (m, b) = (median(molt), median(base));
    println!(
        "1,000 tables: load+diff {:.1} ms ({statements} statements), sqlparser parse alone {:.1} ms, ratio {:.2}x",
        m * 1e3,
        b * 1e3,
        m / b
    );

    // 3. live inspection of 1,000 tables
    let db = scratch_name("bench");
    let mut conn = connect().await;
    let t = Instant::now();
    run_file(&mut conn, &generated(&db, 0), &Default::default()).await;
    println!(
        "(created {db} with 1,000 tables in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let (mut molt, mut base) = (Vec::new(), Vec::new());
    let mut mconn = live::connect(&database_url()).await.unwrap();
    for _ in 0..rounds {
        let t = Instant::now();
        let s = live::inspect(&mut mconn, std::slice::from_ref(&db))
            .await
            .unwrap();
        molt.push(t.elapsed().as_secs_f64());
        assert_eq!(s.table_count(), 1000);
        let t = Instant::now();
        assert!(dump_schema(&["--skip-triggers", &db]).contains("CREATE TABLE"));
        base.push(t.elapsed().as_secs_f64());
    }
    let (m, b) = (median(molt), median(base));
    println!("live inspection of 1,000 tables: molt {:.0} ms, mariadb-dump --no-data {:.0} ms, ratio {:.2}x", m * 1e3, b * 1e3, m / b);
    let _ = conn.query_drop("SELECT 1").await;
    drop_databases(&mut conn, &[db]).await;

    big_table(&mut conn, rounds.min(3)).await;
}

/// Migrate to `desired`, adding to `ran` the algorithm of each `ALTER TABLE` the server ran.
async fn apply_recording(
    mig: &mut mysql_async::Conn,
    desired: &steps::schema::Schema,
    ran: &mut Vec<&'static str>,
) {
    live::apply(mig, desired, &Allow::default(), &mut |e| {
        if let live::Event::After {
            algorithm: Some(a), ..
        } = e
        {
            ran.push(a.name());
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// The online DDL and preflight figures on a 1,000,000-row table.
async fn big_table(conn: &mut mysql_async::Conn, rounds: usize) {
    let db = scratch_name("big");
    let copy_db = format!("{db}_copy");
    let table = |extra: &str| {
        format!(
            "CREATE DATABASE IF NOT EXISTS {db}; USE {db};
             CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(32), c DATETIME{extra});"
        )
    };
    let desired = |extra: &str| load(&table(extra), &LoadOptions::default()).unwrap().schema;
    let fill = |t: &str| {
        format!(
            "INSERT INTO `{db}`.{t} (a, b, c) SELECT seq, CONCAT('row ', seq), '2024-01-01' + INTERVAL seq SECOND FROM `{db}`.seq_1_to_1000000"
        )
    };
    let mut mig = live::connect(&database_url()).await.unwrap();
    let (mut col, mut col_copy, mut both, mut both_copy, mut pre, mut count) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut algorithms = String::new();
    for _ in 0..rounds {
        drop_databases(conn, std::slice::from_ref(&db)).await;
        run_file(conn, &table(""), &Default::default()).await;
        conn.query_drop(fill("big")).await.unwrap();
        // the baseline's identical copy, in a database of its own (the desired schema is `big` only)
        drop_databases(conn, std::slice::from_ref(&copy_db)).await;
        conn.query_drop(format!("CREATE DATABASE `{copy_db}`"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE TABLE `{copy_db}`.copy LIKE `{db}`.big"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "INSERT INTO `{copy_db}`.copy SELECT * FROM `{db}`.big"
        ))
        .await
        .unwrap();

        // the preflight of changes the rows allow, against one COUNT(*)
        let checked = desired(", UNIQUE KEY uq_b (b), CHECK (a > 0)").databases[&db].clone();
        let mut checked_schema = steps::schema::Schema::default();
        checked_schema.databases.insert(db.clone(), checked);
        let live_now = live::inspect(&mut mig, std::slice::from_ref(&db))
            .await
            .unwrap();
        let mut narrowed = checked_schema.clone();
        if let Some(t) = narrowed
            .databases
            .get_mut(&db)
            .and_then(|d| d.tables.get_mut("big"))
        {
            for c in &mut t.columns {
                if c.name == "b" {
                    c.nullable = false;
                    c.ty = steps::schema::model::ColumnType::parse("varchar(16)").unwrap();
                }
            }
        }
        let t = Instant::now();
        let findings = steps::schema::preflight::check(&mut mig, &live_now, &narrowed)
            .await
            .unwrap();
        pre.push(t.elapsed().as_secs_f64());
        assert!(
            findings.is_empty(),
            "the rows allow these changes: {findings:?}"
        );
        let t = Instant::now();
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM `{db}`.big"))
            .await
            .unwrap();
        count.push(t.elapsed().as_secs_f64());
        assert_eq!(n, Some(1_000_000));

        // a nullable column
        let t = Instant::now();
        let mut ran = Vec::new();
        apply_recording(&mut mig, &desired(", n INT NULL"), &mut ran).await;
        col.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        conn.query_drop(format!(
            "ALTER TABLE `{copy_db}`.copy ADD COLUMN n INT NULL, ALGORITHM=COPY"
        ))
        .await
        .unwrap();
        col_copy.push(t.elapsed().as_secs_f64());

        // then a column and an index in one change
        let t = Instant::now();
        apply_recording(
            &mut mig,
            &desired(", n INT NULL, m INT NULL, KEY ix_a (a)"),
            &mut ran,
        )
        .await;
        both.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        conn.query_drop(format!(
            "ALTER TABLE `{copy_db}`.copy ADD COLUMN m INT NULL, ADD INDEX ix_a (a), ALGORITHM=COPY"
        ))
        .await
        .unwrap();
        both_copy.push(t.elapsed().as_secs_f64());
        algorithms = ran.join(", ");
    }
    drop_databases(conn, &[db, copy_db]).await;
    let (c, cc) = (median(col), median(col_copy));
    println!(
        "1,000,000 rows, add a nullable column: molt {:.1} ms, ALTER ... ALGORITHM=COPY {:.0} ms, ratio {:.3}x (target <= 0.1x)",
        c * 1e3,
        cc * 1e3,
        c / cc
    );
    let (b, bc) = (median(both), median(both_copy));
    println!(
        "1,000,000 rows, add a column and an index: molt {:.0} ms, ALTER ... ALGORITHM=COPY {:.0} ms, ratio {:.2}x (molt ran: {algorithms})",
        b * 1e3,
        bc * 1e3,
        b / bc
    );
    let (p, n) = (median(pre), median(count));
    println!(
        "1,000,000 rows, data-aware preflight (NOT NULL, UNIQUE, narrowed VARCHAR, CHECK): {:.0} ms, one SELECT COUNT(*) {:.0} ms, ratio {:.1}x",
        p * 1e3,
        n * 1e3,
        p / n
    );
}
