//! The node engine, judged: whether the cluster's Nodes say they were built by the engine of the
//! run (kind chose it: [`crate::engine::choice`]), and whether a node that stopped was stopped
//! together with its engine (a restart, a reboot: start it) or while the engine ran (by hand:
//! leave it).

use crate::engine::Kind;

/// `kind://<provider>/<cluster>/<node>` (kind's kubelet `provider-id`,
/// `pkg/cluster/internal/kubeadm/config.go`) → (provider, cluster, node).
pub fn provider_id(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.strip_prefix("kind://")?.splitn(3, '/');
    let provider = parts.next().filter(|p| !p.is_empty())?;
    Some((provider, parts.next()?, parts.next()?))
}

/// The cluster's Nodes that name another engine than the one chosen: (node, providerID).
/// Nodes without a kind provider ID are not judged (a cluster kind did not make).
pub fn disagreeing(chosen: Kind, nodes: &[(String, String)]) -> Vec<(String, String)> {
    nodes
        .iter()
        .filter(|(_, id)| provider_id(id).is_some_and(|(p, _, _)| p != chosen.provider()))
        .cloned()
        .collect()
}

/// How a node container that is not running came to stop, as far as the watcher can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stop {
    /// Its state: `created` (podman's refresh after a reboot or a `podman machine` restart
    /// resets every container that had not exited to `created`: `libpod/runtime.go`,
    /// `container_internal.go` `refresh`), `exited`, …
    pub state: String,
    /// The watcher saw its exit: whether the event stream ended (the engine went away) within
    /// moments of it (a daemon stops its containers, then goes).
    pub seen: Option<bool>,
    /// Whether the engine's current run remembers its exit (its event ring or log, replayed
    /// around `State.FinishedAt`; a daemon's ring and podman's tmpfs log start empty); `None`
    /// when the engine cannot be asked (nerdctl has no `--since`).
    pub remembered: Option<bool>,
    /// The watcher saw it running, then the engine went away, and found it stopped on its return.
    pub across_outage: bool,
}

/// Stopped together with the engine (start it: kind's `on-failure:1` restarts only a node that
/// failed, and podman's nodes have no restart policy), or while the engine ran (leave it: a
/// `docker stop` by hand): the reason either way.
pub fn stopped_with_engine(s: &Stop) -> Result<String, String> {
    if s.state == "created" {
        return Ok("it is `created` again: the engine reset it when the machine restarted (podman's refresh after a reboot)".into());
    }
    match (s.seen, s.remembered) {
        (Some(true), _) => Ok("its exit came as the engine went away".into()),
        (Some(false), _) => Err("it exited while the engine ran".into()),
        (None, Some(false)) => {
            Ok("the engine's current run never saw it exit: it stopped before the engine started".into())
        }
        (None, Some(true)) => Err("the engine remembers its exit: it stopped while the engine ran".into()),
        (None, None) if s.across_outage => {
            Ok("it ran before the engine went away and was found stopped on its return".into())
        }
        (None, None) => {
            Err("it was found stopped while the engine ran (this engine cannot replay its exit)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_name_the_engine_that_built_the_cluster() {
        assert_eq!(
            provider_id("kind://podman/bookstore/bookstore-control-plane"),
            Some(("podman", "bookstore", "bookstore-control-plane"))
        );
        assert_eq!(provider_id("gce://p/z/n"), None);
        assert_eq!(provider_id("kind:///c/n"), None);
        let nodes = [
            (
                "bookstore-control-plane".to_string(),
                "kind://podman/bookstore/bookstore-control-plane".to_string(),
            ),
            ("other".to_string(), "".to_string()),
        ];
        assert_eq!(disagreeing(Kind::Docker, &nodes), [nodes[0].clone()]);
        assert!(disagreeing(Kind::Podman, &nodes).is_empty());
    }

    #[test]
    fn a_node_stopped_with_its_engine_is_started_one_stopped_by_hand_is_left() {
        let stop = |state: &str, seen, remembered, across_outage| Stop {
            state: state.into(),
            seen,
            remembered,
            across_outage,
        };
        assert!(stopped_with_engine(&stop("created", None, Some(true), false)).is_ok());
        assert!(stopped_with_engine(&stop("exited", Some(true), Some(true), false)).is_ok());
        assert!(stopped_with_engine(&stop("exited", Some(false), Some(false), true)).is_err());
        assert!(stopped_with_engine(&stop("exited", None, Some(false), false)).is_ok());
        assert!(stopped_with_engine(&stop("exited", None, Some(true), true)).is_err());
        assert!(stopped_with_engine(&stop("exited", None, None, true)).is_ok());
        assert!(stopped_with_engine(&stop("exited", None, None, false)).is_err());
    }
}
