//! The environment and labels a CUDA image carries.

use std::collections::BTreeMap;

use crate::CudaVersion;

/// Where container runtimes and CDI specs put the driver's libraries, Nix's
/// convention (`/run/opengl-driver/lib`, where nixpkgs' CUDA programs look) first,
/// then the NVIDIA runtime's legacy folders, then the distributions' library folders.
pub const DRIVER_LIBRARY_DIRS: &[&str] = &[
    "/run/opengl-driver/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
];

/// The variables that make NVIDIA's runtimes give the container the GPUs and the
/// driver capabilities asked for, and that tell them (and `gpubox-init`) which CUDA
/// release the image needs; `version` None leaves the CUDA ones out.
pub fn image_env(version: Option<CudaVersion>, capabilities: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("NVIDIA_VISIBLE_DEVICES".to_string(), "all".to_string());
    env.insert(
        "NVIDIA_DRIVER_CAPABILITIES".to_string(),
        capabilities.to_string(),
    );
    env.insert("LD_LIBRARY_PATH".to_string(), DRIVER_LIBRARY_DIRS.join(":"));
    if let Some(version) = version {
        env.insert("CUDA_VERSION".to_string(), version.to_string());
        env.insert(
            "NVIDIA_REQUIRE_CUDA".to_string(),
            format!("cuda>={version}"),
        );
    }
    env
}

/// The labels NVIDIA's own images carry: `com.nvidia.cuda.version` when the release
/// is known.
pub fn image_labels(version: Option<CudaVersion>) -> BTreeMap<String, String> {
    version
        .map(|version| ("com.nvidia.cuda.version".to_string(), version.to_string()))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_with_a_known_release() {
        let env = image_env(Some(CudaVersion::new(12, 4)), "compute,utility");
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "all");
        assert_eq!(env["NVIDIA_DRIVER_CAPABILITIES"], "compute,utility");
        assert_eq!(env["CUDA_VERSION"], "12.4");
        assert_eq!(env["NVIDIA_REQUIRE_CUDA"], "cuda>=12.4");
        assert_eq!(
            env["LD_LIBRARY_PATH"],
            "/run/opengl-driver/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/lib64:/usr/lib/x86_64-linux-gnu"
        );
        // What the image asks for must parse in the requirement language.
        assert!(crate::parse(&env["NVIDIA_REQUIRE_CUDA"]).is_ok());
    }

    #[test]
    fn env_without_a_release_leaves_cuda_out() {
        let env = image_env(None, "all");
        assert_eq!(env.len(), 3, "{env:?}");
        assert!(!env.contains_key("CUDA_VERSION"));
        assert!(!env.contains_key("NVIDIA_REQUIRE_CUDA"));
    }

    #[test]
    fn labels() {
        let labels = image_labels(Some(CudaVersion::new(12, 10)));
        assert_eq!(labels["com.nvidia.cuda.version"], "12.10");
        assert!(image_labels(None).is_empty());
    }
}
