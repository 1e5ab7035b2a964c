//! The SSH step on a fake image root, with the real `ssh-keygen`, and a real login
//! through the real `sshd` the init starts.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use gpubox_initplan::{InitPlan, SshPlan};

use crate::common::stderr;
use crate::image_root::{installed, ssh_key, wait_for_record, ImageRoot};

/// Records its arguments and stays up, as sshd would.
const SSHD_STAND_IN: &str = r#"echo "$@" > "$GPUBOX_INIT_ROOT/sshd.args"; exec sleep 30"#;

/// The build's sshd config the stand-in tests give the image.
const BUILD_CONFIG: &str = "PasswordAuthentication no\n";

/// An SSH plan; the image gets [`BUILD_CONFIG`] unless the test wrote its own config.
fn ssh_plan(root: &ImageRoot, sshd: String, ssh_keygen: String) -> InitPlan {
    if !root.at("/etc/ssh/sshd_config").exists() {
        root.write("/etc/ssh/sshd_config", BUILD_CONFIG);
    }
    let mut plan = InitPlan::new(2000);
    plan.ssh = Some(SshPlan {
        sshd,
        ssh_keygen,
        config: "/etc/ssh/sshd_config".to_owned(),
        host_key_dir: "/etc/ssh".to_owned(),
        host_key_types: vec!["ed25519".to_owned(), "rsa".to_owned()],
        authorized_keys: Vec::new(),
        login_users: vec!["root".to_owned(), "alice".to_owned()],
        authorized_keys_file: "/etc/ssh/authorized_keys.d/%u".to_owned(),
        password_login: false,
    });
    plan
}

#[test]
fn host_keys_are_generated_once_and_kept_on_the_next_start() {
    let Some(keygen) = installed("ssh-keygen") else {
        return;
    };
    let root = ImageRoot::new();
    let sshd = root.program("sshd", SSHD_STAND_IN);
    root.set_plan(&ssh_plan(&root, sshd, keygen.clone()));
    let main = root.script("main.sh", &wait_for_record("sshd.args"));

    let output = root.run(&mut root.init(&main, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        root.read("/sshd.args").trim(),
        format!("-D -e -f {}", root.str("/run/gpubox/sshd_config"))
    );
    // The environment first, then the build's config as it is; private to root.
    let session_config = root.read("/run/gpubox/sshd_config");
    assert!(
        session_config.starts_with("SetEnv \"") && session_config.ends_with(BUILD_CONFIG),
        "{session_config}"
    );
    assert_eq!(root.mode("/run/gpubox/sshd_config"), 0o600);
    let mut first = Vec::new();
    for key_type in ["ed25519", "rsa"] {
        let private = format!("/etc/ssh/ssh_host_{key_type}_key");
        assert_eq!(root.mode(&private), 0o600, "{private}");
        let fingerprint = Command::new(&keygen)
            .arg("-lf")
            .arg(root.at(&private))
            .output()
            .unwrap();
        assert!(fingerprint.status.success(), "{private}: {fingerprint:?}");
        assert!(root.at(&format!("{private}.pub")).exists());
        first.push(root.read(&private));
    }
    // Nothing unfinished is left beside them.
    let leftovers: Vec<String> = std::fs::read_dir(root.at("/etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".gpubox-partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A volume mounted with looser modes: the keys stay, made private again.
    std::fs::set_permissions(
        root.at("/etc/ssh/ssh_host_ed25519_key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::remove_file(root.at("/sshd.args")).unwrap();

    let output = root.run(&mut root.init(&main, &[]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let second: Vec<String> = ["ed25519", "rsa"]
        .iter()
        .map(|key_type| root.read(&format!("/etc/ssh/ssh_host_{key_type}_key")))
        .collect();
    assert_eq!(first, second, "the host keys changed on the second start");
    assert_eq!(root.mode("/etc/ssh/ssh_host_ed25519_key"), 0o600);
}

#[test]
fn authorized_keys_come_from_the_plan_and_the_environment() {
    let Some(keygen) = installed("ssh-keygen") else {
        return;
    };
    let root = ImageRoot::new();
    let (_, plan_key) = ssh_key(root.path(), "plan", "ed25519");
    let (_, first_env_key) = ssh_key(root.path(), "first", "ed25519");
    let (_, second_env_key) = ssh_key(root.path(), "second", "rsa");
    let (_, public_key) = ssh_key(root.path(), "public", "ed25519");
    let mut plan = ssh_plan(&root, root.program("sshd", SSHD_STAND_IN), keygen);
    if let Some(ssh) = plan.ssh.as_mut() {
        ssh.authorized_keys = vec![plan_key.clone()];
    }
    root.set_plan(&plan);
    let main = root.script("main.sh", &wait_for_record("sshd.args"));

    let keys_variable = format!("{first_env_key}\nnot a key at all\r\n{second_env_key}\n");
    let output = root.run(&mut root.init(
        &main,
        &[
            ("SSH_PUBLIC_KEYS", &keys_variable),
            ("PUBLIC_KEY", &public_key),
        ],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = format!("{plan_key}\n{first_env_key}\n{second_env_key}\n{public_key}\n");
    for user in ["root", "alice"] {
        let path = format!("/etc/ssh/authorized_keys.d/{user}");
        assert_eq!(root.read(&path), expected, "{path}");
        assert_eq!(root.mode(&path), 0o644, "{path}");
    }
    assert!(
        stderr(&output).contains("skipping line 2 of SSH_PUBLIC_KEYS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn root_password_is_ignored_while_password_login_is_off() {
    let Some(keygen) = installed("ssh-keygen") else {
        return;
    };
    let root = ImageRoot::new();
    root.set_plan(&ssh_plan(
        &root,
        root.program("sshd", SSHD_STAND_IN),
        keygen,
    ));
    let main = root.script("main.sh", &wait_for_record("sshd.args"));

    let password = "correct horse battery staple";
    let output = root.run(&mut root.init(&main, &[("ROOT_PASSWORD", password)]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(root.read("/etc/shadow"), crate::image_root::SHADOW);
    assert!(
        stderr(&output).contains("ignoring ROOT_PASSWORD: password login is off"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(password), "{}", stderr(&output));
}

#[test]
fn root_password_is_set_when_password_login_is_on() {
    let (Some(keygen), Some(perl)) = (installed("ssh-keygen"), installed("perl")) else {
        return;
    };
    let root = ImageRoot::new();
    let mut plan = ssh_plan(&root, root.program("sshd", SSHD_STAND_IN), keygen);
    if let Some(ssh) = plan.ssh.as_mut() {
        ssh.password_login = true;
    }
    root.set_plan(&plan);
    let main = root.script("main.sh", &wait_for_record("sshd.args"));

    let password = "correct horse battery staple";
    let output = root.run(&mut root.init(&main, &[("ROOT_PASSWORD", password)]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains(password), "{}", stderr(&output));
    let shadow = root.read("/etc/shadow");
    let mut lines = shadow.lines();
    let root_entry: Vec<&str> = lines.next().unwrap().split(':').collect();
    assert_eq!(root_entry[0], "root");
    assert!(root_entry[1].starts_with("$6$"), "{shadow}");
    assert_eq!(root_entry[2..], ["19000", "0", "99999", "7", "", "", ""]);
    assert_eq!(lines.next(), Some("alice:!:19000:0:99999:7:::"));
    // The C library's crypt(3), through perl, must accept the hash for the password.
    let verify = |candidate: &str| {
        let output = Command::new(&perl)
            .args([
                "-e",
                "print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? 'ok' : 'no'",
            ])
            .args([candidate, root_entry[1]])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(verify(password), "ok");
    assert_eq!(verify("wrong password"), "no");
}

/// A free TCP port on 127.0.0.1 (there is a small window before sshd takes it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}

#[test]
fn a_key_from_the_environment_logs_in_through_the_sshd_the_init_starts() {
    let (Some(keygen), Some(sshd), Some(ssh)) =
        (installed("ssh-keygen"), installed("sshd"), installed("ssh"))
    else {
        return;
    };
    // Debian's sshd checks for its privilege-separation folder on the real machine
    // (the steps make it only inside the image root).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let root = ImageRoot::new();
    let port = free_port();
    // StrictModes checks every folder above the keys file up to `/`, and the test's
    // root may sit under a world-writable /tmp (a checkout there); the podman e2e
    // test logs in with StrictModes on, in the layout a real image has.
    root.write(
        "/etc/ssh/sshd_config",
        &format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nPidFile none\n",
            root.str("/etc/ssh/ssh_host_ed25519_key"),
            root.str("/etc/ssh/authorized_keys.d/%u"),
        ),
    );
    let mut plan = ssh_plan(&root, sshd, keygen);
    if let Some(ssh) = plan.ssh.as_mut() {
        ssh.host_key_types = vec!["ed25519".to_owned()];
        ssh.login_users = vec!["root".to_owned()];
    }
    root.write(
        "/etc/gpubox/startup.sh",
        "export GPUBOX_TEST_SCRIPT_VAR='from the script'\n",
    );
    plan.startup_script = Some("/etc/gpubox/startup.sh".to_owned());
    root.set_plan(&plan);
    let (client_key, public_key) = ssh_key(root.path(), "client", "ed25519");
    let main = root.script(
        "main.sh",
        &format!(
            r#"
tries=0
until {ssh} -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 -i {key} -p {port} \
        root@127.0.0.1 'echo "logged in as $(id -un)|$GPUBOX_TEST_IMAGE_VAR|$GPUBOX_TEST_SCRIPT_VAR"' \
        > "$1/login.out" 2> "$1/login.err"; do
    tries=$((tries + 1)); [ "$tries" -lt 50 ] || exit 9; sleep 0.2
done
"#,
            key = client_key.display(),
        ),
    );
    let output = root.run(&mut root.init(
        &main,
        &[
            ("SSH_PUBLIC_KEYS", &public_key),
            ("GPUBOX_TEST_IMAGE_VAR", "v1"),
        ],
    ));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\nssh: {}",
        stderr(&output),
        std::fs::read_to_string(root.at("/login.err")).unwrap_or_default()
    );
    // The session has the container's environment: the image's and the script's.
    assert_eq!(
        root.read("/login.out"),
        "logged in as root|v1|from the script\n"
    );
}
