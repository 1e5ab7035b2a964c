//! The image's SPDX 2.3 software bill of materials: every store path with its
//! NAR hash, every host file with the Debian package it came from, and the
//! base image.

use std::path::Path;

use gpubox_nix::Closure;
use gpubox_oci::image::BuiltImage;
use gpubox_spec::Spec;

use crate::error::BuildError;

/// Writes the image's SPDX SBOM to `file` atomically, looking up the Debian
/// package of each host file; returns the bytes written.
pub fn write_sbom(
    file: &Path,
    spec: &Spec,
    image: &BuiltImage,
    created: i64,
    closure: &Closure,
    host_files: &[gpubox_hostbin::HostFile],
    base_image_digest: Option<String>,
) -> Result<Vec<u8>, BuildError> {
    let input = gpubox_sbom::SbomInput {
        image_name: spec.name.clone(),
        image_tag: spec.tag.clone(),
        manifest_digest: image.manifest_digest.to_string(),
        created,
        store_paths: closure
            .paths()
            .map(|info| gpubox_sbom::StorePathEntry {
                path: info.path.as_str().to_owned(),
                nar_hash: info.nar_hash.clone(),
                nar_size: info.nar_size,
                references: info
                    .references
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            })
            .collect(),
        host_files: host_files
            .iter()
            .map(|host| gpubox_sbom::HostFileEntry {
                image_path: host.image_path.clone(),
                host_path: host.source.clone(),
                debian_package: gpubox_sbom::dpkg::package_of(&host.source),
            })
            .collect(),
        base_image_digest,
    };
    let bytes = gpubox_sbom::render(&input).map_err(|e| gpubox_oci::layout::OutputError::Io {
        action: "write the SBOM",
        path: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    crate::output::create_folder_of(file)?;
    gpubox_atomic::write_bytes(file, &gpubox_atomic::Options::new(), &bytes)?;
    Ok(bytes)
}
