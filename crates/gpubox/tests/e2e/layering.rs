//! A closure built with real Nix becomes an image whose layers hold every store
//! path exactly once, within the layer budget.

use std::collections::BTreeMap;

use super::common::*;

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
    // the top layer, 50 is the default.
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
        // The top layer is gpubox's own and holds no store path.
        let top = summaries.last().expect("at least one layer");
        assert!(
            top.store_paths.is_empty(),
            "top layer holds store paths: {:?}",
            top.store_paths
        );
        if max_layers > closure.len() {
            assert_eq!(
                reader.layers().len(),
                closure.len() + 1,
                "one layer per store path expected"
            );
        }
        if max_layers < closure.len() {
            // Size-aware grouping: no store layer holds most of the bytes unless one
            // path alone does.
            let sizes: Vec<u64> = summaries[..summaries.len() - 1]
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

/// Each layer's annotations say what it holds, exactly what reading it finds; the
/// store-path layers also carry their cache key.
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
        let key = &annotated["annotations"]["io.gpubox.layer.key"];
        assert_eq!(key.is_string(), paths > 0, "{annotated}");
    }
    assert_eq!(store_paths, nix_closure(&nix_fixture("app")).len());
}
