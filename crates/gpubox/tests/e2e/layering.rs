//! A closure built with real Nix becomes an image whose layers hold every store
//! path exactly once, within the layer budget.

use std::collections::BTreeMap;

use super::common::*;
use super::registry::{have_registry_and_skopeo, Registry};

#[test]
fn every_store_path_is_in_exactly_one_layer_for_several_budgets() {
    if !have("nix") {
        return;
    }
    let app = nix_fixture("app");
    let closure = nix_closure(&app);
    assert!(
        closure.len() >= 12,
        "fixture closure too small: {closure:?}"
    );
    let work = tempdir();
    let cache = work.path().join("cache");

    // 2 and 5 are far below the closure's size, 16 is one layer per path plus
    // gpubox's own two (gpubox-init and the generated files), 50 is the default.
    for max_layers in [2usize, 5, 9, 16, 50] {
        let spec = write_spec(
            work.path(),
            &format!("spec-{max_layers}.toml"),
            &format!(
                "name = \"layering\"\nsystemPackages = [{}]\nmaxLayers = {max_layers}\n",
                toml_str(&app)
            ),
        );
        let out = work.path().join(format!("image-{max_layers}.tar"));
        run_ok(
            gpubox(&cache)
                .arg("build")
                .arg(&spec)
                .arg("-o")
                .arg(format!("oci-archive:{}", out.display())),
        );
        let (reader, summaries) = read_oci_archive(&out);

        assert!(
            reader.layers().len() <= max_layers,
            "maxLayers = {max_layers} but the image has {} layers",
            reader.layers().len()
        );
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for summary in &summaries {
            for path in &summary.store_paths {
                *seen.entry(path.clone()).or_default() += 1;
            }
        }
        let seen_paths: Vec<String> = seen.keys().cloned().collect();
        assert_eq!(
            seen_paths, closure,
            "store paths in the image differ from the closure (maxLayers = {max_layers})"
        );
        assert!(
            seen.values().all(|&n| n == 1),
            "a store path is in two layers: {seen:?}"
        );
        // gpubox's own layers come last and hold no store path: two when there
        // is room (gpubox-init, then the generated files), else one.
        let own = summaries
            .iter()
            .rev()
            .take_while(|s| s.store_paths.is_empty())
            .count();
        assert_eq!(own, if max_layers > 2 { 2 } else { 1 }, "{summaries:?}");
        if max_layers >= closure.len() + 2 {
            assert_eq!(
                reader.layers().len(),
                closure.len() + 2,
                "one layer per store path expected"
            );
        }
        if max_layers < closure.len() {
            // Size-aware grouping: no store layer holds most of the bytes unless one
            // path alone does.
            let sizes: Vec<u64> = summaries[..summaries.len() - own]
                .iter()
                .map(|s| s.uncompressed_size)
                .collect();
            let total: u64 = sizes.iter().sum();
            let biggest = sizes.iter().max().copied().unwrap_or(0);
            if max_layers > 2 {
                assert!(
                    biggest * 2 <= total + 400_000,
                    "one layer holds {biggest} of {total} bytes with maxLayers = {max_layers}: {sizes:?}"
                );
            }
        }
    }
}

#[test]
fn a_rebuild_reuses_cached_store_layers() {
    if !have("nix") {
        return;
    }
    let app = nix_fixture("app");
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!("name = \"cached\"\nsystemPackages = [{}]\n", toml_str(&app)),
    );
    let first = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:a.tar"])
            .current_dir(work.path()),
    );
    let second = run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .args(["-o", "oci-archive:b.tar"])
            .current_dir(work.path()),
    );
    assert_eq!(
        stdout(&first),
        stdout(&second),
        "same spec, different manifest digests"
    );
    let log = String::from_utf8_lossy(&second.stderr);
    let cached = log.matches("cached").count();
    assert!(
        cached >= nix_closure(&app).len(),
        "second build did not reuse the store layers:\n{log}"
    );
}

/// Each layer's annotations say what it holds, exactly what reading it finds, and
/// carry its cache key.
#[test]
fn layer_annotations_describe_each_layer_as_reading_it_does() {
    if !have("nix") {
        return;
    }
    let work = tempdir();
    let cache = work.path().join("cache");
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"annotated\"\nsystemPackages = [{}]\nmaxLayers = 3\n",
            toml_str(nix_fixture("app"))
        ),
    );
    run_ok(
        gpubox(&cache)
            .arg("build")
            .arg(&spec)
            .args(["-q", "-o", "oci:image"])
            .current_dir(work.path()),
    );
    let inspect = |read: bool| {
        let mut command = gpubox(&cache);
        command
            .args(["inspect", "--json", "oci:image"])
            .current_dir(work.path());
        if read {
            command.arg("--layers");
        }
        let out = run_ok(&mut command);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")["layers"]
            .as_array()
            .expect("layers")
            .clone()
    };
    let (annotated, read) = (inspect(false), inspect(true));
    assert_eq!(annotated.len(), 3);
    let mut store_paths = 0;
    for (annotated, read) in annotated.iter().zip(&read) {
        for field in ["entries", "uncompressedSize", "storePaths"] {
            assert_eq!(annotated[field], read[field], "{field}: {annotated}");
        }
        let paths = annotated["storePaths"]
            .as_array()
            .expect("store paths")
            .len();
        store_paths += paths;
        // Every layer says what made it: store paths, or the files' content.
        let key = &annotated["annotations"]["io.gpubox.layer.key"];
        assert!(key.is_string(), "{annotated}");
    }
    assert_eq!(store_paths, nix_closure(&nix_fixture("app")).len());
}

/// What each layer of `name:tag` in `registry` is, bottom first: its digest and
/// its history line.
fn layers_of(registry: &Registry, name: &str, tag: &str) -> Vec<(String, String)> {
    // skopeo reads them: a second opinion on what gpubox pushed.
    let read = |config: bool| -> serde_json::Value {
        let mut skopeo = std::process::Command::new("skopeo");
        skopeo.args(["inspect", "--raw", "--tls-verify=false"]);
        if config {
            skopeo.arg("--config");
        }
        let out = run_ok(skopeo.arg(registry.image(&format!("{name}:{tag}"))));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let (manifest, config) = (read(false), read(true));
    let history = config["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap_or_default().to_owned());
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().unwrap_or_default().to_owned())
        .zip(history)
        .collect()
}

/// gpubox's own files come in layers of their own: each `copyToRoot` source,
/// `gpubox-init`, and the generated files. A new tag or label changes only the
/// generated files' layer, and a changed source only its own layer, so a push
/// sends that layer and the config, and nothing else.
#[test]
fn a_new_tag_a_label_or_one_changed_source_sends_one_layer() {
    if !have_registry_and_skopeo() {
        return;
    }
    let work = tempdir();
    let registry = Registry::start(&work.path().join("registry"));
    let cache = work.path().join("cache");
    std::fs::create_dir_all(work.path().join("app")).unwrap();
    std::fs::write(work.path().join("app/run.sh"), "#!/bin/sh\necho one\n").unwrap();
    std::fs::create_dir_all(work.path().join("data")).unwrap();
    std::fs::write(work.path().join("data/big.bin"), vec![7u8; 3 << 20]).unwrap();
    let spec = |tag: &str, team: &str| {
        write_spec(
            work.path(),
            "gpubox.toml",
            &format!(
                "name = \"split\"\ntag = \"{tag}\"\nlabels = {{ team = \"{team}\" }}\n\
                 copyToRoot = [{{ src = \"app\", dst = \"/app\" }}, {{ src = \"data\", dst = \"/data\" }}]\n"
            ),
        )
    };
    let push = |spec: &std::path::Path, tag: &str| {
        let out = run_ok(
            gpubox(&cache)
                .arg("build")
                .arg(spec)
                .args(["-o", &registry.image(&format!("split:{tag}"))])
                .arg("--tls-verify=false")
                .current_dir(work.path()),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    push(&spec("v1", "a"), "v1");
    let first = layers_of(&registry, "split", "v1");
    let described: Vec<&str> = first.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        described,
        [
            "gpubox: copyToRoot to /app",
            "gpubox: copyToRoot to /data",
            "gpubox: gpubox-init",
            "gpubox: generated files (accounts, /etc, links, start-up plan)",
        ]
    );
    let changed = |before: &[(String, String)], after: &[(String, String)]| -> Vec<usize> {
        assert_eq!(before.len(), after.len());
        (0..before.len())
            .filter(|&i| before[i].0 != after[i].0)
            .collect()
    };

    // A new tag: /etc/os-release changes, nothing else.
    let said = push(&spec("v2", "a"), "v2");
    let retagged = layers_of(&registry, "split", "v2");
    assert_eq!(changed(&first, &retagged), [3], "{said}");
    assert!(
        said.contains("uploaded 2 blobs"),
        "layer and config only:\n{said}"
    );

    // A new label: only the config changes.
    let said = push(&spec("v2", "b"), "v2-b");
    assert_eq!(
        changed(&retagged, &layers_of(&registry, "split", "v2-b")),
        Vec::<usize>::new()
    );
    assert!(said.contains("uploaded 1 blob "), "config only:\n{said}");

    // One line of one source: that source's layer.
    std::fs::write(work.path().join("app/run.sh"), "#!/bin/sh\necho two\n").unwrap();
    let said = push(&spec("v2", "b"), "v3");
    assert_eq!(
        changed(&retagged, &layers_of(&registry, "split", "v3")),
        [0],
        "{said}"
    );
    assert!(
        said.contains("uploaded 2 blobs"),
        "layer and config only:\n{said}"
    );
}
