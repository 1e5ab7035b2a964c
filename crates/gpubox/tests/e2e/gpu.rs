//! GPU plumbing end to end on a fake NVIDIA host (driver 550.54.14): CUDA-aware
//! builds, `gpubox cdi generate`, podman injecting the driver through CDI,
//! `gpubox-init` linking it into /run/opengl-driver/lib and checking the image's
//! CUDA requirement, and `gpubox doctor` in its failing states.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;

const DRIVER: &str = "550.54.14";

/// A fake host whose libcuda is a real shared object exporting
/// `cuDriverGetVersion` (CUDA 12.4 = 12040).
fn fake_host(root: &Path, driver: &str) {
    gpubox_cdi::fake_host::build_fake_host(root, driver, 1).expect("fake host (needs root)");
    let src = root.join("libcuda.c");
    fs::write(
        &src,
        "int cuDriverGetVersion(int *v) { *v = 12040; return 0; }\n",
    )
    .unwrap();
    let lib = root.join(format!("usr/lib/x86_64-linux-gnu/libcuda.so.{driver}"));
    fs::remove_file(&lib).unwrap();
    run_ok(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
            .arg(&lib)
            .arg(&src),
    );
}

/// A dynamically linked program that loads libcuda the way CUDA programs do and
/// reports where the loader found it.
fn cuda_probe(dir: &Path) -> PathBuf {
    let src = dir.join("cudaprobe.c");
    fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <link.h>
int main(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW);
  if (!h) { printf("dlopen failed: %s\n", dlerror()); return 4; }
  int (*get)(int *) = (int (*)(int *))dlsym(h, "cuDriverGetVersion");
  int v = 0;
  if (!get || get(&v) != 0) return 5;
  struct link_map *map = 0;
  dlinfo(h, RTLD_DI_LINKMAP, &map);
  printf("cuDriverGetVersion=%d from %s\n", v, map ? map->l_name : "?");
  return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.join("cudaprobe");
    run_ok(Command::new("gcc").arg("-o").arg(&bin).arg(&src));
    bin
}

fn gpu_spec(dir: &Path, name: &str, cuda: &str, probe: &Path) -> PathBuf {
    write_spec(
        dir,
        &format!("{name}.toml"),
        &format!(
            "name = \"{name}\"\nhostBinaries = [{{ src = {}, dst = \"/usr/local/bin/cudaprobe\" }}]\ncuda.version = \"{cuda}\"\ncmd = [\"/usr/local/bin/cudaprobe\"]\n",
            toml_str(probe)
        ),
    )
}

/// Removes the CDI spec this test put into /etc/cdi, however the test ends.
struct InstalledSpec(PathBuf);

impl Drop for InstalledSpec {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn env_of(config: &serde_json::Value) -> String {
    config["config"]["Env"].to_string()
}

#[test]
fn cuda_versions_in_the_closure_set_the_nvidia_environment() {
    if !have("nix") {
        return;
    }
    let work = tempdir();
    let app = nix_fixture("cuda124");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!("name = \"cuda\"\nsystemPackages = [{}]\n", toml_str(&app)),
    );
    let (reader, _) = build_and_read(work.path(), &spec);
    let config = reader.config().unwrap();
    let env = env_of(&config);
    for expected in [
        "CUDA_VERSION=12.4",
        "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
        "NVIDIA_VISIBLE_DEVICES=all",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        "/run/opengl-driver/lib",
    ] {
        assert!(env.contains(expected), "{expected} missing from {env}");
    }
    assert_eq!(
        config["config"]["Labels"]["com.nvidia.cuda.version"],
        "12.4"
    );
    assert_eq!(
        config["config"]["Labels"]["io.gpubox.cuda.min-driver"],
        "550.54.14"
    );

    // cuda.enable = false leaves all of it out.
    let spec = write_spec(
        work.path(),
        "plain.toml",
        &format!(
            "name = \"plain\"\nsystemPackages = [{}]\ncuda.enable = false\n",
            toml_str(&app)
        ),
    );
    let plain = work.path().join("plain");
    fs::create_dir_all(&plain).unwrap();
    let (reader, _) = build_and_read(&plain, &spec);
    let config = reader.config().unwrap();
    assert!(!env_of(&config).contains("NVIDIA"), "{}", env_of(&config));
    for label in ["com.nvidia.cuda.version", "io.gpubox.cuda.min-driver"] {
        assert!(config["config"]["Labels"].get(label).is_none(), "{label}");
    }
}

#[test]
fn two_cuda_releases_are_refused_naming_both_paths() {
    if !have("nix") {
        return;
    }
    let mixed = nix_fixture("cudaMixed");
    // build_fails also checks that nothing was written.
    let err = build_fails(
        &format!(
            "name = \"mixed\"\nsystemPackages = [{}]\n",
            toml_str(&mixed)
        ),
        out_dir,
    );
    assert!(
        err.contains("cuda_cudart-12.4.127") && err.contains("cuda_cudart-12.6.77"),
        "{err}"
    );
    assert!(err.contains("allowMixedVersions"), "{err}");
}

#[test]
fn fake_driver_reaches_the_image_through_cdi_and_init() {
    if !have("podman") || !have("gcc") {
        return;
    }
    let work = tempdir();
    let host = work.path().join("host");
    fake_host(&host, DRIVER);
    let cache = work.path().join("cache");
    let spec_file = PathBuf::from("/etc/cdi/gpubox-e2e.json");
    fs::create_dir_all("/etc/cdi").unwrap();
    let _installed = InstalledSpec(spec_file.clone());
    run_ok(
        gpubox(&cache)
            .args(["cdi", "generate", "--driver-root"])
            .arg(&host)
            .arg("--dev-root")
            .arg(&host)
            .arg("--output")
            .arg(&spec_file),
    );
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(&spec_file).unwrap()).unwrap();
    assert_eq!(spec["kind"], "nvidia.com/gpu");

    let probe = cuda_probe(work.path());
    let run = |image: &str, extra: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.args([
            "run",
            "--rm",
            "--network",
            "none",
            "--device",
            "nvidia.com/gpu=all",
        ])
        .args(extra)
        .arg(image);
        cmd
    };

    // CUDA 12.4 on driver 550.54.14: starts, and the program finds libcuda
    // through /run/opengl-driver/lib.
    let ok = gpu_spec(work.path(), "gpubox-e2e-cuda124", "12.4", &probe);
    run_ok(gpubox(&cache).arg("build").arg(&ok).args([
        "-q",
        "-o",
        "podman:gpubox-e2e-cuda124:latest",
    ]));
    let out = run_ok(&mut run("gpubox-e2e-cuda124:latest", &[]));
    let text = stdout(&out);
    assert!(
        text.contains("cuDriverGetVersion=12040 from /run/opengl-driver/lib/libcuda.so.1"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // gpubox-init check reports the driver and the links it made.
    let out = run_ok(run("gpubox-e2e-cuda124:latest", &[]).args(["check", "--json"]));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(report["driverVersion"], DRIVER, "{report}");
    assert!(
        report["links"]
            .to_string()
            .contains("/run/opengl-driver/lib/libcuda.so"),
        "{report}"
    );

    // CUDA 12.8 needs a newer driver: refused with one plain message, the
    // program never starts...
    let too_new = gpu_spec(work.path(), "gpubox-e2e-cuda128", "12.8", &probe);
    run_ok(gpubox(&cache).arg("build").arg(&too_new).args([
        "-q",
        "-o",
        "podman:gpubox-e2e-cuda128:latest",
    ]));
    let out = run("gpubox-e2e-cuda128:latest", &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "CUDA 12.8 started on driver {DRIVER}"
    );
    assert!(
        stderr.contains("12.8") && stderr.contains(DRIVER),
        "{stderr}"
    );
    assert!(
        !stdout(&out).contains("cuDriverGetVersion"),
        "the program ran: {}",
        stdout(&out)
    );
    // ...unless the user says so.
    let out = run_ok(&mut run(
        "gpubox-e2e-cuda128:latest",
        &["-e", "NVIDIA_DISABLE_REQUIRE=true"],
    ));
    assert!(
        stdout(&out).contains("cuDriverGetVersion=12040"),
        "{}",
        stdout(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("12.8"),
        "no warning"
    );

    // `gpubox doctor IMAGE` reads the image's CUDA from podman and weighs it
    // against the driver: 12.4 fits, 12.8 only through minor version
    // compatibility.
    for (image, expected) in [
        ("podman:gpubox-e2e-cuda124:latest", "PASS  image"),
        ("podman:gpubox-e2e-cuda128:latest", "WARN  image"),
    ] {
        let out = gpubox(&cache)
            .args(["doctor", image, "--driver-root"])
            .arg(&host)
            .arg("--dev-root")
            .arg(&host)
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(text.contains(expected), "{image}: {text}");
    }

    // `gpubox run` picks CDI for podman on this host.
    let out = run_ok(
        gpubox(&cache)
            .args(["run", "--dry-run", "--network", "none", "--driver-root"])
            .arg(&host)
            .arg("--dev-root")
            .arg(&host)
            .arg("podman:gpubox-e2e-cuda124:latest"),
    );
    assert!(
        stdout(&out).starts_with("podman run --rm --device nvidia.com/gpu=all"),
        "{}",
        stdout(&out)
    );

    for image in ["gpubox-e2e-cuda124:latest", "gpubox-e2e-cuda128:latest"] {
        let _ = Command::new("podman").args(["rmi", "-f", image]).output();
    }
}

fn doctor(host: &Path, cdi_root: &Path) -> (bool, String) {
    let out = gpubox(&cdi_root.join("cache"))
        .arg("doctor")
        .arg("--driver-root")
        .arg(host)
        .arg("--dev-root")
        .arg(host)
        .arg("--cdi-root")
        .arg(cdi_root)
        .output()
        .unwrap();
    (out.status.success(), stdout(&out))
}

#[test]
fn doctor_names_the_fix_for_each_failure() {
    let work = tempdir();
    let empty = work.path().join("empty");
    fs::create_dir_all(&empty).unwrap();

    // No driver at all.
    let (ok, text) = doctor(&empty, &empty);
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  driver") && text.contains("install the NVIDIA driver"),
        "{text}"
    );

    // A driver but no CDI spec.
    let host = work.path().join("host");
    gpubox_cdi::fake_host::build_fake_host(&host, DRIVER, 1).expect("fake host (needs root)");
    let cdi_root = work.path().join("cdi");
    fs::create_dir_all(cdi_root.join("etc/cdi")).unwrap();
    let (ok, text) = doctor(&host, &cdi_root);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("PASS  driver    NVIDIA driver {DRIVER}")),
        "{text}"
    );
    assert!(
        text.contains("FAIL  cdi-spec") && text.contains("gpubox cdi generate"),
        "{text}"
    );

    // A spec made for the driver before an update: stale.
    let old = work.path().join("old-host");
    gpubox_cdi::fake_host::build_fake_host(&old, "535.104.05", 1).unwrap();
    let spec_file = cdi_root.join("etc/cdi/nvidia.json");
    run_ok(
        gpubox(&work.path().join("cache"))
            .args(["cdi", "generate", "--driver-root"])
            .arg(&old)
            .arg("--dev-root")
            .arg(&old)
            .arg("-o")
            .arg(&spec_file),
    );
    let (ok, text) = doctor(&host, &cdi_root);
    assert!(!ok, "{text}");
    assert!(
        text.contains("made for driver 535.104.05") && text.contains(DRIVER),
        "{text}"
    );
    assert!(text.contains("regenerate it"), "{text}");

    // Regenerated: the spec check passes.
    run_ok(
        gpubox(&work.path().join("cache"))
            .args(["cdi", "generate", "--driver-root"])
            .arg(&host)
            .arg("--dev-root")
            .arg(&host)
            .arg("-o")
            .arg(&spec_file),
    );
    let (_, text) = doctor(&host, &cdi_root);
    assert!(text.contains("PASS  cdi-spec"), "{text}");

    // The Docker engine here has neither CDI nor the NVIDIA runtime, and
    // `gpubox run` says so instead of starting a container without the GPU; a dry
    // run prints the command without GPU flags, and why.
    if have("docker") {
        assert!(
            text.contains("WARN  docker") && text.contains("Docker 25"),
            "{text}"
        );
        let run = |dry_run: bool| {
            let mut command = gpubox(&work.path().join("cache"));
            command.arg("run");
            if dry_run {
                command.arg("--dry-run");
            }
            command
                .arg("--driver-root")
                .arg(&host)
                .arg("--dev-root")
                .arg(&host)
                .arg("--cdi-root")
                .arg(&cdi_root)
                .arg("docker-daemon:some-image:latest");
            command
        };
        let err = unwrapped(&run_fails(&mut run(false)));
        assert!(
            err.contains("docker") && err.contains("neither CDI nor the NVIDIA runtime"),
            "{err}"
        );
        assert!(err.contains("Docker 25"), "{err}");
        assert!(err.contains("pass --no-gpu"), "{err}");
        let out = run_ok(&mut run(true));
        assert_eq!(
            stdout(&out).trim(),
            "docker run --rm --publish-all some-image:latest"
        );
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            why.contains("running without a GPU")
                && why.contains("neither CDI nor the NVIDIA runtime"),
            "{why}"
        );
    }
}
