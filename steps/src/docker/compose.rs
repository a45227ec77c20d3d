//! The compose front-end the host has: `docker compose` (v2, the plugin) or `docker-compose`
//! (v1, the Python tool). Both are driven with the same arguments: `-p PROJECT -f FILE
//! --project-directory DIR`, so the containers of release N and N+1 belong to one project.
//!
//! `MOLT_COMPOSE=v1|v2` forces a front-end; otherwise v2 is preferred when it answers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::process::Command;
use tokio::sync::OnceCell;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Flavor {
    /// `docker compose`
    V2,
    /// `docker-compose`
    V1,
}

impl Flavor {
    fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Flavor::V2 => ("docker", &["compose"]),
            Flavor::V1 => ("docker-compose", &[]),
        }
    }
}

/// `prog` as the shell would find it on `PATH`: an executable file.
fn on_path(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(prog))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Does the front-end answer? v2 is asked for its version (a Go program: milliseconds). v1 is
/// only looked up on `PATH`: asking it costs a Python start (about 0.4 s here), which every
/// molt command would pay; a v1 that is installed but broken fails its first real command
/// with compose's own message.
async fn answers(flavor: Flavor) -> Option<String> {
    if flavor == Flavor::V1 {
        return on_path("docker-compose").map(|p| format!("docker-compose at {}", p.display()));
    }
    let (prog, pre) = flavor.program();
    let out = Command::new(prog)
        .args(pre)
        .arg("version")
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

static DETECTED: OnceCell<Result<(Flavor, String), String>> = OnceCell::const_new();

/// Which front-end to use, found once per process.
pub async fn detect() -> Result<Flavor, String> {
    DETECTED
        .get_or_init(|| async {
            let forced = std::env::var("MOLT_COMPOSE").ok();
            let order: Vec<Flavor> = match forced.as_deref() {
                Some("v1") => vec![Flavor::V1],
                Some("v2") => vec![Flavor::V2],
                Some(other) => {
                    return Err(format!("MOLT_COMPOSE={other:?}: use v1 or v2"));
                }
                None => vec![Flavor::V2, Flavor::V1],
            };
            for f in order {
                if let Some(version) = answers(f).await {
                    tracing::info!(front_end = ?f, %version, "compose front-end chosen");
                    return Ok((f, version));
                }
            }
            Err(match forced {
                Some(f) => format!("MOLT_COMPOSE={f} but that compose front-end does not answer"),
                None => "neither `docker compose` (v2) nor `docker-compose` (v1) is installed; install one of them".into(),
            })
        })
        .await
        .clone()
        .map(|(f, _)| f)
}

/// What the list of services depends on: the compose file and the override (by path, size
/// and modification time), and the active profiles (`COMPOSE_PROFILES` from the process or
/// the project directory's `.env`). Any change is a new key, so a memo is never stale.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServicesKey {
    files: Vec<(PathBuf, Option<(u64, std::time::SystemTime)>)>,
    profiles: Option<String>,
}

impl ServicesKey {
    fn of(c: &Compose) -> ServicesKey {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)))
        };
        let mut files = vec![(c.file.clone(), stamp(&c.file))];
        if let Some(o) = &c.overlay {
            files.push((o.clone(), stamp(o)));
        }
        let dir = c.file.parent().unwrap_or(Path::new("."));
        let profiles = std::env::var("COMPOSE_PROFILES").ok().or_else(|| {
            std::fs::read_to_string(dir.join(".env"))
                .ok()?
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("COMPOSE_PROFILES=")
                        .map(str::to_string)
                })
        });
        ServicesKey { files, profiles }
    }
}

static SERVICES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<ServicesKey, Vec<String>>>,
> = std::sync::LazyLock::new(Default::default);

/// One compose project (stable across releases) and one compose file.
#[derive(Clone, Debug)]
pub struct Compose {
    pub flavor: Flavor,
    pub project: String,
    pub file: PathBuf,
    /// The operator's override file, passed after the release's when it exists (so it
    /// survives upgrades: it lives in `shared/`, not in a release).
    pub overlay: Option<PathBuf>,
    /// Interpolate from this file instead of the project directory's `.env` (`--env-file`).
    pub env_file: Option<PathBuf>,
}

impl Compose {
    pub async fn new(project: &str, file: &Path) -> Result<Compose, String> {
        Ok(Compose {
            flavor: detect().await?,
            project: project.to_string(),
            file: file.to_path_buf(),
            overlay: None,
            env_file: None,
        })
    }

    /// Also use the operator's override file `overlay` when it exists.
    pub fn with_overlay(mut self, overlay: Option<PathBuf>) -> Compose {
        self.overlay = overlay.filter(|p| p.is_file());
        self
    }

    /// Interpolate from `env_file` instead of the project directory's `.env`.
    pub fn with_env_file(mut self, env_file: &Path) -> Compose {
        self.env_file = Some(env_file.to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let (prog, pre) = self.flavor.program();
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let mut c = Command::new(prog);
        c.args(pre);
        if let Some(e) = &self.env_file {
            c.arg("--env-file").arg(e);
        }
        c.arg("-p").arg(&self.project).arg("-f").arg(&self.file);
        if let Some(o) = &self.overlay {
            c.arg("-f").arg(o);
        }
        c.arg("--project-directory").arg(dir).kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str], services: &[String]) -> Result<Output, String> {
        let mut c = self.command();
        c.args(args).args(services);
        let what = format!("compose {} ({})", args.join(" "), self.file.display());
        let out = c
            .output()
            .await
            .map_err(|e| format!("{what}: cannot run: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{what} failed: {}", tail.join(" | ")));
        }
        Ok(out)
    }

    /// The services the file defines (this also validates the file). Asked of compose once
    /// per process for the same files (see [`ServicesKey`]): every compose run of the v1
    /// front-end costs a Python start, and the upgrade's cut-over would otherwise pay it for
    /// each service-name check.
    pub async fn services(&self) -> Result<Vec<String>, String> {
        let key = ServicesKey::of(self);
        if let Some(known) = SERVICES.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(known.clone());
        }
        let out = self.run(&["config", "--services"], &[]).await?;
        let services: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        SERVICES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, services.clone());
        Ok(services)
    }

    /// Create and start (all services, or the ones named), detached. Idempotent.
    pub async fn up(&self, services: &[String]) -> Result<(), String> {
        self.check_names(services).await?;
        self.run(&["up", "-d", "--no-color"], services)
            .await
            .map(drop)
    }

    /// The whole configuration as compose resolves it (YAML).
    pub async fn config(&self) -> Result<String, String> {
        let out = self.run(&["config"], &[]).await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A digest of everything `compose config` reads, to key what molt keeps of its answer
    /// across runs: the front-end, the project, the files' paths and content, the `.env`
    /// it interpolates from (its content: the `--env-file`, else the project directory's),
    /// and the value of each process variable the files name (`$NAME`, `${NAME...}`) or
    /// compose itself reads (`COMPOSE_*`). A file that cannot be read is an error (nothing
    /// is kept for it).
    pub fn inputs_key(&self) -> std::io::Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut field = |name: &str, bytes: &[u8]| {
            h.update(format!("{name}:{}:", bytes.len()));
            h.update(bytes);
        };
        field("flavor", format!("{:?}", self.flavor).as_bytes());
        field("project", self.project.as_bytes());
        let mut texts = Vec::new();
        for f in std::iter::once(&self.file).chain(self.overlay.as_ref()) {
            let text = std::fs::read(f)?;
            field("file", f.as_os_str().as_encoded_bytes());
            field("content", &text);
            texts.push(text);
        }
        let env = match &self.env_file {
            Some(e) => std::fs::read(e)?,
            None => {
                match std::fs::read(self.file.parent().unwrap_or(Path::new(".")).join(".env")) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
        };
        field("env", &env);
        let named: BTreeSet<String> = texts.iter().flat_map(|t| variables(t)).collect();
        for (k, v) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("COMPOSE_") || k.starts_with("DOCKER_") || named.contains(&*k) {
                field("var", k.as_bytes());
                field("value", v.as_encoded_bytes());
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// Create, without starting, one more container of each service (`scale`: the count each
    /// service then has), leaving the existing ones as they are: `up --no-start
    /// --no-recreate --scale`.
    pub async fn create_more(&self, scale: &[(String, usize)]) -> Result<(), String> {
        let mut args = vec![
            "up".to_string(),
            "--no-start".into(),
            "--no-recreate".into(),
        ];
        for (service, n) in scale {
            args.push("--scale".into());
            args.push(format!("{service}={n}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args, &[]).await.map(drop)
    }

    /// Stop (all services, or the ones named), keeping the containers. Idempotent.
    pub async fn stop(&self, services: &[String]) -> Result<(), String> {
        self.check_names(services).await?;
        self.run(&["stop"], services).await.map(drop)
    }

    async fn check_names(&self, services: &[String]) -> Result<(), String> {
        if services.is_empty() {
            return Ok(());
        }
        let known = self.services().await?;
        for s in services {
            if !known.contains(s) {
                return Err(format!(
                    "service {s:?} is not defined in {} (it has: {})",
                    self.file.display(),
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The variable names a compose file interpolates: `$NAME` and `${NAME...}` (`$$` is a
/// literal dollar).
fn variables(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'$' {
            i += 1;
            continue;
        }
        i += 1;
        match text.get(i) {
            Some(b'$') => {
                i += 1;
                continue;
            }
            Some(b'{') => i += 1,
            _ => {}
        }
        let start = i;
        while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_') {
            i += 1;
        }
        if i > start {
            out.push(String::from_utf8_lossy(&text[start..i]).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_variables_a_file_interpolates_are_found() {
        let text = b"image: app:${APP_TAG:-1}\nports: [\"$PORT:80\"]\ncmd: echo $$HOME ${X}$Y";
        assert_eq!(super::variables(text), ["APP_TAG", "PORT", "X", "Y"]);
    }
}
