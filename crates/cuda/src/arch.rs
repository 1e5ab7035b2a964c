//! The CPU architectures gpubox builds GPU images for and finds NVIDIA drivers on, under
//! each of the names the places that meet them use: OCI's (an image config's
//! `architecture`), the kernel's (`uname -m`, Rust's `std::env::consts::ARCH`) and
//! Debian's multiarch triplet (the folder under `/usr/lib` where Debian and Ubuntu, and
//! nvidia-container-toolkit on them, put the driver's libraries).

/// An architecture with NVIDIA's Linux drivers: x86-64, and 64-bit Arm (Grace Hopper and
/// Grace Blackwell hosts, GH200/GB200, and other SBSA servers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    Amd64,
    Arm64,
}

impl Architecture {
    /// Every architecture, x86-64 first.
    pub const ALL: [Architecture; 2] = [Architecture::Amd64, Architecture::Arm64];

    /// By OCI's name (GOARCH's spelling): `amd64`, `arm64`.
    ///
    /// ```
    /// use gpubox_cuda::Architecture;
    /// assert_eq!(Architecture::from_oci("arm64"), Some(Architecture::Arm64));
    /// assert_eq!(Architecture::from_oci("aarch64"), None);
    /// ```
    pub fn from_oci(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|arch| arch.oci() == name)
    }

    /// By the kernel's name (`uname -m`, `std::env::consts::ARCH`, the first half of a Nix
    /// system): `x86_64`, `aarch64`.
    pub fn from_machine(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|arch| arch.machine() == name)
    }

    /// The architecture this program was compiled for, when it is one of [`Self::ALL`].
    pub fn native() -> Option<Self> {
        Self::from_machine(std::env::consts::ARCH)
    }

    /// OCI's name: `amd64`, `arm64`.
    pub fn oci(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The kernel's name: `x86_64`, `aarch64`.
    pub fn machine(self) -> &'static str {
        match self {
            Architecture::Amd64 => "x86_64",
            Architecture::Arm64 => "aarch64",
        }
    }

    /// Debian's multiarch triplet, the library folder's name under `/usr/lib` and `/lib`:
    /// `x86_64-linux-gnu`, `aarch64-linux-gnu`.
    pub fn multiarch(self) -> &'static str {
        match self {
            Architecture::Amd64 => "x86_64-linux-gnu",
            Architecture::Arm64 => "aarch64-linux-gnu",
        }
    }
}

impl std::fmt::Display for Architecture {
    /// The kernel's name, which is what `nvidia-smi`, `uname -m` and driver file names say.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.machine())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Architecture::ALL {
            assert_eq!(Architecture::from_oci(arch.oci()), Some(arch));
            assert_eq!(Architecture::from_machine(arch.machine()), Some(arch));
            assert!(arch.multiarch().starts_with(arch.machine()));
            assert_eq!(arch.to_string(), arch.machine());
        }
        assert_eq!(Architecture::from_oci("x86_64"), None);
        assert_eq!(Architecture::from_machine("amd64"), None);
        assert_eq!(Architecture::from_oci("ppc64le"), None);
        assert_eq!(Architecture::Arm64.multiarch(), "aarch64-linux-gnu");
    }

    #[test]
    fn native_is_the_compiled_architecture() {
        let expected = match std::env::consts::ARCH {
            "x86_64" => Some(Architecture::Amd64),
            "aarch64" => Some(Architecture::Arm64),
            _ => None,
        };
        assert_eq!(Architecture::native(), expected);
    }
}
