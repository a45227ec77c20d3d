//! Docker adapters: the compose CLI the host has (`compose.rs`), the Engine API through bollard
//! (`api.rs`), image tarballs as vendors ship them (`tarball.rs`), and the health gate
//! (`health.rs`).
//!
//! Compose does what only compose does (create, start and stop the services of a compose file
//! as one project); everything that can be read or done through the API (images, container
//! states, health, logs) goes through bollard, so answers are typed rather than scraped.

pub mod api;
pub mod compose;
pub mod health;
pub mod tarball;

/// Labels compose puts on the containers it creates.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
