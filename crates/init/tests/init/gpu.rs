//! The GPU start-up step and `gpubox-init check`, run on a fake host tree shaped like a
//! container with driver 550.54.14 injected (`GPUBOX_INIT_ROOT` points the init at it).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::{tempdir, TempDir};

use crate::common::{run, stderr, INIT};

const DRIVER: &str = "550.54.14";
const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
const PROC_VERSION: &str = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";

/// A fake container root. With a driver: its libraries where nvidia-container-toolkit
/// mounts them, `nvidia-smi`, the procfs version file, and an `ldconfig` that records
/// that it ran.
fn fake_root(with_driver: bool) -> TempDir {
    fake_root_in(LIB_DIR, with_driver)
}

/// [`fake_root`] with the driver libraries in `lib_dir` (relative to the root).
fn fake_root_in(lib_dir: &str, with_driver: bool) -> TempDir {
    let root = tempdir().unwrap();
    if with_driver {
        let lib = root.path().join(lib_dir);
        fs::create_dir_all(&lib).unwrap();
        for name in ["libcuda", "libnvidia-ml", "libGLX_nvidia"] {
            fs::write(
                lib.join(format!("{name}.so.{DRIVER}")),
                "fake driver library",
            )
            .unwrap();
        }
        // Another release's leftover must not be linked.
        fs::write(lib.join("libnvidia-ml.so.535.104.05"), "old").unwrap();
        write_proc_version(root.path());
        executable(
            root.path(),
            "usr/bin/nvidia-smi",
            "#!/bin/sh\necho \"NVIDIA-SMI 550.54.14\"\n",
        );
    }
    executable(
        root.path(),
        "sbin/ldconfig",
        "#!/bin/sh\n[ $# -eq 0 ] && touch \"$(dirname \"$0\")/../ldconfig.ran\"\n",
    );
    root
}

fn write_proc_version(root: &Path) {
    let proc = root.join("proc/driver/nvidia");
    fs::create_dir_all(&proc).unwrap();
    fs::write(proc.join("version"), PROC_VERSION).unwrap();
}

fn executable(root: &Path, relative: &str, body: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `gpubox-init ARGS...` on `root` with only `vars` (and PATH) in its environment.
fn init_on(root: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(INIT);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GPUBOX_INIT_ROOT", root)
        .envs(vars.iter().copied());
    run(&mut command).0
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn driver_lib(root: &Path, name: &str) -> PathBuf {
    root.join("run/opengl-driver/lib").join(name)
}

fn check_json(root: &Path, vars: &[(&str, &str)]) -> (Output, serde_json::Value) {
    let output = init_on(root, vars, &["check", "--json"]);
    let report = serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)));
    (output, report)
}

#[test]
fn check_links_the_driver_and_reports_its_version() {
    let root = fake_root(true);
    let (output, report) = check_json(root.path(), &[("NVIDIA_REQUIRE_CUDA", "cuda>=12.4")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    assert_eq!(report["gpuVisible"], true);
    assert_eq!(report["driverVersion"], DRIVER);
    assert_eq!(report["driverVersionSource"], "/proc/driver/nvidia/version");
    assert_eq!(report["cudaSupported"], "12.4");
    assert_eq!(report["imageCuda"], "12.4");
    assert_eq!(report["requirement"]["met"], true);
    assert_eq!(report["ldconfig"]["status"], "ran");
    assert!(root.path().join("ldconfig.ran").exists());

    let libcuda = root.path().join(LIB_DIR).join("libcuda.so.550.54.14");
    for name in ["libcuda.so.550.54.14", "libcuda.so.1", "libcuda.so"] {
        assert_eq!(
            fs::read_link(driver_lib(root.path(), name)).unwrap(),
            libcuda,
            "{name}"
        );
    }
    assert!(driver_lib(root.path(), "libnvidia-ml.so.1").exists());
    assert!(driver_lib(root.path(), "libGLX_nvidia.so.0").exists());
    assert!(!driver_lib(root.path(), "libnvidia-ml.so.535.104.05").exists());
    let smi = root.path().join("run/opengl-driver/bin/nvidia-smi");
    assert_eq!(
        fs::read_link(&smi).unwrap(),
        root.path().join("usr/bin/nvidia-smi")
    );
    assert_eq!(
        report["nvidiaSmi"],
        root.path().join("usr/bin/nvidia-smi").to_str().unwrap()
    );

    let links = report["links"].as_array().unwrap();
    let libcuda_1 = driver_lib(root.path(), "libcuda.so.1");
    assert!(
        links
            .iter()
            .any(|link| link["link"] == libcuda_1.to_str().unwrap()
                && link["target"] == libcuda.to_str().unwrap()
                && link["state"] == "made"),
        "{links:?}"
    );
}

/// Where an arm64 (Grace Hopper) host's runtime mounts the driver on Debian and Ubuntu.
const AARCH64_LIB_DIR: &str = "usr/lib/aarch64-linux-gnu";
/// The open kernel module's line, the one Grace Hopper hosts run.
const AARCH64_PROC_VERSION: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.54.14  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n";

#[test]
fn check_links_a_driver_in_the_aarch64_multiarch_folder() {
    let root = fake_root_in(AARCH64_LIB_DIR, true);
    fs::write(
        root.path().join("proc/driver/nvidia/version"),
        AARCH64_PROC_VERSION,
    )
    .unwrap();
    assert!(!root.path().join(LIB_DIR).exists());
    let (output, report) = check_json(root.path(), &[("NVIDIA_REQUIRE_CUDA", "cuda>=12.4")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(report["gpuVisible"], true);
    assert_eq!(report["driverVersion"], DRIVER);
    assert_eq!(report["requirement"]["met"], true, "{report}");

    let lib = root.path().join(AARCH64_LIB_DIR);
    for (name, target) in [
        ("libcuda.so.550.54.14", "libcuda.so.550.54.14"),
        ("libcuda.so.1", "libcuda.so.550.54.14"),
        ("libcuda.so", "libcuda.so.550.54.14"),
        ("libnvidia-ml.so.1", "libnvidia-ml.so.550.54.14"),
        ("libGLX_nvidia.so.0", "libGLX_nvidia.so.550.54.14"),
    ] {
        assert_eq!(
            fs::read_link(driver_lib(root.path(), name)).unwrap(),
            lib.join(target),
            "{name}"
        );
    }
    assert!(!driver_lib(root.path(), "libnvidia-ml.so.535.104.05").exists());

    // Without procfs the version comes from the aarch64 folder's libcuda.
    fs::remove_dir_all(root.path().join("proc")).unwrap();
    let (output, report) = check_json(root.path(), &[("NVIDIA_REQUIRE_CUDA", "cuda>=12.4")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(report["driverVersion"], DRIVER);
    assert_eq!(report["driverVersionSource"], "the libcuda.so file name");
}

#[test]
fn the_inits_own_architecture_wins_when_both_folders_hold_the_driver() {
    // The init under test is built for the machine running the tests.
    let (own, other) = match std::env::consts::ARCH {
        "x86_64" => (LIB_DIR, AARCH64_LIB_DIR),
        "aarch64" => (AARCH64_LIB_DIR, LIB_DIR),
        _ => return,
    };
    let root = fake_root_in(other, true);
    let own_dir = root.path().join(own);
    fs::create_dir_all(&own_dir).unwrap();
    for name in ["libcuda", "libnvidia-ml"] {
        fs::write(own_dir.join(format!("{name}.so.{DRIVER}")), "own").unwrap();
    }
    let (output, _) = check_json(root.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for name in ["libcuda.so.1", "libnvidia-ml.so.1"] {
        let target = fs::read_link(driver_lib(root.path(), name)).unwrap();
        assert!(
            target.starts_with(&own_dir),
            "{name} -> {}",
            target.display()
        );
    }
    // A library only the other folder has is still linked.
    assert_eq!(
        fs::read_link(driver_lib(root.path(), "libGLX_nvidia.so.0")).unwrap(),
        root.path()
            .join(other)
            .join(format!("libGLX_nvidia.so.{DRIVER}"))
    );
}

#[test]
fn check_a_second_time_finds_the_links_in_place() {
    let root = fake_root(true);
    let first = init_on(root.path(), &[], &["check"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = init_on(root.path(), &[], &["check"]);
    let text = stdout(&second);
    let libcuda_1 = driver_lib(root.path(), "libcuda.so.1");
    let libcuda = root.path().join(LIB_DIR).join("libcuda.so.550.54.14");
    assert!(
        text.contains(&format!(
            "{} -> {} (present)",
            libcuda_1.display(),
            libcuda.display()
        )),
        "{text}"
    );
    assert!(text.contains("driver: 550.54.14"), "{text}");
    assert!(!text.contains("(made)"), "{text}");
}

#[test]
fn mounted_files_are_kept_and_wrong_links_replaced() {
    let root = fake_root(true);
    let dir = root.path().join("run/opengl-driver/lib");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("libcuda.so.1"), "mounted by a CDI spec").unwrap();
    symlink("/nowhere/libcuda.so.1", dir.join("libcuda.so")).unwrap();

    let (output, report) = check_json(root.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        fs::read_to_string(dir.join("libcuda.so.1")).unwrap(),
        "mounted by a CDI spec"
    );
    assert_eq!(
        fs::read_link(dir.join("libcuda.so")).unwrap(),
        root.path().join(LIB_DIR).join("libcuda.so.550.54.14")
    );
    let mounted = dir.join("libcuda.so.1");
    assert!(
        report["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|link| link["link"] == mounted.to_str().unwrap() && link["state"] == "mounted"),
        "{report}"
    );
}

#[test]
fn the_version_comes_from_libcuda_without_procfs() {
    let root = fake_root(true);
    fs::remove_dir_all(root.path().join("proc")).unwrap();
    let (output, report) = check_json(root.path(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(report["driverVersion"], DRIVER);
    assert_eq!(report["driverVersionSource"], "the libcuda.so file name");
}

const TOO_NEW: &[(&str, &str)] = &[
    ("NVIDIA_REQUIRE_CUDA", "cuda>=12.8"),
    ("CUDA_VERSION", "12.8"),
];

/// A main command that leaves a mark, so a test sees whether it ran.
fn touch_command(root: &Path) -> [String; 3] {
    let mark = root.join("command.ran");
    [
        "sh".to_owned(),
        "-c".to_owned(),
        format!("touch '{}'", mark.display()),
    ]
}

fn args(command: &[String]) -> Vec<&str> {
    command.iter().map(String::as_str).collect()
}

#[test]
fn a_too_new_cuda_is_refused_before_the_command_starts() {
    let root = fake_root(true);
    let command = touch_command(root.path());
    let output = init_on(root.path(), TOO_NEW, &args(&command));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("this image needs CUDA 12.8 but the host's NVIDIA driver 550.54.14 supports CUDA 12.4 at most (CUDA 12.8 needs driver 570"),
        "{message}"
    );
    assert!(
        message.contains("Update the host's driver, or use an image built with CUDA 12.4 or older. (Set NVIDIA_DISABLE_REQUIRE=true to start anyway.)"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!root.path().join("command.ran").exists());

    let (check, report) = check_json(root.path(), TOO_NEW);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(report["requirement"]["met"], false);
    assert_eq!(report["imageCuda"], "12.8");
}

#[test]
fn disable_require_starts_a_too_new_cuda_with_a_warning() {
    let root = fake_root(true);
    let command = touch_command(root.path());
    let vars = [TOO_NEW, &[("NVIDIA_DISABLE_REQUIRE", "true")]].concat();
    let output = init_on(root.path(), &vars, &args(&command));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("needs CUDA 12.8")
            && stderr(&output).contains("Starting anyway because NVIDIA_DISABLE_REQUIRE is set"),
        "{}",
        stderr(&output)
    );
    assert!(root.path().join("command.ran").exists());
}

#[test]
fn a_cuda_compat_library_in_the_image_lets_a_newer_cuda_start() {
    let root = fake_root(true);
    let compat = root
        .path()
        .join("nix/store/0123456789abcdfghijklmnpqrsvwxyz-cuda_compat-12.8.39872503/compat");
    fs::create_dir_all(&compat).unwrap();
    fs::write(compat.join("libcuda.so.570.86.10"), "compat").unwrap();
    let command = touch_command(root.path());
    let output = init_on(root.path(), TOO_NEW, &args(&command));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("forward-compatibility library"),
        "{}",
        stderr(&output)
    );
    assert!(root.path().join("command.ran").exists());
}

#[test]
fn a_fitting_cuda_starts_with_nvidia_smi_on_path() {
    let root = fake_root(true);
    let output = init_on(
        root.path(),
        &[
            ("NVIDIA_REQUIRE_CUDA", "cuda>=12.4"),
            ("CUDA_VERSION", "12.4"),
        ],
        &["sh", "-c", "echo \"$PATH\"; nvidia-smi"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let text = stdout(&output);
    let mut lines = text.lines();
    let path = lines.next().unwrap();
    let bin = root.path().join("run/opengl-driver/bin");
    assert!(
        std::env::split_paths(path).any(|folder| folder == bin),
        "{path}"
    );
    assert_eq!(lines.next(), Some("NVIDIA-SMI 550.54.14"));
}

#[test]
fn without_a_gpu_the_command_starts_and_the_user_is_told() {
    let root = fake_root(false);
    // procfs shows the host's driver in every container, GPU passed in or not.
    write_proc_version(root.path());
    let command = touch_command(root.path());
    let vars = [TOO_NEW, &[("NVIDIA_VISIBLE_DEVICES", "all")]].concat();
    let output = init_on(root.path(), &vars, &args(&command));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        "gpubox-init: no NVIDIA GPU is visible in this container; starting without one (run with --device nvidia.com/gpu=all or --gpus all to use the GPU)"
    );
    assert!(root.path().join("command.ran").exists());
    assert!(!root.path().join("run").exists());
    assert!(!root.path().join("ldconfig.ran").exists());

    let check = init_on(root.path(), &vars, &["check"]);
    assert_eq!(check.status.code(), Some(0));
    assert!(
        stdout(&check).starts_with("no NVIDIA GPU is visible"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn an_image_that_asks_for_no_gpu_hears_nothing_about_it() {
    let root = fake_root(false);
    let output = init_on(
        root.path(),
        &[("NVIDIA_VISIBLE_DEVICES", "void")],
        &["true"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn an_image_without_a_cuda_requirement_starts_without_a_gpu_in_silence() {
    // What `cuda.enable = true` gives an image with no CUDA in its closure (the
    // bundled example): the NVIDIA variables, and no CUDA version to need a GPU for.
    let root = fake_root(false);
    let output = init_on(
        root.path(),
        &[
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
        ],
        &["true"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn check_rejects_unknown_arguments() {
    let root = fake_root(false);
    let output = init_on(root.path(), &[], &["check", "--yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("usage: gpubox-init check [--json]"));
}
