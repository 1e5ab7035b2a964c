//! `gpubox inspect`: what an image holds, from any place gpubox can write one
//! or a registry, and opening images from all those places for the other
//! commands.

use std::io::Write;
use std::path::Path;

use gpubox_layers::cache::LayerCache;
use gpubox_oci::source::{summarize_layer, ImageReader, LayerSummary};
use gpubox_registry::PushOptions;
use serde_json::{json, Value};

use crate::error::CliError;
use crate::progress::{bytes, Progress};
use crate::target::Target;

/// An image opened for reading. An engine's image is first saved to a
/// temporary docker-archive, kept as long as this value lives; a registry's
/// is pulled into the layer cache, held open (so no collection removes its
/// blobs) as long as this value lives.
pub struct OpenedImage {
    pub reader: ImageReader,
    _saved: Option<tempfile::NamedTempFile>,
    _cache: Option<LayerCache>,
}

/// What reading a `docker://` image takes: how to reach the registry, the
/// layer cache its blobs are pulled into, and where to say what the pull did.
pub struct RegistrySource<'a> {
    pub options: &'a PushOptions,
    pub cache_root: &'a Path,
    pub progress: &'a Progress,
}

/// Opens the image at `source`, which must not be in a registry.
pub fn open(source: &Target) -> Result<OpenedImage, CliError> {
    open_from(source, None)
}

/// Opens the image at `source`, wherever it is; a `docker://` source needs
/// `registry`.
pub fn open_from(
    source: &Target,
    registry: Option<&RegistrySource<'_>>,
) -> Result<OpenedImage, CliError> {
    let (reader, saved, cache) = match source {
        Target::OciDir { dir, tag } => {
            (ImageReader::open_oci_dir(dir, tag.as_deref())?, None, None)
        }
        Target::OciArchive { file, tag } => (
            ImageReader::open_oci_archive(file, tag.as_deref())?,
            None,
            None,
        ),
        Target::DockerArchive { file } => (ImageReader::open_docker_archive(file)?, None, None),
        Target::Engine { engine, reference } => {
            let file = tempfile::NamedTempFile::new().map_err(CliError::Temp)?;
            gpubox_registry::save(*engine, reference, file.path())?;
            (
                ImageReader::open_docker_archive(file.path())?,
                Some(file),
                None,
            )
        }
        Target::Registry { reference } => {
            let Some(registry) = registry else {
                return Err(
                    crate::target::BadTarget::NotReadFromRegistry(source.to_string()).into(),
                );
            };
            let (reader, cache) = pull(reference, registry)?;
            (reader, None, Some(cache))
        }
    };
    Ok(OpenedImage {
        reader,
        _saved: saved,
        _cache: cache,
    })
}

/// Pulls `reference` into the layer cache and opens it there, saying which
/// digest a tag resolved to and how much came down.
fn pull(
    reference: &str,
    registry: &RegistrySource<'_>,
) -> Result<(ImageReader, LayerCache), CliError> {
    let cache = LayerCache::open(registry.cache_root)?;
    let name = format!("docker://{reference}");
    let pulled = gpubox_registry::pull(
        reference,
        crate::commands::build::oci_architecture(),
        &cache,
        registry.options,
    )?;
    let progress = registry.progress;
    if pulled.tag.is_some() {
        let platform = match &pulled.index_digest {
            Some(index) => format!(
                " (linux/{} in index {index})",
                crate::commands::build::oci_architecture()
            ),
            None => String::new(),
        };
        progress.step(format!(
            "resolved {name} to {}{platform}",
            pulled.manifest_digest
        ));
    }
    progress.step(format!(
        "{name}: {} blobs downloaded ({}), {} already in the cache",
        pulled.downloaded_blobs,
        bytes(pulled.downloaded_bytes),
        pulled.cached_blobs
    ));
    let reader = ImageReader::open_pulled(
        cache.store(),
        &pulled.manifest,
        pulled.manifest_digest,
        &name,
    )?;
    Ok((reader, cache))
}

/// The image's environment as (name, value) pairs.
pub fn image_env(source: &Target) -> Result<Vec<(String, String)>, CliError> {
    let vars: Vec<String> = match source {
        // The engine reads its own config; exporting the image is not needed.
        Target::Engine { engine, reference } => gpubox_registry::image_env(*engine, reference)?,
        _ => open(source)?.reader.config()?["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    };
    Ok(vars
        .iter()
        .filter_map(|var| var.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Prints the image at `source`, as a report or as JSON.
pub fn run(
    source: &Target,
    registry: &RegistrySource<'_>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let opened = open_from(source, Some(registry))?;
    let reader = &opened.reader;
    let config = reader.config()?;
    let mut layers = Vec::new();
    for (index, layer) in reader.layers().iter().enumerate() {
        let summary = summarize_layer(reader.open_layer(index)?)?;
        layers.push((layer.clone(), summary));
    }
    let report = json!({
        "source": source.to_string(),
        "manifestDigest": reader.manifest_digest().map(|d| d.to_string()),
        "repoTags": reader.repo_tags(),
        "created": config.get("created"),
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "config": config.get("config"),
        "layers": layers.iter().map(|(layer, summary)| layer_json(layer, summary)).collect::<Vec<_>>(),
    });
    let written = if as_json {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_report(out, &report, &layers)
    };
    written.map_err(|source| CliError::OutputNotWritable {
        path: "standard output".into(),
        source,
    })
}

fn layer_json(layer: &gpubox_oci::source::LayerRef, summary: &LayerSummary) -> Value {
    json!({
        "digest": layer.digest.to_string(),
        "diffId": layer.diff_id.as_ref().map(|d| d.to_string()),
        "compression": layer.compression.to_string(),
        "size": layer.size,
        "uncompressedSize": summary.uncompressed_size,
        "entries": summary.entry_count,
        "storePaths": summary.store_paths,
    })
}

fn write_report(
    out: &mut dyn Write,
    report: &Value,
    layers: &[(gpubox_oci::source::LayerRef, LayerSummary)],
) -> std::io::Result<()> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let config = &report["config"];
    writeln!(out, "Image:        {}", text(&report["source"]))?;
    writeln!(out, "Manifest:     {}", text(&report["manifestDigest"]))?;
    if let Some(tags) = report["repoTags"].as_array().filter(|t| !t.is_empty()) {
        let tags: Vec<String> = tags.iter().map(text).collect();
        writeln!(out, "Tags:         {}", tags.join(", "))?;
    }
    writeln!(out, "Created:      {}", text(&report["created"]))?;
    writeln!(
        out,
        "Platform:     {}/{}",
        text(&report["os"]),
        text(&report["architecture"])
    )?;
    writeln!(out, "Entrypoint:   {}", text(&config["Entrypoint"]))?;
    writeln!(out, "Cmd:          {}", text(&config["Cmd"]))?;
    writeln!(out, "User:         {}", text(&config["User"]))?;
    writeln!(out, "WorkingDir:   {}", text(&config["WorkingDir"]))?;
    if let Some(ports) = config["ExposedPorts"].as_object() {
        let ports: Vec<&String> = ports.keys().collect();
        writeln!(
            out,
            "ExposedPorts: {}",
            ports
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if let Some(labels) = config["Labels"].as_object().filter(|l| !l.is_empty()) {
        writeln!(out, "Labels:")?;
        for (k, v) in labels {
            writeln!(out, "  {k}={}", text(v))?;
        }
    }
    if let Some(env) = config["Env"].as_array() {
        writeln!(out, "Env:")?;
        for var in env {
            writeln!(out, "  {}", text(var))?;
        }
    }
    writeln!(out, "Layers:")?;
    writeln!(
        out,
        "  {:>3}  {:<71}  {:>10}  {:>12}  {:>8}  store paths",
        "#", "digest", "size", "uncompressed", "entries"
    )?;
    let (mut total, mut total_raw) = (0, 0);
    for (index, (layer, summary)) in layers.iter().enumerate() {
        total += layer.size;
        total_raw += summary.uncompressed_size;
        writeln!(
            out,
            "  {:>3}  {:<71}  {:>10}  {:>12}  {:>8}  {}",
            index + 1,
            layer.digest.to_string(),
            bytes(layer.size),
            bytes(summary.uncompressed_size),
            summary.entry_count,
            summary.store_paths.len()
        )?;
        for path in &summary.store_paths {
            writeln!(out, "  {:>3}  {path}", "")?;
        }
    }
    writeln!(
        out,
        "  {} layers, {} ({} uncompressed)",
        layers.len(),
        bytes(total),
        bytes(total_raw)
    )
}
