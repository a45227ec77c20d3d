//! Steps over a release's Docker services: `load images`, `stop`, `start`, `verify` (the
//! health gate). Each names the release directory it acts for; the compose project is the
//! installation's (stable across releases, so release N+1's containers replace release N's).

use crate::docker::api::Docker;
use crate::docker::compose::Compose;
use crate::docker::health::Gate;
use crate::docker::tarball;
use crate::fsutil::Stash;
use crate::release::Release;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The release a services step acts on.
#[derive(Clone, Debug)]
pub struct Target {
    pub project: String,
    /// Absolute path of the release directory (holds `release.toml`).
    pub dir: PathBuf,
    /// Shown in step names.
    pub label: String,
    /// The operator's compose override (`shared/docker-compose.override.yml`), used when it
    /// exists.
    pub overlay: Option<PathBuf>,
}

impl Target {
    pub(crate) fn release(&self) -> Result<Release, StepError> {
        Release::load(&self.dir).map_err(StepError::new)
    }

    pub(crate) async fn compose(&self, release: &Release) -> Result<Compose, StepError> {
        Compose::new(&self.project, &release.compose_path(&self.dir))
            .await
            .map(|c| c.with_overlay(self.overlay.clone()))
            .map_err(StepError::new)
    }

    /// The release's `release.toml` and its compose project.
    pub(crate) async fn release_compose(&self) -> Result<(Release, Compose), StepError> {
        let release = self.release()?;
        let compose = self.compose(&release).await?;
        Ok((release, compose))
    }

    /// Wait for the health gate of this release (all services, or `only`).
    pub async fn wait_healthy(&self, only: &[String]) -> Result<(), StepError> {
        let release = self.release()?;
        if only.is_empty() {
            let compose = self.compose(&release).await?;
            let all = compose.services().await.map_err(StepError::new)?;
            self.gate(&release, all, true).await
        } else {
            self.gate(&release, only.to_vec(), false).await
        }
    }

    /// Wait for the health gate of every service of this release, named by the caller (no
    /// compose run), its probes included.
    pub async fn wait_all_healthy(&self, services: Vec<String>) -> Result<(), StepError> {
        let release = self.release()?;
        self.gate(&release, services, true).await
    }

    /// The gate over `services`; the probes speak for the whole release, so only `all` runs
    /// them.
    async fn gate(
        &self,
        release: &Release,
        services: Vec<String>,
        all: bool,
    ) -> Result<(), StepError> {
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let probes = if all { &release.probes[..] } else { &[] };
        Gate {
            docker: &docker,
            project: &self.project,
            services,
            probes,
            timeout: Duration::from_secs(release.health_timeout_secs),
        }
        .wait()
        .await
        .map_err(StepError::new)
    }

    /// Stop the project's running containers of `only` (all when empty) through the API:
    /// works even when the compose file no longer parses, and names that match nothing stop
    /// nothing.
    pub(crate) async fn stop_containers(&self, only: &[String]) -> Result<(), StepError> {
        let docker = Docker::connect().await.map_err(StepError::new)?;
        for c in docker
            .containers(&self.project)
            .await
            .map_err(StepError::new)?
        {
            if c.running && (only.is_empty() || only.contains(&c.service)) {
                docker.stop(&c.id).await.map_err(StepError::new)?;
            }
        }
        Ok(())
    }

    pub(crate) async fn up(&self, only: &[String]) -> Result<(), StepError> {
        let release = self.release()?;
        self.compose(&release)
            .await?
            .up(only)
            .await
            .map_err(StepError::new)
    }

    /// Stop the services and check that none of the project's containers still runs.
    async fn stop(&self, only: &[String]) -> Result<(), StepError> {
        let (_, compose) = self.release_compose().await?;
        compose.stop(only).await.map_err(StepError::new)?;
        self.stopped(only).await
    }

    /// Check that none of the project's containers (of `only`, when named) still runs.
    async fn stopped(&self, only: &[String]) -> Result<(), StepError> {
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let still: Vec<String> = docker
            .containers(&self.project)
            .await
            .map_err(StepError::new)?
            .into_iter()
            .filter(|c| c.running && (only.is_empty() || only.contains(&c.service)))
            .map(|c| c.name)
            .collect();
        if !still.is_empty() {
            return Err(StepError::new(format!(
                "after stopping, these containers still run: {}",
                still.join(", ")
            )));
        }
        Ok(())
    }
}

/// `load images`: load the release's image tarballs through the Docker API.
///
/// - `do`: first checks, without Docker, that each tarball holds the image id `release.toml`
///   names (a corrupt tarball or a different image is refused before anything is loaded);
///   records in the stash which of those images were absent; loads those; checks each id is
///   now present. Old images are never touched. Idempotent: present images are skipped.
/// - `undo`: removes the images this step loaded (absent before) unless a container uses
///   them. Idempotent.
pub struct LoadImages {
    pub target: Target,
    pub scratch: PathBuf,
    /// The installation's record of every image id molt loaded (`images.json`), which
    /// `molt images prune` chooses from.
    pub registry: PathBuf,
}

/// Add ids to the registry of loaded images (a JSON list, rewritten atomically).
pub fn register_images(registry: &std::path::Path, ids: &[String]) -> std::io::Result<()> {
    let mut known = loaded_images(registry)?;
    let before = known.len();
    known.extend(ids.iter().cloned());
    if known.len() == before && registry.exists() {
        return Ok(());
    }
    let bytes = serde_json::to_vec_pretty(&known).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(registry, &bytes)
}

/// Every image id molt has loaded into this installation.
pub fn loaded_images(
    registry: &std::path::Path,
) -> std::io::Result<std::collections::BTreeSet<String>> {
    match std::fs::read(registry) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", registry.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Loaded {
    /// Image ids that were absent before this step.
    pub new: Vec<String>,
}

#[async_trait]
impl Step for LoadImages {
    type Receipt = Loaded;

    fn name(&self) -> String {
        format!("load images of {}", self.target.label)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Loaded, StepError> {
        let release = self.target.release()?;
        for (rel, id) in &release.images {
            let path = self.target.dir.join(rel);
            let held = tarball::images(&path).map_err(StepError::new)?;
            if !held.iter().any(|s| &s.id == id) {
                return Err(StepError::new(format!(
                    "{} holds {} but release.toml says {id}",
                    path.display(),
                    held.iter()
                        .map(|s| format!("{} {:?}", s.id, s.tags))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let stash = Stash::new(&self.scratch, ctx.step);
        let loaded = match stash
            .read::<Loaded>()
            .map_err(|e| crate::io_err("read stash for", &self.target.dir, e))?
        {
            Some(l) => l,
            None => {
                let mut new = Vec::new();
                for id in release.images.values() {
                    if !docker.image_exists(id).await.map_err(StepError::new)? {
                        new.push(id.clone());
                    }
                }
                let l = Loaded { new };
                stash
                    .record(&l)
                    .map_err(|e| crate::io_err("stash for", &self.target.dir, e))?;
                l
            }
        };
        let ids: Vec<String> = release.images.values().cloned().collect();
        register_images(&self.registry, &ids)
            .map_err(|e| crate::io_err("record images in", &self.registry, e))?;
        for (rel, id) in &release.images {
            if docker.image_exists(id).await.map_err(StepError::new)? {
                continue;
            }
            let path = self.target.dir.join(rel);
            docker.load(&path).await.map_err(StepError::new)?;
            if !docker.image_exists(id).await.map_err(StepError::new)? {
                return Err(StepError::new(format!(
                    "after loading {}, image {id} is still missing",
                    path.display()
                )));
            }
        }
        Ok(loaded)
    }

    async fn undo(&self, ctx: &StepCtx, receipt: Option<Loaded>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let recorded = stash
            .read::<Loaded>()
            .map_err(|e| crate::io_err("read stash for", &self.target.dir, e))?;
        let Some(loaded) = recorded.or(receipt) else {
            return Ok(());
        };
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let in_use = docker.images_in_use().await.map_err(StepError::new)?;
        for id in loaded.new.iter().filter(|id| !in_use.contains(*id)) {
            docker.remove_image(id).await.map_err(StepError::new)?;
        }
        stash
            .clear()
            .map_err(|e| crate::io_err("clear stash for", &self.target.dir, e))
    }
}

/// `stop`: stop the release's services (all, or the named ones).
///
/// - `do`: `compose stop`, then checks through the API that none of them still runs. `Ok`
///   guarantees they are stopped. With an upgrade's stand-by record that knows the old
///   release's order and grace periods, stops the old containers through the API instead,
///   dependents first (`upgrade::standby::stop_old`). Idempotent: stopping stopped services
///   changes nothing.
/// - `undo`: with an upgrade's stand-by containers (see `upgrade::standby`), sets the new
///   release's containers aside, gives the old ones their names back and starts them
///   through the API, dependencies first; otherwise (or when that cannot be done: a stand-by
///   that fell back to compose, an old container gone) removes the stand-by containers and
///   runs `compose up -d` of the same release. Then waits for its health gate, so the release
///   serves again as before. Idempotent.
pub struct StopServices {
    pub target: Target,
    pub only: Vec<String>,
    /// The upgrade's stand-by containers, which give way before the old release comes back.
    pub standby: Option<crate::upgrade::StandbyRef>,
    /// A file that receives the time the stop began (ms since the epoch), once: the start of
    /// an upgrade's downtime window.
    pub mark: Option<PathBuf>,
}

#[async_trait]
impl Step for StopServices {
    type Receipt = ();

    fn name(&self) -> String {
        format!("stop {}{}", self.target.label, list(&self.only))
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        if let Some(mark) = &self.mark {
            if !mark.exists() {
                if let Some(dir) = mark.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| crate::io_err("create", dir, e))?;
                }
                crate::fsutil::write_atomic(mark, crate::now_ms().to_string().as_bytes())
                    .map_err(|e| crate::io_err("write", mark, e))?;
            }
        }
        if let Some(standby) = self.standby.as_ref().filter(|_| self.only.is_empty()) {
            if crate::upgrade::standby::stop_old(standby, &self.target.project).await? {
                return self.target.stopped(&self.only).await;
            }
        }
        self.target.stop(&self.only).await
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        if let Some(standby) = &self.standby {
            let services =
                crate::upgrade::standby::bring_back(standby, &self.target, self.only.is_empty())
                    .await?;
            if let Some(services) = services {
                // the old containers, kept aside, started again through the API
                return self.target.wait_all_healthy(services).await;
            }
        }
        self.target.up(&self.only).await?;
        self.target.wait_healthy(&self.only).await
    }
}

fn list(only: &[String]) -> String {
    if only.is_empty() {
        String::new()
    } else {
        format!(" ({})", only.join(", "))
    }
}

/// `start`: start the release's services (all, or the named ones), detached.
///
/// - `do`: `compose up -d`; does not wait (the `verify` step is the gate). With an upgrade's
///   stand-by containers, starts those instead through the API, dependencies first (waiting
///   for a dependency's health where compose's `depends_on` asks for it). Idempotent:
///   starting running services changes nothing.
/// - `undo`: stops the same services' containers through the API (so an undo works even
///   when the compose file or a service name was the problem). Idempotent.
pub struct StartServices {
    pub target: Target,
    pub only: Vec<String>,
    /// The upgrade's stand-by containers, started instead of running compose.
    pub standby: Option<crate::upgrade::StandbyRef>,
}

#[async_trait]
impl Step for StartServices {
    type Receipt = ();

    fn name(&self) -> String {
        format!("start {}{}", self.target.label, list(&self.only))
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        let ready = if self.only.is_empty() {
            crate::upgrade::standby::ready(self.standby.as_ref())?
        } else {
            None
        };
        let Some(record) = ready else {
            return self.target.up(&self.only).await;
        };
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let list = || async {
            docker
                .containers(&self.target.project)
                .await
                .map_err(StepError::new)
        };
        let mut containers = list().await?;
        // what already runs (the database, started by `start database`) counts as started
        let started: std::collections::BTreeSet<String> = containers
            .iter()
            .filter(|c| c.running && record.created.get(&c.service) == Some(&c.id))
            .map(|c| c.service.clone())
            .collect();
        for (k, wave) in crate::upgrade::standby::waves(&record.order, &started)
            .into_iter()
            .enumerate()
        {
            let waits: Vec<String> = wave.iter().flat_map(|s| s.waits.clone()).collect();
            if !waits.is_empty() {
                self.target.wait_healthy(&waits).await?;
            }
            if k > 0 {
                containers = list().await?;
            }
            // a wave's services depend only on services already started: they start together
            let starts = wave.iter().map(|s| {
                crate::upgrade::standby::activate(&docker, &containers, &record, &s.service)
            });
            for started in futures_util::future::join_all(starts).await {
                started?;
            }
            engine::failpoint("steps::services::started_wave");
        }
        Ok(())
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        self.target.stop_containers(&self.only).await
    }
}

/// `verify`: the health gate (see `docker::health`). Read-only; `undo` has nothing to do.
pub struct VerifyHealth {
    pub target: Target,
    pub only: Vec<String>,
}

#[async_trait]
impl Step for VerifyHealth {
    type Receipt = ();

    fn name(&self) -> String {
        format!("verify health of {}{}", self.target.label, list(&self.only))
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<(), StepError> {
        self.target.wait_healthy(&self.only).await
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<()>) -> Result<(), StepError> {
        Ok(())
    }
}

/// `remove images`: delete images no kept release uses (pruning). Forward-only.
///
/// - `do`: removes each listed image unless a container uses it (then it is left, and said).
///   Idempotent: a missing image is already removed.
pub struct RemoveImages {
    pub ids: Vec<String>,
}

#[async_trait]
impl Step for RemoveImages {
    type Receipt = Vec<String>;

    fn name(&self) -> String {
        format!("remove {} unused images", self.ids.len())
    }

    fn class(&self) -> StepClass {
        StepClass::ForwardOnly
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Vec<String>, StepError> {
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let in_use = docker.images_in_use().await.map_err(StepError::new)?;
        let mut removed = Vec::new();
        for id in &self.ids {
            if in_use.contains(id) {
                tracing::warn!(%id, "image is used by a container; kept");
                continue;
            }
            docker.remove_image(id).await.map_err(StepError::new)?;
            removed.push(id.clone());
        }
        Ok(removed)
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Vec<String>>) -> Result<(), StepError> {
        Err(StepError::new("removed images cannot be put back"))
    }
}
