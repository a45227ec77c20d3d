//! The health gate: every long-running service running and healthy (by its compose
//! healthcheck, or merely running when it has none), every one-shot service (`restart: "no"`)
//! exited 0, and every probe of `release.toml` passing, all before a deadline. A timeout is a
//! failure whose message names each failing service and shows the tail of its log. A
//! container Docker has not checked yet is checked by the gate itself (`Gate::check_early`).

use super::api::{Container, Docker};
use crate::release::Probe;
use std::time::{Duration, Instant};

/// Why a service is not (yet) acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    Waiting(String),
    /// No amount of waiting will help (a one-shot exited non-zero).
    Failed(String),
}

/// The containers that make up `service`: those an upgrade keeps aside (the old release's,
/// stopped until the commit) are not among them.
fn members<'a>(containers: &'a [Container], service: &str) -> Vec<&'a Container> {
    containers
        .iter()
        .filter(|c| c.service == service && !c.aside())
        .collect()
}

fn judge(service: &str, containers: &[&Container]) -> Verdict {
    if containers.is_empty() {
        return Verdict::Waiting(format!("service {service} has no container"));
    }
    for c in containers {
        if c.one_shot() {
            match (c.status.as_str(), c.exit_code) {
                ("exited", Some(0)) => {}
                ("exited" | "dead", code) => {
                    return Verdict::Failed(format!(
                        "one-shot service {service} ({}) exited with code {}",
                        c.name,
                        code.unwrap_or(-1)
                    ))
                }
                (status, _) => {
                    return Verdict::Waiting(format!(
                        "one-shot service {service} ({}) has not finished ({status})",
                        c.name
                    ))
                }
            }
        } else if !c.running {
            return Verdict::Waiting(format!(
                "service {service} ({}) is {} (exit code {})",
                c.name,
                c.status,
                c.exit_code.unwrap_or(0)
            ));
        } else if let Some(h) = c.health.as_deref().filter(|h| *h != "healthy") {
            return Verdict::Waiting(format!("service {service} ({}) is {h}", c.name));
        }
    }
    Verdict::Ok
}

async fn probe(p: &Probe, client: &reqwest::Client) -> Result<(), String> {
    let timeout = Duration::from_secs(p.timeout_secs.max(1));
    if let Some(url) = &p.http {
        let want = p.status.unwrap_or(200);
        let resp = client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", p.describe()))?;
        if resp.status().as_u16() != want {
            return Err(format!("{}: got {}", p.describe(), resp.status().as_u16()));
        }
        return Ok(());
    }
    if let Some(addr) = &p.tcp {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}", p.describe())),
            Err(_) => Err(format!("{}: timed out", p.describe())),
        };
    }
    Err("empty probe".into())
}

/// How often the gate runs a starting container's healthcheck itself.
const EARLY_EVERY: Duration = Duration::from_millis(200);

/// What the gate checks.
pub struct Gate<'a> {
    pub docker: &'a Docker,
    pub project: &'a str,
    /// The services that must be acceptable (from the compose file, or a subset).
    pub services: Vec<String>,
    pub probes: &'a [Probe],
    pub timeout: Duration,
}

impl Gate<'_> {
    /// Wait until everything passes, or fail with the reasons and the failing services' logs.
    pub async fn wait(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        // containers whose own healthcheck, run by the gate, passed; when each last ran
        let mut passed: std::collections::BTreeSet<String> = Default::default();
        let mut ran: std::collections::BTreeMap<String, Instant> = Default::default();
        loop {
            let mut containers = self.docker.containers(self.project).await?;
            self.check_early(&mut containers, &mut passed, &mut ran)
                .await;
            let mut waiting = Vec::new();
            let mut failing = Vec::new();
            for s in &self.services {
                let mine = members(&containers, s);
                match judge(s, &mine) {
                    Verdict::Ok => {}
                    Verdict::Waiting(why) => waiting.push((why, mine)),
                    Verdict::Failed(why) => failing.push((why, mine)),
                }
            }
            if !failing.is_empty() {
                return Err(self.explain("failed", failing).await);
            }
            let mut probe_errors = Vec::new();
            if waiting.is_empty() {
                for p in self.probes {
                    if let Err(e) = probe(p, &client).await {
                        probe_errors.push(e);
                    }
                }
                if probe_errors.is_empty() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let mut msg = self
                    .explain(
                        &format!("not healthy within {}s", self.timeout.as_secs()),
                        waiting,
                    )
                    .await;
                for e in probe_errors {
                    msg.push_str(&format!("; probe failed: {e}"));
                }
                return Err(msg);
            }
            // Docker updates a health status once per healthcheck interval; asking often
            // costs one list call and takes the status within 50 ms of its change (this wait
            // is downtime).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Docker runs a container's first healthcheck one `interval` after it starts (30 s
    /// unless the service says otherwise) and says `starting` until then, so waiting for
    /// Docker's word makes the downtime at least an interval long. The gate runs the
    /// healthcheck command itself (`docker exec`, the same command in the same container,
    /// within its timeout) for each of the gate's services' running containers Docker still
    /// calls `starting`, at most every [`EARLY_EVERY`]; once it passed, the container
    /// counts as healthy for this gate, as Docker would count it after the same result. A
    /// failed or impossible run only means waiting on: `unhealthy` stays Docker's word.
    async fn check_early(
        &self,
        containers: &mut [Container],
        passed: &mut std::collections::BTreeSet<String>,
        ran: &mut std::collections::BTreeMap<String, Instant>,
    ) {
        for c in containers.iter_mut() {
            if !c.running
                || c.health.as_deref() != Some("starting")
                || c.aside()
                || !self.services.contains(&c.service)
            {
                continue;
            }
            let Some(check) = &c.check else { continue };
            if !passed.contains(&c.id)
                && ran.get(&c.id).is_none_or(|at| at.elapsed() >= EARLY_EVERY)
            {
                ran.insert(c.id.clone(), Instant::now());
                match self.docker.run_check(&c.id, check).await {
                    Ok(true) => {
                        passed.insert(c.id.clone());
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(container = %c.name, "healthcheck not run: {e}"),
                }
            }
            if passed.contains(&c.id) {
                c.health = Some("healthy".into());
            }
        }
    }

    async fn explain(&self, what: &str, bad: Vec<(String, Vec<&Container>)>) -> String {
        let mut msg = format!("health gate {what}");
        for (why, containers) in bad {
            msg.push_str(&format!("; {why}"));
            for c in containers {
                if let Some(h) = &c.health_output {
                    msg.push_str(&format!("\n--- last healthcheck of {}: {h}", c.name));
                }
                let tail = self.docker.logs_tail(&c.id, 20).await;
                let tail = tail.trim_end();
                let tail = if tail.is_empty() {
                    "(the container wrote nothing)"
                } else {
                    tail
                };
                msg.push_str(&format!("\n--- last log lines of {} ---\n{tail}", c.name));
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: &str, running: bool, exit: i64, health: Option<&str>, restart: &str) -> Container {
        Container {
            id: "id".into(),
            name: "p-s-1".into(),
            service: "s".into(),
            image: "sha256:x".into(),
            running,
            status: status.into(),
            exit_code: Some(exit),
            health: health.map(str::to_string),
            restart: restart.into(),
            health_output: None,
            anonymous_volumes: vec![],
            check: None,
        }
    }

    #[test]
    fn verdicts() {
        let ok = |v: Verdict| assert_eq!(v, Verdict::Ok);
        ok(judge("s", &[&c("running", true, 0, None, "always")]));
        ok(judge(
            "s",
            &[&c("running", true, 0, Some("healthy"), "unless-stopped")],
        ));
        ok(judge("s", &[&c("exited", false, 0, None, "no")]));
        assert!(matches!(judge("s", &[]), Verdict::Waiting(_)));
        assert!(matches!(
            judge("s", &[&c("running", true, 0, Some("starting"), "always")]),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            judge("s", &[&c("running", true, 0, Some("unhealthy"), "always")]),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            judge("s", &[&c("exited", false, 1, None, "always")]),
            Verdict::Waiting(_)
        ));
        assert!(matches!(
            judge("s", &[&c("running", true, 0, None, "no")]),
            Verdict::Waiting(_)
        ));
        assert!(
            matches!(judge("s", &[&c("exited", false, 3, None, "no")]), Verdict::Failed(m) if m.contains("code 3"))
        );
    }

    #[test]
    fn containers_kept_aside_are_not_the_service() {
        let aside = |suffix: &str| Container {
            name: format!("p-s-1{suffix}"),
            ..c("exited", false, 0, None, "always")
        };
        let all = [
            aside(crate::docker::api::ASIDE_OLD),
            c("running", true, 0, None, "always"),
            aside(crate::docker::api::ASIDE_NEW),
        ];
        let mine = members(&all, "s");
        assert_eq!(mine, vec![&all[1]]);
        assert_eq!(judge("s", &mine), Verdict::Ok);
        // without the filter the stopped old container would hold the gate forever
        assert!(matches!(
            judge("s", &all.iter().collect::<Vec<_>>()),
            Verdict::Waiting(_)
        ));
        assert!(members(&all, "other").is_empty());
    }
}
