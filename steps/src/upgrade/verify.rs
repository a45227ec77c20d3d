//! `verify`: the new release's health gate (every service running and healthy, one-shot
//! services exited 0, the release's probes), then the live schema compared with the desired
//! one, then the end of the downtime window.
//!
//! - `do`: `Ok` means the new release serves and its schema is exactly the release's file;
//!   the receipt holds the downtime (stop to verified), also kept in the run's scratch for
//!   the commit. A timeout is a failure whose message names the failing service with its last
//!   healthcheck output and log lines (from the gate). Idempotent: it only reads, and the
//!   downtime is recorded once.
//! - `undo`: nothing to reverse.

use crate::fsutil::write_atomic;
use crate::schema::migrate::MigrateSchema;
use crate::services::Target;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct Verify {
    pub target: Target,
    /// The migration whose result is checked, when the upgrade migrates a database.
    pub schema: Option<MigrateSchema>,
    /// Written by the stop step: when the downtime began (ms since the epoch).
    pub downtime_start: PathBuf,
    /// Written here: the downtime in ms, once.
    pub downtime_file: PathBuf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Stop to verified, in ms (`None` for a first install: nothing was stopped).
    pub downtime_ms: Option<u64>,
}

/// The downtime recorded by a verify step, if any.
pub fn read_downtime(file: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[async_trait]
impl Step for Verify {
    type Receipt = Verified;

    fn name(&self) -> String {
        format!("verify {}", self.target.label)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Verified, StepError> {
        self.target.wait_healthy(&[]).await?;
        if let Some(m) = &self.schema {
            if m.desired_path()?.is_some() {
                let desired = m.load_desired()?;
                let mut conn = m.connect().await?;
                let planned = crate::schema::live::plan(&mut conn, &desired).await;
                let _ = conn.disconnect().await;
                let (_, migration) = planned.map_err(super::Error::from)?;
                if !migration.is_empty() {
                    return Err(super::Error::SchemaDiffers {
                        statements: migration
                            .statements()
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                    }
                    .into());
                }
            }
        }
        if let Some(ms) = read_downtime(&self.downtime_file) {
            return Ok(Verified {
                downtime_ms: Some(ms),
            });
        }
        let Some(start) = read_downtime(&self.downtime_start) else {
            return Ok(Verified::default());
        };
        let ms = crate::now_ms().saturating_sub(start);
        write_atomic(&self.downtime_file, ms.to_string().as_bytes())
            .map_err(|e| crate::io_err("write", &self.downtime_file, e))?;
        Ok(Verified {
            downtime_ms: Some(ms),
        })
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Verified>) -> Result<(), StepError> {
        Ok(())
    }
}
