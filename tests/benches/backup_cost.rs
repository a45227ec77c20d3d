//! Benchmark: backup costs as ratios against baselines run in the same process.
//!
//! 1. final sync of the data with 1% of the files changed vs a full copy of it (both made
//!    durable): target <= 10%.
//! 2. compressing a backup to tar.zst (molt) vs `tar -I 'zstd -T0 -3' -cf` on the same tree:
//!    speed ratio (target >= 1.0x) and size ratio.
//! 3. restoring from that archive (molt: staged, hashed, verified) vs `tar -I zstd -xf`.
//!
//! Run: `cargo bench -p tests --bench backup_cost [-- MiB]` (default 1024 MiB in 1 MiB files).

use engine::{RunId, Step, StepCtx};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use steps::backup::{compress::Compress, finalize::FinalSync, precopy::PreCopy, restore, Layout};

fn ctx(step: usize) -> StepCtx {
    StepCtx {
        run: RunId(1),
        step,
        attempt: 1,
    }
}

fn sync() {
    Command::new("sync").status().unwrap();
}

fn du(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir_in(std::env::var("MOLT_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let root = dir.path().join("inst");
    let data = root.join("shared/data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..mib {
        let sub = data.join(format!("d{:02}", i % 32));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:05}.bin")),
            tests::semi_random(i as u64, 1 << 20),
        )
        .unwrap();
    }
    sync();
    // Live data is mostly old: let its change times age past the final sync's racy window
    // (2 s), as in a real installation, or every file would be re-hashed.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    println!("backup_cost: {mib} MiB in {mib} files of 1 MiB");

    // 1. Full copy (pre-copy + making it durable) vs final sync with 1% changed.
    let layout = Layout::new(&root, "bench");
    let t = Instant::now();
    PreCopy {
        layout: layout.clone(),
        paths: vec!["shared".into()],
    }
    .apply(&ctx(0))
    .await
    .unwrap();
    sync();
    let full = t.elapsed().as_secs_f64();
    let changed = (mib / 100).max(1);
    for i in 0..changed {
        let p = data.join(format!(
            "d{:02}/f{:05}.bin",
            (i * 97) % mib % 32,
            (i * 97) % mib
        ));
        std::fs::write(p, tests::semi_random(10_000 + i as u64, 1 << 20)).unwrap();
    }
    sync();
    let t = Instant::now();
    let r = FinalSync {
        layout: layout.clone(),
    }
    .apply(&ctx(1))
    .await
    .unwrap();
    let final_sync = t.elapsed().as_secs_f64();
    let cp_dst = dir.path().join("cp");
    let cp = tests::timed(
        Command::new("cp")
            .arg("-a")
            .arg(root.join("shared"))
            .arg(&cp_dst),
    ) + {
        let t = Instant::now();
        sync();
        t.elapsed().as_secs_f64()
    };
    std::fs::remove_dir_all(&cp_dst).unwrap();
    println!("  full copy (molt pre-copy, hashed, + sync)  {full:>8.2} s");
    println!("  full copy (cp -a + sync)                   {cp:>8.2} s");
    println!(
        "  final sync, {} of {} files changed        {final_sync:>8.2} s",
        r.changed, mib
    );
    println!(
        "  ratio final sync / molt full copy = {:.1}%  (target <= 10%)",
        100.0 * final_sync / full
    );
    println!(
        "  ratio final sync / cp -a          = {:.1}%",
        100.0 * final_sync / cp
    );

    // 2. Compress: molt vs tar + zstd -T0 -3 on the same tree. Each side runs twice, in the
    // order molt, tar, tar, molt, from a synced page cache, and its best run counts: the
    // machine is shared, and whichever runs first or second must not decide the ratio.
    let c = Compress {
        layout: layout.clone(),
        level: 3,
    };
    // Keep data/ for the tar baseline: archive without removing it.
    let manifest = layout.read_manifest().unwrap().unwrap();
    let molt_archive = dir.path().join("molt.tar.zst");
    let tar_archive = dir.path().join("tar.tar.zst");
    let molt_compress = || {
        let _ = std::fs::remove_file(&molt_archive);
        sync();
        let t = Instant::now();
        // durable on return (fsynced)
        steps::backup::compress::write_archive(&layout.data(), &manifest.items, &molt_archive, 3)
            .unwrap();
        t.elapsed().as_secs_f64()
    };
    let tar_compress = || {
        let _ = std::fs::remove_file(&tar_archive);
        sync();
        let made = tests::timed(
            Command::new("tar")
                .arg("-I")
                .arg("zstd -T0 -3")
                .arg("-cf")
                .arg(&tar_archive)
                .arg("-C")
                .arg(layout.data())
                .arg("shared"),
        );
        let t = Instant::now();
        sync();
        (made, made + t.elapsed().as_secs_f64())
    };
    let m1 = molt_compress();
    let (t1, t1s) = tar_compress();
    let (t2, t2s) = tar_compress();
    let m2 = molt_compress();
    let (molt_time, tar_time, tar_synced) = (m1.min(m2), t1.min(t2), t1s.min(t2s));
    println!(
        "  compress (best of 2): molt {molt_time:.2} s (fsynced), tar -I 'zstd -T0 -3' {tar_time:.2} s ({tar_synced:.2} s with sync)"
    );
    println!(
        "  ratio speed molt / tar = {:.2}x  (target >= 1.0x; {:.2}x against tar + sync)",
        tar_time / molt_time,
        tar_synced / molt_time
    );
    println!(
        "  sizes: molt {} B, tar {} B, ratio {:.3}",
        du(&molt_archive),
        du(&tar_archive),
        du(&molt_archive) as f64 / du(&tar_archive) as f64
    );
    std::fs::remove_file(&molt_archive).unwrap();

    // 3. Restore from the archive: molt's verified staging vs plain extraction, both made
    // durable; molt, tar, tar, molt, best of each.
    c.apply(&ctx(2)).await.unwrap();
    let scratch = dir.path().join("scratch");
    let out = dir.path().join("untar");
    let mut molt_restore = f64::MAX;
    let mut tar_restore = f64::MAX;
    for side in ["molt", "tar", "tar", "molt"] {
        let _ = std::fs::remove_dir_all(steps::backup::restore::staging_dir(&root, "bench"));
        let _ = std::fs::remove_dir_all(&scratch);
        let _ = std::fs::remove_dir_all(&out);
        sync();
        if side == "molt" {
            let t = Instant::now();
            let stage = restore::Stage {
                layout: layout.clone(),
                scratch: scratch.clone(),
            };
            stage.apply(&ctx(0)).await.unwrap();
            molt_restore = molt_restore.min(t.elapsed().as_secs_f64());
        } else {
            std::fs::create_dir_all(&out).unwrap();
            let took = tests::timed(
                Command::new("tar")
                    .arg("-I")
                    .arg("zstd")
                    .arg("-xf")
                    .arg(&tar_archive)
                    .arg("-C")
                    .arg(&out),
            ) + {
                let t = Instant::now();
                sync();
                t.elapsed().as_secs_f64()
            };
            tar_restore = tar_restore.min(took);
        }
    }
    println!("  restore (best of 2): molt (hash-verified, synced) {molt_restore:.2} s, tar -I zstd -xf + sync {tar_restore:.2} s");
    println!(
        "  ratio speed molt / tar = {:.2}x  (target >= 1.0x)",
        tar_restore / molt_restore
    );
}
