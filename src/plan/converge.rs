//! The convergent plan: from the stack and one observation, what `up` restarts and why, and
//! what it keeps and why. A pure function of its inputs, tested as data; `steps` carries it out.
//!
//! The verdicts are `judge`'s (`judge::mesh`: the time rule and the evidence rule, per pod on
//! its node; `judge::workloads::health`; `judge::connectors`); here they become decisions:
//! - ztunnel is restarted on each node where `judge::mesh::ztunnel` finds it stale or unhealthy,
//!   and only there: its pod on that node is deleted (a [`PodRestart`]: its DaemonSet recreates
//!   it on that node), never the DaemonSet rolled out (that would restart it on every node and,
//!   by the rule, make every node's pods stale). A Docker restart restarts every node: then it
//!   is restarted on every node, before any workload.
//! - A workload is restarted when it is missing, stale in the mesh or stuck past its deadline;
//!   waited for while it rolls out or starts (so what needs it waits too); kept when healthy.
//! - A connector is registered (GET, compare, PUT only if different) when Connect lacks it,
//!   stores another config, does not run it, or when a workload it needs restarts (Kafka without
//!   a volume loses Connect's config topic with its pod).
//! - An escalation ([`Force`]) adds restarts the evidence of a failed verification asks for.
//!
//! Size: ~250 lines of rules; the rest is their tests, as data.

use std::collections::BTreeMap;

use crate::cluster::PodRestart;
use crate::judge;
use crate::judge::connectors::Connector;
use crate::judge::mesh::Ztunnel;
use crate::judge::workloads::Health;
use crate::observe::Observation;
use crate::stack::Stack;

use super::{Graph, Order, Task, graph};

/// What happens to one workload, ztunnel or connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `rollout restart` it (a connector: register it).
    Restart,
    /// Delete its pods that are in the kubelet's back-off once what it needs is Ready (a restart:
    /// their ReplicaSet recreates them, without the back-off).
    Replace,
    /// Leave it, but wait until it is Ready (it is rolling out or starting).
    Await,
    /// Leave it: it is healthy.
    Keep,
}

/// An action and the evidence for it, one reason a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub act: Act,
    pub why: Vec<String>,
}

impl Decision {
    fn new(act: Act, why: impl Into<String>) -> Decision {
        Decision { act, why: vec![why.into()] }
    }

    /// `restart ecom-db: its pod … ; …` (connectors: `register …`).
    pub fn line(&self, subject: &str, connector: bool) -> String {
        let verb = match (self.act, connector) {
            (Act::Restart | Act::Replace, false) => "restart",
            (Act::Restart | Act::Replace, true) => "register",
            (Act::Await, _) => "wait for",
            (Act::Keep, _) => "keep",
        };
        format!("{verb} {subject}: {}", self.why.join("; "))
    }
}

/// What an escalation adds to the plan: restarts the evidence of a failed verification asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Force {
    /// Restart ztunnel on these nodes (an empty name: on every node), for these reasons.
    pub ztunnel: Vec<(String, String)>,
    /// Restart these workloads (indexes into `stack.workloads`), for these reasons.
    pub workloads: BTreeMap<usize, String>,
}

/// ztunnel restarted on one node: its pods there deleted (the DaemonSet recreates a pod on that
/// node), then a new one waited for until Ready there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRestart {
    pub node: String,
    /// Its pods on the node (none when it has none there: its DaemonSet's new pod is waited for).
    pub pods: Vec<PodRestart>,
}

/// The smallest remedy: one decision for ztunnel, each workload and each connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remedy {
    pub ztunnel: Decision,
    /// The nodes ztunnel is restarted on, when it is.
    pub ztunnel_nodes: Vec<NodeRestart>,
    /// Index-aligned with `stack.workloads`.
    pub workloads: Vec<Decision>,
    /// Index-aligned with `stack.connect.connectors`.
    pub connectors: Vec<Decision>,
    /// The pods each workload replaced ([`Act::Replace`]) deletes, by workload index.
    pub deletes: BTreeMap<usize, Vec<PodRestart>>,
}

impl Remedy {
    /// Nothing to restart, wait for or register.
    pub fn nothing_to_do(&self) -> bool {
        self.ztunnel.act == Act::Keep
            && self.workloads.iter().all(|d| d.act == Act::Keep)
            && self.connectors.iter().all(|d| d.act == Act::Keep)
    }

    /// The workloads restarted, by a rollout or by replacing their pods (indexes).
    pub fn restarts(&self) -> Vec<usize> {
        (0..self.workloads.len())
            .filter(|i| matches!(self.workloads[*i].act, Act::Restart | Act::Replace))
            .collect()
    }

    /// The rollout graph of this remedy: the full graph (in `order`) cut down to the workloads
    /// restarted or waited for and the connectors registered; a kept workload is Ready, so what
    /// needs it does not wait for it.
    pub fn graph(&self, stack: &Stack, order: Order) -> Graph {
        let full = graph(stack, order);
        let task = |t: Task| -> Option<Task> {
            match t {
                Task::Restart(i) | Task::Await(i) | Task::Replace(i) => match self.workloads[i].act {
                    Act::Restart => Some(Task::Restart(i)),
                    Act::Replace => Some(Task::Replace(i)),
                    Act::Await => Some(Task::Await(i)),
                    Act::Keep => None,
                },
                Task::Register(c) => (self.connectors[c].act != Act::Keep).then_some(t),
                Task::Apply(_) | Task::Prep(_) => None, // the bootstrap's, not in `graph`
            }
        };
        let tasks = full
            .tasks
            .iter()
            .filter_map(|(t, after)| Some((task(*t)?, after.iter().filter_map(|a| task(*a)).collect())))
            .collect();
        Graph { order, tasks, images: Vec::new(), deletes: self.deletes.clone() }
    }

    /// Every decision as a line, ztunnel first: what `--dry-run` prints and `--json` reports.
    pub fn lines(&self, stack: &Stack) -> Vec<String> {
        let mut out = vec![self.ztunnel.line(&stack.mesh.daemonset, false)];
        out.extend(self.workloads.iter().zip(&stack.workloads).map(|(d, w)| d.line(&w.name, false)));
        out.extend(self.connectors.iter().zip(&stack.connect.connectors).map(|(d, c)| d.line(&c.name, true)));
        out
    }
}

/// Restart ztunnel on each node it is stale on (each node's reason a line), or keep it.
fn decide_ztunnel(ztunnel: &Ztunnel) -> (Decision, Vec<NodeRestart>) {
    let mut why: Vec<String> = Vec::new();
    let mut nodes = Vec::new();
    for n in ztunnel.stale_nodes() {
        let reason = n.stale.clone().unwrap_or_default();
        if !why.contains(&reason) {
            why.push(reason);
        }
        nodes.push(NodeRestart { node: n.node.clone(), pods: n.pods.clone() });
    }
    if why.is_empty() {
        return (Decision::new(Act::Keep, ztunnel.kept()), nodes);
    }
    (Decision { act: Act::Restart, why }, nodes)
}

fn decide_workload(health: Health, forced: Option<&String>) -> Decision {
    match (health, forced) {
        (Health::Missing, _) => Decision::new(Act::Restart, "its deployment is missing"),
        (Health::Stale(stale), forced) => {
            Decision { act: Act::Restart, why: forced.cloned().into_iter().chain(stale.reasons()).collect() }
        }
        (_, Some(why)) => Decision::new(Act::Restart, why.clone()),
        (Health::BackOff { why, .. }, None) => Decision::new(Act::Replace, why),
        (Health::Stuck(why), None) => Decision::new(Act::Restart, why),
        (Health::Starting(why), None) => Decision::new(Act::Await, why),
        (Health::Healthy(why), None) => Decision::new(Act::Keep, why),
    }
}

fn decide_connector(stack: &Stack, judged: &[Connector], c: usize, workloads: &[Decision]) -> Decision {
    let mut why: Vec<String> = judged[c].why().into_iter().collect();
    // What it needs, and what they need in turn (debezium needs kafka).
    let mut needs = super::connector_needs(stack, c);
    let mut k = 0;
    while k < needs.len() {
        for n in super::needs(stack, needs[k]) {
            if !needs.contains(&n) {
                needs.push(n);
            }
        }
        k += 1;
    }
    let restarted: Vec<&str> = needs
        .iter()
        .filter(|n| matches!(workloads[**n].act, Act::Restart | Act::Replace))
        .map(|n| stack.workloads[*n].name.as_str())
        .collect();
    if !restarted.is_empty() {
        why.push(format!("{} restart(s): check it is still registered afterwards", restarted.join(", ")));
    }
    if why.is_empty() {
        return Decision::new(Act::Keep, "RUNNING with the desired config");
    }
    Decision { act: Act::Restart, why }
}

/// The smallest remedy for what `obs` shows, plus what `force` adds (an escalation).
pub fn converge(stack: &Stack, obs: &Observation, force: &Force) -> Remedy {
    let mut judged = judge::mesh::ztunnel(stack, obs);
    for (node, why) in &force.ztunnel {
        judged = judged.restarted_on(node, why);
    }
    let (ztunnel, ztunnel_nodes) = decide_ztunnel(&judged);
    let health: Vec<Health> =
        (0..stack.workloads.len()).map(|i| judge::workloads::health(stack, obs, i, &judged)).collect();
    let workloads: Vec<Decision> =
        health.iter().enumerate().map(|(i, h)| decide_workload(h.clone(), force.workloads.get(&i))).collect();
    let deletes = health
        .into_iter()
        .enumerate()
        .filter(|(i, _)| workloads[*i].act == Act::Replace)
        .filter_map(|(i, h)| match h {
            Health::BackOff { pods, .. } => Some((i, pods)),
            _ => None,
        })
        .collect();
    let judged = crate::judge::connectors::judge(stack, obs);
    let connectors = (0..stack.connect.connectors.len())
        .map(|c| decide_connector(stack, &judged, c, &workloads))
        .collect();
    Remedy { ztunnel, ztunnel_nodes, workloads, connectors, deletes }
}

/// What one escalation restarts after a failed verification: the workloads behind the routes
/// that still fail, and ztunnel on the nodes its own evidence points to (a pod of it not Ready
/// there, or HBONE failures to pods there created after it was Ready: fresh pods it cannot
/// reach).
pub fn escalate(stack: &Stack, obs: &Observation, failing: &[crate::observe::routes::Probe]) -> Force {
    let mut force = Force::default();
    for probe in failing {
        let Some(serves) = probe.check.serves.as_deref() else { continue };
        if let Some(i) = stack.index(serves) {
            force.workloads.entry(i).or_insert_with(|| {
                format!("route {} still fails after the remedy: {}", probe.check.name, probe.line())
            });
        }
    }
    force.ztunnel = judge::mesh::ztunnel_blame(stack, obs);
    force
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Container, Deployment, Pod};
    use crate::http::Response;
    use crate::observe::Stored;
    use crate::observe::evidence::HboneFailure;
    use crate::observe::routes::Probe;
    use crate::stack::{Source, load};

    /// When the node container last started (seconds since the epoch).
    const START: u64 = 1_800_000_000;

    fn pod(ns: &str, name: &str, app: &str, created: u64, ready: Option<u64>) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: [("app".to_string(), app.to_string())].into(),
            phase: "Running".into(),
            ips: vec![],
            created: Some(created),
            ready_since: ready,
            meshed: ns != "istio-system",
            containers: vec![Container { name: app.into(), ready: ready.is_some(), ..Container::default() }],
            ..Pod::default()
        }
    }

    /// The stack with every workload's pod created at `created(name)`, Ready 5 s later; ztunnel's
    /// pod created at `zt_created`, Ready 3 s later; every route answering 200; both connectors
    /// stored with the desired config and RUNNING.
    fn world(stack: &Stack, zt_created: u64, created: impl Fn(&str) -> u64) -> Observation {
        let mut deployments = Vec::new();
        let mut pods = Vec::new();
        for w in &stack.workloads {
            deployments.push(Deployment {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                generation: 2,
                observed_generation: 2,
                desired: 1,
                ready: 1,
                updated: 1,
                selector: [("app".to_string(), w.name.clone())].into(),
                ..Deployment::default()
            });
            let t = created(&w.name);
            pods.push(pod(&w.namespace, &format!("{}-abc12", w.name), &w.name, t, Some(t + 5)));
        }
        let mut zt = pod("istio-system", "ztunnel-x1", "ztunnel", zt_created, Some(zt_created + 3));
        zt.owner = Some(("DaemonSet".into(), "ztunnel".into()));
        pods.push(zt);
        for (n, p) in pods.iter_mut().enumerate() {
            p.ips = vec![format!("10.244.0.{}", 10 + n)];
        }
        let mut obs = Observation::of(deployments, pods);
        obs.at = START + 1000;
        obs.nodes = vec![crate::engine::Node {
            name: "bookstore-control-plane".into(),
            role: "control-plane".into(),
            running: true,
            started_at: Some(START),
            ..crate::engine::Node::default()
        }];
        let running = r#"{"state":"RUNNING"}"#;
        let states = format!(
            r#"{{"ecom-connector":{{"status":{{"connector":{running},"tasks":[{running}]}}}},
                "inventory-connector":{{"status":{{"connector":{running},"tasks":[{running}]}}}}}}"#
        );
        obs.routes = stack
            .smoke
            .checks
            .iter()
            .map(|c| Probe {
                check: c.clone(),
                url: format!("http://127.0.0.1:1{}", c.path),
                answer: Ok(Response {
                    status: 200,
                    body: if c.connectors_running { states.clone() } else { "ok".into() },
                }),
            })
            .collect();
        obs.connectors = vec![Stored::Matches; stack.connect.connectors.len()];
        obs
    }

    fn acts(stack: &Stack, remedy: &Remedy) -> Vec<(String, Act)> {
        stack.workloads.iter().zip(&remedy.workloads).map(|(w, d)| (w.name.clone(), d.act)).collect()
    }

    fn restarted(stack: &Stack, remedy: &Remedy) -> Vec<String> {
        remedy.restarts().into_iter().map(|i| stack.workloads[i].name.clone()).collect()
    }

    #[test]
    fn a_healthy_stack_gets_nothing_to_do() {
        let stack = load(Source::Embedded).unwrap();
        let obs = world(&stack, START + 60, |_| START + 120);
        let remedy = converge(&stack, &obs, &Force::default());
        assert!(remedy.nothing_to_do(), "{:#?}", remedy.lines(&stack));
        assert!(remedy.graph(&stack, Order::Graph).tasks.is_empty());
        assert!(
            remedy.lines(&stack)[1].starts_with("keep ecom-db: its pod ecom-db-abc12 was created"),
            "{:?}",
            remedy.lines(&stack)
        );
        // A tie (the same second) counts as after.
        let tie = world(&stack, START, |_| START + 3);
        assert!(converge(&stack, &tie, &Force::default()).nothing_to_do());
    }

    #[test]
    fn after_a_docker_restart_ztunnel_and_every_meshed_workload_restart() {
        let stack = load(Source::Embedded).unwrap();
        // Pods kept their names and creation times; the node container started again.
        let mut obs = world(&stack, START - 3600, |_| START - 3500);
        obs.connectors = vec![Stored::Absent; 2];
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Restart);
        assert!(remedy.ztunnel.why[0].contains("before the node last started"), "{:?}", remedy.ztunnel);
        assert_eq!(remedy.restarts().len(), stack.workloads.len());
        assert!(remedy.connectors.iter().all(|c| c.act == Act::Restart));
        // The graph is the full one: databases before the apps that migrate against them.
        assert_eq!(remedy.graph(&stack, Order::Graph), graph(&stack, Order::Graph));
    }

    /// `world` on three nodes (a control plane and two workers, each started at START): a ztunnel
    /// pod on each, the stack's pods on the workers in turn.
    fn three_nodes(stack: &Stack) -> Observation {
        let mut obs = world(stack, START + 60, |_| START + 120);
        let node = |name: &str, role: &str| crate::engine::Node {
            name: name.into(),
            role: role.into(),
            running: true,
            started_at: Some(START),
            ..crate::engine::Node::default()
        };
        obs.nodes = vec![
            node("bookstore-control-plane", "control-plane"),
            node("bookstore-worker", "worker"),
            node("bookstore-worker2", "worker"),
        ];
        let zt = obs.pods.iter().position(|p| p.name == "ztunnel-x1").unwrap();
        let mut zt = obs.pods.remove(zt);
        for (i, n) in ["bookstore-control-plane", "bookstore-worker", "bookstore-worker2"].iter().enumerate()
        {
            zt.name = format!("ztunnel-n{i}");
            zt.uid = format!("u-ztunnel-{i}");
            zt.node = n.to_string();
            obs.pods.push(zt.clone());
        }
        for (i, p) in obs.pods.iter_mut().filter(|p| p.meshed).enumerate() {
            p.node = ["bookstore-worker", "bookstore-worker2"][i % 2].into();
        }
        obs
    }

    /// After a node restart at START the mesh re-adopted every pod restarted in place but those
    /// of `outside`: ztunnel took istio-cni's snapshot (reconcile mode) and runs their proxies.
    fn readopted(stack: &Stack, outside: &[&str]) -> Observation {
        let mut obs = world(stack, START - 3600, |_| START - 3500);
        let mut cni =
            format!("{}\tinfo\tcni-agent\tinpod reconcile mode enabled\n", crate::utc::format(START + 1));
        let mut state = serde_json::Map::new();
        for p in obs.pods.iter_mut() {
            p.uid = format!("uid-{}", p.name);
            p.ready_since = Some(START + 6);
            p.sandbox = Some(true);
            p.sandbox_since = Some(START + 1);
            if !p.meshed {
                continue;
            }
            if outside.iter().any(|w| p.labels.get("app").is_some_and(|a| a == w)) {
                cni.push_str(&format!(
                    "{}\tinfo\tcni-agent\tnetns is not available for pod, sending 'keep' to ztunnel\tuid={}\n",
                    crate::utc::format(START + 2),
                    p.uid
                ));
                continue;
            }
            cni.push_str(&format!(
                "{}\tinfo\tcni-agent\tsending pod to ztunnel as part of snapshot\tuid={} name={} namespace={} serviceAccount=default\n",
                crate::utc::format(START + 2),
                p.uid,
                p.name,
                p.namespace
            ));
            state.insert(
                p.uid.clone(),
                serde_json::json!({"info": {"name": p.name, "namespace": p.namespace}, "state": "Up"}),
            );
        }
        obs.cni = Ok(crate::observe::evidence::parse_cni(&cni));
        obs.proxies = Ok(crate::observe::evidence::parse_ztunnel_proxies(&format!(
            "{}\tinfo\tinpod::statemanager\treceived snapshot sent\t\n",
            crate::utc::format(START + 2)
        )));
        let node = stack.cluster.control_plane_container();
        obs.workload_state = vec![(
            node,
            Ok(crate::observe::evidence::parse_workload_state(
                &serde_json::json!({"workloadState": state}).to_string(),
            )
            .unwrap()),
        )];
        obs
    }

    #[test]
    fn a_worker_restarted_alone_restarts_its_ztunnel_pod_and_the_workloads_on_it_only() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = three_nodes(&stack);
        assert!(converge(&stack, &obs, &Force::default()).nothing_to_do());
        // worker2 restarted: its pods restarted in place (same pods, same creation times), Ready
        // again at START + 530.
        obs.nodes[2].started_at = Some(START + 500);
        for p in obs.pods.iter_mut().filter(|p| p.node == "bookstore-worker2") {
            p.ready_since = Some(START + 530);
        }
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Restart);
        let nodes: Vec<(&str, Vec<&str>)> = remedy
            .ztunnel_nodes
            .iter()
            .map(|n| (n.node.as_str(), n.pods.iter().map(|p| p.name()).collect()))
            .collect();
        assert_eq!(nodes, [("bookstore-worker2", vec!["ztunnel-n2"])]);
        let on_w2: Vec<String> = stack
            .workloads
            .iter()
            .filter(|w| {
                obs.pods
                    .iter()
                    .any(|p| p.name.starts_with(&format!("{}-abc", w.name)) && p.node == "bookstore-worker2")
            })
            .map(|w| w.name.clone())
            .collect();
        assert!(!on_w2.is_empty() && on_w2.len() < stack.workloads.len(), "{on_w2:?}");
        assert_eq!(restarted(&stack, &remedy), on_w2);
        // The step that runs it deletes that one pod: the DaemonSet is not rolled out.
        let steps = crate::plan::converge_steps(&stack, remedy, vec![], Order::Graph, None);
        let zt = steps.iter().find_map(|s| match s {
            crate::plan::Step::RestartZtunnel { nodes, .. } => Some(nodes.clone()),
            _ => None,
        });
        assert_eq!(zt.unwrap().len(), 1);
        assert!(!steps.iter().any(|s| matches!(s, crate::plan::Step::RestartMesh { .. })));

        // A Docker restart restarts every node: ztunnel on every node, every meshed workload.
        for n in &mut obs.nodes {
            n.started_at = Some(START + 500);
        }
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel_nodes.len(), 3);
        assert_eq!(remedy.restarts().len(), stack.workloads.len());
        assert_eq!(remedy.graph(&stack, Order::Graph), graph(&stack, Order::Graph));
    }

    #[test]
    fn after_a_node_restart_only_what_the_mesh_did_not_readopt_restarts() {
        let stack = load(Source::Embedded).unwrap();
        let obs = readopted(&stack, &["keycloak-db"]);
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Keep, "{:?}", remedy.ztunnel);
        assert!(
            remedy.ztunnel.why[0].contains("came back with the node")
                && remedy.ztunnel.why[0].contains("it adopted 15 of the 16"),
            "{:?}",
            remedy.ztunnel
        );
        assert_eq!(restarted(&stack, &remedy), ["keycloak-db"]);
        let kcdb = stack.index("keycloak-db").unwrap();
        let why = remedy.workloads[kcdb].why.join("; ");
        assert!(why.starts_with("istio-cni: netns is not available for pod keycloak-db-abc12; "), "{why}");
        assert!(why.contains("ztunnel runs no proxy for its UID uid-keycloak-db-abc12"), "{why}");
        // Each keep says its evidence.
        let redis = stack.index("redis").unwrap();
        assert_eq!(
            remedy.workloads[redis].line("redis", false),
            format!(
                "keep redis: ztunnel adopted redis-abc12 (uid uid-redis-abc12): Up in its workloadState; istio-cni: \
                 sent in the start-up snapshot at {}",
                crate::utc::format(START + 2)
            )
        );
        // Nothing else: not keycloak (its pool survives), not the connectors.
        assert!(remedy.connectors.iter().all(|c| c.act == Act::Keep));
        assert_eq!(remedy.graph(&stack, Order::Graph).tasks, [(Task::Restart(kcdb), vec![])]);

        // keycloak reached keycloak-db through the mesh before it was restarted: refused, it
        // crash-loops. Its pod is deleted once keycloak-db is Ready, ending the back-off.
        let mut obs = readopted(&stack, &["keycloak-db"]);
        let kc = obs.pods.iter_mut().find(|p| p.name == "keycloak-abc12").unwrap();
        kc.owner = Some(("ReplicaSet".into(), "keycloak-6d8f9".into()));
        kc.ready_since = None;
        kc.containers[0].ready = false;
        kc.containers[0].restarts = 3;
        kc.containers[0].waiting =
            Some(("CrashLoopBackOff".into(), "back-off 40s restarting failed container=keycloak".into()));
        obs.deployments.iter_mut().find(|d| d.name == "keycloak").unwrap().ready = 0;
        let remedy = converge(&stack, &obs, &Force::default());
        let keycloak = stack.index("keycloak").unwrap();
        assert_eq!(remedy.workloads[keycloak].act, Act::Replace, "{:?}", remedy.workloads[keycloak]);
        assert!(remedy.workloads[keycloak].line("keycloak", false).starts_with("restart keycloak: its pod keycloak-abc12 is in the kubelet's crash-loop back-off (3 restarts: back-off 40s"), "{:?}", remedy.workloads[keycloak]);
        assert_eq!(restarted(&stack, &remedy), ["keycloak-db", "keycloak"]);
        let g = remedy.graph(&stack, Order::Graph);
        assert_eq!(g.after(Task::Replace(keycloak)), [Task::Restart(kcdb)]);
        assert_eq!(g.deletes[&keycloak].iter().map(|p| p.name()).collect::<Vec<_>>(), ["keycloak-abc12"]);

        // The guide's world: the mesh re-adopted nothing. ztunnel is not shown to work: the whole
        // remedy, as today.
        let all: Vec<&str> = stack.workloads.iter().map(|w| w.name.as_str()).collect();
        let remedy = converge(&stack, &readopted(&stack, &all), &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Restart);
        assert!(
            remedy.ztunnel.why[0].contains("adopted none of the 16 meshed pod(s)"),
            "{:?}",
            remedy.ztunnel
        );
        assert_eq!(remedy.restarts().len(), stack.workloads.len());
        assert_eq!(remedy.graph(&stack, Order::Graph), graph(&stack, Order::Graph));
    }

    #[test]
    fn after_an_interrupted_recovery_only_what_is_still_stale_restarts() {
        let stack = load(Source::Embedded).unwrap();
        // ztunnel was restarted (created after the node started, Ready at START + 13); the
        // first wave was restarted after that; kafka and the second wave were not reached.
        let first = [
            "ecom-db",
            "inventory-db",
            "keycloak-db",
            "analytics-db",
            "ui-service",
            "redis",
            "pgadmin",
            "flink-jobmanager",
            "prometheus",
        ];
        let obs = world(&stack, START + 10, |n| if first.contains(&n) { START + 14 } else { START - 3500 });
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Keep, "{:?}", remedy.ztunnel);
        assert_eq!(
            restarted(&stack, &remedy),
            [
                "ecom-service",
                "inventory-service",
                "keycloak",
                "kafka",
                "debezium",
                "flink-taskmanager",
                "superset"
            ]
        );
        let kafka = stack.index("kafka").unwrap();
        assert!(
            remedy.workloads[kafka].why[0].contains("before ztunnel's pods were Ready"),
            "{:?}",
            remedy.workloads[kafka]
        );
        // kafka restarts: Kafka without a volume may lose Connect's topics, so both connectors are
        // checked again afterwards (GET, compare, PUT only if different).
        assert!(remedy.connectors.iter().all(|c| c.act == Act::Restart));
        let g = remedy.graph(&stack, Order::Graph);
        let debezium = stack.index("debezium").unwrap();
        assert_eq!(g.after(Task::Restart(debezium)), [Task::Restart(kafka)]);
        // ecom-service needs ecom-db, which is kept and Ready: it restarts at once.
        let ecom = stack.index("ecom-service").unwrap();
        assert!(g.after(Task::Restart(ecom)).is_empty());
    }

    #[test]
    fn one_workload_that_lost_its_registration_is_found_by_its_evidence() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = world(&stack, START + 60, |_| START + 120);
        let inv = obs.pods.iter().find(|p| p.name.starts_with("inventory-service")).unwrap().clone();
        let reset =
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        for p in obs.routes.iter_mut().filter(|p| p.check.serves.as_deref() == Some("inventory-service")) {
            p.answer = Ok(Response { status: 503, body: reset.into() });
        }
        obs.hbone = Ok(vec![HboneFailure {
            at: Some(START + 200),
            ip: inv.ips[0].clone(),
            error: "connection failed: deadline has elapsed".into(),
            line: "…".into(),
        }]);
        obs.cni = Ok(crate::observe::evidence::parse_cni(&format!(
            "{}\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod\tns=inventory name={}",
            crate::utc::format(START + 300),
            inv.name
        )));
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(restarted(&stack, &remedy), ["inventory-service"]);
        assert_eq!(remedy.ztunnel.act, Act::Keep);
        let i = stack.index("inventory-service").unwrap();
        let why = remedy.workloads[i].line("inventory-service", false);
        assert!(why.starts_with("restart inventory-service: gateway /inven/health (Host: myecom.net) answers \"upstream connect error"), "{why}");
        assert!(
            why.contains(&format!(
                "ztunnel: connection failed: deadline has elapsed to {}:15008 ({})",
                inv.ips[0], inv.name
            )),
            "{why}"
        );
        assert!(why.contains("istio-cni: failed to reconcile inpod rules for pod"), "{why}");
        // Its connectors do not need it: nothing else is touched.
        assert!(remedy.connectors.iter().all(|c| c.act == Act::Keep));
        assert_eq!(remedy.graph(&stack, Order::Graph).tasks, [(Task::Restart(i), vec![])]);
    }

    #[test]
    fn what_a_pod_being_replaced_answers_is_not_evidence_against_its_replacement() {
        let stack = load(Source::Embedded).unwrap();
        // keycloak was restarted after ztunnel was Ready; its new pod is not Ready yet, so the
        // gateway still answers from the old, stale one.
        let mut obs = world(&stack, START + 60, |_| START + 120);
        obs.at = START + 150;
        let mut old = obs.pods.iter().find(|p| p.name.starts_with("keycloak-abc")).unwrap().clone();
        old.name = "keycloak-old99".into();
        old.created = Some(START - 3500);
        old.ips = vec!["10.244.0.99".into()];
        let new = obs.pods.iter_mut().find(|p| p.name.starts_with("keycloak-abc")).unwrap();
        new.ready_since = None;
        new.containers[0].ready = false;
        obs.pods.push(old);
        let d = obs.deployments.iter_mut().find(|d| d.name == "keycloak").unwrap();
        (d.ready, d.updated) = (1, 1);
        let reset =
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        for p in obs.routes.iter_mut().filter(|p| p.check.serves.as_deref() == Some("keycloak")) {
            p.answer = Ok(Response { status: 503, body: reset.into() });
        }
        obs.hbone = Ok(vec![HboneFailure {
            at: Some(START + 200),
            ip: "10.244.0.99".into(),
            error: "connection failed: deadline has elapsed".into(),
            line: "…".into(),
        }]);
        let remedy = converge(&stack, &obs, &Force::default());
        let keycloak = stack.index("keycloak").unwrap();
        assert_eq!(remedy.workloads[keycloak].act, Act::Await, "{:?}", remedy.workloads[keycloak]);
        assert!(remedy.restarts().is_empty());
        // Nor while the gateway may not have its endpoint yet: Ready for less than the grace.
        let new = obs.pods.iter_mut().find(|p| p.name.starts_with("keycloak-abc")).unwrap();
        new.ready_since = Some(obs.at - 1);
        new.containers[0].ready = true;
        obs.pods.retain(|p| p.name != "keycloak-old99");
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.workloads[keycloak].act, Act::Keep, "{:?}", remedy.workloads[keycloak]);
    }

    #[test]
    fn a_log_line_from_before_a_pod_existed_is_about_its_ips_previous_holder() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = world(&stack, START + 60, |_| START + 120);
        let redis = obs.pods.iter().find(|p| p.name.starts_with("redis")).unwrap().clone();
        obs.hbone = Ok(vec![HboneFailure {
            at: Some(START + 100),
            ip: redis.ips[0].clone(),
            error: "connection failed: deadline has elapsed".into(),
            line: "…".into(),
        }]);
        assert!(converge(&stack, &obs, &Force::default()).nothing_to_do());
    }

    #[test]
    fn a_rollout_under_way_or_a_pod_not_ready_is_waited_for_not_restarted() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = world(&stack, START + 60, |_| START + 120);
        // ecom-db: a restart was just sent (the controller has not created the new pod yet);
        // keycloak-db: its new pod is not Ready yet.
        obs.deployments.iter_mut().find(|d| d.name == "ecom-db").unwrap().generation = 3;
        let kc = obs.deployments.iter_mut().find(|d| d.name == "keycloak-db").unwrap();
        kc.ready = 0;
        obs.pods.iter_mut().find(|p| p.name.starts_with("keycloak-db")).unwrap().ready_since = None;
        let remedy = converge(&stack, &obs, &Force::default());
        let got: Vec<(String, Act)> =
            acts(&stack, &remedy).into_iter().filter(|(_, a)| *a != Act::Keep).collect();
        assert_eq!(got, [("ecom-db".to_string(), Act::Await), ("keycloak-db".to_string(), Act::Await)]);
        assert!(remedy.restarts().is_empty());
        // An escalation that restarts keycloak waits for keycloak-db first.
        let keycloak = stack.index("keycloak").unwrap();
        let force = Force {
            ztunnel: vec![],
            workloads: [(keycloak, "route keycloak still fails".to_string())].into(),
        };
        let remedy = converge(&stack, &obs, &force);
        let g = remedy.graph(&stack, Order::Graph);
        let kcdb = stack.index("keycloak-db").unwrap();
        assert_eq!(g.after(Task::Restart(keycloak)), [Task::Await(kcdb)]);
    }

    #[test]
    fn ztunnel_not_ready_is_restarted_and_a_pod_stuck_past_its_deadline_too() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = world(&stack, START + 60, |_| START + 120);
        let zt = obs.pods.iter_mut().find(|p| p.name == "ztunnel-x1").unwrap();
        zt.ready_since = None;
        zt.containers[0].ready = false;
        let remedy = converge(&stack, &obs, &Force::default());
        assert_eq!(remedy.ztunnel.act, Act::Restart);
        assert!(remedy.ztunnel.why[0].starts_with("it is not healthy"), "{:?}", remedy.ztunnel);
        // Every pod existing now predates the new ztunnel's readiness.
        assert_eq!(remedy.restarts().len(), stack.workloads.len());

        // A fresh pod not Ready is waited for, until its workload's deadline has passed.
        let mut obs = world(&stack, START + 60, |_| START + 120);
        let p = obs.pods.iter_mut().find(|p| p.name.starts_with("redis")).unwrap();
        p.ready_since = None;
        p.containers[0].ready = false;
        obs.deployments.iter_mut().find(|d| d.name == "redis").unwrap().ready = 0;
        let redis = stack.index("redis").unwrap();
        obs.at = START + 130;
        assert_eq!(converge(&stack, &obs, &Force::default()).workloads[redis].act, Act::Await);
        obs.at = START + 120 + stack.workloads[redis].timeout.as_secs() + 1;
        let late = converge(&stack, &obs, &Force::default());
        assert_eq!(late.workloads[redis].act, Act::Restart);
        assert!(late.workloads[redis].why[0].contains("has not become Ready since it was created"));
    }

    #[test]
    fn escalation_restarts_what_backs_a_failing_route_and_ztunnel_when_it_fails_fresh_pods() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = world(&stack, START + 60, |_| START + 120);
        let failing: Vec<Probe> = obs
            .routes
            .iter()
            .filter(|p| p.check.name == "pgadmin" || p.check.name == "kiali")
            .cloned()
            .map(|mut p| {
                p.answer = Err("io: Peer disconnected".into());
                p
            })
            .collect();
        let force = escalate(&stack, &obs, &failing);
        let pgadmin = stack.index("pgadmin").unwrap();
        assert_eq!(
            force.workloads.keys().copied().collect::<Vec<_>>(),
            [pgadmin],
            "kiali is not a stack workload"
        );
        assert!(force.workloads[&pgadmin].starts_with("route pgadmin still fails after the remedy: GET"));
        assert_eq!(force.ztunnel, []);
        // ztunnel cannot reach a pod created after it was Ready: ztunnel is what is broken.
        let fresh = obs.pods.iter().find(|p| p.name.starts_with("pgadmin")).unwrap().clone();
        obs.hbone = Ok(vec![HboneFailure {
            at: Some(START + 300),
            ip: fresh.ips[0].clone(),
            error: "io error: Connection refused (os error 111)".into(),
            line: "…".into(),
        }]);
        let force = escalate(&stack, &obs, &failing);
        assert!(
            force.ztunnel.iter().any(|(_, z)| z.contains("created after ztunnel there was Ready")),
            "{force:?}"
        );
        let remedy = converge(&stack, &obs, &force);
        assert_eq!(remedy.ztunnel.act, Act::Restart);
        assert_eq!(remedy.restarts().len(), stack.workloads.len());
    }
}
