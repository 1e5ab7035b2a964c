//! Checks the machine keys (`users`, `ssh`, `sshdConfig`, `age`, `tailscale`,
//! `extraStartupScript`, `services`, `stopTimeout`, `nixConfig`, `nix`, `home`).
//! Whether a user or a secret file exists is left to the build, which knows the
//! image's accounts and reads the files.

use std::collections::{BTreeMap, BTreeSet};

use gpubox_initplan::{Readiness, ReadinessCheck, Restart};
use miette::SourceSpan;

use super::{check_env_name, check_local_path, check_no_nul, child, index, Checker, Problem};
use crate::error::SpecError;
use crate::machine::{
    AgeSpec, SecretSpec, ServiceSpec, SshSpec, TailscaleSpec, UserSpec,
    DEFAULT_READINESS_TIMEOUT_MS, DEFAULT_RESTART_DELAY_MS, DEFAULT_SECRETS_DIR,
};
use crate::tree::{Entry, Node, Value};
use crate::{Item, PackageRef};

const USER_KEYS: &[&str] = &["uid", "gid", "group", "home", "shell", "groups"];
const SSH_KEYS: &[&str] = &[
    "enable",
    "port",
    "authorizedKeys",
    "hostKeyDir",
    "rsaHostKey",
    "passwordLogin",
];
const AGE_KEYS: &[&str] = &["identityPaths", "secrets"];
const SECRET_KEYS: &[&str] = &[
    "file", "path", "mode", "owner", "group", "symlink", "optional",
];
const TAILSCALE_KEYS: &[&str] = &[
    "enable",
    "authKeyFile",
    "hostname",
    "stateDir",
    "extraUpFlags",
    "extraDaemonFlags",
];
const SERVICE_KEYS: &[&str] = &[
    "argv",
    "env",
    "workingDir",
    "user",
    "restart",
    "restartDelay",
    "maxRestarts",
    "after",
    "readiness",
    "logFile",
];
const READINESS_KEYS: &[&str] = &["tcp", "exec", "timeout"];
const NIX_KEYS: &[&str] = &["enable"];
/// Accounts gpubox itself puts in `/etc/passwd`; `users` cannot redefine them.
const BUILT_IN_ACCOUNTS: &[&str] = &["root", "nobody", "sshd"];

impl Checker<'_> {
    fn table_of<'n>(&self, node: &'n Node, path: &str) -> Result<Vec<&'n Entry>, SpecError> {
        self.table(node, path, self.expect("a table", "an object"))
    }

    /// A string that must be an absolute path in the image.
    fn image_dir(&self, node: &Node, path: &str) -> Result<String, SpecError> {
        self.checked(node, path, check_absolute)
    }

    pub(super) fn users(&self, node: &Node, path: &str) -> Result<Vec<Item<UserSpec>>, SpecError> {
        let mut users: Vec<Item<UserSpec>> = Vec::new();
        let mut uids: BTreeMap<u32, String> = BTreeMap::new();
        for entry in self.table_of(node, path)? {
            let user_path = child(path, &entry.key);
            check_account_name(&entry.key)
                .map_err(|problem| self.invalid(&user_path, &entry.key_span, problem))?;
            if BUILT_IN_ACCOUNTS.contains(&entry.key.as_str()) {
                return Err(self.invalid(
                    &user_path,
                    &entry.key_span,
                    Problem::new(
                        format!("`{}` is an account gpubox always creates", entry.key),
                        "pick another name; root, nobody and sshd are built in",
                    ),
                ));
            }
            let (mut uid, mut gid, mut group, mut home, mut shell, mut groups) =
                (None, None, None, None, None, Vec::new());
            for field in self.table_of(&entry.node, &user_path)? {
                let key_path = child(&user_path, &field.key);
                let node = &field.node;
                match field.key.as_str() {
                    "uid" => uid = Some((self.id(node, &key_path)?, node)),
                    "gid" => gid = Some(self.id(node, &key_path)?),
                    "group" => group = Some(self.checked(node, &key_path, check_group_name)?),
                    "home" => home = Some(self.image_dir(node, &key_path)?),
                    "shell" => shell = Some(self.image_dir(node, &key_path)?),
                    "groups" => {
                        let items = self.array(node, &key_path, "an array of strings")?;
                        for (position, item) in items.iter().enumerate() {
                            groups.push(self.checked(
                                item,
                                &index(&key_path, position),
                                check_group_name,
                            )?);
                        }
                    }
                    _ => return Err(self.unknown_key(&user_path, field, USER_KEYS)),
                }
            }
            let Some((uid, uid_node)) = uid else {
                return Err(self.missing(
                    &child(&user_path, "uid"),
                    &entry.node,
                    self.expect(
                        "give the account a number, e.g. uid = 1000",
                        "give the account a number, e.g. \"uid\": 1000",
                    )
                    .to_owned(),
                ));
            };
            if uid == 0 || uid == 65534 {
                return Err(self.invalid(
                    &child(&user_path, "uid"),
                    &uid_node.span,
                    Problem::new(
                        format!("uid {uid} belongs to root or nobody"),
                        "use a uid of 1 or more other than 65534, e.g. 1000",
                    ),
                ));
            }
            if let Some(other) = uids.insert(uid, entry.key.clone()) {
                return Err(self.invalid(
                    &child(&user_path, "uid"),
                    &uid_node.span,
                    Problem::new(
                        format!("uid {uid} is also users.{other}'s"),
                        "give every account its own uid",
                    ),
                ));
            }
            users.push(self.item(
                &entry.node,
                UserSpec {
                    name: entry.key.clone(),
                    uid,
                    gid: gid.unwrap_or(uid),
                    group: group.unwrap_or_else(|| entry.key.clone()),
                    home: home.unwrap_or_else(|| format!("/home/{}", entry.key)),
                    shell: shell.unwrap_or_else(|| "/bin/sh".to_owned()),
                    groups,
                },
            ));
        }
        // By name, so the order they are written in does not change the image.
        users.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(users)
    }

    /// A section's `enable` switch and where it was written, for the errors
    /// about what the section then needs.
    fn switch(&self, node: &Node, path: &str) -> Result<(bool, Option<SourceSpan>), SpecError> {
        Ok((self.boolean(node, path)?, self.item(node, ()).span))
    }

    pub(super) fn ssh(&self, node: &Node, path: &str) -> Result<SshSpec, SpecError> {
        let mut ssh = SshSpec::default();
        for entry in self.table_of(node, path)? {
            let key_path = child(path, &entry.key);
            let node = &entry.node;
            match entry.key.as_str() {
                "enable" => (ssh.enable, ssh.span) = self.switch(node, &key_path)?,
                "port" => ssh.port = self.port_number(node, &key_path)?,
                "authorizedKeys" => {
                    let items = self.array(node, &key_path, "an array of strings")?;
                    for (position, item) in items.iter().enumerate() {
                        ssh.authorized_keys.push(self.checked(
                            item,
                            &index(&key_path, position),
                            check_authorized_key,
                        )?);
                    }
                }
                "hostKeyDir" => ssh.host_key_dir = self.image_dir(node, &key_path)?,
                "rsaHostKey" => ssh.rsa_host_key = self.boolean(node, &key_path)?,
                "passwordLogin" => ssh.password_login = self.boolean(node, &key_path)?,
                _ => return Err(self.unknown_key(path, entry, SSH_KEYS)),
            }
        }
        Ok(ssh)
    }

    /// A port number from 1 to 65535.
    fn port_number(&self, node: &Node, path: &str) -> Result<u16, SpecError> {
        let value = self.integer(node, path, "an integer")?;
        u16::try_from(value)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| {
                self.invalid(
                    path,
                    &node.span,
                    Problem::new(
                        format!("{value} is not a port number from 1 to 65535"),
                        "write a TCP port such as 22 or 8080",
                    ),
                )
            })
    }

    /// A text value that must not be empty (scripts, configuration files).
    pub(super) fn text_value(&self, node: &Node, path: &str) -> Result<Item<String>, SpecError> {
        let text = self.checked(node, path, |text| {
            check_no_nul(text)?;
            if text.trim().is_empty() {
                return Err(Problem::new(
                    "the text is empty",
                    "write the text, or leave the key out",
                ));
            }
            Ok(text.to_owned())
        })?;
        Ok(self.item(node, text))
    }

    pub(super) fn age(&self, node: &Node, path: &str) -> Result<AgeSpec, SpecError> {
        let mut age = AgeSpec::default();
        for entry in self.table_of(node, path)? {
            let key_path = child(path, &entry.key);
            match entry.key.as_str() {
                "identityPaths" => {
                    let items = self.array(&entry.node, &key_path, "an array of strings")?;
                    for (position, item) in items.iter().enumerate() {
                        age.identity_paths
                            .push(self.image_dir(item, &index(&key_path, position))?);
                    }
                }
                "secrets" => {
                    for secret in self.table_of(&entry.node, &key_path)? {
                        age.secrets.push(self.secret(secret, &key_path)?);
                    }
                }
                _ => return Err(self.unknown_key(path, entry, AGE_KEYS)),
            }
        }
        age.secrets.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(age)
    }

    fn secret(&self, entry: &Entry, parent: &str) -> Result<Item<SecretSpec>, SpecError> {
        let path = child(parent, &entry.key);
        check_file_name(&entry.key)
            .map_err(|problem| self.invalid(&path, &entry.key_span, problem))?;
        let (mut file, mut secret_path, mut mode, mut owner, mut group) =
            (None, None, None, None, None);
        let (mut symlink, mut optional) = (true, false);
        for field in self.table_of(&entry.node, &path)? {
            let key_path = child(&path, &field.key);
            let node = &field.node;
            match field.key.as_str() {
                "file" => {
                    let value =
                        self.checked(node, &key_path, |text| check_local_path(text, self.dir))?;
                    file = Some(self.item(node, value));
                }
                "path" => secret_path = Some(self.image_dir(node, &key_path)?),
                "mode" => mode = Some(self.mode(node, &key_path)?),
                "owner" => {
                    let value = self.checked(node, &key_path, check_account_or_id)?;
                    owner = Some(self.item(node, value));
                }
                "group" => {
                    let value = self.checked(node, &key_path, check_account_or_id)?;
                    group = Some(self.item(node, value));
                }
                "symlink" => symlink = self.boolean(node, &key_path)?,
                "optional" => optional = self.boolean(node, &key_path)?,
                _ => return Err(self.unknown_key(&path, field, SECRET_KEYS)),
            }
        }
        let file = file.ok_or_else(|| {
            self.missing(
                &child(&path, "file"),
                &entry.node,
                "name the age-encrypted file, relative to the spec's folder".to_owned(),
            )
        })?;
        Ok(self.item(
            &entry.node,
            SecretSpec {
                name: entry.key.clone(),
                file,
                path: secret_path.unwrap_or_else(|| format!("{DEFAULT_SECRETS_DIR}/{}", entry.key)),
                mode: mode.unwrap_or(0o400),
                owner: owner.unwrap_or(Item {
                    value: "root".to_owned(),
                    span: Some(super::span_of(&entry.key_span)),
                }),
                group,
                symlink,
                optional,
            },
        ))
    }

    pub(super) fn tailscale(&self, node: &Node, path: &str) -> Result<TailscaleSpec, SpecError> {
        let mut tailscale = TailscaleSpec::default();
        for entry in self.table_of(node, path)? {
            let key_path = child(path, &entry.key);
            let node = &entry.node;
            match entry.key.as_str() {
                "enable" => (tailscale.enable, tailscale.span) = self.switch(node, &key_path)?,
                "authKeyFile" => tailscale.auth_key_file = Some(self.image_dir(node, &key_path)?),
                "hostname" => {
                    tailscale.hostname = Some(self.checked(node, &key_path, check_hostname)?);
                }
                "stateDir" => tailscale.state_dir = self.image_dir(node, &key_path)?,
                "extraUpFlags" => tailscale.extra_up_flags = self.strings(node, &key_path)?,
                "extraDaemonFlags" => {
                    tailscale.extra_daemon_flags = self.strings(node, &key_path)?;
                }
                _ => return Err(self.unknown_key(path, entry, TAILSCALE_KEYS)),
            }
        }
        Ok(tailscale)
    }

    pub(super) fn services(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<Vec<Item<ServiceSpec>>, SpecError> {
        let entries = self.table_of(node, path)?;
        let mut services = Vec::with_capacity(entries.len());
        // Where each `after` list was written, to point at it when it is wrong.
        let mut after_nodes = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (service, after_node) = self.service(entry, path)?;
            services.push(service);
            after_nodes.push(after_node);
        }
        let names: BTreeSet<&str> = services.iter().map(|s| s.value.name.as_str()).collect();
        for (service, after_node) in services.iter().zip(&after_nodes) {
            for (position, name) in service.value.after.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    let key_path =
                        index(&child(&child(path, &service.value.name), "after"), position);
                    let span = after_node
                        .and_then(|node| match &node.value {
                            Value::Array(items) => items.get(position).map(|item| &item.span),
                            _ => None,
                        })
                        .unwrap_or(&node.span);
                    let help = match names.iter().copied().collect::<Vec<_>>() {
                        known if known.is_empty() => "no services are defined".to_owned(),
                        known => format!("the services are: {}", known.join(", ")),
                    };
                    return Err(self.invalid(
                        &key_path,
                        span,
                        Problem::new(format!("no service is named {name:?}"), help),
                    ));
                }
            }
        }
        if let Some(cycle) = find_cycle(&services) {
            let first = &services[cycle[0]];
            let after_node = after_nodes[cycle[0]].unwrap_or(node);
            let names: Vec<&str> = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(|&i| services[i].value.name.as_str())
                .collect();
            return Err(self.invalid(
                &child(&child(path, &first.value.name), "after"),
                &after_node.span,
                Problem::new(
                    format!("`after` forms a cycle: {}", names.join(" -> ")),
                    "remove one of the `after` entries so the services can start in order",
                ),
            ));
        }
        services.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(services)
    }

    fn service<'n>(
        &self,
        entry: &'n Entry,
        parent: &str,
    ) -> Result<(Item<ServiceSpec>, Option<&'n Node>), SpecError> {
        let path = child(parent, &entry.key);
        check_service_name(&entry.key)
            .map_err(|problem| self.invalid(&path, &entry.key_span, problem))?;
        let mut service = ServiceSpec {
            name: entry.key.clone(),
            argv: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            user: None,
            restart: Restart::OnFailure,
            restart_delay_ms: DEFAULT_RESTART_DELAY_MS,
            max_restarts: None,
            after: Vec::new(),
            readiness: None,
            log_file: None,
        };
        let mut argv_seen = false;
        let mut after_node = None;
        for field in self.table_of(&entry.node, &path)? {
            let key_path = child(&path, &field.key);
            let node = &field.node;
            match field.key.as_str() {
                "argv" => {
                    service.argv = self.strings(node, &key_path)?;
                    argv_seen = true;
                    if service.argv.first().is_none_or(String::is_empty) {
                        return Err(self.invalid(
                            &key_path,
                            &node.span,
                            Problem::new(
                                "argv names no program",
                                "write the program and its arguments, e.g. argv = [\"python3\", \"-m\", \"http.server\"]",
                            ),
                        ));
                    }
                }
                "env" => service.env = self.string_map(node, &key_path, check_env_name)?,
                "workingDir" => service.working_dir = Some(self.image_dir(node, &key_path)?),
                "user" => {
                    let value = self.checked(node, &key_path, check_account_or_id)?;
                    service.user = Some(self.item(node, value));
                }
                "restart" => service.restart = self.checked(node, &key_path, check_restart)?,
                "restartDelay" => service.restart_delay_ms = self.seconds(node, &key_path, true)?,
                "maxRestarts" => {
                    let value = self.integer(node, &key_path, "a non-negative integer")?;
                    service.max_restarts = Some(u32::try_from(value).map_err(|_| {
                        self.invalid(
                            &key_path,
                            &node.span,
                            Problem::new(
                                format!("{value} is not a number of restarts"),
                                "use 0 or more, or leave maxRestarts out for no limit",
                            ),
                        )
                    })?);
                }
                "after" => {
                    service.after = self.strings(node, &key_path)?;
                    after_node = Some(node);
                }
                "readiness" => service.readiness = Some(self.readiness(node, &key_path)?),
                "logFile" => service.log_file = Some(self.image_dir(node, &key_path)?),
                _ => return Err(self.unknown_key(&path, field, SERVICE_KEYS)),
            }
        }
        if !argv_seen {
            return Err(self.missing(
                &child(&path, "argv"),
                &entry.node,
                "give the service's command line, e.g. argv = [\"/bin/server\", \"--port=8000\"]"
                    .to_owned(),
            ));
        }
        Ok((self.item(&entry.node, service), after_node))
    }

    fn readiness(&self, node: &Node, path: &str) -> Result<Readiness, SpecError> {
        let mut check = None;
        let mut timeout_ms = DEFAULT_READINESS_TIMEOUT_MS;
        let both = || {
            self.invalid(
                path,
                &node.span,
                Problem::new(
                    "readiness has both `tcp` and `exec`",
                    "keep one way to tell the service is ready",
                ),
            )
        };
        for entry in self.table_of(node, path)? {
            let key_path = child(path, &entry.key);
            match entry.key.as_str() {
                "tcp" => {
                    let port = self.port_number(&entry.node, &key_path)?;
                    if check.replace(ReadinessCheck::Tcp(port)).is_some() {
                        return Err(both());
                    }
                }
                "exec" => {
                    let argv = self.strings(&entry.node, &key_path)?;
                    if argv.first().is_none_or(String::is_empty) {
                        return Err(self.invalid(
                            &key_path,
                            &entry.node.span,
                            Problem::new(
                                "exec names no program",
                                "write a command that exits 0 when the service is ready",
                            ),
                        ));
                    }
                    if check.replace(ReadinessCheck::Exec(argv)).is_some() {
                        return Err(both());
                    }
                }
                "timeout" => timeout_ms = self.seconds(&entry.node, &key_path, false)?,
                _ => return Err(self.unknown_key(path, entry, READINESS_KEYS)),
            }
        }
        let check = check.ok_or_else(|| {
            self.missing(
                &child(path, "tcp"),
                node,
                "say how to tell the service is ready: tcp = PORT or exec = [\"cmd\", ...]"
                    .to_owned(),
            )
        })?;
        Ok(Readiness { check, timeout_ms })
    }

    /// Seconds (an integer or a float) as milliseconds; zero only when `zero_ok`.
    pub(super) fn seconds(&self, node: &Node, path: &str, zero_ok: bool) -> Result<u64, SpecError> {
        let seconds = match node.value {
            Value::Integer { value, .. } => value as f64,
            Value::Float(value) => value,
            _ => return Err(self.wrong_type(path, node, "a number of seconds")),
        };
        let limit = u64::MAX as f64 / 1000.0;
        let valid =
            seconds.is_finite() && seconds >= 0.0 && seconds < limit && (zero_ok || seconds > 0.0);
        if !valid {
            let least = if zero_ok { "0 or more" } else { "more than 0" };
            return Err(self.invalid(
                path,
                &node.span,
                Problem::new(
                    format!(
                        "{} is not a usable number of seconds",
                        &self.text()[node.span.clone()]
                    ),
                    format!("write {least} seconds, e.g. 1.5"),
                ),
            ));
        }
        Ok((seconds * 1000.0).round() as u64)
    }

    /// `nixConfig`: the text of `nix.conf`, or a table rendered as its lines.
    pub(super) fn nix_config(&self, node: &Node, path: &str) -> Result<String, SpecError> {
        if let Value::String(_) = node.value {
            return self.text_value(node, path).map(|item| item.value);
        }
        let expected = self.expect(
            "a string or a table of settings",
            "a string or an object of settings",
        );
        let mut text = String::new();
        for entry in self.table(node, path, expected)? {
            let key_path = child(path, &entry.key);
            check_nix_setting_name(&entry.key)
                .map_err(|problem| self.invalid(&key_path, &entry.key_span, problem))?;
            let value = match &entry.node.value {
                Value::Array(_) => self.strings(&entry.node, &key_path)?.join(" "),
                _ => self.nix_scalar(&entry.node, &key_path)?,
            };
            if value.contains('\n') {
                return Err(self.invalid(
                    &key_path,
                    &entry.node.span,
                    Problem::new("the value has a line break", "write the value on one line"),
                ));
            }
            text.push_str(&format!("{} = {value}\n", entry.key));
        }
        Ok(text)
    }

    fn nix_scalar(&self, node: &Node, path: &str) -> Result<String, SpecError> {
        match &node.value {
            Value::String(text) => {
                check_no_nul(text).map_err(|problem| self.invalid(path, &node.span, problem))?;
                Ok(text.clone())
            }
            Value::Integer { value, .. } => Ok(value.to_string()),
            Value::Bool(value) => Ok(value.to_string()),
            _ => Err(self.wrong_type(path, node, "a string, integer, boolean or array of strings")),
        }
    }

    pub(super) fn nix(&self, node: &Node, path: &str) -> Result<bool, SpecError> {
        let mut enable = false;
        for entry in self.table_of(node, path)? {
            match entry.key.as_str() {
                "enable" => enable = self.boolean(&entry.node, &child(path, "enable"))?,
                _ => return Err(self.unknown_key(path, entry, NIX_KEYS)),
            }
        }
        Ok(enable)
    }

    /// `home`: one package, written like a `systemPackages` entry.
    pub(super) fn home(&self, node: &Node, path: &str) -> Result<Item<PackageRef>, SpecError> {
        let package = self.package(node, path)?;
        Ok(self.item(node, package))
    }
}

/// The first cycle in the services' `after` graph, as indexes in order, if any.
fn find_cycle(services: &[Item<ServiceSpec>]) -> Option<Vec<usize>> {
    let position: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.value.name.as_str(), i))
        .collect();
    // 0: not visited, 1: on the current path, 2: done.
    let mut state = vec![0u8; services.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        node: usize,
        services: &[Item<ServiceSpec>],
        position: &BTreeMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[node] = 1;
        stack.push(node);
        for name in &services[node].value.after {
            let Some(&next) = position.get(name.as_str()) else {
                continue;
            };
            if state[next] == 1 {
                let start = stack.iter().position(|&i| i == next).unwrap_or(0);
                return Some(stack[start..].to_vec());
            }
            if state[next] == 0 {
                if let Some(cycle) = visit(next, services, position, state, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        state[node] = 2;
        None
    }
    (0..services.len()).find_map(|start| {
        (state[start] == 0)
            .then(|| visit(start, services, &position, &mut state, &mut stack))
            .flatten()
    })
}

fn check_absolute(text: &str) -> Result<String, Problem> {
    check_no_nul(text)?;
    if !text.starts_with('/') {
        return Err(Problem::new(
            format!("{text:?} is not an absolute path"),
            "write the full path in the image, starting with /",
        ));
    }
    if text.split('/').any(|part| part == "..") {
        return Err(Problem::new(
            format!("{text:?} contains `..`"),
            "write the path without `..`",
        ));
    }
    Ok(text.to_owned())
}

/// Account and group names as `useradd` accepts them by default.
fn check_account_name(name: &str) -> Result<(), Problem> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !first_ok || !rest_ok || name.len() > 32 {
        return Err(Problem::new(
            format!("{name:?} is not an account name"),
            "use up to 32 lowercase letters, digits, _ and -, starting with a letter or _",
        ));
    }
    Ok(())
}

fn check_group_name(name: &str) -> Result<String, Problem> {
    check_account_name(name).map(|()| name.to_owned())
}

/// An account or group name, or a numeric uid or gid.
fn check_account_or_id(text: &str) -> Result<String, Problem> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u32>().is_ok() {
        return Ok(text.to_owned());
    }
    check_account_name(text).map(|()| text.to_owned())
}

/// A name that becomes a file name: no `/`, not `.` or `..`.
fn check_file_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Problem::new(
            format!("{name:?} cannot name a file"),
            "use a name without `/`, e.g. \"db-password\"",
        ));
    }
    Ok(())
}

fn check_service_name(name: &str) -> Result<(), Problem> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if !valid || name.starts_with('.') {
        return Err(Problem::new(
            format!("{name:?} is not a service name"),
            "use letters, digits and _ - . @, e.g. \"web\" or \"worker-1\"",
        ));
    }
    Ok(())
}

fn check_restart(text: &str) -> Result<Restart, Problem> {
    match text {
        "never" => Ok(Restart::Never),
        "on-failure" => Ok(Restart::OnFailure),
        "always" => Ok(Restart::Always),
        _ => Err(Problem::new(
            format!("unknown restart policy {text:?}"),
            "use \"never\", \"on-failure\" (the default) or \"always\"",
        )),
    }
}

/// One `authorized_keys` line: `[options] TYPE BASE64 [comment]`, on one line.
fn check_authorized_key(text: &str) -> Result<String, Problem> {
    let help = "paste one public key per string, e.g. \"ssh-ed25519 AAAAC3Nz... me@laptop\"";
    if text.contains('\n') || text.contains('\r') || text.contains('\0') {
        return Err(Problem::new("the key spans more than one line", help));
    }
    let has_key_type = text.split_whitespace().any(|word| {
        word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
    });
    if !has_key_type || text.split_whitespace().count() < 2 {
        return Err(Problem::new(
            format!(
                "{:?} is not an SSH public key",
                text.chars().take(40).collect::<String>()
            ),
            help,
        ));
    }
    Ok(text.to_owned())
}

/// A host name tailscale accepts: letters, digits and `-`, up to 63 characters.
fn check_hostname(text: &str) -> Result<String, Problem> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(Problem::new(
            format!("{text:?} is not a host name"),
            "use up to 63 letters, digits and -, not starting with -",
        ));
    }
    Ok(text.to_owned())
}

fn check_nix_setting_name(name: &str) -> Result<(), Problem> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(Problem::new(
            format!("{name:?} is not a nix.conf setting"),
            "use a setting name such as \"experimental-features\" or \"substituters\"",
        ));
    }
    Ok(())
}
