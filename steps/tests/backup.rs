//! The backup steps in-process: changes made between the pre-copy and the final sync (edits,
//! additions, deletions, kind changes, same-size edits with the old mtime put back) all end up
//! in the backup, and the sealed backup equals the live tree.

use engine::{RunId, Step, StepCtx};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use steps::backup::digest::BLOCKS_PREFIX;
use steps::backup::finalize::FinalSync;
use steps::backup::precopy::PreCopy;
use steps::backup::tree::scan;
use steps::backup::{verify, Layout};

fn ctx(step: usize) -> StepCtx {
    StepCtx {
        run: RunId(1),
        step,
        attempt: 1,
    }
}

/// The pre-copy of `shared` into the backup.
async fn precopy(layout: &Layout) {
    PreCopy {
        layout: layout.clone(),
        paths: vec!["shared".into()],
    }
    .apply(&ctx(0))
    .await
    .unwrap();
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[tokio::test]
async fn changes_between_precopy_and_final_sync_all_reach_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "shared/keep.txt", b"unchanged");
    write(root, "shared/edit.txt", b"before");
    write(root, "shared/same-size.txt", b"aaaa");
    write(root, "shared/delete-me.txt", b"bye");
    write(root, "shared/gone/inner.txt", b"bye too");
    write(root, "shared/becomes-dir", b"file first");
    write(root, "shared/chmod.txt", b"mode");
    std::os::unix::fs::symlink("keep.txt", root.join("shared/link")).unwrap();
    let layout = Layout::new(root, "b1");
    let pre = PreCopy {
        layout: layout.clone(),
        paths: vec!["shared".into()],
    };
    pre.apply(&ctx(0)).await.unwrap();

    // The services keep writing while the pre-copy ran, until they are stopped.
    write(root, "shared/edit.txt", b"after, and longer");
    let same = root.join("shared/same-size.txt");
    let old_mtime = std::fs::metadata(&same).unwrap().modified().unwrap();
    write(root, "shared/same-size.txt", b"bbbb");
    std::fs::File::options()
        .write(true)
        .open(&same)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    std::fs::remove_file(root.join("shared/delete-me.txt")).unwrap();
    std::fs::remove_dir_all(root.join("shared/gone")).unwrap();
    std::fs::remove_file(root.join("shared/becomes-dir")).unwrap();
    write(root, "shared/becomes-dir/child", b"now a dir");
    write(root, "shared/added/new.txt", b"new");
    std::fs::set_permissions(
        root.join("shared/chmod.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(root.join("shared/link")).unwrap();
    std::os::unix::fs::symlink("edit.txt", root.join("shared/link")).unwrap();

    let fin = FinalSync {
        layout: layout.clone(),
    };
    let receipt = fin.apply(&ctx(1)).await.unwrap();
    assert!(receipt.changed >= 6, "{receipt:?}");
    assert!(receipt.removed >= 3, "{receipt:?}");
    // The manifest describes exactly the live tree...
    let manifest = layout.read_manifest().unwrap().unwrap();
    let live: Vec<_> = scan(root, &["shared".into()])
        .unwrap()
        .into_iter()
        .map(|s| s.item)
        .collect();
    let strip = |items: &[steps::backup::Item]| -> Vec<steps::backup::Item> {
        items
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.sha256 = None;
                i
            })
            .collect()
    };
    assert_eq!(strip(&manifest.items), strip(&live));
    // ...and the data matches the manifest byte for byte.
    assert_eq!(verify(root, "b1").unwrap(), Vec::<String>::new());
    let sha = |rel: &str| {
        manifest
            .items
            .iter()
            .find(|i| i.path == rel)
            .unwrap()
            .sha256
            .clone()
            .unwrap()
    };
    assert_eq!(
        sha("shared/same-size.txt"),
        steps::backup::tree::hash_file(&same).unwrap()
    );
    assert_eq!(
        std::fs::read(layout.data().join("shared/same-size.txt")).unwrap(),
        b"bbbb"
    );
    assert!(!layout.precopy().exists());

    // Idempotent: the step again changes nothing.
    let again = fin.apply(&ctx(1)).await.unwrap();
    assert_eq!(again.changed, 0);
    assert_eq!(layout.read_manifest().unwrap().unwrap(), manifest);

    // Undo of both steps removes the backup entirely.
    fin.undo(&ctx(1), None).await.unwrap();
    pre.undo(&ctx(0), None).await.unwrap();
    assert!(!layout.dir().exists());
}

/// A tree with one file of several blocks, pre-copied, then written in one block while the
/// services still run (a database's tablespace).
async fn big_file_changed_in_one_block() -> (tempfile::TempDir, Layout, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut big: Vec<u8> = (0..(4 << 20) + 1000).map(|i| (i % 239) as u8).collect();
    write(root, "shared/db/ibdata1", &big);
    write(root, "shared/small.txt", b"small");
    let layout = Layout::new(root, "b1");
    precopy(&layout).await;
    let record = std::fs::read_to_string(layout.precopy()).unwrap();
    let record: steps::backup::precopy::PreCopyRecord = serde_json::from_str(&record).unwrap();
    let seen = record
        .seen
        .iter()
        .find(|s| s.item.path == "shared/db/ibdata1")
        .unwrap();
    assert_eq!(
        seen.blocks.len(),
        5,
        "the pre-copy records each block's digest"
    );
    assert!(
        seen.item
            .sha256
            .as_deref()
            .unwrap()
            .starts_with(BLOCKS_PREFIX),
        "{:?}",
        seen.item.sha256
    );
    big[(2 << 20) + 7] ^= 0xff;
    write(root, "shared/db/ibdata1", &big);
    (dir, layout, big)
}

fn sealed_digest(layout: &Layout, rel: &str) -> String {
    let m = layout.read_manifest().unwrap().unwrap();
    let item = m.items.iter().find(|i| i.path == rel).unwrap();
    item.sha256.clone().unwrap()
}

/// The final sync hashes only the changed blocks of a large file (the others' digests come
/// from the pre-copy): the sealed digest is the file's, and the backup verifies. After an
/// interrupted final sync (which may have rewritten blocks of the copy), the recorded digests
/// no longer stand for the copy: the marker the first attempt left makes the re-run hash.
#[tokio::test]
async fn a_large_file_is_sealed_with_its_digest_even_after_an_interrupted_final_sync() {
    use steps::backup::digest::{digest_file, Scheme};
    let rel = "shared/db/ibdata1";
    // a final sync in one go
    let (dir, layout, big) = big_file_changed_in_one_block().await;
    let r = FinalSync {
        layout: layout.clone(),
    }
    .apply(&ctx(1))
    .await
    .unwrap();
    assert!(r.changed >= 1, "{r:?}");
    let file = dir.path().join(rel);
    assert_eq!(
        sealed_digest(&layout, rel),
        digest_file(&file, Scheme::Blocks).unwrap()
    );
    assert_eq!(verify(dir.path(), "b1").unwrap(), Vec::<String>::new());
    assert_eq!(std::fs::read(layout.data().join(rel)).unwrap(), big);
    assert!(
        !layout.sync_marker().exists(),
        "gone with the pre-copy record"
    );

    // A first attempt that wrote the changed block into the copy, then was killed: it had
    // left its marker first, so the re-run does not take the pre-copy's digest for that block.
    for marker in [true, false] {
        let (dir, layout, big) = big_file_changed_in_one_block().await;
        std::fs::write(layout.data().join(rel), &big).unwrap();
        if marker {
            std::fs::write(layout.sync_marker(), b"").unwrap();
        }
        FinalSync {
            layout: layout.clone(),
        }
        .apply(&ctx(1))
        .await
        .unwrap();
        let problems = verify(dir.path(), "b1").unwrap();
        if marker {
            assert_eq!(problems, Vec::<String>::new());
            assert_eq!(
                sealed_digest(&layout, rel),
                digest_file(&dir.path().join(rel), Scheme::Blocks).unwrap()
            );
        } else {
            // the control: without the marker the stale digest is taken, and verify sees it
            assert!(problems.iter().any(|p| p.contains(rel)), "{problems:?}");
        }
    }
}

/// A backup sealed by an older molt has plain SHA-256 digests for every file, large ones
/// included: it still verifies, compresses and verifies as an archive.
#[tokio::test]
async fn a_manifest_with_plain_digests_of_large_files_still_verifies_and_compresses() {
    use steps::backup::digest::{digest_file, Scheme};
    let (dir, layout, _) = big_file_changed_in_one_block().await;
    FinalSync {
        layout: layout.clone(),
    }
    .apply(&ctx(1))
    .await
    .unwrap();
    let mut m = layout.read_manifest().unwrap().unwrap();
    for item in m.items.iter_mut().filter(|i| i.sha256.is_some()) {
        item.sha256 = Some(digest_file(&layout.data().join(&item.path), Scheme::Plain).unwrap());
    }
    std::fs::write(layout.manifest(), serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(verify(dir.path(), "b1").unwrap(), Vec::<String>::new());
    let archive = dir.path().join("a.tar.zst");
    steps::backup::compress::write_archive(&layout.data(), &m.items, &archive, 3).unwrap();
    assert_eq!(
        steps::backup::compress::verify_archive(&archive, &m).unwrap(),
        Vec::<String>::new()
    );
    // and a digest that is wrong is still found wrong
    let big = m
        .items
        .iter_mut()
        .find(|i| i.path.ends_with("ibdata1"))
        .unwrap();
    big.sha256 = Some(format!(
        "{}{}",
        steps::backup::digest::BLOCKS_PREFIX,
        "0".repeat(64)
    ));
    assert_eq!(
        steps::backup::compress::verify_archive(&archive, &m)
            .unwrap()
            .len(),
        1
    );
}

/// The archive's entries, whatever their path length or size, come back whole: through
/// molt's restore and through any tar and zstd (a long path takes tar's extension header;
/// a file crossing the archive's 8 MiB chunks is read straight into them).
#[tokio::test]
async fn an_archive_holds_long_paths_odd_sizes_and_chunk_crossing_files() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let long = format!("shared/{}/{}.txt", "d".repeat(80), "f".repeat(90));
    let big: Vec<u8> = (0..(8 << 20) + 4097u32).map(|i| (i % 251) as u8).collect();
    write(root, &long, b"deep");
    write(root, "shared/empty", b"");
    write(root, "shared/odd", &[7u8; 513]);
    write(root, "shared/big.bin", &big);
    std::os::unix::fs::symlink("odd", root.join("shared/link")).unwrap();
    let layout = Layout::new(root, "b1");
    precopy(&layout).await;
    FinalSync {
        layout: layout.clone(),
    }
    .apply(&ctx(1))
    .await
    .unwrap();
    let m = layout.read_manifest().unwrap().unwrap();
    let archive = root.join("a.tar.zst");
    steps::backup::compress::write_archive(&layout.data(), &m.items, &archive, 3).unwrap();
    assert_eq!(
        steps::backup::compress::verify_archive(&archive, &m).unwrap(),
        Vec::<String>::new()
    );
    // zstd's streaming decoder and the tar crate, as `tar -I zstd -xf` would read it
    let mut ar = tar::Archive::new(
        zstd::stream::read::Decoder::new(std::fs::File::open(&archive).unwrap()).unwrap(),
    );
    let mut seen = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        seen.insert(path, bytes);
    }
    assert_eq!(seen[&long], b"deep");
    assert_eq!(seen["shared/empty"], b"");
    assert_eq!(seen["shared/odd"], vec![7u8; 513]);
    assert!(seen["shared/big.bin"] == big);
    assert_eq!(seen.len(), m.items.len());
}
