//! The installation: the one value that owns every path of molt's layout under the root, and
//! reads the operator's `molt.toml`, `.env` and database URL once per process.
//!
//! ```text
//! <root>/molt.toml            operator settings (config.rs)
//! <root>/molt.lock            the installation lock (journal::Lock)
//! <root>/installed.json       what is installed, written by the upgrade's commit step
//! <root>/current -> releases/<v>
//! <root>/releases/<v>/        staged releases (immutable once staged)
//! <root>/shared/              persistent data: the operator's .env, data, uploads, logs
//! <root>/backups/<id>/        backups
//! <root>/cache/packages/      verified downloads; cache/runs/<run>/ a run's scratch
//! <root>/journal/             the sled journal
//! <root>/images.json          image ids molt loaded
//! ```
//!
//! The database password never leaves this value: plans journal the URL without it
//! ([`redact`]) and steps receive the full URL from the installation when the plan is built.

use crate::config::Config;
use crate::release::Release;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variable an operator may set to give the full database URL (with password).
pub const URL_ENV: &str = "MOLT_DATABASE_URL";

/// An installation root, its settings and secrets.
#[derive(Clone)]
pub struct Installation {
    pub root: PathBuf,
    pub config: Config,
    dotenv: BTreeMap<String, String>,
    /// The database URL as configured, `${VAR}`s not yet expanded (they may name keys the
    /// upgrade's merge adds to the `.env`); `None` when no URL is configured.
    database_url: Option<String>,
}

impl std::fmt::Debug for Installation {
    // Hand-written: the derived form would print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installation")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Installation {
    /// Open the installation at `root`: read `molt.toml`, the operator's `.env` and the
    /// database URL (`MOLT_DATABASE_URL`, else molt.toml's `database_url`).
    pub fn open(root: &Path) -> Result<Installation, String> {
        let root = std::path::absolute(root).map_err(|e| format!("{}: {e}", root.display()))?;
        if !root.is_dir() {
            return Err(format!(
                "installation root {} is not a directory (give --root or MOLT_ROOT)",
                root.display()
            ));
        }
        let config = Config::load(&root.join("molt.toml"))?;
        let mut inst = Installation {
            root,
            config,
            dotenv: BTreeMap::new(),
            database_url: None,
        };
        inst.reload_env();
        Ok(inst)
    }

    /// Read the operator's `.env` again and re-expand the database URL (after the upgrade
    /// merged new keys into it).
    pub fn reload_env(&mut self) {
        self.dotenv = read_dotenv(&self.root);
        self.database_url = std::env::var(URL_ENV)
            .ok()
            .or_else(|| self.config.database_url.clone());
    }

    /// Use `url` as the database URL (the command line's `--database-url`).
    pub fn with_database_url(mut self, url: &str) -> Installation {
        self.database_url = Some(url.to_string());
        self
    }

    /// Replace `${VAR}` with the process environment's value, else the operator's `.env`;
    /// an unset variable is an error naming it.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        expand(text, &self.dotenv)
    }

    /// Values that must never leave the host (a notification, a report): the values of the
    /// `.env` keys whose names say secret (`PASS`, `SECRET`, `TOKEN`, `KEY`, `CREDENTIAL`,
    /// `PRIVATE`, `AUTH`) and the database URL's password. Longest first, so that a secret
    /// containing another is replaced whole.
    pub fn secrets(&self) -> Vec<String> {
        const SAY_SECRET: [&str; 7] = [
            "PASS",
            "SECRET",
            "TOKEN",
            "KEY",
            "CREDENTIAL",
            "PRIVATE",
            "AUTH",
        ];
        let mut out: Vec<String> = self
            .dotenv
            .iter()
            .filter(|(k, v)| {
                let k = k.to_ascii_uppercase();
                v.len() >= 3 && SAY_SECRET.iter().any(|s| k.contains(s))
            })
            .map(|(_, v)| v.clone())
            .collect();
        if let Ok(Some(url)) = self.database_url() {
            if let Some(pw) = url_password(&url).filter(|p| p.len() >= 3) {
                out.push(pw);
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }

    /// The full database URL (with its password), if one is configured.
    pub fn database_url(&self) -> Result<Option<String>, String> {
        self.database_url
            .as_deref()
            .map(|u| self.expand(u))
            .transpose()
    }

    /// The database URL as configured, without its password and `${VAR}`s unexpanded: what a
    /// plan journals.
    pub fn database_url_journaled(&self) -> Option<String> {
        self.database_url.as_deref().map(redact)
    }

    /// The URL a step uses for a journaled, password-less one: the configured URL when its
    /// journaled form is the same, else the journaled one as it is. Expanded when the step
    /// uses it, from the `.env` as it is then.
    pub fn database_url_for(&self, journaled: &str) -> DatabaseUrl {
        let raw = match &self.database_url {
            Some(raw) if redact(raw) == journaled => raw.clone(),
            _ => journaled.to_string(),
        };
        DatabaseUrl {
            raw,
            journaled: journaled.to_string(),
            root: self.root.clone(),
        }
    }

    /// The compose project: `project` from molt.toml, or the root directory's name.
    pub fn project(&self) -> String {
        self.config.project(&self.root)
    }

    /// A path relative to the root (for plans, which journal relative paths).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// What the installation trusts of the vendor's metadata ([`crate::trust`]).
    pub fn trust_file(&self) -> PathBuf {
        self.root.join("trust.json")
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("molt.lock")
    }

    /// Scratch directories of runs (`cache/runs/<run>`).
    pub fn runs_scratch(&self) -> PathBuf {
        self.root.join("cache").join("runs")
    }

    /// The scratch directory of one run (removed once the run is terminal).
    pub fn scratch(&self, run: engine::RunId) -> PathBuf {
        self.runs_scratch().join(run.to_string())
    }

    /// The releases' start orders, kept across runs (`cache/start-order`).
    pub fn start_orders_dir(&self) -> PathBuf {
        self.root.join("cache").join("start-order")
    }

    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("cache").join("packages")
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// `releases/<version>`, relative to the root.
    pub fn release_rel(version: &str) -> String {
        format!("releases/{version}")
    }

    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }

    /// The operator's compose override file, kept across upgrades.
    pub fn compose_override(&self) -> PathBuf {
        self.shared_dir().join("docker-compose.override.yml")
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The image ids molt loaded (`images.json`).
    pub fn images_registry(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// What the last committed upgrade installed (`installed.json`).
    /// `hold.json`: unattended upgrades are held (`crate::unattended::Hold`).
    pub fn hold_file(&self) -> PathBuf {
        self.root.join("hold.json")
    }

    pub fn installed_file(&self) -> PathBuf {
        self.root.join("installed.json")
    }

    /// The live release: its directory relative to the root (`releases/<v>`, where `current`
    /// points) and its `release.toml`. `None` when nothing is installed.
    pub fn current(&self) -> Result<Option<(String, Release)>, String> {
        let link = self.current_link();
        let target = match std::fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", link.display())),
        };
        let rel = target.to_string_lossy().trim_end_matches('/').to_string();
        crate::fsutil::safe_relative(&rel)
            .map_err(|e| format!("{} points outside the installation: {e}", link.display()))?;
        let release = Release::load(&self.root.join(&rel))?;
        Ok(Some((rel, release)))
    }
}

/// A database URL as a step holds it: configured text whose `${VAR}`s are expanded each time
/// it is used, from the process environment and the operator's `.env` as they are then (an
/// upgrade's merge may have just added the keys it names). Never printed whole.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    journaled: String,
    root: PathBuf,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.journaled)
    }
}

impl DatabaseUrl {
    /// The full URL, now.
    pub fn get(&self) -> Result<String, String> {
        expand(&self.raw, &read_dotenv(&self.root))
    }

    /// Whether the URL carries no password (so a failed login needs a hint).
    pub fn lacks_password(&self) -> bool {
        self.raw == self.journaled && self.raw.contains('@')
    }
}

fn expand(text: &str, dotenv: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed ${{ in {}", redact(text)));
        };
        let name = &rest[start + 2..start + len];
        let value = std::env::var(name).ok().or_else(|| dotenv.get(name).cloned()).ok_or_else(|| {
            format!("the database URL names ${{{name}}}, which neither the environment nor the installation's .env sets")
        })?;
        out.push_str(&value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `mysql://user:secret@host/db` -> `mysql://user@host/db`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            let user = cred.split(':').next().unwrap_or(cred);
            return format!("{scheme}://{user}@{host}");
        }
    }
    url.to_string()
}

/// The password of a `scheme://user:password@host/...` URL.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    Some(auth.split_once(':')?.1.to_string())
}

/// Parse `.env` text: `KEY=VALUE` lines, `export` allowed, values optionally quoted, `#`
/// comments. Keys in file order with their values.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        vars.push((k.trim().to_string(), v.to_string()));
    }
    vars
}

/// Variables of the operator's `.env` (`.env` at the root, then `shared/.env`, which wins).
fn read_dotenv(root: &Path) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for file in [root.join(".env"), root.join("shared").join(".env")] {
        if let Ok(text) = std::fs::read_to_string(&file) {
            vars.extend(parse_dotenv(&text));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_expanded_from_the_operators_env() {
        assert_eq!(
            redact("mysql://app:s3cr@t@db:3306/x"),
            "mysql://app@db:3306/x"
        );
        assert_eq!(redact("mysql://app@db/x"), "mysql://app@db/x");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        std::fs::write(
            dir.path().join("shared/.env"),
            "# comment\nexport MOLT_T_DB_USER=app\nMOLT_T_DB_PASS=\"p w\"\n",
        )
        .unwrap();
        let inst = Installation::open(dir.path()).unwrap();
        let url = "mysql://${MOLT_T_DB_USER}:${MOLT_T_DB_PASS}@127.0.0.1/app";
        assert_eq!(inst.expand(url).unwrap(), "mysql://app:p w@127.0.0.1/app");
        let err = inst.expand("mysql://${MOLT_T_NOPE}@h/x").unwrap_err();
        assert!(err.contains("MOLT_T_NOPE"), "{err}");
        let inst = inst.with_database_url(url);
        let journaled = inst.database_url_journaled().unwrap();
        assert_eq!(journaled, "mysql://${MOLT_T_DB_USER}@127.0.0.1/app");
        let lazy = inst.database_url_for(&journaled);
        assert_eq!(lazy.get().unwrap(), "mysql://app:p w@127.0.0.1/app");
        assert!(!format!("{lazy:?}").contains("p w"));
        // the .env changes during a run (the upgrade's merge): the step sees the new value
        std::fs::write(
            dir.path().join("shared/.env"),
            "MOLT_T_DB_USER=app\nMOLT_T_DB_PASS=new\n",
        )
        .unwrap();
        assert_eq!(lazy.get().unwrap(), "mysql://app:new@127.0.0.1/app");
        assert_eq!(
            inst.database_url_for("mysql://other@127.0.0.1/app")
                .get()
                .unwrap(),
            "mysql://other@127.0.0.1/app"
        );
        assert!(!format!("{inst:?}").contains("p w"));
    }
}
