//! The layers step: every layer an image needs, produced on as many threads as
//! there are cores, largest first, so compression (the expensive part) runs in
//! parallel and the longest layer starts at once. A store-path layer built
//! before is taken from the layer cache by its key and not read again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use gpubox_layers::cache::{store_layer_entries, LayerCache};
use gpubox_nix::StorePath;
use gpubox_oci::blob::LayerBlob;
use gpubox_oci::{Compression, Entry};

use crate::error::BuildError;
use crate::reporter::{Bytes, Count, Reporter};

/// One layer to produce.
pub enum LayerJob<'a> {
    /// Store paths, found in the cache when they were built before.
    Store {
        paths: &'a [StorePath],
        key: String,
        estimate: u64,
    },
    /// gpubox's own top layer.
    Top { entries: &'a [Entry] },
}

impl LayerJob<'_> {
    fn estimate(&self) -> u64 {
        match self {
            LayerJob::Store { estimate, .. } => *estimate,
            LayerJob::Top { entries } => entries
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
            LayerJob::Top { .. } => "gpubox: generated files, copyToRoot, hostBinaries".to_owned(),
        }
    }
}

/// The order layers are started in: largest first, ties in job order.
fn build_order(jobs: &[LayerJob<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].estimate()));
    order
}

/// Produces every layer (see the module doc); returns their blobs in job
/// order, or the first failure in job order.
pub fn build_layers(
    jobs: &[LayerJob<'_>],
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    reporter: &dyn Reporter,
) -> Result<Vec<LayerBlob>, BuildError> {
    let order = build_order(jobs);
    let total: u64 = jobs.iter().map(LayerJob::estimate).sum();
    reporter.start_bytes(total, &Count(jobs.len(), "layer").to_string());

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<LayerBlob, BuildError>>>> =
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
                let (result, cached) = build_one(job, cache, compression, mtime, reporter);
                match &result {
                    Ok(blob) => {
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        reporter.step(&format!(
                            "layer {}/{} {} {} -> {} ({}{})",
                            index + 1,
                            jobs.len(),
                            blob.digest,
                            Bytes(blob.uncompressed_size),
                            Bytes(blob.size),
                            if cached { "cached, " } else { "" },
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
    cache: &LayerCache,
    compression: Compression,
    mtime: u64,
    reporter: &dyn Reporter,
) -> (Result<LayerBlob, BuildError>, bool) {
    let on_bytes = |n: u64| reporter.add_bytes(n);
    match job {
        LayerJob::Store {
            paths,
            key,
            estimate,
        } => {
            if let Some(blob) = cache.get(key) {
                reporter.add_bytes(*estimate);
                return (Ok(blob), true);
            }
            let result = cache
                .store()
                .write_layer(store_layer_entries(paths), compression, mtime, &on_bytes)
                .map_err(BuildError::from)
                .and_then(|blob| {
                    cache.put(key, &blob)?;
                    Ok(blob)
                });
            (result, false)
        }
        LayerJob::Top { entries } => {
            let result = cache
                .store()
                .write_layer(
                    entries.iter().cloned().map(Ok),
                    compression,
                    mtime,
                    &on_bytes,
                )
                .map_err(BuildError::from);
            (result, false)
        }
    }
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

    #[test]
    fn largest_layers_start_first_and_blobs_come_back_in_job_order() {
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(cache_dir.path()).unwrap();
        let (small, big, medium) = (file("small", 10), file("big", 5000), file("medium", 2000));
        let jobs = [
            LayerJob::Top { entries: &small },
            LayerJob::Top { entries: &big },
            LayerJob::Top { entries: &medium },
        ];
        assert_eq!(build_order(&jobs), [1, 2, 0]);
        let steps = Steps::default();
        let blobs = build_layers(&jobs, &cache, Compression::Gzip, 0, &steps).unwrap();
        let sizes: Vec<u64> = blobs.iter().map(|b| b.uncompressed_size).collect();
        assert!(sizes[1] > sizes[2] && sizes[2] > sizes[0], "{sizes:?}");
        // Each blob is what that job alone makes.
        for (job, blob) in jobs.iter().zip(&blobs) {
            let LayerJob::Top { entries } = job else {
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
            assert_eq!(alone.digest, blob.digest);
        }
        let steps = steps.0.into_inner().unwrap();
        assert_eq!(steps.len(), 3);
        assert!(steps.iter().all(|s| !s.contains("cached")), "{steps:?}");
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
        let error = build_layers(&jobs, &cache, Compression::Zstd, 0, &Steps::default())
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
        let blobs = build_layers(&jobs, &cache, Compression::Zstd, 0, &steps).unwrap();
        assert_eq!(blobs, [earlier]);
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
            LayerJob::Top { entries: &fine },
            LayerJob::Store {
                paths: &paths,
                key: LayerCache::key(&paths, Compression::Gzip, 0),
                estimate: 1 << 20,
            },
        ];
        let result = build_layers(&jobs, &cache, Compression::Gzip, 0, &Steps::default());
        assert!(result.is_err());
        // Nothing was recorded under the failed layer's key.
        assert!(cache
            .get(&LayerCache::key(&paths, Compression::Gzip, 0))
            .is_none());
    }
}
