//! `molt.toml`, the operator's settings at the installation root. Every key is optional; a
//! missing file means the defaults. Read once per process, by [`crate::Installation::open`].

use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The compose project name, stable across releases (default: the root's directory name).
    pub project: Option<String>,
    /// Where the vendor publishes `manifest.json` (http(s) URL or path).
    pub manifest_url: Option<String>,
    /// The vendor's minisign public key: a path to its `.pub` file, or the key itself.
    pub public_key: Option<String>,
    /// The release's database (`mysql://user:password@host:port/db`), for the schema
    /// migration; `MOLT_DATABASE_URL` and `--database-url` take precedence.
    pub database_url: Option<String>,
    pub backup: Backup,
    pub retention: Retention,
    pub download: Download,
    pub upgrade: Upgrade,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Upgrade {
    /// Seconds a migration waits for another migration's `GET_LOCK`.
    pub schema_lock_wait_secs: u64,
    /// Destructive schema changes the operator allows on top of the release's own
    /// `allow_destructive` (subjects `db.table`, `db.table.column`, `db.table.index`).
    pub allow_destructive: Vec<String>,
}

impl Default for Upgrade {
    fn default() -> Upgrade {
        Upgrade {
            schema_lock_wait_secs: 30,
            allow_destructive: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Download {
    /// Seconds without a byte before an attempt is abandoned (and retried).
    pub stall_timeout_secs: u64,
    /// Attempts after the first, with exponential back-off.
    pub retries: u32,
}

impl Default for Download {
    fn default() -> Download {
        Download {
            stall_timeout_secs: 30,
            retries: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// Persistent paths backed up, relative to the root.
    pub paths: Vec<String>,
}

impl Default for Backup {
    fn default() -> Backup {
        Backup {
            paths: vec!["shared".into()],
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub keep_releases: usize,
    pub keep_backups: usize,
    pub keep_backup_days: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_releases: 3,
            keep_backups: 5,
            keep_backup_days: 30,
        }
    }
}

impl Config {
    /// The public key's text, read from the file it names if it names one.
    pub fn public_key_text(&self, root: &Path) -> Result<Option<String>, String> {
        let Some(k) = &self.public_key else {
            return Ok(None);
        };
        let p = root.join(k);
        if k.contains('/') || k.ends_with(".pub") {
            return std::fs::read_to_string(&p)
                .map(Some)
                .map_err(|e| format!("cannot read the public key {}: {e}", p.display()));
        }
        Ok(Some(k.clone()))
    }

    /// The compose project: `project` from molt.toml, or the root directory's name reduced to
    /// what compose accepts (lowercase letters, digits, `-`, `_`).
    pub fn project(&self, root: &Path) -> String {
        if let Some(p) = &self.project {
            return p.clone();
        }
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let clean: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if clean.is_empty() {
            "molt".into()
        } else {
            clean
        }
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}
