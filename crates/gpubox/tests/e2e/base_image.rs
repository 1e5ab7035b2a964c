//! `fromImage`: an image built on a base from an `oci:` folder or a
//! `docker-archive:` file keeps the base's layers byte for byte, runs in podman
//! with the base's files and our environment, and a base that does not fit
//! `maxLayers` or comes from a registry is refused with a clear message.

use std::path::Path;
use std::process::Command;

use gpubox_oci::source::ImageReader;
use gpubox_oci::Compression;

use super::common::*;

/// Builds the bundled example (files from this machine, no Nix) into
/// `oci:DIR:base` and returns DIR.
fn build_example_base(work: &Path) -> std::path::PathBuf {
    let dir = work.join("base-layout");
    run_ok(
        gpubox(&work.join("cache"))
            .arg("build")
            .arg(repo_root().join("examples/hello/gpubox.toml"))
            .arg("-o")
            .arg(format!("oci:{}:base", dir.display())),
    );
    dir
}

/// A spec on `from` with its own file, variable and command.
fn derived_spec(work: &Path, from: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(work.join("mine.txt"), "my own file\n").expect("write mine.txt");
    write_spec(
        work,
        "derived.toml",
        &format!(
            r#"name = "gpubox-e2e-derived"
tag = "t1"
fromImage = "{from}"
copyToRoot = [{{ src = "mine.txt", dst = "/mine.txt" }}]
extraEnv = {{ MINE = "and mine" }}
cmd = ["/bin/sh", "-c", "cat /app/hello.sh >/dev/null && echo $GREETING $MINE && cat /mine.txt"]
{extra}"#
        ),
    )
}

fn env_of(reader: &ImageReader) -> Vec<String> {
    reader.config().expect("config")["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().expect("Env entry").to_owned())
        .collect()
}

#[test]
fn oci_base_layers_are_reused_and_the_image_runs_in_podman() {
    let work = tempdir();
    let base_dir = build_example_base(work.path());
    let spec = derived_spec(work.path(), &format!("oci:{}:base", base_dir.display()), "");
    let derived = work.path().join("derived.tar");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", derived.display())),
    );

    let base = ImageReader::open_oci_dir(&base_dir, Some("base")).expect("read the base");
    let (image, _) = read_oci_archive(&derived);
    let base_layers = base.layers();
    assert_eq!(image.layers().len(), base_layers.len() + 1);
    assert_eq!(&image.layers()[..base_layers.len()], base_layers);

    let base_config = base.config().expect("base config");
    let config = image.config().expect("config");
    let history = config["history"].as_array().expect("history");
    let base_history = base_config["history"].as_array().expect("base history");
    assert_eq!(&history[..base_history.len()], base_history.as_slice());
    assert_eq!(history.len(), base_history.len() + 1);
    // Not set in the derived spec: the base's working folder, PATH and labels.
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.description"],
        "gpubox quick-start example"
    );
    let env = env_of(&image);
    assert!(
        env.contains(&"PATH=/usr/local/bin:/usr/bin:/bin".to_owned()),
        "{env:?}"
    );
    assert!(env.contains(&"MINE=and mine".to_owned()), "{env:?}");
    assert!(
        env.contains(&"GREETING=hello from a gpubox image".to_owned()),
        "{env:?}"
    );

    if !have("podman") {
        return;
    }
    // A rebuild takes the base's layers from the cache instead of reading them.
    let again = run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", "podman:gpubox-e2e-derived:t1"]),
    );
    let log = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        log.matches("(reused as is, cached)").count(),
        base_layers.len(),
        "{log}"
    );
    let out = run_ok(Command::new("podman").args([
        "run",
        "--rm",
        "--network",
        "none",
        "gpubox-e2e-derived:t1",
    ]));
    let _ = Command::new("podman")
        .args(["rmi", "-f", "gpubox-e2e-derived:t1"])
        .output();
    let said = stdout(&out);
    assert!(
        said.contains("hello from a gpubox image and mine"),
        "{said}"
    );
    assert!(said.contains("my own file"), "{said}");
}

#[test]
fn docker_archive_base_layers_are_reused_uncompressed() {
    if !have("skopeo") {
        return;
    }
    let work = tempdir();
    let base_dir = build_example_base(work.path());
    // skopeo writes docker-archive layers as plain tars.
    let archive = work.path().join("base-docker.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:base", base_dir.display()),
        &format!("docker-archive:{}:base:v1", archive.display()),
    ]));
    let spec = derived_spec(
        work.path(),
        &format!("docker-archive:{}", archive.display()),
        "",
    );
    let derived = work.path().join("derived.tar");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", derived.display())),
    );

    let base = ImageReader::open_docker_archive(&archive).expect("read the base");
    let (image, summaries) = read_oci_archive(&derived);
    for (ours, theirs) in image.layers().iter().zip(base.layers()) {
        assert_eq!(ours.digest, theirs.digest);
        assert_eq!(ours.compression, Compression::None);
        assert_eq!(ours.diff_id.as_ref(), Some(&theirs.digest));
    }
    assert!(summaries[0].entry_count > 0);

    let inspected = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", derived.display()),
    ]));
    let manifest: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("manifest");
    let first = &manifest["layers"][0];
    assert_eq!(first["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(first["digest"], base.layers()[0].digest.to_string());
}

#[test]
fn a_base_with_more_layers_than_max_layers_allows_is_refused() {
    let work = tempdir();
    let base_dir = build_example_base(work.path());
    // One base layer plus our top layer: a two-layer base for the next spec.
    let spec = derived_spec(work.path(), &format!("oci:{}:base", base_dir.display()), "");
    let two_layers = work.path().join("two-layers");
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci:{}:two", two_layers.display())),
    );
    let spec = derived_spec(
        work.path(),
        &format!("oci:{}:two", two_layers.display()),
        "maxLayers = 2\n",
    );
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", &format!("oci:{}", work.path().join("out").display())]),
    );
    assert!(stderr.contains("fromImage"), "{stderr}");
    assert!(stderr.contains("has 2 layers"), "{stderr}");
    assert!(stderr.contains("maxLayers = 2"), "{stderr}");
}

#[test]
fn a_registry_base_is_not_supported_yet() {
    let work = tempdir();
    let spec = derived_spec(work.path(), "docker://x/y", "");
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .args(["-o", &format!("oci:{}", work.path().join("out").display())]),
    );
    let said = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(said.contains("fromImage `docker://x/y`"), "{stderr}");
    assert!(said.contains("not supported yet"), "{stderr}");
}
