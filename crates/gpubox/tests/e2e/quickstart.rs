//! The README's quick start: the bundled example builds with nothing but gpubox
//! (hostBinaries and copyToRoot, no Nix) and runs where podman or docker is.

use std::process::Command;

use super::common::*;

#[test]
fn bundled_example_builds_and_runs() {
    let work = tempdir();
    let spec = repo_root().join("examples/hello/gpubox.toml");
    let archive = work.path().join("hello.tar");
    // No Nix on PATH: the example must not need it.
    run_ok(
        gpubox(&work.path().join("cache"))
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("NIX_CONF_DIR", "/nonexistent")
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let report = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("inspect")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let report = stdout(&report);
    assert!(
        report.contains("GREETING=hello from a gpubox image"),
        "{report}"
    );
    assert!(report.contains("/bin/gpubox-init"), "{report}");

    if have("podman") {
        run_ok(
            gpubox(&work.path().join("cache"))
                .arg("build")
                .arg(&spec)
                .args(["-q", "-o", "podman:gpubox-hello-e2e:latest"]),
        );
        let out = run_ok(Command::new("podman").args([
            "run",
            "--rm",
            "--network",
            "none",
            "gpubox-hello-e2e:latest",
        ]));
        let out = stdout(&out);
        assert!(out.contains("hello from a gpubox image"), "{out}");
        assert!(
            out.contains("running as PID") && out.contains("under gpubox-init"),
            "{out}"
        );
        assert!(out.contains("hello.sh"), "{out}");
        let _ = Command::new("podman")
            .args(["rmi", "-f", "gpubox-hello-e2e:latest"])
            .output();
    }
}

/// examples/nix: a program packaged with Nix (default.nix, built by the real
/// nix-build), found on PATH through /usr/local/bin, its `#!` interpreter from the
/// store; run in podman.
#[test]
fn nix_example_builds_and_runs() {
    if !have("nix") || !have("podman") {
        return;
    }
    let work = tempdir();
    let spec = repo_root().join("examples/nix/gpubox.toml");
    let (log, said) = build_and_run_in_podman(
        &work.path().join("cache"),
        &spec,
        "gpubox-nix-example-e2e:latest",
        &[],
        &[],
    );
    assert!(
        log.contains("closure: 2 store paths"),
        "greet and its shell: {log}"
    );
    assert_eq!(
        said,
        "hello from a Nix-built script\nkernel: Linux, args: 2\n"
    );
}
