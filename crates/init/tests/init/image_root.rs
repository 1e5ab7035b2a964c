//! A fake image root for the machine steps (SSH, secrets, tailscale): a temporary
//! folder with `etc/passwd`, `etc/group`, `etc/shadow` and the start-up plan, which the
//! real `gpubox-init` is pointed at with `GPUBOX_INIT_ROOT`, and real keys made with
//! the real `ssh-keygen`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gpubox_initplan::{InitPlan, Restart, ServicePlan, PLAN_PATH};
use tempfile::TempDir;

use crate::common::{self, run, script};

pub const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n";
pub const SHADOW: &str = "root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n";

/// Variables the steps read; removed so the test machine's own never leak in.
const STEP_VARIABLES: [&str; 5] = [
    "SSH_PUBLIC_KEYS",
    "PUBLIC_KEY",
    "ROOT_PASSWORD",
    "AGE_IDENTITY",
    "TAILSCALE_AUTHKEY",
];

pub struct ImageRoot {
    dir: TempDir,
}

impl ImageRoot {
    pub fn new() -> Self {
        // Not under /tmp: sshd's StrictModes refuses authorized keys below a folder
        // others can write to, as /tmp is.
        let root = Self {
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create image root"),
        };
        root.write("/etc/passwd", PASSWD);
        root.write("/etc/group", GROUP);
        root.write("/etc/shadow", SHADOW);
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `absolute` (a path in the image) in this root.
    pub fn at(&self, absolute: &str) -> PathBuf {
        self.dir.path().join(absolute.trim_start_matches('/'))
    }

    /// The same as a string, for plans and scripts.
    pub fn str(&self, absolute: &str) -> String {
        self.at(absolute)
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_owned()
    }

    pub fn write(&self, absolute: &str, contents: &str) {
        let path = self.at(absolute);
        std::fs::create_dir_all(path.parent().expect("a path in the image has a parent"))
            .expect("create folder in image root");
        std::fs::write(&path, contents).expect("write file in image root");
    }

    pub fn read(&self, absolute: &str) -> String {
        std::fs::read_to_string(self.at(absolute))
            .unwrap_or_else(|error| panic!("read {absolute} in the image root: {error}"))
    }

    /// Owner, group and permission bits of `absolute`.
    pub fn owner_and_mode(&self, absolute: &str) -> (u32, u32, u32) {
        let metadata = std::fs::metadata(self.at(absolute))
            .unwrap_or_else(|error| panic!("{absolute}: {error}"));
        (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777)
    }

    /// Permission bits of `absolute`.
    pub fn mode(&self, absolute: &str) -> u32 {
        self.owner_and_mode(absolute).2
    }

    /// Encrypts `plaintext` with the real `age` to `recipient_args` (`-R FILE` or
    /// `-r KEY`) into the image's `/secrets/NAME.age`.
    pub fn encrypt(&self, name: &str, plaintext: &str, recipient_args: &[&str]) {
        std::fs::create_dir_all(self.at("/secrets")).unwrap();
        let mut child = Command::new("age")
            .args(recipient_args)
            .arg("-o")
            .arg(self.at(&format!("/secrets/{name}.age")))
            .stdin(Stdio::piped())
            .spawn()
            .expect("run age");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(plaintext.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "age could not encrypt {name}"
        );
    }

    pub fn set_plan(&self, plan: &InitPlan) {
        let path = self.at(PLAN_PATH);
        std::fs::create_dir_all(path.parent().expect("plan folder")).expect("create plan folder");
        std::fs::write(path, plan.to_json()).expect("write plan");
    }

    /// A shell script (outside the image's `/etc`), run as `sh PATH`.
    pub fn script(&self, name: &str, body: &str) -> String {
        script(self.dir.path(), name, body)
    }

    /// An executable stand-in program written in shell, for plans that name programs.
    pub fn program(&self, name: &str, body: &str) -> String {
        let path = self.script(name, &format!("#!/bin/sh\n{body}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make stand-in executable");
        path
    }

    /// `gpubox-init sh MAIN` on this root, with `vars` set and no step variable of the
    /// test machine's own.
    pub fn init(&self, main: &str, vars: &[(&str, &str)]) -> Command {
        let mut command = common::init(&["sh", main]);
        command.arg(self.path());
        self.prepare(&mut command, vars);
        command
    }

    /// The same in a private mount namespace, so a tmpfs the init mounts is gone with
    /// it, whatever happens to the test; `args` follow the root for the main command.
    pub fn init_in_mount_namespace(
        &self,
        main: &str,
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> Command {
        self.init_wrapped(&[], main, vars, args)
    }

    /// The same without CAP_SYS_ADMIN, as in a default Docker or podman container, so
    /// the init is not permitted to mount anything. `setup` runs first in the namespace
    /// with the rights still there and the root as `$0`, as a runtime sets up the
    /// container's mounts (a tmpfs at `/dev/shm`) before it drops them.
    pub fn init_without_mount_rights(
        &self,
        setup: &str,
        main: &str,
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> Command {
        let drop_rights =
            format!("{setup}\nexec setpriv --bounding-set -sys_admin --inh-caps -sys_admin \"$@\"");
        let root = self.path().to_str().expect("temporary paths are UTF-8");
        self.init_wrapped(&["sh", "-c", &drop_rights, root], main, vars, args)
    }

    /// `gpubox-init sh MAIN ROOT ARGS...` run by `wrapper` in a private mount namespace.
    fn init_wrapped(
        &self,
        wrapper: &[&str],
        main: &str,
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private"])
            .args(wrapper)
            .args([common::INIT, "sh", main])
            .arg(self.path())
            .args(args)
            .stdin(Stdio::null());
        for variable in common::INIT_VARIABLES {
            command.env_remove(variable);
        }
        self.prepare(&mut command, vars);
        command
    }

    fn prepare(&self, command: &mut Command, vars: &[(&str, &str)]) {
        command.env("GPUBOX_INIT_ROOT", self.path());
        for variable in STEP_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(vars.iter().copied());
    }

    /// Runs `command` to completion.
    pub fn run(&self, command: &mut Command) -> Output {
        run(command).0
    }
}

/// A service running `script` with `sh -c`, never restarted.
pub fn service(name: &str, script: &str) -> ServicePlan {
    ServicePlan {
        name: name.to_owned(),
        argv: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
        env: BTreeMap::new(),
        working_dir: None,
        user: None,
        restart: Restart::Never,
        restart_delay_ms: 0,
        max_restarts: None,
        after: Vec::new(),
        readiness: None,
        log_file: None,
    }
}

/// A main command that waits (at most 10 s) until a stand-in has written `name` in the
/// root (its first argument), then exits 0.
pub fn wait_for_record(name: &str) -> String {
    format!(
        r#"
tries=0
until [ -s "$1/{name}" ]; do
    tries=$((tries + 1)); [ "$tries" -lt 200 ] || exit 9; sleep 0.05
done
"#
    )
}

/// A new identity from the real `age-keygen`: (identity file text, its public key).
pub fn age_identity() -> (String, String) {
    let keygen = Command::new("age-keygen").output().unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let identity = String::from_utf8(keygen.stdout).unwrap();
    let recipient = identity
        .lines()
        .find_map(|line| line.strip_prefix("# public key: "))
        .expect("age-keygen prints the public key")
        .to_owned();
    (identity, recipient)
}

/// A new key pair made by the real `ssh-keygen`: (private key path, public key line).
pub fn ssh_key(dir: &Path, name: &str, key_type: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen (install openssh-client: scripts/install-test-deps)");
    assert!(output.status.success(), "ssh-keygen: {output:?}");
    let public =
        std::fs::read_to_string(format!("{}.pub", path.display())).expect("read public key");
    (path, public.trim().to_owned())
}

/// Where `program` is on PATH. Under `CI=true` a missing one fails the test; elsewhere
/// the test is skipped with a note (scripts/install-test-deps installs them all).
pub fn installed(program: &str) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        gpubox_testkit::missing(program);
    }
    found.and_then(|path| path.to_str().map(str::to_owned))
}
