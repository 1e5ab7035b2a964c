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
use crate::source::LayerSummary;

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
/// Annotation of an index entry that names it: a tag (`oci:DIR:TAG`) or a reference
/// (`oci-archive:FILE:NAME:TAG`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The name podman, Docker (25 and later) and containerd give an image loaded from an
/// OCI archive: a fully qualified reference (`localhost/app:1`).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Layer annotation: the Nix store paths with anything in the layer, a JSON array of
/// `/nix/store/HASH-NAME` strings, sorted (`[]` for a layer with none).
pub const LAYER_STORE_PATHS: &str = "io.gpubox.layer.store-paths";
/// Layer annotation: how many entries the layer's tar holds (decimal).
pub const LAYER_ENTRIES: &str = "io.gpubox.layer.entries";
/// Layer annotation: the size of the uncompressed tar in bytes (decimal).
pub const LAYER_UNCOMPRESSED_SIZE: &str = "io.gpubox.layer.uncompressed-size";
/// Layer annotation: what made a layer, the layer cache's key (for store paths:
/// the paths, compression, mtime and format version hashed; for files: their
/// tar's digest, compression and format version), so a build elsewhere can know
/// the layer without its bytes.
pub const LAYER_KEY: &str = "io.gpubox.layer.key";
/// Layer annotation: the size in bytes (decimal) of the blob gpubox made under
/// [`LAYER_KEY`]. A tool that recompresses the layer keeps the annotations but
/// not the size, so a build does not take the rewritten blob for its key.
pub const LAYER_SIZE: &str = "io.gpubox.layer.size";

/// The annotations gpubox writes on a layer it built: what [`summary_from_annotations`]
/// reads back (so `gpubox inspect` of a registry image needs no layer download), and
/// what `made` it: its cache key and the size of the blob made under it.
/// Deterministic: the same layer always gets the same annotations.
pub fn layer_annotations(
    summary: &LayerSummary,
    made: Option<(&str, u64)>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (
            LAYER_STORE_PATHS.to_owned(),
            serde_json::Value::from(summary.store_paths.clone()).to_string(),
        ),
        (LAYER_ENTRIES.to_owned(), summary.entry_count.to_string()),
        (
            LAYER_UNCOMPRESSED_SIZE.to_owned(),
            summary.uncompressed_size.to_string(),
        ),
    ]);
    if let Some((key, size)) = made {
        annotations.insert(LAYER_KEY.to_owned(), key.to_owned());
        annotations.insert(LAYER_SIZE.to_owned(), size.to_string());
    }
    annotations
}

/// What a layer holds, from the annotations [`layer_annotations`] wrote; `None` when
/// any is missing or malformed (a layer another tool built).
pub fn summary_from_annotations(annotations: &BTreeMap<String, String>) -> Option<LayerSummary> {
    let store_paths: Vec<String> =
        serde_json::from_str(annotations.get(LAYER_STORE_PATHS)?).ok()?;
    Some(LayerSummary {
        uncompressed_size: annotations.get(LAYER_UNCOMPRESSED_SIZE)?.parse().ok()?,
        entry_count: annotations.get(LAYER_ENTRIES)?.parse().ok()?,
        store_paths,
    })
}

/// The annotations that name an index entry `reference`: always `ref.name`, which skopeo
/// matches exactly (`oci:DIR:REF`); and, when the reference names a repository (it holds
/// `:` or `/`, so it is not a bare tag such as `latest`), `io.containerd.image.name`
/// with the name qualified as podman qualifies local names ([`qualified_name`]). podman
/// reads that annotation first and `ref.name` after, Docker (25 and later) the
/// annotation, so both engines load the archive under one name.
pub fn name_annotations(reference: &str) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(ANNOTATION_REF_NAME.to_owned(), reference.to_owned())]);
    if reference.contains([':', '/']) {
        annotations.insert(
            ANNOTATION_CONTAINERD_NAME.to_owned(),
            qualified_name(reference),
        );
    }
    annotations
}

/// `reference` with a registry host and a tag: a name whose first component is not a
/// host (no `.` or `:`, and not `localhost`) is local, `localhost/app` as podman names
/// what it builds and loads (not Docker Hub's `docker.io/library/app`, which a later
/// pull would overwrite); a missing tag is `latest`; a digest is kept.
pub fn qualified_name(reference: &str) -> String {
    let first = reference.split_once('/').map_or("", |(first, _)| first);
    let has_host = first.contains(['.', ':']) || first == "localhost";
    let qualified = if has_host {
        reference.to_owned()
    } else {
        format!("localhost/{reference}")
    };
    with_default_tag(&qualified, "latest")
}

/// `reference` with `tag` appended when it has none (`NAME` -> `NAME:TAG`); a
/// `:` after the last `/` is a tag, one before it belongs to a registry port.
pub fn with_default_tag(reference: &str, tag: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:{tag}")
    }
}

/// What the image config says beyond its layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfigInput {
    /// Creation time, Unix seconds.
    pub created: i64,
    /// GOARCH spelling, e.g. `amd64`.
    pub architecture: String,
    /// GOOS spelling, e.g. `linux`.
    pub os: String,
    /// The architecture's variant where OCI writes one (`v8` for arm64).
    pub variant: Option<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `PORT/PROTO`, e.g. `22/tcp`.
    pub exposed_ports: Vec<String>,
    /// Folders in the container that are persistent volumes, e.g. `/workspace`.
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    pub working_dir: String,
    /// The image name, recorded as the title annotation.
    pub title: String,
    /// The tag, recorded as the version annotation.
    pub version: String,
}

/// A layer, the history line that explains it, and its descriptor's annotations.
#[derive(Clone, Debug)]
pub struct LayerInput {
    pub blob: LayerBlob,
    /// History text, e.g. `gpubox: 3 store paths`.
    pub created_by: String,
    /// See [`layer_annotations`].
    pub annotations: BTreeMap<String, String>,
}

/// What a base image brings to a new one: its layers, bottom first, already in
/// the blob store, and its config's `history` entries as it wrote them (with
/// any `empty_layer` entries), which come before ours.
#[derive(Clone, Debug, Default)]
pub struct BaseLayers {
    pub layers: Vec<LayerBlob>,
    /// Each layer's annotations in the base's manifest, in the same order; kept,
    /// since they still describe the same blob.
    pub annotations: Vec<BTreeMap<String, String>>,
    pub history: Vec<serde_json::Value>,
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
    /// The platform its config names, as an index entry writes it.
    pub platform: ImagePlatform,
}

/// The build machine's architecture in OCI's (GOARCH's) spelling.
pub const HOST_ARCHITECTURE: &str = match std::env::consts::ARCH.as_bytes() {
    b"x86_64" => "amd64",
    b"aarch64" => "arm64",
    b"powerpc64" => "ppc64le",
    _ => std::env::consts::ARCH,
};

/// An image's platform as an index entry and its config write it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for ImagePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: ContainerConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<serde_json::Value>,
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
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<&'a str, Empty>,
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

/// The `{}` value of Go's `map[string]struct{}` (ExposedPorts, Volumes).
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
    assemble_on(input, &BaseLayers::default(), layers)
}

/// Builds the config and manifest for `base`'s layers followed by `layers`
/// (bottom first); the base's history entries come first, unchanged.
pub fn assemble_on(
    input: &ImageConfigInput,
    base: &BaseLayers,
    layers: &[LayerInput],
) -> Result<BuiltImage, ImageError> {
    let created = rfc3339(input.created)?;
    let json_error = |source| ImageError::Json {
        what: "history",
        source,
    };
    let mut history = base.history.clone();
    for layer in layers {
        let entry = History {
            created: &created,
            created_by: &layer.created_by,
            comment: "gpubox",
        };
        history.push(serde_json::to_value(entry).map_err(json_error)?);
    }
    let all_layers: Vec<&LayerBlob> = base
        .layers
        .iter()
        .chain(layers.iter().map(|l| &l.blob))
        .collect();
    let config = ImageConfig {
        created: &created,
        architecture: &input.architecture,
        os: &input.os,
        variant: input.variant.as_deref(),
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
            volumes: input
                .volumes
                .iter()
                .map(|v| (v.as_str(), Empty {}))
                .collect(),
            working_dir: &input.working_dir,
            labels: &input.labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: all_layers.iter().map(|l| &l.diff_id).collect(),
        },
        history,
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
        // The base's layers keep their annotations; ours say what made them.
        layers: all_layers
            .iter()
            .zip(
                (0..base.layers.len())
                    .map(|i| base.annotations.get(i))
                    .chain(layers.iter().map(|l| Some(&l.annotations))),
            )
            .map(|(l, annotations)| Descriptor {
                media_type: l.compression.oci_layer_media_type().to_owned(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: annotations.cloned().unwrap_or_default(),
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
        layers: all_layers.into_iter().cloned().collect(),
        annotations,
        platform: ImagePlatform {
            architecture: input.architecture.clone(),
            os: input.os.clone(),
            variant: input.variant.clone(),
        },
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
    fn references_are_qualified_as_podman_names_local_images() {
        for (given, qualified) in [
            ("app", "localhost/app:latest"),
            ("app:1", "localhost/app:1"),
            ("org/app:1", "localhost/org/app:1"),
            ("localhost/app:1", "localhost/app:1"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("quay.io/org/app:2", "quay.io/org/app:2"),
            (
                "registry.example/app@sha256:abc",
                "registry.example/app@sha256:abc",
            ),
        ] {
            assert_eq!(qualified_name(given), qualified, "{given}");
        }
        assert_eq!(
            name_annotations("app:1"),
            BTreeMap::from([
                (
                    ANNOTATION_CONTAINERD_NAME.to_owned(),
                    "localhost/app:1".to_owned()
                ),
                (ANNOTATION_REF_NAME.to_owned(), "app:1".to_owned()),
            ])
        );
        assert_eq!(
            name_annotations("latest"),
            BTreeMap::from([(ANNOTATION_REF_NAME.to_owned(), "latest".to_owned())])
        );
    }
    use crate::compress::Compression;

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
    fn base_layers_and_history_come_first() {
        let blob = |text: &[u8], compression| LayerBlob {
            digest: Digest::of(text),
            size: text.len() as u64,
            diff_id: Digest::of(&[text, b"-tar"].concat()),
            uncompressed_size: 10,
            entry_count: 1,
            compression,
            annotations: BTreeMap::new(),
        };
        let base = BaseLayers {
            layers: vec![blob(b"base", Compression::None)],
            annotations: vec![BTreeMap::from([("a.b".to_owned(), "c".to_owned())])],
            history: vec![
                serde_json::json!({"created_by": "ENV A=b", "empty_layer": true}),
                serde_json::json!({"created_by": "ADD base"}),
            ],
        };
        let summary = LayerSummary {
            uncompressed_size: 2048,
            entry_count: 3,
            store_paths: vec!["/nix/store/aaaa-hello-1.0".to_owned()],
        };
        let ours = LayerInput {
            blob: blob(b"ours", Compression::Gzip),
            created_by: "gpubox: top".to_owned(),
            annotations: layer_annotations(&summary, Some(("key-1", 11))),
        };
        let input = ImageConfigInput {
            created: 1,
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            env: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::new(),
            user: String::new(),
            working_dir: String::new(),
            title: String::new(),
            version: String::new(),
        };
        let image = assemble_on(&input, &base, std::slice::from_ref(&ours)).unwrap();
        let manifest: Manifest = serde_json::from_slice(&image.manifest).unwrap();
        let digests: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
        assert_eq!(digests, [&base.layers[0].digest, &ours.blob.digest]);
        assert_eq!(
            manifest.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
        // The base's layer keeps its annotations; ours reads back as it was made.
        assert_eq!(manifest.layers[0].annotations, base.annotations[0]);
        assert_eq!(manifest.layers[1].annotations[LAYER_KEY], "key-1");
        assert_eq!(manifest.layers[1].annotations[LAYER_SIZE], "11");
        assert_eq!(
            manifest.layers[1].annotations[LAYER_STORE_PATHS],
            r#"["/nix/store/aaaa-hello-1.0"]"#
        );
        assert_eq!(
            summary_from_annotations(&manifest.layers[1].annotations),
            Some(summary)
        );
        let mut partial = manifest.layers[1].annotations.clone();
        partial.remove(LAYER_ENTRIES);
        assert_eq!(summary_from_annotations(&partial), None);
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        // Every field left empty is left out (no `Volumes: {}`), so an image
        // without them has the bytes it had before gpubox knew them.
        assert_eq!(config["config"], serde_json::json!({}));
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([base.layers[0].diff_id, ours.blob.diff_id])
        );
        let history = config["history"].as_array().unwrap();
        assert_eq!(&history[..2], base.history.as_slice());
        assert_eq!(history[2]["created_by"], "gpubox: top");
        assert_eq!(image.layers.len(), 2);
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
