//! Images built from a real Nix closure load and run in podman and in a Docker
//! engine, and every output kind passes `skopeo inspect`.

use std::path::Path;
use std::process::Command;

use super::common::*;

/// A spec whose program (a static binary built by Nix) prints the environment
/// variable the spec sets and a file it references by store path.
fn hello_spec(dir: &Path, name: &str) -> std::path::PathBuf {
    let hello = nix_fixture("hello");
    write_spec(
        dir,
        "gpubox.toml",
        &format!(
            r#"name = "{name}"
tag = "t1"
systemPackages = [{hello}]
extraEnv = {{ GREETING = "hi from the spec" }}
labels = {{ "org.example.team" = "ml" }}
exposedPorts = ["8080"]
cmd = ["hello", "first arg"]
"#,
            hello = toml_str(&hello)
        ),
    )
}

fn assert_hello_output(engine: &str, out: &str) {
    assert!(
        out.contains("GREETING=hi from the spec"),
        "{engine}: env not seen:\n{out}"
    );
    assert!(
        out.contains("file: hello from the nix store"),
        "{engine}: store reference not readable:\n{out}"
    );
    assert!(
        out.contains("arg: first arg"),
        "{engine}: cmd arguments lost:\n{out}"
    );
}

#[test]
fn runs_in_podman() {
    if !have("nix") || !have("podman") {
        return;
    }
    let work = tempdir();
    let spec = hello_spec(work.path(), "gpubox-e2e-podman");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "podman:gpubox-e2e-podman:t1"]),
    );
    let out = run_ok(Command::new("podman").args([
        "run",
        "--rm",
        "--network",
        "none",
        "gpubox-e2e-podman:t1",
    ]));
    assert_hello_output("podman", &stdout(&out));

    // gpubox-init is PID 1 and hands back the main process's exit status.
    let status = Command::new("podman")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/gpubox-init",
            "gpubox-e2e-podman:t1",
            "/nix/store/does-not-exist",
        ])
        .output()
        .expect("podman run");
    assert_eq!(
        status.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let inspect = run_ok(gpubox(&work.path().join("cache")).args([
        "inspect",
        "--json",
        "podman:gpubox-e2e-podman:t1",
    ]));
    let report: serde_json::Value =
        serde_json::from_slice(&inspect.stdout).expect("inspect --json");
    let env = report["config"]["Env"].to_string();
    assert!(env.contains("GREETING=hi from the spec"), "{env}");
    let _ = Command::new("podman")
        .args(["rmi", "-f", "gpubox-e2e-podman:t1"])
        .output();
}

#[test]
fn runs_in_docker() {
    if !have("nix") || !have("docker") {
        return;
    }
    let work = tempdir();
    let spec = hello_spec(work.path(), "gpubox-e2e-docker");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "docker-daemon:gpubox-e2e-docker:t1"]),
    );
    let out = run_ok(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "gpubox-e2e-docker:t1",
    ]));
    assert_hello_output("docker", &stdout(&out));

    let config = run_ok(Command::new("docker").args(["image", "inspect", "gpubox-e2e-docker:t1"]));
    let config: serde_json::Value =
        serde_json::from_slice(&config.stdout).expect("docker image inspect");
    let config = &config[0]["Config"];
    assert_eq!(config["Entrypoint"][0], "/bin/gpubox-init");
    assert_eq!(config["Labels"]["org.example.team"], "ml");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(config["WorkingDir"], "/root");
    let _ = Command::new("docker")
        .args(["rmi", "-f", "gpubox-e2e-docker:t1"])
        .output();
}

/// `podman load` names an oci-archive as its index entry says: gpubox writes the
/// spec's `NAME:TAG` (or the reference the output names) as `ref.name`, and beside it
/// `io.containerd.image.name`, qualified as podman names local images, which podman
/// and Docker 25+ read. A bare word stays a tag (`ref.name` only), as in skopeo.
#[test]
fn podman_loads_an_oci_archive_under_its_name() {
    if !have("nix") || !have("podman") || !have("skopeo") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = hello_spec(work.path(), "gpubox-e2e-archive-name");
    let cases = [
        (
            "default.tar",
            "",
            "localhost/gpubox-e2e-archive-name:t1",
            Some("localhost/gpubox-e2e-archive-name:t1"),
        ),
        (
            "named.tar",
            ":quay.io/gpubox-e2e/app:2",
            "quay.io/gpubox-e2e/app:2",
            Some("quay.io/gpubox-e2e/app:2"),
        ),
        ("tagged.tar", ":t3", "localhost/t3:latest", None),
    ];
    for (file, suffix, podman_name, docker_name) in cases {
        let archive = work.path().join(file);
        let output = format!("oci-archive:{}{suffix}", archive.display());
        run_ok(gpubox(&cache).arg("build").arg(&spec).args(["-o", &output]));
        let index = run_ok(
            Command::new("tar")
                .arg("-xOf")
                .arg(&archive)
                .arg("index.json"),
        );
        let index: serde_json::Value = serde_json::from_slice(&index.stdout).expect("index.json");
        let annotations = &index["manifests"][0]["annotations"];
        assert_eq!(
            annotations["io.containerd.image.name"].as_str(),
            docker_name,
            "{output}: {index}"
        );
        // skopeo finds the entry by the reference the output named.
        run_ok(Command::new("skopeo").args(["inspect", &output]));
        let _ = Command::new("podman")
            .args(["rmi", "-f", podman_name])
            .output();
        // Through gpubox's own load (the archive on `podman load`'s standard
        // input), which tries again when podman 4.3's storage loses a layer
        // another test loads at the same moment.
        let loaded = gpubox_engines::load(
            gpubox_engines::Engine::Podman,
            |w| std::io::copy(&mut std::fs::File::open(&archive)?, w).map(drop),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{output}: {e}"));
        assert!(
            loaded.contains(&format!("Loaded image: {podman_name}")),
            "{output}: {loaded}"
        );
        run_ok(Command::new("podman").args(["image", "exists", podman_name]));
        let _ = Command::new("podman")
            .args(["rmi", "-f", podman_name])
            .output();
    }
}

#[test]
fn skopeo_accepts_every_output_kind() {
    if !have("nix") || !have("skopeo") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = hello_spec(work.path(), "gpubox-e2e-skopeo");
    let dir = work.path().join("layout");
    let oci_archive = work.path().join("image.oci.tar");
    let docker_archive = work.path().join("image.docker.tar");
    let mut outputs = vec![
        (
            format!("oci:{}:t1", dir.display()),
            format!("oci:{}:t1", dir.display()),
        ),
        (
            format!("oci-archive:{}", oci_archive.display()),
            format!("oci-archive:{}", oci_archive.display()),
        ),
        (
            format!("docker-archive:{}", docker_archive.display()),
            format!("docker-archive:{}", docker_archive.display()),
        ),
    ];
    if have("podman") {
        outputs.push((
            "podman:gpubox-e2e-skopeo:t1".into(),
            "containers-storage:localhost/gpubox-e2e-skopeo:t1".into(),
        ));
    }
    if have("docker") {
        outputs.push((
            "docker-daemon:gpubox-e2e-skopeo:t1".into(),
            "docker-daemon:gpubox-e2e-skopeo:t1".into(),
        ));
    }
    let mut layer_counts = Vec::new();
    for (output, skopeo_name) in &outputs {
        run_ok(gpubox(&cache).arg("build").arg(&spec).args(["-o", output]));
        let raw = run_ok(Command::new("skopeo").args(["inspect", "--config", skopeo_name]));
        let config: serde_json::Value =
            serde_json::from_slice(&raw.stdout).expect("skopeo config JSON");
        let env = config["config"]["Env"].to_string();
        assert!(env.contains("GREETING=hi from the spec"), "{output}: {env}");
        let raw = run_ok(Command::new("skopeo").args(["inspect", skopeo_name]));
        let info: serde_json::Value =
            serde_json::from_slice(&raw.stdout).expect("skopeo inspect JSON");
        layer_counts.push(info["Layers"].as_array().map_or(0, Vec::len));
        // gpubox reads every kind back too.
        let ours = run_ok(gpubox(&cache).args(["inspect", "--json", output]));
        let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).expect("inspect --json");
        assert_eq!(
            ours["layers"].as_array().map_or(0, Vec::len),
            *layer_counts.last().unwrap_or(&0),
            "{output}"
        );
    }
    assert!(
        layer_counts.iter().all(|&n| n == layer_counts[0] && n > 1),
        "{layer_counts:?}"
    );
    // skopeo copies the layout (checking every digest on the way).
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:t1", dir.display()),
        &format!("dir:{}", work.path().join("copied").display()),
    ]));
    let _ = Command::new("podman")
        .args(["rmi", "-f", "gpubox-e2e-skopeo:t1"])
        .output();
    let _ = Command::new("docker")
        .args(["rmi", "-f", "gpubox-e2e-skopeo:t1"])
        .output();
}

/// `inspect`, `diff`, `push` and `doctor` take a bare `NAME:TAG` as the local engine's
/// image, as `run` does.
#[test]
fn every_command_takes_a_bare_name_for_the_engines_image() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let image = "gpubox-e2e-bare:v1";
    run_ok(build_example_to(&cache, format!("podman:{image}")).arg("-q"));
    run_ok(
        build_example_to(&cache, "oci:built:v1")
            .current_dir(work.path())
            .arg("-q"),
    );
    let inspected = stdout(&run_ok(gpubox(&cache).args(["inspect", "--json", image])));
    let json: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(
        json["config"]["Entrypoint"][0], "/bin/gpubox-init",
        "{json}"
    );
    assert_eq!(json["source"], "podman:gpubox-e2e-bare:v1", "{json}");
    let diff = stdout(&run_ok(
        gpubox(&cache)
            .args(["diff", "--json", image, "oci:built:v1"])
            .current_dir(work.path()),
    ));
    let diff: serde_json::Value = serde_json::from_str(&diff).unwrap();
    assert!(diff.to_string().contains("shared"), "{diff}");
    // A file without a transport is not taken for an image name.
    std::fs::write(work.path().join("m.tar"), "").unwrap();
    let err = unwrapped(&run_fails(
        gpubox(&cache)
            .args(["inspect", "m.tar"])
            .current_dir(work.path()),
    ));
    assert!(err.contains("did you mean oci-archive:m.tar"), "{err}");
    let _ = Command::new("podman").args(["rmi", "-f", image]).output();
}
