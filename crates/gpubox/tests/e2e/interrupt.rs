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
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".gpubox-partial-") {
                found.push(entry.path().display().to_string());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    found
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
