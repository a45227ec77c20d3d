//! Releases end to end: `molt pack` and `molt sign` on the vendor side, `molt check` and
//! `molt fetch` on the operator side, against a real HTTP server on 127.0.0.1 that cuts,
//! stalls, refuses ranges and changes bytes; evil packages; signatures; crashes.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tests::http::{Fault, Server};

/// Bytes that do not compress away, so packages have a real size.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

struct Vendor {
    dir: tempfile::TempDir,
}

impl Vendor {
    /// Releases 1.0.0 and 2.0.0 (2.0.0 changes one image and a few files), packed and signed.
    fn new() -> Vendor {
        let v = Vendor {
            dir: tempfile::tempdir().unwrap(),
        };
        let r1 = v.path("r1");
        write(&r1, "release.toml", b"format = 1\nversion = \"1.0.0\"\n");
        write(
            &r1,
            "docker-compose.yml",
            b"services: {app: {image: app:1}}\n",
        );
        write(&r1, "images/app.tar", &noise(5 << 20, 1));
        write(&r1, "images/db.tar", &noise(1 << 20, 2));
        write(&r1, "config/app.conf", b"a=1\n");
        write(&r1, "config/removed.conf", b"gone in 2\n");
        std::os::unix::fs::symlink("app.conf", r1.join("config/current.conf")).unwrap();
        let r2 = v.path("r2");
        steps::fsutil::copy_tree(&r1, &r2, &mut |_| {}).unwrap();
        write(&r2, "release.toml", b"format = 1\nversion = \"2.0.0\"\n");
        write(
            &r2,
            "docker-compose.yml",
            b"services: {app: {image: app:2}}\n",
        );
        write(&r2, "images/app.tar", &noise(5 << 20, 3));
        write(&r2, "config/app.conf", b"a=2\n");
        write(&r2, "config/new.conf", b"new in 2\n");
        std::fs::remove_file(r2.join("config/removed.conf")).unwrap();
        let out = v.molt(&["keygen", "--secret-key", "k.sec", "--public-key", "k.pub"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        for (rel, prev) in [("r1", None), ("r2", Some("r1"))] {
            let mut args = vec![
                "pack",
                rel,
                "--out",
                "pub",
                "--product",
                "demo",
                "--secret-key",
                "k.sec",
                "--released-at",
                "2026-11-24T00:00:00Z",
            ];
            if let Some(p) = prev {
                args.extend(["--previous", p]);
            }
            let out = v.molt(&args);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
        v
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn molt(&self, args: &[&str]) -> Output {
        Command::new(MOLT)
            .current_dir(self.dir.path())
            .args(args)
            .env("MOLT_LOG", "error")
            .env_remove("MOLT_FAILPOINTS")
            .output()
            .unwrap()
    }

    fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path("pub/manifest.json")).unwrap()).unwrap()
    }

    /// Publish `pub/` on a server, every file with `fault` except the manifest.
    fn serve(&self, fault: &Fault) -> Server {
        let s = Server::start();
        for e in std::fs::read_dir(self.path("pub")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let f = if name.starts_with("manifest") {
                Fault::None
            } else {
                fault.clone()
            };
            s.put(&format!("/{name}"), std::fs::read(e.path()).unwrap(), f);
        }
        s
    }
}

struct Inst {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Inst {
    /// An installation that reads `manifest_url`, optionally with release 1.0.0 live.
    fn new(vendor: &Vendor, manifest_url: &str, with_v1: bool, extra: &str) -> Inst {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("inst");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(vendor.path("k.pub"), root.join("vendor.pub")).unwrap();
        std::fs::write(
            root.join("molt.toml"),
            format!("manifest_url = \"{manifest_url}\"\npublic_key = \"vendor.pub\"\n{extra}"),
        )
        .unwrap();
        if with_v1 {
            std::fs::create_dir_all(root.join("releases")).unwrap();
            steps::fsutil::copy_tree(
                &vendor.path("r1"),
                &root.join("releases/1.0.0"),
                &mut |_| {},
            )
            .unwrap();
            std::os::unix::fs::symlink("releases/1.0.0", root.join("current")).unwrap();
        }
        Inst { _dir: dir, root }
    }

    fn molt(&self, args: &[&str]) -> Output {
        molt_in(&self.root, None, args)
    }

    fn staged(&self) -> bool {
        self.root.join("releases/2.0.0").exists()
    }

    fn nothing_left(&self) {
        assert!(!self.staged(), "a release was staged");
        assert!(
            !self.root.join("releases/2.0.0.partial").exists(),
            "partial staging left"
        );
        let cached = self.root.join("cache/packages");
        let finals: Vec<_> = std::fs::read_dir(&cached)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.zst"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            finals.is_empty(),
            "an unverified package was accepted: {finals:?}"
        );
    }
}

const FAST: &str = "[download]\nstall_timeout_secs = 1\nretries = 3\n";

#[test]
fn check_then_fetch_a_patch_and_a_full_package_over_http() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), true, "");
    let out = i.molt(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["choice"]["choice"], "patch", "{c}");
    assert_eq!(c["signed"], true);
    assert_eq!(c["installed"], "1.0.0");
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(
        &tree_of(&i.root.join("releases/2.0.0")),
        &tree_of(&v.path("r2")),
        "patched release",
    );
    // Unchanged files are shared with the base release, not copied.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(i.root.join(p)).unwrap().ino();
    assert_eq!(
        ino("releases/1.0.0/images/db.tar"),
        ino("releases/2.0.0/images/db.tar")
    );
    assert_eq!(
        std::fs::read_link(i.root.join("current")).unwrap(),
        Path::new("releases/1.0.0"),
        "fetch must not cut over"
    );

    let i = Inst::new(&v, &s.url("/manifest.json"), true, "");
    let out = i.molt(&["fetch", "--force-full"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_tree(
        &tree_of(&i.root.join("releases/2.0.0")),
        &tree_of(&v.path("r2")),
        "full release",
    );

    let patch = &v.manifest()["platforms"][std::env::consts::ARCH]["patches"][0];
    let full = &v.manifest()["platforms"][std::env::consts::ARCH]["full"];
    // The patch ships the changed image and files, not the unchanged 1 MiB db image.
    assert!(
        patch["size"].as_u64().unwrap() + 1_000_000 <= full["size"].as_u64().unwrap(),
        "the patch carries unchanged files: {patch} vs {full}"
    );
}

#[test]
fn packing_is_deterministic() {
    let v = Vendor::new();
    let first = std::fs::read(
        v.path("pub/demo-2.0.0-x86_64.tar.zst")
            .with_file_name(format!("demo-2.0.0-{}.tar.zst", std::env::consts::ARCH)),
    )
    .unwrap();
    let out = v.molt(&[
        "pack",
        "r2",
        "--out",
        "again",
        "--product",
        "demo",
        "--released-at",
        "2026-11-24T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = std::fs::read(v.path(&format!(
        "again/demo-2.0.0-{}.tar.zst",
        std::env::consts::ARCH
    )))
    .unwrap();
    assert!(
        first == second,
        "the same release packed twice gave different bytes"
    );
}

#[test]
fn every_download_fault_ends_verified_or_with_a_clear_error() {
    let v = Vendor::new();
    let full_len = v.manifest()["platforms"][std::env::consts::ARCH]["full"]["size"]
        .as_u64()
        .unwrap() as usize;
    let cases: Vec<(Fault, Option<&str>)> = vec![
        (Fault::CutOnceAt(1_500_000), None),
        (Fault::StallOnceAt(1_000_000, Duration::from_secs(4)), None),
        (Fault::NoRange, None),
        (Fault::Status(404), Some("answered 404")),
        (Fault::Status(500), Some("answered 500")),
        (Fault::ChangeAfterFirst(noise(full_len, 9)), Some("sha256")),
        (Fault::Longer(100), Some("bytes, the manifest says")),
        (Fault::CutAt(700_000), Some("attempts")),
    ];
    for (fault, error) in cases {
        let s = v.serve(&fault);
        let i = Inst::new(&v, &s.url("/manifest.json"), false, FAST);
        let out = i.molt(&["fetch"]);
        match error {
            None => {
                assert_eq!(out.status.code(), Some(0), "{fault:?}: {}", text(&out));
                assert_tree(
                    &tree_of(&i.root.join("releases/2.0.0")),
                    &tree_of(&v.path("r2")),
                    &format!("{fault:?}"),
                );
            }
            Some(says) => {
                assert_eq!(out.status.code(), Some(4), "{fault:?}: {}", text(&out));
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains(says),
                    "{fault:?} should say {says}: {}",
                    text(&out)
                );
                i.nothing_left();
            }
        }
        if fault == Fault::CutOnceAt(1_500_000) {
            let resumed = s.log().iter().any(|l| {
                l.range.as_deref().is_some_and(|r| r != "bytes=0-") && l.if_range.is_some()
            });
            assert!(resumed, "no ranged request after the cut: {:?}", s.log());
        }
    }
}

#[test]
fn a_crash_mid_download_and_mid_stage_resumes_to_the_right_release() {
    let v = Vendor::new();
    for fp in [
        "steps::download::checkpoint=return",
        "steps::stage::unpack_entry=3*off->return",
        "steps::stage::before_rename=return",
    ] {
        let s = v.serve(&Fault::None);
        let i = Inst::new(&v, &s.url("/manifest.json"), false, FAST);
        let out = molt_in(&i.root, Some(fp), &["fetch"]);
        assert!(aborted(&out), "{fp}: {}", text(&out));
        assert!(!i.staged(), "{fp}: staged before the crash");
        let out = i.molt(&["resume"]);
        assert_eq!(out.status.code(), Some(0), "{fp}: {}", text(&out));
        assert_tree(
            &tree_of(&i.root.join("releases/2.0.0")),
            &tree_of(&v.path("r2")),
            fp,
        );
        if fp.starts_with("steps::download") {
            // The second process continued from the proven bytes instead of starting over.
            let ranged = s.log().iter().any(|l| {
                l.range
                    .as_deref()
                    .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")
            });
            assert!(ranged, "{fp}: no resumed request: {:?}", s.log());
        }
    }
}

#[test]
fn signatures_are_required_and_checked() {
    let v = Vendor::new();
    let manifest = std::fs::read(v.path("pub/manifest.json")).unwrap();
    let sig = std::fs::read(v.path("pub/manifest.json.minisig")).unwrap();
    // valid
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, "");
    assert_eq!(i.molt(&["check"]).status.code(), Some(0));
    // changed after signing
    let mut tampered: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    tampered["notes"] = "free upgrade!".into();
    s.put(
        "/manifest.json",
        serde_json::to_vec(&tampered).unwrap(),
        Fault::None,
    );
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature does not verify"),
        "{}",
        text(&out)
    );
    i.nothing_left();
    // missing signature
    let s2 = Server::start();
    s2.put("/manifest.json", manifest.clone(), Fault::None);
    let i2 = Inst::new(&v, &s2.url("/manifest.json"), false, "");
    let out = i2.molt(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not signed"),
        "{}",
        text(&out)
    );
    // wrong key
    let out = v.molt(&[
        "keygen",
        "--secret-key",
        "other.sec",
        "--public-key",
        "other.pub",
    ]);
    assert_eq!(out.status.code(), Some(0));
    s2.put("/manifest.json.minisig", sig, Fault::None);
    std::fs::copy(v.path("other.pub"), i2.root.join("vendor.pub")).unwrap();
    let out = i2.molt(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature does not verify"),
        "{}",
        text(&out)
    );
}

#[test]
fn signatures_interoperate_with_the_minisign_tool() {
    let v = Vendor::new();
    let which = Command::new("minisign").arg("-v").output();
    assert!(
        which.is_ok(),
        "the minisign tool is missing: install Debian's minisign (scripts/test.sh does)"
    );
    // molt signs, minisign verifies
    let out = Command::new("minisign")
        .current_dir(v.dir.path())
        .args(["-V", "-p", "k.pub", "-m", "pub/manifest.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minisign rejects molt's signature: {}",
        text(&out)
    );
    // minisign signs, molt verifies
    let out = Command::new("minisign")
        .current_dir(v.dir.path())
        .args(["-G", "-W", "-p", "tool.pub", "-s", "tool.sec"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(v.path("pub/manifest.json.minisig")).unwrap();
    let out = Command::new("minisign")
        .current_dir(v.dir.path())
        .args(["-S", "-s", "tool.sec", "-m", "pub/manifest.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let i = Inst::new(&v, v.path("pub/manifest.json").to_str().unwrap(), false, "");
    std::fs::copy(v.path("tool.pub"), i.root.join("vendor.pub")).unwrap();
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(i.staged());

    // Roots: a rotation from molt's key to the tool's, its two signatures made one by molt
    // and one by the minisign tool, joined with `cat`.
    let ok = |out: Output| assert!(out.status.success(), "{}", text(&out));
    ok(v.molt(&[
        "root",
        "--out",
        "pub",
        "--product",
        "demo",
        "--key",
        "k.pub",
        "--secret-key",
        "k.sec",
    ]));
    let r2 = serde_json::json!({"format": 1, "product": "demo", "version": 2,
        "expires": "2099-01-01T00:00:00Z", "threshold": 1,
        "keys": [std::fs::read_to_string(v.path("tool.pub")).unwrap().lines().last().unwrap()]});
    std::fs::write(v.path("pub/2.root.json"), r2.to_string()).unwrap();
    ok(v.molt(&["sign", "pub/2.root.json", "--secret-key", "k.sec"]));
    std::fs::rename(v.path("pub/2.root.json.minisig"), v.path("by-molt.minisig")).unwrap();
    ok(Command::new("minisign")
        .current_dir(v.dir.path())
        .args([
            "-S",
            "-s",
            "tool.sec",
            "-m",
            "pub/2.root.json",
            "-x",
            "by-tool.minisig",
        ])
        .output()
        .unwrap());
    let mut both = std::fs::read(v.path("by-molt.minisig")).unwrap();
    both.extend(std::fs::read(v.path("by-tool.minisig")).unwrap());
    std::fs::write(v.path("pub/2.root.json.minisig"), both).unwrap();
    for f in ["1.root.json", "1.root.json.minisig"] {
        std::fs::copy(v.path("pub").join(f), i.root.join(f)).unwrap();
    }
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nroot = \"1.root.json\"\n",
            v.path("pub/manifest.json").display()
        ),
    )
    .unwrap();
    let out = i.molt(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.root.join("trust.json")).unwrap()).unwrap();
    assert_eq!(t["root"]["version"], 2, "{t}");
}

/// One raw tar entry: name, type, content, link target.
type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8], &'a str);

/// A tar.zst whose entries are written raw, so names and types can be anything.
fn evil_package(path: &Path, entries: &[RawEntry]) {
    let mut buf = Vec::new();
    {
        let mut b = tar::Builder::new(&mut buf);
        let mut release = tar::Header::new_gnu();
        release.set_size(29);
        release.set_mode(0o644);
        release.set_entry_type(tar::EntryType::Regular);
        release.set_path("release.toml").unwrap();
        release.set_cksum();
        b.append(&release, &b"format = 1\nversion = \"2.0.0\"\n"[..])
            .unwrap();
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_old();
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
    }
    std::fs::write(path, zstd::encode_all(&buf[..], 3).unwrap()).unwrap();
}

fn unsigned_manifest(dir: &Path, pkg: &Path, from: Option<&str>) -> PathBuf {
    use sha2::Digest;
    let bytes = std::fs::read(pkg).unwrap();
    let entry = serde_json::json!({
        "url": pkg.file_name().unwrap().to_str().unwrap(),
        "size": bytes.len(),
        "sha256": format!("{:x}", sha2::Sha256::digest(&bytes)),
        "installed_size": 1000,
    });
    let mut platform = serde_json::json!({"full": entry.clone(), "patches": []});
    if let Some(f) = from {
        let mut p = entry;
        p["from"] = f.into();
        platform["patches"] = serde_json::json!([p]);
    }
    let m = serde_json::json!({"format": 1, "product": "demo", "version": "2.0.0", "released_at": "x", "sequence": 1, "expires": "2099-01-01T00:00:00Z",
        "platforms": {std::env::consts::ARCH: platform}});
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    path
}

#[test]
fn evil_packages_are_refused_with_nothing_written_outside() {
    let v = Vendor::new();
    let outside = v.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let abs = format!("{}/abs.txt", outside.display());
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "dotdot",
            vec![(
                "../../../outside/evil.txt",
                tar::EntryType::Regular,
                b"x",
                "",
            )],
            "`..`",
        ),
        (
            "absolute",
            vec![(abs.as_str(), tar::EntryType::Regular, b"x", "")],
            "absolute",
        ),
        (
            "symlink",
            vec![("link", tar::EntryType::Symlink, b"", "../../../outside")],
            "points outside",
        ),
        (
            "symlink-abs",
            vec![("link", tar::EntryType::Symlink, b"", "/etc")],
            "points outside",
        ),
        (
            "hardlink",
            vec![("hl", tar::EntryType::Link, b"", "/etc/passwd")],
            "hard link",
        ),
        (
            "device",
            vec![("dev", tar::EntryType::Char, b"", "")],
            "Char",
        ),
        (
            "fifo",
            vec![("fifo", tar::EntryType::Fifo, b"", "")],
            "Fifo",
        ),
    ];
    for (name, entries, says) in cases {
        let dir = v.dir.path().join(format!("evil-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pkg = dir.join("evil.tar.zst");
        evil_package(&pkg, &entries);
        let m = unsigned_manifest(&dir, &pkg, None);
        let i = Inst::new(&v, m.to_str().unwrap(), false, "");
        std::fs::write(
            i.root.join("molt.toml"),
            format!(
                "manifest_url = \"{}\"\nallow_unsigned = true\n",
                m.display()
            ),
        )
        .unwrap();
        let out = i.molt(&["fetch"]);
        assert_eq!(out.status.code(), Some(4), "{name}: {}", text(&out));
        let msg = String::from_utf8_lossy(&out.stdout);
        assert!(
            msg.contains("refused") && msg.contains(says),
            "{name} should say {says}: {msg}"
        );
        assert!(
            !i.staged() && !i.root.join("releases/2.0.0.partial").exists(),
            "{name}: staging left"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{name} wrote outside"
        );
    }
}

#[test]
fn patches_that_do_not_fit_are_refused() {
    let v = Vendor::new();
    let arch = std::env::consts::ARCH;
    let patch = v.path(&format!("pub/demo-1.0.0-to-2.0.0-{arch}.patch.tar.zst"));
    // 1. The installed release's files differ from what the patch expects.
    let m = unsigned_manifest(&v.path("pub"), &patch, Some("1.0.0"));
    let i = Inst::new(&v, m.to_str().unwrap(), true, "");
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nallow_unsigned = true\n",
            m.display()
        ),
    )
    .unwrap();
    std::fs::write(
        i.root.join("releases/1.0.0/config/app.conf"),
        "locally edited\n",
    )
    .unwrap();
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("base file config/app.conf has sha256"),
        "{}",
        text(&out)
    );
    assert!(!i.staged());
    // 2. The installed version is not one the patch applies to.
    let i = Inst::new(&v, m.to_str().unwrap(), true, "");
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nallow_unsigned = true\n",
            m.display()
        ),
    )
    .unwrap();
    std::fs::write(
        i.root.join("releases/1.0.0/release.toml"),
        "format = 1\nversion = \"1.5.0\"\n",
    )
    .unwrap();
    let m2 = unsigned_manifest(&v.path("pub"), &patch, Some(">=1.0.0, <2.0.0"));
    assert_eq!(m, m2);
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the installed release is 1.5.0"),
        "{}",
        text(&out)
    );
    // 3. A shipped file whose hash differs from patch.toml's list.
    let dir = v.dir.path().join("bad-patch");
    std::fs::create_dir_all(&dir).unwrap();
    let mut ar =
        tar::Archive::new(zstd::Decoder::new(std::fs::File::open(&patch).unwrap()).unwrap());
    let mut rebuilt = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let mut h = e.header().clone();
        if e.path().unwrap().as_ref() == Path::new("files/config/app.conf") {
            data = b"a=EVIL\n".to_vec();
            h.set_size(data.len() as u64);
            h.set_cksum();
        }
        rebuilt.append(&h, &data[..]).unwrap();
    }
    let bad = dir.join("bad.patch.tar.zst");
    std::fs::write(
        &bad,
        zstd::encode_all(&rebuilt.into_inner().unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let m = unsigned_manifest(&dir, &bad, Some("1.0.0"));
    let i = Inst::new(&v, m.to_str().unwrap(), true, "");
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nallow_unsigned = true\n",
            m.display()
        ),
    )
    .unwrap();
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("patch.toml says"),
        "{}",
        text(&out)
    );
    assert!(!i.staged() && !i.root.join("releases/2.0.0.partial").exists());
    assert_eq!(
        std::fs::read_to_string(i.root.join("releases/1.0.0/config/app.conf")).unwrap(),
        "a=1\n",
        "the base release was touched"
    );
}

#[test]
fn bad_manifests_are_refused_clearly() {
    let v = Vendor::new();
    let good: serde_json::Value = v.manifest();
    let arch = std::env::consts::ARCH;
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{ this is not json".to_vec(), "not valid JSON"),
        (
            serde_json::to_vec(&{
                let mut m = good.clone();
                m["format"] = 7.into();
                m
            })
            .unwrap(),
            "newer than this molt",
        ),
        (
            serde_json::to_vec(&{
                let mut m = good.clone();
                let p = m["platforms"][arch].take();
                m["platforms"] = serde_json::json!({"sparc64": p});
                m
            })
            .unwrap(),
            "no package for architecture",
        ),
        (
            serde_json::to_vec(&{
                let mut m = good.clone();
                m["platforms"][arch]["full"]["url"] = "ftp://h/p.tar.zst".into();
                m
            })
            .unwrap(),
            "scheme \"ftp\"",
        ),
    ];
    // A size that lies: smaller than the real package.
    let mut lie = good.clone();
    lie["platforms"][arch]["full"]["size"] = 1000.into();
    cases.push((serde_json::to_vec(&lie).unwrap(), "the manifest says 1000"));
    for (bytes, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(v.path("pub")).unwrap().flatten() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        std::fs::write(dir.path().join("manifest.json"), &bytes).unwrap();
        let m = dir.path().join("manifest.json");
        let i = Inst::new(&v, m.to_str().unwrap(), true, "");
        std::fs::write(
            i.root.join("molt.toml"),
            format!(
                "manifest_url = \"{}\"\nallow_unsigned = true\n",
                m.display()
            ),
        )
        .unwrap();
        let before = tree_of(&i.root);
        let out = i.molt(&["fetch", "--force-full"]);
        assert_ne!(out.status.code(), Some(0), "{says}: {}", text(&out));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(says), "should say {says}: {all}");
        let after: Tree = tree_of(&i.root)
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("journal")
                    && !k.starts_with("cache")
                    && k != "molt.lock"
                    && k != "trust.json"
            })
            .collect();
        let before: Tree = before
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("journal")
                    && !k.starts_with("cache")
                    && k != "molt.lock"
                    && k != "trust.json"
            })
            .collect();
        assert_tree(&after, &before, says);
    }
}

#[test]
fn cache_clean_keeps_what_an_unfinished_run_needs() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, FAST);
    // A fetch killed after its download: the package is cached and the run is unfinished.
    let out = molt_in(
        &i.root,
        Some("steps::stage::before_rename=return"),
        &["fetch"],
    );
    assert!(aborted(&out), "{}", text(&out));
    let cached = i.root.join("cache/packages");
    assert_eq!(std::fs::read_dir(&cached).unwrap().count(), 1);
    std::fs::write(cached.join("0000.tar.zst.part"), b"stale partial download").unwrap();
    let out = i.molt(&["cache", "clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&cached).unwrap().count(),
        1,
        "the needed package was removed or the stale one kept"
    );
    let out = i.molt(&["resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = i.molt(&["cache", "clean", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&cached).unwrap().count(), 0);
}

#[test]
fn a_disk_too_small_for_the_release_is_refused_before_any_download() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, FAST);
    // The installation on a 2 MiB filesystem: the 6 MiB package cannot fit.
    let small = i.root.join("releases");
    std::fs::create_dir_all(&small).unwrap();
    let _disk = Tmpfs::mount(&i.root, "2m");
    std::fs::copy(v.path("k.pub"), i.root.join("vendor.pub")).unwrap();
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n{FAST}",
            s.url("/manifest.json")
        ),
    )
    .unwrap();
    let out = i.molt(&["fetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not enough disk space"),
        "{}",
        text(&out)
    );
    assert!(
        s.log().iter().all(|l| !l.path.ends_with(".tar.zst")),
        "a package was requested: {:?}",
        s.log()
    );
    assert!(!i.root.join("journal").exists(), "a run was started");
}

/// How a hostile package spells its entries' names and links.
#[derive(Clone, Copy, Debug)]
enum Dialect {
    /// POSIX ustar headers (long names split into prefix and name).
    Ustar,
    /// GNU headers, long names and links as GNU extension entries.
    Gnu,
    /// ustar headers whose real name and link come from a pax extended header.
    Pax,
}

/// One entry of a hostile package.
struct Hostile<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: &'a str,
    mode: u32,
}

fn file<'a>(name: &'a str, data: &[u8]) -> Hostile<'a> {
    Hostile {
        name,
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: "",
        mode: 0o644,
    }
}

fn link<'a>(name: &'a str, target: &'a str) -> Hostile<'a> {
    Hostile {
        name,
        kind: tar::EntryType::Symlink,
        data: Vec::new(),
        link: target,
        mode: 0o777,
    }
}

fn dir(name: &str) -> Hostile<'_> {
    Hostile {
        name,
        kind: tar::EntryType::Directory,
        data: Vec::new(),
        link: "",
        mode: 0o755,
    }
}

/// A full package of release 2.0.0 holding `entries` after its release.toml, in `dialect`.
fn hostile_package(path: &Path, dialect: Dialect, entries: &[Hostile]) {
    let mut b = tar::Builder::new(Vec::new());
    let mut all = vec![file("release.toml", b"format = 1\nversion = \"2.0.0\"\n")];
    all.extend(entries.iter().map(|e| Hostile {
        data: e.data.clone(),
        ..*e
    }));
    for e in &all {
        let mut h = match dialect {
            Dialect::Gnu => tar::Header::new_gnu(),
            Dialect::Ustar | Dialect::Pax => tar::Header::new_ustar(),
        };
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        match dialect {
            Dialect::Gnu => {
                if e.kind == tar::EntryType::Symlink {
                    b.append_link(&mut h, e.name, e.link).unwrap();
                } else {
                    b.append_data(&mut h, e.name, &e.data[..]).unwrap();
                }
            }
            Dialect::Ustar => {
                h.set_path(e.name).unwrap();
                if e.kind == tar::EntryType::Symlink {
                    h.set_link_name(e.link).unwrap();
                }
                h.set_cksum();
                b.append(&h, &e.data[..]).unwrap();
            }
            Dialect::Pax => {
                let mut ext = vec![("path", e.name.as_bytes())];
                if e.kind == tar::EntryType::Symlink {
                    ext.push(("linkpath", e.link.as_bytes()));
                }
                b.append_pax_extensions(ext).unwrap();
                h.set_path("pax-says-otherwise").unwrap();
                h.set_cksum();
                b.append(&h, &e.data[..]).unwrap();
            }
        }
    }
    std::fs::write(
        path,
        zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap(),
    )
    .unwrap();
}

/// A file outside every installation: its bytes, mode and mtime must never change.
struct Decoy {
    dir: PathBuf,
    file: PathBuf,
}

impl Decoy {
    fn new(at: &Path) -> Decoy {
        use std::os::unix::fs::PermissionsExt;
        let dir = at.join("decoy");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, b"root:x:0:0\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        Decoy { dir, file }
    }

    fn untouched(&self, case: &str) {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::read(&self.file).unwrap(),
            b"root:x:0:0\n",
            "{case}: decoy bytes"
        );
        let m = std::fs::metadata(&self.file).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{case}: decoy mode");
        assert_eq!(
            m.modified().unwrap(),
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            "{case}: decoy mtime"
        );
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("passwd")],
            "{case}: decoy dir"
        );
    }

    /// `dir/passwd` as a path relative to `/`, for links that climb to the root.
    fn below_root(&self) -> String {
        self.file
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string()
    }
}

/// Stage `pkg` as 2.0.0 on a fresh installation (unsigned manifest declaring `installed`
/// bytes); returns the exit code, the output and the installation.
fn stage_hostile(
    v: &Vendor,
    case: &str,
    pkg_of: &dyn Fn(&Path),
    installed: u64,
) -> (Option<i32>, String, Inst) {
    let dir = v.dir.path().join(format!("hostile-{case}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pkg = dir.join("p.tar.zst");
    pkg_of(&pkg);
    let m = unsigned_manifest(&dir, &pkg, None);
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
    json["platforms"][std::env::consts::ARCH]["full"]["installed_size"] = installed.into();
    std::fs::write(&m, serde_json::to_vec(&json).unwrap()).unwrap();
    let i = Inst::new(v, m.to_str().unwrap(), false, "");
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nallow_unsigned = true\n",
            m.display()
        ),
    )
    .unwrap();
    let out = i.molt(&["fetch"]);
    (out.status.code(), text(&out), i)
}

#[test]
fn hostile_full_packages_in_every_dialect_cannot_write_outside_the_staging() {
    let v = Vendor::new();
    let decoy = Decoy::new(v.dir.path());
    let up = "r/".repeat(8) + &"../".repeat(8);
    let chain_to_decoy = format!("{up}{}", decoy.below_root());
    let through = format!("esc/{}", decoy.below_root());
    let cases: Vec<(&str, Vec<Hostile>, &str)> = vec![
        // `r -> .` keeps every name inside as text; through it, 8 `..` reach `/`.
        (
            "link-chain",
            vec![link("r", "."), link("esc", &chain_to_decoy)],
            "leaves the release",
        ),
        (
            "link-chain-then-write",
            vec![link("r", "."), link("esc", &up), file(&through, b"owned\n")],
            "goes through the link esc",
        ),
        (
            "dir-link-then-write",
            vec![dir("sub"), link("d", "sub"), file("d/evil", b"x")],
            "goes through the link d",
        ),
        (
            "file-then-link",
            vec![file("a", b"x"), link("a", "release.toml")],
            "already exists",
        ),
        (
            "link-then-file",
            vec![
                link("a", "release.toml"),
                file("a", b"overwrites release.toml\n"),
            ],
            "already exists",
        ),
        ("link-loop", vec![link("a", "b"), link("b", "a/x")], "loops"),
        (
            "link-to-absolute",
            vec![link("a", "/etc")],
            "points outside",
        ),
    ];
    for dialect in [Dialect::Ustar, Dialect::Gnu, Dialect::Pax] {
        for (name, entries, says) in &cases {
            let case = format!("{name}/{dialect:?}");
            let (code, out, i) = stage_hostile(
                &v,
                &case.replace('/', "-"),
                &|p| hostile_package(p, dialect, entries),
                1 << 20,
            );
            assert_eq!(code, Some(4), "{case}: {out}");
            assert!(
                out.contains("refused") && out.contains(says),
                "{case} should be refused saying {says:?}: {out}"
            );
            assert!(
                !i.staged() && !i.root.join("releases/2.0.0.partial").exists(),
                "{case}: staging left"
            );
            decoy.untouched(&case);
        }
    }
}

#[test]
fn setuid_bits_are_dropped_and_bombs_are_cut_off() {
    use std::os::unix::fs::PermissionsExt;
    let v = Vendor::new();
    let decoy = Decoy::new(v.dir.path());
    // setuid and setgid: staged without them, with a warning.
    let mut suid = file("bin/tool", b"#!/bin/sh\n");
    suid.mode = 0o6755;
    let (code, out, i) = stage_hostile(
        &v,
        "setuid",
        &|p| {
            hostile_package(
                p,
                Dialect::Gnu,
                &[Hostile {
                    data: suid.data.clone(),
                    ..suid
                }],
            )
        },
        1 << 20,
    );
    assert_eq!(code, Some(0), "{out}");
    let mode = std::fs::metadata(i.root.join("releases/2.0.0/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid kept: {mode:o}");
    // A file of 256 MiB of zeros (a few hundred KiB packed) in a release that declares 1 MiB.
    let (code, out, i) = stage_hostile(
        &v,
        "bomb",
        &|p| hostile_package(p, Dialect::Gnu, &[file("zeros", &vec![0u8; 256 << 20])]),
        1 << 20,
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("unpacks to more than the 1048576 bytes its manifest declares"),
        "{out}"
    );
    assert!(!i.root.join("releases/2.0.0.partial").exists());
    // A GNU long name of 64 MiB: the tar reader would hold it in memory.
    let (code, out, i) = stage_hostile(
        &v,
        "long-name",
        &|p| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_size(64 << 20);
            h.set_path("././@LongLink").unwrap();
            h.set_cksum();
            b.append(&h, &vec![b'a'; 64 << 20][..]).unwrap();
            let mut f = tar::Header::new_gnu();
            f.set_size(1);
            f.set_path("x").unwrap();
            f.set_cksum();
            b.append(&f, &b"x"[..]).unwrap();
            std::fs::write(
                p,
                zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap(),
            )
            .unwrap();
        },
        1 << 20,
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("holds more than its entries account for"),
        "{out}"
    );
    assert!(!i.root.join("releases/2.0.0.partial").exists());
    decoy.untouched("bombs");
}

#[test]
fn hostile_patches_are_refused_before_the_base_is_touched() {
    let v = Vendor::new();
    let decoy = Decoy::new(v.dir.path());
    let arch = std::env::consts::ARCH;
    let real = v.path(&format!("pub/demo-1.0.0-to-2.0.0-{arch}.patch.tar.zst"));
    // Rebuild the real patch with its patch.toml edited by `edit` and `extra` entries added.
    let rebuild =
        |name: &str, edit: &dyn Fn(&mut toml::Value), extra: &[(&str, &[u8])]| -> PathBuf {
            let dir = v.dir.path().join(format!("hostile-patch-{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut ar =
                tar::Archive::new(zstd::Decoder::new(std::fs::File::open(&real).unwrap()).unwrap());
            let mut b = tar::Builder::new(Vec::new());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                let mut h = e.header().clone();
                if e.path().unwrap().as_ref() == Path::new("patch.toml") {
                    let mut t: toml::Value =
                        toml::from_str(std::str::from_utf8(&data).unwrap()).unwrap();
                    edit(&mut t);
                    data = toml::to_string(&t).unwrap().into_bytes();
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                }
                b.append(&h, &data[..]).unwrap();
            }
            for (path, data) in extra {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, path, *data).unwrap();
            }
            let pkg = dir.join("p.patch.tar.zst");
            std::fs::write(
                &pkg,
                zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap(),
            )
            .unwrap();
            unsigned_manifest(&dir, &pkg, Some("1.0.0"))
        };
    let sha = |b: &[u8]| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(b))
    };
    let evil_sha = sha(b"owned\n");
    let add_entry =
        |t: &mut toml::Value, list: &str, path: &str, kind: &str, target: Option<&str>| {
            let mut e = toml::map::Map::new();
            e.insert("path".into(), path.into());
            e.insert("kind".into(), kind.into());
            e.insert(
                "mode".into(),
                (if kind == "symlink" { 0o777 } else { 0o644 }).into(),
            );
            if kind == "file" {
                e.insert("sha256".into(), evil_sha.clone().into());
            }
            if let Some(t) = target {
                e.insert("target".into(), t.into());
            }
            t[list].as_array_mut().unwrap().push(toml::Value::Table(e));
        };
    let up = "r/".repeat(8) + &"../".repeat(8);
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "result-link-chain",
            rebuild(
                "chain",
                &|t| {
                    add_entry(t, "result", "r", "symlink", Some("."));
                    add_entry(t, "result", "esc", "symlink", Some(&up));
                },
                &[],
            ),
            "leaves the release",
        ),
        (
            "unlisted-file",
            rebuild(
                "unlisted",
                &|_| {},
                &[("files/config/sneaky.conf", b"owned\n")],
            ),
            "which patch.toml does not list",
        ),
        (
            "write-through-base-link",
            rebuild(
                "through",
                &|t| {
                    add_entry(t, "add", "config/current.conf/evil", "file", None);
                    add_entry(t, "result", "config/current.conf/evil", "file", None);
                },
                &[("files/config/current.conf/evil", b"owned\n")],
            ),
            "goes through the link config/current.conf",
        ),
        (
            "dotdot-in-list",
            rebuild(
                "dotdot",
                &|t| {
                    t["delete"]
                        .as_array_mut()
                        .unwrap()
                        .push("../../decoy/passwd".into());
                },
                &[],
            ),
            "contains `..`",
        ),
    ];
    for (name, manifest, says) in cases {
        let i = Inst::new(&v, manifest.to_str().unwrap(), true, "");
        std::fs::write(
            i.root.join("molt.toml"),
            format!(
                "manifest_url = \"{}\"\nallow_unsigned = true\n",
                manifest.display()
            ),
        )
        .unwrap();
        let before = steps::package::tree(&i.root.join("releases/1.0.0")).unwrap();
        let out = i.molt(&["fetch"]);
        assert_eq!(out.status.code(), Some(4), "{name}: {}", text(&out));
        assert!(
            text(&out).contains("refused") && text(&out).contains(says),
            "{name} should say {says:?}: {}",
            text(&out)
        );
        assert!(
            !i.staged() && !i.root.join("releases/2.0.0.partial").exists(),
            "{name}"
        );
        assert_eq!(
            steps::package::tree(&i.root.join("releases/1.0.0")).unwrap(),
            before,
            "{name}: the base release changed"
        );
        decoy.untouched(name);
    }
}

/// `molt args` in `root` under `/usr/bin/time`: its output and its peak resident memory (KiB).
fn with_peak_rss(root: &Path, args: &[&str]) -> (Output, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "molt-peak-rss-kib %M", common::MOLT, "--root"])
        .arg(root)
        .args(args)
        .current_dir(root)
        .env_remove("MOLT_FAILPOINTS")
        .env("MOLT_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian's `time` package, installed by scripts/setup.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    let kib = err
        .lines()
        .filter_map(|l| l.strip_prefix("molt-peak-rss-kib "))
        .next_back()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {err}"));
    (out, kib)
}

#[test]
fn rollback_freeze_endless_drip_and_redirect_attacks_are_refused_with_memory_bounded() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, "");
    let manifest2 = std::fs::read(v.path("pub/manifest.json")).unwrap();
    let sig2 = std::fs::read(v.path("pub/manifest.json.minisig")).unwrap();
    // The installation sees sequence 2 (release 2.0.0, `molt pack` numbered them 1 and 2).
    let out = i.molt(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trust: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.root.join("trust.json")).unwrap()).unwrap();
    assert_eq!(trust["manifest_sequence"], 2, "{trust}");

    // 1. Rollback: a validly signed manifest with an older sequence (1.0.0's, re-signed).
    let mut old: serde_json::Value = serde_json::from_slice(&manifest2).unwrap();
    old["sequence"] = 1.into();
    old["version"] = "1.0.0".into();
    let resign = |value: &serde_json::Value| -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("manifest.json");
        std::fs::write(&m, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        let out = v.molt(&["sign", m.to_str().unwrap(), "--secret-key", "k.sec"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        (
            std::fs::read(&m).unwrap(),
            std::fs::read(dir.path().join("manifest.json.minisig")).unwrap(),
        )
    };
    let (m, sig) = resign(&old);
    s.put("/manifest.json", m, Fault::None);
    s.put("/manifest.json.minisig", sig, Fault::None);
    let out = i.molt(&["check"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("manifest sequence 1 (release 1.0.0) is older than sequence 2 (release 2.0.0) already trusted"),
        "{}",
        text(&out)
    );
    // A different manifest under the trusted sequence is refused too.
    let mut fork: serde_json::Value = serde_json::from_slice(&manifest2).unwrap();
    fork["notes"] = "same sequence, other bytes".into();
    let (m, sig) = resign(&fork);
    s.put("/manifest.json", m, Fault::None);
    s.put("/manifest.json.minisig", sig, Fault::None);
    let out = i.molt(&["check"]);
    assert!(text(&out).contains("may not share one"), "{}", text(&out));

    // 2. Freeze: a newer sequence that has expired.
    let mut frozen: serde_json::Value = serde_json::from_slice(&manifest2).unwrap();
    frozen["sequence"] = 3.into();
    frozen["expires"] = "2026-01-01T00:00:00Z".into();
    let (m, sig) = resign(&frozen);
    s.put("/manifest.json", m, Fault::None);
    s.put("/manifest.json.minisig", sig, Fault::None);
    let out = i.molt(&["fetch"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("manifest sequence 3 (release 2.0.0) expired at 2026-01-01T00:00:00Z"),
        "{}",
        text(&out)
    );
    assert!(!i.staged());
    let still: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.root.join("trust.json")).unwrap()).unwrap();
    assert_eq!(still, trust, "a refused manifest changed the trust");

    // 3. Endless bodies: the manifest, then the signature. Memory stays near a plain run's.
    let (out, baseline) = with_peak_rss(&i.root, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s.put("/manifest.json", manifest2.clone(), Fault::Endless);
    let (out, endless_manifest) = with_peak_rss(&i.root, &["check"]);
    assert!(
        text(&out).contains("is larger than 4194304 bytes"),
        "{}",
        text(&out)
    );
    s.put("/manifest.json", manifest2.clone(), Fault::None);
    s.put("/manifest.json.minisig", sig2.clone(), Fault::Endless);
    let (out, endless_sig) = with_peak_rss(&i.root, &["check"]);
    assert!(
        text(&out).contains("is larger than 4194304 bytes"),
        "{}",
        text(&out)
    );
    println!(
        "peak RSS: plain `molt status` {baseline} KiB, endless manifest {endless_manifest} KiB, endless signature {endless_sig} KiB"
    );
    for peak in [endless_manifest, endless_sig] {
        assert!(
            peak < baseline + 64 * 1024,
            "an endless body drove memory to {peak} KiB (a plain run takes {baseline} KiB)"
        );
    }

    // 4. A slow drip: one byte every 50 ms, cut by the metadata timeout.
    s.put("/manifest.json.minisig", sig2.clone(), Fault::None);
    s.put(
        "/manifest.json",
        manifest2.clone(),
        Fault::Drip(Duration::from_millis(50)),
    );
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n[download]\nmetadata_timeout_secs = 2\n",
            s.url("/manifest.json")
        ),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = i.molt(&["check"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("cannot fetch"), "{}", text(&out));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the drip held molt {:?}",
        t.elapsed()
    );

    // 5. Redirects: too many, and one that loops.
    s.put("/manifest.json", manifest2.clone(), Fault::None);
    for n in 0..7 {
        s.put(
            &format!("/r{n}"),
            Vec::new(),
            Fault::Redirect(s.url(&format!("/r{}", n + 1))),
        );
    }
    s.put("/r7", manifest2.clone(), Fault::None);
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\npublic_key = \"vendor.pub\"\n",
            s.url("/r0")
        ),
    )
    .unwrap();
    let out = i.molt(&["check"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("more than 5 redirects") || text(&out).contains("redirect"),
        "{}",
        text(&out)
    );
    assert!(!i.staged());
}

#[test]
fn an_installation_without_a_key_refuses_unsigned_manifests_unless_told() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, "");
    std::fs::write(
        i.root.join("molt.toml"),
        format!("manifest_url = \"{}\"\n", s.url("/manifest.json")),
    )
    .unwrap();
    let out = i.molt(&["check"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("allow_unsigned = true"),
        "{}",
        text(&out)
    );
    // A misspelt key is an error that names it, not a silently unsigned installation.
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\npublic-key = \"vendor.pub\"\n",
            s.url("/manifest.json")
        ),
    )
    .unwrap();
    for cmd in [&["check"][..], &["status"][..]] {
        let out = i.molt(cmd);
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains("unknown key `public-key`; did you mean `public_key`?"),
            "{}",
            text(&out)
        );
    }
    std::fs::write(
        i.root.join("molt.toml"),
        format!(
            "manifest_url = \"{}\"\nallow_unsigned = true\n",
            s.url("/manifest.json")
        ),
    )
    .unwrap();
    let out = i.molt(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The vendor's published directory, file for file, on `s` (again after a change).
fn publish(v: &Vendor, s: &Server) {
    for e in std::fs::read_dir(v.path("pub")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        s.put(
            &format!("/{name}"),
            std::fs::read(e.path()).unwrap(),
            Fault::None,
        );
    }
}

fn trusted_root_version(i: &Inst) -> u64 {
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(i.root.join("trust.json")).unwrap()).unwrap();
    t["root"]["version"].as_u64().unwrap()
}

#[test]
fn key_rotation_across_three_roots_and_the_roots_an_attacker_makes() {
    let v = Vendor::new();
    let ok = |out: &Output| assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let refused = |out: &Output, says: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", text(out));
        assert!(
            text(out).contains(says),
            "should say {says:?}: {}",
            text(out)
        );
    };
    for k in ["b", "c", "d"] {
        ok(&v.molt(&[
            "keygen",
            "--secret-key",
            &format!("{k}.sec"),
            "--public-key",
            &format!("{k}.pub"),
        ]));
    }
    let root = |keys: &[&str], signers: &[&str], expires: &str| {
        let mut args = vec!["root", "--out", "pub", "--product", "demo"];
        for k in keys {
            args.extend(["--key", k]);
        }
        for k in signers {
            args.extend(["--secret-key", k]);
        }
        args.extend(["--expires-in", expires]);
        v.molt(&args)
    };
    // Root 1 names the key the manifest was packed with; the operator pins it.
    ok(&root(&["k.pub"], &["k.sec"], "365days"));
    let s = v.serve(&Fault::None);
    let i = Inst::new(&v, &s.url("/manifest.json"), false, "");
    for f in ["1.root.json", "1.root.json.minisig"] {
        std::fs::copy(v.path("pub").join(f), i.root.join(format!("vendor-{f}"))).unwrap();
    }
    let toml = format!(
        "manifest_url = \"{}\"\nroot = \"vendor-1.root.json\"\n",
        s.url("/manifest.json")
    );
    std::fs::write(i.root.join("molt.toml"), &toml).unwrap();
    ok(&i.molt(&["check"]));
    assert_eq!(trusted_root_version(&i), 1);

    // The vendor tool refuses to publish a rotation signed by the new key alone.
    refused(&root(&["b.pub"], &["b.sec"], "365days"), "would refuse");
    assert!(!v.path("pub/2.root.json").exists());
    // Two rotations (root 2 expires on the way: only the newest root must be fresh), the
    // manifest re-signed by the third key; an installation that slept through both follows.
    ok(&root(&["b.pub"], &["k.sec", "b.sec"], "1s"));
    ok(&root(&["c.pub"], &["b.sec", "c.sec"], "365days"));
    ok(&v.molt(&["sign", "pub/manifest.json", "--secret-key", "c.sec"]));
    std::thread::sleep(Duration::from_millis(1500));
    publish(&v, &s);
    let out = i.molt(&["check"]);
    ok(&out);
    assert!(
        text(&out).contains("signature verified (vendor root version 3: 1 of its 1 keys must sign"),
        "{}",
        text(&out)
    );
    assert_eq!(trusted_root_version(&i), 3);
    let out = i.molt(&["status"]);
    assert!(
        text(&out).contains("trusted: manifest sequence 2 (2.0.0), vendor root version 3"),
        "{}",
        text(&out)
    );
    // The old key no longer signs manifests, even re-pinned by the file the operator has.
    ok(&v.molt(&["sign", "pub/manifest.json", "--secret-key", "k.sec"]));
    publish(&v, &s);
    refused(
        &i.molt(&["check"]),
        "signed by 0 of root version 3's keys; it needs 1",
    );
    ok(&v.molt(&["sign", "pub/manifest.json", "--secret-key", "c.sec"]));
    publish(&v, &s);
    ok(&i.molt(&["check"]));

    // An endless root document: cut at the cap, memory near a plain run's, trust unchanged.
    let (out, baseline) = with_peak_rss(&i.root, &["status"]);
    ok(&out);
    s.put("/4.root.json", Vec::new(), Fault::Endless);
    let (out, endless_root) = with_peak_rss(&i.root, &["check"]);
    refused(&out, "is larger than 4194304 bytes");
    println!("peak RSS: plain `molt status` {baseline} KiB, endless root {endless_root} KiB");
    assert!(
        endless_root < baseline + 64 * 1024,
        "an endless root drove memory to {endless_root} KiB"
    );
    assert_eq!(trusted_root_version(&i), 3);

    // An attacker's root 4, signed only by a key of its own: refused, trust stays at 3.
    let forged = |key: &str, expires: &str| {
        let pk = std::fs::read_to_string(v.path(key)).unwrap();
        let line = pk.lines().last().unwrap().to_string();
        let doc = serde_json::json!({"format": 1, "product": "demo", "version": 4,
            "expires": expires, "threshold": 1, "keys": [line]});
        std::fs::write(v.path("pub/4.root.json"), doc.to_string()).unwrap();
    };
    forged("d.pub", "2099-01-01T00:00:00Z");
    ok(&v.molt(&["sign", "pub/4.root.json", "--secret-key", "d.sec"]));
    publish(&v, &s);
    refused(
        &i.molt(&["check"]),
        "root version 4 is signed by 0 of root version 3's keys; it needs 1",
    );
    assert_eq!(trusted_root_version(&i), 3);
    // Root 4 signed by 3's key but not by its own: refused.
    ok(&v.molt(&["sign", "pub/4.root.json", "--secret-key", "c.sec"]));
    publish(&v, &s);
    refused(
        &i.molt(&["check"]),
        "root version 4 is signed by 0 of root version 4's keys",
    );
    // A properly rotated root 4 that has expired: a frozen vendor mirror is refused.
    forged("d.pub", "2026-01-01T00:00:00Z");
    ok(&v.molt(&[
        "sign",
        "pub/4.root.json",
        "--secret-key",
        "c.sec",
        "--secret-key",
        "d.sec",
    ]));
    publish(&v, &s);
    refused(&i.molt(&["check"]), "root version 4 expired at 2026-01-01");
    assert!(!i.staged());

    // A pinned root that was edited (or not signed by its own keys) is refused.
    let pinned = i.root.join("vendor-1.root.json");
    let edited = std::fs::read_to_string(&pinned)
        .unwrap()
        .replace("\"threshold\": 1", "\"threshold\":1");
    std::fs::write(&pinned, edited).unwrap();
    refused(
        &i.molt(&["check"]),
        "root version 1 is signed by 0 of root version 1's keys",
    );
    // root and public_key together are an error that says why.
    std::fs::write(
        i.root.join("molt.toml"),
        format!("{toml}public_key = \"vendor.pub\"\n"),
    )
    .unwrap();
    refused(&i.molt(&["check"]), "both `root` and `public_key`");
}

/// An unfinished fetch whose journal is damaged (sled's log truncated or emptied, its conf
/// garbage): `molt recover` salvages the records and ends with the release staged whole or
/// not at all; nothing partial is left.
#[test]
fn a_fetch_with_a_damaged_journal_is_salvaged_and_recovered() {
    let v = Vendor::new();
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("db truncated", |j| {
            let b = std::fs::read(j.join("db")).unwrap();
            std::fs::write(j.join("db"), &b[..b.len() / 2]).unwrap();
        }),
        ("db emptied", |j| std::fs::write(j.join("db"), b"").unwrap()),
        ("conf garbage", |j| {
            std::fs::write(j.join("conf"), b"\xff garbage").unwrap()
        }),
    ];
    for fp in [
        "steps::download::checkpoint=return",
        "steps::stage::unpack_entry=3*off->return",
        "steps::stage::before_rename=return",
    ] {
        for (what, damage) in &damages {
            let case = format!("{fp}, {what}");
            let s = v.serve(&Fault::None);
            let i = Inst::new(&v, &s.url("/manifest.json"), false, FAST);
            let out = molt_in(&i.root, Some(fp), &["fetch"]);
            assert!(aborted(&out), "{case}: {}", text(&out));
            damage(&i.root.join("journal"));
            let out = i.molt(&["status"]);
            assert_eq!(out.status.code(), Some(7), "{case}: {}", text(&out));
            let out = i.molt(&["recover"]);
            assert!(
                matches!(out.status.code(), Some(0 | 4)),
                "{case}: {}",
                text(&out)
            );
            assert!(text(&out).contains("salvaged"), "{case}: {}", text(&out));
            assert!(
                !i.root.join("releases/2.0.0.partial").exists(),
                "{case}: partial staging left"
            );
            if i.staged() {
                assert_tree(
                    &tree_of(&i.root.join("releases/2.0.0")),
                    &tree_of(&v.path("r2")),
                    &case,
                );
            }
            assert_eq!(i.molt(&["status"]).status.code(), Some(0), "{case}");
        }
    }
}

/// `molt upgrade --unattended` (what the upgrade timer runs) skips, with exit 0 and nothing
/// fetched, while held, outside the window, and when the offered release is outside the
/// pinned range; a pinned range that excludes the installed release and a `--to` the manifest
/// does not offer are errors, with nothing changed. Bad input for all of it is refused.
#[test]
fn unattended_upgrades_skip_while_held_outside_the_window_and_outside_the_pinned_range() {
    let v = Vendor::new();
    let s = v.serve(&Fault::None);
    let url = s.url("/manifest.json");
    let i = Inst::new(&v, &url, true, "");
    let config = |extra: &str| {
        std::fs::write(
            i.root.join("molt.toml"),
            format!("manifest_url = \"{url}\"\npublic_key = \"vendor.pub\"\n{extra}"),
        )
        .unwrap();
    };
    let unattended = |want: i32| -> serde_json::Value {
        let out = i.molt(&["--json", "upgrade", "--unattended"]);
        assert_eq!(out.status.code(), Some(want), "{}", text(&out));
        i.nothing_left();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let summary = |v: &serde_json::Value| v["summary"].as_str().unwrap_or("").to_string();

    // held: the reason is shown, by `schedule show` too
    let out = i.molt(&["hold", "--reason", "waiting for the vendor's fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = unattended(0);
    assert_eq!(r["action"], "skipped", "{r}");
    assert!(
        summary(&r).contains("held (waiting for the vendor's fix)"),
        "{r}"
    );
    for cmd in ["schedule show", "status"] {
        let out = i.molt(&cmd.split(' ').collect::<Vec<_>>());
        assert!(
            text(&out).contains("held (waiting"),
            "{cmd}: {}",
            text(&out)
        );
    }
    let out = i.molt(&["hold", "--reason", "two\nlines"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        i.root.join("hold.json").exists(),
        "the refused hold left the earlier one"
    );
    let out = i.molt(&["unhold"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!i.root.join("hold.json").exists());

    // outside the window: a window on a day two days from today (UTC)
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday();
    let other = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        [(today.to_monday_zero_offset() as usize + 2) % 7];
    config(&format!(
        "[schedule]\nupgrade_window = \"{other} 02:00-04:00\"\ntimezone = \"UTC\"\n"
    ));
    let r = unattended(0);
    assert!(
        summary(&r).contains(&format!(
            "outside the upgrade window \"{other} 02:00-04:00\""
        )),
        "{r}"
    );

    // the pinned range: the offered 2.0.0 is outside it
    config("[upgrade]\nversions = \">=1.0.0, <2.0.0\"\n");
    let r = unattended(0);
    assert!(
        summary(&r).contains("the vendor offers 2.0.0, outside the pinned range >=1.0.0, <2.0.0"),
        "{r}"
    );
    // a range that excludes what is installed is an error, not a silent skip
    config("[upgrade]\nversions = \">=1.5.0\"\n");
    let out = i.molt(&["upgrade", "--unattended"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("excludes the installed version 1.0.0"),
        "{}",
        text(&out)
    );
    i.nothing_left();
    // bad ranges are refused when molt.toml is read, by every command
    config("[upgrade]\nversions = \">=banana\"\n");
    let out = i.molt(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("[upgrade] versions"), "{}", text(&out));

    // --to: only that version
    config("");
    for (to, says) in [
        ("3.0.0", "the vendor's manifest offers 2.0.0, not 3.0.0"),
        ("banana", "--to \"banana\""),
    ] {
        let out = i.molt(&["upgrade", "--yes", "--to", to]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
        i.nothing_left();
    }
    // none of it started a run
    let out = i.molt(&["--json", "status"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["latest"], serde_json::Value::Null, "{st}");
}

/// A copy of this molt as the binary an operator runs, next to an installation whose
/// `[self_update]` reads molt's releases from `s`.
fn molt_copy(dir: &Path, v: &Vendor, s: &Server) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(MOLT, bin.join("molt")).unwrap();
    let root = dir.join("inst");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(v.path("k.pub"), root.join("molt.pub")).unwrap();
    std::fs::write(
        root.join("molt.toml"),
        format!(
            "[self_update]\nmanifest_url = \"{}\"\npublic_key = \"molt.pub\"\n",
            s.url("/molt/manifest.json")
        ),
    )
    .unwrap();
    (bin.join("molt"), root)
}

fn run_copy(exe: &Path, root: &Path, fp: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(exe);
    c.arg("--root")
        .arg(root)
        .args(args)
        .env("MOLT_LOG", "error");
    c.env_remove("MOLT_FAILPOINTS");
    if let Some(fp) = fp {
        c.env("MOLT_FAILPOINTS", fp);
    }
    c.output().unwrap()
}

/// Pack the release directory `rel` as `product` into `out`, and put every file of `out`
/// on `s` under `/molt/`, the bytes of packages changed by `tamper`.
fn pack_and_serve(v: &Vendor, s: &Server, rel: &str, out: &str, product: &str, tamper: bool) {
    let o = v.molt(&[
        "pack",
        rel,
        "--out",
        out,
        "--product",
        product,
        "--secret-key",
        "k.sec",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for e in std::fs::read_dir(v.path(out)).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut bytes = std::fs::read(e.path()).unwrap();
        if tamper && name.ends_with(".tar.zst") {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
        }
        s.put(&format!("/molt/{name}"), bytes, Fault::None);
    }
}

/// `molt self-update` replaces the running binary with molt's newest signed release: a
/// tampered package or a manifest for another product is refused with the binary untouched;
/// a crash at every point of the replacement leaves a molt that runs; `--rollback` brings
/// the kept one back; an older release is never installed.
#[test]
fn self_update_verifies_replaces_atomically_and_rolls_back_once() {
    let v = Vendor::new();
    // molt's release 99.0.0: a stand-in binary that answers --version as molt would
    let r = v.path("molt-99");
    write(&r, "release.toml", b"format = 1\nversion = \"99.0.0\"\n");
    write(&r, "bin/molt", b"#!/bin/sh\necho \"molt 99.0.0\"\n");
    let s = Server::start();
    let serve = |tamper: bool| pack_and_serve(&v, &s, "molt-99", "molt-pub", "molt", tamper);
    let dir = tempfile::tempdir().unwrap();
    let (exe, root) = molt_copy(dir.path(), &v, &s);
    let original = std::fs::read(&exe).unwrap();
    let version = |exe: &Path| {
        let out = Command::new(exe).arg("--version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mine = version(&exe);
    assert!(mine.starts_with("molt 0."), "{mine}");

    // tampered package bytes: refused by the download's sha256, the binary untouched
    serve(true);
    let out = run_copy(&exe, &root, None, &["self-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(std::fs::read(&exe).unwrap(), original);
    assert!(!dir.path().join("bin/molt.old").exists());
    std::fs::remove_dir_all(root.join("cache")).unwrap();

    // --check says what it would do and does nothing
    serve(false);
    let out = run_copy(&exe, &root, None, &["self-update", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("-> 99.0.0"), "{}", text(&out));
    assert_eq!(std::fs::read(&exe).unwrap(), original);

    // killed at every point of the replacement: a molt that runs is always at the path
    for point in [
        "steps::self_update::staged",
        "steps::self_update::old_kept",
        "steps::self_update::replaced",
    ] {
        let out = run_copy(
            &exe,
            &root,
            Some(&format!("{point}=return")),
            &["self-update"],
        );
        assert_ne!(out.status.code(), Some(0), "{point}: {}", text(&out));
        let now = version(&exe);
        assert!(now == mine || now == "molt 99.0.0", "{point}: {now}");
        if now == "molt 99.0.0" {
            // the crash came after the rename: put the original back for the next point
            std::fs::write(&exe, &original).unwrap();
        }
    }
    let out = run_copy(&exe, &root, None, &["--json", "self-update"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(version(&exe), "molt 99.0.0");
    assert_eq!(
        std::fs::read(dir.path().join("bin/molt.old")).unwrap(),
        original,
        "the old binary is kept"
    );
    // one rollback: the stand-in cannot run molt, so a second copy of this molt does it
    // for the path (`--binary`); the kept binary is refused as a target
    let tool = dir.path().join("tool-molt");
    std::fs::copy(MOLT, &tool).unwrap();
    let old = dir.path().join("bin/molt.old");
    let exe_arg = exe.to_str().unwrap();
    let out = run_copy(
        &tool,
        &root,
        None,
        &[
            "self-update",
            "--rollback",
            "--binary",
            old.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the kept earlier molt"),
        "{}",
        text(&out)
    );
    let out = run_copy(
        &tool,
        &root,
        None,
        &["self-update", "--rollback", "--binary", exe_arg],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&exe).unwrap(), original);
    assert_eq!(version(&exe), mine);
    let out = run_copy(&exe, &root, None, &["self-update", "--rollback"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "only one rollback: {}",
        text(&out)
    );

    // never downgraded, never another product's release, never unsigned
    pack_and_serve(&v, &s, "r1", "demo-pub", "demo", false);
    std::fs::remove_file(root.join("self-update-trust.json")).unwrap();
    let out = run_copy(&exe, &root, None, &["self-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("for product \"demo\", not molt"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&exe).unwrap(), original);
    let r = v.path("molt-old");
    write(&r, "release.toml", b"format = 1\nversion = \"0.0.1\"\n");
    write(&r, "bin/molt", b"#!/bin/sh\necho \"molt 0.0.1\"\n");
    pack_and_serve(&v, &s, "molt-old", "old-pub", "molt", false);
    std::fs::remove_file(root.join("self-update-trust.json")).unwrap();
    let out = run_copy(&exe, &root, None, &["self-update"]);
    assert_eq!(version(&exe), mine, "never downgraded: {}", text(&out));
    assert!(!text(&out).contains("is molt 0.0.1"), "{}", text(&out));
    std::fs::write(
        root.join("molt.toml"),
        "[self_update]\nmanifest_url = \"http://127.0.0.1:1/m.json\"\n",
    )
    .unwrap();
    let out = run_copy(&exe, &root, None, &["self-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("must be signed"), "{}", text(&out));
}
