//! `gpubox cache info` and `gpubox cache gc`: what the layer cache holds, and
//! making it smaller.

use std::io::Write;
use std::path::Path;

use gpubox_layers::cache::{CacheInfo, LayerCache};

use gpubox_build::{cache_dir, Bytes, Reporter};

use crate::error::CliError;

/// Writes what the cache holds to `out`, as a report or as JSON.
pub fn info(flag: Option<&Path>, as_json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let info = LayerCache::open(&cache_dir(flag)?)?.info()?;
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &info)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_report(out, &info)
    }
    .map_err(CliError::Stdout)
}

fn write_report(out: &mut dyn Write, info: &CacheInfo) -> std::io::Result<()> {
    writeln!(out, "Cache:          {}", info.root.display())?;
    writeln!(
        out,
        "Layers:         {} ({} broken)",
        info.entries, info.broken_entries
    )?;
    writeln!(
        out,
        "Pulled images:  {} ({} broken)",
        info.images, info.broken_images
    )?;
    writeln!(
        out,
        "Built images:   {} ({} broken)",
        info.built_images, info.broken_built_images
    )?;
    let tally = |t: gpubox_layers::cache::Tally| format!("{}, {}", t.count, Bytes(t.bytes));
    writeln!(out, "Blobs:          {}", tally(info.blobs))?;
    writeln!(out, "  in use:       {}", tally(info.referenced))?;
    writeln!(out, "  unreferenced: {}", tally(info.unreferenced))?;
    writeln!(out, "Base files:     {}", tally(info.base_files))?;
    writeln!(out, "Unfinished:     {}", tally(info.temp_files))?;
    Ok(())
}

/// Collects the cache once no build or pull is using it, evicting least
/// recently used layers and pulled images down to `max_size` bytes when given.
/// With `as_json`, what was removed and what is left goes to `out` as JSON.
pub fn gc(
    flag: Option<&Path>,
    max_size: Option<u64>,
    as_json: bool,
    reporter: &dyn Reporter,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let root = cache_dir(flag)?;
    reporter.step(&format!(
        "collecting {} (waits for running builds)",
        root.display()
    ));
    let report = LayerCache::open_exclusive(&root)?.gc(max_size)?;
    reporter.step(&format!(
        "removed {} broken layer, {} broken pulled-image and {} broken built-image \
         entries, {} unfinished files, {} unreferenced blobs, {} least recently used \
         layers, {} pulled and {} built images, and {} base-files records of layers no \
         longer cached; freed {}, {} left in {} blobs",
        report.broken_entries,
        report.broken_images,
        report.broken_built_images,
        report.temp_files.count,
        report.unreferenced_blobs.count,
        report.evicted_entries,
        report.evicted_images,
        report.evicted_built_images,
        report.base_files.count,
        Bytes(report.freed_bytes()),
        Bytes(report.remaining_blobs.bytes),
        report.remaining_blobs.count,
    ));
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
            .map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// A size for `--max-size`: a number of bytes, optionally followed by K, M, G
/// or T (powers of 1024, with an optional trailing `B` or `iB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "`{text}` is not a size; use a number of bytes optionally followed by K, M, G \
             or T (powers of 1024), e.g. 1234, 500M or 10G"
        )
    };
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let without_b = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, shift) = match without_b.chars().last() {
        Some('K') => (&without_b[..without_b.len() - 1], 10),
        Some('M') => (&without_b[..without_b.len() - 1], 20),
        Some('G') => (&without_b[..without_b.len() - 1], 30),
        Some('T') => (&without_b[..without_b.len() - 1], 40),
        _ => (without_b, 0),
    };
    let number: u64 = number.trim().parse().map_err(|_| invalid())?;
    number.checked_mul(1 << shift).ok_or_else(|| {
        format!("`{text}` is more bytes than this machine can count; give a smaller size")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("3KB"), Ok(3 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn bad_sizes_name_the_value_and_the_accepted_forms() {
        for bad in ["", "G", "ten", "10X", "-1", "1.5G"] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
            assert!(error.contains("500M"), "{error}");
        }
        let error = parse_size("99999999999T").unwrap_err();
        assert!(error.contains("smaller"), "{error}");
    }
}
