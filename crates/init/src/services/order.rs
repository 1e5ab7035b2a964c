//! The order services start in: each one once every service it comes `after` is
//! ready. The build checks the plan's services already; the system services the
//! start-up steps add (sshd, tailscaled) are checked with them here, so a clash or a
//! cycle is a plain error instead of a start that waits forever.

use std::collections::HashMap;

use gpubox_initplan::ServicePlan;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("two services are named `{0}`; rename the spec's service (sshd, tailscaled and tailscale-up are the init's own)")]
    Duplicate(String),
    #[error("service `{service}` comes after `{after}`, which is not a service; fix its `after`")]
    Unknown { service: String, after: String },
    #[error("services {} wait on each other in a cycle (or on one), so none of them can start; remove one of the cycle's `after` entries", .0.join(", "))]
    Cycle(Vec<String>),
}

/// For each service, the indices of the services it comes after.
pub fn dependencies(services: &[ServicePlan]) -> Result<Vec<Vec<usize>>, OrderError> {
    let mut index = HashMap::new();
    for (position, service) in services.iter().enumerate() {
        if index.insert(service.name.as_str(), position).is_some() {
            return Err(OrderError::Duplicate(service.name.clone()));
        }
    }
    let dependencies = services
        .iter()
        .map(|service| {
            service
                .after
                .iter()
                .map(|after| {
                    index
                        .get(after.as_str())
                        .copied()
                        .ok_or_else(|| OrderError::Unknown {
                            service: service.name.clone(),
                            after: after.clone(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Whatever cannot be placed after all of its dependencies is on, or behind, a cycle.
    let mut placed = vec![false; services.len()];
    while let Some(next) =
        (0..services.len()).find(|&i| !placed[i] && dependencies[i].iter().all(|&d| placed[d]))
    {
        placed[next] = true;
    }
    let stuck: Vec<String> = services
        .iter()
        .zip(&placed)
        .filter(|(_, placed)| !**placed)
        .map(|(service, _)| format!("`{}`", service.name))
        .collect();
    if stuck.is_empty() {
        Ok(dependencies)
    } else {
        Err(OrderError::Cycle(stuck))
    }
}

#[cfg(test)]
mod tests {
    use gpubox_initplan::Restart;

    use super::*;

    fn service(name: &str, after: &[&str]) -> ServicePlan {
        ServicePlan {
            name: name.to_owned(),
            argv: vec!["true".to_owned()],
            env: Default::default(),
            working_dir: None,
            user: None,
            restart: Restart::Never,
            restart_delay_ms: 0,
            max_restarts: None,
            after: after.iter().map(|a| (*a).to_owned()).collect(),
            readiness: None,
            log_file: None,
        }
    }

    #[test]
    fn dependencies_are_given_by_index() {
        let services = [
            service("web", &["db", "cache"]),
            service("db", &[]),
            service("cache", &["db"]),
        ];
        assert_eq!(
            dependencies(&services).unwrap(),
            vec![vec![1, 2], vec![], vec![1]]
        );
    }

    #[test]
    fn clashes_unknown_names_and_cycles_are_refused() {
        let error = dependencies(&[service("sshd", &[]), service("sshd", &[])]).unwrap_err();
        assert!(
            error.to_string().contains("two services are named `sshd`"),
            "{error}"
        );
        let error = dependencies(&[service("web", &["db"])]).unwrap_err();
        assert!(
            error.to_string().contains("`db`, which is not a service"),
            "{error}"
        );
        let services = [
            service("a", &["b"]),
            service("b", &["a"]),
            service("c", &[]),
        ];
        let error = dependencies(&services).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("services `a`, `b` wait on each other"),
            "{error}"
        );
    }
}
