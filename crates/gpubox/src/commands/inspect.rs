//! `gpubox inspect`: an image's config, environment and layers, as a report
//! or as JSON.

use std::io::Write;

use gpubox_build::open::{ImageReport, RegistryAccess};
use gpubox_build::{Bytes, Count, ImageLocation};
use gpubox_layers::cache::LayerCache;
use gpubox_oci::chunked::is_chunked;
use gpubox_oci::image::LAYER_KEY;
use gpubox_oci::source::{LayerRef, LayerSummary};
use serde_json::{json, Value};

use crate::error::CliError;

/// Prints the image at `source`, as a report or as JSON; `read_layers` reads (and
/// for a registry image, downloads) every layer instead of trusting annotations.
/// Each layer also says whether it is `zstd:chunked` (lazily pullable) and
/// whether a build reuses it: every gpubox layer carries its key, and the ones
/// this machine's layer cache holds are not even read again.
pub fn run(
    source: &ImageLocation,
    registry: &RegistryAccess<'_>,
    as_json: bool,
    read_layers: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ImageReport {
        manifest_digest,
        repo_tags,
        config,
        layers,
    } = gpubox_build::open::inspect(source, registry, read_layers)?;
    // A cache that cannot be opened holds nothing as far as this report goes.
    let cache = LayerCache::open(registry.cache_root).ok();
    let layers: Vec<ShownLayer> = layers
        .into_iter()
        .map(|(layer, summary)| ShownLayer::new(layer, summary, cache.as_ref()))
        .collect();
    let report = json!({
        "source": source.to_string(),
        "manifestDigest": manifest_digest,
        "repoTags": repo_tags,
        "created": config.get("created"),
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "config": config.get("config"),
        "layers": layers.iter().map(ShownLayer::json).collect::<Vec<_>>(),
    });
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_report(out, &report, &layers)
    }
    .map_err(CliError::Stdout)
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
