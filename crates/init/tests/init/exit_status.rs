use tempfile::tempdir;

use crate::common::{init, run, stderr};

#[test]
fn the_main_command_exit_code_is_passed_through() {
    let (output, _) = run(&mut init(&["sh", "-c", "exit 7"]));
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let (output, _) = run(&mut init(&["true"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_main_command_killed_by_a_signal_gives_128_plus_the_signal() {
    let (output, _) = run(&mut init(&["sh", "-c", "kill -KILL $$"]));
    assert_eq!(output.status.code(), Some(137), "{}", stderr(&output));
}

#[test]
fn without_a_command_it_exits_2_and_says_how_to_give_one() {
    let (output, _) = run(&mut init(&[]));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "gpubox-init: no command to run; set `cmd` in gpubox.toml or pass one to `docker run IMAGE CMD...`\n"
    );
}

#[test]
fn a_missing_program_exits_127_and_is_named() {
    let (output, _) = run(&mut init(&["gpubox-test-no-such-program", "arg"]));
    assert_eq!(output.status.code(), Some(127));
    let message = stderr(&output);
    assert!(
        message.starts_with("gpubox-init: cannot run `gpubox-test-no-such-program`: "),
        "{message}"
    );
    assert!(message.contains("os error 2"), "{message}");
}

#[test]
fn a_program_that_cannot_be_executed_exits_126() {
    let dir = tempdir().unwrap();
    let program = dir.path().join("not-executable");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    let (output, _) = run(&mut init(&[program.to_str().unwrap()]));
    assert_eq!(output.status.code(), Some(126));
    let message = stderr(&output);
    assert!(message.contains("not-executable"), "{message}");
    assert!(message.contains("Permission denied"), "{message}");
}

#[test]
fn an_invalid_grace_period_is_refused_before_anything_runs() {
    let dir = tempdir().unwrap();
    let marker = dir.path().join("ran");
    let (output, _) =
        run(init(&["touch", marker.to_str().unwrap()]).env("GPUBOX_INIT_GRACE_SECONDS", "soon"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("GPUBOX_INIT_GRACE_SECONDS=\"soon\""),
        "{}",
        stderr(&output)
    );
    assert!(!marker.exists());
}

/// The init blocks signals and Rust ignores SIGPIPE; none of that may reach the command.
#[test]
fn the_main_command_starts_with_a_clean_signal_state_in_its_own_process_group() {
    let (output, _) = run(&mut init(&["cat", "/proc/self/status", "/proc/self/stat"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for field in ["SigBlk:", "SigIgn:"] {
        let line = text.lines().find(|l| l.starts_with(field)).unwrap();
        assert!(
            line[field.len()..].trim().chars().all(|c| c == '0'),
            "{line}"
        );
    }
    let stat = text.lines().last().unwrap();
    let pid = stat.split_whitespace().next().unwrap();
    let process_group = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2);
    assert_eq!(process_group, Some(pid), "{stat}");
}
