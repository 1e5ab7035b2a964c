//! `gpubox build --sbom`: an SPDX 2.3 document that lists every store path with
//! Nix's own NAR hash, names the Debian package of each host binary, passes the
//! SPDX tools' validation and is the same bytes on every build.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use super::common::*;

/// Each closure path's NAR hash as hex, from `nix path-info --json` (either
/// shape) converted by `nix hash to-base16`.
fn nar_hashes_hex(root: &str) -> BTreeMap<String, String> {
    let nix = |args: &[&str]| {
        let mut cmd = Command::new("nix");
        cmd.env("NIX_CONF_DIR", nix_conf_dir())
            .args(["--extra-experimental-features", "nix-command"])
            .args(args);
        stdout(&run_ok(&mut cmd))
    };
    let json: Value =
        serde_json::from_str(&nix(&["path-info", "--json", "--recursive", root])).unwrap();
    let printed: Vec<(String, String)> = match json {
        Value::Array(items) => items
            .iter()
            .map(|i| {
                (
                    i["path"].as_str().unwrap().to_owned(),
                    i["narHash"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(path, i)| (path.clone(), i["narHash"].as_str().unwrap().to_owned()))
            .collect(),
        other => panic!("unexpected nix path-info output {other}"),
    };
    let mut args = vec!["hash", "to-base16", "--type", "sha256"];
    args.extend(printed.iter().map(|(_, hash)| hash.as_str()));
    let hex = nix(&args);
    printed
        .into_iter()
        .map(|(path, _)| path)
        .zip(hex.lines().map(str::to_owned))
        .collect()
}

#[test]
fn sbom_lists_store_paths_and_host_binaries_and_validates() {
    if !have("nix") {
        return;
    }
    let app = nix_fixture("app");
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            "name = \"sbom-demo\"\nsystemPackages = [{}]\nhostBinaries = [\"/bin/ls\"]\n",
            toml_str(&app)
        ),
    );
    let mut sboms = Vec::new();
    for (i, cache) in ["cache-a", "cache-b"].iter().enumerate() {
        let sbom = work.path().join(format!("sbom-{i}.spdx.json"));
        run_ok(
            gpubox(&work.path().join(cache))
                .arg("build")
                .arg(&spec)
                .arg("-o")
                .arg(format!(
                    "oci-archive:{}",
                    work.path().join("image.tar").display()
                ))
                .arg("--sbom")
                .arg(&sbom),
        );
        sboms.push(std::fs::read(&sbom).unwrap());
    }
    assert_eq!(sboms[0], sboms[1], "two builds gave different SBOMs");

    let document: Value = serde_json::from_slice(&sboms[0]).unwrap();
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    let packages = document["packages"].as_array().unwrap();
    let by_file: BTreeMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p["packageFileName"].as_str()?, p)))
        .collect();

    let expected = nar_hashes_hex(&app);
    let closure = nix_closure(&app);
    assert_eq!(expected.keys().cloned().collect::<Vec<_>>(), closure);
    for path in &closure {
        let package = by_file
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{path} is not in the SBOM"));
        assert_eq!(package["checksums"][0]["algorithm"], "SHA256", "{path}");
        assert_eq!(
            package["checksums"][0]["checksumValue"],
            expected[path].as_str(),
            "{path}"
        );
    }

    let ls = by_file.get("/bin/ls").expect("/bin/ls is in the SBOM");
    if have("dpkg-query") {
        assert_eq!(ls["name"], "coreutils");
        assert!(
            ls["versionInfo"].as_str().is_some_and(|v| !v.is_empty()),
            "{ls}"
        );
    }

    if have("pyspdxtools") {
        let file = work.path().join("sbom-0.spdx.json");
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pyspdxtools rejects the SBOM:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
