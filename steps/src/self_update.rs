//! `molt self-update`: molt's own binary, through the same signed metadata as a product's
//! releases (a manifest for product `molt`, its root or key in molt.toml `[self_update]`,
//! its own `self-update-trust.json`), downloaded with the same capped, resumable, verified
//! fetch and unpacked with the same hardened unpack.
//!
//! A molt package is a release directory with `release.toml` (`version`) and `bin/molt`.
//! Before anything is replaced the new binary must say `molt <version>` to `--version` (it
//! runs on this machine and is the release the manifest names). The replacement:
//!
//! 1. the new binary is written beside the running one as `.molt.new` and synced;
//! 2. the running binary is hard-linked as `molt.old` (through a temporary name and a
//!    rename, so `molt.old` is always a whole earlier binary): kept for one rollback;
//! 3. `.molt.new` is renamed over the running binary's path, and the directory synced.
//!
//! Each is atomic, so a crash at any point leaves a working molt at the path: the old one
//! until the rename, the new one after. `rollback` renames `molt.old` back, once.

use crate::beneath::Beneath;
use std::path::{Path, PathBuf};

/// The directory a downloaded molt is unpacked into, under the installation's cache.
pub fn work_dir(root: &Path) -> PathBuf {
    root.join("cache/self-update")
}

/// `molt <version>` from `bin --version`, or why not.
pub fn version_of(bin: &Path) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(|e| format!("{} does not run here: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("molt ")
        .map(|v| v.trim().to_string())
        .ok_or_else(|| {
            format!(
                "{} --version says {:?}, not `molt VERSION`",
                bin.display(),
                text.trim()
            )
        })
}

/// Unpack `package` (verified by the caller against the signed manifest) into a fresh
/// `dir`, keeping only `release.toml` and `bin/molt`, at most `max_bytes`; return the new
/// binary once it is `version`.
pub fn unpack(
    package: &Path,
    dir: &Path,
    version: &str,
    max_bytes: u64,
) -> Result<PathBuf, String> {
    crate::fsutil::remove_path(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    let dest = Beneath::create(dir).map_err(|e| e.to_string())?;
    let keep = |p: &Path| -> Result<Option<PathBuf>, String> {
        Ok(match p.to_str() {
            Some("release.toml") | Some("bin") | Some("bin/molt") => Some(p.to_path_buf()),
            _ => None,
        })
    };
    crate::package::unpack(package, &dest, &keep, false, max_bytes)?;
    let release = crate::release::Release::load(dir).map_err(|e| e.to_string())?;
    if release.version != version {
        return Err(format!(
            "the package holds molt {}, the manifest says {version}",
            release.version
        ));
    }
    let bin = dir.join("bin/molt");
    let meta =
        std::fs::symlink_metadata(&bin).map_err(|_| "the package has no bin/molt".to_string())?;
    if !meta.is_file() {
        return Err("bin/molt in the package is not a regular file".into());
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", bin.display()))?;
    }
    let said = version_of(&bin)?;
    if said != version {
        return Err(format!(
            "the new binary says it is molt {said}, the manifest says {version}"
        ));
    }
    Ok(bin)
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    crate::fsutil::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// Put `new` in place of the binary at `exe`, keeping the old one as `molt.old` beside it.
pub fn replace(exe: &Path, new: &Path) -> Result<PathBuf, String> {
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    let staged = dir.join(".molt.new");
    let old = dir.join("molt.old");
    let old_tmp = dir.join(".molt.old.new");
    let io =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(new, &staged).map_err(|e| io("write", &staged, e))?;
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", &staged, e))?;
    engine::failpoint("steps::self_update::staged");
    let _ = std::fs::remove_file(&old_tmp);
    std::fs::hard_link(exe, &old_tmp).map_err(|e| io("keep", exe, e))?;
    std::fs::rename(&old_tmp, &old).map_err(|e| io("keep", &old, e))?;
    sync_dir(dir)?;
    engine::failpoint("steps::self_update::old_kept");
    std::fs::rename(&staged, exe).map_err(|e| io("replace", exe, e))?;
    engine::failpoint("steps::self_update::replaced");
    sync_dir(dir)?;
    Ok(old)
}

/// Put `molt.old` back at `exe` (once: `molt.old` is consumed).
pub fn rollback(exe: &Path) -> Result<String, String> {
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    let old = dir.join("molt.old");
    if !old.is_file() {
        return Err(format!(
            "there is no earlier molt to go back to ({} is missing)",
            old.display()
        ));
    }
    let v = version_of(&old)?;
    std::fs::rename(&old, exe).map_err(|e| format!("cannot restore {}: {e}", exe.display()))?;
    sync_dir(dir)?;
    Ok(v)
}
