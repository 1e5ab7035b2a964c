//! GNU tar, the reference reader and writer the tests hold gpubox's tars against.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::process::Command;

/// Runs GNU tar with `args` in UTC (so listed times do not depend on the machine) and
/// returns its standard output; fails the test when tar fails or warns.
pub fn gnu_tar<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = Command::new("tar")
        .env("TZ", "UTC")
        .args(args)
        .output()
        .expect("GNU tar runs");
    assert!(
        out.status.success(),
        "tar {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "tar {args:?} warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
