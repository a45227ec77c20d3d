//! The systemd units `molt schedule install` writes for one installation, rendered as text
//! (writing, enabling and removing them is the cli's). All are named `molt-<project>-…`:
//!
//! - `recover.service`: at boot, after the Docker daemon, `molt recover` finishes or rolls
//!   back a run that a power loss interrupted (a oneshot; no run, nothing to do).
//! - `upgrade.service` + `upgrade.timer`: `molt upgrade --unattended`. With a maintenance
//!   window the timer fires every 15 minutes and molt itself decides (hold, window, pinned
//!   range; a skip costs no network access); without one, once a day at a randomised time.
//! - `backup.service` + `backup.timer`, when `[schedule] backup` names a calendar expression:
//!   `molt backup create`.
//!
//! Every file starts with [`MARK`], so that `remove` deletes what molt wrote and nothing else.
//! Paths are quoted for systemd (`"`, `\`, `%` and `$` escaped); a path, project or calendar
//! expression with a control character is refused (it could smuggle a directive in).

use std::path::Path;

/// The first line of every unit molt writes.
pub const MARK: &str = "# Written by `molt schedule install`; `molt schedule remove` removes it.";

/// What the units run.
pub struct Spec<'a> {
    /// The molt binary (absolute).
    pub molt: &'a Path,
    /// The installation root (absolute).
    pub root: &'a Path,
    pub project: &'a str,
    /// An upgrade window is set: poll often, molt decides.
    pub windowed: bool,
    /// `[schedule] backup`: a systemd calendar expression.
    pub backup: Option<&'a str>,
}

/// `molt-<project>-`: the prefix of every unit of this installation.
pub fn prefix(project: &str) -> Result<String, String> {
    if project.is_empty()
        || !project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "the compose project {project:?} cannot name a systemd unit (letters, digits, - _ . only)"
        ));
    }
    Ok(format!("molt-{project}-"))
}

/// A path as one systemd command-line word.
fn word(p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
    if !p.is_absolute() {
        return Err(format!("{s} is not an absolute path"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{s:?} holds a control character"));
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The units: (file name, text), services before the timers that start them.
pub fn render(spec: &Spec<'_>) -> Result<Vec<(String, String)>, String> {
    let pre = prefix(spec.project)?;
    let molt = word(spec.molt)?;
    let root = word(spec.root)?;
    let shown = spec.root.display();
    let run = |args: &str| format!("{molt} --root {root} {args}");
    let mut units = Vec::new();
    units.push((
        format!("{pre}recover.service"),
        format!(
            "{MARK}
[Unit]
Description=molt: finish or roll back an interrupted run of {shown}
Requires=docker.service
After=docker.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={}
# exit 3: another molt holds the installation; it will finish its own run
SuccessExitStatus=3

[Install]
WantedBy=multi-user.target
",
            run("recover")
        ),
    ));
    units.push((
        format!("{pre}upgrade.service"),
        format!(
            "{MARK}
[Unit]
Description=molt: unattended upgrade of {shown}
Requires=docker.service
After=docker.service network-online.target {pre}recover.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={}
",
            run("--json upgrade --unattended")
        ),
    ));
    let when = if spec.windowed {
        "# molt decides inside the window (molt.toml [schedule]); a skip is cheap\nOnCalendar=*:0/15\n"
            .to_string()
    } else {
        "OnCalendar=daily\nRandomizedDelaySec=1h\n".to_string()
    };
    units.push((
        format!("{pre}upgrade.timer"),
        format!(
            "{MARK}
[Unit]
Description=molt: when to try an unattended upgrade of {shown}

[Timer]
{when}Persistent=false
Unit={pre}upgrade.service

[Install]
WantedBy=timers.target
"
        ),
    ));
    if let Some(cal) = spec.backup {
        if cal.trim().is_empty() || cal.chars().any(|c| c.is_control()) {
            return Err(format!(
                "[schedule] backup = {cal:?} is not a calendar expression"
            ));
        }
        units.push((
            format!("{pre}backup.service"),
            format!(
                "{MARK}
[Unit]
Description=molt: scheduled backup of {shown}
After=docker.service {pre}recover.service

[Service]
Type=oneshot
ExecStart={}
SuccessExitStatus=3
",
                run("backup create")
            ),
        ));
        units.push((
            format!("{pre}backup.timer"),
            format!(
                "{MARK}
[Unit]
Description=molt: when to back up {shown}

[Timer]
OnCalendar={}
Persistent=true
Unit={pre}backup.service

[Install]
WantedBy=timers.target
",
                cal.trim()
            ),
        ));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_and_control_characters_refused() {
        assert_eq!(
            word(Path::new("/opt/my app/%h$x\"q\\")).unwrap(),
            r#""/opt/my app/%%h$$x\"q\\""#
        );
        assert!(word(Path::new("/opt/a\nExecStartPre=/bin/evil")).is_err());
        assert!(word(Path::new("relative")).is_err());
        assert!(prefix("a b").is_err());
        assert!(prefix("a/../b").is_err());
        assert_eq!(prefix("shop_1").unwrap(), "molt-shop_1-");
        let spec = Spec {
            molt: Path::new("/usr/bin/molt"),
            root: Path::new("/srv/shop"),
            project: "shop",
            windowed: true,
            backup: Some("daily\nExecStartPre=/bin/evil"),
        };
        assert!(render(&spec).is_err());
    }

    #[test]
    fn units_name_the_installation_and_start_with_the_mark() {
        let spec = Spec {
            molt: Path::new("/usr/bin/molt"),
            root: Path::new("/srv/shop"),
            project: "shop",
            windowed: false,
            backup: None,
        };
        let units = render(&spec).unwrap();
        let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "molt-shop-recover.service",
                "molt-shop-upgrade.service",
                "molt-shop-upgrade.timer"
            ]
        );
        assert!(units.iter().all(|(_, t)| t.starts_with(MARK)));
        assert!(units[0]
            .1
            .contains("ExecStart=\"/usr/bin/molt\" --root \"/srv/shop\" recover\n"));
        assert!(units[2].1.contains("OnCalendar=daily\n"));
    }
}
