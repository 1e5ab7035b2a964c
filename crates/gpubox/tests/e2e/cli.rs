//! What users expect of a Rust command line: a version with the source's revision,
//! completions and man pages from the argument definitions, a starter spec, and JSON
//! wherever a command prints a report.

use std::process::Command;

use gpubox_oci::source::ImageReader;

use super::common::*;

#[test]
fn the_version_names_the_git_revision() {
    let out = run_ok(gpubox(&tempdir().path().join("cache")).arg("--version"));
    let version = stdout(&out);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let head = stdout(&head).trim().to_owned();
            assert!(version.starts_with("gpubox 0."), "{version}");
            assert!(version.contains(&head), "{version} should name {head}");
        }
        // A source tree without git (an unpacked release): the version alone.
        _ => assert!(version.starts_with("gpubox 0."), "{version}"),
    }
}

#[test]
fn completions_and_man_pages_come_from_the_commands() {
    let cache = tempdir();
    let bash = stdout(&run_ok(gpubox(cache.path()).args(["completions", "bash"])));
    for command in [
        "build",
        "inspect",
        "completions",
        "init",
        "--no-gpu",
        "--digestfile",
    ] {
        assert!(bash.contains(command), "bash completion lacks {command}");
    }
    let script = cache.path().join("gpubox.bash");
    std::fs::write(&script, &bash).unwrap();
    run_ok(Command::new("bash").arg("-n").arg(&script));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let text = stdout(&run_ok(gpubox(cache.path()).args(["completions", shell])));
        assert!(text.contains("inspect"), "{shell}");
    }
    let page = stdout(&run_ok(gpubox(cache.path()).arg("man")));
    assert!(page.contains(".TH gpubox 1"), "{page}");
    assert!(page.contains("doctor"), "{page}");
    let dir = cache.path().join("man");
    run_ok(gpubox(cache.path()).args(["man", "--dir"]).arg(&dir));
    let build_page = std::fs::read_to_string(dir.join("gpubox-build.1")).unwrap();
    assert!(build_page.contains("digestfile"), "{build_page}");
    // --digestfile is offered only where something is written.
    let inspect_help = stdout(&run_ok(gpubox(cache.path()).args(["inspect", "--help"])));
    assert!(!inspect_help.contains("--digestfile"), "{inspect_help}");
    let build_help = stdout(&run_ok(gpubox(cache.path()).args(["build", "--help"])));
    assert!(
        build_help.contains("docker://HOST[:PORT]/REPO[:TAG]"),
        "{build_help}"
    );
    assert!(
        build_help.contains("oci-archive:FILE[:NAME:TAG]"),
        "{build_help}"
    );
}

#[test]
fn init_writes_a_starter_that_builds_and_runs_and_keeps_what_is_there() {
    let work = tempdir();
    let dir = work.path().join("My Project");
    let cache = work.path().join("cache");
    run_ok(gpubox(&cache).arg("init").arg(&dir).arg("--nix"));
    let spec = std::fs::read_to_string(dir.join("gpubox.toml")).unwrap();
    assert!(spec.contains("name = \"my-project\""), "{spec}");
    assert!(dir.join("flake.nix").is_file());
    // A second run changes nothing and says why.
    std::fs::write(dir.join("gpubox.toml"), "# mine\n").unwrap();
    let err = unwrapped(&run_fails(gpubox(&cache).arg("init").arg(&dir)));
    assert!(
        err.contains("gpubox.toml already exists; nothing was written"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("gpubox.toml")).unwrap(),
        "# mine\n"
    );
    std::fs::write(dir.join("gpubox.toml"), &spec).unwrap();
    if have("nix") {
        run_ok(
            Command::new("nix-instantiate")
                .arg("--parse")
                .arg(dir.join("flake.nix")),
        );
    }
    if !have("podman") {
        return;
    }
    let (_, said) = build_and_run_in_podman(
        &cache,
        &dir.join("gpubox.toml"),
        "gpubox-e2e-starter:v1",
        &[],
        &[],
    );
    assert_eq!(said, "hello from my-project\n");
}

#[test]
fn cache_gc_reports_as_json_too() {
    let work = tempdir();
    let cache = work.path().join("cache");
    run_ok(
        build_example_to(&cache, "oci:built")
            .current_dir(work.path())
            .arg("-q"),
    );
    let layers = ImageReader::open_oci_dir(&work.path().join("built"), None)
        .expect("the built image")
        .layers()
        .len();
    let gc = |args: &[&str]| -> serde_json::Value {
        let out = run_ok(gpubox(&cache).args(["cache", "gc", "--json"]).args(args));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    // Every layer the build made has its cache entry: nothing to collect.
    let report = gc(&[]);
    assert_eq!(report["unreferencedBlobs"]["count"], 0, "{report}");
    assert_eq!(report["remainingBlobs"]["count"], layers, "{report}");
    // With no room, every entry and its blob goes.
    let report = gc(&["--max-size", "0"]);
    assert_eq!(report["evictedBlobs"]["count"], layers, "{report}");
    assert!(
        report["evictedBlobs"]["bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["remainingBlobs"]["count"], 0, "{report}");
}
