//! `molt.toml`, the operator's settings at the installation root. Every key is optional; a
//! missing file means the defaults. Read once per process, by [`crate::Installation::open`].
//!
//! Nothing in it can be misread: the file is versioned (`format`, 1 when absent; a newer one
//! is refused), every unknown key is an error that names it and the known key it most likely
//! meant (`public-key` for `public_key` would otherwise turn signature checking off), and an
//! installation without a public key must say `allow_unsigned = true` to accept unsigned
//! manifests.

use serde::Deserialize;
use std::path::Path;

/// The newest `molt.toml` format this molt reads.
pub const CONFIG_FORMAT: u32 = 1;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The file's format version.
    pub format: u32,
    /// The compose project name, stable across releases (default: the root's directory name).
    pub project: Option<String>,
    /// Where the vendor publishes `manifest.json` (http(s) URL or path).
    pub manifest_url: Option<String>,
    /// The vendor's minisign public key: a path to its `.pub` file, or the key itself. A
    /// single key that cannot be rotated; `root` is the way that can.
    pub public_key: Option<String>,
    /// The vendor's first root document the operator pins (a path, relative to the
    /// installation root; its signatures in the same path plus `.minisig`). Later roots are
    /// fetched beside the manifest and followed by rotation (see `crate::root`).
    pub root: Option<String>,
    /// Accept manifests that carry no signature; only honoured without `public_key`.
    pub allow_unsigned: bool,
    /// The release's database (`mysql://user:password@host:port/db`), for the schema
    /// migration; `MOLT_DATABASE_URL` and `--database-url` take precedence.
    pub database_url: Option<String>,
    pub backup: Backup,
    pub retention: Retention,
    pub download: Download,
    pub upgrade: Upgrade,
    pub schedule: Schedule,
    pub notify: crate::notify::Config,
    pub self_update: SelfUpdate,
}

/// Where molt's own releases come from (`molt self-update`): product `molt`, always signed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfUpdate {
    pub manifest_url: Option<String>,
    /// The minisign public key of molt's releases (a `.pub` file or the key); or `root`.
    pub public_key: Option<String>,
    /// A pinned root document of molt's releases (relative to the installation root).
    pub root: Option<String>,
}

/// When unattended runs may happen.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// When an unattended upgrade may start: `DAYS HH:MM-HH:MM` (see `crate::window`).
    pub upgrade_window: Option<String>,
    /// The IANA time zone of the window (default: the host's).
    pub timezone: Option<String>,
    /// When the backup timer runs: a systemd calendar expression (`daily`, `Sun 03:00`).
    /// Checked by `systemd-analyze calendar` when the units are installed.
    pub backup: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Upgrade {
    /// Seconds a migration waits for another migration's `GET_LOCK`.
    pub schema_lock_wait_secs: u64,
    /// Destructive schema changes the operator allows on top of the release's own
    /// `allow_destructive` (subjects `db.table`, `db.table.column`, `db.table.index`).
    pub allow_destructive: Vec<String>,
    /// The releases unattended upgrades stay within (`">=2.0, <3"`; see
    /// `crate::version::Range`). An operator's own `molt upgrade` is not bound by it.
    pub versions: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            format: CONFIG_FORMAT,
            project: None,
            manifest_url: None,
            public_key: None,
            root: None,
            allow_unsigned: false,
            database_url: None,
            backup: Backup::default(),
            retention: Retention::default(),
            download: Download::default(),
            upgrade: Upgrade::default(),
            schedule: Schedule::default(),
            notify: crate::notify::Config::default(),
            self_update: SelfUpdate::default(),
        }
    }
}

impl Default for Upgrade {
    fn default() -> Upgrade {
        Upgrade {
            schema_lock_wait_secs: 30,
            allow_destructive: Vec::new(),
            versions: None,
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
    /// Seconds a manifest or signature fetch may take in all.
    pub metadata_timeout_secs: u64,
}

impl Default for Download {
    fn default() -> Download {
        Download {
            stall_timeout_secs: 30,
            retries: 5,
            metadata_timeout_secs: 60,
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
    /// The maintenance window for unattended upgrades, if one is set.
    pub fn upgrade_window(&self) -> Result<Option<crate::window::Window>, String> {
        if self.schedule.upgrade_window.is_none() && self.schedule.timezone.is_none() {
            return Ok(None);
        }
        let tz = crate::window::zone(self.schedule.timezone.as_deref())
            .map_err(|e| format!("[schedule] timezone: {e}"))?;
        self.schedule
            .upgrade_window
            .as_deref()
            .map(|w| crate::window::Window::parse(w, tz).map_err(|e| format!("[schedule] {e}")))
            .transpose()
    }

    /// The public key's text, read from the file it names if it names one.
    pub fn public_key_text(&self, root: &Path) -> Result<Option<String>, String> {
        key_text(self.public_key.as_deref(), root)
    }
}

/// A key given as a file (a path, or a name ending in `.pub`, under `root`) or as itself.
pub fn key_text(key: Option<&str>, root: &Path) -> Result<Option<String>, String> {
    {
        let Some(k) = key else {
            return Ok(None);
        };
        let p = root.join(k);
        if k.contains('/') || k.ends_with(".pub") {
            return std::fs::read_to_string(&p)
                .map(Some)
                .map_err(|e| format!("cannot read the public key {}: {e}", p.display()));
        }
        Ok(Some(k.to_string()))
    }
}

impl Config {
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
            Ok(text) => Config::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Parse the text of a molt.toml.
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| explain(&e))?;
        if c.format > CONFIG_FORMAT {
            return Err(format!(
                "format {} is newer than this molt reads ({CONFIG_FORMAT}); use a newer molt",
                c.format
            ));
        }
        if c.format == 0 {
            return Err("format 0 does not exist (the first format is 1)".into());
        }
        if c.root.is_some() && c.public_key.is_some() {
            return Err(
                "both `root` and `public_key` are set: name the vendor's keys in one place (`root` pins the vendor's root document, which names them)".into(),
            );
        }
        c.upgrade_window()?;
        c.notify.check()?;
        if c.self_update.root.is_some() && c.self_update.public_key.is_some() {
            return Err("[self_update]: both `root` and `public_key` are set; name one".into());
        }
        if let Some(v) = &c.upgrade.versions {
            crate::version::Range::parse(v).map_err(|e| format!("[upgrade] versions: {e}"))?;
        }
        if let Some(b) = &c.schedule.backup {
            if b.trim().is_empty() || b.chars().any(|ch| ch.is_control()) {
                return Err(format!(
                    "[schedule] backup = {b:?}: a systemd calendar expression on one line (daily, Sun 03:00)"
                ));
            }
        }
        if c.root.is_some() && c.allow_unsigned {
            return Err("`allow_unsigned = true` with a pinned `root`: a root means manifests are signed; remove one of them".into());
        }
        Ok(c)
    }
}

/// A parse error in words, naming an unknown key and the known key it most likely meant.
fn explain(e: &toml::de::Error) -> String {
    let msg = e.message();
    let line = e
        .span()
        .map(|_| format!(" ({})", e.to_string().lines().next().unwrap_or("").trim()));
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, known)) = rest.split_once('`') {
            let known: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
            let hint = match closest(key, &known) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => format!("; known keys here: {}", known.join(", ")),
            };
            return format!("unknown key `{key}`{hint}{}", line.unwrap_or_default());
        }
    }
    e.to_string().trim().to_string()
}

/// The known key closest to `key`: same letters ignoring case, `-` and `_`, or within a small
/// edit distance.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace(['-', '_'], "");
    if let Some(k) = known.iter().find(|k| norm(k) == norm(key)) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_the_likely_one() {
        let e = Config::parse("public-key = \"k.pub\"\n").unwrap_err();
        assert!(
            e.contains("unknown key `public-key`; did you mean `public_key`?"),
            "{e}"
        );
        let e = Config::parse("manifest_ulr = \"x\"\n").unwrap_err();
        assert!(e.contains("did you mean `manifest_url`?"), "{e}");
        let e = Config::parse("[retention]\nkeep_release = 2\n").unwrap_err();
        assert!(e.contains("did you mean `keep_releases`?"), "{e}");
        let e = Config::parse("colour = \"blue\"\n").unwrap_err();
        assert!(e.contains("unknown key `colour`; known keys here:"), "{e}");
        let e = Config::parse("format = 2\n").unwrap_err();
        assert!(e.contains("newer than this molt reads"), "{e}");
        let c = Config::parse("format = 1\nallow_unsigned = true\n").unwrap();
        assert!(c.allow_unsigned && c.public_key.is_none());
    }

    #[test]
    fn a_schedule_is_checked_when_the_file_is_read() {
        let c = Config::parse(
            "[schedule]\nupgrade_window = \"Mon-Fri 02:00-04:00\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        assert_eq!(
            c.upgrade_window().unwrap().unwrap().text(),
            "Mon-Fri 02:00-04:00"
        );
        for (text, says) in [
            (
                "[schedule]\nupgrade_window = \"Mon 02:00-04:00\"\ntimezone = \"Mars/Olympus\"\n",
                "[schedule] timezone: unknown time zone `Mars/Olympus`",
            ),
            (
                "[schedule]\nupgrade_window = \"Mon 02:00-02:00\"\n",
                "it is empty",
            ),
            (
                "[schedule]\nupgrade-window = \"Mon 02:00-03:00\"\n",
                "did you mean `upgrade_window`?",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
