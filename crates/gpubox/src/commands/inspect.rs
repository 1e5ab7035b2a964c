//! `gpubox inspect`: an image's config, environment and layers, as a report
//! or as JSON.

use std::io::Write;

use gpubox_build::open::{ImageReport, Inspected, RegistryAccess};
use gpubox_build::{Bytes, Count, ImageLocation};
use gpubox_layers::cache::LayerCache;
use gpubox_oci::chunked::is_chunked;
use gpubox_oci::image::LAYER_KEY;
use gpubox_oci::source::{LayerRef, LayerSummary};
use gpubox_spec::Platform;
use serde_json::{json, Value};

use crate::error::CliError;

/// How `gpubox inspect` shows an image.
pub struct Shown {
    /// JSON instead of a report.
    pub as_json: bool,
    /// Read (and for a registry image, download) every layer instead of
    /// trusting annotations.
    pub read_layers: bool,
    /// Of an index, only this platform's image.
    pub platform: Option<Platform>,
}

/// Prints the image at `source`, as a report or as JSON.
/// Each layer also says whether it is `zstd:chunked` (lazily pullable) and
/// whether a build reuses it: every gpubox layer carries its key, and the ones
/// this machine's layer cache holds are not even read again. An index is shown
/// as its digest and platforms, then each platform's image; its JSON is
/// `{ source, indexDigest, platforms, images: [...] }`, each image as a single
/// image's JSON is.
pub fn run(
    source: &ImageLocation,
    registry: &RegistryAccess<'_>,
    shown: Shown,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Inspected { index, images } = gpubox_build::open::inspect(
        source,
        registry,
        shown.read_layers,
        shown.platform.map(Platform::architecture),
    )?;
    // A cache that cannot be opened holds nothing as far as this report goes.
    let cache = LayerCache::open(registry.cache_root).ok();
    let reports: Vec<(Value, Vec<ShownLayer>)> = images
        .into_iter()
        .map(|image| image_report(source, image, cache.as_ref()))
        .collect();
    let written = match (&index, shown.as_json) {
        (None, true) => write_json(out, &reports[0].0),
        (None, false) => write_report(out, &reports[0].0, &reports[0].1),
        (Some((digest, platforms)), true) => write_json(
            out,
            &json!({
                "source": source.to_string(),
                "indexDigest": digest.to_string(),
                "platforms": platforms,
                "images": reports.iter().map(|(report, _)| report).collect::<Vec<_>>(),
            }),
        ),
        (Some((digest, platforms)), false) => (|| {
            writeln!(out, "Index:        {}", source)?;
            writeln!(out, "Digest:       {digest}")?;
            writeln!(out, "Platforms:    {}", platforms.join(", "))?;
            for (report, layers) in &reports {
                writeln!(out)?;
                write_report(out, report, layers)?;
            }
            Ok(())
        })(),
    };
    written.map_err(CliError::Stdout)
}

/// One image's report, and its layers as shown.
fn image_report(
    source: &ImageLocation,
    image: ImageReport,
    cache: Option<&LayerCache>,
) -> (Value, Vec<ShownLayer>) {
    let ImageReport {
        manifest_digest,
        repo_tags,
        config,
        layers,
    } = image;
    let layers: Vec<ShownLayer> = layers
        .into_iter()
        .map(|(layer, summary)| ShownLayer::new(layer, summary, cache))
        .collect();
    let report = json!({
        "source": source.to_string(),
        "manifestDigest": manifest_digest,
        "repoTags": repo_tags,
        "created": config.get("created"),
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "variant": config.get("variant"),
        "config": config.get("config"),
        "layers": layers.iter().map(ShownLayer::json).collect::<Vec<_>>(),
    });
    (report, layers)
}

fn write_json(out: &mut dyn Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)
}

/// A layer as the report shows it.
struct ShownLayer {
    layer: LayerRef,
    /// What it holds; `None` where it is not known (a registry layer without
    /// gpubox's annotations, not downloaded).
    summary: Option<LayerSummary>,
    /// Its descriptor names a zstd:chunked table of contents.
    chunked: bool,
    /// Its gpubox layer cache key, when it has one.
    key: Option<String>,
    /// This machine's layer cache holds it under that key.
    cached: bool,
}

impl ShownLayer {
    fn new(layer: LayerRef, summary: Option<LayerSummary>, cache: Option<&LayerCache>) -> Self {
        let chunked = is_chunked(&layer.annotations);
        let key = layer.annotations.get(LAYER_KEY).cloned();
        let cached = match (&key, cache) {
            (Some(key), Some(cache)) => cache.holds(key, &layer.digest),
            _ => false,
        };
        ShownLayer {
            layer,
            summary,
            chunked,
            key,
            cached,
        }
    }

    /// `zstd:chunked` for a chunked layer, else the compression.
    fn format(&self) -> String {
        if self.chunked {
            "zstd:chunked".to_owned()
        } else {
            self.layer.compression.to_string()
        }
    }

    /// How a build reuses it: `cached` here, by its `key` from a registry, or `-`.
    fn reuse(&self) -> &'static str {
        match (&self.key, self.cached) {
            (Some(_), true) => "cached",
            (Some(_), false) => "key",
            (None, _) => "-",
        }
    }

    fn json(&self) -> Value {
        let (layer, summary) = (&self.layer, &self.summary);
        json!({
            "digest": layer.digest.to_string(),
            "diffId": layer.diff_id.as_ref().map(|d| d.to_string()),
            "compression": self.format(),
            "chunked": self.chunked,
            "size": layer.size,
            "uncompressedSize": summary.as_ref().map(|s| s.uncompressed_size),
            "entries": summary.as_ref().map(|s| s.entry_count),
            "storePaths": summary.as_ref().map(|s| &s.store_paths),
            "cacheKey": self.key,
            "cached": self.cached,
            "annotations": layer.annotations,
        })
    }
}

fn write_report(out: &mut dyn Write, report: &Value, layers: &[ShownLayer]) -> std::io::Result<()> {
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
        "Platform:     {}/{}{}",
        text(&report["os"]),
        text(&report["architecture"]),
        report["variant"]
            .as_str()
            .map(|variant| format!("/{variant}"))
            .unwrap_or_default()
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
    if let Some(volumes) = config["Volumes"].as_object().filter(|v| !v.is_empty()) {
        let volumes: Vec<&str> = volumes.keys().map(String::as_str).collect();
        writeln!(out, "Volumes:      {}", volumes.join(", "))?;
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
        "  {:>3}  {:<71}  {:<12}  {:<6}  {:>10}  {:>12}  {:>8}  store paths",
        "#", "digest", "format", "reuse", "size", "uncompressed", "entries"
    )?;
    let (mut total, mut total_raw, mut unknown) = (0, 0, 0);
    for (index, shown) in layers.iter().enumerate() {
        let layer = &shown.layer;
        total += layer.size;
        let Some(summary) = &shown.summary else {
            unknown += 1;
            writeln!(
                out,
                "  {:>3}  {:<71}  {:<12}  {:<6}  {:>10}  {:>12}  {:>8}  -",
                index + 1,
                layer.digest.to_string(),
                shown.format(),
                shown.reuse(),
                Bytes(layer.size),
                "-",
                "-"
            )?;
            continue;
        };
        total_raw += summary.uncompressed_size;
        writeln!(
            out,
            "  {:>3}  {:<71}  {:<12}  {:<6}  {:>10}  {:>12}  {:>8}  {}",
            index + 1,
            layer.digest.to_string(),
            shown.format(),
            shown.reuse(),
            Bytes(layer.size),
            Bytes(summary.uncompressed_size),
            summary.entry_count,
            summary.store_paths.len()
        )?;
        for path in &summary.store_paths {
            writeln!(out, "  {:>3}  {path}", "")?;
        }
    }
    if unknown == 0 {
        writeln!(
            out,
            "  {}, {} ({} uncompressed)",
            Count(layers.len(), "layer"),
            Bytes(total),
            Bytes(total_raw)
        )
    } else {
        writeln!(
            out,
            "  {}, {}; what {} not built by gpubox hold{} is not known without \
             downloading: pass --layers",
            Count(layers.len(), "layer"),
            Bytes(total),
            Count(unknown, "layer"),
            if unknown == 1 { "s" } else { "" }
        )
    }
}
