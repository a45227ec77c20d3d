//! `molt upgrade`: check, preflight, then the `upgrade` plan (`steps::plans::upgrade`) as one
//! journaled run; `--dry-run` prints the plan and touches nothing.

use super::print_json;
use crate::exit;
use crate::progress::Printer;
use crate::session::Session;
use serde_json::json;
use std::io::IsTerminal;
use steps::fetch::Source;
use steps::manifest::{self, Choice};
use steps::plans::check::{check, free_space, space_needed, CheckError, Want};
use steps::plans::{FetchRelease, PlanSpec, Upgrade};
use steps::release::Release;
use steps::Installation;

fn err(e: impl Into<String>) -> anyhow::Error {
    exit::coded(exit::ERROR, e)
}

/// Bytes under a directory (for the backup's size estimate).
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// A staged `releases/<v>` of exactly that version.
fn staged(inst: &Installation, version: &str) -> Option<Release> {
    let dir = inst.releases_dir().join(version);
    Release::load(&dir).ok().filter(|r| r.version == version)
}

/// How `molt upgrade` was asked to run.
pub struct How {
    pub dry_run: bool,
    pub yes: bool,
    /// `--to`: only this version.
    pub to: Option<String>,
    /// `--unattended`: hold, window and pinned range apply (`steps::unattended`).
    pub unattended: bool,
}

/// An unattended upgrade that does not happen: exit 0, nothing changed, the reason said.
fn skipped(reason: &str, as_json: bool) -> anyhow::Result<u8> {
    if as_json {
        print_json(&json!({ "action": "skipped", "summary": reason, "exit_code": 0 }));
    } else {
        println!("unattended upgrade skipped: {reason}");
    }
    Ok(exit::OK)
}

/// The run of the latest upgrade plan in the journal, when it rolled back on its way to `to`.
fn rolled_back_to(inst: &Installation, to: &str) -> anyhow::Result<Option<u64>> {
    let store = crate::session::open_for_reading(inst)?;
    for run in store.runs()?.into_iter().rev() {
        let log = store.read_run(run)?;
        let (_, Some(ledger)) = super::journal::run_state(&log) else {
            continue;
        };
        if ledger.plan.id != "upgrade" {
            continue;
        }
        let target = ledger.plan.spec.get("to").and_then(|v| v.as_str());
        return Ok(
            (matches!(ledger.terminal, Some(engine::Outcome::RolledBack)) && target == Some(to))
                .then_some(run.0),
        );
    }
    Ok(None)
}

pub async fn upgrade(
    inst: &Installation,
    want: Want,
    how: How,
    as_json: bool,
) -> anyhow::Result<u8> {
    let How {
        dry_run,
        yes,
        to: only,
        unattended,
    } = how;
    let only = only
        .map(|v| {
            steps::version::Version::parse(&v)
                .map(|parsed| (v.clone(), parsed))
                .map_err(|e| err(format!("--to {v:?}: {e}")))
        })
        .transpose()?;
    // 0. unattended: the hold, the pinned range, the window (no network access yet)
    if unattended {
        use steps::unattended::{before_check, Verdict};
        if let Verdict::Skip(why) = before_check(inst, jiff::Timestamp::now()).map_err(err)? {
            return skipped(&why, as_json);
        }
    }
    // 1. check: signature, freshness, choice
    let c = check(inst, want).await.map_err(exit::failed)?;
    let (package, kind) = match &c.choice {
        Choice::None { reason } => {
            if as_json {
                print_json(&json!({ "action": "none", "summary": reason, "exit_code": 0 }));
            } else {
                println!("nothing to upgrade: {reason}");
            }
            return Ok(exit::OK);
        }
        Choice::Full { package, .. } => (package.clone(), "full"),
        Choice::Patch { package, .. } => (package.clone(), "patch"),
    };
    let to = c.manifest.version.clone();
    if let Some((v, wanted)) = &only {
        if *wanted != steps::version::Version::parse(&to).map_err(err)? {
            return Err(err(format!(
                "--to {v}: the vendor's manifest offers {to}, not {v}; nothing was changed"
            )));
        }
    }
    if unattended {
        use steps::unattended::{offered, Verdict};
        if let Verdict::Skip(why) = offered(inst, &to).map_err(err)? {
            return skipped(&why, as_json);
        }
        if let Some(run) = rolled_back_to(inst, &to)? {
            return skipped(
                &format!("the last upgrade to {to} (run {run}) rolled back; an operator's `molt upgrade` tries it again"),
                as_json,
            );
        }
    }
    let fetch = match staged(inst, &to) {
        Some(_) => None,
        None => Some(FetchRelease {
            stall_timeout_secs: inst.config.download.stall_timeout_secs,
            retries: inst.config.download.retries,
            version: to.clone(),
            url: manifest::resolve(&c.url, &package.url),
            size: package.size,
            sha256: package.sha256.clone(),
            installed_size: package.installed_size,
            source: match kind {
                "patch" => Source::Patch {
                    base: inst
                        .current()
                        .map_err(err)?
                        .map(|(rel, _)| rel)
                        .unwrap_or_default(),
                    base_version: c.current.clone().unwrap_or_default(),
                },
                _ => Source::Full,
            },
        }),
    };
    let spec = Upgrade::new(inst, &to, fetch.clone()).map_err(err)?;

    // 2. preflight: disk, Docker, database (the lock is taken by the session)
    let backup_bytes = if spec.from.is_some() {
        spec.backup_paths
            .iter()
            .map(|p| tree_bytes(&inst.path(p)))
            .sum()
    } else {
        0
    };
    let need = if fetch.is_some() {
        space_needed(&package)
    } else {
        0
    } + backup_bytes;
    let free = free_space(&inst.root).map_err(exit::failed)?;
    let docker = steps::docker::api::Docker::connect().await;
    let services: Vec<String> = match &docker {
        Ok(d) => d
            .containers(&spec.project)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.service)
            .collect(),
        Err(_) => Vec::new(),
    };
    // A first install has no database running yet (and its .env may not name the keys yet).
    let database = match &spec.from {
        Some(_) => match inst.database_url().map_err(err)? {
            Some(url) => Some(steps::schema::live::connect(&url).await.map(|c| (c, url))),
            None => None,
        },
        None => None,
    };

    if dry_run {
        return dry_run_report(
            inst, &c, kind, &spec, &package, need, free, &services, database, as_json,
        )
        .await;
    }
    if free < need {
        let e = CheckError::NoSpace {
            root: inst.root.clone(),
            free,
            need,
        };
        return Err(err(format!("{e}; nothing was changed")));
    }
    if let Err(e) = docker {
        return Err(err(format!("{e}; nothing was changed")));
    }
    if let Some(Err(e)) = &database {
        return Err(err(format!(
            "the database does not answer: {e}; nothing was changed"
        )));
    }
    if let Some(Ok((conn, _))) = database {
        let _ = conn.disconnect().await;
    }
    if !yes && !as_json && std::io::stdin().is_terminal() {
        eprint!(
            "upgrade {} to {to} ({kind}); the services stop during the cut-over. Continue? [y/N] ",
            c.current.as_deref().unwrap_or("nothing")
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing done");
            return Ok(exit::OK);
        }
    }

    // 3. the run
    let mut session = Session::open(inst, "molt upgrade")?;
    let printer = std::sync::Arc::new(std::sync::Mutex::new(Printer::new(as_json)));
    session.observer = Some(Box::new(Shared(printer.clone())));
    if !as_json {
        eprintln!(
            "molt: upgrading {} to {to} ({kind})",
            c.current.as_deref().unwrap_or("nothing")
        );
    }
    let r = session.start(PlanSpec::Upgrade(Box::new(spec))).await?;
    let downtime = printer.lock().map(|p| p.downtime).unwrap_or(None);
    report(inst, &r, downtime, as_json);
    drop(session); // the lock: a notification never holds the installation
    notify(inst, &r, downtime).await;
    Ok(r.exit_code())
}

/// Tell `[notify]`'s channels how the run ended (after the lock is released; failures only
/// reach `notify.log` and a warning, never the exit code).
pub async fn notify(
    inst: &Installation,
    r: &crate::session::RunReport,
    downtime: Option<std::time::Duration>,
) {
    if !inst.config.notify.any() || r.plan != "upgrade" {
        return;
    }
    let (from, to) = run_versions(inst, r.run.0).unwrap_or_default();
    // The run's own record first (`installed.json` of a committed run), so that the
    // notification says what `molt status` says; else what this process timed.
    let recorded = steps::upgrade::Installed::read(&inst.installed_file())
        .ok()
        .flatten()
        .filter(|i| i.run == r.run.0)
        .and_then(|i| i.downtime_ms);
    let downtime_ms = recorded.or_else(|| downtime.map(|d| d.as_millis() as u64));
    let payload = steps::notify::Payload::new(
        inst,
        r.run.0,
        &r.plan,
        r.outcome_word(),
        from,
        to,
        downtime_ms,
        r.failure(),
    );
    for (channel, ok) in steps::notify::send(inst, &payload).await {
        if !ok {
            eprintln!("molt: the notification to {channel} was not delivered (see notify.log)");
        }
    }
}

/// The versions an upgrade run went from and to, from its journaled spec.
fn run_versions(inst: &Installation, run: u64) -> Option<(Option<String>, Option<String>)> {
    let store = crate::session::open_for_reading(inst).ok()?;
    let log = store.read_run(engine::RunId(run)).ok()?;
    let (_, ledger) = super::journal::run_state(&log);
    let spec = ledger?.plan.spec;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    Some((s(&spec["from"]["version"]), s(&spec["to"])))
}

/// Lets the command read the printer's downtime after the session used it.
pub struct Shared(pub std::sync::Arc<std::sync::Mutex<Printer>>);

impl engine::Observer for Shared {
    fn progress(&mut self, event: engine::Progress<'_>) {
        if let Ok(mut p) = self.0.lock() {
            p.progress(event);
        }
    }
}

/// Print a run's outcome with its downtime: as this process saw it, else (a run resumed in
/// another process) as the run recorded it in `installed.json`.
pub fn report(
    inst: &Installation,
    r: &crate::session::RunReport,
    downtime: Option<std::time::Duration>,
    as_json: bool,
) {
    let downtime = downtime.or_else(|| {
        let installed = steps::upgrade::Installed::read(&inst.installed_file()).ok()??;
        (installed.run == r.run.0)
            .then_some(installed.downtime_ms?)
            .map(std::time::Duration::from_millis)
    });
    if as_json {
        let mut v = r.to_json();
        v["event"] = json!("finished");
        v["downtime_ms"] = json!(downtime.map(|d| d.as_millis() as u64));
        println!("{v}");
    } else {
        println!("{}", r.summary());
        if let Some(d) = downtime {
            println!("downtime: {:.2}s (stop to serving)", d.as_secs_f64());
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn dry_run_report(
    inst: &Installation,
    c: &steps::plans::check::Checked,
    kind: &str,
    spec: &Upgrade,
    package: &manifest::Package,
    need: u64,
    free: u64,
    services: &[String],
    database: Option<Result<(steps::schema::live::Conn, String), steps::schema::live::LiveError>>,
    as_json: bool,
) -> anyhow::Result<u8> {
    let staged = staged(inst, &spec.to);
    let images: Vec<String> = staged
        .as_ref()
        .map(|r| r.images.keys().cloned().collect())
        .unwrap_or_default();
    // schema statements, when the release is staged and the database answers
    let mut schema = json!(null);
    let mut schema_note = String::new();
    match (&staged, database) {
        (Some(r), Some(Ok((mut conn, url)))) => {
            if let Some(file) = r.database.as_ref().and_then(|d| d.schema.clone()) {
                let path = inst.releases_dir().join(&spec.to).join(file);
                let db = steps::schema::live::url_database(&url).map_err(|e| err(e.to_string()))?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
                let loaded = steps::schema::sql::load(
                    &text,
                    &steps::schema::sql::LoadOptions {
                        default_database: db,
                        ..Default::default()
                    },
                )
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
                let planned = steps::schema::live::plan(&mut conn, &loaded.schema).await;
                let _ = conn.disconnect().await;
                let (_, m) = planned.map_err(|e| err(e.to_string()))?;
                let mut allow = spec.allow.clone();
                allow.subjects.extend(r.allow_destructive.iter().cloned());
                schema = json!({
                    "statements": m.statements(),
                    "destructive": m.destructive(),
                    "refused": m.refused(&allow),
                });
            }
        }
        (None, _) => schema_note = "known once the release is staged (`molt fetch`)".into(),
        (_, Some(Err(e))) => schema_note = format!("the database does not answer: {e}"),
        (_, None) => schema_note = "no database to migrate, or a first install".into(),
    }
    let run_steps: Vec<String> = PlanSpec::Upgrade(Box::new(spec.clone()))
        .plan(&steps::Env::new(inst, engine::RunId(0)))
        .map(|p| p.meta.steps.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    if as_json {
        print_json(&json!({
            "action": "upgrade",
            "from": c.current,
            "to": spec.to,
            "package": kind,
            "downgrade": spec.downgrade,
            "signed": c.signed,
            "download_bytes": if spec.fetch.is_some() { package.size } else { 0 },
            "disk_needed": need,
            "disk_free": free,
            "images": images,
            "schema": schema,
            "schema_note": schema_note,
            "services_to_stop": services,
            "steps": run_steps,
        }));
        return Ok(exit::OK);
    }
    println!(
        "{} {} -> {} ({kind} package{}, signature {})",
        if spec.downgrade {
            "DOWNGRADE"
        } else {
            "upgrade"
        },
        c.current.as_deref().unwrap_or("nothing"),
        spec.to,
        if spec.fetch.is_some() {
            format!(", {} bytes to download", package.size)
        } else {
            ", already staged".into()
        },
        if c.signed { "verified" } else { "NOT checked" }
    );
    println!("disk: {need} bytes needed, {free} free");
    println!(
        "images to load: {}",
        if images.is_empty() {
            "(known once staged)".to_string()
        } else {
            images.join(", ")
        }
    );
    println!(
        "services to stop: {}",
        if services.is_empty() {
            "none running".to_string()
        } else {
            services.join(", ")
        }
    );
    if schema.is_null() {
        println!("schema: {schema_note}");
    } else {
        let statements = schema["statements"].as_array().cloned().unwrap_or_default();
        println!("schema: {} statement(s)", statements.len());
        for s in statements {
            println!("  {};", s.as_str().unwrap_or_default());
        }
        for d in schema["destructive"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            println!(
                "  destructive: {}",
                d["reason"].as_str().unwrap_or_default()
            );
        }
        if schema["refused"].as_array().is_some_and(|r| !r.is_empty()) {
            println!("  REFUSED: the upgrade would stop before any downtime");
        }
    }
    println!("steps:");
    for (i, s) in run_steps.iter().enumerate() {
        println!("  {:>2}. {s}", i + 1);
    }
    println!("(dry run: nothing was changed)");
    Ok(exit::OK)
}

/// Files under `dir` changed after `since_ms` (relative names), for "what would be lost".
fn changed_since(
    root: &std::path::Path,
    dir: &std::path::Path,
    since_ms: u64,
    out: &mut Vec<String>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            changed_since(root, &e.path(), since_ms, out);
        } else if meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| d.as_millis() as u64 > since_ms)
        {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
}

/// `molt rollback --to BACKUP`: after a committed upgrade, the release and the data of a
/// backup an upgrade took at its stop.
pub async fn rollback_to(
    inst: &Installation,
    backup: &str,
    yes: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    use steps::backup::Layout;
    use steps::upgrade::restore_point::BackupOf;
    steps::backup::valid_id(backup).map_err(err)?;
    let layout = Layout::new(&inst.root, backup);
    let manifest = layout.read_manifest()?.ok_or_else(|| {
        err(format!(
            "backup {backup} does not exist or is incomplete (`molt backup list`)"
        ))
    })?;
    let of = BackupOf::read(&layout).ok_or_else(|| {
        err(format!(
            "backup {backup} was not taken by an upgrade, so molt does not know its release; `molt backup restore {backup}` restores its data alone"
        ))
    })?;
    let (from_release, from) = inst
        .current()
        .map_err(err)?
        .ok_or_else(|| err("nothing is installed"))?;
    if !inst.path(&of.release).join("release.toml").is_file() {
        return Err(err(format!(
            "release {} (the one backup {backup} belongs to) is no longer in {}; nothing was changed",
            of.version, of.release
        )));
    }
    let mut lost = Vec::new();
    for p in &manifest.paths {
        changed_since(&inst.root, &inst.path(p), manifest.created_ms, &mut lost);
    }
    lost.sort();
    let when = super::time(manifest.created_ms);
    if !as_json {
        println!(
            "rollback {} -> {} with the data of backup {backup} (taken {when})",
            from.version, of.version
        );
        if lost.is_empty() {
            println!(
                "no file of {} changed since the backup",
                manifest.paths.join(", ")
            );
        } else {
            println!(
                "LOST: {} file(s) of {} changed since the backup, e.g. {}",
                lost.len(),
                manifest.paths.join(", "),
                lost.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if !yes {
        if as_json || !std::io::stdin().is_terminal() {
            return Err(err(format!(
                "rollback to {backup} loses the writes made since {when}; pass --yes to confirm"
            )));
        }
        eprint!("Continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing done");
            return Ok(exit::OK);
        }
    }
    let spec = steps::plans::RollbackTo {
        project: inst.project(),
        backup: backup.to_string(),
        from_release,
        from_version: from.version,
        to_release: of.release,
        to_version: of.version,
        paths: manifest.paths.clone(),
    };
    let mut session = Session::open(inst, "molt rollback --to")?;
    let printer = std::sync::Arc::new(std::sync::Mutex::new(Printer::new(as_json)));
    session.observer = Some(Box::new(Shared(printer.clone())));
    let r = session.start(PlanSpec::RollbackTo(spec)).await?;
    let downtime = printer.lock().map(|p| p.downtime).unwrap_or(None);
    report(inst, &r, downtime, as_json);
    if as_json {
        println!("{}", json!({"event": "lost", "files": lost}));
    }
    Ok(r.exit_code())
}
