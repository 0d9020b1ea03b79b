//! Which engine runs kind's nodes, chosen as kind chooses its provider: in
//! `pkg/internal/runtime/runtime.go` (`KIND_EXPERIMENTAL_PROVIDER`) and `pkg/cluster/provider.go`
//! (`DetectNodeProvider`: docker, then nerdctl or finch, then podman, each by its `-v` probe,
//! `providers/*/util.go` `IsAvailable`; `NewProvider` falls back to docker). A `docker` that is a
//! podman shim (Debian's `podman-docker`) prints `podman version …` and is not taken for Docker.
//! Pure: the probes' answers are given. (Here, not in `judge/`: the engine room knows which engine
//! runs the nodes, and the judge reads the engine's data types, not the other way round.)

use super::Kind;

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
}
