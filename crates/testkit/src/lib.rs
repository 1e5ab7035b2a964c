//! What gpubox's tests do when a real part (podman, Nix, a registry, ...) is
//! missing, in one place: under `CI=true` the test fails, since a skip there
//! would hide a lost test; elsewhere it says why it is skipped and records the
//! part in `$GPUBOX_SKIP_LOG` (which `scripts/test` sets), so a local run
//! reports how many tests ran without their real parts instead of a bare
//! "passed".
//!
//! ```
//! if !gpubox_testkit::found("true", std::process::Command::new("true").status().is_ok()) {
//!     return; // skipped, and said so
//! }
//! ```

use std::io::Write;

/// Whether `part` is `present`; when it is not, fails under CI, and
/// otherwise reports the skip. Returns `present`.
pub fn found(part: &str, present: bool) -> bool {
    if !present {
        missing(part);
    }
    present
}

/// Reports that the calling test cannot run because `part` is missing (see
/// the crate doc); the caller returns afterwards.
pub fn missing(part: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{part} is not available, and CI=true: run scripts/install-test-deps and scripts/test"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("SKIPPED {test}: {part} is not available here");
    if let Some(log) = std::env::var_os("GPUBOX_SKIP_LOG") {
        // One short append per line; concurrent tests do not interleave lines.
        let line = format!("{test}\t{part}\n");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = appended {
            eprintln!(
                "cannot record the skip in {}: {error}",
                log.to_string_lossy()
            );
        }
    }
}
