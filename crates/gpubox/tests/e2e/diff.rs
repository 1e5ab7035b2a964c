//! `gpubox diff` on two images of a real Nix closure in which one store path was
//! rebuilt: it names exactly the rebuilt paths and shares the rest.

use std::collections::BTreeSet;
use std::path::Path;

use super::common::*;

/// Builds `hello` (from `store_path`) with `GREETING=greeting` into an
/// oci-archive at `image`.
fn build(work: &Path, name: &str, store_path: &str, greeting: &str) -> String {
    let spec = write_spec(
        work,
        &format!("{name}.toml"),
        &format!(
            "name = \"gpubox-e2e-diff\"\nsystemPackages = [{}]\nextraEnv = {{ GREETING = \"{greeting}\" }}\ncmd = [\"hello\"]\n",
            toml_str(store_path)
        ),
    );
    let image = work.join(format!("{name}.tar"));
    run_ok(
        gpubox(&work.join("cache"))
            .arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(format!("oci-archive:{}", image.display())),
    );
    format!("oci-archive:{}", image.display())
}

#[test]
fn a_rebuilt_greeting_changes_only_greeting_and_hello() {
    if !have("nix") {
        return;
    }
    let old_hello = nix_fixture("hello");
    let new_hello = nix_fixture_with("hello", &[("greetingText", "changed")]);
    let old_closure: BTreeSet<String> = nix_closure(&old_hello).into_iter().collect();
    let new_closure: BTreeSet<String> = nix_closure(&new_hello).into_iter().collect();
    let removed: BTreeSet<&String> = old_closure.difference(&new_closure).collect();
    let added: BTreeSet<&String> = new_closure.difference(&old_closure).collect();
    let names = |paths: &BTreeSet<&String>| -> BTreeSet<String> {
        paths
            .iter()
            .map(|p| p.split_once('-').map_or("", |(_, n)| n).to_owned())
            .collect()
    };
    assert_eq!(
        names(&removed),
        BTreeSet::from(["greeting-1.0".to_owned(), "hello-3.0".to_owned()]),
        "the fixture should rebuild exactly greeting and hello"
    );

    let work = tempdir();
    let a = build(work.path(), "a", &old_hello, "one");
    let b = build(work.path(), "b", &new_hello, "two");
    let out = run_ok(
        gpubox(&work.path().join("cache"))
            .args(["diff", "--json"])
            .arg(&a)
            .arg(&b),
    );
    let diff: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("diff --json");

    let changes = diff["storePaths"].as_array().expect("storePaths");
    let changed: BTreeSet<(String, String, String)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["change"], "changed", "{c}");
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (text(&c["name"]), text(&c["a"]), text(&c["b"]))
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = removed
        .iter()
        .map(|old| {
            let name = names(&BTreeSet::from([*old])).into_iter().next().unwrap();
            let new = added
                .iter()
                .find(|n| n.ends_with(&format!("-{name}")))
                .expect("a rebuilt path of the same name");
            (name, old.to_string(), new.to_string())
        })
        .collect();
    assert_eq!(changed, expected, "{diff:#}");

    // liba and libb did not change: their layers are shared.
    let (reader, summaries) = read_oci_archive(&work.path().join("b.tar"));
    let shared: BTreeSet<&str> = diff["shared"]
        .as_array()
        .expect("shared")
        .iter()
        .filter_map(|l| l["diffId"].as_str())
        .collect();
    for lib in ["liba-1.0", "libb-2.1"] {
        let index = summaries
            .iter()
            .position(|s| s.store_paths.iter().any(|p| p.ends_with(lib)))
            .unwrap_or_else(|| panic!("{lib} is in no layer of B"));
        let diff_id = reader.layers()[index]
            .diff_id
            .as_ref()
            .expect("diff_id")
            .to_string();
        assert!(
            shared.contains(diff_id.as_str()),
            "{lib}'s layer is not shared: {diff:#}"
        );
    }
    let config: Vec<&serde_json::Value> = diff["config"]
        .as_array()
        .expect("config")
        .iter()
        .filter(|c| c["key"] == "Env.GREETING")
        .collect();
    assert_eq!(config.len(), 1, "{diff:#}");
    assert_eq!(
        (&config[0]["a"], &config[0]["b"]),
        (&"one".into(), &"two".into())
    );

    let report = stdout(&run_ok(
        gpubox(&work.path().join("cache"))
            .arg("diff")
            .arg(&a)
            .arg(&b),
    ));
    assert!(
        report.contains(&format!(
            "shared: {}",
            gpubox_build::Count(shared.len(), "layer")
        )),
        "{report}"
    );
    for (_, old, new) in &expected {
        assert!(report.contains(&format!("~ {old} → {new}")), "{report}");
    }
    assert!(report.contains("~ Env.GREETING: one → two"), "{report}");
}
