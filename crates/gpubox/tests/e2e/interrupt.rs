//! An interrupted build leaves no partial output and no half-written cache
//! entry, and exits 128+signal.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// Every path under `dir` whose name marks an unfinished file.
fn partial_files(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(".gpubox-partial-"))
        })
        .collect()
}

#[test]
fn ctrl_c_during_a_build_removes_unfinished_files() {
    let work = tempdir();
    // Random bytes compress slowly enough to be interrupted mid-layer.
    let mut big = fs::File::create(work.path().join("big.bin")).unwrap();
    let mut urandom = fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut std::io::Read::take(&mut urandom, 48 << 20), &mut big).unwrap();
    big.flush().unwrap();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        "name = \"interrupted\"\ncopyToRoot = [{ src = \"big.bin\", dst = \"/big.bin\" }]\n",
    );
    let cache = work.path().join("cache");
    let mut child = gpubox(&cache)
        .arg("build")
        .arg(&spec)
        .args(["-o", "oci-archive:image.tar"])
        .current_dir(work.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer is being written, then interrupt.
    let started = Instant::now();
    while partial_files(&cache).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        partial_files(work.path()),
        Vec::<String>::new(),
        "unfinished files left behind"
    );
    assert!(!work.path().join("image.tar").exists());
}

#[test]
fn builds_killed_at_any_moment_leave_a_cache_that_gives_identical_results() {
    if !have("nix") {
        return;
    }
    let work = tempdir();
    let app = nix_fixture("app");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!("name = \"killed\"\nsystemPackages = [{}]\n", toml_str(&app)),
    );
    let shared_cache = work.path().join("shared-cache");
    // SIGKILL gives no chance to clean up: whatever is half-written stays.
    for (round, delay_ms) in [40u64, 90, 160, 260, 420, 700].into_iter().enumerate() {
        let mut child = gpubox(&shared_cache)
            .arg("build")
            .arg(&spec)
            .args(["-q", "-o", &format!("oci-archive:killed-{round}.tar")])
            .current_dir(work.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    let info = run_ok(gpubox(&shared_cache).args(["cache", "info", "--json"]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["brokenEntries"], 0,
        "a killed build left a visible broken entry: {info}"
    );

    let after_kills = run_ok(
        gpubox(&shared_cache)
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:after-kills.tar"])
            .current_dir(work.path()),
    );
    let clean = run_ok(
        gpubox(&work.path().join("clean-cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:clean.tar"])
            .current_dir(work.path()),
    );
    assert_eq!(
        stdout(&after_kills),
        stdout(&clean),
        "digests differ after killed builds"
    );
    let (a, b) = (
        fs::read(work.path().join("after-kills.tar")).unwrap(),
        fs::read(work.path().join("clean.tar")).unwrap(),
    );
    assert!(a == b, "the archive differs from a clean build's");
}
