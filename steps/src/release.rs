//! `release.toml`: the vendor's description of a release, at the root of its directory.
//!
//! ```toml
//! format = 1
//! version = "2.0.0"
//! compose_file = "docker-compose.yml"
//! persistent = ["data", "uploads", "logs", ".env"]
//! env_template = "env.template"
//! health_timeout_secs = 120
//!
//! [database]
//! service = "mysql"
//! schema = "schema/init.sql"
//!
//! [images]
//! "images/app.tar" = "sha256:4f2c..."
//!
//! [renames]                    # schema renames that keep the data
//! "shop.item.price" = "unit_price"
//! "shop.old_orders" = "orders"
//!
//! [[probe]]
//! http = "http://127.0.0.1:8080/health"
//! status = 200
//! timeout_secs = 5
//!
//! [[probe]]
//! tcp = "127.0.0.1:3306"
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The newest `release.toml` format this molt reads.
pub const RELEASE_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub format: u32,
    pub version: String,
    #[serde(default = "default_compose")]
    pub compose_file: String,
    /// Paths that live in the installation's `shared/` and are linked into every release.
    #[serde(default)]
    pub persistent: Vec<String>,
    /// How long the health gate waits for every service and probe.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: u64,
    pub database: Option<Database>,
    /// Image tarball (relative to the release) -> the image id it must load.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    #[serde(default, rename = "probe")]
    pub probes: Vec<Probe>,
    /// Destructive schema changes the vendor vouches for, by subject: `"db.table"` (the table
    /// and anything in it) or `"db.table.column"` (see `steps::schema::diff::Allow`).
    #[serde(default)]
    pub allow_destructive: Vec<String>,
    /// Schema renames: `"db.table"` -> the table's new name, `"db.table.column"` -> the column's
    /// new name (the table named as the release's schema names it). The migration renames
    /// instead of dropping and adding, keeping the data (see `steps::schema::diff`).
    #[serde(default)]
    pub renames: BTreeMap<String, String>,
    /// The vendor's `.env` template, relative to the release: the upgrade merges it into the
    /// operator's `shared/.env` (operator values kept, new keys added, removed keys reported).
    #[serde(default)]
    pub env_template: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub service: String,
    pub schema: Option<String>,
}

/// A check of the health gate: an HTTP GET expecting a status, or a TCP connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub http: Option<String>,
    /// Expected HTTP status (default 200).
    pub status: Option<u16>,
    pub tcp: Option<String>,
    /// Per attempt.
    #[serde(default = "default_probe_timeout")]
    pub timeout_secs: u64,
}

fn default_compose() -> String {
    "docker-compose.yml".into()
}

fn default_health_timeout() -> u64 {
    120
}

fn default_probe_timeout() -> u64 {
    5
}

impl Probe {
    pub fn describe(&self) -> String {
        match (&self.http, &self.tcp) {
            (Some(url), _) => format!("GET {url} -> {}", self.status.unwrap_or(200)),
            (None, Some(addr)) => format!("tcp {addr}"),
            (None, None) => "empty probe".into(),
        }
    }
}

impl Release {
    /// Read and check `<dir>/release.toml`.
    pub fn load(dir: &Path) -> Result<Release, String> {
        let path = dir.join("release.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Release::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Release, String> {
        #[derive(Deserialize)]
        struct Probe {
            format: Option<u32>,
        }
        let probe: Probe = toml::from_str(text).map_err(|e| e.to_string())?;
        match probe.format {
            None => return Err("missing `format` (this molt reads format 1)".into()),
            Some(f) if f > RELEASE_FORMAT => {
                return Err(format!(
                    "format {f} is newer than this molt reads ({RELEASE_FORMAT}); use a newer molt"
                ))
            }
            Some(_) => {}
        }
        let r: Release = toml::from_str(text).map_err(|e| e.to_string())?;
        crate::version::Version::parse(&r.version)?;
        for p in &r.probes {
            if p.http.is_some() == p.tcp.is_some() {
                return Err(format!(
                    "a [[probe]] needs exactly one of `http` or `tcp`: {}",
                    p.describe()
                ));
            }
            if let Some(url) = &p.http {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("probe url {url:?} is not http(s)"));
                }
            }
        }
        for (tarball, id) in &r.images {
            crate::fsutil::safe_relative(tarball)?;
            if !id.starts_with("sha256:") || id.len() != 71 {
                return Err(format!(
                    "image id {id:?} for {tarball} is not sha256:<64 hex digits>"
                ));
            }
        }
        crate::fsutil::safe_relative(&r.compose_file)?;
        if let Some(t) = &r.env_template {
            crate::fsutil::safe_relative(t)?;
        }
        for p in &r.persistent {
            let rel = crate::fsutil::safe_relative(p)?;
            if rel.components().count() != 1 {
                return Err(format!(
                    "persistent path {p:?} must be one name at the release's top level"
                ));
            }
        }
        Ok(r)
    }

    pub fn compose_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.compose_file)
    }
}
