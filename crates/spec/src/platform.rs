//! The platforms an image is built for (`platforms`, `--platform`), and the Nix
//! systems and ELF machines that go with them.
//!
//! gpubox builds Linux images for the two architectures NVIDIA ships CUDA
//! drivers for on servers: x86_64 (`linux/amd64`) and aarch64 (`linux/arm64`,
//! Grace Hopper and Grace Blackwell hosts). Names are OCI's (Go's `GOOS/GOARCH`),
//! as `podman --platform` and `docker buildx --platform` take them; `linux/arm64/v8`
//! is accepted for arm64, whose variant OCI writes as `v8`.

use std::fmt;

/// One platform an image is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    /// `linux/amd64`: x86_64.
    Amd64,
    /// `linux/arm64` (variant `v8`): aarch64.
    Arm64,
}

/// The platforms gpubox builds, in the order an index lists them.
pub const PLATFORMS: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

/// The Nix systems gpubox builds for, as `{ file, attr, system }` takes them.
pub const NIX_SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];

impl Platform {
    /// `linux/amd64` or `linux/arm64`: the name `--platform` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The operating system, in OCI's (GOOS) spelling.
    pub fn os(self) -> &'static str {
        "linux"
    }

    /// The architecture, in OCI's (GOARCH) spelling: `amd64`, `arm64`.
    pub fn architecture(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The variant OCI writes for the architecture, where it has one.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::Amd64 => None,
            Platform::Arm64 => Some("v8"),
        }
    }

    /// The Nix system that builds for it: `x86_64-linux`, `aarch64-linux`.
    pub fn nix_system(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-linux",
            Platform::Arm64 => "aarch64-linux",
        }
    }

    /// The CPU as the kernel (`uname -m`) and ELF tools name it.
    pub fn machine(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// The platform of a CPU named as `uname -m` names it (`x86_64`, `aarch64`).
    pub fn of_machine(machine: &str) -> Option<Platform> {
        PLATFORMS.into_iter().find(|p| p.machine() == machine)
    }

    /// The platform of a Nix system (`aarch64-linux`).
    pub fn of_nix_system(system: &str) -> Option<Platform> {
        PLATFORMS.into_iter().find(|p| p.nix_system() == system)
    }

    /// The platform of an OCI architecture (`arm64`).
    pub fn of_architecture(architecture: &str) -> Option<Platform> {
        PLATFORMS
            .into_iter()
            .find(|p| p.architecture() == architecture)
    }

    /// The build machine's platform, when gpubox builds for it.
    pub fn build_machine() -> Option<Platform> {
        Platform::of_machine(std::env::consts::ARCH)
    }

    /// The folder name `linux-arm64`, for files written once per platform.
    pub fn file_stem(self) -> String {
        self.as_str().replace('/', "-")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    /// `linux/amd64`, `linux/arm64` or `linux/arm64/v8`; the error says what
    /// gpubox builds.
    fn from_str(text: &str) -> Result<Platform, String> {
        let wanted = text.trim();
        PLATFORMS
            .into_iter()
            .find(|p| {
                wanted == p.as_str()
                    || p.variant()
                        .is_some_and(|v| wanted == format!("{}/{v}", p.as_str()))
            })
            .ok_or_else(|| {
                let hint = match wanted {
                    "amd64" | "x86_64" | "linux/x86_64" => " (write linux/amd64)",
                    "arm64" | "aarch64" | "linux/aarch64" => " (write linux/arm64)",
                    _ => "",
                };
                format!(
                    "unknown platform {text:?}{hint}: gpubox builds {}",
                    PLATFORMS.map(Platform::as_str).join(" and ")
                )
            })
    }
}

/// The Nix system a `nixpkgs#legacyPackages.aarch64-linux.hello`-style
/// installable names in its attribute path, if it names one.
pub fn installable_system(installable: &str) -> Option<&'static str> {
    let (_, attr) = installable.split_once('#')?;
    NIX_SYSTEMS
        .into_iter()
        .find(|system| attr.split('.').any(|part| part == *system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!("linux/amd64".parse(), Ok(Platform::Amd64));
        assert_eq!("linux/arm64".parse(), Ok(Platform::Arm64));
        assert_eq!("linux/arm64/v8".parse(), Ok(Platform::Arm64));
        let error = "linux/aarch64".parse::<Platform>().unwrap_err();
        assert!(error.contains("write linux/arm64"), "{error}");
        let error = "windows/amd64".parse::<Platform>().unwrap_err();
        assert!(
            error.contains("gpubox builds linux/amd64 and linux/arm64"),
            "{error}"
        );
        assert_eq!(Platform::Arm64.to_string(), "linux/arm64");
        assert_eq!(Platform::Arm64.file_stem(), "linux-arm64");
    }

    #[test]
    fn systems_and_machines_match() {
        for platform in PLATFORMS {
            assert_eq!(
                Platform::of_nix_system(platform.nix_system()),
                Some(platform)
            );
            assert_eq!(Platform::of_machine(platform.machine()), Some(platform));
            assert_eq!(
                Platform::of_architecture(platform.architecture()),
                Some(platform)
            );
        }
    }

    #[test]
    fn installables_name_their_system_in_the_attribute_path() {
        assert_eq!(
            installable_system("nixpkgs#legacyPackages.aarch64-linux.hello"),
            Some("aarch64-linux")
        );
        assert_eq!(
            installable_system(".#packages.x86_64-linux.default"),
            Some("x86_64-linux")
        );
        assert_eq!(installable_system("nixpkgs#hello"), None);
        // A flake reference that merely contains the word is not a system.
        assert_eq!(installable_system("github:x/aarch64-linux#hello"), None);
    }
}
