//! An image as archives and registries hand it over: the bytes opened as an oci-archive
//! and as a docker-archive (the tar index, `index.json`, `manifest.json`, the manifest,
//! the config), each layer opened, summarised and searched for the files `fromImage`
//! reads; and the bytes read as a registry's manifest or index.
#![no_main]

use gpubox_oci::source::{summarize_layer, ImageReader};
use libfuzzer_sys::fuzz_target;

fn read_image(image: &ImageReader) {
    let _ = image.config();
    let _ = image.repo_tags();
    for index in 0..image.layers().len() {
        if let Ok(layer) = image.open_layer(index) {
            let _ = summarize_layer(layer);
        }
        let _ = image.layer_files(index, &["etc/passwd", "etc/group", "etc/os-release"]);
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
