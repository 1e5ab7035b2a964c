//! oci-archive and docker-archive streams, checked with skopeo and GNU tar.

mod gnu_tar;
mod image_fixture;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gnu_tar::gnu_tar;
use gpubox_oci::archive::{write_docker_archive, write_oci_archive, OutputError};
use gpubox_oci::Digest;
use image_fixture::{fixture, podman, reference, skopeo, skopeo_json, Fixture};
use serde_json::{json, Value};

fn oci_archive(f: &Fixture, path: &Path) -> Result<(), OutputError> {
    gpubox_atomic::write(path, &gpubox_atomic::Options::new(), |file| {
        write_oci_archive(file, Some("v1"), &f.image.clone().into(), &f.store).map(drop)
    })
}

fn docker_archive(f: &Fixture, path: &Path) -> Result<(), OutputError> {
    gpubox_atomic::write(path, &gpubox_atomic::Options::new(), |file| {
        write_docker_archive(
            file,
            &["example.invalid/app:v1".to_owned()],
            &f.image,
            &f.store,
        )
        .map(drop)
    })
}

/// `tar -tf` of an archive: the member names in order.
fn members(archive: &Path) -> Vec<String> {
    gnu_tar(&["-tf".as_ref(), archive.as_os_str()])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn extract(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    gnu_tar(&[
        "-xf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        into.as_os_str(),
    ]);
}

#[test]
fn oci_archive_is_read_by_skopeo_and_reproducible() {
    let f = fixture();
    let (a, b) = (f.temp.path().join("a.tar"), f.temp.path().join("b.tar"));
    oci_archive(&f, &a).unwrap();
    oci_archive(&f, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

    let inspect = skopeo_json(&["inspect", &reference("oci-archive", &a, None)]);
    assert_eq!(inspect["Digest"], f.image.manifest_digest.to_string());
    let layers: Vec<String> = f.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(inspect["Layers"], json!(layers));
    assert_eq!(inspect["Labels"]["com.example.team"], "ml");
    let config = skopeo_json(&[
        "inspect",
        "--config",
        &reference("oci-archive", &a, Some("v1")),
    ]);
    assert_eq!(
        config,
        serde_json::from_slice::<Value>(&f.image.config).unwrap()
    );

    let names = members(&a);
    assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(names[names.len() - 2..], ["index.json", "oci-layout"]);
    assert_eq!(
        names.len(),
        2 + 5 + 2,
        "3 layers, config and manifest: {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    skopeo(&[
        "copy",
        &reference("oci-archive", &a, None),
        &reference("dir", &f.temp.path().join("copy"), None),
    ]);
}

#[test]
fn docker_archive_is_read_by_skopeo_and_reproducible() {
    let f = fixture();
    let (a, b) = (f.temp.path().join("a.tar"), f.temp.path().join("b.tar"));
    docker_archive(&f, &a).unwrap();
    docker_archive(&f, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

    let inspect = skopeo_json(&["inspect", &reference("docker-archive", &a, None)]);
    // Docker archives carry uncompressed layers, so their digests are the diff IDs.
    let diff_ids: Vec<String> = f.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(inspect["Layers"], json!(diff_ids));
    assert_eq!(inspect["Env"], json!(f.input.env));
    assert_eq!(inspect["Labels"]["com.example.team"], "ml");
    let config = skopeo_json(&[
        "inspect",
        "--config",
        &reference("docker-archive", &a, None),
    ]);
    assert_eq!(
        config,
        serde_json::from_slice::<Value>(&f.image.config).unwrap()
    );

    let unpacked = f.temp.path().join("unpacked");
    extract(&a, &unpacked);
    for layer in &f.layers {
        let member = fs::read(unpacked.join(format!("{}.tar", layer.diff_id.hex()))).unwrap();
        assert_eq!(member.len() as u64, layer.uncompressed_size);
        assert_eq!(Digest::of(&member), layer.diff_id);
    }
    let manifest: Value =
        serde_json::from_slice(&fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest[0]["Config"],
        format!("{}.json", f.image.config_digest.hex())
    );
    assert_eq!(manifest[0]["RepoTags"], json!(["example.invalid/app:v1"]));
    let repositories: Value =
        serde_json::from_slice(&fs::read(unpacked.join("repositories")).unwrap()).unwrap();
    assert_eq!(
        repositories["example.invalid/app"]["v1"],
        f.layers[2].diff_id.hex()
    );

    // skopeo recomputes each layer's digest while copying and checks it against the config.
    let copy = f.temp.path().join("copy");
    skopeo(&[
        "copy",
        &reference("docker-archive", &a, None),
        &reference("oci", &copy, Some("t")),
    ]);
    let copied = skopeo_json(&["inspect", "--config", &reference("oci", &copy, Some("t"))]);
    assert_eq!(copied["rootfs"]["diff_ids"], json!(diff_ids));
}

#[test]
fn untagged_docker_archive_has_no_repositories_file() {
    let f = fixture();
    let path = f.temp.path().join("untagged.tar");
    gpubox_atomic::write(&path, &gpubox_atomic::Options::new(), |file| {
        write_docker_archive(file, &[], &f.image, &f.store).map(drop)
    })
    .unwrap();
    let names = members(&path);
    assert!(!names.iter().any(|n| n == "repositories"), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    skopeo(&["inspect", &reference("docker-archive", &path, None)]);
}

#[test]
fn a_corrupt_store_blob_fails_the_export_and_leaves_no_file() {
    let f = fixture();
    // Same size, different bytes: only the digest check can tell.
    let blob = f.store.path(&f.layers[2].digest);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::File::create(&blob).unwrap().write_all(&bytes).unwrap();

    for (name, write) in [
        ("oci.tar", oci_archive as fn(&Fixture, &Path) -> _),
        ("docker.tar", docker_archive),
    ] {
        let path = f.temp.path().join(name);
        let err = write(&f, &path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&f.layers[2].digest.to_string()),
            "{name}: {message}"
        );
        assert!(message.contains("damaged"), "{name}: {message}");
        assert!(!path.exists());
    }
    let left: Vec<_> = fs::read_dir(f.temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["store"], "no temporary files may be left");
}

#[test]
fn podman_loads_both_archives() {
    let f = fixture();
    let root = f.temp.path().join("podman");
    let docker = f.temp.path().join("docker.tar");
    docker_archive(&f, &docker).unwrap();
    podman(&root, &["load", "-q", "-i", docker.to_str().unwrap()]);
    let inspect: Value = serde_json::from_str(&podman(
        &root,
        &["image", "inspect", "example.invalid/app:v1"],
    ))
    .unwrap();
    // podman's image ID is the config digest: it kept our config byte for byte.
    assert_eq!(inspect[0]["Id"], f.image.config_digest.hex());
    let diff_ids: Vec<String> = f.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(inspect[0]["RootFS"]["Layers"], json!(diff_ids));
    assert_eq!(inspect[0]["Config"]["Env"], json!(f.input.env));

    let oci = f.temp.path().join("oci.tar");
    oci_archive(&f, &oci).unwrap();
    let other_root = f.temp.path().join("podman-oci");
    podman(&other_root, &["load", "-q", "-i", oci.to_str().unwrap()]);
    let ids = podman(&other_root, &["images", "-q", "--no-trunc"]);
    assert!(ids.contains(f.image.config_digest.hex()), "{ids}");
}
