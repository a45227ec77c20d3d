//! `start database`: start only the release's database service (`[database] service`) and
//! wait until it is healthy and accepts connections, so the migration runs before any app
//! meets the schema.
//!
//! - `do`: compose up of that one service (or the start of its stand-by container, see
//!   `standby`), then connection attempts with the installation's
//!   database URL every 50 ms alongside the health gate for it: the first login ends the wait
//!   (the migration needs no more), a failed gate or the release's health timeout fails it.
//!   Without a URL, the health gate alone. Idempotent (up of a running service changes nothing). A release without a database
//!   service makes it a no-op.
//! - `undo`: stops that service's containers through the API. Idempotent.

use crate::services::Target;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use std::time::{Duration, Instant};

pub struct StartDatabase {
    pub target: Target,
    /// The full database URL (never journaled), when one is configured.
    pub url: Option<crate::install::DatabaseUrl>,
    /// The upgrade's stand-by containers: the database's is started instead of compose up.
    pub standby: Option<super::StandbyRef>,
}

impl StartDatabase {
    fn service(&self) -> Result<Option<(String, u64)>, StepError> {
        let release = self.target.release()?;
        Ok(release
            .database
            .map(|d| (d.service, release.health_timeout_secs)))
    }
}

#[async_trait]
impl Step for StartDatabase {
    type Receipt = Option<String>;

    fn name(&self) -> String {
        format!("start the database of {}", self.target.label)
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, _ctx: &StepCtx) -> Result<Option<String>, StepError> {
        let Some((service, timeout)) = self.service()? else {
            return Ok(None);
        };
        let only = [service.clone()];
        match super::standby::ready(self.standby.as_ref())? {
            Some(record) => {
                let docker = crate::docker::api::Docker::connect()
                    .await
                    .map_err(StepError::new)?;
                let containers = docker
                    .containers(&self.target.project)
                    .await
                    .map_err(StepError::new)?;
                super::standby::activate(&docker, &containers, &record, &service).await?
            }
            None => self.target.up(&only).await?,
        }
        let Some(url) = &self.url else {
            self.target.wait_healthy(&only).await?;
            return Ok(Some(service));
        };
        // The migration may start once the server accepts the installation's login, which is
        // usually before Docker's next healthcheck calls it healthy: both are awaited together
        // and the login decides. The gate still fails the step when the container dies or
        // stays unhealthy past the release's health timeout (with its logs); a login that
        // never succeeds fails it at the same deadline.
        let url = url.get().map_err(StepError::new)?;
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let login = async {
            loop {
                match crate::schema::live::connect(&url).await {
                    Ok(conn) => {
                        let _ = conn.disconnect().await;
                        return Ok(());
                    }
                    Err(source) if Instant::now() >= deadline => {
                        return Err(StepError::from(super::Error::DatabaseSilent {
                            service: only[0].clone(),
                            secs: timeout,
                            source,
                        }))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        tokio::pin!(login);
        tokio::select! {
            gate = self.target.wait_healthy(&only) => {
                gate?;
                (&mut login).await?;
            }
            ready = &mut login => ready?,
        }
        Ok(Some(service))
    }

    async fn undo(
        &self,
        _ctx: &StepCtx,
        _receipt: Option<Option<String>>,
    ) -> Result<(), StepError> {
        // The release may be unreadable when undo runs after a crash in staging; nothing of
        // it was started then.
        let Ok(Some((service, _))) = self.service() else {
            return Ok(());
        };
        self.target.stop_containers(&[service]).await
    }
}
