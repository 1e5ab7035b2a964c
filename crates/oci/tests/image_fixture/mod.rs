//! A small image built with the real blob store and tar writer, shared by the
//! image, layout, archive and source tests, and helpers for running skopeo.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gpubox_oci::blob::{BlobStore, LayerBlob};
use gpubox_oci::image::{assemble, BuiltImage, ImageConfigInput, LayerInput};
use gpubox_oci::{Compression, Entry, ImagePath};

pub const STORE_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12";

/// A built image, its blob store and the temporary folder holding both.
pub struct Fixture {
    pub temp: tempfile::TempDir,
    pub store: BlobStore,
    pub input: ImageConfigInput,
    pub layers: Vec<LayerBlob>,
    pub image: BuiltImage,
}

fn p(path: &str) -> ImagePath {
    ImagePath::new(path).unwrap()
}

pub fn config_input() -> ImageConfigInput {
    ImageConfigInput {
        created: 1_700_000_000,
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
        env: vec!["PATH=/bin".into(), "LANG=C.UTF-8".into()],
        entrypoint: vec![format!("{STORE_PATH}/bin/hello")],
        cmd: Vec::new(),
        exposed_ports: vec!["8080/tcp".into(), "22/tcp".into()],
        volumes: vec!["/workspace".into(), "/data".into()],
        labels: BTreeMap::from([
            ("com.example.team".into(), "ml".into()),
            (
                "org.opencontainers.image.source".into(),
                "https://example.invalid/app".into(),
            ),
        ]),
        user: "root".into(),
        working_dir: "/root".into(),
        title: "example.invalid/app".into(),
        version: "v1".into(),
    }
}

/// Three layers, one per compression: a store path, base files with a hard
/// link, and a generated file.
pub fn layer_entries() -> Vec<(Compression, Vec<Entry>)> {
    let store = STORE_PATH.trim_start_matches('/');
    let hello = Entry::bytes(
        p(&format!("{store}/bin/hello")),
        0o755,
        b"#!/bin/sh\necho hello\n".to_vec(),
    );
    let passwd = Entry::bytes(
        p("etc/passwd"),
        0o644,
        b"root:x:0:0::/root:/bin/sh\n".to_vec(),
    );
    let passwd_link = Entry {
        path: p("etc/passwd-"),
        kind: gpubox_oci::EntryKind::HardLink {
            target: p("etc/passwd"),
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        (
            Compression::Gzip,
            vec![
                Entry::directory(p("nix"), 0o755),
                Entry::directory(p("nix/store"), 0o755),
                Entry::directory(p(store), 0o555),
                Entry::directory(p(&format!("{store}/bin")), 0o555),
                hello,
                Entry::symlink(p(&format!("{store}/bin/hi")), "hello"),
            ],
        ),
        (
            Compression::Zstd,
            vec![
                Entry::directory(p("etc"), 0o755),
                passwd,
                passwd_link,
                Entry::directory(p("tmp"), 0o1777),
            ],
        ),
        (
            Compression::None,
            vec![
                Entry::directory(p("opt"), 0o755),
                Entry::bytes(p("opt/data.bin"), 0o644, big),
            ],
        ),
    ]
}

pub fn write_layers(store: &BlobStore) -> Vec<LayerBlob> {
    layer_entries()
        .into_iter()
        .map(|(compression, entries)| {
            store
                .write_layer(
                    entries.into_iter().map(Ok),
                    compression,
                    1_700_000_000,
                    &|_| {},
                )
                .unwrap()
        })
        .collect()
}

pub fn assemble_with(input: &ImageConfigInput, layers: &[LayerBlob]) -> BuiltImage {
    let inputs: Vec<LayerInput> = layers
        .iter()
        .enumerate()
        .map(|(i, blob)| LayerInput {
            blob: blob.clone(),
            created_by: format!("gpubox: layer {i}"),
            annotations: Default::default(),
        })
        .collect();
    assemble(input, &inputs).unwrap()
}

pub fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&temp.path().join("store")).unwrap();
    let layers = write_layers(&store);
    let input = config_input();
    let image = assemble_with(&input, &layers);
    Fixture {
        temp,
        store,
        input,
        layers,
        image,
    }
}

/// Runs skopeo (with no signature policy, which is not what these tests check)
/// and returns its standard output; fails the test with its stderr otherwise.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&skopeo(args)).unwrap()
}

/// `transport:path[:suffix]` as skopeo wants it.
pub fn reference(transport: &str, path: &Path, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("{transport}:{}:{s}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

/// Reads a whole stream, failing the test on error.
pub fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// podman with its own storage under `root`, so tests touch nothing global.
pub fn podman(root: &Path, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(root.join("storage"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("podman is installed");
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
