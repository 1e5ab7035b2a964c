//! Builds `gpubox-init` as a static executable and hands its path to the engine,
//! which embeds it: one `gpubox` binary carries the PID 1 it puts into every image, so
//! a user never has to find, build or match a separate init.
//!
//! The init is built by a nested `cargo build` into its own target folder (so it
//! never waits on the outer build's lock) with `-C target-feature=+crt-static`
//! passed only to that build: the flag breaks proc-macro crates when applied to the
//! whole workspace.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let init_target_dir = out_dir.join("init-target");

    // The init and the workspace crates it is built from: a change to any of them
    // must rebuild the embedded init. Its crates.io dependencies change only with the
    // workspace's Cargo.toml or Cargo.lock.
    for watched in [
        "../init/src",
        "../init/Cargo.toml",
        "../initplan/src",
        "../initplan/Cargo.toml",
        "../cuda/src",
        "../cuda/Cargo.toml",
        "../atomic/src",
        "../atomic/Cargo.toml",
        "../../Cargo.toml",
        "../../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }

    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--package",
            "gpubox-init",
            "--bin",
            "gpubox-init",
            "--target",
        ])
        .arg(&target)
        .arg("--target-dir")
        .arg(&init_target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\x1f-Cstrip=symbols",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("could not run cargo to build gpubox-init");
    assert!(
        status.success(),
        "building the static gpubox-init failed (see the output above)"
    );

    let init = init_target_dir
        .join(&target)
        .join("release")
        .join("gpubox-init");
    println!("cargo:rustc-env=GPUBOX_INIT_BINARY={}", init.display());
}
