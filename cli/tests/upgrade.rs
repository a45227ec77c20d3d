//! `molt upgrade` on a real product: the example product (fixtures/product) with its MariaDB
//! as a compose service, published by a vendor on a local HTTP server, installed and upgraded
//! by the real binary against the real Docker Engine. What an operator would check: what the
//! app serves, the schema and the rows, the `.env`, the running images, the journal.

mod common;

use common::{molt_in, text};
use std::process::Output;
use tests::product::{releases, Site, Vendor};

fn molt(site: &Site, args: &[&str]) -> Output {
    molt_in(&site.root, None, args)
}

#[track_caller]
fn code(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", text(out));
}

async fn add_rows(site: &Site, rows: &[&str]) {
    use mysql_async::prelude::*;
    let mut c = site.db().await;
    for r in rows {
        c.exec_drop("INSERT INTO notes (body) VALUES (?)", (r,))
            .await
            .unwrap();
    }
    let _ = c.disconnect().await;
}

/// The schema a fresh database gets from a release's schema file (on the test MariaDB).
async fn fresh_schema(version: &str) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(releases().join(version).join("schema/app.sql")).unwrap();
    let mut c = tests::db::connect().await;
    let db = tests::db::scratch_name("example");
    use mysql_async::prelude::*;
    c.query_drop(format!("CREATE DATABASE `{db}`"))
        .await
        .unwrap();
    let text = format!("USE `{db}`;\n{text}");
    tests::db::run_file(&mut c, &text, &Default::default()).await;
    let s = tests::db::show_create_all(&mut c, &db).await;
    tests::db::drop_databases(&mut c, &[db]).await;
    s
}

fn installed(site: &Site) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(site.root.join("installed.json")).unwrap()).unwrap()
}

/// First install of 1.0.0 with rows written under it.
async fn install_1(vendor: &Vendor, site: &Site) {
    let out = molt(site, &["upgrade", "--yes"]);
    code(&out, 0);
    assert_eq!(site.app("/version").as_deref(), Some("1.0.0"));
    assert_eq!(site.current().as_deref(), Some("releases/1.0.0"));
    add_rows(site, &["written under 1.0.0", "another"]).await;
    let _ = vendor;
}

#[tokio::test(flavor = "multi_thread")]
async fn installs_then_upgrades_by_patch_and_by_full_package_keeping_data_and_env() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    let patch = Site::new(&vendor);
    let full = Site::new(&vendor);
    for site in [&patch, &full] {
        install_1(&vendor, site).await;
        // the operator's values were kept, the template's other keys added
        let env = std::fs::read_to_string(site.root.join("shared/.env")).unwrap();
        assert!(
            env.contains(&format!("MYSQL_PASSWORD={}", site.password)),
            "{env}"
        );
        assert!(env.contains("MYSQL_USER=app"), "{env}");
        assert_eq!(
            site.app("/greeting").as_deref(),
            Some("hi from the operator")
        );
        assert_eq!(site.schema().await, fresh_schema("1.0.0").await);
    }
    vendor.publish("2.0.0", Some("1.0.0"));

    // dry run: the plan, nothing changed, no journal run
    let runs_before = molt(&patch, &["journal", "list", "--json"]);
    let dry = molt(&patch, &["upgrade", "--dry-run"]);
    code(&dry, 0);
    let shown = String::from_utf8_lossy(&dry.stdout);
    assert!(
        shown.contains("upgrade 1.0.0 -> 2.0.0 (patch package"),
        "{shown}"
    );
    assert!(
        shown.contains("services to stop:") && shown.contains("app"),
        "{shown}"
    );
    assert!(shown.contains("migrate schema to release 2.0.0"), "{shown}");
    assert_eq!(
        molt(&patch, &["journal", "list", "--json"]).stdout,
        runs_before.stdout
    );
    assert!(!patch.root.join("releases/2.0.0").exists());
    assert_eq!(patch.app("/version").as_deref(), Some("1.0.0"));

    let rows_before = patch.rows().await;
    for (site, extra) in [(&patch, None), (&full, Some("--force-full"))] {
        let mut args = vec!["upgrade", "--yes"];
        args.extend(extra);
        let out = molt(site, &args);
        code(&out, 0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("committed") && stdout.contains("downtime:"),
            "{}",
            text(&out)
        );
        assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
        assert_eq!(site.current().as_deref(), Some("releases/2.0.0"));
        assert_eq!(
            site.schema().await,
            fresh_schema("2.0.0").await,
            "the schema is 2.0.0's"
        );
        let rows = site.rows().await;
        let notes: Vec<&String> = rows["notes"].iter().collect();
        assert_eq!(notes.len(), 2, "{rows:?}");
        assert!(notes[0].contains("written under 1.0.0"), "{notes:?}");
        let env = std::fs::read_to_string(site.root.join("shared/.env")).unwrap();
        assert!(
            env.contains(&format!("MYSQL_PASSWORD={}", site.password)),
            "{env}"
        );
        assert!(
            env.contains("FEATURE_TAGS=on"),
            "the new key is added: {env}"
        );
        assert_eq!(
            site.app("/greeting").as_deref(),
            Some("hi from the operator")
        );
        let inst = installed(site);
        assert_eq!(inst["version"], "2.0.0");
        assert_eq!(inst["previous"], "1.0.0");
        assert!(inst["downtime_ms"].as_u64().is_some(), "{inst}");
        // the backup taken at the stop is kept, compressed, and verifies
        let backup = inst["backup"].as_str().unwrap().to_string();
        let v = molt(site, &["backup", "verify", &backup]);
        code(&v, 0);
        let images = site.running_images();
        let want = std::fs::read_to_string(releases().join("2.0.0/release.toml")).unwrap();
        for id in images.values() {
            assert!(
                want.contains(id.as_str()),
                "{images:?} runs an image 2.0.0 does not name"
            );
        }
    }
    assert_eq!(rows_before["notes"].len(), 2);

    // the journal tells the story: one committed upgrade run with its steps and times
    let list = molt(&patch, &["journal", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let last = runs["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["plan"], "upgrade", "{last}");
    assert_eq!(last["state"], "committed", "{last}");
    // nothing newer: nothing to do
    let again = molt(&patch, &["upgrade", "--yes"]);
    code(&again, 0);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to upgrade"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_becomes_healthy_is_rolled_back_with_identical_data() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("2.0.0", None);
    let site = Site::new(&vendor);
    code(&molt(&site, &["upgrade", "--yes"]), 0);
    add_rows(&site, &["kept through a failed upgrade"]).await;
    std::fs::write(
        site.root.join("shared/uploads/photo.jpg"),
        b"operator's upload",
    )
    .unwrap();
    let rows = site.rows().await;
    let schema = site.schema().await;
    let images = site.running_images();
    let log_before = std::fs::read_to_string(site.root.join("shared/logs/app.log")).unwrap();
    vendor.publish("2.1.0", Some("2.0.0"));

    let out = molt(&site, &["upgrade", "--yes"]);
    code(&out, 4);
    let all = text(&out);
    // the failing service's health output and log lines are on screen
    assert!(
        all.contains("service app") && all.contains("last healthcheck"),
        "{all}"
    );
    assert!(all.contains("downtime:"), "{all}");
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
    assert_eq!(site.current().as_deref(), Some("releases/2.0.0"));
    assert_eq!(
        site.running_images(),
        images,
        "the old release's images run again"
    );
    assert_eq!(
        site.schema().await,
        schema,
        "2.1.0's table is gone with its data"
    );
    assert_eq!(site.rows().await, rows);
    assert_eq!(
        std::fs::read(site.root.join("shared/uploads/photo.jpg")).unwrap(),
        b"operator's upload"
    );
    // the log is the one sealed at the stop, plus the old release starting again
    let log = std::fs::read_to_string(site.root.join("shared/logs/app.log")).unwrap();
    assert!(log.starts_with(&log_before), "{log}");
    let after: Vec<&str> = log[log_before.len()..].lines().collect();
    assert_eq!(after.len(), 1, "{log}");
    assert!(after[0].ends_with("app 2.0.0 started"), "{log}");
    assert!(!log.contains("2.1.0"), "what 2.1.0 wrote is gone: {log}");
    assert_eq!(installed(&site)["version"], "2.0.0");
    assert!(!site.root.join("releases/2.1.0").exists());
    // the journal holds the reason with the health output
    let show = molt(&site, &["journal", "show", "2", "--json"]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("last healthcheck"),
        "{}",
        text(&show)
    );
}
