//! The node engine, judged: which one kind would use (its provider), whether the cluster's
//! Nodes say they were built by it, and whether a node that stopped was stopped together with
//! its engine (a restart, a reboot: start it) or while the engine ran (by hand: leave it).
//!
//! kind picks its provider in `pkg/internal/runtime/runtime.go` (`KIND_EXPERIMENTAL_PROVIDER`)
//! and `pkg/cluster/provider.go` (`DetectNodeProvider`: docker, then nerdctl or finch, then
//! podman, each by its `-v` probe, `providers/*/util.go` `IsAvailable`; `NewProvider` falls back
//! to docker). A `docker` that is a podman shim (Debian's `podman-docker`) prints `podman
//! version …` and is not taken for Docker.

use crate::engine::Kind;

/// What kind would use, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub kind: Kind,
    /// The program run: `docker`, `podman`, `nerdctl`, `finch` or `nerdctl.lima`.
    pub program: String,
    /// Why, in kind's terms.
    pub why: String,
    /// A value of `KIND_EXPERIMENTAL_PROVIDER` kind ignores (it warns, and detects).
    pub ignored: Option<String>,
}

/// kind's choice. `provider` is `KIND_EXPERIMENTAL_PROVIDER`; `probe(program)` is the one line
/// `<program> -v` printed (`None`: not installed, failed, or not one line), asked only as far as
/// kind asks.
pub fn choose(provider: Option<&str>, probe: &mut dyn FnMut(&str) -> Option<String>) -> Choice {
    let pick = |kind: Kind, program: &str, why: String| Choice {
        kind,
        program: program.to_string(),
        why,
        ignored: None,
    };
    let set = |p: &str| format!("KIND_EXPERIMENTAL_PROVIDER={p}");
    let ignored = match provider.map(str::trim) {
        None | Some("") => None,
        Some("docker") => return pick(Kind::Docker, "docker", set("docker")),
        Some("podman") => return pick(Kind::Podman, "podman", set("podman")),
        Some(p @ ("nerdctl" | "finch" | "nerdctl.lima")) => return pick(Kind::Nerdctl, p, set(p)),
        Some(other) => Some(other.to_string()),
    };
    let says = |program: &str, line: &Option<String>, words: &str| {
        line.as_deref().filter(|l| l.starts_with(words)).map(|l| format!("`{program} -v` prints `{l}`"))
    };
    let mut choice = 'found: {
        let docker = probe("docker");
        if let Some(why) = says("docker", &docker, "Docker version") {
            break 'found pick(Kind::Docker, "docker", why);
        }
        // kind tries finch only when `nerdctl -v` fails or prints more than one line.
        let nerdctl = probe("nerdctl");
        if nerdctl.is_some() {
            if let Some(why) = says("nerdctl", &nerdctl, "nerdctl version") {
                break 'found pick(Kind::Nerdctl, "nerdctl", why);
            }
        } else if let Some(why) = says("finch", &probe("finch"), "finch version") {
            break 'found pick(Kind::Nerdctl, "finch", why);
        }
        let podman = probe("podman");
        if let Some(why) = says("podman", &podman, "podman version") {
            let shim = docker.as_deref().map(|l| format!(" (`docker -v` prints `{l}`: not Docker)"));
            break 'found pick(Kind::Podman, "podman", format!("{why}{}", shim.unwrap_or_default()));
        }
        pick(
            Kind::Docker,
            "docker",
            "no engine answers kind's probes (`docker -v`, `nerdctl -v`, `podman -v`): kind falls back to docker"
                .to_string(),
        )
    };
    choice.ignored = ignored;
    choice
}

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

    fn probes<'a>(lines: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<String> + 'a {
        move |p: &str| lines.iter().find(|(n, _)| *n == p).map(|(_, l)| l.to_string())
    }

    #[test]
    fn the_choice_is_kinds() {
        let docker = ("docker", "Docker version 28.2.2, build e6534b4");
        let podman = ("podman", "podman version 4.3.1");
        let choose = |env: Option<&str>, lines: &[(&str, &str)]| choose(env, &mut probes(lines));
        assert_eq!(choose(None, &[docker, podman]).kind, Kind::Docker);
        // Debian's podman-docker: `docker` runs podman.
        let shim = choose(None, &[("docker", "podman version 4.3.1"), podman]);
        assert_eq!((shim.kind, shim.program.as_str()), (Kind::Podman, "podman"));
        assert!(shim.why.contains("not Docker"), "{}", shim.why);
        assert_eq!(choose(None, &[podman]).kind, Kind::Podman);
        let finch = choose(None, &[("finch", "finch version v1.2.0"), podman]);
        assert_eq!((finch.kind, finch.program.as_str()), (Kind::Nerdctl, "finch"));
        // An installed nerdctl that is not nerdctl: kind does not try finch then.
        let odd = choose(None, &[("nerdctl", "something else"), ("finch", "finch version v1"), podman]);
        assert_eq!(odd.kind, Kind::Podman);
        let none = choose(None, &[]);
        assert_eq!(none.kind, Kind::Docker);
        assert!(none.why.contains("falls back"), "{}", none.why);
        let set = choose(Some("nerdctl.lima"), &[docker]);
        assert_eq!((set.kind, set.program.as_str()), (Kind::Nerdctl, "nerdctl.lima"));
        assert_eq!(choose(Some("podman"), &[docker]).kind, Kind::Podman);
        let bad = choose(Some("lxc"), &[docker]);
        assert_eq!((bad.kind, bad.ignored.as_deref()), (Kind::Docker, Some("lxc")));
    }

    #[test]
    fn only_the_probes_kind_makes_are_made() {
        let mut asked = Vec::new();
        let _ = choose(None, &mut |p: &str| {
            asked.push(p.to_string());
            (p == "docker").then(|| "Docker version 27.5.1, build 9f9e405".to_string())
        });
        assert_eq!(asked, ["docker"]);
        asked.clear();
        let _ = choose(Some("podman"), &mut |p: &str| {
            asked.push(p.to_string());
            None
        });
        assert!(asked.is_empty());
    }

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
