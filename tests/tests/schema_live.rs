//! Schema migration against a real MariaDB (started by `scripts/test.sh`).

use std::collections::BTreeMap;
use steps::schema::diff::Allow;
use steps::schema::live::{self, Event};
use steps::schema::sql::{load, LoadOptions};
use steps::schema::Schema;
use tests::db::{connect, drop_databases, run_file, scratch_name, show_create_all};

const DBS: [&str; 2] = ["agent_platform", "agent_custom_table"];

fn nuwax(v: u32) -> String {
    let path = format!(
        "{}/../../shared/fixtures/nuwax/mysql/v{v}_init_mysql.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn renamed(names: &[String]) -> BTreeMap<String, String> {
    DBS.iter()
        .map(|d| d.to_string())
        .zip(names.iter().cloned())
        .collect()
}

/// The live schema of `names`, with the scratch names put back to the product's.
async fn inspect_as_product(conn: &mut mysql_async::Conn, names: &[String]) -> Schema {
    let mut s = live::inspect(conn, names).await.unwrap();
    for (product, scratch) in DBS.iter().zip(names) {
        s.rename_database(scratch, product);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nuwax suite: needs ../shared/fixtures/nuwax; scripts/test.sh runs it with --ignored"]
async fn nuwax_chain_migrates_to_exactly_what_a_fresh_install_of_each_version_has() {
    let mut conn = connect().await;
    let migrated: Vec<String> = DBS
        .iter()
        .map(|d| scratch_name(&format!("m_{d}")))
        .collect();
    run_file(&mut conn, &nuwax(1), &renamed(&migrated)).await;
    let mut cleanup = migrated.clone();
    for v in 2..=4 {
        let text = nuwax(v);
        let desired = load(
            &text,
            &LoadOptions {
                rename: renamed(&migrated),
                ..Default::default()
            },
        )
        .unwrap()
        .schema;
        let mut ran = Vec::new();
        live::lock(&mut conn, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let changes = live::apply(&mut conn, &desired, &Allow::default(), &mut |e| {
            if let Event::After { change, .. } = e {
                ran.push(change.sql.clone());
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("v{}->v{v}: {e}", v - 1));
        live::unlock(&mut conn).await;
        assert!(!changes.is_empty(), "v{}->v{v} changes something", v - 1);
        eprintln!(
            "v{}->v{v}: {} statements\n{}",
            v - 1,
            changes.len(),
            ran.join(";\n")
        );
        assert_eq!(ran.len(), changes.len(), "every statement audited");

        let fresh: Vec<String> = DBS
            .iter()
            .map(|d| scratch_name(&format!("f{v}_{d}")))
            .collect();
        run_file(&mut conn, &text, &renamed(&fresh)).await;
        cleanup.extend(fresh.iter().cloned());
        let a = inspect_as_product(&mut conn, &migrated).await;
        let b = inspect_as_product(&mut conn, &fresh).await;
        for db in DBS {
            let (ta, tb) = (&a.databases[db].tables, &b.databases[db].tables);
            assert_eq!(
                ta.keys().collect::<Vec<_>>(),
                tb.keys().collect::<Vec<_>>(),
                "v{v}: tables of {db}"
            );
            for (name, t) in ta {
                assert_eq!(t, &tb[name], "v{v}: {db}.{name}");
            }
        }
        for (m, f) in migrated.iter().zip(&fresh) {
            assert_eq!(
                show_create_all(&mut conn, m).await,
                show_create_all(&mut conn, f).await,
                "v{v}: SHOW CREATE TABLE of {m}"
            );
        }
        // applying again changes nothing
        let (_, again) = live::plan(&mut conn, &desired).await.unwrap();
        assert!(
            again.is_empty(),
            "v{v}: second plan is not empty: {:#?}",
            again.statements()
        );
    }
    drop_databases(&mut conn, &cleanup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migration_waits_for_the_lock_and_gives_up_clearly() {
    let url = tests::db::database_url();
    let mut first = live::connect(&url).await.unwrap();
    let mut second = live::connect(&url).await.unwrap();
    live::lock(&mut first, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let err = live::lock(&mut second, std::time::Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("another migration holds the schema lock"),
        "{err}"
    );
    live::unlock(&mut first).await;
    live::lock(&mut second, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    live::unlock(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "nuwax suite: needs ../shared/fixtures/nuwax; scripts/test.sh runs it with --ignored"]
async fn nuwax_v4_mariadb_dump_of_a_live_database_loads_to_the_same_model() {
    let mut conn = connect().await;
    let names: Vec<String> = DBS
        .iter()
        .map(|d| scratch_name(&format!("dump_{d}")))
        .collect();
    run_file(&mut conn, &nuwax(4), &renamed(&names)).await;
    let mut args = vec!["--databases"];
    args.extend(names.iter().map(String::as_str));
    let dump = tests::db::dump_schema(&args);
    assert!(
        dump.contains("/*!40101"),
        "a real dump, with executable comments"
    );
    let loaded = load(&dump, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("the dump does not load: {e}"));
    let kinds: std::collections::BTreeSet<&str> =
        loaded.skipped.iter().map(|s| s.kind.as_str()).collect();
    assert!(kinds.contains("SET"), "{kinds:?}");
    let live = live::inspect(&mut conn, &names).await.unwrap();
    let (_, m) = live::plan(&mut conn, &loaded.schema).await.unwrap();
    assert!(
        m.is_empty(),
        "the dump's model differs from the live one: {:#?}",
        m.statements()
    );
    assert_eq!(loaded.schema.table_count(), live.table_count());
    drop_databases(&mut conn, &names).await;
}
