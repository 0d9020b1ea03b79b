//! The cluster's objects as `kubectl get … -o json` prints them (pods, deployments, events), as
//! small typed values, and the judgements made on them: which pods a deployment selects, which
//! pod holds an IP, what is wrong with a pod. Pure: no IO here.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub restarts: u64,
    /// `state.waiting`: (reason, message).
    pub waiting: Option<(String, String)>,
    /// `lastState.terminated`: (exit code, reason).
    pub last_exit: Option<(i64, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub phase: String,
    /// `status.podIP` and `status.podIPs`.
    pub ips: Vec<String>,
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created: Option<u64>,
    /// When its `Ready` condition last turned True (`lastTransitionTime`); `None` while not Ready.
    pub ready_since: Option<u64>,
    /// `metadata.deletionTimestamp` is set: it is going away.
    pub terminating: bool,
    /// istio-cni enrolled it in the ambient mesh (`ambient.istio.io/redirection: enabled`).
    pub meshed: bool,
    /// Its controller (`ownerReferences[controller=true]`): (kind, name), e.g. (`DaemonSet`,
    /// `ztunnel`) or (`ReplicaSet`, `ecom-db-7d4b9`).
    pub owner: Option<(String, String)>,
    /// `PodScheduled=False`: the scheduler's message.
    pub unscheduled: Option<String>,
    /// Container statuses, or the spec's containers when there are none yet.
    pub containers: Vec<Container>,
}

impl Pod {
    pub fn ready(&self) -> bool {
        self.phase == "Running" && !self.containers.is_empty() && self.containers.iter().all(|c| c.ready)
    }

    pub fn restarts(&self) -> u64 {
        self.containers.iter().map(|c| c.restarts).sum()
    }
}

/// An env var of a Deployment's containers: its value, or `None` when it comes from elsewhere
/// (`valueFrom`), which a reader of the Deployment cannot know.
pub type EnvValue = Option<String>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployment {
    pub namespace: String,
    pub name: String,
    /// `metadata.generation` and `status.observedGeneration`: the controller has not acted on
    /// the latest spec while the first is greater.
    pub generation: i64,
    pub observed_generation: i64,
    pub desired: i64,
    pub ready: i64,
    /// `status.updatedReplicas`: pods of the latest template (the API omits zero counts).
    pub updated: i64,
    pub selector: BTreeMap<String, String>,
    pub created: Option<u64>,
    /// Claim names of the pod template's PVC-backed volumes.
    pub claims: Vec<String>,
    /// Every container's env, by name.
    pub env: BTreeMap<String, EnvValue>,
    /// Names of ConfigMaps/Secrets the containers take whole env from (`envFrom`).
    pub env_from: Vec<String>,
}

impl Deployment {
    /// The pods this deployment's selector matches (its `matchLabels`, in its namespace).
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && !self.selector.is_empty()
            && self.selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub namespace: String,
    /// The involved object's kind and name.
    pub kind: String,
    pub object: String,
    /// `Normal` or `Warning`.
    pub typ: String,
    pub reason: String,
    pub message: String,
    pub count: u64,
    /// `lastTimestamp` (or `eventTime`), seconds since the epoch.
    pub last: Option<u64>,
}

fn items(json: &str) -> Result<Vec<Value>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("kubectl printed invalid JSON: {e}"))?;
    match doc.get("items").and_then(Value::as_array) {
        Some(items) => Ok(items.clone()),
        None => Err("kubectl printed no `items` list".into()),
    }
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string()
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

pub fn parse_pods(json: &str) -> Result<Vec<Pod>, String> {
    Ok(items(json)?.iter().map(pod).collect())
}

/// One pod object (a watch event's `object`).
pub fn parse_pod(v: &Value) -> Pod {
    pod(v)
}

fn pod(v: &Value) -> Pod {
    let mut ips: Vec<String> = Vec::new();
    let primary = text(v, "/status/podIP");
    if !primary.is_empty() {
        ips.push(primary);
    }
    for ip in v.pointer("/status/podIPs").and_then(Value::as_array).into_iter().flatten() {
        if let Some(ip) = ip.get("ip").and_then(Value::as_str)
            && !ips.iter().any(|i| i == ip)
        {
            ips.push(ip.to_string());
        }
    }
    let unscheduled = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .map(|c| {
            let reason = text(c, "/reason");
            let message = text(c, "/message");
            if message.is_empty() { reason } else { message }
        });
    let ready_since = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .and_then(|c| parse_time(&text(c, "/lastTransitionTime")));
    let owner = v
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| (text(o, "/kind"), text(o, "/name")));
    let statuses = v.pointer("/status/containerStatuses").and_then(Value::as_array);
    let containers = match statuses {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|c| Container {
                name: text(c, "/name"),
                image: text(c, "/image"),
                ready: c.get("ready").and_then(Value::as_bool).unwrap_or(false),
                restarts: c.get("restartCount").and_then(Value::as_u64).unwrap_or(0),
                waiting: c.pointer("/state/waiting").map(|w| (text(w, "/reason"), text(w, "/message"))),
                last_exit: c
                    .pointer("/lastState/terminated")
                    .map(|t| (t.get("exitCode").and_then(Value::as_i64).unwrap_or(0), text(t, "/reason"))),
            })
            .collect(),
        _ => v
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| Container { name: text(c, "/name"), image: text(c, "/image"), ..Container::default() })
            .collect(),
    };
    Pod {
        namespace: text(v, "/metadata/namespace"),
        name: text(v, "/metadata/name"),
        labels: labels(v.pointer("/metadata/labels")),
        phase: text(v, "/status/phase"),
        ips,
        created: parse_time(&text(v, "/metadata/creationTimestamp")),
        ready_since,
        terminating: v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()),
        meshed: text(v, "/metadata/annotations/ambient.istio.io~1redirection") == "enabled",
        owner,
        unscheduled,
        containers,
    }
}

pub fn parse_deployments(json: &str) -> Result<Vec<Deployment>, String> {
    Ok(items(json)?.iter().map(deployment).collect())
}

fn deployment(v: &Value) -> Deployment {
    let spec = v.pointer("/spec/template/spec");
    let claims = spec
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|vol| vol.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str))
        .map(String::from)
        .collect();
    let mut env = BTreeMap::new();
    let mut env_from = Vec::new();
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    for c in containers.into_iter().flatten() {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = e.get("name").and_then(Value::as_str) else { continue };
            env.insert(name.to_string(), e.get("value").and_then(Value::as_str).map(String::from));
        }
        for from in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            let name = text(from, "/configMapRef/name") + &text(from, "/secretRef/name");
            env_from.push(name);
        }
    }
    let count = |pointer: &str| v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    Deployment {
        namespace: text(v, "/metadata/namespace"),
        name: text(v, "/metadata/name"),
        generation: count("/metadata/generation"),
        observed_generation: count("/status/observedGeneration"),
        desired: v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1),
        ready: count("/status/readyReplicas"),
        updated: count("/status/updatedReplicas"),
        selector: labels(v.pointer("/spec/selector/matchLabels")),
        created: parse_time(&text(v, "/metadata/creationTimestamp")),
        claims,
        env,
        env_from,
    }
}

pub fn parse_events(json: &str) -> Result<Vec<Event>, String> {
    Ok(items(json)?
        .iter()
        .map(|v| {
            let last = [text(v, "/lastTimestamp"), text(v, "/eventTime"), text(v, "/firstTimestamp")]
                .iter()
                .find_map(|t| parse_time(t));
            Event {
                namespace: text(v, "/metadata/namespace"),
                kind: text(v, "/involvedObject/kind"),
                object: text(v, "/involvedObject/name"),
                typ: text(v, "/type"),
                reason: text(v, "/reason"),
                message: text(v, "/message"),
                count: v.get("count").and_then(Value::as_u64).unwrap_or(1),
                last,
            }
        })
        .collect())
}

/// A Kubernetes timestamp (`2026-11-26T11:30:39Z`, fractions and offsets allowed) as seconds
/// since the epoch.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.len() < 20 || !t.is_char_boundary(19) {
        return None;
    }
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if t.as_bytes()[4] != b'-' || t.as_bytes()[10] != b'T' || !(1..=12).contains(&mo) {
        return None;
    }
    let rest = &t[19..];
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let h: i64 = z.get(1..3)?.parse().ok()?;
            let m: i64 = z.get(4..6)?.parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s - offset).ok()
}

/// Seconds since the epoch as Kubernetes writes a timestamp: `2026-11-26T11:30:39Z`.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Seconds as `kubectl get` shows ages: 45s, 12m, 3h, 5d.
pub fn age(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// Every pod by each of its IPs.
pub fn by_ip(pods: &[Pod]) -> BTreeMap<&str, &Pod> {
    pods.iter().flat_map(|p| p.ips.iter().map(move |ip| (ip.as_str(), p))).collect()
}

/// The deployment a pod belongs to, if any.
pub fn owner<'a>(deployments: &'a [Deployment], pod: &Pod) -> Option<&'a Deployment> {
    deployments.iter().find(|d| d.selects(pod))
}

/// What can be wrong with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TroubleKind {
    /// A container keeps exiting (`CrashLoopBackOff`).
    CrashLoop,
    /// The image cannot be pulled (`ImagePullBackOff`, `ErrImagePull`, …).
    ImagePull,
    /// The kubelet cannot create the pod's sandbox (`FailedCreatePodSandBox` events).
    Sandbox,
    /// A container cannot be created from its config (`CreateContainerConfigError`: a missing
    /// Secret or ConfigMap key).
    Config,
    /// No node can take the pod (`PodScheduled=False`).
    Unschedulable,
    /// Pending for longer than [`PENDING_GRACE`] for another reason.
    Pending,
}

impl TroubleKind {
    /// The states a wait gives up on at once (unless tolerated): waiting cannot fix them.
    pub fn fatal(self) -> bool {
        matches!(self, TroubleKind::CrashLoop | TroubleKind::ImagePull | TroubleKind::Sandbox)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trouble {
    pub kind: TroubleKind,
    /// What Kubernetes calls it (`CrashLoopBackOff`, `ImagePullBackOff`, `FailedCreatePodSandBox`,
    /// `Unschedulable`, …).
    pub reason: String,
    /// Its message (the waiting message, the latest event, the scheduler's words).
    pub message: String,
    /// The container concerned, when there is one.
    pub container: Option<String>,
    /// The image concerned (image pulls).
    pub image: Option<String>,
}

/// A pod Pending for longer than this is reported even without a known reason.
pub const PENDING_GRACE: u64 = 120;

/// A container not ready after this many restarts, its last run failed, is crash-looping even
/// in the moment it runs again between two back-offs (kubectl then shows `Running`).
pub const RESTARTS_CRASHING: u64 = 3;

/// The Warning events about this pod, oldest first.
pub fn events_of<'a>(events: &'a [Event], pod: &Pod) -> Vec<&'a Event> {
    let mut out: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.namespace == pod.namespace && e.object == pod.name && (e.kind == "Pod" || e.kind.is_empty())
        })
        .collect();
    out.sort_by_key(|e| e.last.unwrap_or(0));
    out
}

/// What is wrong with this pod, if anything. `now` is seconds since the epoch.
pub fn trouble(pod: &Pod, events: &[Event], now: u64) -> Option<Trouble> {
    let waiting = |reasons: &[&str]| {
        pod.containers.iter().find_map(|c| match &c.waiting {
            Some((r, m)) if reasons.contains(&r.as_str()) => Some((c, r.clone(), m.clone())),
            _ => None,
        })
    };
    if let Some((c, reason, message)) = waiting(&["CrashLoopBackOff"]) {
        return Some(Trouble {
            kind: TroubleKind::CrashLoop,
            reason,
            message,
            container: Some(c.name.clone()),
            image: None,
        });
    }
    let between_backoffs = pod.containers.iter().find(|c| {
        !c.ready
            && c.restarts >= RESTARTS_CRASHING
            && c.last_exit.as_ref().is_some_and(|(code, _)| *code != 0)
    });
    if let Some(c) = between_backoffs {
        let (code, why) = c.last_exit.clone().unwrap_or_default();
        let why = if why.is_empty() { "Error".to_string() } else { why };
        return Some(Trouble {
            kind: TroubleKind::CrashLoop,
            reason: format!("{why} (exit code {code})"),
            message: format!("started again after {} restarts, not ready", c.restarts),
            container: Some(c.name.clone()),
            image: None,
        });
    }
    if let Some((c, reason, message)) =
        waiting(&["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"])
    {
        return Some(Trouble {
            kind: TroubleKind::ImagePull,
            reason,
            message,
            container: Some(c.name.clone()),
            image: Some(c.image.clone()).filter(|i| !i.is_empty()),
        });
    }
    if let Some((c, reason, message)) = waiting(&["CreateContainerConfigError", "CreateContainerError"]) {
        return Some(Trouble {
            kind: TroubleKind::Config,
            reason,
            message,
            container: Some(c.name.clone()),
            image: None,
        });
    }
    if pod.phase == "Pending" || pod.phase.is_empty() {
        let sandbox = events_of(events, pod).into_iter().rev().find(|e| e.reason == "FailedCreatePodSandBox");
        if let Some(e) = sandbox {
            return Some(Trouble {
                kind: TroubleKind::Sandbox,
                reason: e.reason.clone(),
                message: e.message.clone(),
                container: None,
                image: None,
            });
        }
        if let Some(message) = &pod.unscheduled {
            return Some(Trouble {
                kind: TroubleKind::Unschedulable,
                reason: "Unschedulable".into(),
                message: message.clone(),
                container: None,
                image: None,
            });
        }
        let old = pod.created.is_some_and(|c| now.saturating_sub(c) > PENDING_GRACE);
        if pod.phase == "Pending" && old {
            let why = pod.containers.iter().find_map(|c| c.waiting.clone());
            let (reason, message) = why.unwrap_or_else(|| ("Pending".into(), String::new()));
            return Some(Trouble {
                kind: TroubleKind::Pending,
                reason,
                message,
                container: None,
                image: None,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(items: Value) -> String {
        json!({"items": items}).to_string()
    }

    #[test]
    fn timestamps_read_like_kubernetes_writes_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2025-11-26T11:30:39Z"), Some(1_764_156_639));
        assert_eq!(parse_time("2025-11-26T11:30:39.123456Z"), Some(1_764_156_639));
        assert_eq!(parse_time("2025-11-26T12:30:39+01:00"), Some(1_764_156_639));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for t in [0, 1_709_164_800, 1_764_156_639, 4_102_444_799] {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{}", format_time(t));
        }
        assert_eq!(format_time(1_764_156_639), "2025-11-26T11:30:39Z");
        for bad in ["", "yesterday", "2025-13-01T00:00:00Z", "2025-11-26 11:30:39Z", "2025-11-26T11:30:39"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(age(45), "45s");
        assert_eq!(age(750), "12m");
        assert_eq!(age(4 * 3600), "4h");
        assert_eq!(age(5 * 86_400), "5d");
    }

    #[test]
    fn pods_parse_with_ips_containers_and_scheduling() {
        let json = list(json!([
            {"metadata": {"namespace": "ecom", "name": "db-1", "labels": {"app": "db"},
                          "creationTimestamp": "2025-11-26T11:30:39Z"},
             "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}],
                        "containerStatuses": [{"name": "db", "image": "postgres:17", "ready": true, "restartCount": 2,
                                               "state": {"running": {}}}]}},
            {"metadata": {"namespace": "ecom", "name": "db-2", "labels": {"app": "db"}},
             "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
             "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": "0/1 nodes are available"}]}}
        ]));
        let pods = parse_pods(&json).unwrap();
        assert_eq!(pods[0].ips, ["10.244.0.7", "fd00::7"]);
        assert!(pods[0].ready());
        assert_eq!(pods[0].restarts(), 2);
        assert_eq!(pods[1].unscheduled.as_deref(), Some("0/1 nodes are available"));
        assert_eq!(pods[1].containers[0].image, "postgres:17");
        assert_eq!(by_ip(&pods)["fd00::7"].name, "db-1");
        assert!(parse_pods("{}").is_err());
        assert!(parse_pods("nope").is_err());
    }

    #[test]
    fn deployments_parse_selectors_claims_and_env() {
        let json = list(json!([{
            "metadata": {"namespace": "infra", "name": "debezium"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "debezium"}},
                     "template": {"spec": {
                        "volumes": [{"name": "c", "secret": {"secretName": "s"}},
                                    {"name": "d", "persistentVolumeClaim": {"claimName": "debezium-data"}}],
                        "containers": [{"name": "connect", "env": [
                            {"name": "CONNECT_CONFIG_PROVIDERS", "value": "file"},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "connect-env"}}]}]}}},
            "status": {"readyReplicas": 1}}]));
        let d = &parse_deployments(&json).unwrap()[0];
        assert_eq!((d.desired, d.ready), (1, 1));
        assert_eq!(d.claims, ["debezium-data"]);
        assert_eq!(d.env["CONNECT_CONFIG_PROVIDERS"].as_deref(), Some("file"));
        assert_eq!(d.env["PASSWORD"], None);
        assert_eq!(d.env_from, ["connect-env"]);
        let mut pod = Pod { namespace: "infra".into(), name: "debezium-x".into(), ..Pod::default() };
        assert!(!d.selects(&pod));
        pod.labels.insert("app".into(), "debezium".into());
        assert!(d.selects(&pod));
        pod.namespace = "other".into();
        assert!(!d.selects(&pod));
    }

    fn pod_waiting(reason: &str) -> Pod {
        Pod {
            namespace: "infra".into(),
            name: "p".into(),
            phase: "Running".into(),
            containers: vec![Container {
                name: "c".into(),
                image: "img:1".into(),
                waiting: Some((reason.into(), format!("{reason} message"))),
                ..Container::default()
            }],
            ..Pod::default()
        }
    }

    #[test]
    fn troubles_are_classified_by_what_kubernetes_says() {
        let now = 1_000_000;
        let t = |pod: &Pod, events: &[Event]| trouble(pod, events, now).map(|t| (t.kind, t.reason));
        assert_eq!(
            t(&pod_waiting("CrashLoopBackOff"), &[]),
            Some((TroubleKind::CrashLoop, "CrashLoopBackOff".into()))
        );
        let pull = trouble(&pod_waiting("ImagePullBackOff"), &[], now).unwrap();
        assert_eq!((pull.kind, pull.image.as_deref()), (TroubleKind::ImagePull, Some("img:1")));
        assert_eq!(t(&pod_waiting("ErrImagePull"), &[]).map(|x| x.0), Some(TroubleKind::ImagePull));
        assert_eq!(
            t(&pod_waiting("CreateContainerConfigError"), &[]).map(|x| x.0),
            Some(TroubleKind::Config)
        );
        assert_eq!(t(&pod_waiting("ContainerCreating"), &[]), None, "still starting is not a trouble");
        let mut running_again = pod_waiting("x");
        running_again.containers[0].waiting = None;
        running_again.containers[0].restarts = RESTARTS_CRASHING;
        running_again.containers[0].last_exit = Some((1, "Error".into()));
        assert_eq!(t(&running_again, &[]), Some((TroubleKind::CrashLoop, "Error (exit code 1)".into())));
        running_again.containers[0].last_exit = Some((0, "Completed".into()));
        assert_eq!(t(&running_again, &[]), None, "a clean exit is not a crash");

        let mut creating = pod_waiting("ContainerCreating");
        creating.phase = "Pending".into();
        creating.created = Some(now - 10);
        let sandbox = Event {
            namespace: "infra".into(),
            kind: "Pod".into(),
            object: "p".into(),
            typ: "Warning".into(),
            reason: "FailedCreatePodSandBox".into(),
            message: "Failed to create pod sandbox: … no ztunnel connection".into(),
            count: 3,
            last: Some(now - 1),
        };
        let other_pod = Event { object: "q".into(), ..sandbox.clone() };
        assert_eq!(t(&creating, &[other_pod]), None);
        let found = trouble(&creating, &[sandbox], now).unwrap();
        assert_eq!(found.kind, TroubleKind::Sandbox);
        assert!(found.message.contains("no ztunnel connection"));
        assert!(found.kind.fatal());

        let mut unscheduled = Pod { phase: "Pending".into(), created: Some(now), ..Pod::default() };
        unscheduled.unscheduled = Some("0/1 nodes are available: 1 Insufficient memory.".into());
        assert_eq!(t(&unscheduled, &[]).map(|x| x.0), Some(TroubleKind::Unschedulable));
        assert!(!TroubleKind::Unschedulable.fatal());

        creating.created = Some(now - PENDING_GRACE - 1);
        assert_eq!(t(&creating, &[]), Some((TroubleKind::Pending, "ContainerCreating".into())));
        let healthy = Pod { phase: "Running".into(), ..pod_waiting("x") };
        let mut healthy = healthy;
        healthy.containers[0].waiting = None;
        assert_eq!(t(&healthy, &[]), None);
    }
}
