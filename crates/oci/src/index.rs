//! What a manifest address holds (one image's manifest, or an index of them), and an
//! index's entry for one platform. A registry answers a tag with either; the bytes are
//! untrusted, so both readers return an error for anything unexpected and never panic.
//! OCI and Docker spell the same two things with different media types; both are read.

use crate::digest::Digest;

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
