use crate::common::{read_pid_file, state_and_parent, stderr, Mode};
use crate::scenarios;

#[test]
fn orphans_are_adopted_and_reaped_while_the_main_command_runs() {
    scenarios::orphans_are_adopted_and_reaped(Mode::Process);
}

#[test]
fn leftover_descendants_are_terminated_and_gone_when_the_init_exits() {
    let dir = scenarios::leftover_descendants_get_sigterm(Mode::Process);
    // The great-grandchild was orphaned only when the grandchild exited: the init must
    // have found it again in /proc.
    for name in ["grandchild.pid", "great-grandchild.pid"] {
        let pid = read_pid_file(&dir.path().join(name));
        assert_eq!(state_and_parent(pid), None, "{name}: pid {pid} survived");
    }
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let (dir, output) =
        scenarios::sigterm_ignorers_are_killed_after_the_grace_period(Mode::Process);
    let pid = read_pid_file(&dir.path().join("stubborn.pid"));
    // The notice lists the init's children: the stubborn process was adopted.
    let notice = stderr(&output);
    let notice = notice.lines().find(|l| l.contains("SIGKILL")).unwrap();
    assert!(notice.contains(&pid.to_string()), "{notice}");
    assert_eq!(state_and_parent(pid), None, "pid {pid} survived");
}
