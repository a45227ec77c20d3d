//! Benchmark: packages and downloads as ratios against baselines in the same run.
//!
//! 1. pack a release (default 1 GiB) into a full package: molt vs `tar -I 'zstd -T0' -cf`
//!    (speed ratio, target >= 1.0x, and size ratio);
//! 2. unpack it: molt's checked unpack vs `tar -I zstd -xf`;
//! 3. download it from a local HTTP server: molt (streamed sha256, resumable, fsynced) vs
//!    `curl -o` (target >= 0.9x);
//! 4. the size of a patch for a release that changes one image and a few files vs the full
//!    package.
//!
//! Run: `cargo bench -p tests --bench release_cost [-- MiB]`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use steps::http::{download, Fetch};
use steps::package::{pack_full, pack_patch, unpack};

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir_in(std::env::var("MOLT_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let rel = dir.path().join("r1");
    std::fs::create_dir_all(rel.join("images")).unwrap();
    std::fs::create_dir_all(rel.join("config")).unwrap();
    std::fs::write(
        rel.join("release.toml"),
        "format = 1\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let images = 16;
    let per = (mib << 20) / images;
    for i in 0..images {
        std::fs::write(
            rel.join(format!("images/img{i:02}.tar")),
            tests::semi_random(i as u64, per),
        )
        .unwrap();
    }
    for i in 0..50 {
        std::fs::write(
            rel.join(format!("config/c{i}.conf")),
            format!("key{i}=value\n"),
        )
        .unwrap();
    }
    Command::new("sync").status().unwrap();
    println!("release_cost: a {mib} MiB release ({images} images, 50 config files)");

    // 1. pack
    let molt_pkg = dir.path().join("molt.tar.zst");
    let t = Instant::now();
    let packed = pack_full(&rel, &molt_pkg, 3).unwrap();
    let molt_pack = t.elapsed().as_secs_f64();
    let tar_pkg = dir.path().join("tar.tar.zst");
    let tar_pack = tests::timed(
        Command::new("tar")
            .args(["-I", "zstd -T0", "-cf"])
            .arg(&tar_pkg)
            .arg("-C")
            .arg(&rel)
            .arg("."),
    );
    println!("  pack: molt {molt_pack:.2} s, tar -I 'zstd -T0' {tar_pack:.2} s, ratio speed {:.2}x (target >= 1.0x)", tar_pack / molt_pack);
    println!(
        "  sizes: molt {} B, tar {} B, ratio {:.3}",
        packed.size,
        size(&tar_pkg),
        packed.size as f64 / size(&tar_pkg) as f64
    );

    // 2. unpack
    Command::new("sync").status().unwrap();
    let t = Instant::now();
    let dest = steps::beneath::Beneath::create(&dir.path().join("u-molt")).unwrap();
    unpack(
        &molt_pkg,
        &dest,
        &|p: &Path| Ok(Some(p.to_path_buf())),
        false,
        packed.installed_size,
    )
    .unwrap();
    let molt_unpack = t.elapsed().as_secs_f64();
    // The same archive through the tar crate's own unpack: no link, size or mode guard.
    Command::new("sync").status().unwrap();
    let t = Instant::now();
    tar::Archive::new(
        zstd::stream::read::Decoder::new(std::fs::File::open(&molt_pkg).unwrap()).unwrap(),
    )
    .unpack(dir.path().join("u-plain"))
    .unwrap();
    let plain_unpack = t.elapsed().as_secs_f64();
    println!(
        "  unpack: hardened molt {molt_unpack:.2} s, unguarded (tar crate) {plain_unpack:.2} s, ratio time {:.2}x (target <= 1.1x)",
        molt_unpack / plain_unpack
    );
    std::fs::remove_dir_all(dir.path().join("u-plain")).unwrap();
    std::fs::create_dir_all(dir.path().join("u-tar")).unwrap();
    let tar_unpack = tests::timed(
        Command::new("tar")
            .args(["-I", "zstd", "-xf"])
            .arg(&tar_pkg)
            .arg("-C")
            .arg(dir.path().join("u-tar")),
    );
    println!("  unpack: molt {molt_unpack:.2} s, tar -I zstd -xf {tar_unpack:.2} s, ratio speed {:.2}x (target >= 1.0x)", tar_unpack / molt_unpack);
    std::fs::remove_dir_all(dir.path().join("u-molt")).unwrap();
    std::fs::remove_dir_all(dir.path().join("u-tar")).unwrap();

    // 3. download from a local server
    let server = tests::http::Server::start();
    server.put(
        "/p.tar.zst",
        std::fs::read(&molt_pkg).unwrap(),
        tests::http::Fault::None,
    );
    let url = server.url("/p.tar.zst");
    let (mut molt_t, mut curl_t, mut curl_sha_t) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let dest = dir.path().join(format!("dl{round}.tar.zst"));
        let t = Instant::now();
        download(
            &Fetch::new(&url, &dest, packed.size, &packed.sha256),
            &steps::report::Progress::silent(),
        )
        .await
        .unwrap();
        molt_t.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&dest).unwrap();
        let out = dir.path().join(format!("curl{round}"));
        curl_t.push(tests::timed(
            Command::new("curl").args(["-s", "-o"]).arg(&out).arg(&url),
        ));
        std::fs::remove_file(&out).unwrap();
        // curl with the verification molt does: every byte through sha256 on the way to disk.
        curl_sha_t.push(tests::timed(Command::new("sh").arg("-c").arg(format!(
            "curl -s '{url}' | tee '{}' | sha256sum >/dev/null",
            out.display()
        ))));
        std::fs::remove_file(&out).unwrap();
    }
    for v in [&mut molt_t, &mut curl_t, &mut curl_sha_t] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let (m, c, cs) = (molt_t[1], curl_t[1], curl_sha_t[1]);
    let mb = packed.size as f64 / 1e6;
    println!(
        "  download: molt {:.0} MB/s, curl {:.0} MB/s, ratio {:.2}x (target >= 0.9x; molt also hashes every byte)",
        mb / m,
        mb / c,
        c / m
    );
    println!(
        "  download: curl | tee | sha256sum {:.0} MB/s, ratio molt / that {:.2}x",
        mb / cs,
        cs / m
    );

    // 4. patch size: one image and a few files change
    let r2 = dir.path().join("r2");
    steps::fsutil::copy_tree(&rel, &r2, &mut |_| {}).unwrap();
    std::fs::write(r2.join("release.toml"), "format = 1\nversion = \"2.0.0\"\n").unwrap();
    std::fs::write(r2.join("images/img03.tar"), tests::semi_random(99, per)).unwrap();
    for i in 0..3 {
        std::fs::write(
            r2.join(format!("config/c{i}.conf")),
            format!("key{i}=changed\n"),
        )
        .unwrap();
    }
    let full2 = pack_full(&r2, &dir.path().join("full2.tar.zst"), 3).unwrap();
    let patch = pack_patch(
        &rel,
        &r2,
        "1.0.0",
        "2.0.0",
        &dir.path().join("patch.tar.zst"),
        3,
    )
    .unwrap();
    println!(
        "  patch (1 of {images} images + 3 files changed): {} B vs full {} B, ratio {:.3}",
        patch.size,
        full2.size,
        patch.size as f64 / full2.size as f64
    );
}
