//! `gpubox doctor`: can this host run GPU containers, and if not, what exactly
//! to do. Each check gives a verdict, a message and, for every problem, the
//! fix.

use std::path::{Path, PathBuf};

use gpubox_build::{BuildError, ImageLocation};
use gpubox_cdi::{Driver, HostRoots, SpecStatus};
use gpubox_cuda::{Compatibility, CudaVersion};
use gpubox_engines::{Engine, EngineInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's verdict.
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, message: String) -> Check {
        Check {
            name,
            status: Status::Pass,
            message,
            fix: None,
        }
    }

    fn problem(name: &'static str, status: Status, message: String, fix: String) -> Check {
        Check {
            name,
            status,
            message,
            fix: Some(fix),
        }
    }
}

pub struct DoctorRequest {
    pub roots: HostRoots,
    /// Where `/etc/cdi` and `/var/run/cdi` are looked for.
    pub cdi_root: PathBuf,
    pub image: Option<ImageLocation>,
}

/// Runs every check, in the order they are shown.
pub fn checks(request: &DoctorRequest) -> Result<Vec<Check>, BuildError> {
    let mut checks = Vec::new();
    let driver = match gpubox_cdi::discover(&request.roots) {
        Ok(driver) => {
            let cuda = gpubox_cuda::cuda_supported_by(&driver.version)
                .map_or_else(|| "an unknown CUDA".to_owned(), |c| format!("CUDA {c}"));
            // The layout names the architecture (an arm64 Grace Hopper host's libraries are
            // in usr/lib/aarch64-linux-gnu); Fedora's usr/lib64 names none.
            let architecture = driver
                .architecture
                .map_or_else(String::new, |arch| format!("{arch}, "));
            checks.push(Check::pass(
                "driver",
                format!(
                    "NVIDIA driver {} is installed ({architecture}supports {cuda})",
                    driver.version
                ),
            ));
            Some(driver)
        }
        Err(e) => {
            checks.push(Check::problem(
                "driver",
                Status::Fail,
                e.to_string(),
                "install the NVIDIA driver for your GPU (then reboot) and check that `nvidia-smi` works".to_owned(),
            ));
            None
        }
    };
    if let Some(driver) = &driver {
        checks.push(device_nodes(driver));
    }
    checks.push(cdi_specs(&request.cdi_root, driver.as_ref()));
    for engine in [Engine::Podman, Engine::Docker] {
        checks.push(engine_check(engine, gpubox_engines::probe(engine)));
    }
    if let Some(image) = &request.image {
        checks.push(image_check(image, driver.as_ref())?);
    }
    Ok(checks)
}

/// Whether the host passed: no check failed (warnings pass).
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}

fn device_nodes(driver: &Driver) -> Check {
    let has_control = driver.device_nodes.iter().any(|n| n.ends_with("nvidiactl"));
    if has_control && !driver.gpus.is_empty() {
        Check::pass(
            "devices",
            format!(
                "/dev/nvidiactl and {} GPU device node(s) are present",
                driver.gpus.len()
            ),
        )
    } else {
        Check::problem(
            "devices",
            Status::Fail,
            "the NVIDIA device nodes (/dev/nvidiactl, /dev/nvidia0, ...) are missing".to_owned(),
            "load the kernel module and create the nodes: `sudo modprobe nvidia && sudo nvidia-modprobe -u -c=0` (or run `nvidia-smi` once as root)".to_owned(),
        )
    }
}

/// The command that writes a CDI spec where podman and Docker read it.
pub const GENERATE_SPEC: &str = "sudo gpubox cdi generate --output /etc/cdi/nvidia.yaml";

fn cdi_specs(cdi_root: &Path, driver: Option<&Driver>) -> Check {
    match gpubox_cdi::spec_status(cdi_root, driver) {
        SpecStatus::Missing => Check::problem(
            "cdi-spec",
            Status::Fail,
            "no CDI spec for nvidia.com/gpu in /etc/cdi or /var/run/cdi".to_owned(),
            format!("generate one: `{GENERATE_SPEC}`"),
        ),
        SpecStatus::Broken(e) => Check::problem(
            "cdi-spec",
            Status::Fail,
            e.to_string(),
            format!("remove or fix that file, or regenerate it: `{GENERATE_SPEC}`"),
        ),
        SpecStatus::Stale(spec) => {
            let made_for = spec
                .driver_version
                .as_ref()
                .map_or_else(|| "another driver".to_owned(), |v| format!("driver {v}"));
            let installed = driver.map_or_else(String::new, |d| d.version.to_string());
            Check::problem(
                "cdi-spec",
                Status::Fail,
                format!(
                    "{} was made for {made_for}, but driver {installed} is installed: containers would get the old libraries or fail to start",
                    spec.path.display(),
                ),
                format!(
                    "regenerate it: `sudo gpubox cdi generate --output {}`",
                    spec.path.display()
                ),
            )
        }
        SpecStatus::Current(specs) => {
            let names: Vec<String> = specs
                .iter()
                .map(|s| format!("{} ({} devices)", s.path.display(), s.devices.len()))
                .collect();
            Check::pass(
                "cdi-spec",
                format!("CDI spec up to date: {}", names.join(", ")),
            )
        }
    }
}

/// How to give `engine` GPU support when it has neither CDI nor the NVIDIA
/// runtime.
pub fn gpu_support_fix(engine: Engine) -> &'static str {
    match engine {
        Engine::Docker => "upgrade to Docker 25 or newer and enable CDI (`\"features\": {\"cdi\": true}` in /etc/docker/daemon.json; on by default from 28.2), or install nvidia-container-toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker`, then restart dockerd",
        Engine::Podman => "upgrade podman to 4.1 or newer, which reads CDI specs from /etc/cdi",
    }
}

fn engine_check(engine: Engine, info: Option<EngineInfo>) -> Check {
    let name = match engine {
        Engine::Docker => "docker",
        Engine::Podman => "podman",
    };
    let Some(info) = info else {
        return Check::problem(
            name,
            Status::Warn,
            format!("{engine} is not installed or not running"),
            format!("nothing to do unless you want to run images with {engine}"),
        );
    };
    if info.cdi {
        Check::pass(
            name,
            format!(
                "{engine} {} can use CDI: `--device nvidia.com/gpu=all`",
                info.version
            ),
        )
    } else if info.nvidia_runtime {
        Check::pass(
            name,
            format!(
                "{engine} {} has the NVIDIA runtime but no CDI: use `--gpus all`",
                info.version
            ),
        )
    } else {
        Check::problem(
            name,
            Status::Warn,
            format!("{engine} {} can use neither CDI nor `--gpus`: `--gpus all` fails with `could not select device driver \"\"`", info.version),
            gpu_support_fix(engine).to_owned(),
        )
    }
}

/// The image's CUDA requirement against the installed driver.
fn image_check(image: &ImageLocation, driver: Option<&Driver>) -> Result<Check, BuildError> {
    let env = gpubox_build::open::image_env(image)?;
    let Some(cuda) = gpubox_cuda::image_cuda(&env) else {
        return Ok(Check::pass(
            "image",
            format!("{image} does not ask for a CUDA version"),
        ));
    };
    let Some(driver) = driver else {
        return Ok(Check::problem(
            "image",
            Status::Fail,
            format!("{image} needs CUDA {cuda}, and there is no NVIDIA driver"),
            "install the NVIDIA driver first".to_owned(),
        ));
    };
    Ok(match gpubox_cuda::compatibility(cuda, &driver.version, false) {
        Compatibility::Native => Check::pass(
            "image",
            format!("{image} needs CUDA {cuda}; driver {} supports it", driver.version),
        ),
        Compatibility::MinorVersion | Compatibility::ForwardCompat => Check::problem(
            "image",
            Status::Warn,
            format!(
                "{image} needs CUDA {cuda}; driver {} runs it through CUDA minor version compatibility only (no PTX JIT for newer code), and its NVIDIA_REQUIRE_CUDA check will refuse to start",
                driver.version
            ),
            format!("update the driver to {} or newer, or set NVIDIA_DISABLE_REQUIRE=true if the application works", minimum(cuda)),
        ),
        Compatibility::UnknownRelease => Check::problem(
            "image",
            Status::Warn,
            format!("{image} needs CUDA {cuda}, a release gpubox's driver table does not know"),
            "check NVIDIA's CUDA release notes for the driver it needs".to_owned(),
        ),
        Compatibility::TooOld { minimum } => Check::problem(
            "image",
            Status::Fail,
            format!("{image} needs CUDA {cuda}, which needs driver {minimum} or newer; this host has {}", driver.version),
            format!("update the host's NVIDIA driver to {minimum} or newer, or use an image built with CUDA {} or older", gpubox_cuda::cuda_supported_by(&driver.version).map_or_else(|| "an older".to_owned(), |c| c.to_string())),
        ),
    })
}

fn minimum(cuda: CudaVersion) -> String {
    gpubox_cuda::minimum_driver(cuda).map_or_else(|| "a newer one".to_owned(), |d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVER: &str = "550.54.15";

    fn request(root: &Path, cdi_root: &Path) -> DoctorRequest {
        DoctorRequest {
            roots: HostRoots {
                driver_root: root.to_path_buf(),
                dev_root: root.to_path_buf(),
                proc_root: root.to_path_buf(),
            },
            cdi_root: cdi_root.to_path_buf(),
            image: None,
        }
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_host_without_a_driver_fails_with_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let checks = checks(&request(empty.path(), empty.path())).unwrap();
        let driver = check(&checks, "driver");
        assert_eq!(driver.status, Status::Fail);
        assert!(driver
            .fix
            .as_deref()
            .unwrap()
            .contains("install the NVIDIA driver"));
        assert!(!healthy(&checks));
        // No driver, so no device check; the CDI spec is still looked for.
        assert!(checks.iter().all(|c| c.name != "devices"));
        assert_eq!(check(&checks, "cdi-spec").status, Status::Fail);
    }

    #[test]
    fn a_missing_then_current_then_stale_cdi_spec_is_told_apart() {
        let host = tempfile::tempdir().unwrap();
        gpubox_cdi::fake_host::build_fake_host(host.path(), DRIVER, 1).unwrap();
        let cdi_root = tempfile::tempdir().unwrap();
        let request = request(host.path(), cdi_root.path());

        let missing = checks(&request).unwrap();
        assert_eq!(check(&missing, "driver").status, Status::Pass);
        assert!(check(&missing, "driver").message.contains(DRIVER));
        assert_eq!(check(&missing, "devices").status, Status::Pass);
        let cdi = check(&missing, "cdi-spec");
        assert_eq!(cdi.status, Status::Fail);
        assert!(cdi.fix.as_deref().unwrap().contains(GENERATE_SPEC));

        let driver = gpubox_cdi::discover(&request.roots).unwrap();
        let spec = gpubox_cdi::generate(&driver, &request.roots).unwrap();
        let yaml = gpubox_cdi::render(&spec, gpubox_cdi::SpecFormat::Yaml).unwrap();
        let installed = cdi_root.path().join("etc/cdi/nvidia.yaml");
        gpubox_cdi::write_spec(&installed, &yaml).unwrap();
        let current = checks(&request).unwrap();
        assert_eq!(check(&current, "cdi-spec").status, Status::Pass);

        // The driver is updated; the spec still names the old libraries.
        let newer = tempfile::tempdir().unwrap();
        gpubox_cdi::fake_host::build_fake_host(newer.path(), "560.35.03", 1).unwrap();
        let stale = checks(&DoctorRequest {
            roots: HostRoots {
                driver_root: newer.path().to_path_buf(),
                dev_root: newer.path().to_path_buf(),
                proc_root: newer.path().to_path_buf(),
            },
            ..request
        })
        .unwrap();
        let cdi = check(&stale, "cdi-spec");
        assert_eq!(cdi.status, Status::Fail, "{}", cdi.message);
        assert!(cdi.message.contains("560.35.03"), "{}", cdi.message);
    }

    #[test]
    fn an_arm64_host_passes_with_its_spec_and_names_its_architecture() {
        let host = tempfile::tempdir().unwrap();
        gpubox_cdi::fake_host::build_fake_host_for(
            host.path(),
            DRIVER,
            1,
            gpubox_cdi::Architecture::Arm64,
        )
        .unwrap();
        let cdi_root = tempfile::tempdir().unwrap();
        let request = request(host.path(), cdi_root.path());

        let driver = gpubox_cdi::discover(&request.roots).unwrap();
        let spec = gpubox_cdi::generate(&driver, &request.roots).unwrap();
        let json = gpubox_cdi::render(&spec, gpubox_cdi::SpecFormat::Json).unwrap();
        gpubox_cdi::write_spec(&cdi_root.path().join("etc/cdi/nvidia.json"), &json).unwrap();

        let found = checks(&request).unwrap();
        let driver_check = check(&found, "driver");
        assert_eq!(
            driver_check.status,
            Status::Pass,
            "{}",
            driver_check.message
        );
        assert_eq!(
            driver_check.message,
            format!("NVIDIA driver {DRIVER} is installed (aarch64, supports CUDA 12.4)")
        );
        assert_eq!(check(&found, "devices").status, Status::Pass);
        let cdi = check(&found, "cdi-spec");
        assert_eq!(cdi.status, Status::Pass, "{}", cdi.message);

        // The same driver on an x86-64 tree says so.
        let amd64 = tempfile::tempdir().unwrap();
        gpubox_cdi::fake_host::build_fake_host(amd64.path(), DRIVER, 1).unwrap();
        let found = checks(&DoctorRequest {
            roots: HostRoots::under(amd64.path()),
            ..request
        })
        .unwrap();
        let message = &check(&found, "driver").message;
        assert!(message.contains("(x86_64, supports"), "{message}");
    }
}
