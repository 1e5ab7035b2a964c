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
    created: i64,
    subject: SbomSubject<'_>,
) -> Result<Vec<u8>, BuildError> {
    let SbomSubject {
        image,
        closure,
        host_files,
        base_image_digest,
        index_digest,
    } = subject;
    // One reading of the dpkg database serves every host file (none off Debian).
    let mut dpkg =
        gpubox_hostbin::dpkg::Database::open(Path::new(gpubox_hostbin::dpkg::DEFAULT_ROOT))
            .map_err(gpubox_hostbin::HostBinError::from)?;
    let mut packages = Vec::with_capacity(host_files.len());
    for host in host_files {
        packages.push(debian_package(dpkg.as_mut(), &host.source)?);
    }
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
            .zip(packages)
            .map(|(host, debian_package)| gpubox_sbom::HostFileEntry {
                image_path: host.image_path.clone(),
                host_path: host.source.clone(),
                debian_package,
            })
            .collect(),
        base_image_digest,
        platform: format!("{}/{}", image.platform.os, image.platform.architecture),
        index_digest,
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

/// The image an SBOM describes and what went into it.
pub struct SbomSubject<'a> {
    pub image: &'a BuiltImage,
    pub closure: &'a Closure,
    pub host_files: &'a [gpubox_hostbin::HostFile],
    /// The base image's manifest digest, for an image built on one.
    pub base_image_digest: Option<String>,
    /// The index the image is one platform of, if any.
    pub index_digest: Option<String>,
}

/// The installed Debian package that lists `file`, by name and version.
fn debian_package(
    dpkg: Option<&mut gpubox_hostbin::dpkg::Database>,
    file: &Path,
) -> Result<Option<gpubox_sbom::DebianPackage>, BuildError> {
    let Some(dpkg) = dpkg else {
        return Ok(None);
    };
    let owner = dpkg
        .owner(file)
        .map_err(gpubox_hostbin::HostBinError::from)?;
    Ok(owner.map(|package| gpubox_sbom::DebianPackage {
        name: package.name.clone(),
        version: package.version.clone(),
    }))
}
