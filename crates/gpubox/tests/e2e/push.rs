//! Pushing to a real registry (`docker-registry`, started per test on a free
//! local port over plain HTTP): the registry serves gpubox's manifest byte for
//! byte, and a second push sends no blob.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use super::common::*;
use super::registry::Registry;

/// The manifest an OCI layout's index names for its only image.
fn layout_manifest(dir: &Path) -> Vec<u8> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
}

#[test]
fn builds_push_to_a_registry_and_pushing_again_sends_nothing() {
    if !have("docker-registry") || !have("skopeo") {
        return;
    }
    let work = tempdir();
    let registry_dir = work.path().join("registry");
    std::fs::create_dir(&registry_dir).unwrap();
    let registry = Registry::start(&registry_dir);
    let cache = work.path().join("cache");
    let spec = repo_root().join("examples/hello/gpubox.toml");
    let digest_file = work.path().join("digest");

    let pushed = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(registry.image("hello:v1"))
            .arg("--tls-verify=false")
            .arg("--digestfile")
            .arg(&digest_file),
    );
    let digest = stdout(&pushed).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);

    let inspected = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(registry.image("hello:v1")),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));

    // The registry's manifest is the one an `oci:` build of the same spec writes.
    let built = work.path().join("built");
    let local = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci:{}:v1", built.display())),
    );
    assert_eq!(stdout(&local).trim(), digest);
    let copied = work.path().join("copied");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(registry.image("hello:v1"))
            .arg(format!("oci:{}:v1", copied.display())),
    );
    assert_eq!(layout_manifest(&copied), layout_manifest(&built));

    // Every blob is there already: only the manifest goes up, unchanged.
    let again = run_ok(
        gpubox(&cache)
            .arg("push")
            .arg(format!("oci:{}:v1", built.display()))
            .arg(registry.image("hello:v2"))
            .arg("--tls-verify=false"),
    );
    assert_eq!(stdout(&again).trim(), digest);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("uploaded 0 blobs (0 bytes)"), "{said}");
    let retagged = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(registry.image("hello:v2")),
    );
    let retagged: serde_json::Value = serde_json::from_slice(&retagged.stdout).unwrap();
    assert_eq!(retagged["Digest"].as_str(), Some(digest.as_str()));
}

#[test]
fn pushing_to_a_registry_that_is_not_there_fails_and_names_it() {
    let work = tempdir();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let spec = repo_root().join("examples/hello/gpubox.toml");
    let stderr = run_fails(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("docker://127.0.0.1:{port}/hello:v1"))
            .arg("--tls-verify=false")
            .arg("--creds")
            .arg("someone:hunter2"),
    );
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // The same through --creds-stdin: the password never reaches the output.
    let mut child = gpubox(&work.path().join("cache"))
        .arg("build")
        .arg(&spec)
        .arg("-o")
        .arg(format!("docker://127.0.0.1:{port}/hello:v1"))
        .args(["--tls-verify=false", "--creds-stdin"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"someone:hunter2\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
