//! The start order of a release's services, kept across runs in
//! `cache/start-order/<release>.json`, keyed by everything `compose config` reads
//! ([`Compose::inputs_key`]).
//!
//! A rollback without compose starts the old release's containers in its dependency order
//! (`standby::bring_back`). Asking compose for it costs a `compose config` run (a Python start
//! with the v1 front-end, about half a second here, on cores the old release still serves
//! from) in every upgrade; but the order was already known when that release was installed.
//! So the stand-by step keeps the order it reads for the new release, the housekeeping after
//! a commit makes sure the installed release has one (a first install reads it there, after
//! the downtime), and the next upgrade's stand-by takes the old release's order from here
//! when its key still matches, else asks compose. Housekeeping forgets the orders of the
//! releases it removes. The file holds service names and dependencies, never a value of the
//! `.env`. A file that does not parse, or a key that differs, is a miss, never an error.

use super::standby::{start_order, Start};
use crate::docker::compose::Compose;
use crate::fsutil::{remove_path, write_atomic};
use crate::services::Target;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `cache/start-order/`.
#[derive(Clone, Debug)]
pub struct Orders {
    pub dir: PathBuf,
}

/// The format of a `cache/start-order/<release>.json`.
const ORDER_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    key: String,
    order: Vec<Start>,
}

impl Orders {
    /// The entry of the release directory `release`.
    fn path(&self, release: &Path) -> Option<PathBuf> {
        let mut name = release.file_name()?.to_os_string();
        name.push(".json");
        Some(self.dir.join(name))
    }

    /// The order kept for the release `release` with `compose`'s inputs as they are now.
    pub fn get(&self, release: &Path, compose: &Compose) -> Option<Vec<Start>> {
        let bytes = std::fs::read(self.path(release)?).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let key = compose.inputs_key().ok()?;
        (entry.format == ORDER_FORMAT && entry.key == key).then_some(entry.order)
    }

    /// Keep `order` for the release `release` with `compose`'s inputs as they are now.
    /// Failing to keep it costs a compose run later, so callers report it and go on.
    pub fn put(&self, release: &Path, compose: &Compose, order: &[Start]) -> Result<(), String> {
        let path = self
            .path(release)
            .ok_or_else(|| format!("{} names no release", release.display()))?;
        let entry = Entry {
            format: ORDER_FORMAT,
            key: compose.inputs_key().map_err(|e| e.to_string())?,
            order: order.to_vec(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        write_atomic(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The order of the release `release`: kept, or read from `compose config` and kept.
    pub async fn order(&self, release: &Path, compose: &Compose) -> Result<Vec<Start>, String> {
        if let Some(order) = self.get(release, compose) {
            return Ok(order);
        }
        let order = start_order(&compose.config().await?)?;
        if let Err(why) = self.put(release, compose, &order) {
            tracing::warn!(%why, "the start order is not kept; the next upgrade asks compose");
        }
        Ok(order)
    }

    /// Make sure the release of `target` has its order kept (housekeeping).
    pub async fn keep(&self, target: &Target) -> Result<(), String> {
        let (_, compose) = target.release_compose().await.map_err(|e| e.to_string())?;
        self.order(&target.dir, &compose).await.map(drop)
    }

    /// Forget the order of the release directory `release` (removed by housekeeping).
    pub fn forget(&self, release: &Path) -> std::io::Result<()> {
        self.path(release).map_or(Ok(()), |p| remove_path(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::compose::Flavor;

    fn start(service: &str, after: &[&str]) -> Start {
        Start {
            service: service.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            waits: vec![],
            grace_secs: Some(10),
        }
    }

    #[test]
    fn an_order_is_kept_for_the_inputs_it_was_read_from_and_no_others() {
        let root = tempfile::tempdir().unwrap();
        let release = root.path().join("releases/2.0.0");
        std::fs::create_dir_all(&release).unwrap();
        let file = release.join("docker-compose.yml");
        std::fs::write(&file, "services: {db: {image: x}, app: {image: y}}\n").unwrap();
        std::fs::write(release.join(".env"), "A=1\n").unwrap();
        let compose = Compose {
            flavor: Flavor::V1,
            project: "p".into(),
            file: file.clone(),
            overlay: None,
            env_file: None,
        };
        let orders = Orders {
            dir: root.path().join("cache/start-order"),
        };
        let order = vec![start("db", &[]), start("app", &["db"])];
        assert_eq!(orders.get(&release, &compose), None);
        orders.put(&release, &compose, &order).unwrap();
        assert_eq!(orders.get(&release, &compose), Some(order.clone()));

        // the stand-by's compose interpolates from the .env the merge will write: the same
        // content, at another path, is the same key
        let merged = root.path().join("standby.env");
        std::fs::write(&merged, "A=1\n").unwrap();
        let standby = compose.clone().with_env_file(&merged);
        assert_eq!(orders.get(&release, &standby), Some(order.clone()));

        // any input that changed is a miss
        std::fs::write(release.join(".env"), "A=2\n").unwrap();
        assert_eq!(orders.get(&release, &compose), None);
        std::fs::write(release.join(".env"), "A=1\n").unwrap();
        std::fs::write(&file, "services: {db: {image: x}}\n").unwrap();
        assert_eq!(orders.get(&release, &compose), None);
        let other = Compose {
            project: "q".into(),
            ..compose.clone()
        };
        orders.put(&release, &compose, &order).unwrap();
        assert_eq!(orders.get(&release, &other), None);
        let overlay = root.path().join("override.yml");
        std::fs::write(&overlay, "services: {app: {depends_on: [db]}}\n").unwrap();
        let with_overlay = compose.clone().with_overlay(Some(overlay));
        assert_eq!(orders.get(&release, &with_overlay), None);
        // another release's entry is not this one's
        assert_eq!(
            orders.get(&root.path().join("releases/1.0.0"), &compose),
            None
        );

        // a damaged entry is a miss, not an error; forget removes the entry
        let entry = orders.dir.join("2.0.0.json");
        std::fs::write(&entry, b"{not json").unwrap();
        assert_eq!(orders.get(&release, &compose), None);
        orders.put(&release, &compose, &order).unwrap();
        orders.forget(&release).unwrap();
        assert!(!entry.exists());
        assert_eq!(orders.get(&release, &compose), None);
    }
}
