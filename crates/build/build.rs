//! Builds `gpubox-init` as a static executable and hands its path to the engine,
//! which embeds it: one `gpubox` binary carries the PID 1 it puts into every image, so
//! a user never has to find, build or match a separate init.
//!
//! Two inits are built where the toolchain allows (issue 14, multi-platform images):
//! - the one for the target `gpubox` itself is built for, always (a failure fails the
//!   build); `GPUBOX_INIT_BINARY` names it;
//! - the one for the other architecture of the pair x86_64 / aarch64 (linux/amd64 and
//!   linux/arm64 images), when its Rust target is installed
//!   (`rustup target add ...`) and a cross linker (`aarch64-linux-gnu-gcc`,
//!   `x86_64-linux-gnu-gcc`, or `CARGO_TARGET_<TRIPLE>_LINKER`) is found. Without
//!   them the build goes on with a warning saying what to install, and images for that
//!   platform are refused; under `CI=true` it is a build failure instead.
//!
//! Each built init is passed as `GPUBOX_INIT_X86_64` / `GPUBOX_INIT_AARCH64` with the
//! cfg `gpubox_init_x86_64` / `gpubox_init_aarch64` (`src/init_binary.rs` embeds them).
//!
//! Each init is built by a nested `cargo build` into its own target folder (so it
//! never waits on the outer build's lock, and the two build side by side) with
//! `-C target-feature=+crt-static` passed only to that build: the flag breaks
//! proc-macro crates when applied to the whole workspace.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The targets images are built for: Rust's triple, the cfg/env suffix, the Debian
/// cross linker and the Debian packages that hold it with its static C library.
struct Platform {
    triple: &'static str,
    suffix: &'static str,
    linker: &'static str,
    packages: &'static str,
}

const PLATFORMS: [Platform; 2] = [
    Platform {
        triple: "x86_64-unknown-linux-gnu",
        suffix: "x86_64",
        linker: "x86_64-linux-gnu-gcc",
        packages: "gcc-x86-64-linux-gnu libc6-dev-amd64-cross",
    },
    Platform {
        triple: "aarch64-unknown-linux-gnu",
        suffix: "aarch64",
        linker: "aarch64-linux-gnu-gcc",
        packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    },
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let host = env::var("HOST").expect("cargo sets HOST");
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let ci = env::var("CI").as_deref() == Ok("true");

    // The init and the workspace crates it is built from: a change to any of them
    // must rebuild the embedded inits. Their crates.io dependencies change only with
    // the workspace's Cargo.toml or Cargo.lock.
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
    println!("cargo:rerun-if-env-changed=CI");
    for platform in &PLATFORMS {
        println!(
            "cargo::rustc-check-cfg=cfg(gpubox_init_{})",
            platform.suffix
        );
        println!(
            "cargo:rerun-if-env-changed={}",
            linker_variable(platform.triple)
        );
    }

    // Before the inits had a folder each, the target's was built into `init-target`.
    let _ = std::fs::remove_dir_all(out_dir.join("init-target"));

    // The other platform's init, when this toolchain can build it: in a thread of its
    // own, its output kept to be shown if it fails, while the target's builds here.
    let other = if PLATFORMS.iter().any(|platform| platform.triple == target) {
        PLATFORMS.iter().find(|platform| platform.triple != target)
    } else {
        None
    };
    let other_build = other.and_then(|platform| match cross_toolchain(platform, &host) {
        Ok(linker) => {
            let command = init_build(&workspace, &out_dir, platform.triple, linker);
            Some((platform, std::thread::spawn(move || run_captured(command))))
        }
        Err(missing) => {
            let message = format!(
                "gpubox-init cannot be built for {} here: {missing}; gpubox will refuse \
                     to build {} images. Install what it needs with {} (or, as root, \
                     `./scripts/install-test-deps`), then build again",
                platform.triple,
                oci_platform(platform),
                install_hint(platform)
            );
            if ci {
                panic!("{message} (CI=true: every platform's init must be built)");
            }
            println!("cargo:warning={message}");
            None
        }
    });

    let status = init_build(&workspace, &out_dir, &target, None)
        .status()
        .expect("could not run cargo to build gpubox-init");
    assert!(
        status.success(),
        "building the static gpubox-init failed (see the output above)"
    );
    let init = built_init(&out_dir, &target);
    println!("cargo:rustc-env=GPUBOX_INIT_BINARY={}", init.display());
    if let Some(platform) = PLATFORMS.iter().find(|p| p.suffix == target_arch) {
        embed(platform, &init);
    }

    if let Some((platform, build)) = other_build {
        let output = build
            .join()
            .expect("the thread building the other platform's gpubox-init panicked");
        match output {
            Ok(output) if output.status.success() => {
                embed(platform, &built_init(&out_dir, platform.triple))
            }
            failed => {
                let why = match failed {
                    Ok(output) => tail(&output),
                    Err(error) => format!("cargo could not be run: {error}"),
                };
                let message = format!(
                    "building gpubox-init for {} failed; gpubox will refuse to build {} images \
                     (it needs {}). The build said:\n{why}",
                    platform.triple,
                    oci_platform(platform),
                    install_hint(platform)
                );
                if ci {
                    panic!("{message}");
                }
                for line in message.lines() {
                    println!("cargo:warning={line}");
                }
            }
        }
    }
}

/// The nested `cargo build` of the static init for `triple`, into a target folder of
/// its own; `linker` is set for it when given.
fn init_build(workspace: &Path, out_dir: &Path, triple: &str, linker: Option<OsString>) -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--package",
            "gpubox-init",
            "--bin",
            "gpubox-init",
            "--target",
            triple,
        ])
        .arg("--target-dir")
        .arg(target_dir(out_dir, triple))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\x1f-Cstrip=symbols",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if let Some(linker) = linker {
        command.env(linker_variable(triple), linker);
    }
    command
}

fn target_dir(out_dir: &Path, triple: &str) -> PathBuf {
    out_dir.join(format!("init-{triple}"))
}

fn built_init(out_dir: &Path, triple: &str) -> PathBuf {
    target_dir(out_dir, triple)
        .join(triple)
        .join("release")
        .join("gpubox-init")
}

fn embed(platform: &Platform, init: &Path) {
    let suffix = platform.suffix;
    println!(
        "cargo:rustc-env=GPUBOX_INIT_{}={}",
        suffix.to_uppercase(),
        init.display()
    );
    println!("cargo:rustc-cfg=gpubox_init_{suffix}");
}

/// Whether `platform`'s init can be built here: `Ok` with the linker to set (`None`
/// when cargo's own choice is right), or what is missing.
fn cross_toolchain(platform: &Platform, host: &str) -> Result<Option<OsString>, String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let Some(sysroot) = sysroot else {
        return Err(format!(
            "`{} --print sysroot` did not answer",
            rustc.to_string_lossy()
        ));
    };
    let rustlib = sysroot.join("lib/rustlib");
    if !rustlib.join(platform.triple).join("lib").is_dir() {
        // The target's own folder does not exist yet, and a missing path would rerun
        // this script on every build: its parent changes when rustup adds a target.
        println!("cargo:rerun-if-changed={}", rustlib.display());
        return Err(format!(
            "its Rust standard library is not installed (no {})",
            rustlib.join(platform.triple).display()
        ));
    }
    if platform.triple == host {
        return Ok(None);
    }
    if env::var_os(linker_variable(platform.triple)).is_some() {
        // The user's own linker, which the nested build inherits.
        return Ok(None);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let Some(linker) = env::split_paths(&path)
        .map(|dir| dir.join(platform.linker))
        .find(|candidate| candidate.is_file())
    else {
        // Installing the linker later adds it to one of these folders.
        println!("cargo:rerun-if-env-changed=PATH");
        for dir in env::split_paths(&path).filter(|dir| dir.is_absolute() && dir.is_dir()) {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        return Err(format!("no cross linker `{}` on PATH", platform.linker));
    };
    // A static init needs the target's static C library, which Debian packages
    // apart from the compiler: the compiler names its full path only when it has it.
    let libc = Command::new(&linker)
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match libc {
        Some(libc) if Path::new(&libc).is_absolute() => Ok(Some(linker.into_os_string())),
        _ => {
            // Debian's cross C library goes to /usr/<triplet>/lib.
            let cross_root = Path::new("/usr").join(platform.linker.trim_end_matches("-gcc"));
            if cross_root.is_dir() {
                println!("cargo:rerun-if-changed={}", cross_root.display());
            }
            Err(format!(
                "`{}` has no static C library (libc.a)",
                linker.display()
            ))
        }
    }
}

fn run_captured(mut command: Command) -> std::io::Result<Output> {
    command.output()
}

/// The last lines of a failed build's output.
fn tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn linker_variable(triple: &str) -> String {
    format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    )
}

fn oci_platform(platform: &Platform) -> &'static str {
    match platform.suffix {
        "x86_64" => "linux/amd64",
        _ => "linux/arm64",
    }
}

fn install_hint(platform: &Platform) -> String {
    format!(
        "`rustup target add {}` and `apt-get install {}`",
        platform.triple, platform.packages
    )
}
