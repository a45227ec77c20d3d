//! molt's journal: the engine's records stored in sled, durable before the side effect they
//! announce, plus the installation's exclusive lock.
//!
//! # Durability contract
//! - [`Store::sync`] returns only after every appended record is on stable storage:
//!   `sled::Db::flush` and then `fdatasync` of sled's log file (`db`) and of any new blob file.
//!   sled 0.34's own flush ends in `sync_file_range`, which does not empty a disk's volatile
//!   write cache (sled issue #1452), so without the `fdatasync` a power cut could lose a record
//!   the engine already acted on. sled's 500 ms background flush is never relied upon.
//! - The engine's driver syncs before every side effect, so an intent record is durable before
//!   the step runs; the done record is appended after it, and becomes durable together with
//!   the next intent (nothing happens between them). After any crash the journal holds a
//!   prefix of the appended records and says, for each step, "not started", "may have
//!   half-happened" or "done".
//! - After sled, the same records are appended to the mirror `records.log` and synced: the
//!   mirror never holds a record sled has not made durable, so a record only the mirror holds
//!   proves that sled lost data (a truncated log opens without a word), and
//!   [`salvage`] can rebuild a journal whose sled files are damaged.
//! - The cost is two `fdatasync`s per side effect (sled's log, then the mirror; about two
//!   records); `cargo bench -p tests --bench journal_cost` measures it against a raw sled
//!   insert+flush loop. The mirror made a transition about 1.6x dearer (130 -> 220 us here):
//!   some 4 ms over a whole upgrade, the price of telling a truncated sled log from a whole
//!   one and of salvage.
//!
//! # Format
//! Records are JSON (engine's [`engine::Record`]) under the key `run (u64 BE) ++ seq (u64 BE)`
//! in the tree `records`; the tree `meta` holds `format` (u32 BE), the newest record format this
//! journal has been written with. Each record carries its own `format` too. A record that does
//! not decode, or has a newer format, is reported as [`Damage`] by the readers and is never
//! acted on: recovery refuses a run with damage.
//!
//! # Known limits
//! - sled takes an exclusive file lock on its log, so only one process opens a journal at a
//!   time; a reader that meets a running upgrade gets [`Error::Busy`] (after a 1 s grace
//!   period: sled releases the lock from a background thread after a close) and can name the
//!   holder through [`Lock::holder`].

mod error;
mod lock;
mod mirror;
mod salvage;
mod store;

pub use error::Error;
pub use lock::{Held, Holder, Lock};
pub use salvage::{needs_salvage, open_salvaging, salvage, Salvaged};
pub use store::{Damage, RunLog, Store};
