//! Version numbers: CUDA releases (major.minor) and NVIDIA driver versions.

use std::fmt;
use std::str::FromStr;

use crate::CudaError;

/// A CUDA release as major.minor (patch ignored for compatibility).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CudaVersion {
    /// The major release, such as 12.
    pub major: u32,
    /// The minor release, such as 4.
    pub minor: u32,
}

impl CudaVersion {
    /// The release `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        CudaVersion { major, minor }
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Accepts "12", "12.4" and "12.4.127" (and longer component versions such as
/// "12.4.5.8"); a missing minor is 0 and everything after the minor is ignored.
impl FromStr for CudaVersion {
    type Err = CudaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || CudaError::BadVersion {
            what: "CUDA",
            text: text.to_string(),
            expected: "MAJOR.MINOR, such as 12.4",
        };
        let numbers = numeric_parts(text).ok_or_else(bad)?;
        Ok(CudaVersion {
            major: numbers[0],
            minor: numbers.get(1).copied().unwrap_or(0),
        })
    }
}

impl serde::Serialize for CudaVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CudaVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A driver version like 550.54.14 (numbers compared one by one, so
/// 550.54.14 < 550.54.15 < 550.100; a shorter version that is a prefix of a longer one
/// sorts first, so 570.26 < 570.26.0).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriverVersion(Vec<u32>);

impl DriverVersion {
    /// The numbers of the version, most significant first (never empty).
    pub fn parts(&self) -> &[u32] {
        &self.0
    }

    /// The driver branch: the first number, such as 550.
    pub fn branch(&self) -> u32 {
        self.0[0]
    }

    pub(crate) fn from_static(parts: &[u32]) -> Self {
        DriverVersion(parts.to_vec())
    }
}

/// NVIDIA writes every number after the first with at least two digits
/// (450.80.02, 470.82.01), and the library files carry that spelling
/// (`libcuda.so.450.80.02`), so Display pads them the same way.
impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0[0])?;
        for part in &self.0[1..] {
            write!(f, ".{part:02}")?;
        }
        Ok(())
    }
}

impl FromStr for DriverVersion {
    type Err = CudaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        numeric_parts(text)
            .map(DriverVersion)
            .ok_or_else(|| CudaError::BadVersion {
                what: "driver",
                text: text.to_string(),
                expected: "dot-separated numbers, such as 550.54.14",
            })
    }
}

impl serde::Serialize for DriverVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DriverVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The numbers of a dot-separated version ("12.4.127" → [12, 4, 127]); None when the
/// text is empty or any part is not a plain decimal number.
pub(crate) fn numeric_parts(text: &str) -> Option<Vec<u32>> {
    text.trim()
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_version_parses_one_two_and_three_parts() {
        assert_eq!(
            "12".parse::<CudaVersion>().unwrap(),
            CudaVersion::new(12, 0)
        );
        assert_eq!(
            "12.4".parse::<CudaVersion>().unwrap(),
            CudaVersion::new(12, 4)
        );
        assert_eq!(
            "12.4.127".parse::<CudaVersion>().unwrap(),
            CudaVersion::new(12, 4)
        );
        assert_eq!(CudaVersion::new(12, 4).to_string(), "12.4");
    }

    #[test]
    fn cuda_version_rejects_garbage_and_names_it() {
        for text in ["", "12.", ".4", "12.x", "v12.4", "12.4-1", "-1"] {
            let error = text.parse::<CudaVersion>().unwrap_err();
            let message = error.to_string();
            assert!(message.contains(&format!("`{text}`")), "{message}");
            assert!(message.contains("12.4"), "{message}");
        }
    }

    #[test]
    fn cuda_versions_order_number_by_number() {
        let v = |s: &str| s.parse::<CudaVersion>().unwrap();
        assert!(v("12.10") > v("12.9"));
        assert!(v("13.0") > v("12.10"));
        assert!(v("11.8") < v("12.0"));
    }

    #[test]
    fn driver_versions_order_number_by_number() {
        let d = |s: &str| s.parse::<DriverVersion>().unwrap();
        assert!(d("550.54.14") < d("550.54.15"));
        assert!(d("550.54.15") < d("550.100"));
        assert!(d("470.82.01") < d("525.60.13"));
        assert!(d("570.26") < d("570.124.06"));
        assert_eq!(d("470.82.01"), d("470.82.1"));
    }

    #[test]
    fn driver_version_display_keeps_nvidia_spelling() {
        for text in ["550.54.14", "450.80.02", "470.82.01", "570.26", "550"] {
            assert_eq!(text.parse::<DriverVersion>().unwrap().to_string(), text);
        }
        assert!("550.54.x".parse::<DriverVersion>().is_err());
        assert!("".parse::<DriverVersion>().is_err());
    }

    #[test]
    fn versions_serialize_as_strings() {
        let cuda = CudaVersion::new(12, 4);
        let json = serde_json::to_string(&cuda).unwrap();
        assert_eq!(json, "\"12.4\"");
        assert_eq!(serde_json::from_str::<CudaVersion>(&json).unwrap(), cuda);
        let driver: DriverVersion = "550.54.14".parse().unwrap();
        let json = serde_json::to_string(&driver).unwrap();
        assert_eq!(json, "\"550.54.14\"");
        assert_eq!(
            serde_json::from_str::<DriverVersion>(&json).unwrap(),
            driver
        );
    }
}
