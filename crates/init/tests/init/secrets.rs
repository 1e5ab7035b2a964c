//! The secrets step on a fake image root: files encrypted with the real `age` CLI to
//! an SSH host key or an age identity, decrypted by the init into a tmpfs it mounts,
//! or, where it may not mount one (no CAP_SYS_ADMIN, dropped with `setpriv`), into a
//! folder on the tmpfs at the image's `/dev/shm`. Each init runs in a private mount
//! namespace (`unshare --mount`), so its tmpfs goes away with it; the main command
//! reports what it sees from inside.

use std::process::Output;

use gpubox_initplan::{InitPlan, SecretPlan, SecretsPlan};

use crate::common::stderr;
use crate::image_root::{age_identity, installed, ssh_key, ImageRoot};

const MOUNT_POINT: &str = "/run/agenix.d";

/// Reports, from inside the namespace, the tmpfs's line in /proc/mounts and for each
/// secret path given after the root: mode, owner, group, link target and contents.
const REPORT: &str = r#"
root=$1; shift
grep " $root/run/agenix.d " /proc/mounts > "$root/mount.report"
for path in "$@"; do
    name=$(basename "$path")
    if [ -e "$root$path" ]; then
        stat -L -c '%a %u %g' "$root$path" > "$root/$name.stat"
        readlink "$root$path" > "$root/$name.link"
        cat "$root$path" > "$root/$name.contents"
    fi
done
"#;

/// Runs the init in a private mount namespace with `vars` and [`REPORT`] on the secret
/// `paths` as its main command; checks that it succeeded and returns its output.
fn report(root: &ImageRoot, vars: &[(&str, &str)], paths: &[&str]) -> Output {
    let main = root.script("main.sh", REPORT);
    let output = root.run(&mut root.init_in_mount_namespace(&main, vars, paths));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    output
}

fn secret(name: &str, path: &str, owner: &str, group: &str, mode: u32) -> SecretPlan {
    SecretPlan {
        name: name.to_owned(),
        file: format!("/secrets/{name}.age"),
        path: path.to_owned(),
        mode,
        owner: owner.to_owned(),
        group: group.to_owned(),
        symlink: true,
        optional: false,
    }
}

fn plan(identity_paths: &[&str], secrets: Vec<SecretPlan>) -> InitPlan {
    let mut plan = InitPlan::new(2000);
    plan.secrets = SecretsPlan {
        identity_paths: identity_paths
            .iter()
            .map(|path| (*path).to_owned())
            .collect(),
        mount_point: MOUNT_POINT.to_owned(),
        secrets,
    };
    plan
}

/// The image's SSH host key (made by the test, as a mounted volume would bring it);
/// returns its public key file, for `age -R`.
fn host_key(root: &ImageRoot) -> String {
    std::fs::create_dir_all(root.at("/etc/ssh")).unwrap();
    ssh_key(&root.at("/etc/ssh"), "ssh_host_ed25519_key", "ed25519");
    root.str("/etc/ssh/ssh_host_ed25519_key.pub")
}

/// Reports, from inside the namespace, what the mount point links to and the folder
/// on `/dev/shm` the secrets went to (mode, owner, type); then [`REPORT`].
const SHARED_MEMORY_REPORT: &str = r#"
readlink "$1/run/agenix.d" > "$1/mount-point.link"
stat -c '%a %u %F' "$1/dev/shm/gpubox-secrets" > "$1/shared.stat"
"#;

/// Mounts a tmpfs at the image's `/dev/shm` (the root is `$0`), as runtimes do.
const SHARED_MEMORY: &str =
    r#"mkdir -p "$0/dev/shm" && mount -t tmpfs -o mode=1777 tmpfs "$0/dev/shm""#;

fn have_tools() -> bool {
    installed("age").is_some()
        && installed("ssh-keygen").is_some()
        && installed("unshare").is_some()
        && installed("setpriv").is_some()
}

#[test]
fn secrets_for_the_host_key_are_decrypted_into_a_tmpfs_with_their_owner_and_mode() {
    if !have_tools() {
        return;
    }
    let root = ImageRoot::new();
    let host_public_key = host_key(&root);
    root.encrypt("db", "hunter2\n", &["-R", &host_public_key]);
    root.encrypt("conf", "token=42\n", &["-R", &host_public_key]);
    let mut copied = secret("conf", "/etc/app/conf", "root", "wheel", 0o440);
    copied.symlink = false;
    root.set_plan(&plan(
        &["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ed25519_key"],
        vec![
            secret("db", "/run/agenix/db", "alice", "wheel", 0o400),
            copied,
        ],
    ));

    report(&root, &[], &["/run/agenix/db", "/etc/app/conf"]);
    let mount = root.read("/mount.report");
    let fields: Vec<&str> = mount.split_whitespace().collect();
    assert_eq!(
        fields[..3],
        ["tmpfs", &root.str(MOUNT_POINT), "tmpfs"],
        "{mount}"
    );
    for option in ["nosuid", "nodev", "mode=751"] {
        assert!(
            fields[3].split(',').any(|o| o == option),
            "{option}: {mount}"
        );
    }
    assert_eq!(root.read("/db.contents"), "hunter2\n");
    assert_eq!(root.read("/db.stat"), "400 1000 10\n");
    assert_eq!(root.read("/db.link"), "../agenix.d/1/db\n");
    assert_eq!(root.read("/conf.contents"), "token=42\n");
    assert_eq!(root.read("/conf.stat"), "440 0 10\n");
    assert_eq!(root.read("/conf.link"), "", "a copy is not a link");
    // Outside the namespace the tmpfs is gone, and nothing was decrypted to disk there.
    assert!(!root.at("/run/agenix.d/1").exists());
}

#[test]
fn a_secret_the_identities_cannot_open_stops_the_start_naming_it() {
    if !have_tools() {
        return;
    }
    let root = ImageRoot::new();
    host_key(&root);
    let (_, other_key) = ssh_key(root.path(), "other", "ed25519");
    root.encrypt("db", "hunter2\n", &["-r", &other_key]);
    root.set_plan(&plan(
        &["/etc/ssh/ssh_host_ed25519_key"],
        vec![secret("db", "/run/agenix/db", "root", "root", 0o400)],
    ));
    let main = root.script("main.sh", r#"touch "$1/main.ran""#);

    let output = root.run(&mut root.init_in_mount_namespace(&main, &[], &[]));
    assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("start-up step `secrets` failed"),
        "{message}"
    );
    assert!(message.contains("secret `db`"), "{message}");
    assert!(message.contains(&root.str("/secrets/db.age")), "{message}");
    assert!(!root.at("/main.ran").exists(), "the main command ran");
}

#[test]
fn an_age_identity_from_the_environment_is_used_and_an_optional_secret_is_skipped() {
    if !have_tools() || installed("age-keygen").is_none() {
        return;
    }
    let root = ImageRoot::new();
    let (identity, recipient) = age_identity();
    root.encrypt("token", "tskey-abc\n", &["-r", &recipient]);
    let (_, other_key) = ssh_key(root.path(), "other", "ed25519");
    root.encrypt("extra", "unreachable\n", &["-r", &other_key]);
    let mut extra = secret("extra", "/run/agenix/extra", "root", "root", 0o400);
    extra.optional = true;
    root.set_plan(&plan(
        &["/etc/ssh/ssh_host_ed25519_key"],
        vec![
            secret("token", "/run/agenix/token", "alice", "alice", 0o400),
            extra,
        ],
    ));

    let output = report(
        &root,
        &[("AGE_IDENTITY", &identity)],
        &["/run/agenix/token", "/run/agenix/extra"],
    );
    assert_eq!(root.read("/token.contents"), "tskey-abc\n");
    assert_eq!(root.read("/token.stat"), "400 1000 1000\n");
    assert!(
        !root.at("/extra.stat").exists(),
        "the optional secret was decrypted"
    );
    let message = stderr(&output);
    assert!(message.contains("skipping optional secret"), "{message}");
    assert!(message.contains("secret `extra`"), "{message}");
    assert!(!message.contains("AGE-SECRET-KEY"), "{message}");
}

#[test]
fn without_the_right_to_mount_secrets_go_to_a_private_folder_on_dev_shm() {
    if !have_tools() {
        return;
    }
    let root = ImageRoot::new();
    root.encrypt("db", "hunter2\n", &["-R", &host_key(&root)]);
    root.set_plan(&plan(
        &["/etc/ssh/ssh_host_ed25519_key"],
        vec![secret("db", "/run/agenix/db", "alice", "wheel", 0o400)],
    ));
    let main = root.script("main.sh", &format!("{SHARED_MEMORY_REPORT}{REPORT}"));

    // The second start finds the first one's link and a fresh, empty /dev/shm, as a
    // restarted container does.
    for start in ["first", "second"] {
        let output = root.run(&mut root.init_without_mount_rights(
            SHARED_MEMORY,
            &main,
            &[],
            &["/run/agenix/db"],
        ));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{start}: {}",
            stderr(&output)
        );
        assert_eq!(
            root.read("/mount.report"),
            "",
            "{start}: a tmpfs was mounted"
        );
        assert_eq!(
            root.read("/mount-point.link"),
            "../dev/shm/gpubox-secrets\n"
        );
        assert_eq!(root.read("/shared.stat"), "751 0 directory\n");
        assert_eq!(root.read("/db.contents"), "hunter2\n", "{start}");
        assert_eq!(root.read("/db.stat"), "400 1000 10\n");
        assert_eq!(root.read("/db.link"), "../agenix.d/1/db\n");
        // The plaintext was in the tmpfs only: it went with the namespace.
        assert_eq!(std::fs::read_dir(root.at("/dev/shm")).unwrap().count(), 0);
        let mount_point = std::fs::symlink_metadata(root.at(MOUNT_POINT)).unwrap();
        assert!(mount_point.is_symlink(), "{start}: {mount_point:?}");
    }
}

#[test]
fn without_the_right_to_mount_a_dev_shm_that_is_no_tmpfs_or_holds_a_planted_folder_is_refused() {
    if !have_tools() {
        return;
    }
    let root = ImageRoot::new();
    root.set_plan(&plan(
        &["/etc/ssh/ssh_host_ed25519_key"],
        vec![secret("db", "/run/agenix/db", "root", "root", 0o400)],
    ));
    let main = root.script("main.sh", r#"touch "$1/main.ran""#);
    std::fs::create_dir_all(root.at("/elsewhere")).unwrap();
    let planted = r#"ln -s "$0/elsewhere" "$0/dev/shm/gpubox-secrets""#;
    let foreign = r#"mkdir "$0/dev/shm/gpubox-secrets" && chown 1000 "$0/dev/shm/gpubox-secrets""#;
    for (setup, reason) in [
        ("true", format!("{} is not a tmpfs", root.str("/dev/shm"))),
        (
            &format!("{SHARED_MEMORY} && {planted}"),
            format!("{} is a link", root.str("/dev/shm/gpubox-secrets")),
        ),
        (
            &format!("{SHARED_MEMORY} && {foreign}"),
            format!("{} is a link", root.str("/dev/shm/gpubox-secrets")),
        ),
    ] {
        let output = root.run(&mut root.init_without_mount_rights(setup, &main, &[], &[]));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(4), "{setup}: {message}");
        assert!(
            message.contains("start-up step `secrets` failed"),
            "{message}"
        );
        assert!(message.contains(&reason), "{setup}: {message}");
        assert!(message.contains("--cap-add SYS_ADMIN"), "{message}");
        assert!(
            !root.at("/main.ran").exists(),
            "{setup}: the main command ran"
        );
        assert_eq!(std::fs::read_dir(root.at("/elsewhere")).unwrap().count(), 0);
        assert!(
            root.at(MOUNT_POINT).is_dir(),
            "{setup}: the mount point is gone"
        );
    }
}
