//! The aarch64 `gpubox-init` the engine embeds for linux/arm64 images (issue 14) is a
//! working program: written out and run on this x86_64 machine through qemu-user
//! (binfmt_misc's `qemu-aarch64`), it answers `check` as the init of an image does.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use gpubox_testkit as testkit;

/// Whether the kernel hands aarch64 executables to qemu.
fn qemu_aarch64_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|entry| entry.lines().next() == Some("enabled"))
}

/// Runs the init with `args` and an environment of its own: no GPU variables, every
/// path it reads under the empty `root`.
fn run_init(init: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(init)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GPUBOX_INIT_ROOT", root)
        .output()
        .expect("could not run the aarch64 gpubox-init")
}

#[test]
fn the_embedded_arm64_init_runs_under_qemu() {
    let Some(init) = gpubox_build::init_binary::for_architecture("arm64") else {
        testkit::missing(
            "an aarch64 gpubox-init in gpubox-build (rustup target aarch64-unknown-linux-gnu, \
             gcc-aarch64-linux-gnu and libc6-dev-arm64-cross when it was built)",
        );
        return;
    };
    // An aarch64 machine runs it without qemu.
    let native = cfg!(target_arch = "aarch64");
    if !testkit::found("qemu-aarch64", native || qemu_aarch64_enabled()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpubox-init");
    std::fs::write(&path, init).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();

    let report = run_init(&path, &root, &["check", "--json"]);
    let stdout = String::from_utf8_lossy(&report.stdout);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert_eq!(
        report.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"));
    assert_eq!(report["gpuVisible"], false, "{report}");
    assert_eq!(report["driverVersion"], serde_json::Value::Null, "{report}");
    assert_eq!(
        report["requirement"]["met"],
        serde_json::Value::Null,
        "{report}"
    );

    let misuse = run_init(&path, &root, &["check", "--no-such-flag"]);
    assert_eq!(misuse.status.code(), Some(2), "{misuse:?}");
    assert!(
        String::from_utf8_lossy(&misuse.stderr).contains("usage: gpubox-init check [--json]"),
        "{misuse:?}"
    );
}
