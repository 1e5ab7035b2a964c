//! The machine files and the start-up plan, from specs read with the real parser.

mod common;

use std::fs;
use std::path::Path;

use gpubox_initplan::InitPlan;
use gpubox_nix::StorePath;
use gpubox_oci::{Entry, EntryKind, FileSource};
use gpubox_rootfs::{MachineError, Rootfs, RootfsError};
use gpubox_spec::Spec;

/// A spec in `dir` with fake programs (`sshd`, `ssh-keygen`, `sftp-server`,
/// `tailscale`, `tailscaled`) placed by `copyToRoot` where `body` asks.
fn spec(dir: &Path, body: &str) -> Spec {
    for program in [
        "sshd",
        "ssh-keygen",
        "sftp-server",
        "tailscale",
        "tailscaled",
    ] {
        fs::write(dir.join(program), "#!/bin/sh\n").unwrap();
    }
    let text = format!("name = \"demo\"\n{body}");
    gpubox_spec::parse(&text, &dir.join("gpubox.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn build(spec: &Spec, user: &str, home: Option<&StorePath>) -> Result<Rootfs, RootfsError> {
    let copies: Vec<_> = spec.copy_to_root.iter().map(|i| i.value.clone()).collect();
    common::assemble_without_nix(&copies, &[], user, &[], &spec.machine, home)
}

fn text(rootfs: &Rootfs, path: &str) -> String {
    let entry: &Entry = common::find(rootfs, &format!("/{path}"))
        .unwrap_or_else(|| panic!("{path} is not in the layer"));
    match &entry.kind {
        EntryKind::File {
            source: FileSource::Bytes(bytes),
            ..
        } => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

const OPENSSH: &str = r#"copyToRoot = [
  { src = "sshd", dst = "/usr/sbin/sshd" },
  { src = "ssh-keygen", dst = "/usr/bin/ssh-keygen" },
  { src = "sftp-server", dst = "/usr/lib/openssh/sftp-server" },
]
"#;

#[test]
fn password_login_opens_passwords_and_root_and_the_plan_matches_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        &format!("{OPENSSH}[ssh]\nenable = true\nport = 2222\nrsaHostKey = true\npasswordLogin = true\nhostKeyDir = \"/keys\"\n"),
    );
    let rootfs = build(&spec, "root", None).unwrap();
    let config = text(&rootfs, "etc/ssh/sshd_config");
    for line in [
        "Port 2222",
        "HostKey /keys/ssh_host_ed25519_key",
        "HostKey /keys/ssh_host_rsa_key",
        "PasswordAuthentication yes",
        "PermitRootLogin yes",
        "PermitEmptyPasswords no",
        "UsePAM no",
        "PidFile /run/sshd.pid",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} missing:\n{config}"
        );
    }
    let plan = rootfs.plan.as_ref().expect("a plan");
    assert_eq!(
        InitPlan::from_json(text(&rootfs, "etc/gpubox/init.json").as_bytes()).unwrap(),
        *plan
    );
    let ssh = plan.ssh.as_ref().unwrap();
    assert_eq!(ssh.sshd, "/usr/sbin/sshd");
    assert_eq!(ssh.host_key_types, ["ed25519", "rsa"]);
    assert!(ssh.password_login);
    assert_eq!(ssh.login_users, ["root"]);
    assert_eq!(rootfs.user, "root");
    assert_eq!(plan.main_user, None);
    assert!(text(&rootfs, "etc/passwd").contains("sshd:x:74:74:"));
}

#[test]
fn sshd_config_replaces_the_default_text() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        &format!("sshdConfig = \"Port 2200\\n\"\n{OPENSSH}[ssh]\nenable = true\n"),
    );
    let rootfs = build(&spec, "root", None).unwrap();
    assert_eq!(text(&rootfs, "etc/ssh/sshd_config"), "Port 2200\n");
}

#[test]
fn a_non_root_user_keeps_root_for_the_init_only_when_there_is_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let plain = spec(dir.path(), "");
    let rootfs = build(&plain, "dev", None).unwrap();
    assert_eq!((rootfs.user.as_str(), rootfs.plan.is_none()), ("dev", true));
    assert!(!rootfs
        .entries
        .iter()
        .any(|e| e.path.to_string() == "/etc/gpubox/init.json"));

    let with_service = spec(
        dir.path(),
        "[services.web]\nargv = [\"web\"]\nuser = \"dev\"\n",
    );
    let rootfs = build(&with_service, "dev", None).unwrap();
    assert_eq!(rootfs.user, "root");
    let plan = rootfs.plan.unwrap();
    assert_eq!(plan.main_user.as_deref(), Some("dev"));
    assert_eq!(plan.services[0].user.as_deref(), Some("dev"));
    assert_eq!(plan.stop_timeout_ms, 10_000);
}

#[test]
fn unknown_accounts_and_groups_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("db.age"),
        "age-encryption.org/v1\n-> X25519 x\n",
    )
    .unwrap();
    let owner = spec(
        dir.path(),
        "[age.secrets.db]\nfile = \"db.age\"\nowner = \"ghost\"\n",
    );
    match build(&owner, "root", None) {
        Err(RootfsError::Machine(MachineError::UnknownUser { key, user, span })) => {
            assert_eq!(
                (key.as_str(), user.as_str()),
                ("age.secrets.db.owner", "ghost")
            );
            assert!(span.is_some());
        }
        other => panic!("{other:?}"),
    }
    let group = spec(
        dir.path(),
        "[age.secrets.db]\nfile = \"db.age\"\ngroup = \"ghosts\"\n",
    );
    let error = build(&group, "root", None).unwrap_err();
    assert!(error.to_string().contains("group \"ghosts\""), "{error}");

    // The owner's own group is the default, and the ciphertext is copied, 0400.
    let known = spec(
        dir.path(),
        "[users.app]\nuid = 1200\n[age.secrets.db]\nfile = \"db.age\"\nowner = \"app\"\n",
    );
    let rootfs = build(&known, "root", None).unwrap();
    let secret = &rootfs.plan.unwrap().secrets.secrets[0];
    assert_eq!(
        (secret.owner.as_str(), secret.group.as_str()),
        ("app", "app")
    );
    let entry = rootfs
        .entries
        .iter()
        .find(|e| e.path.to_string() == "/etc/gpubox/secrets/db.age")
        .unwrap();
    assert_eq!(entry.mode, 0o400);
}

#[test]
fn a_plaintext_or_missing_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("plain.txt"), "password123").unwrap();
    let plain = spec(dir.path(), "[age.secrets.db]\nfile = \"plain.txt\"\n");
    let error = build(&plain, "root", None).unwrap_err();
    assert!(
        error.to_string().contains("not an age-encrypted file"),
        "{error}"
    );
    assert!(!error.to_string().contains("password123"), "{error}");
    let missing = spec(dir.path(), "[age.secrets.db]\nfile = \"nope.age\"\n");
    let error = build(&missing, "root", None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`age.secrets.db.file`: cannot read"),
        "{error}"
    );
}

#[test]
fn tailscale_needs_its_programs_and_home_its_activate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = spec(dir.path(), "[tailscale]\nenable = true\n");
    match build(&missing, "root", None).unwrap_err() {
        RootfsError::Machine(error) => {
            assert_eq!(error.key(), "tailscale.enable");
            assert!(
                error
                    .to_string()
                    .contains("add tailscale to systemPackages"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let present = spec(
        dir.path(),
        "copyToRoot = [{ src = \"tailscale\", dst = \"/usr/bin/tailscale\" }, { src = \"tailscaled\", dst = \"/usr/sbin/tailscaled\" }]\n[tailscale]\nenable = true\nhostname = \"box\"\n",
    );
    let plan = build(&present, "root", None).unwrap().plan.unwrap();
    let tailscale = plan.tailscale.unwrap();
    assert_eq!(
        (tailscale.tailscale.as_str(), tailscale.tailscaled.as_str()),
        ("/usr/bin/tailscale", "/usr/sbin/tailscaled")
    );
    assert_eq!(tailscale.state_dir, "/var/lib/tailscale");

    let home_spec = spec(dir.path(), "home = \"nixpkgs#home\"\n");
    let not_home =
        StorePath::parse("/nix/store/00000000000000000000000000000000-not-a-home").unwrap();
    match build(&home_spec, "root", Some(&not_home)).unwrap_err() {
        RootfsError::Machine(error) => assert_eq!(error.key(), "home"),
        other => panic!("{other:?}"),
    }
}
