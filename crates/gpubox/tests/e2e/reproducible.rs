//! Builds are bit-for-bit reproducible: the working folder, the order inputs are
//! listed in and the files' own timestamps change nothing; SOURCE_DATE_EPOCH
//! changes the created date and the mtimes, and nothing else.

use std::fs;
use std::path::Path;

use gpubox_oci::tar::read_entries;

use super::common::*;

/// A project folder with local files and a spec listing `packages` and two
/// copyToRoot items in the given orders.
fn project(dir: &Path, packages: &[String], copy_order: [&str; 2]) {
    fs::create_dir_all(dir.join("files/conf")).unwrap();
    fs::write(dir.join("files/conf/app.toml"), "threads = 4\n").unwrap();
    fs::write(dir.join("files/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    let copies: Vec<String> = copy_order
        .iter()
        .map(|which| match *which {
            "files" => r#"{ src = "files", dst = "/opt/app" }"#.to_owned(),
            _ => r#"{ src = "notes.txt", dst = "/opt/notes.txt", mode = "0600" }"#.to_owned(),
        })
        .collect();
    let packages: Vec<String> = packages.iter().map(toml_str).collect();
    write_spec(
        dir,
        "gpubox.toml",
        &format!(
            "name = \"repro\"\nsystemPackages = [{}]\ncopyToRoot = [{}]\nextraEnv = {{ B = \"2\", A = \"1\" }}\nexposedPorts = [\"22/tcp\", \"8080\"]\ncmd = [\"hello\"]\n",
            packages.join(", "),
            copies.join(", ")
        ),
    );
}

#[test]
fn same_inputs_in_another_folder_and_order_give_identical_bytes() {
    if !have("nix") {
        return;
    }
    let packages = vec![
        nix_fixture("hello"),
        nix_fixture("libb"),
        nix_fixture("awkward"),
    ];
    let mut reversed = packages.clone();
    reversed.reverse();
    let work = tempdir();
    let (a, b) = (work.path().join("a"), work.path().join("elsewhere/b"));
    project(&a, &packages, ["files", "notes"]);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // different file mtimes
    project(&b, &reversed, ["notes", "files"]);

    let mut digests = Vec::new();
    for (dir, cache) in [(&a, "cache-a"), (&b, "cache-b")] {
        for output in [
            "oci-archive:image.oci.tar",
            "docker-archive:image.docker.tar",
        ] {
            let out = run_ok(
                gpubox(&work.path().join(cache))
                    .current_dir(dir)
                    .args(["build", "-o", output]),
            );
            digests.push(stdout(&out).trim().to_owned());
        }
    }
    assert!(
        digests
            .iter()
            .all(|d| d == &digests[0] && d.starts_with("sha256:")),
        "{digests:?}"
    );
    for file in ["image.oci.tar", "image.docker.tar"] {
        let (x, y) = (
            fs::read(a.join(file)).unwrap(),
            fs::read(b.join(file)).unwrap(),
        );
        assert!(
            x == y,
            "{file} differs between the two builds ({} vs {} bytes)",
            x.len(),
            y.len()
        );
    }
}

#[test]
fn source_date_epoch_changes_only_dates() {
    if !have("nix") {
        return;
    }
    let work = tempdir();
    project(work.path(), &[nix_fixture("hello")], ["files", "notes"]);
    let build = |epoch: &str, file: &str| {
        run_ok(
            gpubox(&work.path().join("cache"))
                .current_dir(work.path())
                .env("SOURCE_DATE_EPOCH", epoch)
                .args(["build", "-o", &format!("oci-archive:{file}")]),
        );
        read_oci_archive(&work.path().join(file)).0
    };
    let old = build("1000000000", "old.tar");
    let new = build("1700000000", "new.tar");

    let (mut old_config, mut new_config) = (old.config().unwrap(), new.config().unwrap());
    assert_eq!(old_config["created"], "2001-09-09T01:46:40Z");
    assert_eq!(new_config["created"], "2023-11-14T22:13:20Z");
    for config in [&mut old_config, &mut new_config] {
        // Layer digests change with the mtimes inside; the layers themselves are
        // compared entry by entry below.
        config["created"] = serde_json::Value::Null;
        config["rootfs"]["diff_ids"] = serde_json::Value::Null;
        for entry in config["history"].as_array_mut().unwrap() {
            entry["created"] = serde_json::Value::Null;
        }
    }
    assert_eq!(old_config, new_config, "configs differ beyond their dates");
    assert_eq!(old.layers().len(), new.layers().len());
    for index in 0..old.layers().len() {
        let entries = |reader: &gpubox_oci::source::ImageReader, mtime: u64| {
            read_entries(reader.open_layer(index).unwrap())
                .map(|e| {
                    let e = e.unwrap();
                    assert_eq!(
                        e.mtime,
                        mtime,
                        "{:?} has mtime {}",
                        String::from_utf8_lossy(&e.path),
                        e.mtime
                    );
                    (e.path, e.size, e.mode, e.uid, e.gid, e.link)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&old, 1_000_000_000),
            entries(&new, 1_700_000_000),
            "layer {index} differs beyond mtimes"
        );
    }
}
