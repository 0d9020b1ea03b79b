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
    /// New pods of this workload cannot pull their image: the container never starts, the pod
    /// stays `Pending` with the container waiting in `ImagePullBackOff` (kubelet's
    /// `Back-off pulling image "<image>"`).
    ImagePullBackOff { workload: String },
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
    /// Clear every fault.
    Clear,
}
