//! The `NVIDIA_REQUIRE_*` language, read the way libnvidia-container reads it
//! (`src/cli/dsl.c`) and collected from an image's environment the way
//! nvidia-container-toolkit collects it.
//!
//! An expression is alternatives separated by spaces, any one of which is enough; an
//! alternative is constraints separated by commas, all of which must hold. A constraint
//! is `KEY OP VALUE` with KEY one of `cuda` (the CUDA version the driver supports),
//! `driver`, `arch` (the GPU's compute capability) and `brand`, and OP one of
//! `= != < <= > >=`. Versions compare number by number, missing numbers counting as 0
//! (12.10 > 12.9, 470 = 470.0); brands compare as case-insensitive strings, with `=`
//! and `!=` only. Unlike libnvidia-container, which reports a bad constraint only
//! when evaluation reaches it, [`parse`] checks every constraint up front.

use std::cmp::Ordering;
use std::fmt;

use crate::version::numeric_parts;
use crate::{CudaVersion, DriverVersion};

/// Why a requirement could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequireError {
    /// The expression has no constraint at all.
    #[error("the requirement `{expr}` is empty: write constraints such as cuda>=12.4, or leave the variable unset")]
    Empty {
        /// The expression as given.
        expr: String,
    },
    /// A constraint without a comparison operator or without a value.
    #[error("`{constraint}` in the requirement `{expr}` is not KEY OP VALUE: write, for example, cuda>=12.4 or driver>=550 (operators = != < <= > >=)")]
    Malformed {
        /// The constraint as written.
        constraint: String,
        /// The whole expression.
        expr: String,
    },
    /// A constraint on something the runtimes do not know.
    #[error("`{constraint}` in the requirement `{expr}` uses the unknown key `{key}`: the keys are cuda, driver, arch and brand")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The constraint as written.
        constraint: String,
        /// The whole expression.
        expr: String,
    },
    /// A version value that is not dot-separated numbers.
    #[error("`{value}` in `{constraint}` (requirement `{expr}`) is not a version: write dot-separated numbers, such as 12.4 or 550.54.14")]
    BadVersion {
        /// The value as written.
        value: String,
        /// The constraint as written.
        constraint: String,
        /// The whole expression.
        expr: String,
    },
    /// A brand compared with an ordering operator.
    #[error("`{constraint}` in the requirement `{expr}` orders brands: brands can only be compared with = or !=")]
    OrderedBrand {
        /// The constraint as written.
        constraint: String,
        /// The whole expression.
        expr: String,
    },
    /// A requirement variable whose value could not be read.
    #[error("the image's {variable}: {error}")]
    Variable {
        /// The environment variable, such as `NVIDIA_REQUIRE_CUDA`.
        variable: String,
        /// What is wrong with its value.
        error: Box<RequireError>,
    },
    /// A legacy `CUDA_VERSION` that is not a version.
    #[error("the image's CUDA_VERSION `{value}` is not a version: set it to MAJOR.MINOR[.PATCH], such as 12.4.1, or set NVIDIA_REQUIRE_CUDA")]
    BadCudaVersion {
        /// The value as given.
        value: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Cuda,
    Driver,
    Arch,
    Brand,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Cuda => "cuda",
            Key::Driver => "driver",
            Key::Arch => "arch",
            Key::Brand => "brand",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// The operators by spelling, two-character ones first so `<=` is not read as `<`.
    const SPELLINGS: [(&'static str, Op); 6] = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn spelling(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
        }
    }
}

/// What a constraint compares, with the value it compares against.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subject {
    Cuda(Vec<u32>),
    Driver(Vec<u32>),
    Arch(Vec<u32>),
    Brand(String),
}

impl Subject {
    fn key(&self) -> Key {
        match self {
            Subject::Cuda(_) => Key::Cuda,
            Subject::Driver(_) => Key::Driver,
            Subject::Arch(_) => Key::Arch,
            Subject::Brand(_) => Key::Brand,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Constraint {
    op: Op,
    subject: Subject,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.subject.key().name(), self.op.spelling())?;
        match &self.subject {
            Subject::Cuda(parts) | Subject::Driver(parts) | Subject::Arch(parts) => {
                let parts: Vec<String> = parts.iter().map(u32::to_string).collect();
                f.write_str(&parts.join("."))
            }
            Subject::Brand(brand) => f.write_str(brand),
        }
    }
}

/// A parsed `NVIDIA_REQUIRE_*` expression: alternatives (ORed) of constraints (ANDed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    alternatives: Vec<Vec<Constraint>>,
}

/// Prints the expression in normal form: one space between alternatives, commas
/// between constraints, no spaces inside.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alternative) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write_alternative(f, alternative)?;
        }
        Ok(())
    }
}

fn write_alternative(f: &mut impl fmt::Write, alternative: &[Constraint]) -> fmt::Result {
    for (i, constraint) in alternative.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{constraint}")?;
    }
    Ok(())
}

/// What is known about the host and its GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostFacts {
    /// The CUDA version the driver supports (what `cuDriverGetVersion` reports).
    pub cuda: Option<CudaVersion>,
    /// The driver version, such as 550.54.14.
    pub driver: Option<DriverVersion>,
    /// The GPU's compute capability, such as "9.0".
    pub arch: Option<String>,
    /// The GPU's brand as NVML names it, such as "Tesla" or "GeForce".
    pub brand: Option<String>,
}

/// The outcome of checking a requirement against a host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Evaluation {
    /// At least one alternative holds.
    Met,
    /// No alternative holds.
    Unmet {
        /// The alternative that came closest (the fewest constraints failing, the first
        /// one on a tie), in normal form, such as "cuda>=12.2".
        failed: String,
    },
    /// No alternative holds for certain, and some could depending on facts not known.
    Unknown {
        /// The facts that would decide, such as "driver", in key order.
        missing: Vec<&'static str>,
    },
}

/// Reads one `NVIDIA_REQUIRE_*` expression.
pub fn parse(expr: &str) -> Result<Requirement, RequireError> {
    let mut alternatives = Vec::new();
    for alternative in expr.split_whitespace() {
        // Empty pieces (",,") are skipped, as libnvidia-container does.
        let constraints = alternative
            .split(',')
            .filter(|piece| !piece.is_empty())
            .map(|piece| parse_constraint(piece, expr))
            .collect::<Result<Vec<_>, _>>()?;
        if !constraints.is_empty() {
            alternatives.push(constraints);
        }
    }
    if alternatives.is_empty() {
        return Err(RequireError::Empty {
            expr: expr.to_string(),
        });
    }
    Ok(Requirement { alternatives })
}

fn parse_constraint(text: &str, expr: &str) -> Result<Constraint, RequireError> {
    let malformed = || RequireError::Malformed {
        constraint: text.to_string(),
        expr: expr.to_string(),
    };
    let op_start = text.find(['<', '>', '=', '!']).ok_or_else(malformed)?;
    let (key_text, rest) = text.split_at(op_start);
    let (spelling, op) = Op::SPELLINGS
        .iter()
        .find(|(spelling, _)| rest.starts_with(spelling))
        .ok_or_else(malformed)?;
    let value_text = &rest[spelling.len()..];
    if key_text.is_empty() || value_text.is_empty() || value_text.contains(['<', '>', '=', '!']) {
        return Err(malformed());
    }
    let key = match key_text.to_ascii_lowercase().as_str() {
        "cuda" => Key::Cuda,
        "driver" => Key::Driver,
        "arch" => Key::Arch,
        "brand" => Key::Brand,
        _ => {
            return Err(RequireError::UnknownKey {
                key: key_text.to_string(),
                constraint: text.to_string(),
                expr: expr.to_string(),
            })
        }
    };
    let version = || {
        numeric_parts(value_text).ok_or_else(|| RequireError::BadVersion {
            value: value_text.to_string(),
            constraint: text.to_string(),
            expr: expr.to_string(),
        })
    };
    let subject = match key {
        Key::Cuda => Subject::Cuda(version()?),
        Key::Driver => Subject::Driver(version()?),
        Key::Arch => Subject::Arch(version()?),
        Key::Brand if matches!(op, Op::Eq | Op::Ne) => Subject::Brand(value_text.to_string()),
        Key::Brand => {
            return Err(RequireError::OrderedBrand {
                constraint: text.to_string(),
                expr: expr.to_string(),
            })
        }
    };
    Ok(Constraint { op: *op, subject })
}

/// Compares versions number by number, missing numbers counting as 0.
fn compare_versions(left: &[u32], right: &[u32]) -> Ordering {
    let len = left.len().max(right.len());
    (0..len)
        .map(|i| {
            let l = left.get(i).copied().unwrap_or(0);
            let r = right.get(i).copied().unwrap_or(0);
            l.cmp(&r)
        })
        .find(|ordering| ordering.is_ne())
        .unwrap_or(Ordering::Equal)
}

impl Constraint {
    /// Whether the constraint holds on the host; None when the fact is not known.
    fn holds(&self, facts: &HostFacts) -> Option<bool> {
        let (have, wanted) = match &self.subject {
            Subject::Brand(brand) => {
                let equal = facts.brand.as_ref()?.eq_ignore_ascii_case(brand);
                return Some(equal == (self.op == Op::Eq));
            }
            Subject::Cuda(wanted) => (facts.cuda.map(|v| vec![v.major, v.minor])?, wanted),
            Subject::Driver(wanted) => (facts.driver.as_ref()?.parts().to_vec(), wanted),
            Subject::Arch(wanted) => (numeric_parts(facts.arch.as_ref()?)?, wanted),
        };
        Some(self.op.holds(compare_versions(&have, wanted)))
    }
}

impl Requirement {
    /// Checks the requirement against what is known about the host.
    pub fn evaluate(&self, facts: &HostFacts) -> Evaluation {
        let mut missing: Vec<Key> = Vec::new();
        // (constraints failing, alternative) of the closest failing alternative.
        let mut closest: Option<(usize, &[Constraint])> = None;
        for alternative in &self.alternatives {
            let results: Vec<Option<bool>> = alternative.iter().map(|c| c.holds(facts)).collect();
            if results.iter().all(|r| *r == Some(true)) {
                return Evaluation::Met;
            }
            let failing = results.iter().filter(|r| **r == Some(false)).count();
            if failing > 0 {
                if closest.is_none_or(|(best, _)| failing < best) {
                    closest = Some((failing, alternative));
                }
            } else {
                for (constraint, result) in alternative.iter().zip(&results) {
                    if result.is_none() && !missing.contains(&constraint.subject.key()) {
                        missing.push(constraint.subject.key());
                    }
                }
            }
        }
        if !missing.is_empty() {
            let order = [Key::Cuda, Key::Driver, Key::Arch, Key::Brand];
            return Evaluation::Unknown {
                missing: order
                    .into_iter()
                    .filter(|key| missing.contains(key))
                    .map(Key::name)
                    .collect(),
            };
        }
        let mut failed = String::new();
        if let Some((_, alternative)) = closest {
            // Writing to a String cannot fail.
            let _ = write_alternative(&mut failed, alternative);
        }
        Evaluation::Unmet { failed }
    }
}

/// Every requirement the image states, as nvidia-container-toolkit collects them: each
/// `NVIDIA_REQUIRE_*` variable with a non-blank value except `NVIDIA_REQUIRE_JETPACK*`
/// (which the toolkit leaves to Jetson's own checks), and, for legacy images that set
/// `CUDA_VERSION` but no `NVIDIA_REQUIRE_CUDA`, `cuda>=MAJOR.MINOR` under the name
/// `CUDA_VERSION`. Sorted by variable name; the requirements must all be met.
pub fn requirements_from_env<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(String, Requirement)>, RequireError> {
    let mut requirements = Vec::new();
    let mut has_require_cuda = false;
    let mut legacy_cuda_version = None;
    for (name, value) in vars {
        if name == "CUDA_VERSION" && !value.trim().is_empty() {
            legacy_cuda_version = Some(value);
        }
        if !name.starts_with("NVIDIA_REQUIRE_") || name.starts_with("NVIDIA_REQUIRE_JETPACK") {
            continue;
        }
        if value.trim().is_empty() {
            continue;
        }
        has_require_cuda |= name == "NVIDIA_REQUIRE_CUDA";
        let requirement = parse(value).map_err(|error| RequireError::Variable {
            variable: name.to_string(),
            error: Box::new(error),
        })?;
        requirements.push((name.to_string(), requirement));
    }
    if let (false, Some(value)) = (has_require_cuda, legacy_cuda_version) {
        let version: CudaVersion =
            value
                .trim()
                .parse()
                .map_err(|_| RequireError::BadCudaVersion {
                    value: value.to_string(),
                })?;
        requirements.push((
            "CUDA_VERSION".to_string(),
            parse(&format!("cuda>={version}"))?,
        ));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements)
}

/// Whether the image turns the requirement check off: `NVIDIA_DISABLE_REQUIRE` set to
/// true, 1, yes or t (any case).
pub fn disable_require<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    vars.into_iter().any(|(name, value)| {
        name == "NVIDIA_DISABLE_REQUIRE"
            && matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "t"
            )
    })
}

/// The image's CUDA: `CUDA_VERSION` when set, else the version in a `cuda>=` clause.
pub fn image_cuda(vars: &[(String, String)]) -> Option<CudaVersion> {
    let value = |name: &str| {
        vars.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if let Some(version) = value("CUDA_VERSION").and_then(|text| text.parse().ok()) {
        return Some(version);
    }
    vars.iter()
        .filter(|(key, _)| key.starts_with("NVIDIA_REQUIRE_"))
        .find_map(|(_, value)| {
            let (_, after) = value.split_once("cuda>=")?;
            let version = after.split([' ', ',']).next()?;
            version.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NVIDIA_REQUIRE_CUDA` of NVIDIA's `nvidia/cuda:12.2.0` images: CUDA 12.2, or the
    /// 470 and 525 branches through forward compatibility.
    const CUDA_12_2_IMAGE: &str = "cuda>=12.2 \
        brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 \
        brand=nvidia,driver>=470,driver<471 brand=nvidiartx,driver>=470,driver<471 \
        brand=geforce,driver>=470,driver<471 brand=geforcertx,driver>=470,driver<471 \
        brand=quadro,driver>=470,driver<471 brand=quadrortx,driver>=470,driver<471 \
        brand=titan,driver>=470,driver<471 brand=titanrtx,driver>=470,driver<471 \
        brand=tesla,driver>=525,driver<526 brand=unknown,driver>=525,driver<526 \
        brand=nvidia,driver>=525,driver<526 brand=nvidiartx,driver>=525,driver<526 \
        brand=geforce,driver>=525,driver<526 brand=geforcertx,driver>=525,driver<526 \
        brand=quadro,driver>=525,driver<526 brand=quadrortx,driver>=525,driver<526 \
        brand=titan,driver>=525,driver<526 brand=titanrtx,driver>=525,driver<526";

    fn host(cuda: &str, driver: &str, brand: Option<&str>) -> HostFacts {
        HostFacts {
            cuda: Some(cuda.parse().unwrap()),
            driver: Some(driver.parse().unwrap()),
            arch: None,
            brand: brand.map(str::to_string),
        }
    }

    #[test]
    fn nvidia_12_2_image_on_various_hosts() {
        let requirement = parse(CUDA_12_2_IMAGE).unwrap();
        assert_eq!(requirement.alternatives.len(), 21);
        assert_eq!(
            requirement.evaluate(&host("12.4", "550.54.14", None)),
            Evaluation::Met
        );
        // Forward compatibility on a datacenter GPU with the 470 branch.
        assert_eq!(
            requirement.evaluate(&host("12.0", "470.82.01", Some("Tesla"))),
            Evaluation::Met
        );
        assert_eq!(
            requirement.evaluate(&host("11.4", "470.57.02", Some("geforce"))),
            Evaluation::Met
        );
        assert_eq!(
            requirement.evaluate(&host("11.4", "460.32.03", Some("tesla"))),
            Evaluation::Unmet {
                failed: "cuda>=12.2".into()
            }
        );
        // The brand is not needed to decide: no driver alternative can hold.
        assert_eq!(
            requirement.evaluate(&host("11.4", "460.32.03", None)),
            Evaluation::Unmet {
                failed: "cuda>=12.2".into()
            }
        );
        // A 470 driver whose brand is not known might pass through the brand rules.
        assert_eq!(
            requirement.evaluate(&host("11.4", "470.57.02", None)),
            Evaluation::Unknown {
                missing: vec!["brand"]
            }
        );
    }

    #[test]
    fn unknown_facts_are_reported_in_key_order() {
        let requirement = parse("cuda>=12.4,arch>=8.0 driver>=550,brand=tesla").unwrap();
        assert_eq!(
            requirement.evaluate(&HostFacts::default()),
            Evaluation::Unknown {
                missing: vec!["cuda", "driver", "arch", "brand"]
            }
        );
        // A known fact that fails decides an alternative even when others are unknown.
        let facts = HostFacts {
            cuda: Some("12.2".parse().unwrap()),
            driver: Some("535.104.05".parse().unwrap()),
            ..HostFacts::default()
        };
        assert_eq!(
            requirement.evaluate(&facts),
            Evaluation::Unmet {
                failed: "cuda>=12.4,arch>=8.0".into()
            }
        );
    }

    #[test]
    fn versions_compare_number_by_number() {
        let on = |cuda: &str| host(cuda, "550.54.14", None);
        let requirement = parse("cuda>=12.10").unwrap();
        assert!(matches!(
            requirement.evaluate(&on("12.9")),
            Evaluation::Unmet { .. }
        ));
        assert_eq!(requirement.evaluate(&on("12.10")), Evaluation::Met);
        // Missing numbers count as 0, as in libnvidia-container.
        assert_eq!(
            parse("driver=550.54.14.0").unwrap().evaluate(&on("12.4")),
            Evaluation::Met
        );
        assert_eq!(
            parse("cuda=12.4.0").unwrap().evaluate(&on("12.4")),
            Evaluation::Met
        );
        assert_eq!(
            parse("driver<550.100").unwrap().evaluate(&on("12.4")),
            Evaluation::Met
        );
        assert_eq!(
            parse("driver>550").unwrap().evaluate(&on("12.4")),
            Evaluation::Met
        );
        assert_eq!(
            parse("driver!=550.54.14").unwrap().evaluate(&on("12.4")),
            Evaluation::Unmet {
                failed: "driver!=550.54.14".into()
            }
        );
        let arch = HostFacts {
            arch: Some("9.0".into()),
            ..HostFacts::default()
        };
        assert_eq!(parse("arch>=8.0").unwrap().evaluate(&arch), Evaluation::Met);
        assert_eq!(
            parse("arch<9").unwrap().evaluate(&arch),
            Evaluation::Unmet {
                failed: "arch<9".into()
            }
        );
    }

    #[test]
    fn brands_compare_without_case_and_keys_too() {
        let facts = host("12.4", "550.54.14", Some("GeForce"));
        assert_eq!(
            parse("brand=geforce").unwrap().evaluate(&facts),
            Evaluation::Met
        );
        assert_eq!(
            parse("BRAND!=tesla").unwrap().evaluate(&facts),
            Evaluation::Met
        );
        assert_eq!(parse("Cuda>=12.0").unwrap().to_string(), "cuda>=12.0");
    }

    #[test]
    fn normal_form_round_trips() {
        let requirement = parse(CUDA_12_2_IMAGE).unwrap();
        let normal = requirement.to_string();
        assert!(normal.starts_with("cuda>=12.2 brand=tesla,driver>=470,driver<471 "));
        assert_eq!(parse(&normal).unwrap(), requirement);
        // Empty pieces between commas and extra spaces are ignored.
        assert_eq!(
            parse("  cuda>=12.2,,driver>=535   arch>=8.0 ")
                .unwrap()
                .to_string(),
            "cuda>=12.2,driver>=535 arch>=8.0"
        );
    }

    #[test]
    fn bad_expressions_name_what_is_wrong() {
        let cases = [
            ("compute>=7.0", "unknown key `compute`"),
            ("cuda>=12.2 gpu=a100", "unknown key `gpu`"),
            (
                "cuda",
                "`cuda` in the requirement `cuda` is not KEY OP VALUE",
            ),
            ("cuda>=", "is not KEY OP VALUE"),
            (">=12.2", "is not KEY OP VALUE"),
            ("cuda>>12", "is not KEY OP VALUE"),
            ("cuda>=12.x", "`12.x` in `cuda>=12.x`"),
            ("brand>tesla", "brands can only be compared with = or !="),
            ("   ", "is empty"),
        ];
        for (expr, expected) in cases {
            let message = parse(expr).unwrap_err().to_string();
            assert!(message.contains(expected), "{expr}: {message}");
        }
    }

    #[test]
    fn requirements_from_an_image_environment() {
        let env = [
            ("PATH", "/bin"),
            ("NVIDIA_REQUIRE_CUDA", "cuda>=12.4"),
            ("NVIDIA_REQUIRE_ARCH", "arch>=8.0"),
            ("NVIDIA_REQUIRE_JETPACK", "csv-mounts=all"),
            ("NVIDIA_REQUIRE_EMPTY", " "),
            ("CUDA_VERSION", "12.4.1"),
        ];
        let requirements = requirements_from_env(env).unwrap();
        let names: Vec<String> = requirements
            .iter()
            .map(|(name, requirement)| format!("{name}={requirement}"))
            .collect();
        assert_eq!(
            names,
            [
                "NVIDIA_REQUIRE_ARCH=arch>=8.0",
                "NVIDIA_REQUIRE_CUDA=cuda>=12.4"
            ]
        );
    }

    #[test]
    fn legacy_images_require_their_cuda_version() {
        let requirements = requirements_from_env([("CUDA_VERSION", "11.0.3")]).unwrap();
        assert_eq!(requirements.len(), 1);
        assert_eq!(requirements[0].0, "CUDA_VERSION");
        assert_eq!(requirements[0].1.to_string(), "cuda>=11.0");
        let message = requirements_from_env([("CUDA_VERSION", "eleven")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("CUDA_VERSION `eleven`"), "{message}");
        assert!(requirements_from_env([("HOME", "/root")])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_bad_variable_is_named() {
        let message = requirements_from_env([("NVIDIA_REQUIRE_DRIVER", "driver~550")])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("the image's NVIDIA_REQUIRE_DRIVER: "),
            "{message}"
        );
        assert!(message.contains("`driver~550`"), "{message}");
    }

    #[test]
    fn disable_require_values() {
        for value in ["true", "1", "YES", "True", "t"] {
            assert!(
                disable_require([("NVIDIA_DISABLE_REQUIRE", value)]),
                "{value}"
            );
        }
        for value in ["false", "0", "", "no"] {
            assert!(
                !disable_require([("NVIDIA_DISABLE_REQUIRE", value)]),
                "{value}"
            );
        }
        assert!(!disable_require([("NVIDIA_REQUIRE_CUDA", "true")]));
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn the_image_cuda_comes_from_cuda_version_first() {
        let both = owned(&[
            ("CUDA_VERSION", "12.4.1"),
            (
                "NVIDIA_REQUIRE_CUDA",
                "cuda>=12.2 brand=tesla,driver>=470,driver<471",
            ),
        ]);
        assert_eq!(image_cuda(&both), Some(CudaVersion::new(12, 4)));
        let requirement_only = owned(&[("NVIDIA_REQUIRE_CUDA", "cuda>=12.8")]);
        assert_eq!(image_cuda(&requirement_only), Some(CudaVersion::new(12, 8)));
        assert_eq!(image_cuda(&owned(&[("PATH", "/bin")])), None);
    }
}
