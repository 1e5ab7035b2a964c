//! The platform images are built for when the spec names none: the build machine's.

/// The build machine's architecture in OCI's words (GOARCH's spelling).
pub fn oci_architecture() -> &'static str {
    gpubox_oci::image::HOST_ARCHITECTURE
}
