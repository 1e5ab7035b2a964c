//! `gpubox run` on a machine without a GPU (this one): a dry run prints the
//! command, an image built without CUDA or `--no-gpu` runs, and the engine's own
//! arguments pass through.

use std::process::Command;

use super::common::*;

/// A running image that prints `FOO`, the hostname and a marker, then waits, built
/// with `cuda.enable = false` into podman as `image`.
fn build_plain_image(work: &std::path::Path, image: &str) {
    let spec = write_spec(
        work,
        "gpubox.toml",
        &format!(
            "name = \"{}\"\ncuda.enable = false\nhostBinaries = [\"/bin/sh\", \"/bin/cat\", \"/bin/sleep\"]\ncmd = [\"/bin/sh\", \"-c\", \"echo FOO=$FOO host=$(cat /etc/hostname); sleep ${{PAUSE:-0}}\"]\n",
            image.split(':').next().unwrap()
        ),
    );
    run_ok(gpubox(&work.join("cache")).arg("build").arg(&spec).args([
        "-q",
        "-o",
        &format!("podman:{image}"),
    ]));
}

#[test]
fn a_dry_run_prints_the_command_where_there_is_no_gpu() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    // An empty driver root: no NVIDIA driver, as on a laptop.
    let host = work.path().join("no-driver");
    std::fs::create_dir_all(&host).unwrap();
    let out = run_ok(
        gpubox(&work.path().join("cache"))
            .args(["run", "--dry-run", "--driver-root"])
            .arg(&host)
            .args([
                "--env",
                "A=1",
                "--name",
                "box",
                "-v",
                "/data:/data",
                "--engine-arg=--shm-size=1g",
            ])
            .args([
                "podman:gpubox-e2e-not-built:v1",
                "--",
                "python3",
                "-c",
                "print(1)",
            ]),
    );
    assert_eq!(
        stdout(&out).trim(),
        "podman run --rm --publish-all --name box --volume /data:/data --env A=1 --shm-size=1g gpubox-e2e-not-built:v1 python3 -c 'print(1)'"
    );
    let why = unwrapped(&String::from_utf8_lossy(&out.stderr));
    assert!(
        why.contains(
            "running without a GPU: no container engine here can give a container the GPU"
        ),
        "{why}"
    );
    assert!(why.contains("no NVIDIA driver found"), "{why}");
}

#[test]
fn an_image_without_cuda_runs_with_the_engine_arguments_given() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let image = "gpubox-e2e-plain:v1";
    build_plain_image(work.path(), image);
    let name = "gpubox-e2e-plain-run";
    let _ = Command::new("podman").args(["rm", "-f", name]).output();
    // No GPU flags, no error: the image asks for no GPU.
    let started = run_ok(
        gpubox(&work.path().join("cache"))
            .args(["run", "--detach", "--network", "none", "--name", name])
            .args([
                "--env",
                "FOO=bar",
                "--env",
                "PAUSE=30",
                "--engine-arg=--hostname=boxy",
            ])
            .arg(format!("podman:{image}")),
    );
    let id = stdout(&started).trim().to_owned();
    assert_eq!(id.len(), 64, "podman prints the container id: {id}");
    let why = String::from_utf8_lossy(&started.stderr);
    assert!(why.contains("does not ask for a GPU"), "{why}");
    let mut logs = String::new();
    for _ in 0..50 {
        logs = stdout(&run_ok(Command::new("podman").args(["logs", name])));
        if logs.contains("FOO=") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("podman")
        .args(["rm", "-f", "-t", "0", name])
        .output();
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    assert!(logs.contains("FOO=bar host=boxy"), "{logs}");
}

#[test]
fn no_gpu_runs_an_image_that_asks_for_one() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    run_ok(build_example_to(&cache, "podman:gpubox-e2e-nogpu:v1").arg("-q"));
    let host = work.path().join("no-driver");
    std::fs::create_dir_all(&host).unwrap();
    let run = |extra: &[&str]| {
        let mut command = gpubox(&cache);
        command
            .args(["run", "--network", "none", "--driver-root"])
            .arg(&host)
            .args(extra)
            .arg("gpubox-e2e-nogpu:v1");
        command
    };
    // Without the flag it refuses, naming the way out.
    let err = unwrapped(&run_fails(&mut run(&[])));
    assert!(err.contains("pass --no-gpu"), "{err}");
    let out = run_ok(&mut run(&["--no-gpu"]));
    let _ = Command::new("podman")
        .args(["rmi", "-f", "gpubox-e2e-nogpu:v1"])
        .output();
    assert!(
        stdout(&out).contains("hello from a gpubox image"),
        "{}",
        stdout(&out)
    );
    // The example declares no CUDA version, so the init says nothing about the GPU.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no NVIDIA GPU is visible"));
}
