//! The layers step: every layer an image needs, produced on as many threads as
//! there are cores, largest first, so compression (the expensive part) runs in
//! parallel and the longest layer starts at once. A store-path layer built
//! before is taken from the layer cache by its key and not read again; a layer
//! of files is keyed by its content (its tar is hashed first, which costs a
//! read but no compression) and taken from the cache the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use gpubox_layers::cache::{store_layer_entries, LayerCache};
use gpubox_nix::{StorePath, UnpackedPaths};
use gpubox_oci::blob::{BlobError, LayerBlob};
use gpubox_oci::digest::HashingWriter;
use gpubox_oci::tar::{TarError, TarWriter};
use gpubox_oci::{Compression, Entry};

use crate::error::BuildError;
use crate::reporter::{Bytes, Count, Reporter};
use crate::reuse::Reused;

/// One layer to produce.
pub enum LayerJob<'a> {
    /// Store paths, found in the cache when they were built before.
    Store {
        paths: &'a [StorePath],
        key: String,
        estimate: u64,
    },
    /// One of gpubox's own layers of files ([`crate::top::TopLayer`]).
    Files {
        entries: &'a [Entry],
        created_by: String,
        /// See [`files_key`].
        key: String,
    },
}

/// A layer the schedule produced, and how.
#[derive(Clone, Debug)]
pub struct ProducedLayer {
    pub blob: LayerBlob,
    /// Its layer cache key, also written on its descriptor.
    pub key: String,
    pub came: Came,
}

/// Where a layer came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Came {
    /// Written now.
    Built,
    /// The layer cache had it.
    Cache,
    /// A registry has it ([`crate::reuse`]); its bytes are not here.
    Registry { repository: String },
}

impl LayerJob<'_> {
    /// The layer cache key of this layer.
    pub fn key(&self) -> &str {
        match self {
            LayerJob::Store { key, .. } | LayerJob::Files { key, .. } => key,
        }
    }
}

/// The key of a layer of files: their tar's digest (hashed, not written or
/// compressed) with the compression, see [`LayerCache::content_key`].
pub fn files_key(
    entries: &[Entry],
    compression: Compression,
    mtime: u64,
) -> Result<String, BuildError> {
    let unwritable = |e: TarError| BuildError::from(BlobError::Tar(e));
    let mut tar = TarWriter::new(HashingWriter::new(std::io::sink()), mtime);
    for entry in entries {
        tar.append(entry).map_err(unwritable)?;
    }
    let (_, diff_id, _) = tar.finish().map_err(unwritable)?.finish();
    Ok(LayerCache::content_key(&diff_id, compression))
}

impl LayerJob<'_> {
    fn estimate(&self) -> u64 {
        match self {
            LayerJob::Store { estimate, .. } => *estimate,
            LayerJob::Files { entries, .. } => entries
                .iter()
                .map(|e| match &e.kind {
                    gpubox_oci::EntryKind::File { size, .. } => *size,
                    _ => 0,
                })
                .sum(),
        }
    }

    /// The image history's `created_by` for this layer.
    pub fn describe(&self) -> String {
        match self {
            LayerJob::Store { paths, .. } => {
                let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
                format!("gpubox: store paths {}", names.join(" "))
            }
            LayerJob::Files { created_by, .. } => created_by.clone(),
        }
    }
}

/// The order layers are started in: largest first, ties in job order.
fn build_order(jobs: &[LayerJob<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].estimate()));
    order
}

/// Where layers come from besides the store and the cache, and who hears of
/// each one made here.
pub struct LayerSources<'a> {
    /// Layers a registry has, by job index: taken, not made.
    pub reused: &'a HashMap<usize, Reused>,
    /// Store paths unpacked outside the store, read from there.
    pub unpacked: &'a UnpackedPaths,
    /// Called with each layer whose blob is in the cache's store (made now or
    /// cached) as soon as it is: a build for a registry sends it right away.
    pub on_stored: &'a (dyn Fn(&LayerBlob) + Sync),
}

#[cfg(test)]
impl LayerSources<'_> {
    /// Nothing reused, nothing unpacked, nobody to tell.
    pub fn none() -> LayerSources<'static> {
        static NOTHING: std::sync::OnceLock<(HashMap<usize, Reused>, UnpackedPaths)> =
            std::sync::OnceLock::new();
        let (reused, unpacked) = NOTHING.get_or_init(Default::default);
        LayerSources {
            reused,
            unpacked,
            on_stored: &|_| {},
        }
    }
}

/// Produces every layer (see the module doc) from `sources`; returns them in
/// job order, or the first failure in job order.
pub fn build_layers(
    jobs: &[LayerJob<'_>],
    sources: &LayerSources<'_>,
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<Vec<ProducedLayer>, BuildError> {
    let order = build_order(jobs);
    let total: u64 = jobs.iter().map(LayerJob::estimate).sum();
    reporter.start_bytes(total, &Count(jobs.len(), "layer").to_string());

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<ProducedLayer, BuildError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let done = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len())
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let job = &jobs[index];
                let result = match sources.reused.get(&index) {
                    Some(Reused { blob, repository }) => {
                        reporter.add_bytes(job.estimate());
                        Ok(ProducedLayer {
                            blob: blob.clone(),
                            key: job.key().to_owned(),
                            came: Came::Registry {
                                repository: repository.clone(),
                            },
                        })
                    }
                    None => build_one(job, sources.unpacked, cache, compression, mtime, reporter),
                };
                if let Ok(ProducedLayer {
                    blob,
                    came: Came::Built | Came::Cache,
                    ..
                }) = &result
                {
                    (sources.on_stored)(blob);
                }
                match &result {
                    Ok(ProducedLayer { blob, came, .. }) => {
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        reporter.step(&format!(
                            "layer {}/{} {} {} -> {} ({}{})",
                            index + 1,
                            jobs.len(),
                            blob.digest,
                            Bytes(blob.uncompressed_size),
                            Bytes(blob.size),
                            match came {
                                Came::Built => String::new(),
                                Came::Cache => "cached, ".to_owned(),
                                Came::Registry { repository } => {
                                    format!("reused from the registry's {repository}, ")
                                }
                            },
                            format_args!("{n} of {} done", jobs.len()),
                        ));
                    }
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                if let Ok(mut slots) = results.lock() {
                    slots[index] = Some(result);
                }
            });
        }
    });
    reporter.finish_bytes();
    let slots = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut blobs = Vec::with_capacity(jobs.len());
    for slot in slots {
        match slot {
            Some(result) => blobs.push(result?),
            // Skipped only because another layer failed; that error was returned above
            // in index order or comes later in this loop.
            None => continue,
        }
    }
    Ok(blobs)
}

fn build_one(
    job: &LayerJob<'_>,
    unpacked: &UnpackedPaths,
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<ProducedLayer, BuildError> {
    let on_bytes = |n: u64| reporter.add_bytes(n);
    let (key, blob) = match job {
        LayerJob::Store {
            paths,
            key,
            estimate,
        } => {
            if let Some(blob) = cache.get(key) {
                reporter.add_bytes(*estimate);
                return Ok(ProducedLayer {
                    blob,
                    key: key.clone(),
                    came: Came::Cache,
                });
            }
            let blob = cache.store().write_layer(
                store_layer_entries(paths, unpacked),
                compression,
                mtime,
                &on_bytes,
            )?;
            (key.clone(), blob)
        }
        LayerJob::Files { entries, key, .. } => {
            if let Some(blob) = cache.get(key) {
                reporter.add_bytes(job.estimate());
                return Ok(ProducedLayer {
                    blob,
                    key: key.clone(),
                    came: Came::Cache,
                });
            }
            let blob = cache.store().write_layer(
                entries.iter().cloned().map(Ok),
                compression,
                mtime,
                &on_bytes,
            )?;
            (key.clone(), blob)
        }
    };
    cache.put(&key, &blob)?;
    Ok(ProducedLayer {
        blob,
        key,
        came: Came::Built,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubox_oci::ImagePath;

    /// Keeps every step, to look at what the schedule said.
    #[derive(Default)]
    struct Steps(Mutex<Vec<String>>);

    impl Reporter for Steps {
        fn step(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_owned());
        }
    }

    fn file(name: &str, size: usize) -> Vec<Entry> {
        vec![Entry::bytes(
            ImagePath::new(name).unwrap(),
            0o644,
            vec![b'x'; size],
        )]
    }

    const MISSING: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-missing";

    /// A job for the layer of `entries`, keyed as the build keys it.
    fn files<'a>(entries: &'a [Entry], created_by: &str, mtime: u64) -> LayerJob<'a> {
        LayerJob::Files {
            entries,
            created_by: created_by.to_owned(),
            key: files_key(entries, Compression::Gzip, mtime).unwrap(),
        }
    }

    #[test]
    fn largest_layers_start_first_and_blobs_come_back_in_job_order() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(cache_dir.path()).unwrap();
        let (small, big, medium) = (file("small", 10), file("big", 5000), file("medium", 2000));
        let jobs = [
            files(&small, "", 0),
            files(&big, "", 0),
            files(&medium, "", 0),
        ];
        assert_eq!(build_order(&jobs), [1, 2, 0]);
        let steps = Steps::default();
        let blobs = build_layers(
            &jobs,
            &LayerSources::none(),
            &cache,
            Compression::Gzip,
            0,
            &steps,
        )
        .unwrap();
        let sizes: Vec<u64> = blobs.iter().map(|b| b.blob.uncompressed_size).collect();
        assert!(sizes[1] > sizes[2] && sizes[2] > sizes[0], "{sizes:?}");
        // Each blob is what that job alone makes.
        for (job, blob) in jobs.iter().zip(&blobs) {
            let LayerJob::Files { entries, .. } = job else {
                unreachable!()
            };
            let alone = cache
                .store()
                .write_layer(
                    entries.iter().cloned().map(Ok),
                    Compression::Gzip,
                    0,
                    &|_| {},
                )
                .unwrap();
            assert_eq!(alone.digest, blob.blob.digest);
            assert_eq!(blob.came, Came::Built);
        }
        let steps = steps.0.into_inner().unwrap();
        assert_eq!(steps.len(), 3);
        assert!(steps.iter().all(|s| !s.contains("cached")), "{steps:?}");
        // Files are keyed by their content: the same files again come from the
        // cache under the same key, whatever their job says about them.
        let again = [files(&medium, "other", 0)];
        let steps = Steps::default();
        let cached = build_layers(
            &again,
            &LayerSources::none(),
            &cache,
            Compression::Gzip,
            0,
            &steps,
        )
        .unwrap();
        assert_eq!(cached[0].came, Came::Cache);
        assert_eq!(cached[0].key, blobs[2].key);
        assert_eq!(cached[0].blob, blobs[2].blob);
        // Another mtime is another tar, so another key.
        assert_ne!(files(&medium, "", 1).key(), blobs[2].key);
        // A layer a registry has is taken as it is, not built.
        let from_registry = Reused {
            blob: blobs[0].blob.clone(),
            repository: "team/app".to_owned(),
        };
        let reused = HashMap::from([(0, from_registry)]);
        let empty_dir = tempfile::tempdir().unwrap();
        let empty = LayerCache::open(empty_dir.path()).unwrap();
        let taken = build_layers(
            &again,
            &LayerSources {
                reused: &reused,
                ..LayerSources::none()
            },
            &empty,
            Compression::Gzip,
            0,
            &steps,
        )
        .unwrap();
        assert_eq!(taken[0].blob, blobs[0].blob);
        assert_eq!(
            taken[0].came,
            Came::Registry {
                repository: "team/app".to_owned()
            }
        );
        assert!(!empty.store().contains(&blobs[0].blob.digest));
    }

    #[test]
    fn a_cached_store_layer_is_not_read_again_and_a_missing_one_fails() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(cache_dir.path()).unwrap();
        let paths = [StorePath::parse(MISSING).unwrap()];
        let key = LayerCache::key(&paths, Compression::Zstd, 0);
        let jobs = [LayerJob::Store {
            paths: &paths,
            key: key.clone(),
            estimate: 1,
        }];
        let error = build_layers(
            &jobs,
            &LayerSources::none(),
            &cache,
            Compression::Zstd,
            0,
            &Steps::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("0123456789abcdfghijklmnpqrsvwxyz-missing"),
            "{error}"
        );

        let earlier = cache
            .store()
            .write_layer(
                file("x", 3).into_iter().map(Ok),
                Compression::Zstd,
                0,
                &|_| {},
            )
            .unwrap();
        cache.put(&key, &earlier).unwrap();
        let steps = Steps::default();
        let blobs = build_layers(
            &jobs,
            &LayerSources::none(),
            &cache,
            Compression::Zstd,
            0,
            &steps,
        )
        .unwrap();
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].blob, earlier);
        assert_eq!(blobs[0].key, key);
        let steps = steps.0.into_inner().unwrap();
        assert!(steps[0].contains("cached, 1 of 1 done"), "{steps:?}");
    }

    #[test]
    fn a_failed_layer_stops_the_others_and_its_error_is_returned() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(cache_dir.path()).unwrap();
        let paths = [StorePath::parse(MISSING).unwrap()];
        let fine = file("fine", 10);
        let jobs = [
            files(&fine, "", 0),
            LayerJob::Store {
                paths: &paths,
                key: LayerCache::key(&paths, Compression::Gzip, 0),
                estimate: 1 << 20,
            },
        ];
        let result = build_layers(
            &jobs,
            &LayerSources::none(),
            &cache,
            Compression::Gzip,
            0,
            &Steps::default(),
        );
        assert!(result.is_err());
        // Nothing was recorded under the failed layer's key.
        assert!(cache
            .get(&LayerCache::key(&paths, Compression::Gzip, 0))
            .is_none());
    }
}
