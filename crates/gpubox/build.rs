//! Puts the source's git revision into `gpubox --version`: `GPUBOX_REVISION` when the
//! environment sets it (a Nix build, which has no `.git`), else `git describe` of the
//! checkout, marked `-dirty` when tracked files changed; nothing outside a checkout.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GPUBOX_REVISION");
    let git_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    for watched in ["HEAD", "index", "refs"] {
        let path = git_dir.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let revision = std::env::var("GPUBOX_REVISION").ok().or_else(|| {
        let out = Command::new("git")
            .args(["describe", "--always", "--dirty", "--abbrev=12"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let version = match revision.filter(|r| !r.is_empty()) {
        Some(revision) => format!("{} ({revision})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    println!("cargo:rustc-env=GPUBOX_LONG_VERSION={version}");
}
