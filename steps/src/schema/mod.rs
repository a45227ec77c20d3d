//! MySQL/MariaDB schema migration: one model ([`model`]), two loaders (SQL text in [`sql`], a
//! live server in [`live`]), one differ ([`diff`]) with its lint, and the migrate step
//! ([`migrate`]).

pub mod diff;
pub mod live;
pub mod migrate;
pub mod model;
pub mod objects;
pub mod partition;
pub mod preflight;
pub mod sql;

pub use model::Schema;
