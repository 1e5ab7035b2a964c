//! Settings read from the environment the container starts with.

use std::fmt;
use std::time::Duration;

const GRACE_VARIABLE: &str = "GPUBOX_INIT_GRACE_SECONDS";
const DEBUG_VARIABLE: &str = "GPUBOX_INIT_DEBUG";
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

pub struct Settings {
    /// How long processes get between SIGTERM and SIGKILL at the stop, when set in the
    /// environment: it overrides the start-up plan's stop timeout.
    pub grace: Option<Duration>,
    /// Whether to say on stderr what the init is doing.
    pub debug: bool,
}

/// A setting whose value the init cannot use.
#[derive(Debug)]
pub struct InvalidSetting {
    variable: &'static str,
    value: String,
    expected: &'static str,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, InvalidSetting> {
        let grace = match std::env::var_os(GRACE_VARIABLE) {
            None => None,
            Some(value) => Some(parse_grace(&value.to_string_lossy())?),
        };
        let debug = std::env::var_os(DEBUG_VARIABLE).is_some_and(|value| value == "1");
        Ok(Self { grace, debug })
    }

    /// The time the stop gets in all: the environment's grace period, else the plan's
    /// stop timeout, else 5 seconds.
    pub fn stop_timeout(&self, plan_timeout_ms: Option<u64>) -> Duration {
        self.grace
            .or(plan_timeout_ms.map(Duration::from_millis))
            .unwrap_or(DEFAULT_GRACE)
    }
}

fn parse_grace(value: &str) -> Result<Duration, InvalidSetting> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| InvalidSetting {
            variable: GRACE_VARIABLE,
            value: value.to_owned(),
            expected: "a number of seconds, such as 5 or 0.5",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_accepts_whole_and_fractional_seconds() {
        assert_eq!(parse_grace("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_grace(" 0.25 ").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_grace("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn grace_rejects_what_is_not_a_duration() {
        for value in ["", "five", "-1", "NaN", "inf", "1e30"] {
            let error = parse_grace(value).unwrap_err();
            assert!(
                error.to_string().contains(GRACE_VARIABLE),
                "{value:?}: {error}"
            );
        }
    }
}
