//! Writing OCI layout folders, checked with skopeo.

mod image_fixture;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use gpubox_oci::layout::{write_oci_dir, OutputError};
use image_fixture::{assemble_with, fixture, reference, skopeo, skopeo_json};
use serde_json::Value;

fn index(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap()
}

#[test]
fn skopeo_inspects_and_copies_a_written_layout() {
    let f = fixture();
    let dir = f.temp.path().join("out/layout");
    write_oci_dir(&dir, Some("v1"), &f.image.clone().into(), &f.store).unwrap();

    let image_ref = reference("oci", &dir, Some("v1"));
    let inspect = skopeo_json(&["inspect", &image_ref]);
    assert_eq!(inspect["Digest"], f.image.manifest_digest.to_string());
    let layers: Vec<String> = f.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(layers));
    assert_eq!(inspect["Labels"]["com.example.team"], "ml");
    assert_eq!(inspect["Env"], serde_json::json!(f.input.env));

    let config = skopeo_json(&["inspect", "--config", &image_ref]);
    assert_eq!(
        config,
        serde_json::from_slice::<Value>(&f.image.config).unwrap()
    );
    assert_eq!(
        skopeo(&["inspect", "--raw", &image_ref]).as_bytes(),
        &f.image.manifest[..]
    );

    // skopeo checks every blob's digest while copying.
    let copy = f.temp.path().join("copy");
    skopeo(&["copy", &image_ref, &reference("dir", &copy, None)]);
    assert!(copy.join(f.layers[0].digest.hex()).is_file());

    assert_eq!(
        fs::read(dir.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let entries = fs::read_dir(f.temp.path().join("out")).unwrap().count();
    assert_eq!(
        entries, 1,
        "the staging folder must be gone once the layout is in place"
    );
}

#[test]
fn layer_blobs_are_hard_links_to_the_store() {
    let f = fixture();
    let dir = f.temp.path().join("layout");
    write_oci_dir(&dir, None, &f.image.clone().into(), &f.store).unwrap();
    for layer in &f.layers {
        let written = fs::metadata(dir.join("blobs/sha256").join(layer.digest.hex())).unwrap();
        let stored = fs::metadata(f.store.path(&layer.digest)).unwrap();
        assert_eq!((written.dev(), written.ino()), (stored.dev(), stored.ino()));
    }
    let manifests = index(&dir)["manifests"].as_array().unwrap().clone();
    assert_eq!(manifests.len(), 1);
    assert!(
        manifests[0].get("annotations").is_none(),
        "untagged: {manifests:?}"
    );
    skopeo(&["inspect", &reference("oci", &dir, None)]);
}

#[test]
fn a_second_tag_keeps_the_first_and_the_same_tag_is_replaced() {
    let f = fixture();
    let dir = f.temp.path().join("layout");
    write_oci_dir(&dir, Some("v1"), &f.image.clone().into(), &f.store).unwrap();
    let mut input = f.input.clone();
    input.env.push("SECOND=1".into());
    let second = assemble_with(&input, &f.layers);
    write_oci_dir(&dir, Some("v2"), &second.clone().into(), &f.store).unwrap();

    let digest_of =
        |tag: &str| skopeo_json(&["inspect", &reference("oci", &dir, Some(tag))])["Digest"].clone();
    assert_eq!(digest_of("v1"), f.image.manifest_digest.to_string());
    assert_eq!(digest_of("v2"), second.manifest_digest.to_string());

    write_oci_dir(&dir, Some("v1"), &second.clone().into(), &f.store).unwrap();
    assert_eq!(digest_of("v1"), second.manifest_digest.to_string());
    let index = index(&dir);
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["v1", "v2"]);
    // The first image's manifest blob is still there, as skopeo leaves it.
    assert!(dir
        .join("blobs/sha256")
        .join(f.image.manifest_digest.hex())
        .is_file());
}

#[test]
fn an_empty_existing_folder_becomes_a_layout() {
    let f = fixture();
    let dir = f.temp.path().join("empty");
    fs::create_dir(&dir).unwrap();
    write_oci_dir(&dir, Some("latest"), &f.image.clone().into(), &f.store).unwrap();
    skopeo(&["inspect", &reference("oci", &dir, Some("latest"))]);
}

#[test]
fn refuses_a_folder_or_file_that_is_not_a_layout_and_leaves_it_alone() {
    let f = fixture();
    let dir = f.temp.path().join("project");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let err = write_oci_dir(&dir, Some("v1"), &f.image.clone().into(), &f.store).unwrap_err();
    assert!(matches!(err, OutputError::NotALayout(_)), "{err}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");

    let file = f.temp.path().join("file");
    fs::write(&file, "data").unwrap();
    let err = write_oci_dir(&file, None, &f.image.clone().into(), &f.store).unwrap_err();
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"data");
}

#[test]
fn a_missing_store_blob_fails_before_anything_is_written() {
    let f = fixture();
    fs::remove_file(f.store.path(&f.layers[1].digest)).unwrap();
    let dir = f.temp.path().join("layout");
    let err = write_oci_dir(&dir, Some("v1"), &f.image.clone().into(), &f.store).unwrap_err();
    assert!(
        err.to_string().contains(&f.layers[1].digest.to_string()),
        "{err}"
    );
    assert!(!dir.exists());
    let leftovers: Vec<_> = fs::read_dir(f.temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["store"]);
}
