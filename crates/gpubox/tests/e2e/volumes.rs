//! `volumes`: the folders a spec names as persistent volumes become the image
//! config's `Volumes`, as skopeo and `gpubox inspect` read them, and podman
//! mounts a volume at each when it runs the image.

use std::process::Command;

use serde_json::json;

use super::common::*;

const SPEC: &str = "name = \"gpubox-e2e-volumes\"\ncuda.enable = false\nhostBinaries = [\"/bin/cat\"]\nvolumes = [\"/workspace\", \"/data/\"]\ncmd = [\"/bin/cat\", \"/proc/self/mountinfo\"]\n";

#[test]
fn volumes_reach_the_config_and_podman_mounts_them() {
    if !have("skopeo") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = write_spec(work.path(), "gpubox.toml", SPEC);
    let image = format!("oci:{}:v1", work.path().join("built").display());
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .args(["-q", "-o", &image]),
    );

    let out = run_ok(Command::new("skopeo").args(["inspect", "--config", &image]));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // Exactly the two, `/data/` written without its trailing slash.
    assert_eq!(
        config["config"]["Volumes"],
        json!({ "/data": {}, "/workspace": {} }),
        "{config}"
    );
    let inspected = stdout(&run_ok(gpubox(&cache).args(["inspect", &image])));
    assert!(
        inspected.contains("\nVolumes:      /data, /workspace\n"),
        "{inspected}"
    );

    if !have("podman") {
        return;
    }
    let (_, mountinfo) = build_and_run_in_podman(&cache, &spec, "gpubox-e2e-volumes:v1", &[], &[]);
    // The fifth field of a mountinfo line is where the mount is.
    let mount_points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .collect();
    for volume in ["/workspace", "/data"] {
        assert!(
            mount_points.contains(&volume),
            "podman mounted nothing at {volume}:\n{mountinfo}"
        );
    }
}
