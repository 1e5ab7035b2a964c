//! Attaching an SBOM to a pushed image as an OCI 1.1 referrer: an artifact
//! manifest (artifactType `application/spdx+json`, the empty config, the SBOM
//! as its one layer) whose `subject` is the image's manifest. Registries
//! without the referrers API (docker-registry 2.x) get the referrers tag
//! schema instead: the tag `sha256-HEX` of the image's digest holds an image
//! index listing its referrers, merged with the one already there.

use std::io::{Cursor, Read};

use gpubox_oci::Digest;
use oci_client::{Reference, RegistryOperation};
use serde_json::json;

use crate::push::Blob;
use crate::session::{
    block_on, is_not_found, is_transient, manifest_media_type, parse_reference, retry, PushError,
    PushOptions, Session, OCI_MANIFEST_MEDIA_TYPE,
};

/// The media type of SPDX 2.3 JSON documents, and of the artifacts holding one.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// What attaching an SBOM did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerSummary {
    /// The artifact manifest's digest, `sha256:HEX`.
    pub manifest_digest: String,
    /// The referrers tag updated because the registry has no referrers API.
    pub fallback_tag: Option<String>,
}

/// Pushes `sbom` (SPDX JSON) to the repository of `reference` as a referrer of
/// the image whose manifest is `subject_manifest` (the exact bytes pushed).
pub fn push_sbom(
    reference: &str,
    subject_manifest: &[u8],
    sbom: &[u8],
    options: &PushOptions,
) -> Result<ReferrerSummary, PushError> {
    let image = parse_reference(reference)?;
    let subject_digest = Digest::of(subject_manifest).to_string();
    let subject = json!({
        "mediaType": manifest_media_type(subject_manifest)?,
        "digest": subject_digest,
        "size": subject_manifest.len(),
    });
    let manifest = artifact_manifest(subject, sbom);
    let digest = Digest::of(&manifest).to_string();
    let (registry, repository) = (image.resolve_registry(), image.repository());
    let tagged = |tag: String| Reference::with_tag(registry.to_owned(), repository.to_owned(), tag);
    let by_digest =
        |digest: String| Reference::with_digest(registry.to_owned(), repository.to_owned(), digest);
    let blobs = [
        Blob {
            digest: Digest::of(EMPTY_CONFIG).to_string(),
            size: EMPTY_CONFIG.len() as u64,
            mount_from: None,
        },
        Blob {
            digest: Digest::of(sbom).to_string(),
            size: sbom.len() as u64,
            mount_from: None,
        },
    ];
    block_on(async {
        let session = Session::open(&image, RegistryOperation::Push, options).await?;
        session
            .send_blobs(&image, &blobs, &|blob: &Blob| {
                let bytes = if blob.digest == blobs[0].digest {
                    EMPTY_CONFIG
                } else {
                    sbom
                };
                Ok::<_, std::io::Error>(Box::new(Cursor::new(bytes)) as Box<dyn Read>)
            })
            .await?;
        session
            .put_manifest(&by_digest(digest.clone()), &manifest)
            .await?;
        session.remember(&image, &blobs);

        let listed = session
            .client
            .pull_referrers(&by_digest(subject_digest.clone()), Some(SPDX_MEDIA_TYPE))
            .await
            .is_ok_and(|index| index.manifests.iter().any(|m| m.digest == digest));
        if listed {
            return Ok(ReferrerSummary {
                manifest_digest: digest,
                fallback_tag: None,
            });
        }
        let tag = subject_digest.replace(':', "-");
        let tag_ref = tagged(tag.clone());
        let existing = match retry(
            || {
                session
                    .client
                    .pull_manifest_raw(&tag_ref, &session.login.auth, &[INDEX_MEDIA_TYPE])
            },
            is_transient,
        )
        .await
        {
            Ok((bytes, _)) => serde_json::from_slice(&bytes).ok(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(session.fail(format!("reading the referrers tag {tag}"))(e)),
        };
        let entry = json!({
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": digest,
            "size": manifest.len(),
            "artifactType": SPDX_MEDIA_TYPE,
        });
        let index = merged_index(existing, entry);
        session.put_manifest(&tag_ref, &index).await?;
        Ok(ReferrerSummary {
            manifest_digest: digest,
            fallback_tag: Some(tag),
        })
    })
}

/// The OCI 1.1 artifact manifest holding `sbom`, referring to `subject`.
fn artifact_manifest(subject: serde_json::Value, sbom: &[u8]) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": SPDX_MEDIA_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY_CONFIG).to_string(),
            "size": EMPTY_CONFIG.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": SPDX_MEDIA_TYPE,
            "digest": Digest::of(sbom).to_string(),
            "size": sbom.len(),
        }],
        "subject": subject,
    });
    manifest.to_string().into_bytes()
}

/// The referrers index `existing` (anything that is not an index starts
/// afresh) with `entry` added unless an entry has its digest.
fn merged_index(existing: Option<serde_json::Value>, entry: serde_json::Value) -> Vec<u8> {
    let mut index = existing
        .filter(|index| index["manifests"].is_array())
        .unwrap_or_else(|| {
            json!({
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "manifests": [],
            })
        });
    if let Some(manifests) = index["manifests"].as_array_mut() {
        if !manifests.iter().any(|m| m["digest"] == entry["digest"]) {
            manifests.push(entry);
        }
    }
    index.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_name_their_subject_and_the_empty_config() {
        let subject =
            json!({"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": "sha256:ab", "size": 3});
        let manifest: serde_json::Value =
            serde_json::from_slice(&artifact_manifest(subject.clone(), b"{\"spdx\":1}")).unwrap();
        assert_eq!(manifest["subject"], subject);
        assert_eq!(manifest["artifactType"], SPDX_MEDIA_TYPE);
        assert_eq!(
            manifest["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(manifest["layers"][0]["size"], 10);
    }

    #[test]
    fn referrer_indexes_merge_without_repeats() {
        let a = json!({"digest": "sha256:a"});
        let b = json!({"digest": "sha256:b"});
        let first: serde_json::Value =
            serde_json::from_slice(&merged_index(None, a.clone())).unwrap();
        assert_eq!(first["mediaType"], INDEX_MEDIA_TYPE);
        let second: serde_json::Value =
            serde_json::from_slice(&merged_index(Some(first.clone()), b.clone())).unwrap();
        assert_eq!(second["manifests"], json!([a, b]));
        let again: serde_json::Value =
            serde_json::from_slice(&merged_index(Some(second.clone()), a)).unwrap();
        assert_eq!(again, second);
        let replaced: serde_json::Value =
            serde_json::from_slice(&merged_index(Some(json!("junk")), b.clone())).unwrap();
        assert_eq!(replaced["manifests"], json!([b]));
    }
}
