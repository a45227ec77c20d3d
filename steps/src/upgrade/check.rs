//! `check release`: the staged release is checked before anything stops: its compose file
//! parses with the operator's `.env` and override (compose itself is the judge), the files
//! `release.toml` names exist (env template, schema). Read-only: `undo` has nothing to do.
//! The image tarballs are checked by `load images`, the schema by `plan schema`, both also
//! before the stop.

use super::Error;
use crate::services::Target;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};

pub struct CheckRelease {
    pub target: Target,
}

#[async_trait]
impl Step for CheckRelease {
    /// The services the compose file defines.
    type Receipt = Vec<String>;

    fn name(&self) -> String {
        format!("check {}", self.target.label)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Vec<String>, StepError> {
        let release = self.target.release()?;
        let named = [
            release.env_template.clone(),
            release.database.as_ref().and_then(|d| d.schema.clone()),
        ];
        for rel in named.into_iter().flatten() {
            let p = self.target.dir.join(&rel);
            if !p.is_file() {
                return Err(Error::MissingFile {
                    file: self.target.dir.join("release.toml"),
                    what: rel,
                }
                .into());
            }
        }
        let compose = self.target.compose(&release).await?;
        let services = compose.services().await.map_err(StepError::new)?;
        if let Some(db) = &release.database {
            if !services.contains(&db.service) {
                return Err(Error::NoSuchService {
                    service: db.service.clone(),
                    compose_file: release.compose_file.clone(),
                    defined: services.join(", "),
                }
                .into());
            }
        }
        Ok(services)
    }

    async fn undo(&self, _ctx: &StepCtx, _receipt: Option<Vec<String>>) -> Result<(), StepError> {
        Ok(())
    }
}
