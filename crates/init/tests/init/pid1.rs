//! The same behaviour with the init as PID 1 of its own PID namespace, where it stops
//! leftovers with `kill(-1)`. Processes there are gone once the namespace's PID 1 exits
//! whatever the init does, so these tests look for what only the init can cause.

use crate::common::{run, stderr, Mode};
use crate::scenarios;

#[test]
fn as_pid1_exit_codes_are_passed_through() {
    // Exit 99 would mean the main command's parent is not PID 1.
    let (output, _) = run(&mut Mode::Pid1.init(&["sh", "-c", "[ $PPID = 1 ] || exit 99; exit 7"]));
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let (output, _) = run(&mut Mode::Pid1.init(&["sh", "-c", "kill -KILL $$"]));
    assert_eq!(output.status.code(), Some(137), "{}", stderr(&output));
}

#[test]
fn as_pid1_orphans_are_adopted_and_reaped() {
    scenarios::orphans_are_adopted_and_reaped(Mode::Pid1);
}

#[test]
fn as_pid1_leftover_descendants_get_sigterm() {
    scenarios::leftover_descendants_get_sigterm(Mode::Pid1);
}

#[test]
fn as_pid1_a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    scenarios::sigterm_ignorers_are_killed_after_the_grace_period(Mode::Pid1);
}
