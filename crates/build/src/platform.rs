//! The platform images are built for: the build machine's.

/// The build machine's architecture in OCI's words (GOARCH's spelling).
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
