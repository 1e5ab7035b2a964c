//! Discovery, generation, rendering and installed-spec checks against real fake host trees
//! (real files, real device nodes made with `mknod`; the tests run as root).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use gpubox_cdi::fake_host::{
    build_fake_host, build_fake_host_for, gpu_pci_bus_id, gpu_uuid, library_dir, LIBRARIES,
};
use gpubox_cdi::{
    discover, generate, installed_specs, render, spec_matches_driver, validate, write_spec,
    Architecture, CdiError, Driver, DriverVersion, HostRoots, Spec, SpecFormat,
};
use serde_json::Value;
use tempfile::TempDir;

const DRIVER: &str = "550.54.14";
const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
const AARCH64_LIB_DIR: &str = "usr/lib/aarch64-linux-gnu";

fn fake_host(driver: &str, gpus: u32) -> (TempDir, HostRoots) {
    let root = tempfile::tempdir().expect("tempdir");
    build_fake_host(root.path(), driver, gpus).expect("build fake host (run the tests as root)");
    let roots = HostRoots::under(root.path());
    (root, roots)
}

fn version(text: &str) -> DriverVersion {
    text.parse().expect("driver version")
}

fn as_json(spec: &Spec) -> Value {
    serde_json::to_value(spec).expect("spec to JSON")
}

/// `(hostPath, containerPath)` of every common mount.
fn mounts(spec: &Spec) -> Vec<(String, String)> {
    as_json(spec)["containerEdits"]["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["hostPath"].as_str().expect("hostPath").to_owned(),
                m["containerPath"]
                    .as_str()
                    .expect("containerPath")
                    .to_owned(),
            )
        })
        .collect()
}

fn device_names(spec: &Spec) -> Vec<String> {
    as_json(spec)["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().expect("name").to_owned())
        .collect()
}

fn generated(roots: &HostRoots) -> (Driver, Spec) {
    let driver = discover(roots).expect("discover");
    let spec = generate(&driver, roots).expect("generate");
    (driver, spec)
}

#[test]
fn discover_finds_the_driver_files_and_gpus() {
    let (root, roots) = fake_host(DRIVER, 2);
    let r = root.path();
    let driver = discover(&roots).expect("discover");

    assert_eq!(driver.version, version(DRIVER));
    let mut libraries: Vec<PathBuf> = [
        "libcuda",
        "libnvidia-ml",
        "libnvidia-ptxjitcompiler",
        "libnvidia-nvvm",
        "libcudadebugger",
    ]
    .iter()
    .map(|name| r.join(LIB_DIR).join(format!("{name}.so.{DRIVER}")))
    .collect();
    libraries.sort();
    assert_eq!(driver.libraries, libraries);
    assert_eq!(driver.binaries, vec![r.join("usr/bin/nvidia-smi")]);
    assert_eq!(
        driver.firmware,
        vec![r.join(format!("lib/firmware/nvidia/{DRIVER}/gsp_ga10x.bin"))]
    );
    assert_eq!(
        driver.ipc_sockets,
        vec![r.join("run/nvidia-persistenced/socket")]
    );
    assert_eq!(
        driver.device_nodes,
        vec![r.join("dev/nvidiactl"), r.join("dev/nvidia-uvm")]
    );

    let node = fs::metadata(r.join("dev/nvidia1")).expect("node");
    assert!(node.file_type().is_char_device());
    assert_eq!(node.rdev(), libc::makedev(195, 1));
    assert_eq!(node.permissions().mode() & 0o777, 0o666);

    assert_eq!(driver.gpus.len(), 2);
    for (index, gpu) in (0u32..).zip(&driver.gpus) {
        assert_eq!(gpu.index, index);
        assert_eq!(gpu.minor, index);
        assert_eq!(gpu.uuid.as_deref(), Some(gpu_uuid(index).as_str()));
        assert_eq!(gpu.pci_bus_id, gpu_pci_bus_id(index));
        assert_eq!(gpu.model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    }
}

#[test]
fn version_comes_from_libcuda_when_proc_is_missing() {
    let (root, roots) = fake_host("535.104.05", 1);
    fs::remove_file(root.path().join("proc/driver/nvidia/version")).expect("remove version");
    let driver = discover(&roots).expect("discover");
    assert_eq!(driver.version, version("535.104.05"));
    assert_eq!(
        driver.firmware.len(),
        1,
        "firmware folder uses the file spelling"
    );
}

#[test]
fn empty_root_has_no_driver() {
    let root = tempfile::tempdir().expect("tempdir");
    let error = discover(&HostRoots::under(root.path())).expect_err("no driver");
    assert!(matches!(error, CdiError::NoDriver { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "no NVIDIA driver found under {}: ",
            root.path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains("it has none of the driver's library folders (usr/lib64,"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "{}/proc/driver/nvidia/version is missing",
            root.path().display()
        )),
        "{message}"
    );
    assert!(message.contains("--driver-root"), "{message}");
}

#[test]
fn loaded_module_without_matching_libraries_is_explained() {
    let (root, roots) = fake_host("535.104.05", 1);
    fs::write(
        root.path().join("proc/driver/nvidia/version"),
        format!("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {DRIVER}  Release Build  (dvs-builder@U16)  Thu Feb 22 01:44:30 UTC 2024\n"),
    )
    .expect("write version");
    let error = discover(&roots).expect_err("mismatch");
    assert!(matches!(error, CdiError::NoLibraries { .. }), "{error:?}");
    assert!(error.to_string().contains(&format!("no lib*.so.{DRIVER}")));
}

#[test]
fn unreadable_gpu_information_names_the_file() {
    let (root, roots) = fake_host(DRIVER, 1);
    let information = root
        .path()
        .join("proc/driver/nvidia/gpus")
        .join(gpu_pci_bus_id(0))
        .join("information");
    fs::write(&information, "Model: \t\t NVIDIA H100\n").expect("truncate information");
    let error = discover(&roots).expect_err("no minor");
    assert!(
        error
            .to_string()
            .contains(&information.display().to_string()),
        "{error}"
    );
}

#[test]
fn spec_lists_devices_by_index_uuid_and_all() {
    let (root, roots) = fake_host(DRIVER, 2);
    let (_, spec) = generated(&roots);
    validate(&spec).expect("valid spec");

    assert_eq!(
        device_names(&spec),
        vec![
            "0".to_owned(),
            "1".to_owned(),
            gpu_uuid(0),
            gpu_uuid(1),
            "all".to_owned()
        ]
    );
    let json = as_json(&spec);
    assert_eq!(json["kind"], "nvidia.com/gpu");
    // Device names that start with a digit and nodes with a hostPath need CDI 0.5.0.
    assert_eq!(json["cdiVersion"], "0.5.0");
    assert!(json.get("annotations").is_none());
    assert!(json["containerEdits"].get("env").is_none());

    let gpu0 = &json["devices"][0]["containerEdits"]["deviceNodes"];
    assert_eq!(gpu0[0]["path"], "/dev/nvidia0");
    assert_eq!(
        gpu0[0]["hostPath"],
        root.path().join("dev/nvidia0").display().to_string()
    );
    let all = json["devices"][4]["containerEdits"]["deviceNodes"]
        .as_array()
        .expect("all nodes");
    let all_paths: Vec<&str> = all.iter().filter_map(|n| n["path"].as_str()).collect();
    assert_eq!(all_paths, ["/dev/nvidia0", "/dev/nvidia1"]);
    let control: Vec<&str> = json["containerEdits"]["deviceNodes"]
        .as_array()
        .expect("control nodes")
        .iter()
        .filter_map(|n| n["path"].as_str())
        .collect();
    assert_eq!(control, ["/dev/nvidiactl", "/dev/nvidia-uvm"]);
}

#[test]
fn libraries_are_mounted_in_place_and_in_run_opengl_driver() {
    let (root, roots) = fake_host(DRIVER, 1);
    let (_, spec) = generated(&roots);
    let mounts = mounts(&spec);
    let libcuda = root
        .path()
        .join(LIB_DIR)
        .join(format!("libcuda.so.{DRIVER}"))
        .display()
        .to_string();
    for container in [
        format!("/{LIB_DIR}/libcuda.so.{DRIVER}"),
        format!("/run/opengl-driver/lib/libcuda.so.{DRIVER}"),
        "/run/opengl-driver/lib/libcuda.so.1".to_owned(),
        "/run/opengl-driver/lib/libcuda.so".to_owned(),
    ] {
        assert!(
            mounts.contains(&(libcuda.clone(), container.clone())),
            "no mount of {libcuda} at {container} in {mounts:?}"
        );
    }
    let host = |relative: &str| root.path().join(relative).display().to_string();
    for (relative, container) in [
        ("usr/bin/nvidia-smi", "/usr/bin/nvidia-smi"),
        (
            "lib/firmware/nvidia/550.54.14/gsp_ga10x.bin",
            "/lib/firmware/nvidia/550.54.14/gsp_ga10x.bin",
        ),
        (
            "run/nvidia-persistenced/socket",
            "/run/nvidia-persistenced/socket",
        ),
    ] {
        assert!(
            mounts.contains(&(host(relative), container.to_owned())),
            "no mount of {relative} in {mounts:?}"
        );
    }
    let mut containers: Vec<&String> = mounts.iter().map(|(_, c)| c).collect();
    let count = containers.len();
    containers.sort();
    containers.dedup();
    assert_eq!(containers.len(), count, "duplicate container paths");
}

#[test]
fn soname_comes_from_the_elf_file_when_it_has_one() {
    let (root, roots) = fake_host(DRIVER, 1);
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("glx.c");
    fs::write(&source, "int glx_marker(void) { return 1; }\n").expect("write C");
    let library = root
        .path()
        .join(LIB_DIR)
        .join(format!("libGLX_nvidia.so.{DRIVER}"));
    let status = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libGLX_nvidia.so.0", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc failed");

    let (_, spec) = generated(&roots);
    let containers: Vec<String> = mounts(&spec).into_iter().map(|(_, c)| c).collect();
    assert!(containers.contains(&"/run/opengl-driver/lib/libGLX_nvidia.so.0".to_owned()));
    assert!(!containers.contains(&"/run/opengl-driver/lib/libGLX_nvidia.so.1".to_owned()));
}

#[test]
fn json_and_yaml_parse_back_and_read_as_installed_specs() {
    let (_root, roots) = fake_host(DRIVER, 2);
    let (driver, spec) = generated(&roots);

    let json = render(&spec, SpecFormat::Json).expect("render JSON");
    let from_json: Spec = serde_json::from_slice(&json).expect("parse JSON");
    validate(&from_json).expect("JSON spec valid");
    assert_eq!(from_json, spec);

    let yaml = render(&spec, SpecFormat::Yaml).expect("render YAML");
    let from_yaml: Spec = serde_norway::from_slice(&yaml).expect("parse YAML");
    validate(&from_yaml).expect("YAML spec valid");
    assert_eq!(from_yaml, spec);

    // Both, installed, read back through the reader `gpubox doctor` uses.
    let host = tempfile::tempdir().expect("tempdir");
    install(host.path(), "nvidia.json", &spec, SpecFormat::Json);
    install(host.path(), "nvidia.yaml", &spec, SpecFormat::Yaml);
    let specs = installed_specs(host.path());
    assert_eq!(specs.len(), 2, "{specs:?}");
    for installed in &specs {
        let installed = installed.as_ref().expect("valid installed spec");
        assert_eq!(installed.kind, "nvidia.com/gpu");
        assert_eq!(installed.devices, device_names(&spec));
        assert!(installed.devices.contains(&gpu_uuid(1)));
        assert!(spec_matches_driver(installed, &driver));
    }
}

#[test]
fn rendering_is_deterministic() {
    let (_root, roots) = fake_host(DRIVER, 3);
    let (_, first) = generated(&roots);
    let (_, second) = generated(&roots);
    for format in [SpecFormat::Json, SpecFormat::Yaml] {
        assert_eq!(
            render(&first, format).expect("render"),
            render(&second, format).expect("render")
        );
    }
}

#[test]
fn missing_gpu_node_is_explained() {
    let (root, roots) = fake_host(DRIVER, 2);
    let node = root.path().join("dev/nvidia1");
    fs::remove_file(&node).expect("remove node");
    let driver = discover(&roots).expect("discover");
    let error = generate(&driver, &roots).expect_err("missing node");
    let message = error.to_string();
    assert!(message.contains(&node.display().to_string()), "{message}");
    assert!(message.contains("nvidia-modprobe -c 1"), "{message}");
}

#[test]
fn validate_rejects_what_engines_reject() {
    let bad: Spec = serde_json::from_value(serde_json::json!({
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "bad name!", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}}],
    }))
    .expect("shape");
    let error = validate(&bad).expect_err("invalid device name");
    assert!(matches!(error, CdiError::InvalidSpec { .. }), "{error:?}");
    assert!(
        error.to_string().contains("device \"bad name!\""),
        "{error}"
    );
}

#[test]
fn write_spec_is_atomic_with_mode_0644() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("etc/cdi/nvidia.json");
    write_spec(&path, b"first").expect("write");
    write_spec(&path, b"second").expect("overwrite");
    assert_eq!(fs::read(&path).expect("read"), b"second");
    let mode = fs::metadata(&path).expect("metadata").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["nvidia.json"]);
}

#[test]
fn write_spec_error_names_the_path_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A non-empty folder where the file should go: the final rename fails.
    let path = dir.path().join("nvidia.yaml");
    fs::create_dir(&path).expect("mkdir");
    fs::write(path.join("keep"), "x").expect("write");
    let error = write_spec(&path, b"spec").expect_err("cannot replace a folder");
    assert!(matches!(error, CdiError::Write { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()));
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["nvidia.yaml"]);
}

fn install(root: &Path, name: &str, spec: &Spec, format: SpecFormat) -> PathBuf {
    let path = root.join("etc/cdi").join(name);
    write_spec(&path, &render(spec, format).expect("render")).expect("install");
    path
}

#[test]
fn stale_spec_after_a_driver_update_is_detected() {
    let (_old_root, old_roots) = fake_host("535.104.05", 1);
    let (_, old_spec) = generated(&old_roots);
    let (host, roots) = fake_host(DRIVER, 1);
    let driver = discover(&roots).expect("discover");
    let path = install(host.path(), "nvidia.yaml", &old_spec, SpecFormat::Yaml);

    let specs = installed_specs(host.path());
    assert_eq!(specs.len(), 1);
    let installed = specs[0].as_ref().expect("parsed");
    assert_eq!(installed.path, path);
    assert_eq!(installed.kind, "nvidia.com/gpu");
    assert_eq!(installed.driver_version, Some(version("535.104.05")));
    assert_eq!(
        installed.devices,
        ["0".to_owned(), gpu_uuid(0), "all".to_owned()]
    );
    assert!(!spec_matches_driver(installed, &driver));

    let (_, fresh) = generated(&roots);
    install(host.path(), "nvidia.yaml", &fresh, SpecFormat::Json);
    let specs = installed_specs(host.path());
    let installed = specs[0].as_ref().expect("parsed");
    assert_eq!(installed.driver_version, Some(version(DRIVER)));
    assert!(spec_matches_driver(installed, &driver));
}

#[test]
fn spec_missing_a_gpu_does_not_match() {
    let (one_root, one_roots) = fake_host(DRIVER, 1);
    let (_, one_gpu) = generated(&one_roots);
    let (_two_root, two_roots) = fake_host(DRIVER, 2);
    let driver = discover(&two_roots).expect("discover");
    install(one_root.path(), "nvidia.json", &one_gpu, SpecFormat::Json);
    let specs = installed_specs(one_root.path());
    let installed = specs[0].as_ref().expect("parsed");
    assert_eq!(installed.driver_version, Some(driver.version.clone()));
    assert!(!spec_matches_driver(installed, &driver));
}

#[test]
fn installed_specs_skip_other_kinds_and_name_broken_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let etc = root.path().join("etc/cdi");
    let run = root.path().join("var/run/cdi");
    fs::create_dir_all(&etc).expect("mkdir");
    fs::create_dir_all(&run).expect("mkdir");
    fs::write(
        etc.join("other.yaml"),
        "cdiVersion: 0.5.0\nkind: vendor.com/net\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n",
    )
    .expect("write");
    fs::write(etc.join("notes.txt"), "not a spec").expect("write");
    let broken = run.join("broken.json");
    fs::write(&broken, "{ \"kind\": ").expect("write");
    let invalid = run.join("invalid.yaml");
    fs::write(
        &invalid,
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: 'bad name!'\n  containerEdits:\n    env: [A=1]\n",
    )
    .expect("write");

    let specs = installed_specs(root.path());
    assert_eq!(specs.len(), 2, "{specs:?}");
    let errors: Vec<String> = specs
        .iter()
        .map(|s| s.as_ref().expect_err("error").to_string())
        .collect();
    assert!(
        errors[0].contains(&broken.display().to_string()),
        "{errors:?}"
    );
    assert!(
        errors[1].contains(&invalid.display().to_string()),
        "{errors:?}"
    );
    assert!(installed_specs(&root.path().join("missing")).is_empty());
}

#[test]
fn installed_spec_with_an_unknown_field_is_refused() {
    let (host, roots) = fake_host(DRIVER, 1);
    let (_, spec) = generated(&roots);
    let mut json = as_json(&spec);
    json["devices"][0]["containerEdits"]["unknownEdit"] = "x".into();
    let path = host.path().join("etc/cdi/nvidia.json");
    write_spec(&path, json.to_string().as_bytes()).expect("write");
    let specs = installed_specs(host.path());
    let error = specs[0].as_ref().expect_err("unknown field");
    assert!(matches!(error, CdiError::SpecParse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("unknownEdit"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn installed_spec_with_a_too_low_version_names_the_reason() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("etc/cdi/nvidia.yaml");
    write_spec(
        &path,
        b"cdiVersion: 0.3.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n",
    )
    .expect("write");
    let specs = installed_specs(root.path());
    let error = specs[0].as_ref().expect_err("version too low");
    assert!(
        matches!(error, CdiError::InstalledSpecInvalid { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("cdiVersion 0.3.0"), "{message}");
    assert!(message.contains("needs CDI 0.5.0"), "{message}");
}

fn fake_host_for(architecture: Architecture) -> (TempDir, HostRoots) {
    let root = tempfile::tempdir().expect("tempdir");
    build_fake_host_for(root.path(), DRIVER, 1, architecture)
        .expect("build fake host (run the tests as root)");
    let roots = HostRoots::under(root.path());
    (root, roots)
}

/// The driver libraries of [`LIBRARIES`] under `root/dir`, sorted.
fn libraries_in(root: &Path, dir: &str) -> Vec<PathBuf> {
    let mut libraries: Vec<PathBuf> = LIBRARIES
        .iter()
        .map(|name| root.join(dir).join(format!("{name}.so.{DRIVER}")))
        .collect();
    libraries.sort();
    libraries
}

#[test]
fn an_aarch64_host_gives_a_spec_of_its_multiarch_libraries() {
    assert_eq!(library_dir(Architecture::Arm64), AARCH64_LIB_DIR);
    let (root, roots) = fake_host_for(Architecture::Arm64);
    let r = root.path();
    assert!(!r.join(LIB_DIR).exists());
    let driver = discover(&roots).expect("discover");
    assert_eq!(driver.version, version(DRIVER));
    assert_eq!(driver.architecture, Some(Architecture::Arm64));
    assert_eq!(driver.libraries, libraries_in(r, AARCH64_LIB_DIR));
    assert_eq!(driver.binaries, vec![r.join("usr/bin/nvidia-smi")]);
    assert_eq!(
        driver.firmware,
        vec![r.join(format!("lib/firmware/nvidia/{DRIVER}/gsp_ga10x.bin"))]
    );
    assert_eq!(driver.gpus.len(), 1);
    assert_eq!(driver.gpus[0].model.as_deref(), Some("NVIDIA GH200 480GB"));

    let spec = generate(&driver, &roots).expect("generate");
    validate(&spec).expect("valid spec");
    let mounts = mounts(&spec);
    for name in LIBRARIES {
        let host = r
            .join(AARCH64_LIB_DIR)
            .join(format!("{name}.so.{DRIVER}"))
            .display()
            .to_string();
        for container in [
            format!("/{AARCH64_LIB_DIR}/{name}.so.{DRIVER}"),
            format!("/run/opengl-driver/lib/{name}.so.{DRIVER}"),
            format!("/run/opengl-driver/lib/{name}.so.1"),
            format!("/run/opengl-driver/lib/{name}.so"),
        ] {
            assert!(
                mounts.contains(&(host.clone(), container.clone())),
                "no mount of {host} at {container} in {mounts:?}"
            );
        }
    }
    // Every library mount is of the aarch64 folder; nothing names x86_64.
    let library_mounts: Vec<&(String, String)> = mounts
        .iter()
        .filter(|(host, _)| host.contains(".so."))
        .collect();
    assert_eq!(library_mounts.len(), LIBRARIES.len() * 4, "{mounts:?}");
    assert!(
        library_mounts
            .iter()
            .all(|(host, _)| host.starts_with(&r.join(AARCH64_LIB_DIR).display().to_string())),
        "{mounts:?}"
    );
    assert!(
        mounts
            .iter()
            .all(|(host, container)| !host.contains("x86_64") && !container.contains("x86_64")),
        "{mounts:?}"
    );
}

#[test]
fn the_tree_not_the_machine_says_which_multiarch_folder_is_the_hosts() {
    // An x86-64 tree is an x86-64 host whatever machine reads it.
    let (_amd64_root, amd64_roots) = fake_host_for(Architecture::Amd64);
    assert_eq!(
        discover(&amd64_roots).expect("discover").architecture,
        Some(Architecture::Amd64)
    );

    // An aarch64 host with a stray x86_64 folder of the same driver version (a foreign
    // package without libcuda): that folder is not the host's and is not mounted.
    let (root, roots) = fake_host_for(Architecture::Arm64);
    let stray = root.path().join(LIB_DIR);
    fs::create_dir_all(&stray).expect("mkdir");
    fs::write(stray.join(format!("libnvidia-ml.so.{DRIVER}")), "x86_64").expect("write");
    let driver = discover(&roots).expect("discover");
    assert_eq!(driver.architecture, Some(Architecture::Arm64));
    assert_eq!(driver.libraries, libraries_in(root.path(), AARCH64_LIB_DIR));
    let spec = generate(&driver, &roots).expect("generate");
    assert!(
        mounts(&spec)
            .iter()
            .all(|(host, _)| !host.contains("x86_64")),
        "{:?}",
        mounts(&spec)
    );
}

#[test]
fn both_multiarch_folders_with_a_libcuda_defer_to_the_running_machine() {
    let native = match Architecture::native() {
        Some(native) => native,
        None => return,
    };
    let foreign = Architecture::ALL
        .into_iter()
        .find(|arch| *arch != native)
        .expect("another architecture");
    let (root, roots) = fake_host_for(foreign);
    // The running machine's own driver package installed beside the foreign one.
    let own = root.path().join(library_dir(native));
    fs::create_dir_all(&own).expect("mkdir");
    fs::write(own.join(format!("libcuda.so.{DRIVER}")), "native").expect("write");
    let driver = discover(&roots).expect("discover");
    assert_eq!(driver.architecture, Some(native));
    assert_eq!(
        driver.libraries,
        vec![own.join(format!("libcuda.so.{DRIVER}"))]
    );
}

#[test]
fn a_usr_lib64_driver_names_no_architecture() {
    // Fedora and RHEL (x86-64 and aarch64 alike) install the driver in /usr/lib64.
    let (root, roots) = fake_host_for(Architecture::Arm64);
    let r = root.path();
    fs::rename(r.join(AARCH64_LIB_DIR), r.join("usr/lib64")).expect("move to usr/lib64");
    let driver = discover(&roots).expect("discover");
    assert_eq!(driver.architecture, None);
    assert_eq!(driver.libraries, libraries_in(r, "usr/lib64"));
    let spec = generate(&driver, &roots).expect("generate");
    assert!(mounts(&spec).contains(&(
        r.join(format!("usr/lib64/libcuda.so.{DRIVER}"))
            .display()
            .to_string(),
        format!("/usr/lib64/libcuda.so.{DRIVER}")
    )));
}
