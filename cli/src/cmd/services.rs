//! `molt services start|stop|restart|status` and `molt images load|prune`: the current
//! release's Docker services and images.

use super::print_json;
use crate::exit;
use crate::session::{RunReport, Session};
use serde_json::json;
use std::collections::BTreeSet;
use steps::docker::api::Docker;
use steps::plans::{ImagesLoad, ImagesPrune, PlanSpec, Services, ServicesAction};
use steps::release::Release;
use steps::Installation;

/// The live release: where `current` points, relative to the root (e.g. `releases/2.0.0`).
pub fn current_release(inst: &Installation) -> anyhow::Result<String> {
    let link = inst.root.join("current");
    let target = std::fs::read_link(&link).map_err(|e| {
        exit::coded(
            exit::ERROR,
            format!(
                "no current release: cannot read the link {}: {e}",
                link.display()
            ),
        )
    })?;
    let rel = if target.is_absolute() {
        target
            .strip_prefix(&inst.root)
            .map_err(|_| {
                exit::coded(
                    exit::ERROR,
                    format!(
                        "`current` points outside the installation: {}",
                        target.display()
                    ),
                )
            })?
            .to_path_buf()
    } else {
        target
    };
    Ok(rel.to_string_lossy().into_owned())
}

fn report(r: &RunReport, as_json: bool) -> u8 {
    if as_json {
        print_json(&r.to_json());
    } else {
        println!("{}", r.summary());
    }
    r.exit_code()
}

pub async fn action(
    inst: &Installation,
    action: ServicesAction,
    only: Vec<String>,
    as_json: bool,
) -> anyhow::Result<u8> {
    let config = &inst.config;
    let spec = Services {
        action,
        project: config.project(&inst.root),
        release: current_release(inst)?,
        only,
    };
    let mut session = Session::open(inst, "molt services")?;
    let r = session.start(PlanSpec::Services(spec)).await?;
    Ok(report(&r, as_json))
}

pub async fn status(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let config = &inst.config;
    let project = config.project(&inst.root);
    let release = current_release(inst)?;
    let docker = Docker::connect()
        .await
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    let containers = docker
        .containers(&project)
        .await
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    if as_json {
        print_json(&json!({ "project": project, "release": release, "containers": containers }));
        return Ok(exit::OK);
    }
    println!("project {project}, release {release}");
    if containers.is_empty() {
        println!("no containers");
    }
    for c in &containers {
        println!(
            "  {:<16} {:<32} {:<10} {:<10} {}",
            c.service,
            c.name,
            c.status,
            c.health.as_deref().unwrap_or("-"),
            if c.one_shot() {
                format!("one-shot, exit code {}", c.exit_code.unwrap_or(-1))
            } else {
                String::new()
            }
        );
    }
    Ok(exit::OK)
}

pub async fn load(inst: &Installation, as_json: bool) -> anyhow::Result<u8> {
    let config = &inst.config;
    let spec = ImagesLoad {
        project: config.project(&inst.root),
        release: current_release(inst)?,
    };
    let mut session = Session::open(inst, "molt images load")?;
    let r = session.start(PlanSpec::ImagesLoad(spec)).await?;
    Ok(report(&r, as_json))
}

/// Images molt loaded that no release directory still names and no container uses.
pub async fn prune(inst: &Installation, dry_run: bool, as_json: bool) -> anyhow::Result<u8> {
    let mut session = Session::open(inst, "molt images prune")?;
    let loaded = steps::services::loaded_images(&inst.images_registry())?;
    let mut kept = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(inst.root.join("releases")) {
        for e in entries.flatten() {
            if let Ok(r) = Release::load(&e.path()) {
                kept.extend(r.images.into_values());
            }
        }
    }
    let docker = Docker::connect()
        .await
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    let in_use = docker
        .images_in_use()
        .await
        .map_err(|e| exit::coded(exit::ERROR, e))?;
    let mut doomed = Vec::new();
    for id in loaded.difference(&kept) {
        if !in_use.contains(id)
            && docker
                .image_exists(id)
                .await
                .map_err(|e| exit::coded(exit::ERROR, e))?
        {
            doomed.push(id.clone());
        }
    }
    if dry_run || doomed.is_empty() {
        if as_json {
            print_json(&json!({ "would_remove": doomed, "dry_run": dry_run }));
        } else if doomed.is_empty() {
            println!("no unused images");
        } else {
            println!("would remove: {}", doomed.join(", "));
        }
        return Ok(exit::OK);
    }
    let spec = ImagesPrune { ids: doomed };
    let r = session.start(PlanSpec::ImagesPrune(spec)).await?;
    Ok(report(&r, as_json))
}
