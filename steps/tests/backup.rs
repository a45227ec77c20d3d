//! The backup steps in-process: changes made between the pre-copy and the final sync (edits,
//! additions, deletions, kind changes, same-size edits with the old mtime put back) all end up
//! in the backup, and the sealed backup equals the live tree.

use engine::{RunId, Step, StepCtx};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
