//! The output step: the built image written where the user asked, by
//! transport: an OCI layout folder, an oci- or docker-archive (atomically), a
//! container engine's storage, or a registry. Also where a build may leave
//! unfinished files, so an interrupt can remove them, and the checks made
//! before any work that the output can be written at all.

use std::path::{Path, PathBuf};

use gpubox_atomic::Options;
use gpubox_layers::cache::LayerCache;
use gpubox_oci::archive::{write_docker_archive, write_oci_archive};
use gpubox_oci::blob::BlobStore;
use gpubox_oci::index::Artifact;
use gpubox_oci::layout::write_oci_dir;
use gpubox_registry::PushOptions;
use gpubox_spec::{Platform, Spec};

use crate::error::BuildError;
use crate::location::{with_default_tag, ImageLocation};
use crate::push::{push_built, PushHints};
use crate::reporter::Reporter;

/// Writes `artifact` (one image, or an index of one per platform; the layers
/// in `store`, the layer cache's blob store) to `output`; a name or tag the
/// output does not give is the spec's. An index goes only to outputs that hold
/// one (OCI layouts and archives, registries; the build narrowed the others to
/// one platform). An image
/// loaded into an engine is also recorded in the layer cache
/// ([`LayerCache::put_built`]), so `gpubox push` of the engine's image sends
/// the layers and manifest built here rather than the engine's export. A push
/// follows `hints` (layers to mount, blobs already sent).
pub fn write_output(
    output: &ImageLocation,
    spec: &Spec,
    artifact: &Artifact,
    store: &BlobStore,
    registry: &PushOptions,
    hints: &PushHints,
    reporter: &dyn Reporter,
) -> Result<(), BuildError> {
    let default_reference = format!("{}:{}", spec.name, spec.tag);
    // The outputs that hold one image; the build chose one platform for them.
    let one_image = || match artifact {
        Artifact::Image(image) => Ok(image),
        Artifact::Index(index) => Err(BuildError::OnePlatformOutput {
            output: output.to_string(),
            platforms: index
                .images
                .iter()
                .filter_map(|image| Platform::of_architecture(&image.platform.architecture))
                .collect(),
        }),
    };
    match output {
        ImageLocation::OciDir { dir, tag } => {
            write_oci_dir(
                dir,
                Some(tag.as_deref().unwrap_or(&spec.tag)),
                artifact,
                store,
            )?;
        }
        ImageLocation::OciArchive { file, tag } => {
            // An archive is loaded rather than browsed, so it is named in full, as
            // `podman save` and `docker save` name theirs.
            let reference = tag.as_deref().unwrap_or(&default_reference);
            create_folder_of(file)?;
            gpubox_atomic::write(file, &Options::new(), |f| {
                write_oci_archive(f, Some(reference), artifact, store).map(drop)
            })?;
        }
        ImageLocation::DockerArchive { file } => {
            let image = one_image()?;
            create_folder_of(file)?;
            gpubox_atomic::write(file, &Options::new(), |f| {
                write_docker_archive(f, std::slice::from_ref(&default_reference), image, store)
                    .map(drop)
            })?;
        }
        ImageLocation::Engine { engine, reference } => {
            let image = one_image()?;
            let reference = with_default_tag(reference, &spec.tag);
            reporter.step(&format!("loading into {engine} as {reference}"));
            let said = gpubox_engines::load(
                *engine,
                |w| {
                    write_docker_archive(w, std::slice::from_ref(&reference), image, store)
                        .map(drop)
                },
                |lost| {
                    reporter.step(&format!(
                        "{engine}'s storage lost a layer to another load or pull running at the \
                         same time; loading again ({lost})"
                    ))
                },
            )?;
            if !said.is_empty() {
                reporter.step(&said);
            }
            let written_to = ImageLocation::Engine {
                engine: *engine,
                reference,
            };
            LayerCache::open(store.root())?.put_built(&written_to.to_string(), image)?;
        }
        ImageLocation::Registry { reference } => {
            let reference = with_default_tag(reference, &spec.tag);
            push_built(&reference, artifact, store, registry, hints, reporter)?;
        }
    }
    reporter.step(&format!("wrote {output} ({})", artifact.digest()));
    Ok(())
}

/// Where this build may leave unfinished files if it is interrupted: beside the
/// output, inside an OCI layout, and in the cache.
pub fn partial_folders(output: &ImageLocation, cache_root: &Path) -> Vec<PathBuf> {
    let mut folders = vec![cache_root.join("tmp"), cache_root.join("layers")];
    if let ImageLocation::OciDir { dir, .. } = output {
        folders.push(dir.clone());
        folders.push(dir.join("blobs/sha256"));
    }
    folders.extend(output.path().map(parent_folder));
    folders
}

pub(crate) fn parent_folder(path: &Path) -> PathBuf {
    gpubox_atomic::folder_of(path).to_path_buf()
}

/// Fails before any work when the output cannot be written: its folder, or where
/// that is still missing (output folders are created when the image is written, as
/// skopeo creates an OCI layout's), the nearest folder above it that exists.
pub fn check_output_writable(output: &ImageLocation) -> Result<(), BuildError> {
    match output.path() {
        Some(path) => check_file_writable(path),
        None => Ok(()),
    }
}

/// Fails when a file cannot be created beside `path`, or, while its folder is
/// missing, in the nearest folder above that exists. The error names `path` and the
/// system's reason, not the probe's temporary file.
pub fn check_file_writable(path: &Path) -> Result<(), BuildError> {
    let folder = parent_folder(path);
    let existing = folder
        .ancestors()
        .find(|folder| folder.as_os_str().is_empty() || folder.exists())
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A probe file of our own: its error is the system's, about the folder.
    let probe = existing.join(gpubox_atomic::partial::unique_name());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map(|_| {
            let _ = std::fs::remove_file(&probe);
        })
        .map_err(|reason| BuildError::OutputNotWritable {
            path: path.to_path_buf(),
            reason,
        })
}

/// Creates the folders a file the user named goes into (after the build, so a
/// failed build leaves no empty folders).
pub fn create_folder_of(path: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(parent_folder(path)).map_err(|reason| BuildError::OutputNotWritable {
        path: path.to_path_buf(),
        reason,
    })
}

/// `--cache-dir`, else `GPUBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/gpubox`, else
/// `~/.cache/gpubox`.
pub fn cache_dir(flag: Option<&Path>) -> Result<PathBuf, BuildError> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GPUBOX_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("gpubox")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/gpubox")))
        .ok_or(BuildError::NoCacheDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubox_oci::image::{assemble, ImageConfigInput, LayerInput};
    use gpubox_oci::source::ImageReader;
    use gpubox_oci::{Compression, Entry, ImagePath};

    use crate::reporter::Silent;

    fn image(store: &BlobStore, architecture: &str) -> gpubox_oci::image::BuiltImage {
        let entries = [Entry::bytes(
            ImagePath::new("hello").unwrap(),
            0o644,
            b"hi".to_vec(),
        )];
        let blob = store
            .write_layer(entries.into_iter().map(Ok), Compression::Gzip, 0, &|_| {})
            .unwrap();
        assemble(
            &ImageConfigInput {
                created: 0,
                architecture: architecture.into(),
                os: "linux".into(),
                variant: (architecture == "arm64").then(|| "v8".into()),
                env: Vec::new(),
                entrypoint: vec!["/bin/gpubox-init".into()],
                cmd: Vec::new(),
                exposed_ports: Vec::new(),
                volumes: Vec::new(),
                labels: Default::default(),
                user: "root".into(),
                working_dir: "/root".into(),
                title: "demo".into(),
                version: "v1".into(),
            },
            &[LayerInput {
                blob,
                created_by: "test".into(),
                annotations: Default::default(),
            }],
        )
        .unwrap()
    }

    /// [`write_output`] of `artifact` to `output` for the spec `demo:v1`.
    fn write_to(
        output: &str,
        artifact: &Artifact,
        store: &BlobStore,
        options: &PushOptions,
    ) -> Result<(), BuildError> {
        write_output(
            &output.parse().unwrap(),
            &spec(),
            artifact,
            store,
            options,
            &PushHints::default(),
            &Silent,
        )
    }

    fn spec() -> Spec {
        gpubox_spec::parse(
            "name = \"demo\"\ntag = \"v1\"\n",
            Path::new("/s/gpubox.toml"),
        )
        .unwrap()
    }

    #[test]
    fn each_file_transport_writes_an_image_that_reads_back_with_the_spec_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store")).unwrap();
        let image = image(&store, "amd64");
        let artifact = Artifact::Image(image.clone());
        let write = |output: &str| {
            check_output_writable(&output.parse().unwrap()).unwrap();
            write_to(output, &artifact, &store, &PushOptions::default()).unwrap();
        };
        let at = |name: &str| dir.path().join(name).display().to_string();

        write(&format!("oci:{}", at("layout")));
        let reader = ImageReader::open_oci_dir(&dir.path().join("layout"), Some("v1")).unwrap();
        assert_eq!(
            reader.manifest_digest(),
            Some(image.manifest_digest.clone())
        );

        write(&format!("oci-archive:{}:other", at("image.tar")));
        let reader =
            ImageReader::open_oci_archive(&dir.path().join("image.tar"), Some("other")).unwrap();
        assert_eq!(
            reader.manifest_digest(),
            Some(image.manifest_digest.clone())
        );

        write(&format!("docker-archive:{}", at("docker.tar")));
        let reader = ImageReader::open_docker_archive(&dir.path().join("docker.tar")).unwrap();
        assert_eq!(reader.repo_tags(), ["demo:v1"]);
        assert_eq!(reader.layers().len(), 1);

        // Only finished files are left.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["docker.tar", "image.tar", "layout", "store"]);
    }

    #[test]
    fn an_index_goes_to_the_outputs_that_hold_one_and_reads_back_per_platform() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store")).unwrap();
        let (amd, arm) = (image(&store, "amd64"), image(&store, "arm64"));
        let index =
            gpubox_oci::index::assemble_index(vec![amd.clone(), arm.clone()], Default::default())
                .unwrap();
        let index_digest = index.index_digest.clone();
        let artifact = Artifact::Index(index);
        let write = |output: &str| write_to(output, &artifact, &store, &PushOptions::default());
        let layout = dir.path().join("layout");
        write(&format!("oci:{}", layout.display())).unwrap();
        let index_json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index_json["manifests"][0]["mediaType"],
            gpubox_oci::image::INDEX_MEDIA_TYPE
        );
        assert_eq!(
            index_json["manifests"][0]["digest"],
            index_digest.to_string()
        );
        for (architecture, expected) in [("amd64", &amd), ("arm64", &arm)] {
            let reader =
                ImageReader::open_oci_dir_for(&layout, Some("v1"), Some(architecture)).unwrap();
            assert_eq!(
                reader.manifest_digest(),
                Some(expected.manifest_digest.clone())
            );
            let opened = reader.index().expect("read through the index");
            assert_eq!(opened.digest, index_digest);
            assert_eq!(opened.platforms.len(), 2);
        }
        let error = ImageReader::open_oci_dir_for(&layout, Some("v1"), Some("s390x"))
            .err()
            .expect("no such platform");
        assert!(
            error.to_string().contains("linux/amd64, linux/arm64/v8"),
            "{error}"
        );

        // An archive of one image refuses, naming the flag, and writes nothing.
        let docker = dir.path().join("docker.tar");
        let error = write(&format!("docker-archive:{}", docker.display())).unwrap_err();
        assert!(
            matches!(error, BuildError::OnePlatformOutput { .. }),
            "{error}"
        );
        assert!(!docker.exists());
    }

    #[test]
    fn outputs_that_cannot_be_written_fail_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        // A folder that cannot be made: a file stands where it would go.
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let blocked = dir.path().join("file/folder/image.tar");
        let archive: ImageLocation = format!("oci-archive:{}", blocked.display())
            .parse()
            .unwrap();
        let error = check_output_writable(&archive).unwrap_err().to_string();
        assert!(
            error.contains("file/folder/image.tar: Not a directory"),
            "{error}"
        );
        // Missing folders are made when the image is written.
        let missing = dir.path().join("no/such/folder/image.tar");
        let archive: ImageLocation = format!("oci-archive:{}", missing.display())
            .parse()
            .unwrap();
        check_output_writable(&archive).unwrap();
        assert!(
            !dir.path().join("no").exists(),
            "not before the image is built"
        );
        let layout: ImageLocation = format!("oci:{}", dir.path().join("new/layout").display())
            .parse()
            .unwrap();
        check_output_writable(&layout).unwrap();
        // Engines and registries have no file to check.
        check_output_writable(&"docker://127.0.0.1:1/x".parse().unwrap()).unwrap();
    }

    #[test]
    fn unfinished_files_are_looked_for_beside_the_output_and_in_the_cache() {
        let layout: ImageLocation = "oci:/out/layout".parse().unwrap();
        let folders = partial_folders(&layout, Path::new("/cache"));
        for wanted in [
            "/cache/tmp",
            "/cache/layers",
            "/out/layout",
            "/out/layout/blobs/sha256",
            "/out",
        ] {
            assert!(
                folders.contains(&PathBuf::from(wanted)),
                "{wanted}: {folders:?}"
            );
        }
        let engine: ImageLocation = "podman:demo".parse().unwrap();
        assert_eq!(partial_folders(&engine, Path::new("/cache")).len(), 2);
    }

    #[test]
    fn a_registry_that_does_not_answer_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store")).unwrap();
        let image = image(&store, "amd64").into();
        let options = PushOptions {
            tls_verify: false,
            ..PushOptions::default()
        };
        let error = write_to("docker://127.0.0.1:1/demo", &image, &store, &options)
            .unwrap_err()
            .to_string();
        assert!(error.contains("127.0.0.1:1"), "{error}");
    }
}
