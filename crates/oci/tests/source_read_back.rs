//! Reading images back from every form gpubox writes, and from what skopeo and
//! GNU tar write.

mod gnu_tar;
mod image_fixture;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gnu_tar::gnu_tar;
use gpubox_oci::archive::{write_docker_archive, write_oci_archive};
use gpubox_oci::layout::write_oci_dir;
use gpubox_oci::source::{summarize_layer, ImageReader, ReadError};
use gpubox_oci::{Compression, Digest};
use image_fixture::{
    assemble_with, fixture, podman, read_all, reference, skopeo, Fixture, STORE_PATH,
};

/// The fixture written as an OCI folder (tags v1 and v2), an oci-archive and a
/// docker-archive.
struct Written {
    dir: std::path::PathBuf,
    oci_archive: std::path::PathBuf,
    docker_archive: std::path::PathBuf,
}

fn write_all_forms(f: &Fixture) -> Written {
    let dir = f.temp.path().join("layout");
    write_oci_dir(&dir, Some("v1"), &f.image.clone().into(), &f.store).unwrap();
    let oci_archive = f.temp.path().join("oci.tar");
    gpubox_atomic::write(&oci_archive, &gpubox_atomic::Options::new(), |file| {
        write_oci_archive(file, Some("v1"), &f.image.clone().into(), &f.store).map(drop)
    })
    .unwrap();
    let docker_archive = f.temp.path().join("docker.tar");
    gpubox_atomic::write(&docker_archive, &gpubox_atomic::Options::new(), |file| {
        write_docker_archive(file, &["app:v1".to_owned()], &f.image, &f.store).map(drop)
    })
    .unwrap();
    Written {
        dir,
        oci_archive,
        docker_archive,
    }
}

fn layer_tars(reader: &ImageReader) -> Vec<Vec<u8>> {
    (0..reader.layers().len())
        .map(|i| read_all(reader.open_layer(i).unwrap()))
        .collect()
}

#[test]
fn every_form_reads_back_the_same_config_and_layers() {
    let f = fixture();
    let w = write_all_forms(&f);
    let readers = [
        ImageReader::open_oci_dir(&w.dir, Some("v1")).unwrap(),
        ImageReader::open_oci_archive(&w.oci_archive, None).unwrap(),
        ImageReader::open_docker_archive(&w.docker_archive).unwrap(),
    ];
    for reader in &readers {
        assert_eq!(reader.config_json(), &f.image.config[..]);
        assert_eq!(reader.config().unwrap()["config"]["User"], "root");
        let tars = layer_tars(reader);
        assert_eq!(tars.len(), 3);
        for ((tar, blob), layer) in tars.iter().zip(&f.layers).zip(reader.layers()) {
            assert_eq!(Digest::of(tar), blob.diff_id);
            assert_eq!(layer.diff_id.as_ref(), Some(&blob.diff_id));
        }
    }
    for reader in &readers[..2] {
        assert_eq!(
            reader.manifest_digest(),
            Some(f.image.manifest_digest.clone())
        );
        assert_eq!(reader.repo_tags(), ["v1"]);
        let refs: Vec<_> = reader
            .layers()
            .iter()
            .map(|l| (l.digest.clone(), l.size, l.compression))
            .collect();
        let blobs: Vec<_> = f
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size, l.compression))
            .collect();
        assert_eq!(refs, blobs);
    }
    let docker = &readers[2];
    assert_eq!(docker.manifest_digest(), None);
    assert_eq!(docker.repo_tags(), ["app:v1"]);
    for (layer, blob) in docker.layers().iter().zip(&f.layers) {
        assert_eq!(
            (&layer.digest, layer.size, layer.compression),
            (&blob.diff_id, blob.uncompressed_size, Compression::None)
        );
    }
}

#[test]
fn summaries_count_entries_bytes_and_store_paths() {
    let f = fixture();
    let w = write_all_forms(&f);
    let reader = ImageReader::open_oci_dir(&w.dir, None).unwrap();
    for (i, blob) in f.layers.iter().enumerate() {
        let summary = summarize_layer(reader.open_layer(i).unwrap()).unwrap();
        assert_eq!(summary.entry_count, blob.entry_count);
        assert_eq!(summary.uncompressed_size, blob.uncompressed_size);
        let expected: Vec<String> = if i == 0 {
            vec![STORE_PATH.to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(summary.store_paths, expected);
    }
}

#[test]
fn tags_are_chosen_and_errors_name_the_folder_and_the_tags() {
    let f = fixture();
    let w = write_all_forms(&f);
    let mut input = f.input.clone();
    input.cmd = vec!["--version".into()];
    let second = assemble_with(&input, &f.layers);
    write_oci_dir(&w.dir, Some("v2"), &second.clone().into(), &f.store).unwrap();

    let v2 = ImageReader::open_oci_dir(&w.dir, Some("v2")).unwrap();
    assert_eq!(v2.config_json(), &second.config[..]);

    let err = ImageReader::open_oci_dir(&w.dir, Some("v3")).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "tag `v3` not found in {}; tags present: v1, v2",
            w.dir.display()
        )
    );
    let err = ImageReader::open_oci_dir(&w.dir, None).err().unwrap();
    assert!(matches!(err, ReadError::TagNeeded { .. }), "{err}");
    assert!(err.to_string().contains("v1, v2"), "{err}");

    let plain = f.temp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let err = ImageReader::open_oci_dir(&plain, None).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "not an OCI layout: {} has no oci-layout file",
            plain.display()
        )
    );
    let err = ImageReader::open_oci_archive(&w.docker_archive, None)
        .err()
        .unwrap();
    assert!(matches!(err, ReadError::NotALayout(_)), "{err}");
}

/// Flips a byte in the middle of a file, keeping its size.
fn corrupt(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_blob_is_an_error_when_read() {
    let f = fixture();
    let w = write_all_forms(&f);
    // The uncompressed layer: the damage decodes fine, only the digest shows it.
    let layer = &f.layers[2];
    corrupt(&w.dir.join("blobs/sha256").join(layer.digest.hex()));
    let reader = ImageReader::open_oci_dir(&w.dir, Some("v1")).unwrap();
    let mut sink = Vec::new();
    let err = reader
        .open_layer(2)
        .unwrap()
        .read_to_end(&mut sink)
        .unwrap_err();
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");

    corrupt(&w.dir.join("blobs/sha256").join(f.image.config_digest.hex()));
    let err = ImageReader::open_oci_dir(&w.dir, Some("v1")).err().unwrap();
    assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");

    assert!(matches!(
        reader.open_layer(7).err().unwrap(),
        ReadError::NoSuchLayer { index: 7, count: 3 }
    ));
}

#[test]
fn reads_archives_that_skopeo_writes() {
    let f = fixture();
    let w = write_all_forms(&f);
    // skopeo refuses zstd layers in Docker images, so that copy starts from our
    // docker-archive, whose layers are plain tars.
    let docker = f.temp.path().join("skopeo-docker.tar");
    skopeo(&[
        "copy",
        &reference("docker-archive", &w.docker_archive, None),
        &format!("docker-archive:{}:example.invalid/app:v1", docker.display()),
    ]);
    let oci = f.temp.path().join("skopeo-oci.tar");
    skopeo(&[
        "copy",
        &reference("oci", &w.dir, Some("v1")),
        &reference("oci-archive", &oci, Some("latest")),
    ]);

    let from_docker = ImageReader::open_docker_archive(&docker).unwrap();
    assert_eq!(from_docker.repo_tags(), ["example.invalid/app:v1"]);
    let from_oci = ImageReader::open_oci_archive(&oci, Some("latest")).unwrap();
    let ours = ImageReader::open_oci_dir(&w.dir, Some("v1")).unwrap();
    let expected = layer_tars(&ours);
    for reader in [&from_docker, &from_oci] {
        assert_eq!(reader.config().unwrap(), ours.config().unwrap());
        assert_eq!(layer_tars(reader), expected);
    }
}

#[test]
fn reads_a_docker_archive_repacked_by_gnu_tar() {
    let f = fixture();
    let w = write_all_forms(&f);
    let unpacked = f.temp.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    gnu_tar(&[
        "-xf",
        w.docker_archive.to_str().unwrap(),
        "-C",
        unpacked.to_str().unwrap(),
    ]);
    let expected = layer_tars(&ImageReader::open_docker_archive(&w.docker_archive).unwrap());
    for format in ["gnu", "pax", "ustar"] {
        // Members named `./<name>`, in directory order, as `docker save` users repack them.
        let repacked = f.temp.path().join(format!("{format}.tar"));
        gnu_tar(&[
            &format!("--format={format}"),
            "-cf",
            repacked.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
            ".",
        ]);
        let reader = ImageReader::open_docker_archive(&repacked).unwrap();
        // podman re-serializes the config for OCI output, so compare values.
        let config: serde_json::Value = serde_json::from_slice(&f.image.config).unwrap();
        assert_eq!(reader.config().unwrap(), config, "{format}");
        assert_eq!(layer_tars(&reader), expected, "{format}");
    }
}

#[test]
fn reads_what_podman_save_writes() {
    let f = fixture();
    let w = write_all_forms(&f);
    let root = f.temp.path().join("podman");
    podman(
        &root,
        &["load", "-q", "-i", w.docker_archive.to_str().unwrap()],
    );
    let expected = layer_tars(&ImageReader::open_oci_dir(&w.dir, Some("v1")).unwrap());
    for format in ["docker-archive", "oci-archive"] {
        let saved = f.temp.path().join(format!("saved-{format}.tar"));
        podman(
            &root,
            &[
                "save",
                "--format",
                format,
                "-o",
                saved.to_str().unwrap(),
                "app:v1",
            ],
        );
        let reader = match format {
            "docker-archive" => ImageReader::open_docker_archive(&saved),
            _ => ImageReader::open_oci_archive(&saved, None),
        }
        .unwrap();
        // podman re-serializes the config for OCI output, so compare values.
        let config: serde_json::Value = serde_json::from_slice(&f.image.config).unwrap();
        assert_eq!(reader.config().unwrap(), config, "{format}");
        assert_eq!(layer_tars(&reader), expected, "{format}");
    }
}
