//! `merge configuration`: the operator's `shared/.env` merged with the new release's template
//! (operator values kept, new keys added, removed keys reported), and the new release's
//! persistent directories created in `shared/`.
//!
//! - `do`: records once, in the stash, the operator's `.env` as it was (a copy) and which
//!   persistent directories are missing; then writes the merge of *that recorded copy* with
//!   the template (so a re-run writes the same bytes) and creates the directories. Idempotent.
//! - `undo`: puts the recorded `.env` back (or removes it if there was none), removes the
//!   directories it created, then the stash. Idempotent; a no-op without a stash.
//!
//! It runs after the final sync: the `.env` is operator data, and the backup sealed at the stop
//! must hold it exactly as the old release used it.

use crate::fsutil::{remove_path, write_atomic, Stash};
use crate::install::parse_dotenv;
use crate::io_err;
use crate::release::Release;
use async_trait::async_trait;
use engine::{Step, StepClass, StepCtx, StepError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub struct MergeConfig {
    pub root: PathBuf,
    /// The new release's directory.
    pub release: PathBuf,
    pub scratch: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Before {
    env_existed: bool,
    created_dirs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// Keys the template brought that the operator's `.env` lacked.
    pub added: Vec<String>,
    /// Keys the operator has that the template no longer names (kept, reported).
    pub removed: Vec<String>,
    /// Persistent directories created in `shared/`.
    pub created: Vec<String>,
}

/// Merge an operator's `.env` with a vendor template: every operator line is kept verbatim,
/// keys only the template has are appended with the template's value.
pub fn merge_env(operator: Option<&str>, template: &str, version: &str) -> (String, Merged) {
    let ours = operator.map(parse_dotenv).unwrap_or_default();
    let theirs = parse_dotenv(template);
    let have: std::collections::BTreeSet<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let want: std::collections::BTreeSet<&str> = theirs.iter().map(|(k, _)| k.as_str()).collect();
    let mut out = match operator {
        None => {
            return (
                template.to_string(),
                Merged {
                    added: theirs.iter().map(|(k, _)| k.clone()).collect(),
                    ..Merged::default()
                },
            )
        }
        Some(text) => text.to_string(),
    };
    let added: Vec<(String, String)> = theirs
        .iter()
        .filter(|(k, _)| !have.contains(k.as_str()))
        .cloned()
        .collect();
    if !added.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("# added by molt from release {version}\n"));
        for (k, v) in &added {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    let removed = ours
        .iter()
        .filter(|(k, _)| !want.contains(k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    (
        out,
        Merged {
            added: added.into_iter().map(|(k, _)| k).collect(),
            removed,
            created: Vec::new(),
        },
    )
}

/// The `.env` the merge writes for `release` (found in `dir`) over the operator's text, with
/// what it adds and reports; `None` when the release ships no template (the operator's file is
/// left as it is).
pub fn merged_env(
    release: &Release,
    dir: &Path,
    operator: Option<&str>,
) -> Result<Option<(String, Merged)>, StepError> {
    let Some(t) = &release.env_template else {
        return Ok(None);
    };
    let path = dir.join(t);
    let template = std::fs::read_to_string(&path).map_err(|e| io_err("read", &path, e))?;
    Ok(Some(merge_env(operator, &template, &release.version)))
}

#[async_trait]
impl Step for MergeConfig {
    type Receipt = Merged;

    fn name(&self) -> String {
        "merge configuration".into()
    }

    fn class(&self) -> StepClass {
        StepClass::Reversible
    }

    async fn apply(&self, ctx: &StepCtx) -> Result<Merged, StepError> {
        let release = Release::load(&self.release).map_err(StepError::new)?;
        let shared = self.root.join("shared");
        let env = shared.join(".env");
        let stash = Stash::new(&self.scratch, ctx.step);
        let saved = stash.file("env.before");
        let before = match stash
            .read::<Before>()
            .map_err(|e| io_err("read stash for", &env, e))?
        {
            Some(b) => b,
            None => {
                std::fs::create_dir_all(&shared).map_err(|e| io_err("create", &shared, e))?;
                let env_existed = stash
                    .save_file(&env, "env.before")
                    .map_err(|e| io_err("save", &env, e))?;
                let created_dirs = release
                    .persistent
                    .iter()
                    .filter(|p| p.as_str() != ".env")
                    .filter(|p| std::fs::symlink_metadata(shared.join(p)).is_err())
                    .cloned()
                    .collect();
                let b = Before {
                    env_existed,
                    created_dirs,
                };
                stash.record(&b).map_err(|e| io_err("stash for", &env, e))?;
                b
            }
        };
        let operator = if before.env_existed {
            Some(std::fs::read_to_string(&saved).map_err(|e| io_err("read", &saved, e))?)
        } else {
            None
        };
        let mut merged = Merged::default();
        if let Some((text, m)) = merged_env(&release, &self.release, operator.as_deref())? {
            write_atomic(&env, text.as_bytes()).map_err(|e| io_err("write", &env, e))?;
            merged = m;
        }
        for d in &before.created_dirs {
            let p = shared.join(d);
            std::fs::create_dir_all(&p).map_err(|e| io_err("create", &p, e))?;
        }
        merged.created = before.created_dirs.clone();
        Ok(merged)
    }

    async fn undo(&self, ctx: &StepCtx, _receipt: Option<Merged>) -> Result<(), StepError> {
        let shared = self.root.join("shared");
        let env = shared.join(".env");
        let stash = Stash::new(&self.scratch, ctx.step);
        let Some(before) = stash
            .read::<Before>()
            .map_err(|e| io_err("read stash for", &env, e))?
        else {
            return Ok(());
        };
        stash
            .restore_file(&env, "env.before", before.env_existed)
            .map_err(|e| io_err("restore", &env, e))?;
        for d in &before.created_dirs {
            let p = shared.join(d);
            remove_path(&p).map_err(|e| io_err("remove", &p, e))?;
        }
        stash
            .clear()
            .map_err(|e| io_err("clear stash for", &env, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_values_are_kept_new_keys_added_removed_ones_reported() {
        let operator = "# mine\nDB_PASSWORD=secret\nOLD_FLAG=1\nPORT=9000\n";
        let template = "DB_PASSWORD=change-me\nPORT=8080\nNEW_KEY=on\n";
        let (text, m) = merge_env(Some(operator), template, "2.0.0");
        assert!(text.starts_with(operator), "{text}");
        assert!(
            text.ends_with("# added by molt from release 2.0.0\nNEW_KEY=on\n"),
            "{text}"
        );
        assert_eq!(m.added, vec!["NEW_KEY"]);
        assert_eq!(m.removed, vec!["OLD_FLAG"]);
        let (again, m2) = merge_env(Some(&text), template, "2.0.0");
        assert_eq!(again, text, "a second merge changes nothing");
        assert!(m2.added.is_empty());
        let (fresh, m3) = merge_env(None, template, "1.0.0");
        assert_eq!(fresh, template);
        assert_eq!(m3.added.len(), 3);
    }
}
