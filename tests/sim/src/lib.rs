//! bookstore-sim: a simulated BookStore-on-kind world that the real `kubectl` and `docker`
//! clients talk to. Test equipment only.
//!
//! Rooms (one module each):
//! - [`kube`]: the fake kube-apiserver (wire behaviour of `shared/reference/kube-api.md`)
//! - [`world`]: the state (object store, workloads, pods, containers, connectors) and, one
//!   module each, the controllers, the kubelet, the mesh, Docker restarts and the bootstrap
//!   that move it (`World::reconcile`)
//! - [`dataplane`]: host ports: the Istio gateway, NodePorts, the ambient-mesh failure modes
//! - [`connect`]: Kafka Connect REST (`shared/reference/kafka-connect.md`)
//! - [`docker`]: the Docker Engine API on a unix socket; [`docker_events`]: its `GET /events`;
//!   [`images`]: the local image store, `docker save` archives and the node's containerd importing them
//!   [`docker_cli`]: other docker CLI releases' recorded behaviour; [`restart_policy`]: what a
//!   starting daemon restarts
//! - [`follow`]: a real Docker daemon's container as the node (the kube side follows it)
//! - [`capture`]: Istio ambient's capture of pods per node (istio-cni's CNI ADD and start-up scan,
//!   kindnet's rewrite window, the fail-open path, ztunnel's snapshot), its log lines and
//!   ztunnel's `workloadState`
//! - [`troubles`]: pod troubles with their Events, istio-cni's reconcile error, extra nodes
//! - [`control`]: test control (library + HTTP endpoint), [`standins`]: `kind` / `istioctl`;
//!   [`istioctl`]: what a release's install runs and `manifest generate` prints
//! - [`store`]: objects, resourceVersions, watch events, selectors
//! - [`server`]: switchable listeners (refusing, resetting) and HTTP helpers
//! - [`config`]: the stack through the product's library (data only), the kind config as kind
//!   reads it; [`latency`]: the latency table
//! - [`bench`]: `bookstore-sim bench` (the guide vs `bookstore recover` vs the critical path;
//!   `bench::bootstrap`: the bootstrap's contenders, tiers vs graph vs a naive script, on a cold
//!   and a warm machine, each against its bound with downloads and loads);
//!   [`client`]: a minimal loopback HTTP client
//! - [`kit`]: the one test kit (a world started and waited on, the `Test` builder that runs
//!   `bookstore` in it with expectations, the one bounded poll, the hostile password)
//!
//! Invariants: only `server` accepts connections; nothing awaits while holding the world lock;
//! the workload list, dependencies, routes and ports come from the `infra/` copy.

#![recursion_limit = "256"]
// Handlers return a ready error `Response` in `Err`; one per request, size does not matter.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod bench;
pub mod capture;
pub mod client;
pub mod config;
pub mod connect;
pub mod control;
pub mod dataplane;
pub mod docker;
pub mod docker_cli;
pub mod docker_events;
pub mod draw;
pub mod faults;
pub mod follow;
pub mod images;
pub mod istioctl;
pub mod kit;
pub mod kube;
pub mod latency;
pub mod portforward;
pub mod restart_policy;
pub mod server;
pub mod sim;
pub mod standins;
pub mod store;
pub mod timefmt;
pub mod troubles;
pub mod world;

pub use audit::{AuditEntry, Source};
pub use capture::MeshReturn;
pub use faults::{Fault, PullError};
pub use latency::LatencyTable;
pub use sim::{Sim, SimOptions};
pub use world::{PodView, World};
