//! An image as archives and registries hand it over: the bytes opened as an oci-archive
//! and as a docker-archive (the tar index, `index.json`, `manifest.json`, the manifest,
//! the config), each layer opened, summarised and searched for the files `fromImage`
//! reads, links followed through the stacked layers; and the bytes read as a registry's
//! manifest or index.
#![no_main]

use std::collections::BTreeSet;

use gpubox_oci::source::{follow_links, stack_layer_files, summarize_layer, ImageReader};
use libfuzzer_sys::fuzz_target;

fn read_image(image: &ImageReader) {
    let _ = image.config();
    let _ = image.repo_tags();
    let wanted = ["etc/passwd", "etc/group", "bin", "usr/bin"];
    let mut layers = Vec::new();
    for index in 0..image.layers().len() {
        if let Ok(layer) = image.open_layer(index) {
            let _ = summarize_layer(layer);
        }
        if let Ok(files) = image.layer_files(index, &wanted) {
            layers.push(files);
        }
    }
    // Links followed through the stacked layers, as the build does for a base.
    let shown = stack_layer_files(&layers);
    let read: BTreeSet<String> = wanted.iter().map(|path| (*path).to_owned()).collect();
    for path in wanted {
        let _ = follow_links(&shown, &read, path);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(file) = gpubox_fuzz::scratch_file("image.tar", data) else {
        return;
    };
    if let Ok(image) = ImageReader::open_oci_archive(&file, None) {
        read_image(&image);
    }
    if let Ok(image) = ImageReader::open_docker_archive(&file) {
        read_image(&image);
    }
    let _ = gpubox_oci::index::ManifestKind::of(data);
    let _ = gpubox_oci::index::platform_entry(data, "linux", "amd64");
    let _ = serde_json::from_slice::<gpubox_oci::image::Manifest>(data);
});
