//! The image config and manifest: the two JSON documents that name an image's
//! layers, built so the same inputs always give the same bytes and digests.
//!
//! Both are serialized through [`canonical_json`] (keys sorted at every depth,
//! compact), so nothing about map iteration order or serde features can change a
//! digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::blob::LayerBlob;
use crate::digest::Digest;

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Annotation holding the image's creation time (RFC 3339).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// Annotation holding the image's name.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Annotation holding the image's tag.
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";
/// Annotation of an index entry that names the tag (`oci:DIR:TAG`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What the image config says beyond its layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfigInput {
    /// Creation time, Unix seconds.
    pub created: i64,
    /// GOARCH spelling, e.g. `amd64`.
    pub architecture: String,
    /// GOOS spelling, e.g. `linux`.
    pub os: String,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `PORT/PROTO`, e.g. `22/tcp`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    pub working_dir: String,
    /// The image name, recorded as the title annotation.
    pub title: String,
    /// The tag, recorded as the version annotation.
    pub version: String,
}

/// A layer and the history line that explains it.
#[derive(Clone, Debug)]
pub struct LayerInput {
    pub blob: LayerBlob,
    /// History text, e.g. `gpubox: 3 store paths`.
    pub created_by: String,
}

/// An assembled image: the config and manifest bytes with their digests, and the
/// layers the manifest names (whose blobs live in a [`crate::blob::BlobStore`]).
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub layers: Vec<LayerBlob>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Why an image could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the image creation time {0} (Unix seconds) is outside what RFC 3339 can express; \
         set `created` or SOURCE_DATE_EPOCH to a time between years 1 and 9999"
    )]
    CreatedOutOfRange(i64),
    /// Only reachable with a value whose map keys are not strings.
    #[error("cannot serialize `{what}` as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// A content descriptor as OCI manifests and indexes write it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The tag an index entry carries, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// An image manifest: OCI, or Docker schema 2, which has the same shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    config: ContainerConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

/// Empty lists and strings are left out, as Docker and Buildah do.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<&'a str, Empty>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

/// The `{}` value of Go's `map[string]struct{}` (ExposedPorts).
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a Digest>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
    comment: &'static str,
}

/// Formats Unix seconds as RFC 3339 UTC, e.g. `1970-01-01T00:00:01Z`.
pub fn rfc3339(unix_seconds: i64) -> Result<String, ImageError> {
    jiff::Timestamp::from_second(unix_seconds)
        .map(|t| t.to_string())
        .map_err(|_| ImageError::CreatedOutOfRange(unix_seconds))
}

/// Builds the config and manifest for `layers` (bottom first).
pub fn assemble(input: &ImageConfigInput, layers: &[LayerInput]) -> Result<BuiltImage, ImageError> {
    let created = rfc3339(input.created)?;
    let config = ImageConfig {
        created: &created,
        architecture: &input.architecture,
        os: &input.os,
        config: ContainerConfig {
            user: &input.user,
            exposed_ports: input
                .exposed_ports
                .iter()
                .map(|p| (p.as_str(), Empty {}))
                .collect(),
            env: &input.env,
            entrypoint: &input.entrypoint,
            cmd: &input.cmd,
            working_dir: &input.working_dir,
            labels: &input.labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| &l.blob.diff_id).collect(),
        },
        history: layers
            .iter()
            .map(|l| History {
                created: &created,
                created_by: &l.created_by,
                comment: "gpubox",
            })
            .collect(),
    };
    let config = canonical_json(&config)?;
    let config_digest = Digest::of(&config);

    let mut annotations = BTreeMap::from([(ANNOTATION_CREATED.to_owned(), created)]);
    for (key, value) in [
        (ANNOTATION_TITLE, &input.title),
        (ANNOTATION_VERSION, &input.version),
    ] {
        if !value.is_empty() {
            annotations.insert(key.to_owned(), value.clone());
        }
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_owned(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.blob.compression.oci_layer_media_type().to_owned(),
                digest: l.blob.digest.clone(),
                size: l.blob.size,
                annotations: BTreeMap::new(),
            })
            .collect(),
        annotations: annotations.clone(),
    };
    let manifest = canonical_json(&manifest)?;
    Ok(BuiltImage {
        config,
        config_digest,
        manifest_digest: Digest::of(&manifest),
        manifest,
        layers: layers.iter().map(|l| l.blob.clone()).collect(),
        annotations,
    })
}

/// Serializes `value` as compact JSON with the keys of every object sorted by
/// their bytes, with no trailing newline.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ImageError> {
    let json_error = |source| ImageError::Json {
        what: std::any::type_name::<T>(),
        source,
    };
    let value = sorted(serde_json::to_value(value).map_err(json_error)?);
    serde_json::to_vec(&value).map_err(json_error)
}

/// Rebuilds every object with its keys inserted in sorted order, which is the
/// order serde_json writes them whether its map keeps insertion order or sorts.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(1).unwrap(), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert!(matches!(
            rfc3339(i64::MAX),
            Err(ImageError::CreatedOutOfRange(_))
        ));
    }

    #[test]
    fn canonical_json_sorts_nested_keys_and_is_compact() {
        let value = serde_json::json!({"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": "s"});
        let mut hashed = std::collections::HashMap::new();
        hashed.insert("zeta", 1);
        hashed.insert("alpha", 2);
        hashed.insert("mid", 3);
        assert_eq!(
            canonical_json(&value).unwrap(),
            br#"{"a":"s","b":{"a":[{"x":3,"y":2}],"z":1}}"#
        );
        assert_eq!(
            canonical_json(&hashed).unwrap(),
            br#"{"alpha":2,"mid":3,"zeta":1}"#
        );
    }
}
