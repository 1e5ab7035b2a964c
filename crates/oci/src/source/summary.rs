//! What a layer holds, for `gpubox inspect` ([`summarize_layer`]): its
//! uncompressed size, its entries and the store paths in it.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{self, Read};

use super::error::ReadError;
use crate::tar::read_entries;

/// What a layer holds, for `gpubox inspect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    pub entry_count: u64,
    /// The `/nix/store/<hash>-<name>` paths with anything in the layer, sorted.
    pub store_paths: Vec<String>,
}

/// Reads an uncompressed layer tar to its end and summarizes it.
pub fn summarize_layer(tar: impl Read) -> Result<LayerSummary, ReadError> {
    let count = Cell::new(0);
    let mut counted = CountingReader {
        inner: tar,
        count: &count,
    };
    let mut entry_count = 0;
    let mut store_paths = BTreeSet::new();
    for entry in read_entries(&mut counted) {
        let entry = entry?;
        entry_count += 1;
        let path = String::from_utf8_lossy(&entry.path);
        let mut components = path.split('/').filter(|c| !c.is_empty() && *c != ".");
        if let (Some("nix"), Some("store"), Some(name)) =
            (components.next(), components.next(), components.next())
        {
            if !name.starts_with('.') {
                store_paths.insert(format!("/nix/store/{name}"));
            }
        }
    }
    // Whatever follows the end-of-archive blocks is part of the layer too.
    io::copy(&mut counted, &mut io::sink()).map_err(ReadError::LayerStream)?;
    Ok(LayerSummary {
        uncompressed_size: count.get(),
        entry_count,
        store_paths: store_paths.into_iter().collect(),
    })
}

/// Counts the bytes read through it into a cell that stays readable while the
/// reader is lent out.
pub(super) struct CountingReader<'a, R> {
    pub(super) inner: R,
    pub(super) count: &'a Cell<u64>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}
