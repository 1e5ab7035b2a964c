//! The variables that hand the steps a secret (`ROOT_PASSWORD`, `AGE_IDENTITY`,
//! `TAILSCALE_AUTHKEY`): the steps use them, then nothing started later inherits them
//! and the init's own `/proc/PID/environ` no longer holds their values. The system
//! services are stand-ins, the plan's service and the main command shell scripts; each
//! records its `/proc/PID/environ`.

use gpubox_initplan::{InitPlan, SecretPlan, SecretsPlan, SshPlan, TailscalePlan};

use crate::common::stderr;
use crate::image_root::{age_identity, installed, service, ImageRoot};

const PASSWORD: &str = "pw-7f3a9c";
const AUTH_KEY: &str = "tskey-auth-5b2e81";

/// Records the environment this process was started with into `$GPUBOX_INIT_ROOT/NAME.env`
/// (renamed into place, so a reader never sees half of it).
const RECORD: &str = r#"
record() {
    tr '\0' '\n' < /proc/$$/environ > "$GPUBOX_INIT_ROOT/$1.env.new"
    mv "$GPUBOX_INIT_ROOT/$1.env.new" "$GPUBOX_INIT_ROOT/$1.env"
}
"#;

/// The main command: waits (at most 10 s) for every service's record, records its own
/// and the init's (its parent's) environment.
const MAIN: &str = r#"
for name in sshd tailscaled tailscale-up service startup; do
    tries=0
    until [ -s "$GPUBOX_INIT_ROOT/$name.env" ]; do
        tries=$((tries + 1)); [ "$tries" -lt 200 ] || exit 9; sleep 0.05
    done
done
record main
tr '\0' '\n' < /proc/$PPID/environ > "$GPUBOX_INIT_ROOT/init.env"
"#;

fn plan(root: &ImageRoot, keygen: String) -> InitPlan {
    root.write("/etc/ssh/sshd_config", "PasswordAuthentication yes\n");
    let mut plan = InitPlan::new(2000);
    plan.ssh = Some(SshPlan {
        sshd: root.program("sshd", &format!("{RECORD}record sshd; exec sleep 30")),
        ssh_keygen: keygen,
        config: "/etc/ssh/sshd_config".to_owned(),
        host_key_dir: "/etc/ssh".to_owned(),
        host_key_types: vec!["ed25519".to_owned()],
        authorized_keys: Vec::new(),
        login_users: vec!["root".to_owned()],
        authorized_keys_file: "/etc/ssh/authorized_keys.d/%u".to_owned(),
        password_login: true,
    });
    plan.secrets = SecretsPlan {
        identity_paths: Vec::new(),
        mount_point: "/run/agenix.d".to_owned(),
        secrets: vec![SecretPlan {
            name: "token".to_owned(),
            file: "/secrets/token.age".to_owned(),
            path: "/run/agenix/token".to_owned(),
            mode: 0o400,
            owner: "root".to_owned(),
            group: "root".to_owned(),
            symlink: true,
            optional: false,
        }],
    };
    plan.tailscale = Some(TailscalePlan {
        tailscaled: root.program(
            "tailscaled",
            &format!("{RECORD}record tailscaled; exec sleep 30"),
        ),
        tailscale: root.program(
            "tailscale",
            &format!(r#"{RECORD}case " $* " in *" up "*) record tailscale-up ;; esac"#),
        ),
        state_dir: "/var/lib/tailscale".to_owned(),
        auth_key_file: None,
        hostname: None,
        extra_up_flags: Vec::new(),
        extra_daemon_flags: Vec::new(),
    });
    root.write("/startup.sh", &format!("{RECORD}record startup"));
    plan.startup_script = Some("/startup.sh".to_owned());
    plan.services = vec![service(
        "service",
        &format!("{RECORD}record service; exec sleep 30"),
    )];
    plan
}

#[test]
fn the_steps_use_secret_variables_and_nothing_started_later_inherits_them() {
    let tools = ["ssh-keygen", "age", "age-keygen", "unshare"].map(installed);
    let [Some(keygen), Some(_), Some(_), Some(_)] = tools else {
        return;
    };
    let root = ImageRoot::new();
    let (identity, recipient) = age_identity();
    root.encrypt("token", "token-plaintext", &["-r", &recipient]);
    root.set_plan(&plan(&root, keygen));
    let main = root.script("main.sh", &format!("{RECORD}{MAIN}"));

    let output = root.run(&mut root.init_in_mount_namespace(
        &main,
        &[
            ("ROOT_PASSWORD", PASSWORD),
            ("AGE_IDENTITY", &identity),
            ("TAILSCALE_AUTHKEY", AUTH_KEY),
            ("KEPT", "an ordinary variable"),
        ],
        &[],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Each step got its variable: root's password is set, the key handed over, and the
    // secret decrypted (AGE_IDENTITY is the only identity, and the start went on).
    let root_entry = root.read("/etc/shadow");
    assert!(root_entry.starts_with("root:$6$"), "{root_entry}");
    assert_eq!(root.read("/run/gpubox/tailscale-auth-key"), AUTH_KEY);
    for started in [
        "startup",
        "sshd",
        "tailscaled",
        "tailscale-up",
        "service",
        "main",
    ] {
        let environment = root.read(&format!("/{started}.env"));
        assert!(
            environment.contains("KEPT=an ordinary variable"),
            "{started}: {environment}"
        );
        for variable in ["ROOT_PASSWORD=", "AGE_IDENTITY=", "TAILSCALE_AUTHKEY="] {
            assert!(
                !environment.contains(variable),
                "{started} inherited {variable}"
            );
        }
    }
    // SSH sessions get the environment through sshd's config: the same holds there.
    let session_config = root.read("/run/gpubox/sshd_config");
    assert!(
        session_config.contains("\"KEPT=an ordinary variable\""),
        "{session_config}"
    );
    for variable in ["ROOT_PASSWORD=", "AGE_IDENTITY=", "TAILSCALE_AUTHKEY="] {
        assert!(
            !session_config.contains(variable),
            "the sshd config holds {variable}"
        );
    }
    let init_environment = root.read("/init.env");
    assert!(
        init_environment.contains("KEPT=an ordinary variable"),
        "{init_environment}"
    );
    for (name, value) in [
        ("ROOT_PASSWORD", PASSWORD),
        ("AGE_IDENTITY", identity.as_str()),
        ("TAILSCALE_AUTHKEY", AUTH_KEY),
    ] {
        let secret_line = value.lines().last().unwrap_or(value);
        assert!(
            !init_environment.contains(secret_line),
            "the init's /proc/PID/environ still holds {name}"
        );
    }
}
