//! The environment and labels a CUDA image carries.

use std::collections::BTreeMap;

use crate::{Architecture, CudaVersion};

/// Where container runtimes and CDI specs put the driver's libraries in an amd64 image,
/// Nix's convention (`/run/opengl-driver/lib`, where nixpkgs' CUDA programs look) first,
/// then the NVIDIA runtime's legacy folders, then the distributions' library folders
/// (Fedora's `/usr/lib64`, Debian's multiarch folder). See [`driver_library_dirs`].
const AMD64_DRIVER_LIBRARY_DIRS: &[&str] = &[
    "/run/opengl-driver/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib64",
    "/usr/lib/x86_64-linux-gnu",
];
/// The same for an arm64 image: only the multiarch folder differs.
const ARM64_DRIVER_LIBRARY_DIRS: &[&str] = &[
    "/run/opengl-driver/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib64",
    "/usr/lib/aarch64-linux-gnu",
];
/// Any other architecture: the folders that are not named after one.
const OTHER_DRIVER_LIBRARY_DIRS: &[&str] = &[
    "/run/opengl-driver/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib64",
];

/// The folders an image for `architecture` (OCI's name: `amd64`, `arm64`) searches for the
/// driver's libraries (its `LD_LIBRARY_PATH` and `/etc/ld.so.conf.d` file), in order. The
/// image lists only its own architecture's multiarch folder: a runtime mounts the host's
/// driver, which is the container's architecture, into the folder of that architecture
/// (`/usr/lib/x86_64-linux-gnu` on x86-64 Debian and Ubuntu hosts,
/// `/usr/lib/aarch64-linux-gnu` on Grace Hopper ones), and the other architecture's folder
/// would only slow every library lookup down. The amd64 list is the one images had before
/// arm64 existed, so amd64 digests did not change. An architecture gpubox does not know
/// gets the folders named after none.
///
/// ```
/// let dirs = gpubox_cuda::driver_library_dirs("arm64");
/// assert_eq!(dirs.last(), Some(&"/usr/lib/aarch64-linux-gnu"));
/// ```
pub fn driver_library_dirs(architecture: &str) -> &'static [&'static str] {
    match Architecture::from_oci(architecture) {
        Some(Architecture::Amd64) => AMD64_DRIVER_LIBRARY_DIRS,
        Some(Architecture::Arm64) => ARM64_DRIVER_LIBRARY_DIRS,
        None => OTHER_DRIVER_LIBRARY_DIRS,
    }
}

/// The variables that make NVIDIA's runtimes give the container the GPUs and the
/// driver capabilities asked for, and that tell them (and `gpubox-init`) which CUDA
/// release the image needs; `version` None leaves the CUDA ones out. `architecture` is
/// the image's (OCI's name, `amd64` or `arm64`): it picks the `LD_LIBRARY_PATH` folders
/// ([`driver_library_dirs`]).
pub fn image_env(
    version: Option<CudaVersion>,
    capabilities: &str,
    architecture: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("NVIDIA_VISIBLE_DEVICES".to_string(), "all".to_string());
    env.insert(
        "NVIDIA_DRIVER_CAPABILITIES".to_string(),
        capabilities.to_string(),
    );
    env.insert(
        "LD_LIBRARY_PATH".to_string(),
        driver_library_dirs(architecture).join(":"),
    );
    if let Some(version) = version {
        env.insert("CUDA_VERSION".to_string(), version.to_string());
        env.insert(
            "NVIDIA_REQUIRE_CUDA".to_string(),
            format!("cuda>={version}"),
        );
    }
    env
}

/// The labels of an image whose CUDA release is known (none otherwise):
/// `com.nvidia.cuda.version`, as NVIDIA's own images carry it, and
/// `io.gpubox.cuda.min-driver`, the minimum Linux driver NVIDIA lists for the
/// release's GA toolkit ([`crate::minimum_driver`]; older drivers of the same major
/// may still run it through minor-version compatibility, with limits), so a
/// marketplace or a `docker images --filter label=...` can match images to hosts
/// by driver without knowing CUDA's table. The driver label is left out for a
/// release the table does not know (before 11.0, or newer than it).
///
/// ```
/// use gpubox_cuda::{image_labels, CudaVersion};
/// let labels = image_labels(Some(CudaVersion::new(12, 4)));
/// assert_eq!(labels["io.gpubox.cuda.min-driver"], "550.54.14");
/// ```
pub fn image_labels(version: Option<CudaVersion>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(version) = version {
        labels.insert("com.nvidia.cuda.version".to_string(), version.to_string());
        if let Some(driver) = crate::driver_table::minimum_driver(version) {
            labels.insert("io.gpubox.cuda.min-driver".to_string(), driver.to_string());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_with_a_known_release() {
        let env = image_env(Some(CudaVersion::new(12, 4)), "compute,utility", "amd64");
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
    fn arm64_lists_its_own_multiarch_folder_and_nothing_else_changes() {
        let amd64 = image_env(Some(CudaVersion::new(12, 4)), "compute,utility", "amd64");
        let arm64 = image_env(Some(CudaVersion::new(12, 4)), "compute,utility", "arm64");
        assert_eq!(
            arm64["LD_LIBRARY_PATH"],
            "/run/opengl-driver/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/lib64:/usr/lib/aarch64-linux-gnu"
        );
        assert!(!arm64["LD_LIBRARY_PATH"].contains("x86_64"));
        assert!(!amd64["LD_LIBRARY_PATH"].contains("aarch64"));
        let without_path = |env: &BTreeMap<String, String>| {
            let mut env = env.clone();
            env.remove("LD_LIBRARY_PATH");
            env
        };
        assert_eq!(without_path(&amd64), without_path(&arm64));
    }

    #[test]
    fn driver_folders_follow_the_architecture() {
        assert_eq!(
            driver_library_dirs("amd64"),
            [
                "/run/opengl-driver/lib",
                "/usr/local/nvidia/lib64",
                "/usr/local/nvidia/lib",
                "/usr/lib64",
                "/usr/lib/x86_64-linux-gnu",
            ]
        );
        assert_eq!(
            driver_library_dirs("arm64").last(),
            Some(&"/usr/lib/aarch64-linux-gnu")
        );
        // Each architecture's list is the common folders plus its multiarch folder.
        for arch in Architecture::ALL {
            let dirs = driver_library_dirs(arch.oci());
            assert_eq!(&dirs[..dirs.len() - 1], driver_library_dirs("riscv64"));
            assert_eq!(
                dirs[dirs.len() - 1],
                format!("/usr/lib/{}", arch.multiarch())
            );
        }
        // Not a multiarch triplet or kernel name: OCI's names only.
        assert_eq!(
            driver_library_dirs("x86_64"),
            driver_library_dirs("riscv64")
        );
    }

    #[test]
    fn env_without_a_release_leaves_cuda_out() {
        let env = image_env(None, "all", "arm64");
        assert_eq!(env.len(), 3, "{env:?}");
        assert!(!env.contains_key("CUDA_VERSION"));
        assert!(!env.contains_key("NVIDIA_REQUIRE_CUDA"));
    }

    #[test]
    fn labels_name_the_release_and_its_minimum_driver() {
        let labels = image_labels(Some(CudaVersion::new(12, 4)));
        assert_eq!(
            labels,
            BTreeMap::from([
                ("com.nvidia.cuda.version".to_string(), "12.4".to_string()),
                // The table's 12.4 GA row.
                (
                    "io.gpubox.cuda.min-driver".to_string(),
                    "550.54.14".to_string()
                ),
            ])
        );
        // Two-part drivers keep NVIDIA's spelling.
        assert_eq!(
            image_labels(Some(CudaVersion::new(12, 8)))["io.gpubox.cuda.min-driver"],
            "570.26"
        );
        // A release the table does not know keeps its version label only.
        let labels = image_labels(Some(CudaVersion::new(12, 10)));
        assert_eq!(labels["com.nvidia.cuda.version"], "12.10");
        assert!(!labels.contains_key("io.gpubox.cuda.min-driver"));
        assert!(image_labels(None).is_empty());
    }
}
