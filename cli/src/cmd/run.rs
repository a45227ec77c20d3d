//! Commands that drive runs: `molt exec` (an fs-script plan), `molt resume`, `molt rollback`,
//! `molt recover`.

use super::print_json;
use crate::exit;
use crate::session::{RunReport, Session};
use anyhow::Context;
use engine::Mode;
use std::path::Path;
use steps::Installation;

fn report(r: &RunReport, as_json: bool) -> u8 {
    if as_json {
        print_json(&r.to_json());
    } else {
        println!("{}", r.summary());
    }
    r.exit_code()
}

/// Run the plan in an fs-script file (TOML) as a new run.
pub async fn exec(inst: &Installation, file: &Path, as_json: bool) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read plan file {}", file.display()))?;
    let script = steps::FsScript::from_toml(&text)
        .with_context(|| format!("plan file {}", file.display()))?;
    let mut session = Session::open(inst, "molt exec")?;
    let r = session.start(steps::PlanSpec::FsScript(script)).await?;
    Ok(report(&r, as_json))
}

/// `molt resume` / `molt rollback` (explicit mode) and `molt recover` (policy).
pub async fn attach(
    inst: &Installation,
    mode: Option<Mode>,
    forced: bool,
    as_json: bool,
) -> anyhow::Result<u8> {
    let command = match mode {
        Some(Mode::Resume) => "molt resume",
        Some(Mode::Rollback) => "molt rollback",
        None => "molt recover",
    };
    let mut session = match mode {
        None => Session::open_salvaging(inst, command)?,
        Some(_) => Session::open(inst, command)?,
    };
    let printer = std::sync::Arc::new(std::sync::Mutex::new(crate::progress::Printer::new(
        as_json,
    )));
    session.observer = Some(Box::new(super::upgrade::Shared(printer.clone())));
    match session.attach(mode, forced).await? {
        Some(r) => {
            let downtime = printer.lock().map(|p| p.downtime).unwrap_or(None);
            super::upgrade::report(inst, &r, downtime, as_json);
            drop(session);
            super::upgrade::notify(inst, &r, downtime).await;
            Ok(r.exit_code())
        }
        None => {
            if as_json {
                print_json(
                    &serde_json::json!({ "action": "none", "summary": "no unfinished run", "exit_code": 0 }),
                );
            } else {
                println!("nothing to do: no unfinished run");
            }
            Ok(exit::OK)
        }
    }
}
