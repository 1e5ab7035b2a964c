//! Helpers shared by the integration tests: running the real `gpubox-init` binary on
//! real shell commands and looking at the processes it leaves in /proc.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const INIT: &str = env!("CARGO_BIN_EXE_gpubox-init");

/// Long enough for a loaded machine, short enough that a hang fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How the init runs in a test.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// As an ordinary process: a subreaper that finds its children in /proc.
    Process,
    /// As PID 1 of a new PID namespace (with its own /proc), where `kill(-1)` is safe.
    Pid1,
}

impl Mode {
    /// `gpubox-init ARGS...` with stdin detached, so it never takes over a terminal.
    pub fn init(self, args: &[&str]) -> Command {
        let mut command = match self {
            Self::Process => Command::new(INIT),
            Self::Pid1 => {
                let mut unshare = Command::new("unshare");
                unshare.args(["--pid", "--fork", "--mount-proc", INIT]);
                unshare
            }
        };
        command
            .args(args)
            .env_remove("GPUBOX_INIT_GRACE_SECONDS")
            .env_remove("GPUBOX_INIT_DEBUG")
            .stdin(Stdio::null());
        command
    }
}

/// `gpubox-init ARGS...` as an ordinary process.
pub fn init(args: &[&str]) -> Command {
    Mode::Process.init(args)
}

/// Spawns with captured output, waits at most [`TIMEOUT`], and returns the output and
/// how long the run took.
pub fn run(command: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gpubox-init");
    let output = wait_with_timeout(child);
    (output, start.elapsed())
}

pub fn wait_with_timeout(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait for gpubox-init").is_none() {
        if start.elapsed() > TIMEOUT {
            child.kill().expect("kill hung gpubox-init");
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "gpubox-init did not exit within {TIMEOUT:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes a shell script into `dir` and returns its path, to run as `sh SCRIPT ARGS`.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write test script");
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

/// Main command that leaves an orphan behind and checks, from inside, that the init
/// adopts it (its parent becomes the main command's parent) and reaps it once it ends
/// (its /proc entry disappears instead of staying a zombie). Exits 0 when both hold.
pub const ORPHAN_CHECK: &str = r#"
dir=$1
(sleep 0.2 & echo $! > "$dir/orphan.pid")
orphan=$(cat "$dir/orphan.pid")
read -r stat < "/proc/$orphan/stat"
set -- ${stat##*") "}
[ "$2" = "$PPID" ] || { echo "orphan $orphan has parent $2, not the init $PPID" >&2; exit 10; }
tries=0
while [ -e "/proc/$orphan" ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 500 ] || { echo "orphan $orphan was never reaped" >&2; exit 11; }
    sleep 0.02
done
"#;

/// Main command that starts a grandchild (which itself starts a great-grandchild) and
/// exits 6 once all of them are running.
pub const LEAVES_DESCENDANTS: &str = r#"
sh "$1/grandchild.sh" "$1" &
while [ ! -s "$1/great-grandchild.pid" ]; do sleep 0.01; done
exit 6
"#;

/// The grandchild: notes that it got SIGTERM and exits, leaving its own child (the
/// great-grandchild) as an orphan for the init to stop.
pub const GRANDCHILD: &str = r#"
trap 'touch "$1/grandchild.terminated"; exit 0' TERM
echo $$ > "$1/grandchild.pid"
sleep 300 &
echo $! > "$1/great-grandchild.pid"
while :; do sleep 0.05; done
"#;

/// Main command that starts a grandchild ignoring SIGTERM and exits 5 once it runs.
pub const LEAVES_STUBBORN: &str = r#"
sh -c 'trap "" TERM; echo $$ > "$1/stubborn.pid"; while :; do sleep 0.05; done' sh "$1" &
while [ ! -s "$1/stubborn.pid" ]; do sleep 0.01; done
exit 5
"#;

/// Waits until `condition` holds, panicking with `what` after [`TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid written by a test script into `path`, once it is there.
pub fn read_pid_file(path: &Path) -> u32 {
    let mut pid = None;
    wait_until(&format!("{} holds a pid", path.display()), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_default()
}

/// State and parent pid of a process, from /proc; `None` once it is gone entirely
/// (a zombie is still there, with state `Z`).
pub fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}
