//! `gpubox diff A B`: which layers two images share, and what changed in the
//! others, so a user can see why a push moved bytes.

use std::io::{self, Write};

use gpubox_oci::diff::{Change, DiffLayer, FileChange, FileState, ImageDiff, StorePathChange};

use gpubox_build::open::RegistryAccess;
use gpubox_build::{Bytes, Count, ImageLocation};
use gpubox_spec::Platform;

use crate::error::CliError;

/// Compares image `a` with image `b` (either may be in a registry, reached
/// through `registry`) and prints the difference, as a report or as JSON. Two
/// indexes are compared platform by platform (or on `platform` only); their
/// JSON is `{ "platforms": [{ "platform", "diff" }] }`.
pub fn run(
    a: &ImageLocation,
    b: &ImageLocation,
    registry: &RegistryAccess<'_>,
    as_json: bool,
    platform: Option<Platform>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let diffs = gpubox_build::open::diff(a, b, registry, platform.map(Platform::architecture))?;
    let written = match (diffs.as_slice(), as_json) {
        ([(None, diff)], true) => serde_json::to_writer_pretty(&mut *out, diff)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
        ([(None, diff)], false) => write_report(out, diff, a, b),
        (_, true) => {
            let platforms: Vec<serde_json::Value> = diffs
                .iter()
                .map(|(platform, diff)| serde_json::json!({ "platform": platform, "diff": diff }))
                .collect();
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "platforms": platforms }))
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        }
        (_, false) => diffs.iter().try_for_each(|(platform, diff)| {
            writeln!(out, "Platform: {}", platform.as_deref().unwrap_or("-"))?;
            write_report(out, diff, a, b)?;
            writeln!(out)
        }),
    };
    written.map_err(CliError::Stdout)
}

fn total(layers: &[DiffLayer]) -> u64 {
    layers.iter().map(|l| l.size).sum()
}

fn write_report(
    out: &mut dyn Write,
    diff: &ImageDiff,
    a: &ImageLocation,
    b: &ImageLocation,
) -> io::Result<()> {
    writeln!(out, "A: {a}")?;
    writeln!(out, "B: {b}")?;
    writeln!(
        out,
        "shared: {} ({})",
        Count(diff.shared.len(), "layer"),
        Bytes(total(&diff.shared))
    )?;
    writeln!(
        out,
        "only in B: {} ({}); only in A: {} ({})",
        Count(diff.only_in_b.len(), "layer"),
        Bytes(total(&diff.only_in_b)),
        Count(diff.only_in_a.len(), "layer"),
        Bytes(total(&diff.only_in_a))
    )?;
    for layer in &diff.only_in_b {
        write_layer(out, '+', 'B', layer)?;
        for change in diff
            .store_paths
            .iter()
            .filter(|c| c.layer_b == Some(layer.index))
        {
            write_store_path(out, change)?;
        }
        for change in diff.files.iter().filter(|c| c.layer_b == Some(layer.index)) {
            write_file(out, change)?;
        }
    }
    // What B no longer has is listed under the layer of A that held it.
    for layer in &diff.only_in_a {
        write_layer(out, '-', 'A', layer)?;
        let gone = |l: Option<usize>, b: Option<usize>| b.is_none() && l == Some(layer.index);
        for change in diff
            .store_paths
            .iter()
            .filter(|c| gone(c.layer_a, c.layer_b))
        {
            write_store_path(out, change)?;
        }
        for change in diff.files.iter().filter(|c| gone(c.layer_a, c.layer_b)) {
            write_file(out, change)?;
        }
    }
    if !diff.config.is_empty() {
        writeln!(out, "config:")?;
        for change in &diff.config {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
            writeln!(
                out,
                "  ~ {}: {} → {}",
                change.key,
                show(&change.a),
                show(&change.b)
            )?;
        }
    }
    Ok(())
}

fn write_layer(
    out: &mut dyn Write,
    marker: char,
    image: char,
    layer: &DiffLayer,
) -> io::Result<()> {
    writeln!(
        out,
        "{marker} layer {} of {image}  {}  ({})",
        layer.index + 1,
        layer.digest,
        Bytes(layer.size)
    )
}

fn marker(change: Change) -> char {
    match change {
        Change::Added => '+',
        Change::Removed => '−',
        Change::Changed => '~',
    }
}

/// A size difference with its sign.
fn delta(n: i64) -> String {
    let sign = if n < 0 { '−' } else { '+' };
    format!("{sign}{}", Bytes(n.unsigned_abs()))
}

fn write_store_path(out: &mut dyn Write, change: &StorePathChange) -> io::Result<()> {
    let m = marker(change.change);
    match (&change.a, &change.b) {
        (Some(a), Some(b)) if a != b => writeln!(
            out,
            "    {m} {a} → {b}  ({} → {}, {})",
            Bytes(change.size_a),
            Bytes(change.size_b),
            delta(change.size_delta)
        ),
        (Some(path), Some(_)) => writeln!(
            out,
            "    {m} {path}  (content differs, {})",
            delta(change.size_delta)
        ),
        (Some(path), None) => writeln!(out, "    {m} {path}  ({})", Bytes(change.size_a)),
        (None, Some(path)) => writeln!(out, "    {m} {path}  ({})", Bytes(change.size_b)),
        (None, None) => Ok(()),
    }
}

fn write_file(out: &mut dyn Write, change: &FileChange) -> io::Result<()> {
    let m = marker(change.change);
    let size = |state: &Option<FileState>| state.as_ref().map_or(0, |s| s.size);
    match change.change {
        Change::Changed => {
            let what: Vec<String> = change.differences.iter().map(|d| d.to_string()).collect();
            writeln!(
                out,
                "    {m} {}  ({}; {} → {})",
                change.path,
                what.join(", "),
                Bytes(size(&change.a)),
                Bytes(size(&change.b))
            )
        }
        Change::Added => writeln!(out, "    {m} {}  ({})", change.path, Bytes(size(&change.b))),
        Change::Removed => writeln!(out, "    {m} {}  ({})", change.path, Bytes(size(&change.a))),
    }
}
