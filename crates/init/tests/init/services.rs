//! Services, the startup script and the stop, run by the real `gpubox-init` from a
//! start-up plan in a fake image root: restarts, ordering by readiness, exported
//! variables, reaping, the stop in reverse order with its deadline, prefixed output
//! and log files, users.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use gpubox_initplan::{InitPlan, Readiness, ReadinessCheck, Restart, ServicePlan};

use crate::common::{self, read_pid_file, run, state_and_parent, stderr, wait_until, Running};
use crate::image_root::{installed, service, ImageRoot};

fn plan(services: Vec<ServicePlan>, stop_timeout_ms: u64) -> InitPlan {
    let mut plan = InitPlan::new(stop_timeout_ms);
    plan.services = services;
    plan
}

/// `gpubox-init ARGS...` on `root`, which holds the plan.
fn init(root: &ImageRoot, args: &[&str]) -> Command {
    let mut command = common::init(args);
    command.env("GPUBOX_INIT_ROOT", root.path());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A main command that waits for `file` to exist and prints it.
fn wait_for_file(file: &str) -> String {
    format!(r#"while [ ! -s "{file}" ]; do sleep 0.01; done; cat "{file}""#)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn signal(running: &Running, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid is our unreaped child.
    assert_eq!(unsafe { libc::kill(running.pid(), signal) }, 0);
}

#[test]
fn a_failing_service_is_restarted_after_its_delay_until_max_restarts() {
    let root = ImageRoot::new();
    let starts = root.str("/starts");
    let mut failing = service("failing", &format!(r#"echo start >> "{starts}"; exit 3"#));
    failing.restart = Restart::OnFailure;
    failing.restart_delay_ms = 200;
    failing.max_restarts = Some(2);
    root.set_plan(&plan(vec![failing], 5000));

    let (output, took) = run(&mut init(&root, &[]));
    // No main command and every service ended for good: the last failure's status.
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(
        root.read("/starts").lines().count(),
        3,
        "{}",
        stderr(&output)
    );
    assert!(
        took >= Duration::from_millis(400),
        "two delays took only {took:?}"
    );
    let messages = stderr(&output);
    assert!(
        messages.contains("restarting it in 0.2s (restart 1 of 2)"),
        "{messages}"
    );
    assert!(
        messages.contains("restarting it in 0.2s (restart 2 of 2)"),
        "{messages}"
    );
    assert!(
        messages.contains("service `failing` exited with status 3; giving up after 2 restarts"),
        "{messages}"
    );
}

#[test]
fn a_service_after_another_starts_once_that_one_accepts_connections() {
    let (Some(python), Some(bash)) = (installed("python3"), installed("bash")) else {
        return;
    };
    let root = ImageRoot::new();
    let port = free_port();
    // The listener takes a while to open its port: without the readiness check `web`
    // would find nothing there.
    let listener = format!(
        "import socket, time\ntime.sleep(0.3)\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen()\ntime.sleep(30)\n"
    );
    let mut db = service("db", "");
    db.argv = vec![python, "-c".to_owned(), listener];
    db.readiness = Some(Readiness {
        check: ReadinessCheck::Tcp(port),
        timeout_ms: 15_000,
    });
    let result = root.str("/web-result");
    let mut web = service(
        "web",
        &format!(
            r#"if (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo connected; else echo refused; fi > "{result}.tmp"; mv "{result}.tmp" "{result}"; sleep 30"#
        ),
    );
    web.argv[0] = bash;
    web.after = vec!["db".to_owned()];
    // `web` is listed first: the order comes from `after`, not from the list.
    root.set_plan(&plan(vec![web, db], 5000));

    let (output, _) = run(&mut init(&root, &["sh", "-c", &wait_for_file(&result)]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "connected\n", "{}", stderr(&output));
}

#[test]
fn a_service_not_ready_in_time_stops_the_start_with_status_5() {
    let root = ImageRoot::new();
    let mut slow = service("slow", "sleep 30");
    slow.readiness = Some(Readiness {
        check: ReadinessCheck::Exec(vec!["false".to_owned()]),
        timeout_ms: 300,
    });
    let marker = root.str("/main-ran");
    root.set_plan(&plan(vec![slow], 2000));

    let (output, _) = run(&mut init(&root, &["touch", &marker]));
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    let messages = stderr(&output);
    assert!(
        messages.contains("service `slow`: not ready after 0.3s: `false` exited with status 1"),
        "{messages}"
    );
    assert!(!root.at("/main-ran").exists(), "the main command started");
}

#[test]
fn the_startup_scripts_exports_reach_services_and_the_main_command() {
    let root = ImageRoot::new();
    // A value with a newline and an `=`: the environment comes back NUL-separated.
    root.write(
        "/etc/gpubox/startup.sh",
        "export GREETING='hello\nworld=1'\nunset GPUBOX_TEST_DROPPED\necho script ran\n",
    );
    let seen = root.str("/service-saw");
    let mut plan = plan(
        vec![service(
            "reader",
            &format!(r#"printf '%s|%s' "$GREETING" "${{GPUBOX_TEST_DROPPED-unset}}" > "{seen}""#),
        )],
        5000,
    );
    plan.startup_script = Some("/etc/gpubox/startup.sh".to_owned());
    root.set_plan(&plan);

    let main = format!(
        r#"{} >/dev/null; printf '%s|%s' "$GREETING" "${{GPUBOX_TEST_DROPPED-unset}}""#,
        wait_for_file(&seen)
    );
    let (output, _) =
        run(init(&root, &["sh", "-c", &main]).env("GPUBOX_TEST_DROPPED", "still here"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(root.read("/service-saw"), "hello\nworld=1|unset");
    assert_eq!(stdout(&output), "script ran\nhello\nworld=1|unset");
}

#[test]
fn a_failing_startup_script_stops_the_start_naming_the_step() {
    let root = ImageRoot::new();
    root.write("/etc/gpubox/startup.sh", "echo about to fail >&2\nfalse\n");
    let marker = root.str("/main-ran");
    let mut plan = plan(Vec::new(), 5000);
    plan.startup_script = Some("/etc/gpubox/startup.sh".to_owned());
    root.set_plan(&plan);

    let (output, _) = run(&mut init(&root, &["touch", &marker]));
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let messages = stderr(&output);
    assert!(messages.contains("about to fail"), "{messages}");
    assert!(
        messages.contains("start-up step `startup script` failed: ")
            && messages.contains("startup.sh exited with status 1"),
        "{messages}"
    );
    assert!(!root.at("/main-ran").exists(), "the main command started");
}

#[test]
fn an_unreadable_plan_exits_2_naming_the_file() {
    let root = ImageRoot::new();
    root.write("/etc/gpubox/init.json", "{\"version\": 1}");
    let (output, _) = run(&mut init(&root, &["true"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let messages = stderr(&output);
    assert!(
        messages.contains(&root.str("/etc/gpubox/init.json")),
        "{messages}"
    );
    assert!(messages.contains("stopTimeoutMs"), "{messages}");
}

#[test]
fn an_orphan_left_by_a_service_is_adopted_and_reaped() {
    let root = ImageRoot::new();
    let orphan_file = root.at("/orphan.pid");
    let orphan = service(
        "orphaner",
        &format!(
            r#"(sleep 0.5 & echo $! > "{}"); sleep 30"#,
            orphan_file.display()
        ),
    );
    root.set_plan(&plan(vec![orphan], 5000));

    let running = Running::start(&mut init(&root, &[]));
    let orphan = read_pid_file(&orphan_file);
    let init_pid = u32::try_from(running.pid()).unwrap();
    if let Some((_, parent)) = state_and_parent(orphan) {
        assert_eq!(parent, init_pid, "the orphan was not adopted by the init");
    }
    wait_until("the orphan is reaped, not left a zombie", || {
        state_and_parent(orphan).is_none()
    });
    signal(&running, libc::SIGTERM);
    let output = running.finish();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A service that notes its start and, on SIGTERM, appends its name to `stopped`.
fn stoppable(name: &str, root: &ImageRoot) -> ServicePlan {
    let (started, stopped) = (root.str(&format!("/{name}.started")), root.str("/stopped"));
    service(
        name,
        &format!(
            r#"trap 'echo {name} >> "{stopped}"; exit 0' TERM; touch "{started}"; while :; do sleep 0.02; done"#
        ),
    )
}

#[test]
fn sigterm_stops_the_main_command_then_the_services_in_reverse_order() {
    let root = ImageRoot::new();
    let mut second = stoppable("second", &root);
    second.after = vec!["first".to_owned()];
    root.set_plan(&plan(vec![second, stoppable("first", &root)], 10_000));
    let (ready, stopped) = (root.str("/main.started"), root.str("/stopped"));
    let main = format!(
        r#"trap 'echo main >> "{stopped}"; exit 7' TERM; touch "{ready}"; while :; do sleep 0.02; done"#
    );

    let running = Running::start(&mut init(&root, &["sh", "-c", &main]));
    wait_until("the main command runs", || {
        root.at("/main.started").exists()
    });
    signal(&running, libc::SIGTERM);
    let output = running.finish();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(root.read("/stopped"), "main\nsecond\nfirst\n");
    assert!(!stderr(&output).contains("SIGKILL"), "{}", stderr(&output));
}

#[test]
fn without_a_main_command_sigterm_stops_the_services_and_exits_0() {
    let root = ImageRoot::new();
    root.set_plan(&plan(vec![stoppable("only", &root)], 10_000));
    let running = Running::start(&mut init(&root, &[]));
    wait_until("the service runs", || root.at("/only.started").exists());
    signal(&running, libc::SIGINT);
    let (output, took) = {
        let start = std::time::Instant::now();
        let output = running.finish();
        (output, start.elapsed())
    };
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(root.read("/stopped"), "only\n");
    assert!(took < Duration::from_secs(8), "the stop took {took:?}");
}

#[test]
fn a_service_ignoring_sigterm_is_killed_at_the_stop_deadline() {
    let root = ImageRoot::new();
    let pid_file = root.at("/stubborn.pid");
    let stubborn = service(
        "stubborn",
        &format!(
            r#"trap '' TERM; echo $$ > "{}"; while :; do sleep 0.02; done"#,
            pid_file.display()
        ),
    );
    root.set_plan(&plan(vec![stubborn], 500));

    let running = Running::start(&mut init(&root, &[]));
    let pid = read_pid_file(&pid_file);
    let start = std::time::Instant::now();
    signal(&running, libc::SIGTERM);
    let output = running.finish();
    let took = start.elapsed();
    assert_eq!(output.status.code(), Some(137), "{}", stderr(&output));
    assert!(
        took >= Duration::from_millis(500),
        "killed after only {took:?}"
    );
    assert!(took < Duration::from_secs(8), "the stop took {took:?}");
    let messages = stderr(&output);
    assert!(
        messages.contains(&format!(
            "stop timeout of 0.5s is over; sending SIGKILL to service `stubborn` (pid {pid})"
        )),
        "{messages}"
    );
    assert_eq!(state_and_parent(pid), None, "pid {pid} survived");
}

#[test]
fn service_output_is_prefixed_and_appended_to_its_log_file() {
    let root = ImageRoot::new();
    root.write("/var/log/talker.log", "from before\n");
    let mut talker = service(
        "talker",
        "echo out line; echo err line >&2; printf 'no newline'",
    );
    talker.log_file = Some("/var/log/talker.log".to_owned());
    root.set_plan(&plan(vec![talker], 5000));

    let (output, _) = run(&mut init(&root, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[talker] out line\n[talker] no newline\n");
    assert!(
        stderr(&output).contains("[talker] err line\n"),
        "{}",
        stderr(&output)
    );
    let log = root.read("/var/log/talker.log");
    assert!(log.starts_with("from before\n"), "{log}");
    for line in ["out line\n", "err line\n", "no newline\n"] {
        assert!(log.contains(line), "{log}");
    }
}

#[test]
fn a_service_and_the_main_command_run_as_their_users() {
    let root = ImageRoot::new();
    let shared = root.at("/shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = r#"echo "$(id -u) $(id -g) $(id -G) $HOME $USER $LOGNAME $(pwd)""#;
    let seen = root.str("/shared/service");
    let mut as_alice = service("as-alice", &format!(r#"{report} > "{seen}""#));
    as_alice.user = Some("alice".to_owned());
    as_alice.working_dir = Some(shared.to_str().unwrap().to_owned());
    let mut plan = plan(vec![as_alice], 5000);
    plan.main_user = Some("alice:wheel".to_owned());
    root.set_plan(&plan);

    let main = format!("{} >/dev/null; {report}", wait_for_file(&seen));
    let (output, _) = run(&mut init(&root, &["sh", "-c", &main]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let shared = shared.display();
    assert_eq!(
        root.read("/shared/service"),
        format!("1000 1000 1000 10 /home/alice alice alice {shared}\n")
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        stdout(&output),
        format!("1000 10 10 /home/alice alice alice {}\n", cwd.display())
    );
}

#[test]
fn a_plan_without_services_still_needs_a_command() {
    let root = ImageRoot::new();
    root.set_plan(&plan(Vec::new(), 5000));
    let (output, _) = run(&mut init(&root, &[]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no command to run; set `cmd`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sigterm_during_the_startup_script_stops_the_start() {
    let root = ImageRoot::new();
    let started = root.str("/script.started");
    root.write(
        "/etc/gpubox/startup.sh",
        &format!("touch \"{started}\"\nwhile :; do sleep 0.02; done\n"),
    );
    let marker = root.str("/main-ran");
    let mut plan = plan(vec![service("never", &format!("touch \"{marker}\""))], 5000);
    plan.startup_script = Some("/etc/gpubox/startup.sh".to_owned());
    root.set_plan(&plan);

    let running = Running::start(&mut init(&root, &["touch", &marker]));
    wait_until("the startup script runs", || {
        root.at("/script.started").exists()
    });
    signal(&running, libc::SIGTERM);
    let output = running.finish();
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("start-up step `startup script` failed: SIGTERM arrived"),
        "{}",
        stderr(&output)
    );
    assert!(
        !root.at("/main-ran").exists(),
        "a service or the main command started"
    );
}
