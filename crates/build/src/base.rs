//! `fromImage`: a base image read from an `oci:` folder, an `oci-archive:` or a
//! `docker-archive:` file, or pulled from a registry (`docker://`) into the
//! layer cache, whose layers go under ours byte for byte and whose config is
//! merged under the spec's. A registry base named by tag is resolved to a
//! digest on every build (and the digest printed); its blobs already in the
//! cache are not downloaded again.
//!
//! The merge, exactly:
//! - `Env`: the base's, then gpubox's generated and GPU variables, then the
//!   spec's `env`/`extraEnv`; each later one wins. `PATH` is the base's when
//!   the base has one and the spec wrote no `PATH` in `env` or `extraEnv`.
//! - `Entrypoint`: the spec's (or `/bin/gpubox-init`); the base's is dropped.
//! - `Cmd`: the spec's; when the spec has none, the base's `Entrypoint`
//!   followed by its `Cmd`, so the base's program runs under ours.
//! - `Labels`: the base's, overlaid with ours. `ExposedPorts`: the union.
//! - `User`, `WorkingDir`: the spec's when it sets them, else the base's when
//!   it has them, else gpubox's defaults (`root`, `/root`).
//! - History: the base's entries first, as they are; one per base layer is
//!   written instead when the base's history does not match its layers.
//!
//! Base layers keep their compression; Docker layer media types are written as
//! their OCI equivalents, which name the same bytes. Whiteouts in them are left
//! for the runtime to apply.
//!
//! The base's `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` (as its
//! layers and their whiteouts leave them) are handed to the rootfs, which keeps
//! them and adds only the accounts gpubox needs. What each base layer holds at
//! those paths is remembered in the layer cache, by layer digest, so a
//! rebuild does not read the base's layers again.

use std::collections::BTreeMap;
use std::path::Path;

use gpubox_layers::cache::LayerCache;
use gpubox_oci::image::BaseLayers;
use gpubox_oci::source::{stack_layer_files, LayerFile};
use gpubox_spec::{Spec, DEFAULT_USER, DEFAULT_WORKING_DIR};
use miette::SourceSpan;
use serde_json::Value;

use crate::commands::inspect::{open_from, OpenedImage, RegistrySource};
use crate::error::CliError;
use crate::progress::{bytes, Progress};
use crate::target::Target;

/// Why a base image cannot be used. The advice is in the message, as the
/// error is shown under the spec's `fromImage` line.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(
        "the base has {base} layers, but maxLayers = {max_layers} leaves room for at most \
         {room} base layers beside gpubox's own; raise maxLayers (up to 125) or squash the \
         base (`podman build --squash-all`)"
    )]
    TooManyLayers {
        base: usize,
        max_layers: usize,
        room: usize,
    },
    #[error("the base is a {found} image, but this build makes a {expected} image; use a base built for {expected}")]
    Platform { found: String, expected: String },
    #[error("the base's config cannot be read: {0}")]
    Config(String),
}

/// The spec's base image, opened; with no `fromImage`, an empty base that
/// leaves the spec's settings as they are.
#[derive(Default)]
pub struct Base {
    /// `fromImage` as written.
    name: String,
    span: Option<SourceSpan>,
    image: Option<OpenedImage>,
    config: BaseConfig,
    /// What the base has at [`gpubox_rootfs::BASE_ACCOUNT_FILES`].
    files: BTreeMap<String, LayerFile>,
}

/// The parts of the base's config that are merged under ours.
#[derive(Default)]
struct BaseConfig {
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
    exposed_ports: Vec<String>,
    user: String,
    working_dir: String,
    history: Vec<Value>,
}

/// Opens the spec's `fromImage` (pulling it through `registry` when it is a
/// `docker://` image) and reads its config and account files;
/// `architecture` is the image's (GOARCH spelling), which the base must match.
pub fn open(
    spec: &Spec,
    architecture: &str,
    registry: &RegistrySource<'_>,
) -> Result<Base, CliError> {
    let Some(item) = &spec.from_image else {
        return Ok(Base::default());
    };
    let name = item.value.clone();
    let in_spec = |error: CliError| {
        error.in_spec(
            spec,
            item.span,
            format!("fromImage `{name}` cannot be used as the base image"),
        )
    };
    let target = name
        .parse::<Target>()
        .map_err(|e| in_spec(e.into()))
        .map(|target| relative_to(target, &spec.dir))?;
    let image = open_from(&target, Some(registry)).map_err(in_spec)?;
    let config = read_config(&name, &image, architecture).map_err(|e| in_spec(e.into()))?;
    let files = account_files(&image, registry.cache_root).map_err(in_spec)?;
    Ok(Base {
        span: item.span,
        name,
        image: Some(image),
        config,
        files,
    })
}

/// What the base's layers, whiteouts applied, leave at
/// [`gpubox_rootfs::BASE_ACCOUNT_FILES`]. Each layer's part is read once and
/// then remembered in the layer cache at `cache_root`, for as long as the
/// cache keeps the layer.
fn account_files(
    image: &OpenedImage,
    cache_root: &Path,
) -> Result<BTreeMap<String, LayerFile>, CliError> {
    let cache = LayerCache::open(cache_root)?;
    let wanted = gpubox_rootfs::BASE_ACCOUNT_FILES;
    let mut layers = Vec::new();
    for (index, layer) in image.reader.layers().iter().enumerate() {
        let files = match cache.base_files(&layer.digest, &wanted) {
            Some(files) => files,
            None => {
                let files = image.reader.layer_files(index, &wanted)?;
                cache.put_base_files(&layer.digest, &wanted, &files)?;
                files
            }
        };
        layers.push(files);
    }
    Ok(stack_layer_files(&layers))
}

/// A relative path in `fromImage` is relative to the spec's folder.
fn relative_to(target: Target, dir: &Path) -> Target {
    match target {
        Target::OciDir { dir: path, tag } => Target::OciDir {
            dir: dir.join(path),
            tag,
        },
        Target::OciArchive { file, tag } => Target::OciArchive {
            file: dir.join(file),
            tag,
        },
        Target::DockerArchive { file } => Target::DockerArchive {
            file: dir.join(file),
        },
        other @ (Target::Engine { .. } | Target::Registry { .. }) => other,
    }
}

fn read_config(
    name: &str,
    image: &OpenedImage,
    architecture: &str,
) -> Result<BaseConfig, BaseError> {
    let bad = BaseError::Config;
    let document = image
        .reader
        .config()
        .map_err(|error| bad(error.to_string()))?;
    let platform = |key: &str| document[key].as_str().unwrap_or_default().to_owned();
    let (found_os, found_arch) = (platform("os"), platform("architecture"));
    if found_os != "linux" || found_arch != architecture {
        return Err(BaseError::Platform {
            found: format!("{found_os}/{found_arch}"),
            expected: format!("linux/{architecture}"),
        });
    }
    let config = &document["config"];
    let strings = |key: &str| -> Result<Vec<String>, BaseError> {
        match &config[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        bad(format!("config.{key} holds a value that is not a string"))
                    })
                })
                .collect(),
            _ => Err(bad(format!("config.{key} is not a list of strings"))),
        }
    };
    let text = |key: &str| config[key].as_str().unwrap_or_default().to_owned();
    let env = strings("Env")?
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (pair, String::new()),
        })
        .collect();
    let labels = config["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let exposed_ports = config["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(port, _)| port.clone())
        .collect();
    let layer_count = image.reader.layers().len();
    let history: Vec<Value> = document["history"].as_array().cloned().unwrap_or_default();
    let history_layers = history
        .iter()
        .filter(|entry| entry["empty_layer"].as_bool() != Some(true))
        .count();
    let history = if history_layers == layer_count {
        history
    } else {
        (1..=layer_count)
            .map(|n| {
                serde_json::json!({
                    "created_by": format!("gpubox: layer {n} of base image {name}"),
                    "comment": "gpubox",
                })
            })
            .collect()
    };
    Ok(BaseConfig {
        env,
        entrypoint: strings("Entrypoint")?,
        cmd: strings("Cmd")?,
        labels,
        exposed_ports,
        user: text("User"),
        working_dir: text("WorkingDir"),
        history,
    })
}

impl Base {
    /// What the base has at [`gpubox_rootfs::BASE_ACCOUNT_FILES`], for
    /// [`gpubox_rootfs::assemble_over`]; empty without a base.
    pub fn account_files(&self) -> &BTreeMap<String, LayerFile> {
        &self.files
    }

    /// The digest of the base's manifest (`sha256:HEX`), for the SBOM; `None`
    /// without a base or for a Docker archive, which has no manifest blob.
    pub fn manifest_digest(&self) -> Option<String> {
        self.image
            .as_ref()
            .and_then(|image| image.reader.manifest_digest())
            .map(|digest| digest.to_string())
    }

    fn layer_count(&self) -> usize {
        self.image
            .as_ref()
            .map_or(0, |image| image.reader.layers().len())
    }

    /// How many layers the closure may have: `maxLayers`, less gpubox's top
    /// layer and the base's layers. Fails when the base leaves no room for
    /// the top layer and, when there are store paths, one layer of them.
    pub fn store_path_budget(
        &self,
        spec: &Spec,
        closure_is_empty: bool,
    ) -> Result<usize, CliError> {
        let ours = if closure_is_empty { 1 } else { 2 };
        let room = spec.max_layers.saturating_sub(ours);
        let base = self.layer_count();
        if base > room {
            return Err(CliError::from(BaseError::TooManyLayers {
                base,
                max_layers: spec.max_layers,
                room,
            })
            .in_spec(
                spec,
                self.span,
                format!("fromImage `{}` has too many layers", self.name),
            ));
        }
        Ok(spec.max_layers - 1 - base)
    }

    /// Copies the base's layers into `store` as they are and returns them with
    /// the base's history.
    pub fn copy_layers(
        &self,
        cache: &LayerCache,
        progress: &Progress,
    ) -> Result<BaseLayers, CliError> {
        let Some(image) = &self.image else {
            return Ok(BaseLayers::default());
        };
        let count = image.reader.layers().len();
        let mut layers = Vec::with_capacity(count);
        for (index, layer) in image.reader.layers().iter().enumerate() {
            // A layer copied before is not read again: its digest says it all.
            let key = LayerCache::base_key(&layer.digest);
            let (blob, cached) = match cache.get(&key) {
                Some(blob) => (blob, true),
                None => {
                    let blob = image.reader.copy_raw_layer(index, cache.store())?;
                    cache.put(&key, &blob)?;
                    (blob, false)
                }
            };
            progress.step(format!(
                "base layer {}/{count} {} {} (reused as is{})",
                index + 1,
                blob.digest,
                bytes(blob.size),
                if cached { ", cached" } else { "" }
            ));
            layers.push(blob);
        }
        Ok(BaseLayers {
            layers,
            history: self.config.history.clone(),
        })
    }

    /// The image's user: the spec's, else the base's, else [`DEFAULT_USER`].
    pub fn user(&self, spec: &Spec) -> String {
        chosen(spec.user.as_deref(), &self.config.user, DEFAULT_USER)
    }

    /// The working folder: the spec's, else the base's, else
    /// [`DEFAULT_WORKING_DIR`].
    pub fn working_dir(&self, spec: &Spec) -> String {
        chosen(
            spec.working_dir.as_deref(),
            &self.config.working_dir,
            DEFAULT_WORKING_DIR,
        )
    }

    /// The base's environment under `generated` and the spec's, with the
    /// base's `PATH` kept unless the spec wrote one.
    pub fn env_under(
        &self,
        spec: &Spec,
        generated: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = self.config.env.clone();
        let base_path = env.get("PATH").cloned();
        env.extend(generated);
        env.extend(spec.env.clone());
        if let Some(path) = base_path.filter(|_| !spec.env_sets_path) {
            env.insert("PATH".to_owned(), path);
        }
        env
    }

    /// The base's labels, for ours to be laid over.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config.labels.clone()
    }

    /// The spec's command, else the base's entrypoint and command.
    pub fn cmd(&self, spec: &Spec) -> Vec<String> {
        if spec.cmd.is_empty() {
            [self.config.entrypoint.clone(), self.config.cmd.clone()].concat()
        } else {
            spec.cmd.clone()
        }
    }

    /// The base's exposed ports and the spec's, without repeats.
    pub fn exposed_ports(&self, spec: &Spec) -> Vec<String> {
        let mut ports = self.config.exposed_ports.clone();
        for port in &spec.exposed_ports {
            if !ports.contains(port) {
                ports.push(port.clone());
            }
        }
        ports
    }
}

/// The spec's value, else the base's when not empty, else the default.
fn chosen(spec: Option<&str>, base: &str, default: &str) -> String {
    spec.or(Some(base).filter(|value| !value.is_empty()))
        .unwrap_or(default)
        .to_owned()
}
