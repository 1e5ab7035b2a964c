//! The blob store: layers written through the streaming pipeline carry digests
//! that match the bytes on disk, failures leave nothing behind.

use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

mod gnu_tar;

use gnu_tar::gnu_tar;
use gpubox_oci::blob::{BlobError, BlobStore, LayerBlob};
use gpubox_oci::tar::{read_entries, walk, Modes, WalkError, WalkOptions};
use gpubox_oci::{Compression, Digest, Entry, ImagePath};

const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::None];

fn p(s: &str) -> ImagePath {
    ImagePath::new(s).unwrap()
}

/// A small tree with a 3 MiB file, so progress is reported more than once.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("lib")).unwrap();
    fs::write(root.join("lib/libfoo.so"), b"not really ELF").unwrap();
    let pattern: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    fs::write(root.join("lib/data.bin"), pattern).unwrap();
    std::os::unix::fs::symlink("libfoo.so", root.join("lib/libfoo.so.1")).unwrap();
}

fn entries(root: &Path) -> impl Iterator<Item = Result<Entry, WalkError>> {
    let options = WalkOptions {
        modes: Modes::OnDisk,
        uid: 0,
        gid: 0,
        hard_links: true,
    };
    let top = std::iter::once(Ok(Entry::directory(p("opt"), 0o755)));
    let generated = std::iter::once(Ok(Entry::bytes(p("opt/z.conf"), 0o644, &b"k=v\n"[..])));
    top.chain(walk(root, p("opt/app"), &options))
        .chain(generated)
}

fn no_progress(_: u64) {}

fn sha256_file(path: &Path) -> (Digest, u64) {
    let bytes = fs::read(path).unwrap();
    (Digest::of(&bytes), bytes.len() as u64)
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn layer_digests_match_the_blob_and_its_decompressed_tar() {
    let work = tempfile::tempdir().unwrap();
    sample_tree(&work.path().join("tree"));
    let store = BlobStore::open(&work.path().join("store")).unwrap();
    for compression in ALL {
        let reported = AtomicU64::new(0);
        let calls = AtomicU64::new(0);
        let progress = |n: u64| {
            reported.fetch_add(n, Ordering::Relaxed);
            calls.fetch_add(1, Ordering::Relaxed);
        };
        let layer = store
            .write_layer(
                entries(&work.path().join("tree")),
                compression,
                1,
                &progress,
            )
            .unwrap();
        assert_eq!(layer.compression, compression);

        let blob_path = store.path(&layer.digest);
        assert!(store.contains(&layer.digest));
        assert_eq!(sha256_file(&blob_path), (layer.digest.clone(), layer.size));
        assert_eq!(
            fs::metadata(&blob_path).unwrap().permissions().mode() & 0o777,
            0o644
        );

        let mut tar = Vec::new();
        compression
            .decoder(BufReader::new(store.open_blob(&layer.digest).unwrap()))
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Digest::of(&tar), layer.diff_id);
        assert_eq!(tar.len() as u64, layer.uncompressed_size);
        assert_eq!(read_entries(&tar[..]).count() as u64, layer.entry_count);
        assert_eq!(layer.entry_count, 7);

        assert_eq!(reported.load(Ordering::Relaxed), layer.uncompressed_size);
        let calls = calls.load(Ordering::Relaxed);
        assert!((2..=4).contains(&calls), "{calls} progress calls for 3 MiB");
        if compression != Compression::None {
            assert!(
                layer.size < layer.uncompressed_size / 2,
                "{compression} did not compress"
            );
        }
    }
    assert!(files_in(&store.root().join("tmp")).is_empty());
}

#[test]
fn gnu_tar_reads_the_gzip_and_zstd_blobs() {
    let work = tempfile::tempdir().unwrap();
    sample_tree(&work.path().join("tree"));
    let store = BlobStore::open(work.path()).unwrap();
    for (compression, flag) in [(Compression::Gzip, "--gzip"), (Compression::Zstd, "--zstd")] {
        let layer = store
            .write_layer(
                entries(&work.path().join("tree")),
                compression,
                1,
                &no_progress,
            )
            .unwrap();
        let blob = store.path(&layer.digest);
        let listing = gnu_tar(&[flag.as_ref(), "-tf".as_ref(), blob.as_os_str()]);
        assert!(listing.contains("opt/app/lib/libfoo.so.1\n"), "{listing}");
        assert!(listing.ends_with("opt/z.conf\n"), "{listing}");
    }
}

#[test]
fn the_same_entries_give_the_same_blob_in_another_store() {
    let work = tempfile::tempdir().unwrap();
    let (tree_a, tree_b) = (work.path().join("a"), work.path().join("b"));
    sample_tree(&tree_a);
    sample_tree(&tree_b);
    let store_a = BlobStore::open(&work.path().join("store-a")).unwrap();
    let store_b = BlobStore::open(&work.path().join("store-b")).unwrap();
    for compression in ALL {
        let a = store_a
            .write_layer(entries(&tree_a), compression, 42, &no_progress)
            .unwrap();
        let b = store_b
            .write_layer(entries(&tree_b), compression, 42, &no_progress)
            .unwrap();
        assert_eq!(a, b);
        // Writing again into the same store keeps the one blob.
        let again = store_a
            .write_layer(entries(&tree_a), compression, 42, &no_progress)
            .unwrap();
        assert_eq!(again, a);
    }
    assert_eq!(files_in(&store_a.root().join("blobs/sha256")).len(), 3);
}

#[test]
fn a_failed_layer_leaves_no_blob_and_no_temporary_file() {
    let work = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&work.path().join("store")).unwrap();
    let blobs = store.root().join("blobs/sha256");

    let bad_walk = vec![
        Ok(Entry::directory(p("a"), 0o755)),
        Err(WalkError::BadPath("`/x` cannot be named".into())),
    ];
    let err = store
        .write_layer(bad_walk, Compression::Gzip, 1, &no_progress)
        .unwrap_err();
    assert!(matches!(err, BlobError::Walk(_)), "{err}");

    let unsorted = vec![
        Ok(Entry::directory(p("b"), 0o755)),
        Ok(Entry::directory(p("a"), 0o755)),
    ];
    let err = store
        .write_layer(unsorted, Compression::Zstd, 1, &no_progress)
        .unwrap_err();
    assert!(err.to_string().contains("`/a` comes after `/b`"), "{err}");

    assert!(files_in(&blobs).is_empty());
    assert!(files_in(&store.root().join("tmp")).is_empty());
}

#[test]
fn write_bytes_is_content_addressed_and_idempotent() {
    let work = tempfile::tempdir().unwrap();
    let store = BlobStore::open(work.path()).unwrap();
    let json = br#"{"schemaVersion":2}"#;
    let digest = store.write_bytes(json).unwrap();
    assert_eq!(digest, Digest::of(json));
    assert_eq!(fs::read(store.path(&digest)).unwrap(), json);
    assert_eq!(store.write_bytes(json).unwrap(), digest);
    assert_eq!(
        files_in(&work.path().join("blobs/sha256")),
        [digest.hex().to_string()]
    );
}

#[test]
fn a_missing_blob_is_named_in_the_error() {
    let work = tempfile::tempdir().unwrap();
    let store = BlobStore::open(work.path()).unwrap();
    let digest = Digest::of(b"never written");
    assert!(!store.contains(&digest));
    let err = store.open_blob(&digest).unwrap_err();
    assert!(matches!(err, BlobError::Missing { .. }));
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
}

#[test]
fn layer_blobs_round_trip_through_json_with_compression_names() {
    let blob = LayerBlob {
        digest: Digest::of(b"c"),
        size: 1,
        diff_id: Digest::of(b"u"),
        uncompressed_size: 2,
        entry_count: 3,
        compression: Compression::Zstd,
        annotations: Default::default(),
    };
    let json = serde_json::to_string(&blob).unwrap();
    assert!(json.contains(r#""compression":"zstd""#), "{json}");
    assert_eq!(serde_json::from_str::<LayerBlob>(&json).unwrap(), blob);
    let bad = json.replace("zstd", "lz4");
    let err = serde_json::from_str::<LayerBlob>(&bad).unwrap_err();
    assert!(
        err.to_string().contains("unknown compression `lz4`"),
        "{err}"
    );
}

#[test]
fn layers_can_be_written_from_several_threads_into_one_store() {
    let work = tempfile::tempdir().unwrap();
    let store = BlobStore::open(work.path()).unwrap();
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for i in 0..4u8 {
            let (store, results) = (&store, &results);
            scope.spawn(move || {
                let name = p(&format!("layer-{}", i % 2));
                let entry = Entry::bytes(name, 0o644, vec![i % 2; 100_000]);
                let layer = store
                    .write_layer([Ok(entry)], Compression::Gzip, 1, &no_progress)
                    .unwrap();
                results.lock().unwrap().push((i % 2, layer));
            });
        }
    });
    let results = results.into_inner().unwrap();
    for (kind, layer) in &results {
        let same: Vec<_> = results.iter().filter(|(k, _)| k == kind).collect();
        assert!(same.iter().all(|(_, l)| l == layer));
        assert_eq!(sha256_file(&store.path(&layer.digest)).0, layer.digest);
    }
    assert_eq!(files_in(&work.path().join("blobs/sha256")).len(), 2);
    assert!(files_in(&work.path().join("tmp")).is_empty());
}
