use std::time::{Duration, Instant};

use tempfile::tempdir;

use crate::common::{init, stderr, wait_until, Running};

/// Starts a main command that exits with `code` on `signal_name` (once its trap is
/// set), sends `signal` to the init, and returns its exit code and how long it took to
/// exit after the signal.
fn exit_after_signal(signal_name: &str, signal: libc::c_int, code: i32) -> (Option<i32>, Duration) {
    let dir = tempdir().unwrap();
    let ready = dir.path().join("ready");
    let trap =
        format!(r#"trap "exit {code}" {signal_name}; touch "$1"; while :; do sleep 0.05; done"#);
    let running = Running::start(&mut init(&[
        "sh",
        "-c",
        &trap,
        "sh",
        ready.to_str().unwrap(),
    ]));
    wait_until("the main command has set its trap", || ready.exists());
    let sent = Instant::now();
    // SAFETY: kill has no memory effects; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(running.pid(), signal) }, 0);
    let output = running.finish();
    assert!(output.status.code().is_some(), "{}", stderr(&output));
    (output.status.code(), sent.elapsed())
}

#[test]
fn sigterm_to_the_init_reaches_the_main_command_promptly() {
    let (code, took) = exit_after_signal("TERM", libc::SIGTERM, 3);
    assert_eq!(code, Some(3));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn every_forwarded_signal_reaches_the_main_command() {
    let signals = [
        ("INT", libc::SIGINT),
        ("HUP", libc::SIGHUP),
        ("QUIT", libc::SIGQUIT),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("WINCH", libc::SIGWINCH),
    ];
    for (index, (name, signal)) in (40..).zip(signals) {
        let (code, _) = exit_after_signal(name, signal, index);
        assert_eq!(code, Some(index), "SIG{name}");
    }
}
