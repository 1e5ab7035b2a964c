//! The layer cache is an optimisation only: `gpubox cache info` reports what a
//! build left in it, `gpubox cache gc --max-size 0` empties it, and the next build
//! writes the same image. Images pulled from a registry (a base, or one
//! `gpubox inspect` read) are cache entries: `gc` keeps them, so a rebuild
//! downloads nothing, until `--max-size` evicts them.

use std::path::Path;

use super::common::*;
use super::registry::{Registry, RegistrySetup};
use gpubox_build::Count;

/// Builds the bundled example into an oci-archive in `work`; returns the
/// manifest digest gpubox printed.
fn build_example(work: &Path, cache: &Path) -> String {
    let archive = work.join("hello.tar");
    let out = run_ok(&mut build_example_to(
        cache,
        format!("oci-archive:{}", archive.display()),
    ));
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

/// Builds the bundled example with the cache `WORK/cache` and pushes it to
/// `image` with `flags` (how to reach the registry); returns how many blobs
/// (config and layers) it has. The tests below pull with a cache of their
/// own, `WORK/pull-cache`.
fn push_example(work: &Path, image: &str, flags: &[&str]) -> usize {
    let built = build_hello(work);
    run_ok(push_built(work, &built, image).args(flags));
    let reader = gpubox_oci::source::ImageReader::open_oci_dir(&built, Some("v1"))
        .expect("read the example back");
    reader.layers().len() + 1
}

#[test]
fn gc_keeps_a_pulled_base_until_max_size_evicts_it() {
    if !have("docker-registry") {
        return;
    }
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let from = registry.image("base:v1");
    let blobs = push_example(work.path(), &from, &["--tls-verify=false"]);
    let spec = write_spec(
        work.path(),
        "derived.toml",
        &format!("name = \"gpubox-e2e-cache-derived\"\nfromImage = \"{from}\"\n"),
    );
    let cache = work.path().join("pull-cache");
    let derived = work.path().join("derived.tar");

    let log = build_logged(&cache, &spec, &derived);
    assert!(log.contains(&format!("{blobs} blobs downloaded")), "{log}");
    let info = cache_info(&cache);
    assert_eq!(info["images"], 1, "{info}");
    assert_eq!(info["brokenImages"], 0, "{info}");
    assert!(info["baseFiles"]["count"].as_u64() >= Some(1), "{info}");

    // A plain collection keeps the pulled image whole: nothing comes down.
    run_ok(gpubox(&cache).args(["cache", "gc"]));
    let after = cache_info(&cache);
    assert_eq!(after["images"], 1, "{after}");
    assert_eq!(after["baseFiles"], info["baseFiles"], "{after}");
    assert_eq!(after["unreferenced"]["count"], 0, "{after}");
    let log = build_logged(&cache, &spec, &derived);
    assert!(log.contains("0 blobs downloaded"), "{log}");

    // Evicted, it goes whole, with what gpubox remembered of its layers.
    run_ok(gpubox(&cache).args(["cache", "gc", "--max-size", "0"]));
    let emptied = cache_info(&cache);
    assert_eq!(emptied["images"], 0, "{emptied}");
    assert_eq!(emptied["blobs"]["count"], 0, "{emptied}");
    assert_eq!(emptied["baseFiles"]["count"], 0, "{emptied}");
    let log = build_logged(&cache, &spec, &derived);
    assert!(log.contains(&format!("{blobs} blobs downloaded")), "{log}");
}

#[test]
fn an_image_inspected_with_a_login_stays_cached() {
    if !have("docker-registry") {
        return;
    }
    let work = tempdir();
    let registry = Registry::start_with(
        &work.path().join("registry"),
        RegistrySetup {
            tls: true,
            users: vec![("reader".to_owned(), "pull-pw-1234".to_owned())],
        },
    );
    let certs = registry.cert_dir.clone().expect("a TLS registry has a CA");
    let certs = certs.to_str().expect("a UTF-8 path");
    let login = ["--cert-dir", certs, "--creds", "reader:pull-pw-1234"];
    let image = registry.image("inspected:v1");
    let blobs = push_example(work.path(), &image, &login);
    let cache = work.path().join("pull-cache");
    let inspect = |flags: &[&str]| {
        let out = run_ok(
            gpubox(&cache)
                .arg("inspect")
                .args(login)
                .args(flags)
                .arg(&image),
        );
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stdout(&out).contains("sha256:"), "{}", stdout(&out));
        assert!(!said.contains("pull-pw-1234"), "{said}");
        said
    };

    // The config alone, then (--layers) the whole image, kept in the cache.
    let said = inspect(&[]);
    assert!(said.contains("1 blob downloaded"), "{said}");
    let said = inspect(&["--layers"]);
    assert!(
        said.contains(&format!("{} downloaded", Count(blobs - 1, "blob"))),
        "{said}"
    );
    run_ok(gpubox(&cache).args(["cache", "gc"]));
    let info = cache_info(&cache);
    assert_eq!(info["images"], 1, "{info}");
    assert_eq!(info["referenced"]["count"], blobs, "{info}");
    let said = inspect(&["--layers"]);
    assert!(said.contains("0 blobs downloaded"), "{said}");
}
