//! What a manifest address holds (one image's manifest, or an index of them), and an
//! index's entry for one platform. A registry answers a tag with either; the bytes are
//! untrusted, so both readers return an error for anything unexpected and never panic.
//! OCI and Docker spell the same two things with different media types; both are read.
//!
//! It also writes the one gpubox builds: an OCI image index with one manifest per
//! platform ([`assemble_index`]), canonical JSON like every other document gpubox
//! writes, so the same images give the same index digest on every machine.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::image::{
    canonical_json, BuiltImage, Descriptor, ImageError, ImagePlatform, MANIFEST_MEDIA_TYPE,
};

const OCI_MANIFEST: &str = crate::image::MANIFEST_MEDIA_TYPE;
const OCI_INDEX: &str = crate::image::INDEX_MEDIA_TYPE;
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a manifest lists platforms or is one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

impl ManifestKind {
    /// Reads a manifest's `mediaType` (or, where it has none, its shape). The error says
    /// what the document is instead, such as "of media type `…v1+json`".
    pub fn of(bytes: &[u8]) -> Result<ManifestKind, String> {
        let document: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        match document["mediaType"].as_str() {
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(ManifestKind::Image),
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => Ok(ManifestKind::Index),
            Some(other) => Err(format!("of media type `{other}`")),
            None if document["manifests"].is_array() => Ok(ManifestKind::Index),
            None if document["layers"].is_array() && document["schemaVersion"] == 2 => {
                Ok(ManifestKind::Image)
            }
            None => Err("neither an image manifest nor an index".to_owned()),
        }
    }
}

/// Why an index gave no entry for a platform.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformEntryError {
    #[error("{0}")]
    Invalid(String),
    #[error("an index with no {wanted} entry (it has {})", available.join(", "))]
    Missing {
        wanted: String,
        /// `os/architecture` of every entry, in the index's order (`?` for a missing part).
        available: Vec<String>,
    },
}

/// The digest of the first entry of `index` for `os/architecture`.
pub fn platform_entry(
    index: &[u8],
    os: &str,
    architecture: &str,
) -> Result<Digest, PlatformEntryError> {
    let document: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| PlatformEntryError::Invalid(format!("not valid JSON: {e}")))?;
    let entries = document["manifests"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let platform = |entry: &serde_json::Value| {
        format!(
            "{}/{}",
            entry["platform"]["os"].as_str().unwrap_or("?"),
            entry["platform"]["architecture"].as_str().unwrap_or("?")
        )
    };
    let wanted = format!("{os}/{architecture}");
    match entries.iter().find(|entry| platform(entry) == wanted) {
        Some(entry) => entry["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                PlatformEntryError::Invalid(format!(
                    "an index whose {wanted} entry has no valid digest"
                ))
            }),
        None => Err(PlatformEntryError::Missing {
            wanted,
            available: entries.iter().map(platform).collect(),
        }),
    }
}

/// An assembled image index: one image per platform, and the index's bytes.
#[derive(Clone, Debug)]
pub struct BuiltIndex {
    /// The platforms' images, in the index's order.
    pub images: Vec<BuiltImage>,
    pub index: Vec<u8>,
    pub index_digest: Digest,
}

/// What a build made: one image, or an index of one image per platform.
#[derive(Clone, Debug)]
pub enum Artifact {
    Image(BuiltImage),
    Index(BuiltIndex),
}

impl From<BuiltImage> for Artifact {
    fn from(image: BuiltImage) -> Artifact {
        Artifact::Image(image)
    }
}

impl Artifact {
    /// The images it holds: one, or one per platform.
    pub fn images(&self) -> &[BuiltImage] {
        match self {
            Artifact::Image(image) => std::slice::from_ref(image),
            Artifact::Index(index) => &index.images,
        }
    }

    /// What a tag names: the image's manifest or the index.
    pub fn top(&self) -> (&'static str, &Digest, &[u8]) {
        match self {
            Artifact::Image(image) => {
                (MANIFEST_MEDIA_TYPE, &image.manifest_digest, &image.manifest)
            }
            Artifact::Index(index) => (OCI_INDEX, &index.index_digest, &index.index),
        }
    }

    /// The digest a tag names: the image's manifest's or the index's.
    pub fn digest(&self) -> &Digest {
        self.top().1
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexDocument {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<IndexEntry>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct IndexEntry {
    #[serde(flatten)]
    descriptor: Descriptor,
    platform: ImagePlatform,
}

/// The index of `images` (one per platform, in the order given), carrying
/// `annotations` (the images' own title, version and creation date).
pub fn assemble_index(
    images: Vec<BuiltImage>,
    annotations: BTreeMap<String, String>,
) -> Result<BuiltIndex, ImageError> {
    let document = IndexDocument {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: images
            .iter()
            .map(|image| IndexEntry {
                descriptor: Descriptor {
                    media_type: MANIFEST_MEDIA_TYPE.to_owned(),
                    digest: image.manifest_digest.clone(),
                    size: image.manifest.len() as u64,
                    annotations: BTreeMap::new(),
                },
                platform: image.platform.clone(),
            })
            .collect(),
        annotations,
    };
    let index = canonical_json(&document)?;
    Ok(BuiltIndex {
        images,
        index_digest: Digest::of(&index),
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_told_apart_by_media_type_or_shape() {
        let kind = |json: &str| ManifestKind::of(json.as_bytes());
        assert_eq!(
            kind(&format!(r#"{{"mediaType":"{DOCKER_MANIFEST}"}}"#)),
            Ok(ManifestKind::Image)
        );
        assert_eq!(
            kind(&format!(r#"{{"mediaType":"{DOCKER_MANIFEST_LIST}"}}"#)),
            Ok(ManifestKind::Index)
        );
        assert_eq!(
            kind(r#"{"schemaVersion":2,"manifests":[]}"#),
            Ok(ManifestKind::Index)
        );
        assert_eq!(
            kind(r#"{"schemaVersion":2,"config":{},"layers":[]}"#),
            Ok(ManifestKind::Image)
        );
        assert!(
            kind(r#"{"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#)
                .unwrap_err()
                .contains("v1+json")
        );
        assert!(kind("nope").is_err());
        assert!(kind("[1,2]").is_err());
    }

    #[test]
    fn a_platform_is_picked_from_an_index() {
        let (amd, arm) = ("a".repeat(64), "b".repeat(64));
        let index = format!(
            r#"{{"manifests":[
              {{"digest":"sha256:{arm}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"digest":"sha256:{amd}","platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"digest":"sha256:nothex","platform":{{"os":"linux","architecture":"riscv64"}}}},
              {{"digest":"sha256:{amd}"}}]}}"#
        );
        let entry = |arch| platform_entry(index.as_bytes(), "linux", arch);
        assert_eq!(entry("amd64").unwrap().hex(), amd);
        assert!(matches!(
            entry("riscv64"),
            Err(PlatformEntryError::Invalid(_))
        ));
        match entry("s390x") {
            Err(PlatformEntryError::Missing { available, .. }) => assert_eq!(
                available,
                ["linux/arm64", "linux/amd64", "linux/riscv64", "?/?"]
            ),
            other => panic!("{other:?}"),
        }
    }
}
