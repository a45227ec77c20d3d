//! The schema oracle for CHECK constraints, display widths, views, triggers and events, against
//! a real MariaDB (started by `scripts/test.sh`): a database created from A and migrated to B
//! has exactly the schema of a fresh database created from B (the model, normalised
//! `SHOW CREATE` of every table, view, trigger and event), and a second migration runs nothing.

use std::collections::BTreeMap;
use steps::schema::diff::Allow;
use steps::schema::live::{self, Event};
use steps::schema::sql::{load, LoadOptions};
use tests::db::{
    connect, drop_databases, run_file, scratch_name, show_create_all, show_create_objects,
};

const DB: &str = "shop";

fn renamed(to: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(DB.to_string(), to.to_string())])
}

/// `live::apply` under the migration lock, as the migrate step runs it.
async fn apply_locked(
    conn: &mut mysql_async::Conn,
    desired: &steps::schema::Schema,
    allow: &Allow,
    audit: &mut (dyn FnMut(Event<'_>) -> Result<(), String> + Send),
) -> Result<Vec<steps::schema::diff::Change>, live::LiveError> {
    live::lock(conn, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let result = live::apply(conn, desired, allow, audit).await;
    live::unlock(conn).await;
    result
}

/// Every destructive change allowed (`--allow-destructive`).
fn allow_all() -> Allow {
    Allow {
        all: true,
        subjects: Vec::new(),
    }
}

/// The model of a schema file, its database named `db`.
fn desired_as(text: &str, db: &str) -> steps::schema::Schema {
    load(
        text,
        &LoadOptions {
            rename: renamed(db),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("the file does not load: {e}\n{text}"))
    .schema
}

/// The live model of `db` as JSON, its scratch name put back to the product's (view
/// definitions name their database).
async fn model_json(conn: &mut mysql_async::Conn, db: &str) -> String {
    let mut s = live::inspect(conn, &[db.to_string()]).await.unwrap();
    s.rename_database(db, DB);
    serde_json::to_string_pretty(&s).unwrap().replace(db, DB)
}

/// Migrate a database made from `a` to `b`; compare with a fresh `b`; migrate again.
/// Returns the statements the migration ran.
async fn oracle(case: &str, a: &str, b: &str) -> Vec<String> {
    oracle_with(case, a, b, &Allow::default()).await
}

/// [`oracle`] with every destructive change allowed.
async fn oracle_allowing(case: &str, a: &str, b: &str) -> Vec<String> {
    oracle_with(case, a, b, &allow_all()).await
}

async fn oracle_with(case: &str, a: &str, b: &str, allow: &Allow) -> Vec<String> {
    let mut conn = connect().await;
    let migrated = scratch_name(&format!("m_{case}"));
    let fresh = scratch_name(&format!("f_{case}"));
    run_file(&mut conn, a, &renamed(&migrated)).await;
    run_file(&mut conn, b, &renamed(&fresh)).await;
    let desired = desired_as(b, &migrated);
    let mut ran = Vec::new();
    let result = apply_locked(&mut conn, &desired, allow, &mut |e| {
        if let Event::After { change, .. } = e {
            ran.push(change.sql.clone());
        }
        Ok(())
    })
    .await;
    if let Err(e) = result {
        panic!(
            "{case}: the migration failed: {e}\nran:\n{}",
            ran.join(";\n")
        );
    }
    assert!(!ran.is_empty(), "{case}: A and B differ, so something runs");
    eprintln!("{case}: {} statements\n{}", ran.len(), ran.join(";\n"));

    assert_eq!(
        model_json(&mut conn, &migrated).await,
        model_json(&mut conn, &fresh).await,
        "{case}: the migrated model differs from a fresh B"
    );
    assert_eq!(
        show_create_all(&mut conn, &migrated).await,
        show_create_all(&mut conn, &fresh).await,
        "{case}: SHOW CREATE TABLE"
    );
    let objects = |m: BTreeMap<String, String>, name: &str| -> BTreeMap<String, String> {
        m.into_iter()
            .map(|(k, v)| (k, v.replace(name, DB)))
            .collect()
    };
    let (om, of) = (
        objects(show_create_objects(&mut conn, &migrated).await, &migrated),
        objects(show_create_objects(&mut conn, &fresh).await, &fresh),
    );
    assert_eq!(om, of, "{case}: SHOW CREATE of views, triggers and events");
    let (_, again) = live::plan(&mut conn, &desired).await.unwrap();
    assert!(
        again.is_empty(),
        "{case}: a second migration would run {:#?}",
        again.statements()
    );
    // no probe is left behind
    let probes: Vec<String> = mysql_async::prelude::Queryable::exec(
        &mut conn,
        "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE '\\_molt%'",
        (migrated.as_str(),),
    )
    .await
    .unwrap();
    assert!(probes.is_empty(), "{case}: probe views left: {probes:?}");
    drop_databases(&mut conn, &[migrated, fresh]).await;
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_constraints_are_added_changed_and_dropped_in_the_servers_words() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (
          id INT PRIMARY KEY,
          price INT CHECK (price > 0),
          qty INT,
          lo INT, hi INT,
          label VARCHAR(20),
          CONSTRAINT range_ok CHECK (lo < hi),
          CHECK (qty >= 0),
          CHECK (lo IS NOT NULL)
        );";
    // price's check changes (and is rewritten by the server), qty gains a column check, the
    // named one changes, the first unnamed goes, a new unnamed one (length -> octet_length)
    // comes, a new table has checks of both kinds.
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (
          id INT PRIMARY KEY,
          price INT CHECK (NOT price <= 0 AND price < 100000),
          qty INT CHECK (qty IN (0, 1, 2, 3)),
          lo INT, hi INT,
          label VARCHAR(20) CHECK (label != ''),
          CONSTRAINT range_ok CHECK (lo <= hi),
          CHECK (lo IS NOT NULL),
          CHECK (length(label) < 15 OR label IS NULL)
        );
        CREATE TABLE note (
          id INT PRIMARY KEY,
          body JSON,
          stars TINYINT CHECK (stars BETWEEN 1 AND 5),
          CONSTRAINT body_small CHECK (json_length(body) < 10)
        );";
    let ran = oracle("checks", a, b).await;
    assert!(
        ran.iter()
            .any(|s| s.contains("DROP CONSTRAINT `CONSTRAINT_1`")),
        "the dropped unnamed check goes: {ran:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_widths_survive_and_a_boolean_stays_a_boolean() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE flag (id INT PRIMARY KEY, on_off TINYINT, code INT(5), n INT(10) UNSIGNED, zf INT(4) ZEROFILL);";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE flag (id INT PRIMARY KEY, on_off BOOLEAN, code INT, n INT UNSIGNED, zf INT(6) ZEROFILL, added TINYINT(1) NOT NULL DEFAULT 0);";
    let ran = oracle("widths", a, b).await;
    assert!(
        ran.iter().any(|s| s.contains("`on_off` tinyint(1)")),
        "tinyint(4) -> tinyint(1) is a change: {ran:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_on_tables_and_on_views_are_created_replaced_and_dropped() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, price INT, qty INT);
        CREATE VIEW everything AS SELECT * FROM item;
        CREATE VIEW dear AS SELECT id, price FROM everything WHERE price > 100;
        CREATE VIEW gone AS SELECT id FROM item;
        CREATE VIEW same AS SELECT id, qty FROM item WHERE qty > 0;";
    // `SELECT *` must pick up the new column, `dear` reads `everything` and changes, `pricey`
    // reads `dear` (views on views, in order), `gone` goes, `same` stays as it is.
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, price INT, qty INT, sku VARCHAR(10));
        CREATE VIEW pricey (item_id, p) AS SELECT id, price FROM dear WHERE price > 1000 WITH CHECK OPTION;
        CREATE VIEW same AS SELECT id, qty FROM item WHERE qty > 0;";
    // (the file must create what a view reads first: written in order below)
    let b = b.replace(
        "CREATE VIEW pricey",
        "CREATE VIEW everything AS SELECT * FROM item;
        CREATE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW dear AS SELECT id, price, sku FROM everything WHERE price > 200;
        CREATE VIEW pricey",
    );
    let ran = oracle("views", a, &b).await;
    assert!(ran
        .iter()
        .any(|s| s.starts_with("DROP VIEW IF EXISTS") && s.contains("`gone`")));
    // (a table changes, so every view is made anew on it: `same` too)

    // Unchanged tables: only what differs is replaced, judged by the server's rendering.
    let c = b.replace("price > 1000", "price > 2000");
    let ran = oracle("views2", &b, &c).await;
    assert_eq!(ran.len(), 1, "only the changed view: {ran:#?}");
    assert!(ran[0].contains("`pricey`"), "{ran:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_replaced_in_their_order_and_dropped() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, price INT, touched INT DEFAULT 0);
        CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40));
        CREATE TRIGGER clamp BEFORE INSERT ON item FOR EACH ROW SET NEW.price = GREATEST(NEW.price, 0);
        CREATE TRIGGER count_in BEFORE INSERT ON item FOR EACH ROW SET NEW.touched = 1;
        CREATE TRIGGER gone AFTER DELETE ON item FOR EACH ROW INSERT INTO log (what) VALUES ('deleted');";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, price INT, touched INT DEFAULT 0);
        CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40));
        CREATE TRIGGER clamp BEFORE INSERT ON item FOR EACH ROW SET NEW.price = GREATEST(NEW.price, 1);
        CREATE TRIGGER count_in BEFORE INSERT ON item FOR EACH ROW SET NEW.touched = 1;
        CREATE TRIGGER first_of_all BEFORE INSERT ON item FOR EACH ROW PRECEDES clamp SET NEW.touched = 0;
        DELIMITER //
        CREATE TRIGGER audit_price AFTER UPDATE ON item FOR EACH ROW
        BEGIN
          IF NEW.price <> OLD.price THEN
            INSERT INTO log (what) VALUES (CONCAT('price  ', OLD.price, ' -> ', NEW.price));
          END IF;
        END //
        DELIMITER ;";
    oracle("triggers", a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_schedules_and_states_are_replaced_and_dropped() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME);
        CREATE EVENT prune ON SCHEDULE EVERY 1 HOUR STARTS '2030-01-01 00:00:00' DO DELETE FROM log WHERE at < NOW() - INTERVAL 1 DAY;
        CREATE EVENT steady ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DO DELETE FROM log WHERE id < 0;
        CREATE EVENT gone ON SCHEDULE AT '2031-01-01 00:00:00' ON COMPLETION PRESERVE DO DELETE FROM log;";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME);
        CREATE EVENT prune ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2030-01-01 00:00:00' ENDS '2037-01-01' DISABLE COMMENT 'hourly and a half' DO DELETE FROM log WHERE at < NOW() - INTERVAL 2 DAY;
        CREATE EVENT steady ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DO DELETE FROM log WHERE id < 0;
        CREATE EVENT once ON SCHEDULE AT '2032-06-01 12:00:00' ON COMPLETION PRESERVE DO INSERT INTO log (at) VALUES (NOW());";
    let ran = oracle("events", a, b).await;
    assert!(
        !ran.iter().any(|s| s.contains("`steady`")),
        "an unchanged event is left alone: {ran:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_files_written_as_statements_fold_into_the_model_as_the_server_applies_them() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, x INT);
        CREATE TABLE part (id INT PRIMARY KEY);";
    // A file that grew by appending ALTERs: every kind of clause, an unnamed foreign key whose
    // implicit index the server names after its column, a rename, a dropped index.
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, x INT);
        CREATE TABLE part (id INT PRIMARY KEY, item_ref INT);
        ALTER TABLE item ADD COLUMN y VARCHAR(10) NOT NULL DEFAULT 'q' AFTER id, ADD INDEX ix_x (x), MODIFY x BIGINT;
        ALTER TABLE part ADD FOREIGN KEY (item_ref) REFERENCES item (id) ON DELETE CASCADE;
        CREATE INDEX ix_y ON item (y);
        ALTER TABLE item ADD CONSTRAINT positive CHECK (x > 0), ADD UNIQUE (y, x);
        DROP INDEX ix_y ON item;
        ALTER TABLE part CHANGE item_ref item_id INT;
        ALTER TABLE item ALTER COLUMN x SET DEFAULT 5;
        CREATE TABLE scratch (id INT, note TEXT);
        RENAME TABLE scratch TO notes;
        ALTER TABLE notes ADD COLUMN n INT FIRST, DROP COLUMN id, ADD CHECK (n >= 0), ALGORITHM=COPY;";
    oracle("statements", a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_a_change_would_break_are_refused_before_anything_runs_even_when_allowed() {
    let mut conn = connect().await;
    let db = scratch_name("preflight");
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE team (id INT PRIMARY KEY);
        CREATE TABLE member (
          id INT PRIMARY KEY, email VARCHAR(50), nick VARCHAR(20), age INT,
          status ENUM('a','b','c'), team_id INT, code VARCHAR(10)
        );
        INSERT INTO team VALUES (1), (2);
        INSERT INTO member VALUES
          (1, 'x@y', 'one', 30, 'a', 1, 'k1'),
          (2, 'x@y', 'two', 300, 'b', 2, 'k2'),
          (3, 'z@y', NULL, 40, 'c', 99, 'k3'),
          (4, NULL, 'four', 50, 'a', NULL, 'k4'),
          (5, NULL, 'five', 60, 'a', 1, 'k5');";
    run_file(&mut conn, a, &renamed(&db)).await;
    let table = |cols: &str| {
        format!(
            "CREATE DATABASE shop; USE shop;
             CREATE TABLE team (id INT PRIMARY KEY);
             CREATE TABLE member ({cols});"
        )
    };
    let base = "id INT PRIMARY KEY, email VARCHAR(50), nick VARCHAR(20), age INT, status ENUM('a','b','c'), team_id INT, code VARCHAR(10)";
    let cases = [
        (
            "a new UNIQUE over duplicates",
            format!("{base}, UNIQUE KEY uq_email (email)"),
            "2 rows of DB.member: duplicate values of (email) for the new UNIQUE key uq_email (duplicates: ('x@y') x2)",
        ),
        (
            "NOT NULL over NULLs",
            base.replace("nick VARCHAR(20)", "nick VARCHAR(20) NOT NULL"),
            "1 row of DB.member: NULL in member.nick, which becomes NOT NULL (keys: 3)",
        ),
        (
            "a narrowed type",
            base.replace("age INT", "age TINYINT UNSIGNED"),
            "1 row of DB.member: member.age holds values that tinyint(3) unsigned cannot (int(11) now) (keys: 2)",
        ),
        (
            "a removed ENUM value",
            base.replace("ENUM('a','b','c')", "ENUM('a','b')"),
            "(keys: 3)",
        ),
        (
            "a new foreign key over orphans",
            format!("{base}, CONSTRAINT fk_team FOREIGN KEY (team_id) REFERENCES team (id)"),
            "1 row of DB.member: orphans for the new foreign key fk_team (team_id): no such DB.team row (keys: 3)",
        ),
        (
            "a new CHECK that rows break",
            format!("{base}, CONSTRAINT sane_age CHECK (age < 200)"),
            "1 row of DB.member: breaks the new CHECK sane_age",
        ),
        (
            "a shortened VARCHAR",
            base.replace("email VARCHAR(50)", "email VARCHAR(2)"),
            "3 rows of DB.member: member.email holds values",
        ),
    ];
    let before = model_json(&mut conn, &db).await;
    let rows_before: Vec<mysql_async::Row> = mysql_async::prelude::Queryable::query(
        &mut conn,
        format!("SELECT * FROM `{db}`.member ORDER BY id"),
    )
    .await
    .unwrap();
    for (what, cols, expected) in cases {
        let desired = desired_as(&table(&cols), &db);
        let mut ran = 0;
        let result = apply_locked(&mut conn, &desired, &allow_all(), &mut |e| {
            if let Event::Before { .. } = e {
                ran += 1;
            }
            Ok(())
        })
        .await;
        let err = result.expect_err(what).to_string();
        let expected = expected.replace("DB", &db);
        assert!(
            err.contains(&expected),
            "{what}: {err}\nexpected: {expected}"
        );
        assert_eq!(ran, 0, "{what}: nothing ran");
        assert_eq!(
            model_json(&mut conn, &db).await,
            before,
            "{what}: schema unchanged"
        );
    }
    let rows_after: Vec<mysql_async::Row> = mysql_async::prelude::Queryable::query(
        &mut conn,
        format!("SELECT * FROM `{db}`.member ORDER BY id"),
    )
    .await
    .unwrap();
    assert_eq!(
        format!("{rows_before:?}"),
        format!("{rows_after:?}"),
        "the rows are untouched"
    );
    // Fixed in the data, the same change goes through.
    mysql_async::prelude::Queryable::query_drop(
        &mut conn,
        format!("UPDATE `{db}`.member SET nick = 'three' WHERE id = 3"),
    )
    .await
    .unwrap();
    let desired = desired_as(
        &table(&base.replace("nick VARCHAR(20)", "nick VARCHAR(20) NOT NULL")),
        &db,
    );
    let allow = Allow {
        all: false,
        subjects: vec![format!("{db}.member.nick")],
    };
    live::apply(&mut conn, &desired, &allow, &mut |_| Ok(()))
        .await
        .expect("no NULL left: the NOT NULL change runs");
    drop_databases(&mut conn, &[db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_keep_the_data_and_a_drop_and_add_of_the_same_shape_is_flagged() {
    use mysql_async::prelude::Queryable;
    let mut conn = connect().await;
    let db = scratch_name("renames");
    let fresh = scratch_name("renames_f");
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE customer (id INT PRIMARY KEY, name VARCHAR(40));
        CREATE TABLE orders_old (id INT PRIMARY KEY, price DECIMAL(10,2) NOT NULL, customer INT,
          KEY by_price (price), CONSTRAINT fk_c FOREIGN KEY (customer) REFERENCES customer (id));
        INSERT INTO customer VALUES (1, 'ann');
        INSERT INTO orders_old VALUES (1, 9.50, 1), (2, 12.25, NULL);";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE customer (id INT PRIMARY KEY, full_name VARCHAR(40));
        CREATE TABLE orders (id INT PRIMARY KEY, unit_price DECIMAL(10,2) NOT NULL, customer INT,
          KEY by_price (unit_price), CONSTRAINT fk_c FOREIGN KEY (customer) REFERENCES customer (id));";
    run_file(&mut conn, a, &renamed(&db)).await;
    run_file(&mut conn, b, &renamed(&fresh)).await;
    let mut desired = desired_as(b, &db);

    // Without renames: drops, each flagged as looking like a rename, refused.
    let (_, m) = live::plan(&mut conn, &desired).await.unwrap();
    let reasons: Vec<String> = m.destructive().iter().map(|d| d.reason.clone()).collect();
    let hinted = |what: &str| reasons.iter().any(|r| r.contains(what));
    assert!(
        hinted(&format!(
            "drops table {db}.orders_old, which has rows; it looks like a rename to orders"
        )) && hinted(&format!("\"{db}.orders_old\" = \"orders\"")),
        "{reasons:#?}"
    );
    assert!(
        hinted(&format!(
            "drops column {db}.customer.name, which has rows; it looks like a rename to full_name"
        )),
        "{reasons:#?}"
    );

    // With them: renamed in place, the rows kept, the result equal to a fresh B.
    desired.renames = BTreeMap::from([
        (format!("{db}.orders_old"), "orders".to_string()),
        (format!("{db}.customer.name"), "full_name".to_string()),
        (format!("{db}.orders.price"), "unit_price".to_string()),
    ]);
    let ran = apply_locked(&mut conn, &desired, &Allow::default(), &mut |_| Ok(()))
        .await
        .expect("a rename is not destructive");
    let sql: Vec<&str> = ran.iter().map(|c| c.sql.as_str()).collect();
    assert!(
        sql.iter().all(|s| !s.contains("DROP")),
        "nothing dropped: {sql:#?}"
    );
    let rows: Vec<(u32, String, Option<u32>)> = conn
        .query(format!(
            "SELECT id, CAST(unit_price AS CHAR), customer FROM `{db}`.orders ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![(1, "9.50".into(), Some(1)), (2, "12.25".into(), None)]
    );
    let names: Vec<String> = conn
        .query(format!("SELECT full_name FROM `{db}`.customer"))
        .await
        .unwrap();
    assert_eq!(names, vec!["ann".to_string()]);
    assert_eq!(
        model_json(&mut conn, &db).await,
        model_json(&mut conn, &fresh).await
    );
    assert_eq!(
        show_create_all(&mut conn, &db).await,
        show_create_all(&mut conn, &fresh).await
    );
    let (_, again) = live::plan(&mut conn, &desired).await.unwrap();
    assert!(again.is_empty(), "{:#?}", again.statements());

    // The inverse renames take it back, data and all (what an undo does).
    let mut back = desired_as(a, &db);
    back.renames = steps::schema::diff::inverse_renames(&desired.renames);
    live::apply(&mut conn, &back, &Allow::default(), &mut |_| Ok(()))
        .await
        .expect("renamed back");
    let rows: Vec<(u32, String)> = conn
        .query(format!(
            "SELECT id, CAST(price AS CHAR) FROM `{db}`.orders_old ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, "9.50".into()), (2, "12.25".into())]);
    drop_databases(&mut conn, &[db, fresh]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alter_asks_for_the_cheapest_algorithm_and_the_plan_says_which_it_gets() {
    use steps::schema::diff::Algorithm::{self, *};
    let mut conn = connect().await;
    let db = scratch_name("algorithms");
    let head = "CREATE DATABASE shop; USE shop;
        CREATE TABLE team (id INT PRIMARY KEY);
        CREATE TABLE doc (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY ft (body));";
    let start = "id INT PRIMARY KEY, a INT, v VARCHAR(10), team_id INT";
    run_file(
        &mut conn,
        &format!("{head} CREATE TABLE item ({start}); INSERT INTO team VALUES (1); INSERT INTO item VALUES (1, 1, 'x', 1), (2, 2, 'y', 1);"),
        &renamed(&db),
    )
    .await;
    // Each step changes the previous one; the algorithms its ALTERs need, in order.
    let steps: Vec<(&str, String, Vec<Algorithm>)> = vec![
        ("a nullable column", format!("{start}, n INT"), vec![Instant]),
        ("an index", format!("{start}, n INT, KEY ix_v (v)"), vec![Nocopy]),
        (
            "a column and an index: the column apart, instantly",
            format!("{start}, n INT, m INT, KEY ix_v (v), KEY ix_a (a)"),
            vec![Instant, Nocopy],
        ),
        ("a longer VARCHAR", format!("{start}, n INT, m INT, KEY ix_v (v), KEY ix_a (a)").replace("VARCHAR(10)", "VARCHAR(40)"), vec![Instant]),
        ("NOT NULL", format!("{start}, n INT, m INT, KEY ix_v (v), KEY ix_a (a)").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![InplaceOnline]),
        ("a new type", format!("{start}, n BIGINT, m INT, KEY ix_v (v), KEY ix_a (a)").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![Copy]),
        ("a CHECK", format!("{start}, n BIGINT, m INT, KEY ix_v (v), KEY ix_a (a), CONSTRAINT pos CHECK (a > 0)").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![Copy]),
        ("a dropped index and CHECK", format!("{start}, n BIGINT, m INT, KEY ix_v (v)").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![Nocopy]),
        ("a foreign key", format!("{start}, n BIGINT, m INT, KEY ix_v (v), CONSTRAINT fk_team FOREIGN KEY (team_id) REFERENCES team (id)").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![Nocopy, Copy]),
        ("a comment", format!("{start}, n BIGINT, m INT, KEY ix_v (v), CONSTRAINT fk_team FOREIGN KEY (team_id) REFERENCES team (id)) COMMENT 'items'; CREATE TABLE unused (id INT").replace("VARCHAR(10)", "VARCHAR(40) NOT NULL"), vec![Instant]),
    ];
    for (what, cols, expected) in &steps {
        let text = format!("{head} CREATE TABLE item ({cols});");
        let desired = desired_as(&text, &db);
        let (_, m) = live::plan(&mut conn, &desired).await.unwrap();
        let predicted: Vec<Algorithm> = m
            .changes
            .iter()
            .filter(|c| c.table.as_deref() == Some("item"))
            .filter_map(|c| c.algorithm)
            .collect();
        assert_eq!(
            &predicted,
            expected,
            "{what}: the plan's algorithms {:#?}",
            m.statements()
        );
        let mut got = Vec::new();
        apply_locked(&mut conn, &desired, &allow_all(), &mut |e| {
            if let Event::After {
                change,
                algorithm: Some(a),
                ..
            } = e
            {
                if change.table.as_deref() == Some("item") {
                    got.push(a);
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&got, expected, "{what}: what the server ran them with");
    }
    // A table with a FULLTEXT index cannot take a column instantly: in place, and said so.
    let text = format!("{head} CREATE TABLE item ({}); ", steps.last().unwrap().1).replace(
        "FULLTEXT KEY ft (body))",
        "extra INT, FULLTEXT KEY ft (body))",
    );
    let desired = desired_as(&text, &db);
    let (_, m) = live::plan(&mut conn, &desired).await.unwrap();
    let doc: Vec<_> = m
        .changes
        .iter()
        .filter(|c| c.table.as_deref() == Some("doc"))
        .collect();
    assert_eq!(doc.len(), 1, "{:#?}", m.statements());
    assert_eq!(doc[0].algorithm, Some(Inplace));
    drop_databases(&mut conn, &[db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_foreign_key_or_auto_increment_needs_goes_after_them() {
    // The child table goes and, with it, the parent's key its foreign key needed; a column
    // loses AUTO_INCREMENT and the key it needed; another table's key moves off an
    // AUTO_INCREMENT column that stays.
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE parent (id INT PRIMARY KEY, code VARCHAR(10), UNIQUE KEY uq_code (code));
        CREATE TABLE child (id INT PRIMARY KEY, pcode VARCHAR(10),
          CONSTRAINT fk_code FOREIGN KEY (pcode) REFERENCES parent (code));
        CREATE TABLE counter (n INT AUTO_INCREMENT, label VARCHAR(10), KEY ix_n (n));
        CREATE TABLE seq (id INT AUTO_INCREMENT PRIMARY KEY, tag INT);";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE parent (id INT PRIMARY KEY);
        CREATE TABLE counter (n INT NOT NULL, label VARCHAR(10));
        CREATE TABLE seq (id INT AUTO_INCREMENT, tag INT, PRIMARY KEY (tag), KEY ix_id (id));";
    let ran = oracle_allowing("needs", a, b).await;
    assert!(
        ran[0].contains("DROP FOREIGN KEY `fk_code`"),
        "the child's key goes before the parent's index: {ran:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_the_url_names_is_in_scope_even_when_the_file_has_nothing_for_it() {
    let mut conn = connect().await;
    let db = scratch_name("in_scope");
    run_file(
        &mut conn,
        "CREATE DATABASE shop; USE shop; CREATE TABLE item (id INT PRIMARY KEY);",
        &renamed(&db),
    )
    .await;
    // A file with tables only for another database, loaded for a connection that names `db`.
    let desired = load(
        "CREATE DATABASE IF NOT EXISTS other_db; USE other_db; CREATE TABLE t (id INT);",
        &LoadOptions {
            default_database: Some(db.clone()),
            ..Default::default()
        },
    )
    .unwrap()
    .schema;
    assert!(desired.databases[&db].tables.is_empty());
    let (_, m) = live::plan(&mut conn, &desired).await.unwrap();
    let refused: Vec<String> = m
        .refused(&Allow::default())
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(
        refused,
        vec![format!("drops table {db}.item (empty)")],
        "no tables for the URL's database means drop its tables, refused: {:#?}",
        m.statements()
    );
    drop_databases(&mut conn, &[db, "other_db".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_options_primary_key_comments_and_the_binary_attribute_are_kept() {
    let a = "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
        CREATE TABLE item (id INT, code VARCHAR(10), PRIMARY KEY (id)) STATS_PERSISTENT=0 CHECKSUM=1;";
    let b = "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
        CREATE TABLE item (id INT, code VARCHAR(10) BINARY, PRIMARY KEY (id) COMMENT 'the item')
          ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8 PACK_KEYS=1 STATS_SAMPLE_PAGES=32;
        CREATE TABLE tag (label CHAR(8) BINARY NOT NULL, note TEXT BINARY, PRIMARY KEY (label) COMMENT 'natural')
          STATS_AUTO_RECALC=0 DEFAULT CHARSET=latin1;";
    oracle("options", a, b).await;
    // and back: options dropped from the file go back to their defaults
    oracle_allowing("options_back", b, a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_added_dropped_and_tables_repartitioned() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE metric (id INT, at DATE, v INT, PRIMARY KEY (id, at))
          PARTITION BY RANGE (YEAR(at)) (PARTITION p2020 VALUES LESS THAN (2021), PARTITION p2021 VALUES LESS THAN (2022));
        CREATE TABLE region (id INT, zone INT) PARTITION BY LIST (zone) (PARTITION north VALUES IN (1, 2), PARTITION south VALUES IN (3));
        CREATE TABLE shard (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 2;
        CREATE TABLE flat (id INT, k VARCHAR(5));
        CREATE TABLE daily (id INT, d DATE) PARTITION BY RANGE (TO_DAYS(d)) (PARTITION d1 VALUES LESS THAN (TO_DAYS('2024-01-01')), PARTITION dmax VALUES LESS THAN MAXVALUE);";
    // a RANGE grows at its end, a LIST loses a partition, a HASH changes its count, a table
    // gains partitioning with subpartitions, another loses it; bounds written as expressions
    // are compared by their value.
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE metric (id INT, at DATE, v INT, PRIMARY KEY (id, at))
          PARTITION BY RANGE (YEAR(at)) (PARTITION p2020 VALUES LESS THAN (2021), PARTITION p2021 VALUES LESS THAN (2022), PARTITION p2022 VALUES LESS THAN (2023), PARTITION pmax VALUES LESS THAN MAXVALUE);
        CREATE TABLE region (id INT, zone INT) PARTITION BY LIST (zone) (PARTITION north VALUES IN (1, 2));
        CREATE TABLE shard (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 4;
        CREATE TABLE flat (id INT, k VARCHAR(5)) PARTITION BY RANGE COLUMNS (k) SUBPARTITION BY HASH (id) SUBPARTITIONS 2
          (PARTITION lo VALUES LESS THAN ('m'), PARTITION hi VALUES LESS THAN (MAXVALUE));
        CREATE TABLE daily (id INT, d DATE);";
    let ran = oracle_allowing("partitions", a, b).await;
    let has = |what: &str| ran.iter().any(|s| s.contains(what));
    assert!(has("ADD PARTITION (PARTITION `p2022`"), "{ran:#?}");
    assert!(has("DROP PARTITION `south`"), "{ran:#?}");
    assert!(has("REMOVE PARTITIONING"), "{ran:#?}");
    // unchanged partitioning written with an expression bound: nothing to do
    let ran = oracle_allowing(
        "partitions_same",
        a,
        &a.replace(
            "CREATE TABLE flat (id INT, k VARCHAR(5));",
            "CREATE TABLE flat (id INT, k VARCHAR(6));",
        ),
    )
    .await;
    assert!(
        ran.iter()
            .all(|s| !s.contains("`daily`") && !s.contains("PARTITION")),
        "{ran:#?}"
    );

    // dropping a partition loses its rows: refused unless allowed, with the rows counted
    let mut conn = connect().await;
    let db = scratch_name("part_refuse");
    run_file(&mut conn, a, &renamed(&db)).await;
    mysql_async::prelude::Queryable::query_drop(
        &mut conn,
        format!("INSERT INTO `{db}`.region VALUES (1, 3)"),
    )
    .await
    .unwrap();
    let (_, m) = live::plan(&mut conn, &desired_as(b, &db)).await.unwrap();
    let refused: Vec<String> = m
        .refused(&Allow::default())
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert!(
        refused.iter().any(|r| r.contains("drops partition south")),
        "{refused:#?}"
    );
    drop_databases(&mut conn, &[db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_methods_and_the_declared_order_of_a_new_tables_indexes_are_kept() {
    use mysql_async::prelude::Queryable;
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, a INT, b INT, KEY k_a (a));";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE item (id INT PRIMARY KEY, a INT, b INT, KEY k_a (a) USING HASH, KEY k_b USING BTREE (b));
        CREATE TABLE fresh_one (id INT PRIMARY KEY, x INT, y INT, z INT,
          KEY zz (z), UNIQUE KEY yy (y) USING BTREE, KEY xx (x));
        CREATE INDEX ww ON fresh_one (x, y);";
    let ran = oracle("methods", a, b).await;
    assert!(ran.iter().any(|s| s.contains("USING HASH")), "{ran:#?}");
    // a method the file no longer names goes too (and a long UNIQUE's implicit HASH is no change)
    let c = b.replace(" USING HASH", "").replace(" USING BTREE", "");
    let long = "CREATE TABLE doc (id INT PRIMARY KEY, body TEXT, UNIQUE KEY u_body (body));";
    let ran = oracle(
        "methods_removed",
        &format!(
            "{b}
{long}"
        ),
        &format!(
            "{c}
{long}"
        ),
    )
    .await;
    assert!(
        ran.iter().any(|s| s.contains("ADD INDEX `k_a` (`a`)"))
            && !ran.iter().any(|s| s.contains("u_body")),
        "{ran:#?}"
    );
    // the raw SHOW CREATE TABLE (keys not sorted) of the new table is a fresh install's
    let mut conn = connect().await;
    let (m, f) = (scratch_name("order_m"), scratch_name("order_f"));
    run_file(&mut conn, a, &renamed(&m)).await;
    run_file(&mut conn, b, &renamed(&f)).await;
    live::apply(
        &mut conn,
        &desired_as(b, &m),
        &Allow::default(),
        &mut |_| Ok(()),
    )
    .await
    .unwrap();
    let show = |db: String| async move {
        let mut conn = connect().await;
        let row: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE `{db}`.fresh_one"))
            .await
            .unwrap();
        row.unwrap().1
    };
    assert_eq!(show(m.clone()).await, show(f.clone()).await);
    drop_databases(&mut conn, &[m, f]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spatial_columns_keep_their_reference_system_and_spatial_indexes() {
    let a = "CREATE DATABASE shop; USE shop;
        CREATE TABLE place (id INT PRIMARY KEY, at POINT NOT NULL, area POLYGON REF_SYSTEM_ID=4326, SPATIAL KEY sp_at (at));";
    let b = "CREATE DATABASE shop; USE shop;
        CREATE TABLE place (id INT PRIMARY KEY, at POINT REF_SYSTEM_ID=4326 NOT NULL, area POLYGON REF_SYSTEM_ID = 3857,
          route LINESTRING, SPATIAL KEY sp_at (at));
        CREATE TABLE zone (id INT PRIMARY KEY, shape GEOMETRY REF_SYSTEM_ID=4326 NOT NULL, SPATIAL INDEX sp_shape (shape));";
    let ran = oracle("spatial", a, b).await;
    assert!(
        ran.iter().any(|s| s.contains("REF_SYSTEM_ID=3857")),
        "{ran:#?}"
    );
    let mut conn = connect().await;
    let db = scratch_name("srid");
    run_file(&mut conn, b, &renamed(&db)).await;
    let live = live::inspect(&mut conn, std::slice::from_ref(&db))
        .await
        .unwrap();
    let t = live.table(&db, "place").unwrap();
    assert_eq!(t.column("area").unwrap().srid, Some(3857));
    assert_eq!(t.column("route").unwrap().srid, None);
    drop_databases(&mut conn, &[db]).await;
}
