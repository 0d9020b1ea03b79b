//! The plan: which steps run, in which order, and which workload waits for which. Pure data built
//! from the stack; no IO happens here. The executor (`steps`) and `--dry-run` both read it.
//!
//! Size: ~440 lines of plan; the rest is its tests, as data.

use std::time::Duration;

pub mod converge;
pub mod images;
pub mod istio;

pub use images::{Image, ImageSource};

use crate::stack::{Role, Stack};

/// How workload restarts are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Each workload restarts the moment what it needs is Ready (the default).
    Graph,
    /// The seed's phases: every database Ready before any application restarts.
    Phased,
}

/// The seed's pause after ztunnel's rollout (`sleep 10` in restart-guide.md step 1).
pub const SEED_SETTLE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Tools on PATH, Docker answering, the cluster and its node container, port bindings.
    Preflight(Preflight),
    /// The kube API answers `/readyz` (it can refuse for a while after a Docker restart).
    WaitApi,
    /// Every workload of the stack exists and the connector secret has every key: the
    /// cluster-side input, checked before the first change.
    CheckCluster,
    /// Remove the legacy socat proxy containers (the first change, after every check).
    LegacyProxies,
    /// `rollout restart` ztunnel, wait for it, then settle (`recover`: the guide's step 1).
    RestartMesh { settle: Duration },
    /// Restart ztunnel on these nodes only: each one's pods there deleted (its DaemonSet
    /// recreates them on that node), a new one Ready there, then settle (`up`'s remedy).
    RestartZtunnel { nodes: Vec<converge::NodeRestart>, settle: Duration },
    /// Restart the workloads and register the connectors, each when what it waits for is Ready.
    Rollout(Graph),
    /// Register the connectors only (the `connectors` command).
    Connectors,
    /// Check every route through the host ports.
    Smoke,
    // ---- the convergent `up` (the cluster and its stack exist) ----
    /// Remove these legacy socat proxy containers (found by the observation).
    RemoveLegacy(Vec<String>),
    /// Report each decision of the remedy (what is restarted and kept, and why).
    Decide(converge::Remedy),
    /// The smoke test; if a route still fails, escalate once (observe again, restart what backs
    /// the failing routes, ztunnel first if its evidence points there), then check again.
    Verify { escalate: bool, order: Order, settle: Duration },
    // ---- the bootstrap (`up` with no cluster, or an incomplete stack) ----
    /// istioctl on PATH, the app images present or buildable, every workload deployed by a
    /// manifest, and (when creating) the host ports free: all before anything is created.
    BootstrapChecks { ports: bool },
    /// The bootstrap on the graph: the images fetched on the host from the start, `kind create`
    /// (when `create`), then every task of `graph` the moment what it waits for is done.
    Bootstrap { create: bool, graph: Graph },
    /// `kind create cluster`.
    CreateCluster,
    /// Gateway API CRDs, then wait until Established.
    GatewayCrds,
    /// `istioctl install`, then wait for istiod, istio-cni-node and ztunnel.
    InstallIstio,
    /// Generate the missing Secrets (kept when they exist).
    Secrets,
    /// Build (if needed) and `kind load` our images.
    Images,
    /// Apply one tier of manifests (index into `bootstrap.tiers`) and wait for it.
    Tier(usize),
    // ---- a node Docker did not start again (`up` on a cluster whose node is exited) ----
    /// `docker start` every stopped node of the cluster, control planes first; then wait for
    /// the kube API as a node that has just booted needs.
    StartNodes,
    /// Observe again and run what `up` plans then (after a node start: every pod restarted in
    /// place, so ztunnel and what the start left stale).
    Converge { order: Order, settle: Option<Duration>, tiers: bool },
}

impl Step {
    /// Whether running it may change the cluster (or the host's containers): a command with
    /// such a step takes the cluster's lock.
    pub fn changes(&self) -> bool {
        match self {
            Step::Preflight(_)
            | Step::WaitApi
            | Step::CheckCluster
            | Step::Smoke
            | Step::Decide(_)
            | Step::BootstrapChecks { .. } => false,
            Step::LegacyProxies
            | Step::RestartMesh { .. }
            | Step::RestartZtunnel { .. }
            | Step::Rollout(_)
            | Step::Connectors
            | Step::RemoveLegacy(_)
            // The escalation restarts what backs a failing route.
            | Step::Verify { .. }
            | Step::Bootstrap { .. }
            | Step::CreateCluster
            | Step::GatewayCrds
            | Step::InstallIstio
            | Step::Secrets
            | Step::Images
            | Step::Tier(_)
            | Step::StartNodes
            | Step::Converge { .. } => true,
        }
    }
}

/// A preparation of the bootstrap graph: done beside the workloads, by the bootstrap's own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prep {
    /// The namespaces and every missing Secret, in one `kubectl apply` on stdin.
    Secrets,
    /// The Gateway API CRDs, Established.
    Crds,
    /// `istioctl install`, then istiod, istio-cni-node and ztunnel rolled out.
    Istio,
    /// Image `i` of `Graph::images` in the node (`kind load`ed; or given up on, with a warning,
    /// so the kubelet pulls it).
    Image(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preflight {
    pub tools: Vec<&'static str>,
    /// `docker info`.
    pub docker: bool,
    /// The cluster exists (`kind get clusters`) and its node runs with every port mapping
    /// (skipped when `up`'s detection established them).
    pub cluster: bool,
}

/// What `up`'s detection already established, so the plan does not check it twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// Tools found, Docker answering, the cluster listed by kind, its node running with every
    /// port mapping.
    pub cluster_listed: bool,
    /// The kube API answered.
    pub api_ready: bool,
}

/// A node of the rollout graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Task {
    /// Index into `Stack::workloads`: `rollout restart`, then wait for the rollout.
    Restart(usize),
    /// Index into `Stack::workloads`: no restart, wait until its current rollout is done (`up`
    /// leaves it alone, but what needs it waits for it).
    Await(usize),
    /// Index into `Stack::workloads`: delete its pods in the kubelet's back-off (`Graph::deletes`),
    /// then wait until its ReplicaSet's new pods are Ready.
    Replace(usize),
    /// Index into `Stack::connect.connectors`: register and wait for RUNNING.
    Register(usize),
    /// Bootstrap: index into `bootstrap.units`: apply its documents, then wait until its
    /// deployments are rolled out (and its gateways Programmed).
    Apply(usize),
    /// Bootstrap: a preparation the units wait for.
    Prep(Prep),
}

impl Task {
    /// The workload's or the connector's name.
    pub fn name(self, stack: &Stack) -> &str {
        match self {
            Task::Restart(i) | Task::Await(i) | Task::Replace(i) => &stack.workloads[i].name,
            Task::Register(i) => &stack.connect.connectors[i].name,
            Task::Apply(u) => &stack.bootstrap.units[u].name,
            Task::Prep(Prep::Secrets) => "the Secrets",
            Task::Prep(Prep::Crds) => "the Gateway API CRDs",
            Task::Prep(Prep::Istio) => "Istio",
            Task::Prep(Prep::Image(_)) => "an image",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    pub order: Order,
    /// Each task and the tasks that must be done before it starts.
    pub tasks: Vec<(Task, Vec<Task>)>,
    /// The bootstrap's images, in the order they are fetched: the slowest chains first (empty
    /// for a recovery).
    pub images: Vec<Image>,
    /// The pods each [`Task::Replace`] deletes, by workload index (observed in the kubelet's
    /// back-off; each one its controller recreates).
    pub deletes: std::collections::BTreeMap<usize, Vec<crate::cluster::PodRestart>>,
}

impl Graph {
    pub fn after(&self, task: Task) -> &[Task] {
        self.tasks.iter().find(|(t, _)| *t == task).map(|(_, a)| a.as_slice()).unwrap_or(&[])
    }

    /// Tasks grouped in waves: a task's wave is one more than the latest wave it waits for.
    /// Used to print the plan; the executor starts each task as soon as it may.
    pub fn waves(&self) -> Vec<Vec<Task>> {
        let mut depth: Vec<(Task, usize)> = Vec::new();
        let mut remaining: Vec<&(Task, Vec<Task>)> = self.tasks.iter().collect();
        while !remaining.is_empty() {
            let before = remaining.len();
            remaining.retain(|(task, after)| {
                let known: Option<Vec<usize>> =
                    after.iter().map(|a| depth.iter().find(|(t, _)| t == a).map(|(_, d)| *d)).collect();
                match known {
                    Some(ds) => {
                        depth.push((*task, ds.into_iter().map(|d| d + 1).max().unwrap_or(0)));
                        false
                    }
                    None => true,
                }
            });
            if remaining.len() == before {
                break; // a cycle: rejected when the stack loads, so unreachable in practice
            }
        }
        let mut waves: Vec<Vec<Task>> = Vec::new();
        for (task, d) in depth {
            if waves.len() <= d {
                waves.resize(d + 1, Vec::new());
            }
            waves[d].push(task);
        }
        waves
    }
}

/// What to run for `recover` (and for `up` when the cluster and its stack exist).
pub fn recover(stack: &Stack, order: Order, settle: Option<Duration>, known: Known) -> Vec<Step> {
    let settle = settle.unwrap_or(match order {
        Order::Graph => stack.mesh.settle,
        Order::Phased => SEED_SETTLE,
    });
    let tools = if known.cluster_listed { vec![] } else { vec!["kind", "kubectl", "docker"] };
    let mut steps = vec![Step::Preflight(Preflight { tools, docker: !known.cluster_listed, cluster: true })];
    if !known.api_ready {
        steps.push(Step::WaitApi);
    }
    steps.extend([
        Step::CheckCluster,
        Step::LegacyProxies,
        Step::RestartMesh { settle },
        Step::Rollout(graph(stack, order)),
        Step::Smoke,
    ]);
    steps
}

/// What to run for `up` when the cluster and its stack exist: the remedy of one observation.
/// Only what the remedy restarts, waits for or registers is in it; a healthy stack gets the
/// smoke test alone.
pub fn converge_steps(
    stack: &Stack,
    remedy: converge::Remedy,
    legacy: Vec<String>,
    order: Order,
    settle: Option<Duration>,
) -> Vec<Step> {
    let settle = settle.unwrap_or(match order {
        Order::Graph => stack.mesh.settle,
        Order::Phased => SEED_SETTLE,
    });
    let mut steps = Vec::new();
    if !legacy.is_empty() {
        steps.push(Step::RemoveLegacy(legacy));
    }
    let graph = remedy.graph(stack, order);
    let ztunnel = (remedy.ztunnel.act == converge::Act::Restart).then(|| remedy.ztunnel_nodes.clone());
    steps.push(Step::Decide(remedy));
    if let Some(nodes) = ztunnel {
        steps.push(Step::RestartZtunnel { nodes, settle });
    }
    if !graph.tasks.is_empty() {
        steps.push(Step::Rollout(graph));
    }
    steps.push(Step::Verify { escalate: true, order, settle });
    steps
}

/// What to run for `up` when the cluster's node container is not running: start it (Docker
/// does not restart a kind node that exited 0: `--restart=on-failure:1`), then converge as
/// after any restart.
pub fn start_nodes(order: Order, settle: Option<Duration>, tiers: bool) -> Vec<Step> {
    vec![Step::StartNodes, Step::Converge { order, settle, tiers }]
}

/// What to run for `up` when there is no cluster (`create`), or when the cluster exists but its
/// stack is incomplete (a bootstrap that stopped halfway: every task is idempotent): the graph.
/// `istio`: what istioctl's install and gateways run (`istioctl manifest generate`).
pub fn bootstrap(stack: &Stack, create: bool, istio: &istio::Images) -> Vec<Step> {
    vec![
        Step::Preflight(Preflight {
            tools: vec!["kind", "kubectl", "docker", "istioctl"],
            docker: !create,
            cluster: false,
        }),
        Step::BootstrapChecks { ports: create },
        Step::Bootstrap { create, graph: bootstrap_graph(stack, istio) },
        Step::Smoke,
    ]
}

/// `up --tiers`: the bootstrap before the graph, tier by tier (kept for comparison).
pub fn bootstrap_tiers(stack: &Stack, create: bool) -> Vec<Step> {
    let mut steps = vec![
        Step::Preflight(Preflight {
            tools: vec!["kind", "kubectl", "docker", "istioctl"],
            docker: !create,
            cluster: false,
        }),
        Step::BootstrapChecks { ports: create },
    ];
    if create {
        steps.push(Step::CreateCluster);
    }
    steps.extend([
        Step::WaitApi,
        Step::GatewayCrds,
        Step::InstallIstio,
        Step::Tier(0),
        Step::Secrets,
        Step::Images,
    ]);
    steps.extend((1..stack.bootstrap.tiers.len()).map(Step::Tier));
    steps.extend([Step::Connectors, Step::Smoke]);
    steps
}

/// What to run for `connectors`.
pub fn connectors() -> Vec<Step> {
    vec![
        Step::Preflight(Preflight { tools: vec!["kubectl"], docker: false, cluster: false }),
        Step::Connectors,
    ]
}

/// What to run for `smoke`.
pub fn smoke() -> Vec<Step> {
    vec![Step::Smoke]
}

/// The workloads workload `i` `needs` (indices), the one dependency graph of recovery and
/// bootstrap.
fn needs(stack: &Stack, i: usize) -> Vec<usize> {
    stack.workloads[i].needs.iter().filter_map(|n| stack.index(n)).collect()
}

/// The workloads connector `i` waits for: the Connect worker and the databases it reads.
fn connector_needs(stack: &Stack, i: usize) -> Vec<usize> {
    std::iter::once(stack.connect.workload.as_str())
        .chain(stack.connect.connectors[i].needs.iter().map(String::as_str))
        .filter_map(|n| stack.index(n))
        .collect()
}

/// The rollout graph: workloads, then the connectors after Debezium and their databases.
pub fn graph(stack: &Stack, order: Order) -> Graph {
    let databases: Vec<Task> = stack
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.role == Role::Database)
        .map(|(i, _)| Task::Restart(i))
        .collect();
    let mut tasks = Vec::new();
    for (i, w) in stack.workloads.iter().enumerate() {
        let mut after: Vec<Task> = match (order, w.role) {
            (Order::Phased, Role::App) => databases.clone(),
            (Order::Phased, Role::Database) => Vec::new(),
            (Order::Graph, _) => needs(stack, i).into_iter().map(Task::Restart).collect(),
        };
        after.sort();
        after.dedup();
        tasks.push((Task::Restart(i), after));
    }
    let apps: Vec<Task> = stack
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.role == Role::App)
        .map(|(i, _)| Task::Restart(i))
        .collect();
    for (i, _) in stack.connect.connectors.iter().enumerate() {
        let mut after: Vec<Task> = match order {
            // The seed registers connectors after every workload has been restarted.
            Order::Phased => databases.iter().chain(apps.iter()).copied().collect(),
            Order::Graph => connector_needs(stack, i).into_iter().map(Task::Restart).collect(),
        };
        after.sort();
        after.dedup();
        tasks.push((Task::Register(i), after));
    }
    Graph { order, tasks, images: Vec::new(), deletes: Default::default() }
}

/// The bootstrap graph: the same `needs` as the recovery, with each workload applied (its unit)
/// instead of restarted. Every unit waits for Istio (no pod of an ambient namespace before
/// istiod, istio-cni and ztunnel are Ready), the namespaces and Secrets, its images in the node,
/// and the units of what its workload needs; the shared objects (the Gateway, the routes) for the
/// Gateway API CRDs too. Istio waits for its own images.
pub fn bootstrap_graph(stack: &Stack, istio: &istio::Images) -> Graph {
    let b = &stack.bootstrap;
    let unit_of = |w: usize| b.units.iter().position(|u| u.workload == Some(w));
    let images = images::ranked(stack, istio);
    let image_task =
        |name: &str| images.iter().position(|i| i.name == name).map(|i| Task::Prep(Prep::Image(i)));

    let mut tasks: Vec<(Task, Vec<Task>)> =
        vec![(Task::Prep(Prep::Secrets), vec![]), (Task::Prep(Prep::Crds), vec![])];
    for i in 0..images.len() {
        tasks.push((Task::Prep(Prep::Image(i)), vec![]));
    }
    tasks.push((Task::Prep(Prep::Istio), istio.installed().iter().filter_map(|n| image_task(n)).collect()));
    for (u, unit) in b.units.iter().enumerate() {
        let mut after = vec![Task::Prep(Prep::Istio), Task::Prep(Prep::Secrets)];
        after.extend(unit.images.iter().filter_map(|n| image_task(n)));
        if let Some(w) = unit.workload {
            after.extend(needs(stack, w).into_iter().filter_map(unit_of).map(Task::Apply));
        }
        if unit.shared() {
            after.push(Task::Prep(Prep::Crds));
            after.extend(istio.gateway.iter().filter_map(|n| image_task(n)));
        }
        after.sort();
        after.dedup();
        tasks.push((Task::Apply(u), after));
    }
    for c in 0..stack.connect.connectors.len() {
        let mut after: Vec<Task> =
            connector_needs(stack, c).into_iter().filter_map(unit_of).map(Task::Apply).collect();
        after.sort();
        after.dedup();
        tasks.push((Task::Register(c), after));
    }
    Graph { order: Order::Graph, tasks, images, deletes: Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

    fn names(stack: &Stack, tasks: &[Task]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| match t {
                Task::Restart(i) | Task::Await(i) | Task::Replace(i) => stack.workloads[*i].name.clone(),
                Task::Register(i) => stack.connect.connectors[*i].name.clone(),
                Task::Apply(u) => stack.bootstrap.units[*u].name.clone(),
                Task::Prep(p) => format!("{p:?}"),
            })
            .collect()
    }

    #[test]
    fn recovery_steps_follow_the_seed() {
        let stack = load(Source::Embedded).unwrap();
        let steps = recover(&stack, Order::Graph, None, Known::default());
        let kinds: Vec<&str> = steps
            .iter()
            .map(|s| match s {
                Step::Preflight(_) => "preflight",
                Step::WaitApi => "api",
                Step::CheckCluster => "check",
                Step::LegacyProxies => "proxies",
                Step::RestartMesh { .. } => "ztunnel",
                Step::Rollout(_) => "rollout",
                Step::Connectors => "connectors",
                Step::Smoke => "smoke",
                _ => "bootstrap",
            })
            .collect();
        // Nothing changes before the cluster-side input (workloads, secret keys) is checked: the
        // legacy proxies go only after it.
        assert_eq!(kinds, ["preflight", "api", "check", "proxies", "ztunnel", "rollout", "smoke"]);
        assert_eq!(steps[4], Step::RestartMesh { settle: Duration::ZERO });
        let phased = recover(&stack, Order::Phased, None, Known::default());
        assert_eq!(phased[4], Step::RestartMesh { settle: SEED_SETTLE });
        let overridden = recover(&stack, Order::Phased, Some(Duration::ZERO), Known::default());
        assert_eq!(overridden[4], Step::RestartMesh { settle: Duration::ZERO });
    }

    #[test]
    fn graph_order_starts_each_workload_when_its_needs_are_ready() {
        let stack = load(Source::Embedded).unwrap();
        let g = graph(&stack, Order::Graph);
        let waves: Vec<Vec<String>> = g.waves().iter().map(|w| names(&stack, w)).collect();
        assert_eq!(
            waves,
            [
                vec![
                    "ecom-db",
                    "inventory-db",
                    "keycloak-db",
                    "analytics-db",
                    "ui-service",
                    "kafka",
                    "redis",
                    "pgadmin",
                    "flink-jobmanager",
                    "prometheus"
                ],
                vec![
                    "ecom-service",
                    "inventory-service",
                    "keycloak",
                    "debezium",
                    "flink-taskmanager",
                    "superset"
                ],
                vec!["ecom-connector", "inventory-connector"],
            ]
        );
        let ecom_connector = Task::Register(0);
        assert_eq!(names(&stack, g.after(ecom_connector)), ["ecom-db", "debezium"]);
    }

    #[test]
    fn phased_order_is_the_seeds_every_database_before_any_app() {
        let stack = load(Source::Embedded).unwrap();
        let g = graph(&stack, Order::Phased);
        let waves: Vec<Vec<String>> = g.waves().iter().map(|w| names(&stack, w)).collect();
        assert_eq!(waves.len(), 3);
        assert_eq!(waves[0], ["ecom-db", "inventory-db", "keycloak-db", "analytics-db"]);
        assert_eq!(waves[1].len(), 12);
        assert_eq!(waves[2], ["ecom-connector", "inventory-connector"]);
    }

    #[test]
    fn up_does_not_check_twice_what_detection_established() {
        let stack = load(Source::Embedded).unwrap();
        let steps = recover(&stack, Order::Graph, None, Known { cluster_listed: true, api_ready: true });
        assert_eq!(steps[0], Step::Preflight(Preflight { tools: vec![], docker: false, cluster: true }));
        assert_eq!(steps[1], Step::CheckCluster);
        assert!(matches!(steps[3], Step::RestartMesh { .. }));
    }

    #[test]
    fn a_bootstrap_runs_the_recoverys_graph_with_each_workload_applied() {
        let stack = load(Source::Embedded).unwrap();
        let steps = bootstrap(&stack, true, &istio::sample());
        assert_eq!(steps[1], Step::BootstrapChecks { ports: true });
        let Step::Bootstrap { create: true, graph } = &steps[2] else { panic!("{:?}", steps[2]) };
        assert_eq!(steps[3], Step::Smoke);
        let b = &stack.bootstrap;
        let unit = |name: &str| Task::Apply(b.units.iter().position(|u| u.name == name).unwrap());
        let image =
            |name: &str| Task::Prep(Prep::Image(graph.images.iter().position(|i| i.name == name).unwrap()));
        // The same needs as the recovery: keycloak after keycloak-db, the connectors after
        // debezium and their databases; every unit after Istio and the Secrets (with the namespaces).
        let after = |t: Task| graph.after(t).to_vec();
        assert_eq!(
            after(unit("keycloak")),
            [
                unit("keycloak-db"),
                Task::Prep(Prep::Secrets),
                Task::Prep(Prep::Istio),
                image("quay.io/keycloak/keycloak:26.0.7")
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(
            after(Task::Register(0)),
            [unit("ecom-db"), unit("debezium")]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        for (task, before) in &graph.tasks {
            if let Task::Apply(_) = task {
                assert!(before.contains(&Task::Prep(Prep::Istio)), "{task:?} before Istio");
                assert!(before.contains(&Task::Prep(Prep::Secrets)), "{task:?} before the Secrets");
            }
        }
        assert!(after(Task::Prep(Prep::Istio)).contains(&image("docker.io/istio/pilot:1.26.0-distroless")));
        let shared = b.units.iter().position(|u| u.shared()).unwrap();
        assert!(after(Task::Apply(shared)).contains(&Task::Prep(Prep::Crds)));
        assert!(after(Task::Apply(shared)).contains(&image("docker.io/istio/proxyv2:1.26.0-distroless")));
        // Every manifest belongs to one unit: each workload's, Kiali's, or the shared objects.
        assert_eq!(b.units.len(), stack.workloads.len() + 2);
        assert_eq!(b.namespaces.len(), 6);
        let flink = &b.units[b.units.iter().position(|u| u.name == "flink-taskmanager").unwrap()];
        let docs: Vec<(&str, &str)> = flink.docs.iter().map(|d| (d.kind.as_str(), d.name.as_str())).collect();
        assert_eq!(docs, [("Deployment", "flink-taskmanager"), ("Service", "flink-taskmanager")]);
        let docs: usize = b.units.iter().map(|u| u.docs.len()).sum::<usize>() + b.namespaces.len();
        assert_eq!(docs, b.tiers.iter().map(|t| t.docs.len()).sum::<usize>());
        // Downloads: Istio's first (everything waits for it), then the images of the slowest
        // chains (postgres: keycloak-db → keycloak), the quick leaves last.
        let order: Vec<&str> = graph.images.iter().map(|i| i.name.as_str()).collect();
        assert!(order[..3].iter().all(|n| n.starts_with("docker.io/istio/")), "{order:?}");
        assert_eq!(order[3], "postgres:16.9-alpine", "{order:?}");
        assert_eq!(order.last(), Some(&"redis:7.4.2-alpine"), "{order:?}");
        // Resuming on an existing cluster creates nothing.
        assert!(matches!(
            bootstrap(&stack, false, &istio::sample())[2],
            Step::Bootstrap { create: false, .. }
        ));
    }

    #[test]
    fn a_tiered_bootstrap_creates_then_installs_then_applies_each_tier_then_registers_and_smokes() {
        let stack = load(Source::Embedded).unwrap();
        let steps = bootstrap_tiers(&stack, true);
        let n = stack.bootstrap.tiers.len();
        assert_eq!(steps[1], Step::BootstrapChecks { ports: true });
        assert_eq!(steps[2], Step::CreateCluster);
        assert_eq!(
            &steps[3..9],
            &[
                Step::WaitApi,
                Step::GatewayCrds,
                Step::InstallIstio,
                Step::Tier(0),
                Step::Secrets,
                Step::Images
            ]
        );
        assert_eq!(steps[9..9 + n - 1].to_vec(), (1..n).map(Step::Tier).collect::<Vec<_>>());
        assert_eq!(&steps[steps.len() - 2..], &[Step::Connectors, Step::Smoke]);
        // Resuming a bootstrap on an existing cluster creates nothing and checks no host port.
        let resume = bootstrap_tiers(&stack, false);
        assert!(!resume.contains(&Step::CreateCluster));
        assert_eq!(resume[1], Step::BootstrapChecks { ports: false });
    }
}
