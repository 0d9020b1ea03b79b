//! Steps as data (kind's actions, xshell's commands as values): each plan step yields its
//! operations as [`Op`] values grouped in [`Part`]s (a progress line each). `executor.rs` runs
//! them and prints the very same values for `--dry-run`, so the two cannot drift; both match
//! every variant (no `_ =>`): a new operation is a compile error until it runs and prints. An
//! operation that is more than one command (the rollout graph, a registration, the smoke test,
//! the bootstrap) is a named handler in its own module, holding the values it runs. This module
//! is data only: the step modules build these values, the executor imports the step modules.

use std::time::Duration;

use crate::exec::Cmd;
use crate::plan::{Graph, Order, Prep, converge::Remedy};

/// Operations under one progress line (` • title ...` then ` ✓ title: note (took)`), or none.
#[derive(Clone)]
pub struct Part {
    pub title: Option<String>,
    pub ops: Vec<Op>,
    /// The note when it is done, unless an operation gives one.
    pub done: String,
}

impl Part {
    pub fn new(title: impl Into<String>, ops: Vec<Op>, done: impl Into<String>) -> Part {
        Part { title: Some(title.into()), ops, done: done.into() }
    }

    /// Operations with no progress line of their own.
    pub fn quiet(ops: Vec<Op>) -> Part {
        Part { title: None, ops, done: String::new() }
    }
}

/// One operation, as a value.
#[derive(Clone)]
pub enum Op {
    /// What comes next and why: a `#` line of the dry run; nothing runs.
    Note(String),
    /// A command that must succeed (kubectl's failures explained); `why` is its comment.
    Run { cmd: Cmd, why: String },
    /// Sleep (the mesh's settle).
    Pause(Duration),

    // ---- checks, before the first change (`preflight`, `inputs`, `bootstrap`) ----
    /// These tools on PATH.
    Tools(Vec<&'static str>),
    /// The node engine answers its version probe (else: it is not running, and how to start it).
    EngineAnswers(Cmd),
    /// `kind get clusters` lists the stack's cluster.
    ListsCluster(Cmd),
    /// The node containers by kind's label (`<engine> ps`): the control plane runs, with every
    /// port mapping of the cluster config.
    NodeRuns(Cmd),
    /// Every workload of the stack exists (the run's deployment listing).
    Workloads(Cmd),
    /// The connector secret has every key, decodable (read once per run).
    SecretKeys { cmd: Cmd, why: String },
    /// Every workload is deployed by a manifest of the bootstrap.
    Deployed,
    /// Every host port of the cluster config is free.
    PortsFree,
    /// Our image is on the host, else its build context is set.
    ImagePresent { cmd: Cmd, image: String, context_env: String },

    // ---- waits ----
    /// The Kubernetes API answers `/readyz` (retried until the deadline).
    Api { cmd: Cmd, deadline: Duration },
    /// These deployments roll out (a tier of the bootstrap): one watch.
    RolledOut { watch: Cmd, targets: Vec<(String, String)>, timeout: Duration },

    // ---- changes ----
    /// Remove the containers `list` finds (`remove` names every candidate).
    RemoveFound { list: Cmd, remove: Cmd },
    /// Remove these legacy proxy containers (the observation found them).
    Remove { names: Vec<String>, cmd: Cmd },
    /// `kind create cluster`, its config on stdin.
    CreateCluster(Cmd),
    /// ztunnel restarted and rolled out.
    RestartMesh { restart: Cmd, status: Cmd },
    /// ztunnel restarted on these nodes only: its pods there deleted (`deletes`), then `watch`
    /// until each node has a new pod of it Ready.
    RestartZtunnelOn { nodes: Vec<crate::plan::converge::NodeRestart>, watch: Cmd, deletes: Vec<Cmd> },
    /// The Secrets of the contract that do not exist yet: `list` finds the existing ones,
    /// `apply` (its stdin made at run time, secret) creates the others, the namespaces first
    /// when `namespaces`.
    Secrets { list: Cmd, reads: Vec<Cmd>, apply: Cmd, namespaces: bool },
    /// Our images built when missing, then loaded into the node (`up --tiers`).
    LoadImages,
    /// Every stopped node of the cluster started (control planes first), then its API waited for
    /// with the boot budget.
    StartNodes,
    /// After a node start: observe again and run what `up` plans.
    Converge { order: Order, settle: Option<Duration>, tiers: bool },

    // ---- named handlers of several operations ----
    /// The rollout graph: restarts, waits and registrations, each when what it waits for is done.
    Graph(Graph),
    /// Register connector `i` (GET, compare, PUT, wait for RUNNING).
    Register(usize),
    /// Every route, retried until all pass or the deadline.
    Smoke,
    /// Report what `up` restarts, waits for, registers and keeps, and why.
    Decide(Remedy),
    /// The smoke test; when a route fails and `escalate`, one escalation.
    Verify { escalate: bool, order: Order, settle: Duration },
    /// The bootstrap on the graph: images fetched from the start, the cluster created, then every
    /// unit, preparation and connector the moment what it waits for is done.
    Bootstrap(Box<OnGraph>),
}

/// The bootstrap on the graph, as values: the cluster's creation, the wait for its API, and each
/// preparation's operations; the images and the units are the graph's (`images`, `rollout`).
#[derive(Clone)]
pub struct OnGraph {
    pub create: Option<Part>,
    pub api: Part,
    pub graph: Graph,
    /// The Secrets, the CRDs and Istio: what the graph's threads run.
    pub preps: Vec<(Prep, Part)>,
}

/// `cmd   # why` (or the bare command).
pub fn line(cmd: &Cmd, why: &str) -> String {
    if why.is_empty() { cmd.to_string() } else { format!("{cmd}   # {why}") }
}
