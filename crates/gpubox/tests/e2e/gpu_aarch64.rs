//! GPU plumbing on a fake arm64 (Grace Hopper) NVIDIA host: driver 550.54.14 with its
//! libraries under `usr/lib/aarch64-linux-gnu`, the open kernel module's version line
//! and a GH200. `gpubox cdi generate` and `gpubox doctor` read the tree's own layout
//! (whatever machine runs them), and the spec's mounts bring the driver to the
//! arm64 image's `gpubox-init` (aarch64, through qemu-user) in a podman container.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpubox_cdi::fake_host::{build_fake_host_for, LIBRARIES};
use gpubox_cdi::Architecture;

use super::common::*;

const DRIVER: &str = "550.54.14";
const LIB_DIR: &str = "usr/lib/aarch64-linux-gnu";

fn aarch64_host(host: &Path) {
    build_fake_host_for(host, DRIVER, 1, Architecture::Arm64).expect("fake host (needs root)");
}

/// `gpubox cdi generate` on the tree at `host`, written to `output`; the spec as JSON.
fn generate(cache: &Path, host: &Path, output: &Path) -> serde_json::Value {
    run_ok(
        gpubox(cache)
            .args(["cdi", "generate", "--driver-root"])
            .arg(host)
            .arg("--dev-root")
            .arg(host)
            .arg("--output")
            .arg(output),
    );
    serde_json::from_slice(&fs::read(output).unwrap()).unwrap()
}

/// `(hostPath, containerPath)` of the spec's common mounts.
fn mounts(spec: &serde_json::Value) -> Vec<(String, String)> {
    spec["containerEdits"]["mounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no mounts in {spec}"))
        .iter()
        .map(|m| {
            (
                m["hostPath"].as_str().unwrap().to_owned(),
                m["containerPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn cdi_generate_and_doctor_read_an_aarch64_host_tree() {
    let work = tempdir();
    let host = work.path().join("host");
    aarch64_host(&host);
    let cache = work.path().join("cache");
    let cdi_root = work.path().join("cdi");
    let spec = generate(&cache, &host, &cdi_root.join("etc/cdi/nvidia.json"));
    assert_eq!(spec["kind"], "nvidia.com/gpu");

    let mounts = mounts(&spec);
    for name in LIBRARIES {
        let file = format!("{name}.so.{DRIVER}");
        let host_path = host.join(LIB_DIR).join(&file).display().to_string();
        for container in [
            format!("/{LIB_DIR}/{file}"),
            format!("/run/opengl-driver/lib/{file}"),
            format!("/run/opengl-driver/lib/{name}.so.1"),
        ] {
            assert!(
                mounts.contains(&(host_path.clone(), container.clone())),
                "no mount of {host_path} at {container} in {mounts:?}"
            );
        }
    }
    let libraries = mounts
        .iter()
        .filter(|(host_path, _)| host_path.contains(".so."))
        .count();
    assert_eq!(libraries, LIBRARIES.len() * 4, "{mounts:?}");
    assert!(
        mounts
            .iter()
            .all(|(h, c)| !h.contains("x86_64") && !c.contains("x86_64")),
        "{mounts:?}"
    );

    // doctor names the host's architecture and finds the spec current.
    let out = gpubox(&cache)
        .arg("doctor")
        .arg("--driver-root")
        .arg(&host)
        .arg("--dev-root")
        .arg(&host)
        .arg("--cdi-root")
        .arg(&cdi_root)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "PASS  driver    NVIDIA driver {DRIVER} is installed (aarch64, supports CUDA 12.4)"
        )),
        "{text}"
    );
    assert!(text.contains("PASS  devices"), "{text}");
    assert!(text.contains("PASS  cdi-spec"), "{text}");
}

/// Removes the CDI spec this test put into /etc/cdi, however the test ends.
struct InstalledSpec(PathBuf);

impl Drop for InstalledSpec {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The kind this test's spec is installed under. podman 4.3 reads only /etc/cdi, and
/// `gpu::fake_driver_reaches_the_image_through_cdi_and_init` installs an
/// `nvidia.com/gpu` spec there too: two specs of one kind naming the same devices are a
/// conflict that makes podman drop those devices, so the tests would fail each other when
/// run side by side. The spec is `gpubox cdi generate`'s with only its kind renamed.
const TEST_KIND: &str = "gpubox-e2e.example/gpu-aarch64";

/// `podman run --device KIND=all IMAGE check --json` with `spec` installed as the only spec
/// of its kind; the exit status and the report.
fn check_in_podman(spec: &serde_json::Value, image: &str) -> (Option<i32>, serde_json::Value) {
    fs::create_dir_all("/etc/cdi").unwrap();
    let spec_file = PathBuf::from("/etc/cdi/gpubox-e2e-aarch64.json");
    let _installed = InstalledSpec(spec_file.clone());
    fs::write(&spec_file, spec.to_string()).unwrap();
    let device = format!("{TEST_KIND}=all");
    let out = run_in_podman(
        &["--platform", "linux/arm64", "--device", &device],
        image,
        &["check", "--json"],
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The report's link at `link`, as `(target, state)`.
fn link<'a>(report: &'a serde_json::Value, link: &str) -> (&'a str, &'a str) {
    report["links"]
        .as_array()
        .unwrap_or_else(|| panic!("no links in {report}"))
        .iter()
        .find(|l| l["link"] == link)
        .map(|l| (l["target"].as_str().unwrap(), l["state"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("no link {link} in {report}"))
}

#[test]
fn an_aarch64_driver_layout_reaches_gpubox_init_through_cdi() {
    if !(have("podman") && have_aarch64()) {
        return;
    }
    let work = tempdir();
    let host = work.path().join("host");
    aarch64_host(&host);
    let cache = work.path().join("cache");
    let mut spec = generate(&cache, &host, &work.path().join("nvidia.json"));
    spec["kind"] = TEST_KIND.into();

    // The linux/arm64 image: its aarch64 gpubox-init runs through qemu-user. The fake
    // libraries are placeholders no loader would map; what is under test is that the
    // aarch64 folder's files reach the container and the init finds and checks them.
    let image = "gpubox-e2e-aarch64-layout:latest";
    let spec_path = write_spec(
        work.path(),
        "gpubox.toml",
        "name = \"gpubox-e2e-aarch64-layout\"\nplatforms = [\"linux/arm64\"]\ncuda.version = \"12.4\"\n",
    );
    run_ok(gpubox(&cache).arg("build").arg(&spec_path).args([
        "-q",
        "-o",
        &format!("podman:{image}"),
    ]));
    assert_eq!(podman_architecture(image), "arm64");
    struct Image<'a>(&'a str);
    impl Drop for Image<'_> {
        fn drop(&mut self) {
            let _ = Command::new("podman").args(["rmi", "-f", self.0]).output();
        }
    }
    let _image = Image(image);

    let expect_met = |status: Option<i32>, report: &serde_json::Value| {
        assert_eq!(status, Some(0), "{report}");
        assert_eq!(report["gpuVisible"], true, "{report}");
        assert_eq!(report["driverVersion"], DRIVER, "{report}");
        // The container's procfs is this machine's, without the fake driver: the
        // version comes from the name of the libcuda the spec mounted.
        assert_eq!(
            report["driverVersionSource"], "the libcuda.so file name",
            "{report}"
        );
        assert_eq!(report["imageCuda"], "12.4", "{report}");
        assert_eq!(report["requirement"]["met"], true, "{report}");
    };

    // The spec as gpubox writes it mounts the libraries into /run/opengl-driver/lib too.
    let (status, report) = check_in_podman(&spec, image);
    expect_met(status, &report);
    assert_eq!(
        link(&report, "/run/opengl-driver/lib/libcuda.so.1").1,
        "mounted",
        "{report}"
    );

    // A spec that mounts them at their host paths only (as nvidia-ctk's does): the init
    // finds them in /usr/lib/aarch64-linux-gnu and links them itself.
    let mut host_paths_only = spec.clone();
    host_paths_only["containerEdits"]["mounts"] = spec["containerEdits"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            !m["containerPath"]
                .as_str()
                .unwrap()
                .starts_with("/run/opengl-driver/")
        })
        .cloned()
        .collect();
    let (status, report) = check_in_podman(&host_paths_only, image);
    expect_met(status, &report);
    for (name, file) in [
        ("libcuda.so.1", "libcuda.so.550.54.14"),
        ("libcuda.so", "libcuda.so.550.54.14"),
        ("libnvidia-ml.so.1", "libnvidia-ml.so.550.54.14"),
    ] {
        assert_eq!(
            link(&report, &format!("/run/opengl-driver/lib/{name}")),
            (format!("/{LIB_DIR}/{file}").as_str(), "made"),
            "{report}"
        );
    }
}
