//! `stand-by`: the new release's containers created, not started, while the old release still
//! serves. The cut-over then starts them through the Engine API (`start database`, `start`)
//! instead of running compose inside the downtime, where every compose v1 run costs a Python
//! start (about 0.45 s here) and a recreate of each container.
//!
//! Compose itself makes them: `up --no-start --no-recreate --scale S=n+1` for every service,
//! interpolated (`--env-file`) from the `.env` the merge will write, so they carry compose's
//! labels and configuration hash and compose later takes them for its own, up to date.
//!
//! Not used, and the record says why (the cut-over then runs compose as before), when a
//! service sets `container_name` or a scale (one container per name), when an old container
//! mounts an anonymous volume (only compose's recreate carries it over), when a service runs
//! more than one container, when the dependencies form a cycle, or when compose refuses.
//!
//! - `do`: records the project's containers (the old release's) before anything is created,
//!   then has compose create one more of each service and records which are new, with the
//!   name each will take. Idempotent: a record without `done` (a crash during the creation)
//!   makes the re-run remove every container not in `before`, then create again.
//! - `undo`: removes the stand-by containers (every container not in `before` when the
//!   creation did not finish). Idempotent.
//!
//! [`activate`] (in `start database` and `start`): the old container of that service, stopped
//! at the stop, is set aside (renamed `<name>.molt-old`, kept until the commit's
//! housekeeping removes it); the stand-by one takes its name and starts. A rollback needs no
//! compose either ([`bring_back`], the undo of `stop`): the new containers are set aside
//! (`<name>.molt-new`, removed by this step's undo), the old ones take their names back and
//! start through the API in the old release's dependency order, kept since it was installed
//! (`orders`) or read from its `compose config` while the stand-by was made. When that order could not be read or an old container
//! is gone, the rollback removes the stand-by containers and runs compose as before.

use crate::docker::api::{Container, Docker, ASIDE_NEW, ASIDE_OLD};
use crate::fsutil::{write_atomic, Stash};
use crate::io_err;
use crate::services::Target;
use crate::upgrade::config::merged_env;
use crate::upgrade::orders::Orders;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub struct Standby {
    /// The new release.
    pub target: Target,
    /// The release it replaces (serving while this step runs).
    pub old: Target,
    /// The operator's `.env` (`shared/.env`), which the merge will extend.
    pub operator_env: PathBuf,
    pub scratch: PathBuf,
    /// The releases' start orders kept across runs: the old one's is read there, the new
    /// one's kept.
    pub orders: Orders,
}

/// What the stand-by step made, read by the steps that start or discard it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The project's containers before any stand-by one was created.
    pub before: Vec<String>,
    #[serde(default)]
    pub done: bool,
    /// Service -> its stand-by container.
    #[serde(default)]
    pub created: BTreeMap<String, String>,
    /// Service -> the name its old container has, which the stand-by one takes.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Services in an order that starts every dependency first.
    #[serde(default)]
    pub order: Vec<Start>,
    /// Why there are no stand-by containers (the cut-over goes through compose).
    #[serde(default)]
    pub fallback: Option<String>,
    /// The old release's services, every dependency first: the order a rollback starts its
    /// containers in. Empty: a rollback runs compose.
    #[serde(default)]
    pub old_order: Vec<Start>,
    /// Why `old_order` is empty.
    #[serde(default)]
    pub old_fallback: Option<String>,
}

/// A service to start, after the services it depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub service: String,
    /// Its dependencies (`depends_on`): started before it.
    pub after: Vec<String>,
    /// The dependencies that must be healthy (or, for a one-shot, finished) before it starts
    /// (`service_healthy`, `service_completed_successfully`).
    pub waits: Vec<String>,
    /// How long its container may take to stop before it is killed, in whole seconds
    /// (`stop_grace_period`, rounded up; compose's 10 s when unset). `None`: not known (a
    /// record of an older molt, or a period molt cannot read): the stop runs compose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
}

/// The services not yet started, in waves: a wave's services depend only on services started
/// before it (`started`, or an earlier wave), so each wave starts together.
pub fn waves<'a>(order: &'a [Start], started: &BTreeSet<String>) -> Vec<Vec<&'a Start>> {
    let mut done = started.clone();
    let mut left: Vec<&Start> = order
        .iter()
        .filter(|s| !done.contains(&s.service))
        .collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Start>, Vec<&Start>) = left
            .into_iter()
            .partition(|s| s.after.iter().all(|d| done.contains(d)));
        if ready.is_empty() {
            // not reachable for an order made by start_order; start the rest one by one
            out.extend(rest.into_iter().map(|s| vec![s]));
            break;
        }
        done.extend(ready.iter().map(|s| s.service.clone()));
        out.push(ready);
        left = rest;
    }
    out
}

/// Where the stand-by step of a plan keeps its record (its stash, by its position).
#[derive(Clone, Debug)]
pub struct StandbyRef {
    pub scratch: PathBuf,
    pub step: usize,
}

impl StandbyRef {
    fn read(&self) -> Result<Option<Record>, StepError> {
        Stash::new(&self.scratch, self.step)
            .read::<Record>()
            .map_err(|e| io_err("read the stand-by record in", &self.scratch, e))
    }
}

/// The stand-by containers of `standby`, when there is one and they were all made; `None`:
/// start through compose.
pub fn ready(standby: Option<&StandbyRef>) -> Result<Option<Record>, StepError> {
    let Some(s) = standby else { return Ok(None) };
    Ok(s.read()?
        .filter(|r| r.done && r.fallback.is_none() && !r.created.is_empty()))
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
}

#[derive(Deserialize)]
struct ServiceConfig {
    #[serde(default)]
    container_name: Option<serde_yaml::Value>,
    #[serde(default)]
    scale: Option<serde_yaml::Value>,
    #[serde(default)]
    deploy: Option<Deploy>,
    #[serde(default)]
    depends_on: Option<DependsOn>,
    #[serde(default)]
    stop_grace_period: Option<serde_yaml::Value>,
}

/// compose's default `stop_grace_period`.
const DEFAULT_GRACE_SECS: u64 = 10;

/// A `stop_grace_period` in whole seconds, rounded up: a duration as compose writes it
/// (`1m30s`, `500ms`, `2h`, `10s`, or a number of seconds). `None` when it is not one.
fn grace_secs(v: Option<&serde_yaml::Value>) -> Option<u64> {
    let text = match v {
        None => return Some(DEFAULT_GRACE_SECS),
        Some(serde_yaml::Value::Number(n)) => return n.as_u64(),
        Some(serde_yaml::Value::String(s)) => s.trim(),
        Some(_) => return None,
    };
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|&i| i > 0)?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per: f64 = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        nanos += (n * per) as u128;
        rest = &rest[unit_len..];
    }
    Some(nanos.div_ceil(1_000_000_000) as u64)
}

#[derive(Deserialize)]
struct Deploy {
    #[serde(default)]
    replicas: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

#[derive(Deserialize)]
struct Dependency {
    #[serde(default)]
    condition: Option<String>,
}

/// The services of a resolved compose configuration, every dependency first. Refuses what one
/// container per service cannot honour.
pub fn start_order(config_yaml: &str) -> Result<Vec<Start>, String> {
    let config: ConfigFile = serde_yaml::from_str(config_yaml)
        .map_err(|e| format!("cannot read compose's configuration: {e}"))?;
    let mut deps: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
    let mut grace: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    for (name, s) in &config.services {
        if s.container_name.is_some() {
            return Err(format!("service {name} sets container_name"));
        }
        let replicas = s.deploy.as_ref().and_then(|d| d.replicas);
        if s.scale.as_ref().is_some_and(|v| v.as_u64() != Some(1))
            || replicas.is_some_and(|r| r != 1)
        {
            return Err(format!("service {name} sets a scale other than 1"));
        }
        let list: Vec<(&str, bool)> = match &s.depends_on {
            None => Vec::new(),
            Some(DependsOn::List(l)) => l.iter().map(|d| (d.as_str(), false)).collect(),
            Some(DependsOn::Map(m)) => m
                .iter()
                .map(|(d, c)| {
                    let wait = c
                        .condition
                        .as_deref()
                        .is_some_and(|c| c != "service_started");
                    (d.as_str(), wait)
                })
                .collect(),
        };
        for (d, _) in &list {
            if !config.services.contains_key(*d) {
                return Err(format!(
                    "service {name} depends on {d}, which is not defined"
                ));
            }
        }
        deps.insert(name, list);
        grace.insert(name.as_str(), grace_secs(s.stop_grace_period.as_ref()));
    }
    let mut order: Vec<Start> = Vec::new();
    let mut started: BTreeSet<&str> = BTreeSet::new();
    while started.len() < deps.len() {
        let ready: Vec<&str> = deps
            .iter()
            .filter(|(s, d)| !started.contains(*s) && d.iter().all(|(x, _)| started.contains(x)))
            .map(|(s, _)| *s)
            .collect();
        if ready.is_empty() {
            let left: Vec<&str> = deps
                .keys()
                .filter(|s| !started.contains(*s))
                .copied()
                .collect();
            return Err(format!(
                "the dependencies of {} form a cycle",
                left.join(", ")
            ));
        }
        for s in &ready {
            let names = |only_waits: bool| {
                deps[s]
                    .iter()
                    .filter(|(_, w)| *w || !only_waits)
                    .map(|(d, _)| d.to_string())
                    .collect()
            };
            order.push(Start {
                service: s.to_string(),
                after: names(false),
                waits: names(true),
                grace_secs: grace[s],
            });
        }
        started.extend(ready);
    }
    Ok(order)
}

/// Remove containers of the project: the ones listed, or (`keep`) every one not kept.
/// Returns the names of the containers removed.
async fn remove(docker: &Docker, project: &str, which: Which<'_>) -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    for c in docker.containers(project).await? {
        let gone = match which {
            Which::Listed(ids) => ids.contains(&c.id),
            Which::AllBut(keep) => !keep.contains(&c.id),
            Which::Aside => c.aside(),
        };
        if gone {
            if c.running {
                docker.stop(&c.id).await?;
            }
            docker.remove(&c.id).await?;
            removed.push(c.name);
        }
    }
    Ok(removed)
}

enum Which<'a> {
    Listed(&'a [String]),
    AllBut(&'a [String]),
    /// The containers set aside (see `docker::api::ASIDE_OLD`).
    Aside,
}

/// [`remove`] for a step: only whether it worked matters.
async fn remove_for_step(
    docker: &Docker,
    project: &str,
    which: Which<'_>,
) -> Result<(), StepError> {
    remove(docker, project, which)
        .await
        .map(drop)
        .map_err(StepError::new)
}

impl Standby {
    /// Create the stand-by containers beside `old` (the project's containers, which the
    /// record's `before` lists); `Err` is the reason to go through compose instead.
    async fn create(
        &self,
        docker: &Docker,
        stash: &Stash,
        old: &[Container],
    ) -> Result<Record, String> {
        let (release, compose) = self
            .target
            .release_compose()
            .await
            .map_err(|e| e.to_string())?;
        // Interpolated from the .env the merge will write (the operator's values, the new
        // release's new keys), so the containers are what compose would make after it.
        let env = &self.operator_env;
        let operator = match std::fs::read_to_string(env) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", env.display())),
        };
        let text = match merged_env(&release, &self.target.dir, operator.as_deref())
            .map_err(|e| e.to_string())?
        {
            Some((text, _)) => text,
            None => operator.unwrap_or_default(),
        };
        let env_file = stash.file("standby.env");
        stash.prepare().map_err(|e| e.to_string())?;
        write_atomic(&env_file, text.as_bytes()).map_err(|e| e.to_string())?;
        // it holds the operator's secrets, as shared/.env does
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let compose = compose.with_env_file(&env_file);
        // the old release's order (for a rollback without compose), read while compose
        // reads the new configuration and creates the containers
        let old_order = async {
            let (_, compose) = self
                .old
                .release_compose()
                .await
                .map_err(|e| e.to_string())?;
            self.orders.order(&self.old.dir, &compose).await
        };
        let (made, old_order) = tokio::join!(self.create_with(&compose, old), old_order);
        let (order, names) = made?;
        let (old_order, old_fallback) = match old_order {
            Ok(o) => (o, None),
            Err(why) => {
                tracing::warn!(%why, "a rollback of this upgrade would run compose");
                (Vec::new(), Some(why))
            }
        };
        let before: Vec<String> = old.iter().map(|c| c.id.clone()).collect();
        let mut created = BTreeMap::new();
        for c in docker.containers(&self.target.project).await? {
            if before.contains(&c.id) {
                continue;
            }
            if created.insert(c.service.clone(), c.id.clone()).is_some() {
                return Err(format!(
                    "compose made more than one container of {}",
                    c.service
                ));
            }
        }
        if let Some(missing) = order
            .iter()
            .map(|s| &s.service)
            .find(|s| !created.contains_key(*s))
        {
            return Err(format!("compose made no container of {missing}"));
        }
        Ok(Record {
            before,
            done: true,
            created,
            names,
            order,
            fallback: None,
            old_order,
            old_fallback,
        })
    }

    /// Read the new release's start order and have compose create one more container of
    /// each service beside `old`. Returns the order and the names the stand-by containers
    /// will take.
    async fn create_with(
        &self,
        compose: &crate::docker::compose::Compose,
        old: &[Container],
    ) -> Result<(Vec<Start>, BTreeMap<String, String>), String> {
        let order = start_order(&compose.config().await?)?;
        // the order of this release when it is the old one (its .env then the one the
        // merge writes, which this compose interpolates from)
        if let Err(why) = self.orders.put(&self.target.dir, compose, &order) {
            tracing::warn!(%why, "the start order is not kept; the next upgrade asks compose");
        }
        let mut scale = Vec::new();
        let mut names = BTreeMap::new();
        for service in order.iter().map(|s| &s.service) {
            let mine: Vec<_> = old.iter().filter(|c| &c.service == service).collect();
            if mine.len() > 1 {
                return Err(format!("service {service} has {} containers", mine.len()));
            }
            for c in &mine {
                if !c.anonymous_volumes.is_empty() {
                    return Err(format!(
                        "{} mounts anonymous volumes ({})",
                        c.name,
                        c.anonymous_volumes.join(", ")
                    ));
                }
                names.insert(service.clone(), c.name.clone());
            }
            scale.push((service.clone(), mine.len() + 1));
        }
        compose.create_more(&scale).await?;
        Ok((order, names))
    }
}

#[async_trait]
impl Step for Standby {
    type Receipt = Record;

    fn name(&self) -> String {
        format!("create the containers of {}", self.target.label)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Record, StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let at = &self.target.dir;
        let docker = Docker::connect().await.map_err(StepError::new)?;
        let project = &self.target.project;
        let listed = || async { docker.containers(project).await.map_err(StepError::new) };
        let old = match stash
            .read::<Record>()
            .map_err(|e| io_err("read stash for", at, e))?
        {
            Some(r) if r.done => return Ok(r),
            Some(r) => {
                // a creation cut short: what it made goes, the old containers stay
                remove_for_step(&docker, project, Which::AllBut(&r.before)).await?;
                listed().await?
            }
            None => {
                // old containers an earlier, committed upgrade set aside and could not remove
                remove_for_step(&docker, project, Which::Aside).await?;
                let old = listed().await?;
                let r = Record {
                    before: old.iter().map(|c| c.id.clone()).collect(),
                    ..Record::default()
                };
                stash.record(&r).map_err(|e| io_err("stash for", at, e))?;
                old
            }
        };
        let record = match self.create(&docker, &stash, &old).await {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!(%why, "no stand-by containers; the cut-over runs compose");
                let before: Vec<String> = old.into_iter().map(|c| c.id).collect();
                remove_for_step(&docker, project, Which::AllBut(&before)).await?;
                Record {
                    before,
                    done: true,
                    fallback: Some(why),
                    ..Record::default()
                }
            }
        };
        engine::failpoint("steps::upgrade::standby_created");
        stash
            .record(&record)
            .map_err(|e| io_err("stash for", at, e))?;
        Ok(record)
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Record>) -> Result<(), StepError> {
        let stash = Stash::new(&self.scratch, ctx.step);
        let at = &self.target.dir;
        let Some(r) = stash
            .read::<Record>()
            .map_err(|e| io_err("read stash for", at, e))?
        else {
            return Ok(());
        };
        remove_standby(&r, &self.target.project).await?;
        stash.clear().map_err(|e| io_err("clear stash for", at, e))
    }
}

/// The undo of `stop` in an upgrade with stand-by containers: the old release's containers
/// back under their names. Returns the old release's services once their containers are
/// started through the API (the caller waits for the gate); `None` when compose must bring
/// the old release back (`all` false: only some services were stopped; a stand-by that fell
/// back to compose; no old order; an old container gone): the stand-by containers are then
/// removed and the old ones have their names. Idempotent at every point.
pub async fn bring_back(
    standby: &StandbyRef,
    old: &Target,
    all: bool,
) -> Result<Option<Vec<String>>, StepError> {
    let Some(r) = standby.read()? else {
        return Ok(None);
    };
    let docker = Docker::connect().await.map_err(StepError::new)?;
    let project = &old.project;
    let containers = docker.containers(project).await.map_err(StepError::new)?;
    let olds: BTreeMap<&str, &Container> = containers
        .iter()
        .filter(|c| r.before.contains(&c.id))
        .map(|c| (c.service.as_str(), c))
        .collect();
    let by_api = all
        && r.done
        && r.fallback.is_none()
        && !r.old_order.is_empty()
        && r.old_order
            .iter()
            .all(|s| olds.contains_key(s.service.as_str()));
    let ours = |c: &&Container| r.created.get(&c.service) == Some(&c.id);
    if by_api {
        // the new containers give the names back (removed by the stand-by step's undo)
        for c in containers.iter().filter(ours).filter(|c| !c.aside()) {
            if c.running {
                docker.stop(&c.id).await.map_err(StepError::new)?;
            }
            let name = r.names.get(&c.service).unwrap_or(&c.name);
            docker
                .rename(&c.id, &format!("{name}{ASIDE_NEW}"))
                .await
                .map_err(StepError::new)?;
        }
    } else {
        remove_standby(&r, project).await?;
    }
    for c in olds.values() {
        if let Some(name) = r.names.get(&c.service).filter(|n| **n != c.name) {
            docker.rename(&c.id, name).await.map_err(StepError::new)?;
        }
    }
    if !by_api {
        return Ok(None);
    }
    let started: BTreeSet<String> = olds
        .values()
        .filter(|c| c.running)
        .map(|c| c.service.clone())
        .collect();
    for wave in waves(&r.old_order, &started) {
        let waits: Vec<String> = wave.iter().flat_map(|s| s.waits.clone()).collect();
        if !waits.is_empty() {
            old.wait_healthy(&waits).await?;
        }
        let starts = wave
            .iter()
            .map(|s| docker.start(&olds[s.service.as_str()].id));
        for started in futures_util::future::join_all(starts).await {
            started.map_err(StepError::new)?;
        }
        engine::failpoint("steps::upgrade::brought_back_wave");
    }
    Ok(Some(
        r.old_order.iter().map(|s| s.service.clone()).collect(),
    ))
}

/// The stop at the cut-over, through the API instead of `compose stop` (a compose start,
/// with the v1 front-end half a second, paid while the old release still serves but inside
/// the step the journal times as downtime): the old release's containers (the record's
/// `before`) are stopped in its waves reversed, dependents first, each wave together, each
/// container given its service's grace period. Containers of services the order does not
/// name go first. Returns `false`, having done nothing, when the record does not allow it (no
/// stand-by, no old order, a grace period not known): the caller runs compose. Idempotent:
/// a stopped container is passed over.
pub async fn stop_old(standby: &StandbyRef, project: &str) -> Result<bool, StepError> {
    let Some(r) = ready(Some(standby))? else {
        return Ok(false);
    };
    if r.old_order.is_empty() || r.old_order.iter().any(|s| s.grace_secs.is_none()) {
        return Ok(false);
    }
    let docker = Docker::connect().await.map_err(StepError::new)?;
    let running: Vec<Container> = docker
        .containers(project)
        .await
        .map_err(StepError::new)?
        .into_iter()
        .filter(|c| c.running && r.before.contains(&c.id))
        .collect();
    let grace: BTreeMap<&str, u64> = r
        .old_order
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.grace_secs.unwrap_or(DEFAULT_GRACE_SECS),
            )
        })
        .collect();
    let mut order: Vec<Vec<&str>> = waves(&r.old_order, &BTreeSet::new())
        .into_iter()
        .rev()
        .map(|w| w.iter().map(|s| s.service.as_str()).collect())
        .collect();
    let unnamed: Vec<&str> = running
        .iter()
        .map(|c| c.service.as_str())
        .filter(|s| !grace.contains_key(s))
        .collect();
    order.insert(0, unnamed);
    for wave in order {
        let mine: Vec<&Container> = running
            .iter()
            .filter(|c| wave.contains(&c.service.as_str()))
            .collect();
        if mine.is_empty() {
            // nothing of it runs (a one-shot that finished, an empty first wave)
            continue;
        }
        let stops = mine.into_iter().map(|c| {
            let secs = grace
                .get(c.service.as_str())
                .copied()
                .unwrap_or(DEFAULT_GRACE_SECS);
            docker.stop_within(&c.id, secs)
        });
        for stopped in futures_util::future::join_all(stops).await {
            stopped.map_err(StepError::new)?;
        }
        engine::failpoint("steps::upgrade::stopped_wave");
    }
    Ok(true)
}

/// Remove the containers set aside (the old release's, once the new one is committed).
/// Returns their names.
pub async fn remove_aside(project: &str) -> Result<Vec<String>, String> {
    remove(&Docker::connect().await?, project, Which::Aside).await
}

/// The recorded stand-by containers, or every container not in `before` when the creation did
/// not finish (a crash during compose's run).
async fn remove_standby(r: &Record, project: &str) -> Result<(), StepError> {
    let docker = Docker::connect().await.map_err(StepError::new)?;
    if r.done {
        let ids: Vec<String> = r.created.values().cloned().collect();
        remove_for_step(&docker, project, Which::Listed(&ids)).await
    } else {
        remove_for_step(&docker, project, Which::AllBut(&r.before)).await
    }
}

/// Start `service`'s stand-by container in place of its old one (set aside: renamed
/// `<name>.molt-old`; its name taken). `containers`: the project's, listed before this wave
/// of starts. Idempotent.
pub async fn activate(
    docker: &Docker,
    containers: &[Container],
    record: &Record,
    service: &str,
) -> Result<(), StepError> {
    let Some(id) = record.created.get(service) else {
        return Err(StepError::new(format!(
            "service {service} has no stand-by container"
        )));
    };
    for c in containers
        .iter()
        .filter(|c| c.service == service && record.before.contains(&c.id))
    {
        if c.running {
            docker.stop(&c.id).await.map_err(StepError::new)?;
        }
        if !c.aside() {
            docker
                .rename(&c.id, &format!("{}{ASIDE_OLD}", c.name))
                .await
                .map_err(StepError::new)?;
        }
    }
    if let (Some(name), Some(me)) = (
        record.names.get(service),
        containers.iter().find(|c| &c.id == id),
    ) {
        if &me.name != name {
            docker.rename(id, name).await.map_err(StepError::new)?;
        }
    }
    docker.start(id).await.map_err(StepError::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_order_puts_dependencies_first_and_refuses_what_it_cannot_honour() {
        let yaml = "services:\n  app:\n    image: a\n    depends_on:\n      db:\n        condition: service_healthy\n      cache:\n        condition: service_started\n  cache:\n    image: c\n  db:\n    image: d\n  init:\n    image: i\n    depends_on: [app]\n";
        let order = start_order(yaml).unwrap();
        let start = |s: &str, after: &[&str], waits: &[&str]| Start {
            service: s.into(),
            after: after.iter().map(|x| x.to_string()).collect(),
            waits: waits.iter().map(|x| x.to_string()).collect(),
            grace_secs: Some(10),
        };
        assert_eq!(
            order,
            vec![
                start("cache", &[], &[]),
                start("db", &[], &[]),
                start("app", &["cache", "db"], &["db"]),
                start("init", &["app"], &[]),
            ]
        );
        let names = |w: Vec<Vec<&Start>>| -> Vec<Vec<String>> {
            w.iter()
                .map(|l| l.iter().map(|s| s.service.clone()).collect())
                .collect()
        };
        assert_eq!(
            names(waves(&order, &BTreeSet::new())),
            vec![vec!["cache", "db"], vec!["app"], vec!["init"]]
        );
        // the database already runs (started by `start database`): the rest goes sooner
        let db = BTreeSet::from(["db".to_string(), "cache".to_string()]);
        assert_eq!(names(waves(&order, &db)), vec![vec!["app"], vec!["init"]]);
        let cycle = "services:\n  a:\n    depends_on: [b]\n  b:\n    depends_on: [a]\n";
        assert!(start_order(cycle).unwrap_err().contains("cycle"));
        let named = "services:\n  a:\n    container_name: fixed\n";
        assert!(start_order(named).unwrap_err().contains("container_name"));
        let scaled = "services:\n  a:\n    deploy:\n      replicas: 2\n";
        assert!(start_order(scaled).unwrap_err().contains("scale"));
        let unknown = "services:\n  a:\n    depends_on: [nope]\n";
        assert!(start_order(unknown).unwrap_err().contains("not defined"));
        assert!(start_order("services: [").is_err());
    }

    #[test]
    fn a_stop_grace_period_is_read_as_compose_writes_it_and_rounded_up() {
        let yaml = |v: &str| -> serde_yaml::Value { serde_yaml::from_str(v).unwrap() };
        for (text, want) in [
            ("1m30s", Some(90)),
            ("10s", Some(10)),
            ("500ms", Some(1)),
            ("1.5s", Some(2)),
            ("2h", Some(7200)),
            ("0s", Some(0)),
            ("\"3\"", Some(3)),
            ("3", Some(3)),
            ("soon", None),
            ("5x", None),
            ("s", None),
            ("[1]", None),
        ] {
            assert_eq!(grace_secs(Some(&yaml(text))), want, "{text}");
        }
        assert_eq!(grace_secs(None), Some(DEFAULT_GRACE_SECS));
        let order = start_order(
            "services:\n  db:\n    stop_grace_period: 1m\n  app:\n    stop_grace_period: later\n",
        )
        .unwrap();
        let grace: Vec<_> = order.iter().map(|s| (&*s.service, s.grace_secs)).collect();
        assert_eq!(grace, [("app", None), ("db", Some(60))]);
    }
}
