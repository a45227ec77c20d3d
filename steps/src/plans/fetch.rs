//! `fetch`: download the chosen package and stage the release it holds, without cutting
//! over (`molt fetch`; also the first two steps of an upgrade).

use super::{bad, Env};
use crate::error::Error;
use engine::DynStep;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `molt fetch`: download the chosen package (already resolved to a URL) and stage it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRelease {
    pub version: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub source: crate::fetch::Source,
    /// Bytes the release unpacks to, from the signed manifest (staging writes no more).
    pub installed_size: u64,
    /// Seconds without a byte before a download attempt is abandoned and retried.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_stall() -> u64 {
    30
}

fn default_retries() -> u32 {
    5
}

impl FetchRelease {
    /// Where the verified package is cached (named by its hash, so a retry reuses it).
    pub fn cached(&self, root: &Path) -> PathBuf {
        root.join("cache")
            .join("packages")
            .join(format!("{}.tar.zst", self.sha256))
    }

    pub(crate) fn steps(&self, env: &Env) -> Result<Vec<Box<dyn DynStep>>, Error> {
        check_version(&self.version, "fetch")?;
        crate::manifest::check_url(&self.url).map_err(|reason| bad("fetch", reason))?;
        let dest = self.cached(&env.root);
        Ok(vec![
            Box::new(crate::fetch::Download {
                fetch: crate::http::Fetch {
                    retries: self.retries,
                    stall_timeout: std::time::Duration::from_secs(self.stall_timeout_secs.max(1)),
                    ..crate::http::Fetch::new(&self.url, &dest, self.size, &self.sha256)
                },
            }),
            Box::new(crate::fetch::Stage {
                root: env.root.clone(),
                version: self.version.clone(),
                package: dest,
                source: self.source.clone(),
                scratch: env.scratch.clone(),
                installed_size: self.installed_size,
            }),
        ])
    }
}

/// A version that parses and can name a directory under `releases/`.
pub(crate) fn check_version(version: &str, plan: &str) -> Result<(), Error> {
    crate::version::Version::parse(version).map_err(|reason| bad(plan, reason))?;
    if version.contains('/') || version.starts_with('.') {
        return Err(bad(
            plan,
            format!("version {version:?} cannot name a directory"),
        ));
    }
    Ok(())
}
