//! Faults a test can inject (`Sim::fault`, `bookstore-sim ctl fault '<json>'`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The kube-apiserver port refuses connections for this many seconds (real time).
    ApiRefuseFor { secs: f64 },
    /// The next `count` kube API requests alternate: one fails with `code` (500 or 503), one passes.
    ApiErrors { code: u16, count: u32 },
    /// New pods of this workload never become Ready (readiness keeps failing, no crash).
    RolloutNeverCompletes { workload: String },
    /// New container starts of this workload exit at their ready time: CrashLoopBackOff.
    CrashLoop { workload: String },
    /// New pods of this workload cannot pull their image: the container does not start, the pod
    /// stays `Pending` with the container waiting in `ImagePullBackOff` (kubelet's
    /// `Back-off pulling image "<image>"`), with the kubelet's `Pulling`, `Failed` (the pull
    /// error, in containerd's words) and `BackOff` events, again at every retry of the kubelet's
    /// image back-off (10 s doubling to 300 s, scaled; see `troubles.rs`). With `secs`, a pod's
    /// pulls fail for that many real seconds from its first, then the next retry succeeds and
    /// the pod starts (a rate limit lifting, the network back).
    ImagePullBackOff {
        workload: String,
        #[serde(default)]
        error: PullError,
        #[serde(default)]
        secs: Option<f64>,
    },
    /// The next `count` requests to `/connectors/{name}...` answer 409 with `message`
    /// (empty: the `stale configuration` text).
    Connect409Storm { message: String, count: u32 },
    /// The next `count` Connect requests answer 500 `Request timed out. The worker is currently ...`.
    Connect500Timeout { count: u32 },
    /// The next `count` Connect requests answer an HTML 502 page (a proxy in front of Connect).
    ConnectHtml502 { count: u32 },
    /// The next `count` connections to the Connect host port are reset without an answer, as
    /// when the NodePort has no ready endpoint yet (Connect "not reachable until late").
    ConnectReset { count: u32 },
    /// The next `count` `GET /connectors/{name}/status` answer 404 `No status found for connector
    /// <name>`, as while the status topic lags a create (kafka-connect.md §3).
    ConnectStatus404 { count: u32 },
    /// The task of this connector reports FAILED with a trace.
    ConnectorTaskFailed { connector: String },
    /// Remove a key from the Debezium credentials secret (the database keeps its password).
    RemoveSecretKey { key: String },
    /// Pods of this workload created from now on fit no node: `Pending`, `PodScheduled=False`
    /// (`Unschedulable`), the scheduler's `FailedScheduling` event.
    Unschedulable { workload: String },
    /// Pods of this workload created from now on get no sandbox, ztunnel and istio-cni Ready or
    /// not: `ContainerCreating` with `FailedCreatePodSandBox` (`… no ztunnel connection`),
    /// recorded again at every retry of the kubelet's pod worker (every 10 s, scaled).
    SandboxCreationFails { workload: String },
    /// ztunnel loses its connection to istio-cni's node agent when the next ambient Deployment
    /// pod is created (as when istio-cni-node restarts) and reconnects `secs` real seconds later:
    /// meanwhile ztunnel's pods are not Ready (ztunnel is Ready only while connected) and every
    /// ambient pod created gets `FailedCreatePodSandBox … no ztunnel connection`, retried by the
    /// kubelet's pod worker every 10 s (scaled); the first retry after the reconnection succeeds.
    ZtunnelDisconnects { secs: f64 },
    /// Pods of this workload created from now on cannot start: a Secret key their env names is
    /// missing (`CreateContainerConfigError`, the kubelet's `Failed` event).
    ContainerConfigError { workload: String },
    /// istio-cni cannot reconcile the in-pod rules of this workload's pod (its netns is gone):
    /// the agent logs `failed to reconcile inpod rules for pod …`, and HBONE to the pod is refused.
    CniReconcileFailed { workload: String },
    /// One workload's pod lost its mesh registration on an otherwise healthy stack (an istio-cni
    /// boot race, a pod whose netns was replaced): HBONE to it times out (the gateway answers
    /// Envoy's upstream reset, ztunnel logs `deadline has elapsed` to its `<ip>:15008`), and
    /// istio-cni logs that it could not reconcile its in-pod rules. A new pod registers.
    StaleWorkload { workload: String },
    /// HBONE to every pod of this workload, present and future, times out, as when a
    /// NetworkPolicy blocks port 15008 to it: no restart of it or of ztunnel helps.
    HboneBlocked { workload: String },
    /// A second control-plane node container of the cluster (`<cluster>-control-plane2`).
    ExtraControlPlane,
    /// Clear every fault.
    Clear,
}

/// What the registry (or the node) answers a pull, in containerd's and the kubelet's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullError {
    /// The tag does not exist: `<ref>: not found` (gRPC code NotFound).
    #[default]
    NotFound,
    /// A repository that does not exist or needs credentials: Docker Hub answers 401
    /// `insufficient_scope`, containerd says `pull access denied, …`.
    Denied,
    /// Docker Hub's pull rate limit: `… 429 Too Many Requests`.
    RateLimited,
    /// `net/http: TLS handshake timeout`.
    TlsTimeout,
    /// `dial tcp …:443: i/o timeout`.
    IoTimeout,
    /// Our image was never `kind load`ed into the node: with `imagePullPolicy: Never` the
    /// kubelet's `ErrImageNeverPull`; otherwise it pulls from Docker Hub, which has no such
    /// repository (`pull access denied`).
    NotLoaded,
}
