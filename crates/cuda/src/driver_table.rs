//! The minimum NVIDIA driver for each CUDA release, and what a given driver can run.
//!
//! Numbers are the "Linux x86_64 Driver Version" column of the table "CUDA Toolkit and
//! Corresponding Driver Versions" in NVIDIA's CUDA Toolkit release notes
//! (docs.nvidia.com/cuda/cuda-toolkit-release-notes), and the minor-version
//! compatibility floors from the table "CUDA Toolkit and Minimum Required Driver Version
//! for CUDA Minor Version Compatibility" next to it. The 11.x rows were checked here
//! against copies of that table; the 12.x and 13.0 rows are as NVIDIA publishes them
//! but were not re-checked against a copy of the page during this change; the 13.1
//! row (590.44.01) is from memory and not confirmed. Updates that raised the minimum
//! are listed as comments beside their release: only GA rows decide, because a build
//! knows the CUDA major.minor and not which update it came from.
//!
//! The same table is used for arm64 (Grace Hopper and other SBSA) hosts: NVIDIA ships
//! its Linux aarch64 drivers as the same releases, under the same version numbers, as
//! the x86_64 ones (`NVIDIA-Linux-aarch64-550.54.14.run` beside
//! `NVIDIA-Linux-x86_64-550.54.14.run`). No aarch64-specific minimum was checked here.

use crate::{CudaVersion, DriverVersion};

/// (CUDA release, minimum Linux x86_64 driver of its GA release), oldest first.
const TOOLKIT_MINIMUM_DRIVERS: &[(CudaVersion, &[u32])] = &[
    // 11.0.2 GA; 11.0.1 RC needed 450.36.06, 11.0.3 Update 1 needs 450.51.06.
    (CudaVersion::new(11, 0), &[450, 51, 5]),
    // Update 1 (11.1.1): 455.32.
    (CudaVersion::new(11, 1), &[455, 23]),
    // Updates 1 and 2: 460.32.03.
    (CudaVersion::new(11, 2), &[460, 27, 3]),
    (CudaVersion::new(11, 3), &[465, 19, 1]),
    // Updates 1 and 2: 470.57.02; Updates 3 and 4: 470.82.01.
    (CudaVersion::new(11, 4), &[470, 42, 1]),
    (CudaVersion::new(11, 5), &[495, 29, 5]),
    // Updates 1 and 2: 510.47.03.
    (CudaVersion::new(11, 6), &[510, 39, 1]),
    // Update 1: 515.65.01.
    (CudaVersion::new(11, 7), &[515, 43, 4]),
    (CudaVersion::new(11, 8), &[520, 61, 5]),
    // Update 1: 525.85.12.
    (CudaVersion::new(12, 0), &[525, 60, 13]),
    // Update 1: 530.30.02 as well.
    (CudaVersion::new(12, 1), &[530, 30, 2]),
    // Update 1: 535.86.09; Update 2: 535.104.05.
    (CudaVersion::new(12, 2), &[535, 54, 3]),
    // Update 1: 545.23.08.
    (CudaVersion::new(12, 3), &[545, 23, 6]),
    // Update 1: 550.54.15.
    (CudaVersion::new(12, 4), &[550, 54, 14]),
    // Update 1: 555.42.06.
    (CudaVersion::new(12, 5), &[555, 42, 2]),
    // Updates 1 and 2: 560.35.03; Update 3: 560.35.05. (There is no CUDA 12.7.)
    (CudaVersion::new(12, 6), &[560, 28, 3]),
    // Update 1: 570.124.06.
    (CudaVersion::new(12, 8), &[570, 26]),
    // Update 1: 575.57.08.
    (CudaVersion::new(12, 9), &[575, 51, 3]),
    // Update 1: 580.82.07; Update 2: 580.95.05.
    (CudaVersion::new(13, 0), &[580, 65, 6]),
    // Not confirmed here (see the module comment).
    (CudaVersion::new(13, 1), &[590, 44, 1]),
];

/// (CUDA major, the driver that runs every minor release of it through minor version
/// compatibility). The 11.x floor is for 11.1 on; 11.0 itself needs 450.36.06 or its
/// own minimum, whichever is met.
const MINOR_COMPAT_MINIMUM_DRIVERS: &[(u32, &[u32])] = &[
    (11, &[450, 80, 2]),
    (12, &[525, 60, 13]),
    (13, &[580, 65, 6]),
];

/// The minimum driver of the CUDA release's GA toolkit; None for releases outside the
/// table (before 11.0, or newer than the table knows).
pub fn minimum_driver(cuda: CudaVersion) -> Option<DriverVersion> {
    TOOLKIT_MINIMUM_DRIVERS
        .iter()
        .find(|(release, _)| *release == cuda)
        .map(|(_, driver)| DriverVersion::from_static(driver))
}

/// The driver from which every minor release of CUDA `major` runs through minor version
/// compatibility (with limits: PTX JIT of newer code and some features need the
/// release's own minimum).
pub fn minor_compat_minimum(major: u32) -> Option<DriverVersion> {
    MINOR_COMPAT_MINIMUM_DRIVERS
        .iter()
        .find(|(known, _)| *known == major)
        .map(|(_, driver)| DriverVersion::from_static(driver))
}

/// The newest CUDA release whose minimum driver is at most `driver`: what
/// `cuDriverGetVersion` reports for that driver. For a driver newer than every row
/// this is the newest release in the table, a lower bound; None for drivers older than
/// CUDA 11.0's minimum.
pub fn cuda_supported_by(driver: &DriverVersion) -> Option<CudaVersion> {
    TOOLKIT_MINIMUM_DRIVERS
        .iter()
        .filter(|(_, minimum)| driver.parts() >= *minimum)
        .map(|(release, _)| *release)
        .next_back()
}

/// How an image built for one CUDA release runs on a host driver.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Compatibility {
    /// The driver is at least the release's own minimum.
    Native,
    /// Runs via minor version compatibility: the driver is older than the release's
    /// minimum but supports its major; PTX JIT of newer code and some features need
    /// the newer driver.
    MinorVersion,
    /// Runs only because the image carries cuda-compat's libcuda, which works on
    /// datacenter GPUs and on the driver branches NVIDIA lists for forward
    /// compatibility (neither is checked here).
    ForwardCompat,
    /// The driver cannot run the image.
    TooOld {
        /// The oldest driver that runs it (through minor version compatibility when
        /// that is older than the release's own minimum).
        minimum: DriverVersion,
    },
    /// The image's CUDA release is outside the table (a major newer than it knows, or
    /// older than 11.0 on a driver older than 11.0's minimum), so it cannot say.
    UnknownRelease,
}

impl Compatibility {
    /// Whether the image's CUDA code can run at all.
    pub fn runs(&self) -> bool {
        matches!(
            self,
            Compatibility::Native | Compatibility::MinorVersion | Compatibility::ForwardCompat
        )
    }
}

/// How an image built for `image_cuda` runs on `driver`; `image_has_cuda_compat` says
/// whether the image carries cuda-compat's libcuda (forward compatibility).
/// Minor version compatibility is preferred over forward compatibility when both
/// apply, because it works on every GPU.
pub fn compatibility(
    image_cuda: CudaVersion,
    driver: &DriverVersion,
    image_has_cuda_compat: bool,
) -> Compatibility {
    let own_minimum = minimum_driver(image_cuda);
    if own_minimum
        .as_ref()
        .is_some_and(|minimum| driver >= minimum)
    {
        return Compatibility::Native;
    }
    // Drivers are backward compatible: one that runs the table's oldest release runs
    // every older one.
    let (oldest, _) = TOOLKIT_MINIMUM_DRIVERS[0];
    if image_cuda < oldest && cuda_supported_by(driver).is_some() {
        return Compatibility::Native;
    }
    let floor = minor_compat_minimum(image_cuda.major);
    if floor.as_ref().is_some_and(|floor| driver >= floor) {
        return Compatibility::MinorVersion;
    }
    if image_has_cuda_compat {
        return Compatibility::ForwardCompat;
    }
    match (own_minimum, floor) {
        (Some(own), Some(floor)) => Compatibility::TooOld {
            minimum: own.min(floor),
        },
        (Some(minimum), None) | (None, Some(minimum)) => Compatibility::TooOld { minimum },
        (None, None) => Compatibility::UnknownRelease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(text: &str) -> DriverVersion {
        text.parse().unwrap()
    }

    fn cuda(text: &str) -> CudaVersion {
        text.parse().unwrap()
    }

    #[test]
    fn table_is_sorted_both_ways() {
        for pair in TOOLKIT_MINIMUM_DRIVERS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?}", pair);
            assert!(pair[0].1 < pair[1].1, "{:?}", pair);
        }
    }

    #[test]
    fn minimum_drivers_from_the_release_notes() {
        assert_eq!(minimum_driver(cuda("12.4")), Some(driver("550.54.14")));
        assert_eq!(minimum_driver(cuda("12.0")), Some(driver("525.60.13")));
        assert_eq!(minimum_driver(cuda("12.8")), Some(driver("570.26")));
        assert_eq!(minimum_driver(cuda("11.8")), Some(driver("520.61.05")));
        assert_eq!(minimum_driver(cuda("13.0")), Some(driver("580.65.06")));
        assert_eq!(minimum_driver(cuda("12.7")), None);
        assert_eq!(minimum_driver(cuda("10.2")), None);
    }

    #[test]
    fn minor_compat_floors() {
        assert_eq!(minor_compat_minimum(11), Some(driver("450.80.02")));
        assert_eq!(minor_compat_minimum(12), Some(driver("525.60.13")));
        assert_eq!(minor_compat_minimum(13), Some(driver("580.65.06")));
        assert_eq!(minor_compat_minimum(10), None);
    }

    #[test]
    fn cuda_reported_by_a_driver() {
        assert_eq!(cuda_supported_by(&driver("550.54.14")), Some(cuda("12.4")));
        assert_eq!(cuda_supported_by(&driver("550.54.13")), Some(cuda("12.3")));
        assert_eq!(cuda_supported_by(&driver("535.104.05")), Some(cuda("12.2")));
        assert_eq!(cuda_supported_by(&driver("470.82.01")), Some(cuda("11.4")));
        assert_eq!(cuda_supported_by(&driver("570.26")), Some(cuda("12.8")));
        assert_eq!(cuda_supported_by(&driver("565.57.01")), Some(cuda("12.6")));
        assert_eq!(cuda_supported_by(&driver("418.39")), None);
    }

    #[test]
    fn compatibility_of_images_with_the_driver_550_54_14() {
        let host = driver("550.54.14");
        let too_old_for_13 = Compatibility::TooOld {
            minimum: driver("580.65.06"),
        };
        // (image CUDA, image carries cuda-compat, expected)
        let cases = [
            ("12.4", false, Compatibility::Native),
            ("11.8", false, Compatibility::Native),
            ("10.2", false, Compatibility::Native),
            ("12.8", false, Compatibility::MinorVersion),
            // Minor compatibility works on every GPU, so it wins over cuda-compat.
            ("12.8", true, Compatibility::MinorVersion),
            // A 12.x release newer than the table still runs through minor compatibility.
            ("12.10", false, Compatibility::MinorVersion),
            ("13.0", false, too_old_for_13),
            ("13.0", true, Compatibility::ForwardCompat),
            ("14.0", false, Compatibility::UnknownRelease),
        ];
        for (image, has_compat, expected) in cases {
            assert_eq!(
                compatibility(cuda(image), &host, has_compat),
                expected,
                "CUDA {image}, cuda-compat {has_compat}"
            );
        }
        assert!(!Compatibility::UnknownRelease.runs());
        assert!(Compatibility::MinorVersion.runs());
    }

    #[test]
    fn too_old_names_the_oldest_driver_that_works() {
        assert_eq!(
            compatibility(cuda("12.8"), &driver("520"), false),
            Compatibility::TooOld {
                minimum: driver("525.60.13")
            }
        );
        // 11.0's own minimum is older than the 11.x minor-compatibility floor.
        assert_eq!(
            compatibility(cuda("11.0"), &driver("450.36.06"), false),
            Compatibility::TooOld {
                minimum: driver("450.51.05")
            }
        );
        assert_eq!(
            compatibility(cuda("12.0"), &driver("470.82.01"), true),
            Compatibility::ForwardCompat
        );
        assert!(!compatibility(cuda("12.0"), &driver("470.82.01"), false).runs());
    }

    #[test]
    fn compatibility_serializes_with_its_mode() {
        let json = serde_json::to_string(&Compatibility::TooOld {
            minimum: driver("525.60.13"),
        })
        .unwrap();
        assert_eq!(json, r#"{"mode":"too_old","minimum":"525.60.13"}"#);
    }
}
