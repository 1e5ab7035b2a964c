//! The layer cache is an optimisation only: `gpubox cache info` reports what a
//! build left in it, `gpubox cache gc --max-size 0` empties it, and the next build
//! writes the same image.

use std::path::Path;

use super::common::*;

/// Builds the bundled example into an oci-archive in `work`; returns the
/// manifest digest gpubox printed.
fn build_example(work: &Path, cache: &Path) -> String {
    let spec = repo_root().join("examples/hello/gpubox.toml");
    let archive = work.join("hello.tar");
    let out = run_ok(
        gpubox(cache)
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    stdout(&out).trim().to_owned()
}

fn cache_info(cache: &Path) -> serde_json::Value {
    let out = run_ok(gpubox(cache).args(["cache", "info", "--json"]));
    serde_json::from_str(&stdout(&out)).expect("cache info prints JSON")
}

#[test]
fn gc_empties_the_cache_and_the_next_build_is_the_same() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let first = build_example(work.path(), &cache);
    let second = build_example(work.path(), &cache);
    assert_eq!(first, second);
    assert!(first.starts_with("sha256:"), "{first}");

    let info = cache_info(&cache);
    assert!(info["blobs"]["count"].as_u64() > Some(0), "{info}");
    assert!(info["blobs"]["bytes"].as_u64() > Some(0), "{info}");
    assert_eq!(
        info["root"].as_str(),
        Some(cache.to_str().unwrap()),
        "{info}"
    );

    run_ok(gpubox(&cache).args(["cache", "gc", "--max-size", "0"]));
    let info = cache_info(&cache);
    assert_eq!(info["blobs"]["count"], 0, "{info}");
    assert_eq!(info["entries"], 0, "{info}");
    assert_eq!(info["tempFiles"]["count"], 0, "{info}");
    let blobs = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);

    assert_eq!(build_example(work.path(), &cache), first);
}

#[test]
fn a_bad_max_size_names_the_value_and_the_accepted_forms() {
    let work = tempdir();
    let stderr =
        run_fails(gpubox(&work.path().join("cache")).args(["cache", "gc", "--max-size", "10X"]));
    assert!(stderr.contains("`10X`"), "{stderr}");
    assert!(stderr.contains("500M"), "{stderr}");
}
