//! Notifications of a run's outcome (`[notify]` in molt.toml): a JSON POST to a webhook
//! and/or a command that gets the same JSON on stdin.
//!
//! - Sent after the run has ended and the installation's lock is released: a notification
//!   can neither block nor fail the upgrade, and its own failure changes no exit code.
//! - Each channel is tried `1 + retries` times with back-off (`backoff_ms`, doubled each
//!   time), each attempt bounded by `timeout_secs`. Every attempt is appended to
//!   `notify.log` at the root (one JSON line, synced): what was tried, when, and why it failed.
//! - No secret leaves the host: every value [`crate::Installation::secrets`] names is replaced
//!   by `[redacted]` anywhere in the payload (a failing service's log lines included). The
//!   command runs with an empty environment but `PATH`, so the process's own variables
//!   (`MOLT_DATABASE_URL`) are not handed to it either. Webhook redirects are not followed.

use crate::install::Installation;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub const PAYLOAD_FORMAT: u32 = 1;

/// `[notify]` in molt.toml.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `http://` or `https://` URL that receives the JSON payload as a POST.
    pub webhook: Option<String>,
    /// A program (absolute path) and its arguments; the payload is on its stdin.
    pub command: Option<Vec<String>>,
    /// Attempts after the first, per channel.
    pub retries: u32,
    /// The first back-off; doubled after each failed attempt.
    pub backoff_ms: u64,
    /// Seconds one attempt may take.
    pub timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            webhook: None,
            command: None,
            retries: 3,
            backoff_ms: 1000,
            timeout_secs: 10,
        }
    }
}

impl Config {
    /// Checked when molt.toml is read.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.webhook {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("[notify] webhook {url:?} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!(
                    "[notify] webhook {url:?}: only http:// and https:// URLs with a host are sent to"
                ));
            }
        }
        if let Some(cmd) = &self.command {
            match cmd.first() {
                None => return Err("[notify] command is empty".into()),
                Some(p) if !Path::new(p).is_absolute() => {
                    return Err(format!(
                        "[notify] command {p:?}: give the program's absolute path"
                    ))
                }
                _ => {}
            }
            if cmd.iter().any(|a| a.contains('\0')) {
                return Err("[notify] command holds a NUL byte".into());
            }
        }
        if self.timeout_secs == 0 {
            return Err("[notify] timeout_secs must be at least 1".into());
        }
        if self.retries > 20 {
            return Err("[notify] retries above 20 would keep molt trying for hours".into());
        }
        Ok(())
    }

    pub fn any(&self) -> bool {
        self.webhook.is_some() || self.command.is_some()
    }
}

/// What a notification says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub format: u32,
    pub project: String,
    pub host: String,
    pub root: String,
    pub run: u64,
    pub plan: String,
    /// committed, rolled_back, stuck, incomplete.
    pub outcome: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub downtime_ms: Option<u64>,
    /// Why the run failed: for a failed health gate, the failing service's health output and
    /// its last log lines.
    pub reason: Option<String>,
    /// RFC 3339.
    pub at: String,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

impl Payload {
    #[allow(
        clippy::too_many_arguments,
        reason = "one field each, named at the call"
    )]
    pub fn new(
        inst: &Installation,
        run: u64,
        plan: &str,
        outcome: &str,
        from: Option<String>,
        to: Option<String>,
        downtime_ms: Option<u64>,
        reason: Option<String>,
    ) -> Payload {
        Payload {
            format: PAYLOAD_FORMAT,
            project: inst.project(),
            host: host(),
            root: inst.root.display().to_string(),
            run,
            plan: plan.to_string(),
            outcome: outcome.to_string(),
            from,
            to,
            downtime_ms,
            reason,
            at: jiff::Timestamp::now().to_string(),
        }
    }
}

/// `text` with every secret replaced.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

/// One line of `notify.log`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub at: String,
    pub run: u64,
    pub channel: String,
    pub attempt: u32,
    pub ok: bool,
    pub error: Option<String>,
}

fn log_attempt(root: &Path, a: &Attempt) {
    let line = match serde_json::to_string(a) {
        Ok(l) => l,
        Err(_) => return,
    };
    let path = root.join("notify.log");
    // Never followed through a link: the log is the installation's own file.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
    };
    match opened {
        Ok(mut f) => {
            if writeln!(f, "{line}").and_then(|_| f.sync_data()).is_err() {
                tracing::warn!(path = %path.display(), "cannot write the notification log");
            }
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the notification log")
        }
    }
}

async fn post(url: &str, body: &[u8], timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("the webhook answered {}", resp.status()));
    }
    Ok(())
}

async fn run_command(cmd: &[String], body: &[u8], timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is not a failure.
        let _ = stdin.write_all(body).await;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{} did not finish within {}s", cmd[0], timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} exited with {}: {}",
            cmd[0],
            out.status,
            err.trim().chars().take(300).collect::<String>()
        ));
    }
    Ok(())
}

/// Send `payload` on every configured channel, with retries; returns per channel whether it
/// was delivered. Never fails: what went wrong is in `notify.log`.
pub async fn send(inst: &Installation, payload: &Payload) -> Vec<(String, bool)> {
    let cfg = &inst.config.notify;
    if !cfg.any() {
        return Vec::new();
    }
    let secrets = inst.secrets();
    let body = match serde_json::to_string(payload) {
        Ok(b) => redact(&b, &secrets).into_bytes(),
        Err(_) => return Vec::new(),
    };
    let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
    let mut results = Vec::new();
    enum Channel<'a> {
        Webhook(&'a str),
        Command(&'a [String]),
    }
    let channels: Vec<(String, Channel)> = [
        cfg.webhook.as_ref().map(|u| {
            (
                format!("webhook {}", redact(u, &secrets)),
                Channel::Webhook(u.as_str()),
            )
        }),
        cfg.command
            .as_ref()
            .map(|c| (format!("command {}", c[0]), Channel::Command(c.as_slice()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (name, channel) in channels {
        let mut delay = Duration::from_millis(cfg.backoff_ms);
        let mut delivered = false;
        for attempt in 1..=cfg.retries + 1 {
            let r = match channel {
                Channel::Webhook(u) => post(u, &body, timeout).await,
                Channel::Command(c) => run_command(c, &body, timeout).await,
            };
            log_attempt(
                &inst.root,
                &Attempt {
                    at: jiff::Timestamp::now().to_string(),
                    run: payload.run,
                    channel: name.clone(),
                    attempt,
                    ok: r.is_ok(),
                    error: r.as_ref().err().map(|e| redact(e, &secrets)),
                },
            );
            if r.is_ok() {
                delivered = true;
                break;
            }
            if attempt <= cfg.retries {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        if !delivered {
            tracing::warn!(channel = %name, "the notification was not delivered; see notify.log");
        }
        results.push((name, delivered));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_channels_are_refused() {
        let c = |webhook: Option<&str>, command: Option<Vec<&str>>| Config {
            webhook: webhook.map(str::to_string),
            command: command.map(|v| v.into_iter().map(str::to_string).collect()),
            ..Config::default()
        };
        assert!(c(Some("https://hooks.example.com/x"), None).check().is_ok());
        for bad in [
            "ftp://x/y",
            "file:///etc/passwd",
            "hooks.example.com",
            "http://",
        ] {
            let e = c(Some(bad), None).check().unwrap_err();
            assert!(e.contains("[notify] webhook"), "{bad}: {e}");
        }
        assert!(c(None, Some(vec!["notify-send"])).check().is_err());
        assert!(c(None, Some(vec![])).check().is_err());
        assert!(c(None, Some(vec!["/usr/bin/logger", "-t", "molt"]))
            .check()
            .is_ok());
    }

    #[test]
    fn secrets_are_replaced_longest_first() {
        let s = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        assert_eq!(
            redact("pw=hunter2-long and hunter2", &s),
            "pw=[redacted] and [redacted]"
        );
    }
}
