//! The machine keys: what a build puts in the image for `gpubox-init` (the plan,
//! accounts, `sshd_config`, encrypted secrets, the Nix database, a home), and the
//! bad values it refuses before writing anything.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use super::common::*;

/// Encrypts `plaintext` to a fresh age key with the real `age` CLI; returns the
/// ciphertext file's path.
fn encrypt(dir: &Path, name: &str, plaintext: &str) -> std::path::PathBuf {
    let key = dir.join("age.key");
    if !key.exists() {
        run_ok(Command::new("age-keygen").arg("-o").arg(&key));
    }
    let recipient = stdout(&run_ok(Command::new("age-keygen").arg("-y").arg(&key)));
    let plain = dir.join(format!("{name}.txt"));
    fs::write(&plain, plaintext).unwrap();
    let encrypted = dir.join(format!("{name}.age"));
    run_ok(
        Command::new("age")
            .args(["-r", recipient.trim(), "-o"])
            .arg(&encrypted)
            .arg(&plain),
    );
    fs::remove_file(&plain).unwrap();
    encrypted
}

/// Whether OpenSSH (the Debian `openssh-server` and client) is here, as `have`
/// says for other parts; `have` cannot probe it, as `ssh` has no `--version`.
fn have_openssh() -> bool {
    let works = Path::new("/usr/sbin/sshd").exists()
        && Command::new("ssh")
            .arg("-V")
            .output()
            .is_ok_and(|out| out.status.success());
    if !works {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "OpenSSH is not available, and CI=true: run scripts/install-test-deps"
        );
        eprintln!("SKIPPED: OpenSSH is not available here");
    }
    works
}

fn top_layer(reader: &gpubox_oci::source::ImageReader, dest: &Path) {
    unpack_layer_with_gnu_tar(reader, reader.layers().len() - 1, dest);
}

fn plan(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(root.join("etc/gpubox/init.json")).expect("init.json"))
        .expect("the plan is JSON")
}

#[test]
fn services_ssh_secrets_and_accounts_land_in_the_image() {
    if !have("age") || !have_openssh() {
        return;
    }
    let work = tempdir();
    let secret = "s3cret-plaintext-that-must-not-leak";
    let encrypted = encrypt(work.path(), "db", secret);
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            r#"name = "gpubox-e2e-machine"
user = "dev"
hostBinaries = ["/usr/sbin/sshd", "/usr/bin/ssh-keygen"]
extraStartupScript = "export MODE=prod\n"
nixConfig = {{ sandbox = false }}

[users.ci]
uid = 1500
groups = ["builders"]

[ssh]
enable = true
authorizedKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e me@laptop"]

[age.secrets.db]
file = {file}
owner = "ci"

[services.db]
argv = ["/bin/sh", "-c", "sleep 1000"]
readiness = {{ tcp = 5432 }}

[services.web]
argv = ["/bin/sh", "-c", "echo web up"]
user = "dev"
after = ["db"]
"#,
            file = toml_str(&encrypted)
        ),
    );
    let (reader, _) = build_and_read(work.path(), &spec);
    let config = reader.config().unwrap();
    assert_eq!(
        config["config"]["User"], "root",
        "the init needs root first"
    );

    let root = work.path().join("root");
    top_layer(&reader, &root);
    let plan = plan(&root);
    assert_eq!(plan["mainUser"], "dev");
    assert_eq!(plan["ssh"]["sshd"], "/usr/sbin/sshd");
    assert_eq!(plan["ssh"]["sshKeygen"], "/usr/bin/ssh-keygen");
    assert_eq!(
        plan["ssh"]["loginUsers"],
        serde_json::json!(["root", "dev"])
    );
    assert_eq!(plan["secrets"]["secrets"][0]["owner"], "ci");
    assert_eq!(plan["secrets"]["secrets"][0]["path"], "/run/agenix/db");
    assert_eq!(plan["services"][1]["after"], serde_json::json!(["db"]));
    assert_eq!(plan["services"][0]["readiness"]["check"]["tcp"], 5432);
    assert_eq!(plan["startupScript"], "/etc/gpubox/startup.sh");
    let users: Vec<&str> = plan["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ci", "dev"]);

    let sshd_config = fs::read_to_string(root.join("etc/ssh/sshd_config")).unwrap();
    for line in [
        "PasswordAuthentication no",
        "PermitRootLogin prohibit-password",
        "PermitEmptyPasswords no",
        "KbdInteractiveAuthentication no",
        "HostKey /etc/ssh/host-keys/ssh_host_ed25519_key",
        "AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u .ssh/authorized_keys",
    ] {
        assert!(
            sshd_config.lines().any(|l| l == line),
            "{line} missing:\n{sshd_config}"
        );
    }
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("ci:x:1500:1500:ci:/home/ci:/bin/sh\n"),
        "{passwd}"
    );
    assert!(
        passwd.contains("dev:x:1000:1000:dev:/home/dev:/bin/sh\n"),
        "{passwd}"
    );
    assert!(passwd.contains("sshd:x:74:74:"), "{passwd}");
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("builders:x:1001:ci\n"), "{group}");
    let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(shadow.contains("root:*:"), "{shadow}");
    assert!(
        !shadow.contains('!'),
        "locked accounts refuse SSH keys: {shadow}"
    );

    let in_image = fs::read(root.join("etc/gpubox/secrets/db.age")).unwrap();
    assert_eq!(
        in_image,
        fs::read(&encrypted).unwrap(),
        "the ciphertext, as given"
    );
    for index in 0..reader.layers().len() {
        let mut bytes = Vec::new();
        reader
            .open_layer(index)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "layer {index} holds the plaintext secret"
        );
    }
    assert_eq!(
        fs::read_to_string(root.join("etc/nix/nix.conf")).unwrap(),
        "sandbox = false\n"
    );
}

#[test]
fn bad_machine_values_fail_the_build_naming_the_key() {
    if !have("age") {
        return;
    }
    let cases = [
        (
            "[services.a]\nargv = [\"x\"]\nuser = \"ghost\"\n",
            "services.a.user",
        ),
        (
            "[age.secrets.db]\nfile = \"missing.age\"\n",
            "age.secrets.db.file",
        ),
        (
            "[services.a]\nargv = [\"x\"]\nafter = [\"b\"]\n[services.b]\nargv = [\"x\"]\nafter = [\"a\"]\n",
            "services.a.after",
        ),
        ("[services.a]\nargv = []\n", "services.a.argv"),
        ("[ssh]\nenable = true\n", "ssh.enable"),
        (
            "[age.secrets.db]\nfile = \"plain.txt\"\n",
            "age.secrets.db.file",
        ),
    ];
    for (body, key) in cases {
        let stderr = build_fails(&format!("name = \"bad\"\n{body}"), |dir| {
            out_dir(dir);
            fs::write(dir.join("plain.txt"), "not encrypted").unwrap();
        });
        assert!(stderr.contains(&format!("`{key}`")), "{body}: {stderr}");
    }
}

#[test]
fn nix_enable_registers_the_closure_with_the_same_bytes_every_build() {
    if !have("nix") || !have("sqlite3") {
        return;
    }
    let hello = nix_fixture("hello");
    let home = nix_fixture("home");
    let closure: Vec<String> = nix_closure(&hello)
        .into_iter()
        .chain(nix_closure(&home))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut databases = Vec::new();
    for attempt in 0..2 {
        let work = tempdir();
        let spec = write_spec(
            work.path(),
            "gpubox.toml",
            &format!(
                "name = \"gpubox-e2e-nixdb\"\nsystemPackages = [{}]\nhome = {}\nnix = {{ enable = true }}\n",
                toml_str(&hello),
                toml_str(&home)
            ),
        );
        let (reader, _) = build_and_read(work.path(), &spec);
        let root = work.path().join("root");
        // The whole image, so Nix can check the registered hashes against the files.
        for index in 0..reader.layers().len() {
            unpack_layer_with_gnu_tar(&reader, index, &root);
        }
        let db = root.join("nix/var/nix/db/db.sqlite");
        let out = run_ok(
            Command::new("sqlite3")
                .arg(&db)
                .arg("select path || ' ' || registrationTime from ValidPaths order by path"),
        );
        let rows: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        let expected: Vec<String> = closure.iter().map(|p| format!("{p} 1")).collect();
        assert_eq!(
            rows, expected,
            "every closure path, registered at `created`"
        );

        let plan = plan(&root);
        assert_eq!(plan["home"]["activate"], format!("{home}/activate"));
        assert_eq!(plan["home"]["user"], "root");
        if attempt == 0 {
            assert!(fs::read(root.join("nix/var/nix/db/schema")).is_ok());
        }
        databases.push(fs::read(&db).unwrap());
        let verify = run_ok(
            Command::new("nix-store")
                .arg("--store")
                .arg(format!("local?root={}", root.display()))
                .args(["--verify", "--check-contents"]),
        );
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(
            !said.contains("modified") && !said.contains("invalid"),
            "{said}"
        );
    }
    assert!(
        databases[0] == databases[1],
        "two builds, two different databases"
    );
}

/// Builds `spec` into podman as `reference`.
fn build_into_podman(spec: &Path, reference: &str) {
    let work = tempdir();
    run_ok(
        gpubox(&work.path().join("cache"))
            .arg("build")
            .arg(spec)
            .args(["-q", "-o", &format!("podman:{reference}")]),
    );
}

#[test]
fn podman_runs_the_startup_script_the_services_in_order_and_cmd_as_the_user() {
    if !have("podman") {
        return;
    }
    let work = tempdir();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        r#"name = "gpubox-e2e-machine-run"
user = "dev"
hostBinaries = ["/bin/sh", "/usr/bin/id", "/bin/sleep"]
extraStartupScript = "export MODE=prod\n"
cmd = ["/bin/sh", "-c", "sleep 2; echo main runs as $(id -u)"]

[services.ticker]
argv = ["/bin/sh", "-c", "echo ticker says $MODE; exec sleep 1000"]

[services.second]
argv = ["/bin/sh", "-c", "echo second starts; exec sleep 1000"]
after = ["ticker"]
"#,
    );
    let reference = "gpubox-e2e-machine-run:latest";
    build_into_podman(&spec, reference);
    let out = run_ok(Command::new("podman").args(["run", "--rm", "--network", "none", reference]));
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("[ticker] ticker says prod"), "{text}");
    assert!(text.contains("[second] second starts"), "{text}");
    assert!(text.contains("main runs as 1000"), "{text}");
}

#[test]
fn podman_image_with_ssh_lets_a_key_in_and_no_password() {
    if !have("podman") || !have_openssh() {
        return;
    }
    let work = tempdir();
    let key = work.path().join("key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let spec = write_spec(
        work.path(),
        "gpubox.toml",
        &format!(
            r#"name = "gpubox-e2e-ssh-run"
hostBinaries = ["/bin/sh", "/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/bin/sleep"]
cmd = ["/bin/sleep", "120"]

[ssh]
enable = true
port = 2222
authorizedKeys = [{public:?}]
"#,
            public = public.trim()
        ),
    );
    let reference = "gpubox-e2e-ssh-run:latest";
    build_into_podman(&spec, reference);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("gpubox-e2e-ssh-{port}");
    run_ok(Command::new("podman").args([
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:2222"),
        reference,
    ]));
    let ssh = |extra: &[&str]| {
        Command::new("ssh")
            .args(["-p", &port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
            ])
            .args(extra)
            .args(["root@127.0.0.1", "echo logged-in-by-key"])
            .output()
            .unwrap()
    };
    let key_arg = key.display().to_string();
    // sshd starts after the host keys are made: wait for it to answer.
    let mut login = ssh(&["-i", &key_arg]);
    for _ in 0..30 {
        if login.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        login = ssh(&["-i", &key_arg]);
    }
    let refused = ssh(&["-o", "PubkeyAuthentication=no"]);
    let logs = Command::new("podman")
        .args(["logs", &name])
        .output()
        .unwrap();
    let _ = Command::new("podman").args(["rm", "-f", &name]).output();
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
    let logs = format!("{}{}", stdout(&logs), String::from_utf8_lossy(&logs.stderr));
    assert!(
        stdout(&login).contains("logged-in-by-key"),
        "{}\ncontainer said:\n{logs}",
        String::from_utf8_lossy(&login.stderr)
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a login without a key worked");
    assert!(said.contains("Permission denied (publickey)"), "{said}");
}
