//! Helpers shared by the integration tests: running the real `gpubox-init` binary on
//! real shell commands and looking at the processes it leaves in /proc.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::{tempdir, TempDir};

pub const INIT: &str = env!("CARGO_BIN_EXE_gpubox-init");

/// A root without any driver files (it need not exist).
const NO_GPU_ROOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/no-gpu-root");

/// Variables that change how the init runs; removed so the test machine's own never
/// leak in.
pub const INIT_VARIABLES: [&str; 3] = [
    "GPUBOX_INIT_GRACE_SECONDS",
    "GPUBOX_INIT_DEBUG",
    "NVIDIA_VISIBLE_DEVICES",
];

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
        // The GPU step looks at an empty root, so these tests never link a driver
        // the test machine may have.
        command
            .args(args)
            .env("GPUBOX_INIT_ROOT", NO_GPU_ROOT)
            .stdin(Stdio::null());
        for variable in INIT_VARIABLES {
            command.env_remove(variable);
        }
        command
    }
}

/// `gpubox-init ARGS...` as an ordinary process.
pub fn init(args: &[&str]) -> Command {
    Mode::Process.init(args)
}

/// A started `gpubox-init` whose output goes to files: a descendant it failed to stop
/// would hold a pipe open and hang the test instead of failing it.
pub struct Running {
    child: Child,
    output_dir: TempDir,
}

impl Running {
    pub fn start(command: &mut Command) -> Self {
        let output_dir = tempdir().expect("create output directory");
        let file = |name: &str| File::create(output_dir.path().join(name)).expect("output file");
        let child = command
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn gpubox-init");
        Self { child, output_dir }
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Waits at most [`TIMEOUT`] for the init to exit and returns what it wrote.
    pub fn finish(mut self) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for gpubox-init") {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                self.child.kill().expect("kill hung gpubox-init");
                self.child.wait().expect("reap hung gpubox-init");
                panic!(
                    "gpubox-init did not exit within {TIMEOUT:?}; stderr: {}",
                    self.read("stderr")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: self.read("stdout").into_bytes(),
            stderr: self.read("stderr").into_bytes(),
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.output_dir.path().join(name)).expect("read output file")
    }
}

/// Runs to completion; returns the output and how long the run took.
pub fn run(command: &mut Command) -> (Output, Duration) {
    let start = Instant::now();
    let output = Running::start(command).finish();
    (output, start.elapsed())
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
sleep 30 &
echo $! > "$1/great-grandchild.pid"
# Short sleeps: the shell runs its trap only once the current command is done.
tries=0
while [ "$tries" -lt 600 ]; do sleep 0.05; tries=$((tries + 1)); done
"#;

/// Main command that starts a grandchild ignoring SIGTERM and exits 5 once it runs.
pub const LEAVES_STUBBORN: &str = r#"
sh -c 'trap "" TERM; echo $$ > "$1/stubborn.pid"; sleep 30' sh "$1" &
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
