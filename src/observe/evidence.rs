//! Evidence in the mesh's own words: the HBONE connections ztunnel says failed (`deadline has
//! elapsed`, `Connection refused` to `<pod-ip>:15008`) and the proxies it says it started or was
//! handed in a snapshot; what istio-cni's node agent (and, through its log socket, its CNI plugin)
//! says about each pod's capture; ztunnel's `workloadState` from its admin config dump. Parsers
//! of outside text: pure, and they never panic (`proptests`).
//!
//! The strings are Istio's (istio/istio 1.26-1.29 `cni/pkg/nodeagent/`, `cni/pkg/plugin/
//! plugin.go`; istio/ztunnel `src/inpod/statemanager.rs`, `src/inpod/admin.rs`), unchanged across
//! those releases (`shared/reference/ambient-readoption.md` §1.4, §2).

use std::collections::BTreeMap;

use serde_json::Value;

/// A failed HBONE connection in ztunnel's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HboneFailure {
    /// When ztunnel logged it (seconds since the epoch), from the line's leading timestamp.
    pub at: Option<u64>,
    pub ip: String,
    /// `connection failed: deadline has elapsed`, `io error: Connection refused (os error 111)`, …
    pub error: String,
    pub line: String,
}

/// A line as the container wrote it: `kubectl logs --prefix` (and `--all-pods`) put
/// `[pod/<pod>/<container>] ` before it.
fn unprefixed(line: &str) -> &str {
    split_prefix(line).1
}

/// The pod a line came from (`kubectl logs --all-pods` names it: `[pod/<pod>/<container>] `),
/// and the line as its container wrote it.
fn split_prefix(line: &str) -> (Option<String>, &str) {
    match line.strip_prefix("[pod/").and_then(|rest| rest.split_once("] ")) {
        Some((source, line)) => (source.split('/').next().map(String::from), line),
        None => (None, line),
    }
}

/// ztunnel's lines with `deadline has elapsed` / `Connection refused` to `<ip>:15008`.
pub fn parse_ztunnel(log: &str) -> Vec<HboneFailure> {
    let mut out = Vec::new();
    for line in log.lines().map(unprefixed) {
        if !(line.contains("deadline has elapsed") || line.contains("Connection refused")) {
            continue;
        }
        let Some(at) = line.find("dst.addr=") else { continue };
        let addr = line[at + "dst.addr=".len()..].split_whitespace().next().unwrap_or("").trim_matches('"');
        let Some(ip) = addr.strip_suffix(":15008") else { continue };
        let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
        let error = match line.find("error=\"") {
            Some(e) => line[e + 7..].split('"').next().unwrap_or("").to_string(),
            None if line.contains("deadline has elapsed") => "deadline has elapsed".to_string(),
            None => "Connection refused".to_string(),
        };
        let at = stamp(line);
        out.push(HboneFailure { at, ip, error, line: line.trim().to_string() });
    }
    out
}

/// What ztunnel's log says about its inpod proxies (`inpod::statemanager`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZtunnelSays {
    /// `pod received, starting proxy` (uid, name, namespace): handed this pod with some netns,
    /// by a CNI ADD or a snapshot (logged before any idempotency check).
    Received { uid: String },
    /// `received snapshot sent`: istio-cni's snapshot is complete; ztunnel drained every proxy
    /// it did not name. ztunnel is Ready only after its first one.
    SnapshotDone,
}

/// One ztunnel line about its proxies, with when it was logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZtunnelLine {
    pub at: Option<u64>,
    pub says: ZtunnelSays,
    /// The ztunnel pod that logged it, when the log names it (one log per node's pod).
    pub source: Option<String>,
}

/// ztunnel's `pod received, starting proxy` and `received snapshot sent` lines.
pub fn parse_ztunnel_proxies(log: &str) -> Vec<ZtunnelLine> {
    log.lines()
        .filter_map(|line| {
            let (source, line) = split_prefix(line);
            let says = if line.contains("pod received, starting proxy") {
                ZtunnelSays::Received { uid: field(line, "uid")? }
            } else if line.contains("received snapshot sent") {
                ZtunnelSays::SnapshotDone
            } else {
                return None;
            };
            Some(ZtunnelLine { at: stamp(line), says, source })
        })
        .collect()
}

/// What istio-cni said about one pod's capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CniSays {
    /// `inpod reconcile mode enabled`: this agent's start-up scan rewrites the in-pod rules of
    /// every pod it finds (`reconcileIptablesOnStartup`); once per agent start, about no pod.
    ReconcileMode,
    /// `sending pod to ztunnel as part of snapshot` (uid): the start-up scan found the pod's
    /// network namespace and hands it to ztunnel.
    Snapshot,
    /// `sending pod add to ztunnel` (uid): a CNI ADD for its new sandbox reached the agent, which
    /// wrote the in-pod rules and hands the netns to ztunnel.
    Added,
    /// A failure for this pod, in Istio's words: the start-up reconcile failed (`failed to
    /// reconcile inpod rules for pod`), the scan found no netns (`sending 'keep'`), an ADD failed
    /// (`failed to handle add event`, `pod partially added`, `failed to add workload`), or the
    /// plugin let the sandbox through uncaptured (`failed to check if pod is ambient`, `excluded
    /// because it does not have istio-proxy container`).
    Failed(String),
}

/// One istio-cni line about a pod (or, for [`CniSays::ReconcileMode`], about the agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniLine {
    pub at: Option<u64>,
    pub says: CniSays,
    /// The pod's UID, where the line names it (`uid=`).
    pub uid: Option<String>,
    /// The pod's namespace and name, where the line names them (`ns=`/`name=`,
    /// `namespace=`/`name=`, or the plugin's `pod=<ns>/<name>`).
    pub pod: Option<(String, String)>,
    pub line: String,
    /// The istio-cni pod that logged it, when the log names it (one agent per node).
    pub source: Option<String>,
}

impl CniLine {
    /// Whether this line is about the pod with this UID, namespace and name.
    pub fn about(&self, uid: &str, namespace: &str, name: &str) -> bool {
        let by_uid = self.uid.as_deref().is_some_and(|u| !uid.is_empty() && u == uid);
        let by_name = self.pod.as_ref().is_some_and(|(ns, n)| ns == namespace && n == name);
        by_uid || by_name
    }

    /// Short words for a line (the failure's own), for reasons and evidence.
    pub fn what(&self) -> &str {
        match &self.says {
            CniSays::ReconcileMode => "inpod reconcile mode enabled",
            CniSays::Snapshot => "sent in the start-up snapshot",
            CniSays::Added => "added by the CNI plugin's ADD",
            CniSays::Failed(what) => what,
        }
    }
}

/// The failures istio-cni logs about a pod, by the words that identify them.
const FAILURES: [&str; 7] = [
    "failed to reconcile inpod rules for pod",
    "netns is not available for pod, sending 'keep' to ztunnel",
    "failed to handle add event",
    "failed to add pod to ztunnel: pod partially added",
    "failed to add workload",
    "failed to check if pod is ambient",
    "excluded because it does not have istio-proxy container",
];

/// istio-cni's lines about capture: the reconcile mode, each pod sent in the snapshot or added
/// by a CNI ADD, and each failure (text or JSON format, the agent's and the plugin's).
pub fn parse_cni(log: &str) -> Vec<CniLine> {
    let mut out = Vec::new();
    for line in log.lines() {
        let (source, line) = split_prefix(line);
        let says = if line.contains("inpod reconcile mode enabled") {
            CniSays::ReconcileMode
        } else if line.contains("sending pod to ztunnel as part of snapshot") {
            CniSays::Snapshot
        } else if line.contains("sending pod add to ztunnel") {
            CniSays::Added
        } else if let Some(f) = FAILURES.iter().find(|f| line.contains(**f)) {
            // The short form for `keep`: what it means for the pod.
            let what = if f.contains("sending 'keep'") { "netns is not available for pod" } else { f };
            CniSays::Failed(what.to_string())
        } else {
            continue;
        };
        let uid = field(line, "uid");
        let pod = match (field(line, "ns").or_else(|| field(line, "namespace")), field(line, "name")) {
            (Some(ns), Some(name)) => Some((ns, name)),
            _ => field(line, "pod").and_then(|p| {
                let (ns, name) = p.split_once('/')?;
                Some((ns.to_string(), name.to_string()))
            }),
        };
        if says != CniSays::ReconcileMode && uid.is_none() && pod.is_none() {
            continue;
        }
        out.push(CniLine { at: stamp(line), says, uid, pod, line: line.trim().to_string(), source });
    }
    out
}

/// One proxy in ztunnel's `workloadState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub name: String,
    pub namespace: String,
    /// `Up` (a proxy runs in the netns it was handed), `Pending` (being started, or failed and
    /// retried), as ztunnel writes it.
    pub state: String,
}

/// ztunnel's admin config dump (`istioctl ztunnel-config all <pod> -o json` prints it raw): its
/// `workloadState`, a map keyed by pod UID (ztunnel `src/inpod/admin.rs`). `Err` when the text is
/// not that document.
pub fn parse_workload_state(text: &str) -> Result<BTreeMap<String, Proxy>, String> {
    let doc: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("istioctl printed no config dump (invalid JSON: {e})"))?;
    let Some(dump) = doc.as_object() else {
        return Err("istioctl printed no config dump (not a JSON object)".into());
    };
    let state = match dump.get("workloadState") {
        // ztunnel omits nothing: an empty map is `{}`; an absent key means a ztunnel that is not
        // in inpod mode (or a dump that is not ztunnel's).
        Some(Value::Object(map)) => map,
        Some(_) => return Err("ztunnel's config dump has a workloadState that is not a map".into()),
        None => return Err("ztunnel's config dump has no workloadState (not in inpod mode?)".into()),
    };
    Ok(state
        .iter()
        .map(|(uid, v)| {
            let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            (
                uid.clone(),
                Proxy { name: text("/info/name"), namespace: text("/info/namespace"), state: text("/state") },
            )
        })
        .collect())
}

/// The line's leading timestamp (text format), or its `time` field (JSON format).
fn stamp(line: &str) -> Option<u64> {
    line.split_whitespace()
        .next()
        .and_then(crate::utc::parse)
        .or_else(|| field(line, "time").and_then(|t| crate::utc::parse(&t)))
}

/// A `key=value` label (Istio's text format: `… \tns=ecom name=x`; ztunnel quotes strings:
/// `uid="…"`) or a `"key":"value"` field (JSON format).
fn field(line: &str, key: &str) -> Option<String> {
    let text = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches(|c| c == '"' || c == ',').to_string());
    text.filter(|v| !v.is_empty()).or_else(|| {
        let json = format!("\"{key}\":\"");
        let at = line.find(&json)? + json.len();
        Some(line.get(at..)?.split('"').next()?.to_string()).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_cni_capture_lines_are_read_in_both_formats() {
        let log = "\
2026-12-01T09:12:01.100000Z\tinfo\tcni-agent\tinpod reconcile mode enabled
2026-12-01T09:12:01.120000Z\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod\tns=identity name=keycloak-db-7d4b9-x2k4p
2026-12-01T09:12:02.300000Z\tinfo\tcni-agent\tsending pod to ztunnel as part of snapshot\tuid=5a1e-1 name=redis-6b5-abcde namespace=infra serviceAccount=default
2026-12-01T09:12:02.310000Z\tinfo\tcni-agent\tnetns is not available for pod, sending 'keep' to ztunnel\tuid=5a1e-2
2026-12-01T09:12:04.000000Z\tinfo\tcni-agent\tadding pod to the mesh\tns=ecom name=ecom-db-1
2026-12-01T09:12:04.010000Z\tinfo\tcni-agent\tsending pod add to ztunnel\tuid=5a1e-3 name=ecom-db-1 namespace=ecom serviceAccount=default conn_uuid=0f
2026-12-01T09:12:05.000000Z\terror\tcni-plugin\tistio-cni cmdAdd failed to check if pod is ambient: the server is currently unable to handle the request\tpod=analytics/superset-1
{\"level\":\"info\",\"time\":\"2026-12-01T09:12:06.000000Z\",\"scope\":\"cni-agent\",\"msg\":\"sending pod add to ztunnel\",\"uid\":\"5a1e-4\",\"name\":\"ui-1\",\"namespace\":\"ecom\"}
2026-12-01T09:12:07.000000Z\tinfo\tcni-agent\tunrelated line\tns=ecom name=x
";
        let lines = parse_cni(log);
        let says: Vec<&CniSays> = lines.iter().map(|l| &l.says).collect();
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert_eq!(says[0], &CniSays::ReconcileMode);
        assert_eq!(says[1], &CniSays::Failed("failed to reconcile inpod rules for pod".into()));
        assert_eq!(lines[1].pod, Some(("identity".into(), "keycloak-db-7d4b9-x2k4p".into())));
        assert_eq!((says[2], lines[2].uid.as_deref()), (&CniSays::Snapshot, Some("5a1e-1")));
        assert!(lines[2].about("5a1e-1", "x", "y") && lines[2].about("", "infra", "redis-6b5-abcde"));
        assert_eq!(says[3], &CniSays::Failed("netns is not available for pod".into()));
        assert_eq!((says[4], lines[4].uid.as_deref()), (&CniSays::Added, Some("5a1e-3")));
        assert_eq!(lines[5].pod, Some(("analytics".into(), "superset-1".into())));
        assert_eq!(says[5], &CniSays::Failed("failed to check if pod is ambient".into()));
        assert_eq!((says[6], lines[6].uid.as_deref()), (&CniSays::Added, Some("5a1e-4")));
        assert_eq!(lines[6].at, crate::utc::parse("2026-12-01T09:12:06Z"));
        assert_eq!(lines[4].at, crate::utc::parse("2026-12-01T09:12:04Z"));
    }

    #[test]
    fn ztunnel_proxy_lines_and_its_workload_state_are_read() {
        let log = "2025-08-05T13:41:15.713121Z\tinfo\tinpod::statemanager\tpod received, starting proxy\tuid=\"ec7115b2-652a\" name=\"accounts-db-0\" namespace=\"default\"\n\
                   2025-08-05T13:41:15.800000Z\tinfo\tinpod::statemanager\treceived snapshot sent\t\n";
        let lines = parse_ztunnel_proxies(log);
        assert_eq!(lines[0].says, ZtunnelSays::Received { uid: "ec7115b2-652a".into() });
        assert_eq!(lines[1].says, ZtunnelSays::SnapshotDone);
        assert_eq!(lines[1].at, crate::utc::parse("2025-08-05T13:41:15Z"));

        let dump = r#"{"certificates": [], "workloadState": {
            "uid1": {"info": {"name": "redis-1", "namespace": "infra", "serviceAccount": "default"}, "state": "Up",
                     "connections": {"inbound": [], "outbound": []}},
            "uid2": {"info": {"name": "ecom-db-1", "namespace": "ecom", "serviceAccount": "default"}, "state": "Pending"}}}"#;
        let state = parse_workload_state(dump).unwrap();
        assert_eq!(
            state["uid1"],
            Proxy { name: "redis-1".into(), namespace: "infra".into(), state: "Up".into() }
        );
        assert_eq!(state["uid2"].state, "Pending");
        assert!(parse_workload_state(r#"{"workloadState": {}}"#).unwrap().is_empty());
        assert!(parse_workload_state(r#"{"services": []}"#).unwrap_err().contains("no workloadState"));
        assert!(parse_workload_state("Error: failed to execute command").is_err());
    }
}
