//! Scenarios run both with the init as an ordinary process and as PID 1; each asserts
//! what must hold in both modes and returns what the caller checks for its own mode.

use std::process::Output;
use std::time::Duration;

use tempfile::{tempdir, TempDir};

use crate::common::{
    run, script, stderr, Mode, GRANDCHILD, LEAVES_DESCENDANTS, LEAVES_STUBBORN, ORPHAN_CHECK,
};

pub fn orphans_are_adopted_and_reaped(mode: Mode) {
    let dir = tempdir().unwrap();
    let main = script(dir.path(), "main.sh", ORPHAN_CHECK);
    let (output, _) = run(&mut mode.init(&["sh", &main, dir.path().to_str().unwrap()]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// All descendants stop on SIGTERM, so the init exits well before its grace period.
pub fn leftover_descendants_get_sigterm(mode: Mode) -> TempDir {
    let dir = tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    script(dir.path(), "grandchild.sh", GRANDCHILD);
    let main = script(dir.path(), "main.sh", LEAVES_DESCENDANTS);
    let (output, took) = run(mode
        .init(&["sh", &main, path])
        .env("GPUBOX_INIT_GRACE_SECONDS", "10"));
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: {}",
        stderr(&output)
    );
    assert!(
        dir.path().join("grandchild.terminated").exists(),
        "the grandchild never got SIGTERM"
    );
    assert!(!stderr(&output).contains("SIGKILL"), "{}", stderr(&output));
    dir
}

/// A descendant ignoring SIGTERM is killed once the grace period is over, and the init
/// still exits with the main command's status.
pub fn sigterm_ignorers_are_killed_after_the_grace_period(mode: Mode) -> (TempDir, Output) {
    let dir = tempdir().unwrap();
    let main = script(dir.path(), "main.sh", LEAVES_STUBBORN);
    let (output, took) = run(mode
        .init(&["sh", &main, dir.path().to_str().unwrap()])
        .env("GPUBOX_INIT_GRACE_SECONDS", "0.5"));
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(took >= Duration::from_millis(500), "took only {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        stderr(&output).contains("grace period of 0.5s is over; sending SIGKILL"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("still running"),
        "{}",
        stderr(&output)
    );
    (dir, output)
}
