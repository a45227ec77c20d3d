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
    // The patch site notifies a webhook that is down: the upgrade completes all the same, and
    // every attempt is in notify.log.
    let dead = format!("http://127.0.0.1:{}/hook", tests::free_port());
    let mut toml = std::fs::read_to_string(patch.root.join("molt.toml")).unwrap();
    toml.push_str(&format!(
        "\n[notify]\nwebhook = \"{dead}\"\nretries = 2\nbackoff_ms = 50\ntimeout_secs = 2\n"
    ));
    std::fs::write(patch.root.join("molt.toml"), toml).unwrap();
    // The full site notifies a live one: the committed upgrade, its versions and downtime.
    let hook = tests::http::Server::start();
    hook.put("/hook", Vec::new(), tests::http::Fault::None);
    let mut toml = std::fs::read_to_string(full.root.join("molt.toml")).unwrap();
    toml.push_str(&format!(
        "\n[notify]\nwebhook = \"{}\"\n",
        hook.url("/hook")
    ));
    std::fs::write(full.root.join("molt.toml"), toml).unwrap();
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
    let log = std::fs::read_to_string(patch.root.join("notify.log")).unwrap();
    let attempts: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(attempts.len(), 3, "one try and two retries: {log}");
    assert!(attempts.iter().all(|a| a["ok"] == false), "{log}");
    assert_eq!(attempts[2]["attempt"], 3, "{log}");
    let posts: Vec<_> = hook
        .log()
        .into_iter()
        .filter(|l| l.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(sent["outcome"], "committed", "{sent}");
    assert_eq!(
        (sent["from"].as_str(), sent["to"].as_str()),
        (Some("1.0.0"), Some("2.0.0"))
    );
    assert_eq!(
        sent["downtime_ms"],
        installed(&full)["downtime_ms"],
        "{sent}"
    );
    assert_eq!(sent["reason"], serde_json::Value::Null, "{sent}");
    assert!(!String::from_utf8_lossy(&posts[0].body).contains(&full.password));

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
    // Both notification channels: a webhook on a real local server, a command.
    let hook = tests::http::Server::start();
    hook.put("/hook", Vec::new(), tests::http::Fault::None);
    let payload_file = site.root.join("payload.json");
    let mut toml = std::fs::read_to_string(site.root.join("molt.toml")).unwrap();
    toml.push_str(&format!(
        "\n[notify]\nwebhook = \"{}\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > '{}'\"]\n",
        hook.url("/hook"),
        payload_file.display()
    ));
    std::fs::write(site.root.join("molt.toml"), toml).unwrap();
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
    // The notification: on the webhook and to the command, the same JSON, with the failing
    // service's health output, and without the operator's secrets.
    let posts: Vec<_> = hook
        .log()
        .into_iter()
        .filter(|l| l.method == "POST" && l.path == "/hook")
        .collect();
    assert_eq!(posts.len(), 1, "one POST");
    let sent: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(
        sent,
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&payload_file).unwrap())
            .unwrap()
    );
    assert_eq!(sent["outcome"], "rolled_back", "{sent}");
    assert_eq!(sent["from"], "2.0.0", "{sent}");
    assert_eq!(sent["to"], "2.1.0", "{sent}");
    assert!(sent["downtime_ms"].as_u64().is_some(), "{sent}");
    let reason = sent["reason"].as_str().unwrap();
    assert!(
        reason.contains("service app") && reason.contains("last healthcheck"),
        "{sent}"
    );
    assert!(
        !String::from_utf8_lossy(&posts[0].body).contains(&site.password),
        "{sent}"
    );
    // The upgrade timer does not try the failed release again every time it fires: only an
    // operator's own `molt upgrade` does.
    let out = molt(&site, &["--json", "upgrade", "--unattended"]);
    code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "skipped", "{v}");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("the last upgrade to 2.1.0 (run 2) rolled back"),
        "{v}"
    );
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
    assert!(!site.root.join("releases/2.1.0").exists());
}

/// The automatic rollback brings the old containers back through the API (they were kept
/// aside, stopped, since the cut-over). Killed between two of its waves of starts, it is
/// finished by `molt recover`: the old release serves from its own containers, one per
/// service, and the new release's are gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_killed_while_the_old_containers_come_back_is_finished_by_recover() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("2.0.0", None);
    let site = Site::new(&vendor);
    code(&molt(&site, &["upgrade", "--yes"]), 0);
    // the first install's housekeeping kept 2.0.0's start order for the next upgrade's
    // rollback, so that upgrade asks compose only about the new release
    let kept = |v: &str| -> serde_json::Value {
        let p = site.root.join(format!("cache/start-order/{v}.json"));
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let order = kept("2.0.0")["order"].clone();
    let services: Vec<&str> = order
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert!(
        services.contains(&"db") && services.contains(&"app"),
        "{order}"
    );
    add_rows(&site, &["kept through a killed rollback"]).await;
    let rows = site.rows().await;
    let images = site.running_images();
    let names = site.container_names();
    vendor.publish("2.1.0", Some("2.0.0"));
    let out = common::molt_in(
        &site.root,
        Some("steps::upgrade::brought_back_wave=return"),
        &["upgrade", "--yes"],
    );
    assert!(common::aborted(&out), "{}", text(&out));
    // killed after the first wave (the database): the old app is set aside, not running
    assert_eq!(site.app("/version"), None);
    let out = molt(&site, &["recover"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(4)),
        "{}",
        text(&out)
    );
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
    assert_eq!(site.current().as_deref(), Some("releases/2.0.0"));
    assert_eq!(site.running_images(), images, "{}", text(&out));
    assert_eq!(
        site.container_names(),
        names,
        "the old containers, under their own names, and no other"
    );
    assert_eq!(site.rows().await, rows);
    let show = molt(&site, &["journal", "show", "2", "--json"]);
    let journal = String::from_utf8_lossy(&show.stdout);
    assert!(journal.contains("old_order"), "{journal}");
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    fn find<'a>(v: &'a serde_json::Value, key: &str, out: &mut Vec<&'a serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                out.extend(m.get(key));
                m.values().for_each(|v| find(v, key, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| find(v, key, out)),
            _ => {}
        }
    }
    let mut old_orders = Vec::new();
    find(&v["records"], "old_order", &mut old_orders);
    assert!(!old_orders.is_empty(), "{journal}");
    assert!(old_orders.iter().all(|o| **o == order), "{journal}");
    // the stand-by kept the new release's order too, for the upgrade after it
    assert!(kept("2.1.0")["order"].as_array().is_some());
}

/// What the site looked like with 1.0.0 serving, and what 2.0.0 must look like.
struct Expect {
    old_schema: std::collections::BTreeMap<String, String>,
    new_schema: std::collections::BTreeMap<String, String>,
    old_rows: std::collections::BTreeMap<String, Vec<String>>,
    old_env: Vec<u8>,
    old_log: String,
}

/// A site with 1.0.0 installed and rows written, the server naming 2.0.0 afterwards.
async fn old_site(vendor: &Vendor) -> (Site, Expect) {
    vendor.show("1.0.0");
    let site = Site::new(vendor);
    install_1(vendor, &site).await;
    std::fs::write(site.root.join("shared/uploads/a.txt"), b"upload").unwrap();
    vendor.show("2.0.0");
    let e = Expect {
        old_schema: site.schema().await,
        new_schema: fresh_schema("2.0.0").await,
        old_rows: site.rows().await,
        old_env: std::fs::read(site.root.join("shared/.env")).unwrap(),
        old_log: std::fs::read_to_string(site.root.join("shared/logs/app.log")).unwrap(),
    };
    (site, e)
}

fn release_images(version: &str) -> Vec<String> {
    let t = std::fs::read_to_string(releases().join(version).join("release.toml")).unwrap();
    t.lines()
        .filter_map(|l| l.split_once("= \"sha256:"))
        .map(|(_, id)| format!("sha256:{}", id.trim_end_matches('"')))
        .collect()
}

/// After recovery the site is exactly 1.0.0 (false) or exactly 2.0.0 (true); panics otherwise.
async fn exactly_old_or_new(site: &Site, e: &Expect, case: &str) -> bool {
    let new = site.current().as_deref() == Some("releases/2.0.0");
    let v = if new { "2.0.0" } else { "1.0.0" };
    assert_eq!(site.current(), Some(format!("releases/{v}")), "{case}");
    assert_eq!(installed(site)["version"], v, "{case}");
    assert_eq!(
        site.app("/version").as_deref(),
        Some(v),
        "{case}: the app serves"
    );
    let mut running: Vec<String> = site.running_images().into_values().collect();
    running.sort();
    let mut want = release_images(v);
    want.sort();
    assert_eq!(
        running, want,
        "{case}: the running containers' images are {v}'s"
    );
    // one container per service: no stand-by or old container is left behind
    for (service, names) in site.container_names() {
        assert_eq!(
            names.len(),
            1,
            "{case}: the containers of {service}: {names:?}"
        );
    }
    assert_eq!(
        std::fs::read(site.root.join("shared/uploads/a.txt")).unwrap(),
        b"upload",
        "{case}"
    );
    let log = std::fs::read_to_string(site.root.join("shared/logs/app.log")).unwrap();
    assert!(log.starts_with(&e.old_log), "{case}: {log}");
    let rows = site.rows().await;
    if new {
        assert_eq!(
            site.schema().await,
            e.new_schema,
            "{case}: schema is 2.0.0's"
        );
        let bodies = |r: &Vec<String>| -> Vec<String> {
            r.iter()
                .map(|l| l.split('|').take(2).collect::<Vec<_>>().join("|"))
                .collect()
        };
        assert_eq!(
            bodies(&rows["notes"]),
            bodies(&e.old_rows["notes"]),
            "{case}"
        );
        let env = std::fs::read_to_string(site.root.join("shared/.env")).unwrap();
        assert!(env.contains("FEATURE_TAGS=on"), "{case}: {env}");
    } else {
        assert_eq!(
            site.schema().await,
            e.old_schema,
            "{case}: schema is 1.0.0's"
        );
        assert_eq!(rows, e.old_rows, "{case}: the rows are as they were");
        assert_eq!(
            std::fs::read(site.root.join("shared/.env")).unwrap(),
            e.old_env,
            "{case}: the .env is as it was"
        );
        assert!(
            !log.contains("app 2.0.0"),
            "{case}: 2.0.0 wrote nothing that stayed: {log}"
        );
    }
    // nothing is left to recover
    let again = molt(site, &["recover"]);
    code(&again, 0);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{case}: {}",
        text(&again)
    );
    new
}

/// Recover a killed run the way `k` picks: the boot-time policy, or the operator's choice.
fn recover(site: &Site, k: usize, case: &str) {
    let how = ["recover", "resume", "rollback"][k % 3];
    let mut out = molt(site, &[how]);
    if how == "rollback" && text(&out).contains("can only be resumed") {
        // housekeeping (forward-only, after the commit) had started: resume is the way
        code(&out, 1);
        out = molt(site, &["resume"]);
    }
    assert!(
        matches!(out.status.code(), Some(0) | Some(4)),
        "{case}: molt {how}: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_anywhere_in_the_upgrade_recovers_to_exactly_old_or_exactly_new() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    // every step: with its intent durable before it runs, and after it ran before its done
    // record; then points inside steps
    let mut cases: Vec<String> = Vec::new();
    let (probe, _) = old_site(&vendor).await;
    let dry = molt(&probe, &["upgrade", "--dry-run", "--json"]);
    let steps = serde_json::from_slice::<serde_json::Value>(&dry.stdout).unwrap()["steps"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(steps > 10, "{}", text(&dry));
    drop(probe);
    for k in 0..steps {
        cases.push(format!("engine::after_sync={k}*off->return"));
        cases.push(format!("engine::after_apply={k}*off->return"));
    }
    for k in 0..3 {
        cases.push(format!("steps::schema::statement_done={k}*off->return"));
    }
    cases.push("steps::backup::precopy_entry=5*off->return".into());
    cases.push("steps::switch_link::stashed=return".into());
    cases.push("steps::upgrade::standby_created=return".into());
    // inside the stop: the app stopped, the database still running
    cases.push("steps::upgrade::stopped_wave=return".into());
    cases.push("steps::services::started_wave=return".into());
    cases.push("steps::housekeeping::compressed=return".into());
    let (mut old, mut new) = (0, 0);
    let mut site: Option<(Site, Expect)> = None;
    for (k, fp) in cases.iter().enumerate() {
        if site.is_none() {
            site = Some(old_site(&vendor).await);
        }
        let (s, e) = site.as_ref().unwrap();
        let out = molt_in(&s.root, Some(fp), &["upgrade", "--yes"]);
        if common::aborted(&out) {
            recover(s, k, fp);
        } else {
            // a point this plan passes fewer times: the run ended on its own
            assert_eq!(out.status.code(), Some(0), "{fp}: {}", text(&out));
        }
        if exactly_old_or_new(s, e, fp).await {
            new += 1;
            site = None;
        } else {
            assert!(
                !s.root.join("releases/2.0.0").exists(),
                "{fp}: the staged release is gone"
            );
            old += 1;
        }
    }
    eprintln!(
        "crash matrix: {} kills at failpoints: {old} ended exactly old, {new} exactly new",
        cases.len()
    );
    assert!(old > 0 && new > 0, "both outcomes occur");

    // kills at random instants (SIGKILL from outside, wherever the child is)
    let mut seed: u64 = std::env::var("MOLT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d6f6c74);
    eprintln!("random kills: seed {seed} (MOLT_CRASH_SEED)");
    let kills: usize = std::env::var("MOLT_RANDOM_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (mut rold, mut rnew) = (0, 0);
    for k in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = std::time::Duration::from_millis(seed % 7000);
        if site.is_none() {
            site = Some(old_site(&vendor).await);
        }
        let (s, e) = site.as_ref().unwrap();
        let mut child = std::process::Command::new(common::MOLT)
            .current_dir(&s.root)
            .args(["--root"])
            .arg(&s.root)
            .args(["upgrade", "--yes"])
            .env("MOLT_LOG", "error")
            .env_remove("MOLT_FAILPOINTS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        let mut finished = false;
        while t.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let case = format!("random kill {k} after {after:?}");
        if !finished {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        recover(s, k, &case);
        if exactly_old_or_new(s, e, &case).await {
            rnew += 1;
            site = None;
        } else {
            rold += 1;
        }
    }
    eprintln!("random kills: {kills}: {rold} ended exactly old, {rnew} exactly new");
}

/// An upgrade refused before the stop: exit 4 (the run rolled back), the old services never
/// stopped, the site exactly as it was, the message naming what is wrong.
async fn refused_before_the_stop(site: &Site, e: &Expect, want: &[&str]) {
    let started = site.started_at();
    let out = molt(site, &["upgrade", "--yes"]);
    code(&out, 4);
    let all = text(&out);
    for w in want {
        assert!(all.contains(w), "the message names {w:?}: {all}");
    }
    assert_eq!(
        site.started_at(),
        started,
        "the old services were never stopped: {all}"
    );
    assert!(!exactly_old_or_new(site, e, want[0]).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_the_stop_or_rolled_back_with_a_clear_message() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    let (site, e) = old_site(&vendor).await;

    // a compose file that does not parse
    vendor.publish_variant("2.0.0", "2.0.1", "1.0.0", |d| {
        std::fs::write(
            d.join("docker-compose.yml"),
            "services:\n  app: [unclosed\n",
        )
        .unwrap();
    });
    refused_before_the_stop(&site, &e, &["check releases/2.0.1", "compose"]).await;

    // a release whose image tarball is missing
    vendor.publish_variant("2.0.0", "2.0.2", "1.0.0", |d| {
        std::fs::remove_file(d.join("images/app.tar")).unwrap();
    });
    refused_before_the_stop(&site, &e, &["images/app.tar"]).await;

    // a destructive schema change the release does not allow: notes.created_at dropped
    vendor.publish_variant("2.0.0", "2.0.3", "1.0.0", |d| {
        let schema = std::fs::read_to_string(d.join("schema/app.sql")).unwrap();
        let kept: Vec<&str> = schema
            .lines()
            .filter(|l| !l.contains("created_at TIMESTAMP"))
            .collect();
        let kept = kept
            .join("\n")
            .replace("KEY idx_created (created_at)", "KEY idx_body (body)");
        std::fs::write(d.join("schema/app.sql"), kept).unwrap();
    });
    refused_before_the_stop(&site, &e, &["plan schema", "created_at"]).await;

    // a disk too small for the download, the release and the backup: refused before a run
    let small = tempfile::tempdir().unwrap();
    let _tmpfs = common::Tmpfs::mount(small.path(), "40m");
    vendor.show("1.0.0");
    let tiny = Site::new_in(&vendor, Some(small.path()));
    let out = molt(&tiny, &["upgrade", "--yes"]);
    code(&out, 1);
    assert!(
        text(&out).contains("not enough disk space") && text(&out).contains("nothing was changed"),
        "{}",
        text(&out)
    );
    assert!(!tiny.root.join("journal").exists() && !tiny.root.join("releases").exists());
    drop(tiny);
    vendor.show("2.0.3");

    // the database unreachable: refused before a run exists
    let toml = std::fs::read_to_string(site.root.join("molt.toml")).unwrap();
    std::fs::write(site.root.join("molt.toml"), toml.replace("${DB_PORT}", "1")).unwrap();
    let runs = molt(&site, &["journal", "list", "--json"]).stdout;
    let out = molt(&site, &["upgrade", "--yes"]);
    code(&out, 1);
    assert!(
        text(&out).contains("database does not answer")
            && text(&out).contains("nothing was changed"),
        "{}",
        text(&out)
    );
    assert_eq!(
        molt(&site, &["journal", "list", "--json"]).stdout,
        runs,
        "no run was started"
    );
    std::fs::write(site.root.join("molt.toml"), &toml).unwrap();

    // a second upgrade while one runs: refused, naming the holder
    vendor.show("2.0.0");
    let mut first = std::process::Command::new(common::MOLT)
        .arg("--root")
        .arg(&site.root)
        .args(["upgrade", "--yes"])
        .env("MOLT_FAILPOINTS", "engine::after_apply=1*off->sleep(3000)")
        .env("MOLT_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // once it holds the installation (status names the holder), a second one is refused
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&molt(&site, &["status", "--json"]).stdout)
        .contains("\"holder\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first upgrade never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = molt(&site, &["upgrade", "--yes"]);
    code(&second, 3);
    assert!(
        text(&second).contains("molt upgrade"),
        "the holder is named: {}",
        text(&second)
    );
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the first upgrade finished");

    // a destructive change the release vouches for (allow_destructive) goes through
    vendor.publish_variant("2.2.0", "2.2.1", "2.0.0", |d| {
        let toml = std::fs::read_to_string(d.join("release.toml")).unwrap();
        let toml = toml.replace(
            "env_template",
            "allow_destructive = [\"app.notes.author\"]\nenv_template",
        );
        std::fs::write(d.join("release.toml"), toml).unwrap();
    });
    let out = molt(&site, &["upgrade", "--yes"]);
    code(&out, 0);
    let schema = site.schema().await;
    assert!(!schema["notes"].contains("author"), "{schema:?}");
    assert_eq!(site.app("/version").as_deref(), Some("2.2.0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docker_daemon_gone_while_starting_halts_the_rollback_until_it_is_back() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    let (site, e) = old_site(&vendor).await;
    let sock = site.root.join("docker.sock");
    let proxy = tests::proxy::DockerProxy::start(&sock);
    let child = std::process::Command::new(common::MOLT)
        .arg("--root")
        .arg(&site.root)
        .args(["upgrade", "--yes"])
        .env("DOCKER_HOST", proxy.host())
        .env("MOLT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // once the new release's database runs (the new release is starting), the daemon vanishes
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while site.current().as_deref() != Some("releases/2.0.0")
        || !site.running_images().contains_key("db")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new release never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    proxy.kill();
    let out = child.wait_with_output().unwrap();
    code(&out, 5);
    assert!(text(&out).contains("does not answer"), "{}", text(&out));

    // the daemon is back: the rollback finishes, exactly old
    let proxy = tests::proxy::DockerProxy::start(&sock);
    let out = molt_in_env(&site, &[("DOCKER_HOST", &proxy.host())], &["rollback"]);
    code(&out, 0);
    assert!(!exactly_old_or_new(&site, &e, "daemon back").await);
}

fn molt_in_env(site: &Site, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = std::process::Command::new(common::MOLT);
    c.arg("--root")
        .arg(&site.root)
        .args(args)
        .env("MOLT_LOG", "error")
        .env_remove("MOLT_FAILPOINTS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_to_a_backup_after_a_commit_says_what_is_lost_and_brings_release_and_data_back() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    let (site, e) = old_site(&vendor).await;
    code(&molt(&site, &["upgrade", "--yes"]), 0);
    let backup = installed(&site)["backup"].as_str().unwrap().to_string();
    add_rows(&site, &["written under 2.0.0, lost by the rollback"]).await;
    std::fs::write(
        site.root.join("shared/uploads/new.txt"),
        b"after the upgrade",
    )
    .unwrap();

    // without --yes (and no terminal): refused, saying what would be lost
    let out = molt(&site, &["rollback", "--to", &backup]);
    code(&out, 1);
    let all = text(&out);
    assert!(
        all.contains("LOST")
            && all.contains("changed since the backup")
            && all.contains("shared/.env"),
        "{all}"
    );
    assert!(all.contains("--yes"), "{all}");
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));

    // an unknown backup: a clear error, nothing done
    let out = molt(&site, &["rollback", "--to", "no-such-backup", "--yes"]);
    code(&out, 1);
    assert!(text(&out).contains("no-such-backup"), "{}", text(&out));

    let out = molt(&site, &["rollback", "--to", &backup, "--yes"]);
    code(&out, 0);
    assert!(!exactly_old_or_new(&site, &e, "rollback --to").await);
    assert!(!site.root.join("shared/uploads/new.txt").exists());
    assert_eq!(installed(&site)["previous"], "2.0.0");
    // and forward again: 2.0.0 is still the latest
    code(&molt(&site, &["upgrade", "--yes"]), 0);
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
}

/// An upgrade killed before and after its pivot, then its journal damaged (sled's log
/// emptied; sled's files unreadable): `molt status` answers exit 7 from the disk, `molt
/// recover` salvages the readable records and ends exactly old or exactly new.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_upgrade_with_a_damaged_journal_is_salvaged_and_recovered() {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 2] = [
        ("db emptied", |j| std::fs::write(j.join("db"), b"").unwrap()),
        ("conf garbage", |j| {
            std::fs::write(j.join("conf"), b"\xff garbage").unwrap()
        }),
    ];
    let mut ends = Vec::new();
    for fp in [
        "steps::switch_link::stashed=return",
        "steps::schema::statement_done=1*off->return",
    ] {
        for (what, damage) in &damages {
            let case = format!("{fp}, {what}");
            let (s, e) = old_site(&vendor).await;
            let out = molt_in(&s.root, Some(fp), &["upgrade", "--yes"]);
            assert!(common::aborted(&out), "{case}: {}", text(&out));
            damage(&s.root.join("journal"));
            let out = molt(&s, &["status"]);
            code(&out, 7);
            let out = molt(&s, &["recover"]);
            assert!(
                matches!(out.status.code(), Some(0 | 4)),
                "{case}: {}",
                text(&out)
            );
            assert!(text(&out).contains("salvaged"), "{case}: {}", text(&out));
            let new = exactly_old_or_new(&s, &e, &case).await;
            ends.push((case, if new { "new" } else { "old" }));
        }
    }
    eprintln!("damaged journals of killed upgrades: {ends:?}");
}

/// An sshd of its own on 127.0.0.1 (own host key, own authorized key, own port): the fleet
/// test reaches one of its hosts through Ansible's ssh connection, as a fleet would.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        use std::process::Command;
        assert!(
            std::path::Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: scripts/setup.sh installs openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, kind) in [("host", "ed25519"), ("client", "ed25519")] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-f"])
                .arg(d.join(name))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let port = tests::free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host\nAuthorizedKeysFile {0}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {0}/sshd.pid\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Sshd {
            child,
            port,
            key: d.join("client"),
            _dir: dir,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Ansible role in `ansible/` upgrades a fleet of three installations (one reached over
/// ssh): the canary first, then the batches, each through `molt check` and `molt upgrade
/// --json`; when the canary's upgrade fails (it rolls back, exit 4), the play stops and no
/// other host is touched.
#[tokio::test]
async fn the_ansible_role_upgrades_a_fleet_canary_first_and_stops_at_the_first_failure() {
    let playbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/upgrade.yml");
    let ansible = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/ansible/bin/ansible-playbook");
    assert!(
        ansible.exists(),
        "{} is missing: scripts/setup.sh installs ansible-core into target/ansible",
        ansible.display()
    );
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    let sites = [Site::new(&vendor), Site::new(&vendor), Site::new(&vendor)];
    for s in &sites {
        install_1(&vendor, s).await;
    }
    vendor.publish("2.0.0", Some("1.0.0"));
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let molt_bin = std::fs::canonicalize(common::MOLT).unwrap();
    let inventory = work.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[molt]\ncanary ansible_connection=local molt_root={0}\nover-ssh ansible_host=127.0.0.1 ansible_port={port} ansible_user=root ansible_ssh_private_key_file={key} molt_root={1}\nthird ansible_connection=local molt_root={2}\n\n[molt:vars]\nmolt_bin={bin}\nansible_python_interpreter=/usr/bin/python3\n",
            sites[0].root.display(),
            sites[1].root.display(),
            sites[2].root.display(),
            port = sshd.port,
            key = sshd.key.display(),
            bin = molt_bin.display()
        ),
    )
    .unwrap();
    let play = || {
        std::process::Command::new(&ansible)
            .arg("-i")
            .arg(&inventory)
            .arg(&playbook)
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env(
                "ANSIBLE_SSH_ARGS",
                "-o UserKnownHostsFile=/dev/null -o ControlMaster=no",
            )
            .env("ANSIBLE_LOCAL_TEMP", work.path().join("tmp"))
            .env("ANSIBLE_REMOTE_TEMP", work.path().join("remote-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("MOLT_LOG", "error")
            .output()
            .unwrap()
    };
    let out = play();
    assert!(out.status.success(), "{}", text(&out));
    for s in &sites {
        assert_eq!(s.app("/version").as_deref(), Some("2.0.0"));
        assert_eq!(installed(s)["version"], "2.0.0");
    }
    let at = |s: &Site| installed(s)["at_ms"].as_u64().unwrap();
    assert!(
        at(&sites[0]) < at(&sites[1]) && at(&sites[1]) < at(&sites[2]),
        "canary, then the batches in order"
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("canary: installed 1.0.0"), "{log}");

    // a broken release: the canary rolls back on its own and nothing else is tried
    vendor.publish("2.1.0", Some("2.0.0"));
    let runs = |s: &Site| {
        let l = molt(s, &["journal", "list", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&l.stdout).unwrap()["runs"]
            .as_array()
            .unwrap()
            .len()
    };
    let before: Vec<usize> = sites.iter().map(runs).collect();
    let out = play();
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(runs(&sites[0]), before[0] + 1, "the canary tried");
    assert_eq!(
        sites[0].app("/version").as_deref(),
        Some("2.0.0"),
        "and rolled back"
    );
    for (s, was) in sites.iter().zip(&before).skip(1) {
        assert_eq!(
            runs(s),
            *was,
            "{}: touched after the canary failed",
            s.project
        );
        assert_eq!(s.app("/version").as_deref(), Some("2.0.0"));
        assert!(!s.root.join("releases/2.1.0").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_compose_cannot_duplicate_are_upgraded_through_compose_with_the_reason_journaled(
) {
    let vendor = Vendor::new(common::MOLT.as_ref());
    vendor.publish("1.0.0", None);
    vendor.publish("2.0.0", Some("1.0.0"));
    vendor.show("1.0.0");
    let site = Site::new(&vendor);
    // the operator's override names the app's container: one container per name, so no
    // stand-by container can be made beside it
    let fixed = format!("{}-the-app", site.project);
    std::fs::write(
        site.root.join("shared/docker-compose.override.yml"),
        format!("services:\n  app:\n    container_name: {fixed}\n"),
    )
    .unwrap();
    install_1(&vendor, &site).await;
    vendor.show("2.0.0");
    let out = molt(&site, &["upgrade", "--yes"]);
    code(&out, 0);
    assert_eq!(site.app("/version").as_deref(), Some("2.0.0"));
    let names = site.container_names();
    assert_eq!(names["app"], vec![fixed.clone()], "{names:?}");
    assert!(names.values().all(|n| n.len() == 1), "{names:?}");
    // the journal says why the cut-over ran compose
    let run = installed(&site)["run"].to_string();
    let show = molt(&site, &["journal", "show", &run, "--json"]);
    code(&show, 0);
    let all = text(&show);
    assert!(all.contains("service app sets container_name"), "{all}");
}
