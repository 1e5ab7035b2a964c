//! The image config and manifest: fields, media types, canonical bytes.

mod image_fixture;

use std::collections::HashMap;

use gpubox_oci::image::{canonical_json, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use gpubox_oci::{Compression, Digest};
use image_fixture::{assemble_with, fixture};
use serde_json::{json, Value};

#[test]
fn config_holds_what_was_asked_and_leaves_out_empty_fields() {
    let f = fixture();
    let config: Value = serde_json::from_slice(&f.image.config).unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["Env"], json!(["PATH=/bin", "LANG=C.UTF-8"]));
    assert_eq!(c["Entrypoint"], json!([f.input.entrypoint[0]]));
    assert!(c.get("Cmd").is_none(), "empty Cmd must be left out: {c}");
    assert_eq!(c["ExposedPorts"], json!({"22/tcp": {}, "8080/tcp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}, "/workspace": {}}));
    assert_eq!(c["Labels"]["com.example.team"], "ml");
    assert_eq!(c["User"], "root");
    assert_eq!(c["WorkingDir"], "/root");
    assert_eq!(config["rootfs"]["type"], "layers");
    let diff_ids: Vec<String> = f.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1]["created_by"], "gpubox: layer 1");
    assert_eq!(history[1]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(history[1]["comment"], "gpubox");
    assert_eq!(f.image.config_digest, Digest::of(&f.image.config));
}

#[test]
fn manifest_names_the_config_and_each_layer_with_its_media_type() {
    let f = fixture();
    let manifest: Value = serde_json::from_slice(&f.image.manifest).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(
        manifest["config"]["digest"],
        f.image.config_digest.to_string()
    );
    assert_eq!(manifest["config"]["size"], f.image.config.len());
    let layers = manifest["layers"].as_array().unwrap();
    let expected = [Compression::Gzip, Compression::Zstd, Compression::None];
    for ((layer, blob), compression) in layers.iter().zip(&f.layers).zip(expected) {
        assert_eq!(layer["mediaType"], compression.oci_layer_media_type());
        assert_eq!(layer["digest"], blob.digest.to_string());
        assert_eq!(layer["size"], blob.size);
    }
    assert_eq!(
        manifest["annotations"],
        json!({
            "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
            "org.opencontainers.image.title": "example.invalid/app",
            "org.opencontainers.image.version": "v1",
        })
    );
    assert_eq!(f.image.manifest_digest, Digest::of(&f.image.manifest));
    assert_eq!(f.image.layers, f.layers);
}

#[test]
fn same_inputs_give_the_same_canonical_bytes() {
    let f = fixture();
    let mut reordered = f.input.clone();
    reordered.exposed_ports.reverse();
    reordered.volumes.reverse();
    let again = assemble_with(&reordered, &f.layers);
    assert_eq!(again.config, f.image.config);
    assert_eq!(again.manifest_digest, f.image.manifest_digest);
    for bytes in [&f.image.config, &f.image.manifest] {
        let parsed: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(&canonical_json(&parsed).unwrap(), bytes);
        assert_ne!(bytes.last(), Some(&b'\n'));
    }
    let mut changed = f.input.clone();
    changed.env.push("EXTRA=1".into());
    assert_ne!(
        assemble_with(&changed, &f.layers).config_digest,
        f.image.config_digest
    );
}

#[test]
fn canonical_json_sorts_the_keys_of_nested_maps() {
    let inner: HashMap<&str, u32> = [("zz", 1), ("aa", 2), ("mm", 3)].into_iter().collect();
    let outer: HashMap<&str, Value> = [
        ("z", json!([{"b": 1, "a": 2}])),
        ("a", serde_json::to_value(&inner).unwrap()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        String::from_utf8(canonical_json(&outer).unwrap()).unwrap(),
        r#"{"a":{"aa":2,"mm":3,"zz":1},"z":[{"a":2,"b":1}]}"#
    );
}
