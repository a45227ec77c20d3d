//! One module per command group; each is a thin layer over the session and the crates.

pub mod backup;
pub mod demo;
pub mod init;
pub mod journal;
pub mod release;
pub mod run;
pub mod schedule;
pub mod schema;
pub mod self_update;
pub mod services;
pub mod status;
pub mod upgrade;

/// Print a JSON value on stdout (the `--json` form of every read command).
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values print")
    );
}

/// "2026-11-24T01:02:03.456Z" from Unix milliseconds.
pub fn time(at_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(t).to_string()
}
