//! What a Docker daemon does with its containers when it stops and when it starts again, as moby
//! does it (read in moby/moby @b985e231), and what kind's node makes of it.
//!
//! * Stopping: each running container gets its stop signal, then SIGKILL after its timeout.
//!   kind's node image sets `STOPSIGNAL SIGRTMIN+3` ("systemd exits on SIGRTMIN+3, not SIGTERM",
//!   kind `images/base/Dockerfile:243-245`): a node whose systemd halts in time exits 0, one
//!   killed at the timeout exits 137. A `docker stop` by hand sends the same signal; `docker kill`
//!   exits 137.
//! * Starting (`daemon.restore`, moby `daemon/daemon.go:557`): a container is started again iff
//!   `ShouldRestart()` (`daemon/container/container.go:544`), the restart manager's rule
//!   (`daemon/internal/restartmanager/restartmanager.go:80-91`): `always`; `unless-stopped` unless
//!   it was stopped by hand; `on-failure[:N]` only after a non-zero exit.
//! * kind creates every node with `--restart=on-failure:1` (kind
//!   `pkg/cluster/internal/providers/docker/provision.go:143-167`): a node that exited 0 stays
//!   `exited` when Docker comes back. kind#3244 reports exactly that after Docker Desktop restarts
//!   on WSL2; `SimOptions::node_left_exited` is that world (the node halts cleanly, exit 0).
//!
//! The legacy socat proxies of the seed run `--restart unless-stopped`.

use serde_json::{Value, json};

use crate::world::Container;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    UnlessStopped,
    OnFailure(u32),
}

pub fn is_node(c: &Container) -> bool {
    c.labels.contains_key("io.x-k8s.kind.cluster")
}

pub fn policy(c: &Container) -> Policy {
    if is_node(c) { Policy::OnFailure(1) } else { Policy::UnlessStopped }
}

/// `HostConfig.RestartPolicy` as `docker inspect` shows it.
pub fn policy_json(c: &Container) -> Value {
    match policy(c) {
        Policy::OnFailure(n) => json!({"Name": "on-failure", "MaximumRetryCount": n}),
        Policy::UnlessStopped => json!({"Name": "unless-stopped", "MaximumRetryCount": 0}),
    }
}

/// Does a starting daemon start this (stopped) container again? (A fresh restart manager: its
/// count of restarts is the container's, 0 for a node kind started.)
pub fn restarts_with_daemon(c: &Container) -> bool {
    match policy(c) {
        Policy::UnlessStopped => !c.stopped_by_user,
        Policy::OnFailure(max) => c.exit_code != 0 && max > 0,
    }
}

/// The exit code of a container stopped with its stop signal (by the daemon going away or by
/// `docker stop`): a kind node halts cleanly (0) when `node_halts`, else it is killed at the
/// timeout (137), as everything else here is.
pub fn stop_exit_code(c: &Container, node_halts: bool) -> i32 {
    if is_node(c) && node_halts { 0 } else { 137 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    fn container(node: bool, exit_code: i32, by_user: bool) -> Container {
        let labels = if node {
            BTreeMap::from([("io.x-k8s.kind.cluster".to_string(), "bookstore".to_string())])
        } else {
            BTreeMap::new()
        };
        Container {
            id: "0".into(),
            name: "c".into(),
            image: "i".into(),
            labels,
            ports: vec![],
            running: false,
            created: SystemTime::UNIX_EPOCH,
            started: SystemTime::UNIX_EPOCH,
            finished: SystemTime::UNIX_EPOCH,
            exit_code,
            stopped_by_user: by_user,
            cmd: vec![],
        }
    }

    #[test]
    fn on_failure_restarts_only_after_a_non_zero_exit() {
        assert!(restarts_with_daemon(&container(true, 137, false)));
        assert!(restarts_with_daemon(&container(true, 137, true)), "on-failure ignores a manual stop");
        assert!(!restarts_with_daemon(&container(true, 0, false)), "a clean halt stays exited");
        assert!(restarts_with_daemon(&container(false, 0, false)));
        assert!(!restarts_with_daemon(&container(false, 137, true)), "unless-stopped, stopped by hand");
        assert_eq!(stop_exit_code(&container(true, 0, false), true), 0);
        assert_eq!(stop_exit_code(&container(true, 0, false), false), 137);
        assert_eq!(policy_json(&container(true, 0, false))["MaximumRetryCount"], 1);
    }
}
