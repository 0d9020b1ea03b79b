//! The one latency table: seconds from container start to Ready, at time scale 1.
//!
//! Hard dependencies are not here: they come from `needs` in `infra/stack.yaml`.
//! Every entry, every backoff and every controller delay is multiplied by `time_scale`.

use std::fmt;

/// (workload, seconds to Ready at time scale 1).
pub const LATENCIES: &[(&str, f64)] = &[
    ("ztunnel", 4.0),
    ("istio-cni-node", 2.0),
    ("istiod", 3.0),
    ("kiali", 3.0),
    ("ecom-db", 6.0),
    ("inventory-db", 6.0),
    ("keycloak-db", 6.0),
    ("analytics-db", 6.0),
    ("kafka", 15.0),
    ("redis", 2.0),
    ("keycloak", 40.0),
    ("debezium", 20.0),
    ("pgadmin", 8.0),
    ("flink-jobmanager", 10.0),
    ("flink-taskmanager", 8.0),
    ("superset", 35.0),
    ("prometheus", 5.0),
    ("ecom-service", 25.0),
    ("inventory-service", 8.0),
    ("ui-service", 3.0),
];

/// A workload not in the table (e.g. one created by `kubectl apply`).
pub const DEFAULT_LATENCY: f64 = 3.0;

/// Image sizes, MB as downloaded (compressed, linux/amd64; the order of magnitude of the real
/// images), by repository (`docker.io/` and `library/` dropped, no tag).
pub const IMAGE_SIZES_MB: &[(&str, f64)] = &[
    ("postgres", 105.0),
    ("apache/kafka", 125.0),
    ("quay.io/keycloak/keycloak", 220.0),
    ("dpage/pgadmin4", 160.0),
    ("redis", 17.0),
    ("quay.io/debezium/connect", 330.0),
    ("flink", 330.0),
    ("apache/superset", 450.0),
    ("quay.io/kiali/kiali", 85.0),
    ("prom/prometheus", 110.0),
    ("istio/pilot", 75.0),
    ("istio/install-cni", 95.0),
    ("istio/ztunnel", 30.0),
    ("istio/proxyv2", 100.0),
    ("bookstore/ecom-service", 150.0),
    ("bookstore/inventory-service", 150.0),
    ("bookstore/ui-service", 60.0),
];

/// An image not in the table.
pub const DEFAULT_IMAGE_MB: f64 = 100.0;

/// The machine's download bandwidth, MB/s (200 Mbit/s), shared by every transfer at once: the
/// host's `docker pull`s and the node's kubelet pulls.
pub const BANDWIDTH_MB_S: f64 = 25.0;

/// How fast `kind load` moves an image into the node (`docker save` + `ctr images import`), MB/s:
/// one pipe, shared by the loads under way (`images::Importer`).
pub const LOAD_MB_S: f64 = 200.0;

/// What a `kind load` pays before its bytes move, seconds, in parallel with any other load:
/// kind's start, the nodes listed (`docker ps`), the snapshotter read in the node (`docker exec …
/// containerd config dump`); `load docker-image` also inspects each image on the host and looks
/// it up in the node (`docker image inspect`, `docker exec … crictl inspecti`).
pub const KIND_LOAD_START_S: f64 = 0.3;
pub const KIND_LOAD_PER_IMAGE_S: f64 = 0.15;

/// MB to download for an image (`postgres:16.9-alpine`, `docker.io/istio/pilot:1.26.0`, …).
pub fn image_mb(image: &str) -> f64 {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    let repo = repo.trim_start_matches("docker.io/").trim_start_matches("library/");
    IMAGE_SIZES_MB.iter().find(|(r, _)| *r == repo).map(|(_, mb)| *mb).unwrap_or(DEFAULT_IMAGE_MB)
}

/// Other simulated delays, seconds at time scale 1.
pub mod delays {
    /// kubelet CrashLoopBackOff: first back-off, doubling up to the cap.
    pub const BACKOFF_START: f64 = 10.0;
    pub const BACKOFF_CAP: f64 = 300.0;
    /// kubelet image pulls (`imageBackOff`: 10 s doubling up to 300 s, `kubelet.go`) and the pod
    /// worker's retry after a failed sync such as a sandbox that cannot be created
    /// (`backOffPeriod`, `pod_workers.go` `completeWork`).
    pub const IMAGE_BACKOFF_START: f64 = 10.0;
    pub const IMAGE_BACKOFF_CAP: f64 = 300.0;
    pub const POD_WORKER_BACKOFF: f64 = 10.0;
    /// Deployment/DaemonSet controller: spec change → observedGeneration written.
    pub const OBSERVE: f64 = 0.5;
    /// Deployment `progressDeadlineSeconds` (the default, 600 s).
    pub const PROGRESS_DEADLINE: f64 = 600.0;
    /// Connect worker: after the debezium pod is Ready it is still joining the group
    /// (`Request timed out. The worker is currently ensuring membership in the cluster…`).
    pub const CONNECT_JOIN: f64 = 3.0;
    /// Connect: `409 stale configuration` window after a connector is created
    /// (never shorter than `CONNECT_STALE_MIN_MS` real milliseconds, so fast tests still see it).
    pub const CONNECT_STALE: f64 = 1.0;
    pub const CONNECT_STALE_MIN_MS: u64 = 150;
    /// Connect: `404 No status found` window after a connector is created (floor as above).
    pub const CONNECT_NO_STATUS: f64 = 2.0;
    pub const CONNECT_NO_STATUS_MIN_MS: u64 = 300;
}

/// Seconds to Ready at time scale 1 for a workload.
pub fn latency_secs(name: &str) -> f64 {
    LATENCIES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or(DEFAULT_LATENCY)
}

/// The printable table (`Sim::latency_table()`, `bookstore-sim latencies`).
#[derive(Debug, Clone)]
pub struct LatencyTable {
    pub rows: Vec<(String, f64)>,
}

impl LatencyTable {
    pub fn get() -> LatencyTable {
        LatencyTable { rows: LATENCIES.iter().map(|(n, s)| (n.to_string(), *s)).collect() }
    }
}

impl fmt::Display for LatencyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<20} {:>8}", "workload", "ready(s)")?;
        for (n, s) in &self.rows {
            writeln!(f, "{n:<20} {s:>8.1}")?;
        }
        writeln!(f, "{:<20} {:>8.1}", "(other)", DEFAULT_LATENCY)?;
        writeln!(
            f,
            "crash-loop back-off {}s doubling to {}s; all values × time_scale",
            delays::BACKOFF_START,
            delays::BACKOFF_CAP
        )?;
        let sizes: Vec<String> = IMAGE_SIZES_MB.iter().map(|(r, mb)| format!("{r} {mb:.0}")).collect();
        write!(
            f,
            "images (MB): {} (other {DEFAULT_IMAGE_MB:.0}); one link of {BANDWIDTH_MB_S:.0} MB/s shared by every \
             download; kind load {LOAD_MB_S:.0} MB/s",
            sizes.join(", ")
        )
    }
}
