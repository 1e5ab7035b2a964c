//! The registry as the build cache of a fleet of CI runners: a runner with an
//! empty cache folder builds only the layers the registry lacks, and what it
//! pushes is what a runner with everything would have built.

use std::path::Path;
use std::process::Command;

use super::common::*;
use super::registry::{have_registry_and_skopeo, Registry};

/// Builds `spec` with the cache folder `cache` to `dest`; returns the digest it
/// printed and what it said.
fn build_to(
    work: &Path,
    cache: &Path,
    spec: &Path,
    dest: &str,
    extra: &[&str],
) -> (String, String) {
    build_with(&mut gpubox(cache), work, spec, dest, extra)
}

/// [`build_to`] with a `gpubox` command the caller set up.
fn build_with(
    gpubox: &mut Command,
    work: &Path,
    spec: &Path,
    dest: &str,
    extra: &[&str],
) -> (String, String) {
    let out = run_ok(
        gpubox
            .arg("build")
            .arg(spec)
            .args(["-o", dest, "--tls-verify=false"])
            .args(extra)
            .current_dir(work),
    );
    (
        stdout(&out).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The layer lines of a build's report: (built here, reused from a registry).
fn layer_counts(said: &str) -> (usize, usize) {
    let layers: Vec<&str> = said
        .lines()
        .filter(|line| line.contains(" done)") && line.contains("layer "))
        .collect();
    let reused = layers
        .iter()
        .filter(|line| line.contains("reused from the registry"))
        .count();
    let built = layers
        .iter()
        .filter(|line| !line.contains("reused from the registry") && !line.contains("cached, "))
        .count();
    (built, reused)
}

fn spec_for(work: &Path, name: &str, store_path: &str) -> std::path::PathBuf {
    write_spec(
        work,
        name,
        &format!(
            "name = \"fleet\"\ntag = \"ci\"\nstorePaths = [{}]\n",
            toml_str(store_path)
        ),
    )
}

/// Runner A, with everything local: pushes the image of store path `v1` to
/// `dest`, then builds the one of `v2` into a folder. Returns v2's spec and that
/// image's digest, what every other runner must arrive at.
fn runner_a(work: &Path, dest: &str, v1: &str, v2: &str) -> (std::path::PathBuf, String) {
    let (spec_v1, spec_v2) = (spec_for(work, "v1.toml", v1), spec_for(work, "v2.toml", v2));
    let cache = work.join("runner-a");
    let (_, said) = build_to(work, &cache, &spec_v1, dest, &[]);
    assert!(
        said.contains("has no image yet: no layers to reuse"),
        "{said}"
    );
    let into = format!("oci:{}", work.join("a-v2").display());
    let (expected, _) = build_to(work, &cache, &spec_v2, &into, &[]);
    (spec_v2, expected)
}

#[test]
fn a_fresh_runner_builds_only_what_the_registry_lacks() {
    if !(have("nix") && have_registry_and_skopeo()) {
        return;
    }
    let work = tempdir();
    let work = work.path();
    let registry = Registry::start(&work.join("registry"));
    // hello -> greeting, libb -> liba: a new greeting changes hello and greeting.
    let v1 = nix_fixture("hello");
    let v2 = nix_fixture_with("hello", &[("greetingText", "fleet v2")]);
    let dest = registry.image("app");
    let (spec_v2, expected) = runner_a(work, &dest, &v1, &v2);

    // Runner B, with an empty cache, builds v2: the two changed store paths are
    // read and compressed, every other layer is the registry's.
    let (digest, said) = build_to(work, &work.join("runner-b"), &spec_v2, &dest, &[]);
    assert_eq!(digest, expected, "{said}");
    assert_eq!(layer_counts(&said), (2, 4), "{said}");
    assert!(
        said.contains("uploaded 3 blobs"),
        "two layers and the config:\n{said}"
    );
    let pushed = registry.skopeo_inspect("app:ci");
    assert_eq!(pushed["Digest"].as_str(), Some(digest.as_str()));
    // Inspect says so: every layer has a key, and B's cache holds the two it
    // built (the others stayed in the registry).
    let inspected = run_ok(
        gpubox(&work.join("runner-b"))
            .args(["inspect", "--json", "--tls-verify=false"])
            .arg(registry.image("app:ci")),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).expect("JSON");
    let layers = inspected["layers"].as_array().expect("layers");
    assert!(layers
        .iter()
        .all(|l| l["cacheKey"].is_string() && l["chunked"] == false));
    let cached = layers.iter().filter(|l| l["cached"] == true).count();
    assert_eq!(cached, 2, "{inspected}");

    // A layer whose blob the repository lost is noticed and built again; the
    // image is whole.
    let layers = pushed["Layers"].as_array().expect("layers").clone();
    let lost = layers[0]
        .as_str()
        .expect("a digest")
        .trim_start_matches("sha256:");
    let link = work.join(format!(
        "registry/storage/docker/registry/v2/repositories/app/_layers/sha256/{lost}"
    ));
    std::fs::remove_dir_all(&link).expect("the registry's link to the layer");
    let (again, said) = build_to(work, &work.join("runner-c"), &spec_v2, &dest, &[]);
    assert_eq!(again, expected, "{said}");
    assert!(
        said.contains("no longer has its blob, or the registry would not mount it: building it"),
        "{said}"
    );
    assert_eq!(layer_counts(&said), (1, 5), "{said}");
    registry.skopeo_copy_to_layout("app:ci", &work.join("copied"));

    // Another tool recompressed a layer and kept gpubox's annotations: the key
    // is there, but the blob is not the one gpubox made under it, so the layer
    // is built again and the image is still the one runner A made.
    let crafted = recompress_first_layer(&work.join("a-v2"), &work.join("recompressed"));
    run_ok(
        gpubox(&work.join("runner-a"))
            .args(["push", "--tls-verify=false"])
            .arg(format!("oci:{}:ci", crafted.display()))
            .arg(registry.image("app:ci")),
    );
    let (again, said) = build_to(work, &work.join("runner-f"), &spec_v2, &dest, &[]);
    assert_eq!(again, expected, "{said}");
    assert!(
        said.contains("rewritten since (recompressed?), so not reused"),
        "{said}"
    );
    assert_eq!(layer_counts(&said), (1, 5), "{said}");

    // Another repository of the registry, with --cache-from: every layer is
    // mounted (before anything is built, so a refused mount would mean building
    // it), only the config goes up.
    let mounts_before = registry
        .log()
        .matches("\"POST /v2/other/blobs/uploads/?mount=")
        .count();
    let (other, said) = build_to(
        work,
        &work.join("runner-d"),
        &spec_v2,
        &registry.image("other"),
        &["--cache-from", &registry.image("app:ci")],
    );
    assert_eq!(other, expected, "{said}");
    assert_eq!(layer_counts(&said), (0, 6), "{said}");
    assert!(said.contains("uploaded 1 blob "), "{said}");
    assert!(said.contains("skipped 6 the registry had"), "{said}");
    let mounts = registry
        .log()
        .matches("\"POST /v2/other/blobs/uploads/?mount=")
        .count();
    assert_eq!(mounts - mounts_before, 6, "{}", registry.log());

    // Without a registry output, --cache-from is refused before any work.
    let refused = run_fails(
        gpubox(&work.join("runner-e"))
            .arg("build")
            .arg(&spec_v2)
            .args([
                "-o",
                "oci:elsewhere",
                "--cache-from",
                &registry.image("app:ci"),
            ])
            .current_dir(work),
    );
    assert!(refused.contains("--cache-from"), "{refused}");
    assert!(!work.join("elsewhere").exists());
}

/// Nix with the tests' settings.
fn nix(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("NIX_CONF_DIR", nix_conf_dir());
    command
}

/// Those of `paths` this machine's Nix store does not have.
fn not_in_store(paths: &[String]) -> Vec<String> {
    let out = run_ok(
        nix("nix-store")
            .args(["--check-validity", "--print-invalid"])
            .args(paths),
    );
    stdout(&out).lines().map(str::to_owned).collect()
}

/// Runner B has none of the store paths, only a binary cache that holds them
/// (signed, as a real one is): the closure comes from the cache's metadata, the
/// unchanged paths' layers from the registry, and only the two changed paths
/// are unpacked, outside the store; the image is the one runner A builds with
/// everything here.
#[test]
fn a_runner_without_the_store_paths_reads_only_what_it_builds() {
    if !(have("nix") && have_registry_and_skopeo()) {
        return;
    }
    let work = tempdir();
    let work = work.path();
    let registry = Registry::start(&work.join("registry"));
    // Store paths of this test's own, so deleting them disturbs no other test.
    let salt = format!(
        "fleet-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let v1 = nix_fixture_with("hello", &[("salt", &salt)]);
    let v2 = nix_fixture_with("hello", &[("salt", &salt), ("greetingText", "lazy v2")]);
    let dest = registry.image("lazy");
    let (spec_v2, expected) = runner_a(work, &dest, &v1, &v2);

    // v2's closure goes to a signed file:// binary cache; then both versions
    // leave this machine's store.
    let key = work.join("cache-key");
    let secret = run_ok(nix("nix").args([
        "key",
        "generate-secret",
        "--extra-experimental-features",
        "nix-command",
        "--key-name",
        "gpubox-test-1",
    ]));
    std::fs::write(&key, &secret.stdout).unwrap();
    let public = run_ok(
        nix("nix")
            .args([
                "key",
                "convert-secret-to-public",
                "--extra-experimental-features",
                "nix-command",
            ])
            .stdin(std::fs::File::open(&key).unwrap()),
    );
    let cache_url = format!("file://{}", work.join("binary-cache").display());
    run_ok(nix("nix").args([
        "copy",
        "--extra-experimental-features",
        "nix-command",
        "--to",
        &format!("{cache_url}?secret-key={}", key.display()),
        &v2,
    ]));
    let (closure_v1, closure_v2) = (nix_closure(&v1), nix_closure(&v2));
    let unchanged: Vec<String> = closure_v2
        .iter()
        .filter(|path| closure_v1.contains(path))
        .cloned()
        .collect();
    assert_eq!(unchanged.len(), 2, "liba and libb: {unchanged:?}");
    let mut everything = closure_v1.clone();
    everything.extend(closure_v2.iter().cloned());
    run_ok(nix("nix-store").arg("--delete").args(&everything));
    assert_eq!(not_in_store(&everything).len(), everything.len());

    let mut runner_b = gpubox(&work.join("runner-b"));
    runner_b.env(
        "NIX_CONFIG",
        format!("trusted-public-keys = {}", stdout(&public).trim()),
    );
    let (digest, said) = build_with(
        &mut runner_b,
        work,
        &spec_v2,
        &dest,
        &["--substituter", &cache_url],
    );
    assert_eq!(digest, expected, "{said}");
    assert!(
        said.contains("4 store paths of the closure not on this machine"),
        "{said}"
    );
    assert!(said.contains("unpacking 2 store paths"), "{said}");
    assert_eq!(layer_counts(&said), (2, 4), "{said}");
    // Nothing entered the store: the two changed paths were unpacked beside
    // it for their layers, the unchanged ones never left the cache.
    assert_eq!(not_in_store(&everything).len(), everything.len());
    // And the unpacked copies are gone with the build.
    let left: Vec<_> = std::fs::read_dir(work.join("runner-b/tmp"))
        .expect("the cache's tmp folder")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        registry.skopeo_inspect("lazy:ci")["Digest"].as_str(),
        Some(expected.as_str())
    );
}

/// A copy at `into` of the OCI layout `layout` (tag `ci`) whose first layer is
/// recompressed with `gzip -9` under a new digest and size, its annotations kept,
/// as a tool that recompresses layers leaves it. Returns `into`.
fn recompress_first_layer(layout: &Path, into: &Path) -> std::path::PathBuf {
    run_ok(Command::new("cp").arg("-r").arg(layout).arg(into));
    let blob = |digest: &str| {
        into.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read_json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
    };
    let mut index = read_json(&into.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let mut manifest = read_json(&blob(&manifest_digest));
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_owned();
    let recompressed = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("gzip -dc | gzip -9 -n")
            .stdin(std::fs::File::open(blob(&layer)).expect("the layer")),
    )
    .stdout;
    let digest = gpubox_oci::Digest::of(&recompressed).to_string();
    std::fs::write(blob(&digest), &recompressed).expect("write the layer");
    manifest["layers"][0]["digest"] = digest.into();
    manifest["layers"][0]["size"] = recompressed.len().into();
    let bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
    let manifest_digest = gpubox_oci::Digest::of(&bytes).to_string();
    std::fs::write(blob(&manifest_digest), &bytes).expect("write the manifest");
    index["manifests"][0]["digest"] = manifest_digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(
        into.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("write the index");
    into.to_path_buf()
}
