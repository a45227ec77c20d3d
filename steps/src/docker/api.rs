//! The Docker Engine API through bollard: load images, inspect images and containers, read
//! health and logs, remove images. `DOCKER_HOST` is honoured; the API version is negotiated
//! with the daemon (this machine's 20.10 speaks 1.41).

use super::{LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// A connected daemon.
#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
}

/// One container of a compose project, as the health gate needs it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image: String,
    pub running: bool,
    /// created, running, exited, restarting, ...
    pub status: String,
    pub exit_code: Option<i64>,
    /// healthy, unhealthy, starting; `None` when the container has no healthcheck.
    pub health: Option<String>,
    /// no, always, unless-stopped, on-failure ("no" marks a one-shot service).
    pub restart: String,
    /// Output of the latest healthcheck run, if any.
    pub health_output: Option<String>,
    /// The anonymous volumes it mounts (named by a 64-hex id, not by the compose file): data
    /// that only compose's recreate carries over to a new container.
    pub anonymous_volumes: Vec<String>,
    /// Its healthcheck command, as Docker runs it (`None`: no healthcheck, or `NONE`).
    pub check: Option<Check>,
}

/// A container's healthcheck command and how long one run may take.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub argv: Vec<String>,
    pub timeout: std::time::Duration,
}

impl Check {
    /// The command of a container's healthcheck configuration (its image's, merged in by
    /// Docker at create): `CMD` runs its arguments, `CMD-SHELL` its string with `/bin/sh -c`.
    fn of(h: Option<&bollard::models::HealthConfig>) -> Option<Check> {
        let h = h?;
        let test = h.test.as_ref()?;
        let argv: Vec<String> = match test.first()?.as_str() {
            "CMD" => test[1..].to_vec(),
            "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), test.get(1)?.clone()],
            _ => return None,
        };
        if argv.is_empty() {
            return None;
        }
        // Docker's default: 30 s
        let timeout = h
            .timeout
            .filter(|ns| *ns > 0)
            .map_or(std::time::Duration::from_secs(30), |ns| {
                std::time::Duration::from_nanos(ns as u64)
            });
        Some(Check { argv, timeout })
    }
}

/// The name suffixes of containers molt keeps aside during an upgrade: the old release's,
/// stopped, until the commit (a rollback starts them again without compose), and the new
/// release's while a rollback brings the old ones back. A container set aside is not one of
/// its service's: the health gate passes it over.
pub const ASIDE_OLD: &str = ".molt-old";
pub const ASIDE_NEW: &str = ".molt-new";

impl Container {
    pub fn one_shot(&self) -> bool {
        matches!(self.restart.as_str(), "" | "no")
    }

    /// Kept aside by an upgrade (see [`ASIDE_OLD`]).
    pub fn aside(&self) -> bool {
        self.name.ends_with(ASIDE_OLD) || self.name.ends_with(ASIDE_NEW)
    }
}

fn err(what: &str, e: bollard::errors::Error) -> String {
    format!("docker {what}: {e}")
}

/// `result`, with the daemon's answers in `done` (304 not modified, 404 no such object) taken
/// as success: the idempotent form of a call whose goal already holds.
fn unless_done(
    result: Result<(), bollard::errors::Error>,
    done: &[u16],
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    match result {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError { status_code, .. })
            if done.contains(&status_code) =>
        {
            Ok(())
        }
        Err(e) => Err(err(&what(), e)),
    }
}

impl Docker {
    /// Connect and check that the daemon answers.
    pub async fn connect() -> Result<Docker, String> {
        let where_ =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |e: bollard::errors::Error| {
            format!("the docker daemon at {where_} does not answer: {e}; is it running?")
        };
        let d = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let d = d.negotiate_version().await.map_err(unreachable)?;
        d.ping().await.map_err(unreachable)?;
        Ok(Docker { inner: d })
    }

    pub async fn image_exists(&self, id: &str) -> Result<bool, String> {
        match self.inner.inspect_image(id).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(err("inspect image", e)),
        }
    }

    /// Load a `docker save` tarball.
    pub async fn load(&self, tarball: &Path) -> Result<(), String> {
        let file = tokio::fs::File::open(tarball)
            .await
            .map_err(|e| format!("cannot open {}: {e}", tarball.display()))?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut stream = self.inner.import_image(options, body, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| format!("docker could not load {}: {e}", tarball.display()))?;
        }
        Ok(())
    }

    pub async fn remove_image(&self, id: &str) -> Result<(), String> {
        let opts = RemoveImageOptionsBuilder::default().force(false).build();
        let removed = self
            .inner
            .remove_image(id, Some(opts), None)
            .await
            .map(drop);
        unless_done(removed, &[404], || format!("remove image {id}"))
    }

    /// Every container of `project` (stopped ones too; not `compose run` one-offs).
    pub async fn containers(&self, project: &str) -> Result<Vec<Container>, String> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{LABEL_PROJECT}={project}")])]);
        let list = self
            .inner
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| err("list containers", e))?;
        let mut out = Vec::new();
        for summary in list {
            let labels = summary.labels.unwrap_or_default();
            if labels
                .get(LABEL_ONEOFF)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                continue;
            }
            let Some(id) = summary.id else { continue };
            let inspect = match self
                .inner
                .inspect_container(
                    &id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                Ok(i) => i,
                // Removed between the list and the inspect.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(err("inspect container", e)),
            };
            let state = inspect.state.unwrap_or_default();
            let health_output = state
                .health
                .as_ref()
                .and_then(|h| h.log.as_ref())
                .and_then(|l| l.last())
                .map(|r| {
                    format!(
                        "exit code {}: {}",
                        r.exit_code.unwrap_or(-1),
                        r.output.as_deref().unwrap_or("").trim()
                    )
                });
            let anonymous_volumes = inspect
                .mounts
                .iter()
                .flatten()
                .filter_map(|m| m.name.clone())
                .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect();
            let check = Check::of(inspect.config.as_ref().and_then(|c| c.healthcheck.as_ref()));
            out.push(Container {
                anonymous_volumes,
                check,
                name: inspect
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                image: inspect.image.unwrap_or_default(),
                running: state.running.unwrap_or(false),
                status: state.status.map(|s| s.to_string()).unwrap_or_default(),
                exit_code: state.exit_code,
                health: state
                    .health
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .filter(|s| !s.is_empty() && s != "none"),
                restart: inspect
                    .host_config
                    .and_then(|h| h.restart_policy)
                    .and_then(|r| r.name)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                health_output,
                id,
            });
        }
        out.sort_by(|a, b| a.service.cmp(&b.service).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Run a container's healthcheck command in it now, as Docker would at its next
    /// interval: `true` when it exits 0 within its timeout. Its output is read and dropped.
    pub async fn run_check(&self, id: &str, check: &Check) -> Result<bool, String> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = self
            .inner
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(check.argv.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err("create healthcheck exec", e))?;
        let run = async {
            if let StartExecResults::Attached { mut output, .. } =
                self.inner.start_exec(&exec.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    chunk?;
                }
            }
            let done = self.inner.inspect_exec(&exec.id).await?;
            Ok::<_, bollard::errors::Error>(done.exit_code == Some(0))
        };
        match tokio::time::timeout(check.timeout, run).await {
            Ok(r) => r.map_err(|e| err("run healthcheck", e)),
            Err(_) => Ok(false),
        }
    }

    /// The last `lines` lines a container wrote (stdout and stderr).
    pub async fn logs_tail(&self, id: &str, lines: usize) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        match self
            .inner
            .logs(id, Some(opts))
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(chunks) => chunks.iter().map(|c| c.to_string()).collect::<String>(),
            Err(e) => format!("(logs unavailable: {e})"),
        }
    }

    /// Stop a container (no-op when it is not running).
    pub async fn stop(&self, id: &str) -> Result<(), String> {
        self.stop_within(id, 10).await
    }

    /// Stop a container, killing it if it has not stopped `secs` after its stop signal (the
    /// service's `stop_grace_period`). No-op when it is stopped or gone.
    pub async fn stop_within(&self, id: &str, secs: u64) -> Result<(), String> {
        let opts = bollard::query_parameters::StopContainerOptionsBuilder::default()
            .t(secs.min(i32::MAX as u64) as i32)
            .build();
        let stopped = self.inner.stop_container(id, Some(opts)).await;
        unless_done(stopped, &[304, 404], || format!("stop container {id}"))
    }

    /// Start a container (no-op when it runs already).
    /// Start a container, then tell the host where it is ([`Docker::announce`]).
    pub async fn start(&self, id: &str) -> Result<(), String> {
        let started = self
            .inner
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await;
        unless_done(started, &[304], || format!("start container {id}"))?;
        self.announce(id).await;
        Ok(())
    }

    /// Give the host's kernel the address of a container just started, on each of its bridge
    /// networks (`ip neigh replace <ip> lladdr <mac> dev <bridge> nud reachable`).
    ///
    /// While Docker starts a container, its port proxy already accepts connections and dials
    /// the container, before the container's interface is up. The host's ARP request for the
    /// container's address then goes unanswered, and the neighbour entry waits for the
    /// kernel's next try, a second later (`retrans_time_ms`), holding every packet for the
    /// container, the proxy's waiting connection included. So a site whose clients keep
    /// calling saw its app answer up to a second after the container was up; the upgrade
    /// benchmark's prober did (0.5 to 0.8 s after the start, on every start, molt's and the
    /// naive script's alike). Writing the entry sends the held packets at once.
    ///
    /// Best effort, never an error: without `ip`, or not allowed to (not root), the kernel
    /// finds the container by itself a second later, as without molt.
    pub async fn announce(&self, id: &str) {
        let Ok(inspect) = self
            .inner
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        else {
            return;
        };
        let networks = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        for (name, endpoint) in networks {
            let (Some(ip), Some(mac)) = (endpoint.ip_address, endpoint.mac_address) else {
                continue;
            };
            if ip.is_empty() || mac.is_empty() {
                continue;
            }
            let Ok(net) = self
                .inner
                .inspect_network(
                    endpoint.network_id.as_deref().unwrap_or(&name),
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            else {
                continue;
            };
            let Some(bridge) = bridge_device(&net) else {
                continue;
            };
            let out = tokio::process::Command::new("ip")
                .args(["neigh", "replace", &ip, "lladdr", &mac, "dev", &bridge])
                .args(["nud", "reachable"])
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => tracing::debug!(
                    container = id,
                    "ip neigh replace {ip} on {bridge}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => tracing::debug!(container = id, "ip neigh replace: {e}"),
            }
        }
    }

    /// Remove a stopped container (no-op when it is gone; a running one is refused).
    pub async fn remove(&self, id: &str) -> Result<(), String> {
        let removed = self
            .inner
            .remove_container(
                id,
                None::<bollard::query_parameters::RemoveContainerOptions>,
            )
            .await;
        unless_done(removed, &[404], || format!("remove container {id}"))
    }

    /// Give a container another name.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), String> {
        let opts = bollard::query_parameters::RenameContainerOptionsBuilder::default()
            .name(name)
            .build();
        self.inner
            .rename_container(id, opts)
            .await
            .map_err(|e| err(&format!("rename container {id} to {name}"), e))
    }

    /// Image ids used by any container on the host.
    pub async fn images_in_use(&self) -> Result<BTreeSet<String>, String> {
        let list = self
            .inner
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(|e| err("list containers", e))?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }
}

/// The Linux bridge a bridge network's containers hang off: the name the network's options
/// give (`docker0` for the default one), else Docker's `br-<first 12 of its id>`.
fn bridge_device(net: &bollard::models::Network) -> Option<String> {
    if net.driver.as_deref() != Some("bridge") {
        return None;
    }
    if let Some(name) = net
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name"))
    {
        return Some(name.clone());
    }
    let id = net.id.as_deref()?;
    Some(format!("br-{}", id.get(..12)?))
}

#[cfg(test)]
mod tests {
    use super::Check;
    use bollard::models::HealthConfig;
    use std::time::Duration;

    #[test]
    fn a_healthcheck_is_run_as_docker_runs_it() {
        let h = |test: &[&str], timeout: Option<i64>| HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            timeout,
            ..Default::default()
        };
        let argv = |c: Option<Check>| c.map(|c| c.argv);
        assert_eq!(
            argv(Check::of(Some(&h(&["CMD", "wget", "-q", "x"], None)))),
            Some(vec!["wget".into(), "-q".into(), "x".into()])
        );
        assert_eq!(
            argv(Check::of(Some(&h(
                &["CMD-SHELL", "curl -f x || exit 1"],
                None
            )))),
            Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "curl -f x || exit 1".into()
            ])
        );
        for none in [&["NONE"][..], &["CMD"], &["CMD-SHELL"], &[]] {
            assert_eq!(Check::of(Some(&h(none, None))), None, "{none:?}");
        }
        assert_eq!(Check::of(None), None);
        let timeout = |t| Check::of(Some(&h(&["CMD", "true"], t))).unwrap().timeout;
        assert_eq!(timeout(None), Duration::from_secs(30));
        assert_eq!(timeout(Some(0)), Duration::from_secs(30));
        assert_eq!(timeout(Some(2_000_000_000)), Duration::from_secs(2));
    }
}
