//! The judgements, each said once: what is wrong with the stack and why, resolved from data
//! already read (the [`Observation`](crate::observe::Observation), a pod watch's snapshot, the
//! node's `inspect`). `plan` (the convergent `up`), `doctor`, `status`, preflight and the
//! fail-fast waits only render these verdicts, so two of them cannot disagree about a pod.
//!
//! Pure: no IO here, no clock either (the time of the observation is passed in). Held by a tidy
//! test, like the planner.
//!
//! - [`routes`]: whether a route works (Envoy's reset, an error status, the connectors RUNNING),
//!   and Connect's own route.
//! - [`connectors`]: each connector's state, from what Connect stores and what it runs.
//! - [`mesh`]: whether a pod's mesh registration is stale, per pod on its node (the time rule
//!   and the evidence rule), and ztunnel per node.
//! - [`workloads`]: a workload's pods, whether it is missing, and its verdict (stale, stuck,
//!   starting, healthy).
//! - [`boots`]: when each node of a shared cluster last started, from the API's evidence (the
//!   kubelet's events, the Ready transition, pods restarted in place).
//! - [`engine`]: the node engine kind would use (its provider), the cluster's Nodes against it,
//!   and whether a stopped node stopped together with its engine.
//! - [`node`]: the node against the cluster config (its port mappings).
//! - [`pods`]: what is wrong with a pod (a crash loop, an image pull, a sandbox, …) and whether
//!   waiting fixes it ([`pods::outlook`]).

pub mod boots;
pub mod connectors;
pub mod engine;
pub mod members;
pub mod mesh;
pub mod node;
pub mod pods;
pub mod routes;
pub mod workloads;
