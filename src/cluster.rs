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
    /// The spec's `imagePullPolicy` (empty when unset).
    pub pull_policy: String,
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
    let spec: Vec<&Value> =
        v.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten().collect();
    let policy = |name: &str| {
        spec.iter().find(|c| c["name"] == name).map(|c| text(c, "/imagePullPolicy")).unwrap_or_default()
    };
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
                pull_policy: policy(&text(c, "/name")),
            })
            .collect(),
        _ => spec
            .iter()
            .map(|c| Container {
                name: text(c, "/name"),
                image: text(c, "/image"),
                pull_policy: text(c, "/imagePullPolicy"),
                ..Container::default()
            })
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

/// `kubectl get deployments,pods -o json`: one List, each item with its `kind` (kubectl sets it
/// from the list it came in; by its shape if it were missing: a pod template is a Deployment's).
pub fn parse_deployments_and_pods(json: &str) -> Result<(Vec<Deployment>, Vec<Pod>), String> {
    let items = items(json)?;
    let kind = |i: &&Value| match i.get("kind").and_then(Value::as_str) {
        Some(k) => k.to_string(),
        None if i.pointer("/spec/template").is_some() => "Deployment".to_string(),
        None => "Pod".to_string(),
    };
    let deployments = items.iter().filter(|i| kind(i) == "Deployment").map(deployment).collect();
    let pods = items.iter().filter(|i| kind(i) == "Pod").map(pod).collect();
    Ok((deployments, pods))
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

/// What waiting can do about a trouble: the one judgement `doctor` and the fail-fast waits share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outlook {
    /// Waiting cannot fix it (why): the waits stop at once; `doctor` reports an error.
    Fatal(String),
    /// The kubelet retries it and it clears by itself (what is waited out): the waits wait and
    /// say so; `doctor` reports a warning.
    Retried(String),
    /// Retried too, but it clears only once something outside the pod changes (what it waits
    /// for): the waits wait until their deadline; `doctor` reports an error.
    Blocked(String),
}

/// What the judgement needs to know around a troubled pod.
#[derive(Clone, Debug, Default)]
pub struct Around<'a> {
    /// Since when ztunnel and istio-cni have both been Ready on the node, seconds since the
    /// epoch; `None` when they are not both Ready ([`mesh_ready_since`]).
    pub mesh_ready_since: Option<u64>,
    /// The images built on this machine (the stack's `bootstrap.images`): no registry has them.
    pub ours: &'a [String],
    /// Everything the pod's workload needs was Ready when it crashed (true when it needs nothing).
    pub needs_ready: bool,
    /// What it needs, for the message (`ecom-db`).
    pub needs: String,
}

/// Since when every pod of each of these DaemonSets (in `namespace`, by their controller) has
/// been Ready: the latest of their `Ready` transitions; `None` when one of them has no pod or a
/// pod not Ready.
pub fn mesh_ready_since(pods: &[Pod], namespace: &str, daemonsets: &[&str]) -> Option<u64> {
    let mut since = 0;
    for ds in daemonsets {
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.namespace == namespace && !p.terminating)
            .filter(|p| p.owner.as_ref().is_some_and(|(kind, name)| kind == "DaemonSet" && name == ds))
            .collect();
        if mine.is_empty() || !mine.iter().all(|p| p.ready()) {
            return None;
        }
        since = mine.iter().filter_map(|p| p.ready_since).fold(since, u64::max);
    }
    Some(since)
}

/// What the registry answered, in the kubelet's words (containerd's errors: `…: not found`,
/// `pull access denied, repository does not exist or may require authorization: …`), that no
/// retry changes.
const PULL_FATAL: &[&str] = &[
    "not found",
    "manifest unknown",
    "pull access denied",
    "insufficient_scope",
    "unauthorized",
    "invalid reference format",
];

/// Pull errors the next attempt may not have, and how to say them.
const PULL_RETRIED: &[(&str, &str)] = &[
    ("toomanyrequests", "the registry's pull rate limit (toomanyrequests)"),
    ("429 too many requests", "the registry's pull rate limit (429 Too Many Requests)"),
    ("tls handshake timeout", "a TLS handshake timeout"),
    ("i/o timeout", "a network i/o timeout"),
    ("context deadline exceeded", "a timeout"),
    ("connection reset", "a connection reset"),
    ("connection refused", "a refused connection"),
    ("no such host", "a failed DNS lookup"),
    ("registry is unavailable", "the registry being unavailable"),
    ("503 service unavailable", "the registry answering 503"),
    ("502 bad gateway", "the registry answering 502"),
    ("500 internal server error", "the registry answering 500"),
];

/// `docker.io/library/redis:7` and `docker.io/bookstore/x:1` as people write them.
fn short_image(image: &str) -> &str {
    image.strip_prefix("docker.io/library/").or_else(|| image.strip_prefix("docker.io/")).unwrap_or(image)
}

/// The error behind an image-pull trouble: the waiting message when it carries one
/// (`ErrImagePull`; newer kubelets write `Back-off pulling image "x": ErrImagePull: …`), else the
/// kubelet's latest `Failed to pull image "<image>": …` event (kubelet `images/image_manager.go`).
pub fn pull_error(pod: &Pod, trouble: &Trouble, events: &[Event]) -> Option<String> {
    let message = trouble.message.trim();
    let carried = match trouble.reason.as_str() {
        "ErrImagePull" => Some(message),
        _ => {
            message.strip_prefix("Back-off pulling image ").and_then(|m| m.split_once("\": ")).map(|(_, e)| e)
        }
    };
    if let Some(e) = carried.filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    let image = trouble.image.as_deref().unwrap_or("");
    let prefix = format!("Failed to pull image \"{image}\": ");
    events_of(events, pod).into_iter().rev().find_map(|e| e.message.strip_prefix(&prefix)).map(String::from)
}

/// Whether waiting can fix this trouble, and what to say about it. Pure: everything it looks at
/// is passed in.
pub fn outlook(pod: &Pod, trouble: &Trouble, events: &[Event], around: &Around) -> Outlook {
    match trouble.kind {
        TroubleKind::CrashLoop if around.needs_ready => {
            Outlook::Fatal("it crashes with everything it needs Ready".into())
        }
        TroubleKind::CrashLoop => Outlook::Retried(format!(
            "it crashed while what it needs ({}) was not Ready; the kubelet's back-off starts it again",
            around.needs
        )),
        TroubleKind::ImagePull => {
            let image = trouble.image.as_deref().unwrap_or("");
            if around.ours.iter().any(|o| short_image(o) == short_image(image)) {
                return Outlook::Fatal(format!(
                    "{image} is built on this machine and is not in the node (no registry has it)"
                ));
            }
            match trouble.reason.as_str() {
                "ErrImageNeverPull" => {
                    return Outlook::Fatal("it is not in the node and its imagePullPolicy is Never".into());
                }
                "InvalidImageName" => return Outlook::Fatal("the image name is invalid".into()),
                _ => {}
            }
            let Some(error) = pull_error(pod, trouble, events) else {
                return Outlook::Retried(
                    "the pull error is not reported yet; the kubelet retries the pull".into(),
                );
            };
            let lower = error.to_lowercase();
            if let Some(marker) = PULL_FATAL.iter().find(|m| lower.contains(*m)) {
                return Outlook::Fatal(format!("the registry answered `{marker}`: {error}"));
            }
            let what = PULL_RETRIED
                .iter()
                .find(|(m, _)| lower.contains(m))
                .map(|(_, what)| what.to_string())
                .unwrap_or_else(|| format!("`{error}`"));
            Outlook::Retried(format!("{what}; the kubelet retries the pull (back-off up to 5 minutes)"))
        }
        TroubleKind::Sandbox => {
            let Some(ready) = around.mesh_ready_since else {
                return Outlook::Retried(
                    "ztunnel or istio-cni is not Ready (istio-cni answers `no ztunnel connection` until \
                     ztunnel is connected); the kubelet retries the sandbox"
                        .into(),
                );
            };
            let last = events_of(events, pod)
                .into_iter()
                .filter(|e| e.reason == "FailedCreatePodSandBox")
                .filter_map(|e| e.last)
                .max();
            match last {
                Some(t) if t > ready => {
                    Outlook::Fatal("the sandbox still fails with ztunnel and istio-cni Ready".into())
                }
                _ => Outlook::Retried(
                    "it failed before ztunnel and istio-cni were both Ready; the kubelet retries the sandbox"
                        .into(),
                ),
            }
        }
        TroubleKind::Config => {
            Outlook::Blocked("the kubelet retries once the Secret or ConfigMap key exists".into())
        }
        TroubleKind::Unschedulable => Outlook::Blocked("the scheduler retries once a node has room".into()),
        TroubleKind::Pending => Outlook::Blocked("its events name what it waits for".into()),
    }
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
            {"kind": "Pod", "metadata": {"namespace": "ecom", "name": "db-1", "labels": {"app": "db"},
                          "creationTimestamp": "2025-11-26T11:30:39Z"},
             "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}],
                        "containerStatuses": [{"name": "db", "image": "postgres:17", "ready": true, "restartCount": 2,
                                               "state": {"running": {}}}]}},
            {"kind": "Pod", "metadata": {"namespace": "ecom", "name": "db-2", "labels": {"app": "db"}},
             "spec": {"containers": [{"name": "db", "image": "postgres:17"}]},
             "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": "0/1 nodes are available"}]}}
        ]));
        let (_, pods) = parse_deployments_and_pods(&json).unwrap();
        assert_eq!(pods[0].ips, ["10.244.0.7", "fd00::7"]);
        assert!(pods[0].ready());
        assert_eq!(pods[0].restarts(), 2);
        assert_eq!(pods[1].unscheduled.as_deref(), Some("0/1 nodes are available"));
        assert_eq!(pods[1].containers[0].image, "postgres:17");
        assert_eq!(by_ip(&pods)["fd00::7"].name, "db-1");
        assert!(parse_deployments_and_pods("{}").is_err());
        assert!(parse_deployments_and_pods("nope").is_err());
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

        let mut unscheduled = Pod { phase: "Pending".into(), created: Some(now), ..Pod::default() };
        unscheduled.unscheduled = Some("0/1 nodes are available: 1 Insufficient memory.".into());
        assert_eq!(t(&unscheduled, &[]).map(|x| x.0), Some(TroubleKind::Unschedulable));

        creating.created = Some(now - PENDING_GRACE - 1);
        assert_eq!(t(&creating, &[]), Some((TroubleKind::Pending, "ContainerCreating".into())));
        let healthy = Pod { phase: "Running".into(), ..pod_waiting("x") };
        let mut healthy = healthy;
        healthy.containers[0].waiting = None;
        assert_eq!(t(&healthy, &[]), None);
    }

    fn event(pod: &str, reason: &str, message: &str, last: u64) -> Event {
        Event {
            namespace: "infra".into(),
            kind: "Pod".into(),
            object: pod.into(),
            typ: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
            count: 1,
            last: Some(last),
        }
    }

    fn is_fatal(o: &Outlook) -> bool {
        matches!(o, Outlook::Fatal(_))
    }

    /// The kubelet's words for each pull failure (kubelet `images/image_manager.go` records
    /// `Failed to pull image "<image>": <err>`; the errors are containerd's, `core/remotes/docker`).
    #[test]
    fn image_pulls_fail_fast_only_on_what_no_retry_changes() {
        let now = 1_000_000;
        let mut pod = pod_waiting("ImagePullBackOff");
        pod.phase = "Pending".into();
        pod.containers[0].image = "postgres:17".into();
        pod.containers[0].waiting =
            Some(("ImagePullBackOff".into(), "Back-off pulling image \"postgres:17\"".into()));
        let ours = ["bookstore/ui-service:dev".to_string()];
        let around = Around { ours: &ours, needs_ready: true, ..Around::default() };
        let judge = |pod: &Pod, error: &str| {
            let events = [
                event(
                    "p",
                    "Failed",
                    &format!("Failed to pull image \"{}\": {error}", pod.containers[0].image),
                    now - 5,
                ),
                event("p", "Failed", "Error: ImagePullBackOff", now - 1),
            ];
            let t = trouble(pod, &events, now).expect("a pull trouble");
            outlook(pod, &t, &events, &around)
        };
        let resolve = "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/postgres:17\": failed to resolve reference \"docker.io/library/postgres:17\": ";
        for fatal in [
            "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/postgres:17\": failed to resolve reference \"docker.io/library/postgres:17\": docker.io/library/postgres:17: not found",
            &format!(
                "{resolve}pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
            ),
            "Error response from daemon: manifest for postgres:17 not found: manifest unknown: manifest unknown",
        ] {
            assert!(is_fatal(&judge(&pod, fatal)), "{fatal}");
        }
        for (retried, says) in [
            (format!("{resolve}unexpected status from HEAD request to https://registry-1.docker.io/v2/library/postgres/manifests/17: 429 Too Many Requests"), "rate limit"),
            ("failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/postgres/blobs/sha256:ab: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.".into(), "toomanyrequests"),
            (format!("{resolve}failed to do request: Head \"https://registry-1.docker.io/v2/library/postgres/manifests/17\": net/http: TLS handshake timeout"), "TLS handshake timeout"),
            (format!("{resolve}failed to do request: Head \"https://registry-1.docker.io/v2/library/postgres/manifests/17\": dial tcp 54.236.113.205:443: i/o timeout"), "i/o timeout"),
            (format!("{resolve}something new"), "something new"),
        ] {
            match judge(&pod, &retried) {
                Outlook::Retried(what) => assert!(what.contains(says), "{what}"),
                other => panic!("{retried}: {other:?}"),
            }
        }
        // No event yet: the kubelet has not said why; waited.
        let t = trouble(&pod, &[], now).unwrap();
        assert!(matches!(outlook(&pod, &t, &[], &around), Outlook::Retried(_)));
        // Newer kubelets carry the error in the back-off message itself.
        let mut carried = pod.clone();
        carried.containers[0].waiting = Some((
            "ImagePullBackOff".into(),
            "Back-off pulling image \"postgres:17\": ErrImagePull: docker.io/library/postgres:17: not found"
                .into(),
        ));
        let t = trouble(&carried, &[], now).unwrap();
        assert!(is_fatal(&outlook(&carried, &t, &[], &around)));
        // Our own image, not loaded into the node: no registry has it, whatever the pull says.
        let mut ours_pod = pod.clone();
        ours_pod.containers[0].image = "bookstore/ui-service:dev".into();
        assert!(is_fatal(&judge(&ours_pod, "dial tcp 54.236.113.205:443: i/o timeout")));
        let mut never = pod_waiting("ErrImageNeverPull");
        never.containers[0].pull_policy = "Never".into();
        let t = trouble(&never, &[], now).unwrap();
        assert!(is_fatal(&outlook(&never, &t, &[], &around)));
    }

    #[test]
    fn a_sandbox_failure_is_fatal_only_once_it_fails_with_ztunnel_and_istio_cni_ready() {
        let now = 1_000_000;
        let ready = |name: &str, since: u64| Pod {
            namespace: "istio-system".into(),
            name: name.into(),
            phase: "Running".into(),
            ready_since: Some(since),
            owner: name.rsplit_once('-').map(|(ds, _)| ("DaemonSet".to_string(), ds.to_string())),
            containers: vec![Container { ready: true, ..Container::default() }],
            ..Pod::default()
        };
        let mesh = |pods: &[Pod]| mesh_ready_since(pods, "istio-system", &["ztunnel", "istio-cni-node"]);
        let (zt, cni) = (ready("ztunnel-x7k2p", now - 30), ready("istio-cni-node-q9f4d", now - 100));
        assert_eq!(mesh(&[zt.clone(), cni.clone()]), Some(now - 30));
        let mut reconnecting = zt.clone();
        reconnecting.containers[0].ready = false;
        assert_eq!(mesh(&[reconnecting, cni.clone()]), None, "ztunnel not Ready");
        assert_eq!(mesh(std::slice::from_ref(&zt)), None, "no istio-cni pod");
        assert_eq!(mesh(&[ready("ztunnel-extra-x7k2p", now), cni.clone()]), None, "another DaemonSet's pod");
        let mut going = zt.clone();
        going.terminating = true;
        assert_eq!(mesh(&[going, cni.clone()]), None, "a ztunnel pod going away is not the mesh");

        let mut pod = pod_waiting("ContainerCreating");
        pod.phase = "Pending".into();
        let sandbox = |last: u64| {
            [event(
                "p",
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"3f2a\": plugin type=\"istio-cni\" name=\"istio-cni\" failed (add): unable to push CNI event (status code 500): partial add error: no ztunnel connection",
                last,
            )]
        };
        let judge = |mesh_ready_since: Option<u64>, last: u64| {
            let events = sandbox(last);
            let t = trouble(&pod, &events, now).unwrap();
            outlook(&pod, &t, &events, &Around { mesh_ready_since, ..Around::default() })
        };
        assert!(matches!(judge(None, now - 1), Outlook::Retried(w) if w.contains("not Ready")));
        assert!(
            matches!(judge(Some(now - 30), now - 31), Outlook::Retried(_)),
            "failed before the mesh was Ready"
        );
        assert!(matches!(judge(Some(now - 30), now - 30), Outlook::Retried(_)), "the same second");
        assert!(is_fatal(&judge(Some(now - 30), now - 29)), "failed again with the mesh Ready");
    }

    #[test]
    fn a_crash_loop_is_fatal_only_with_what_it_needs_ready() {
        let pod = pod_waiting("CrashLoopBackOff");
        let t = trouble(&pod, &[], 0).unwrap();
        let around = |needs_ready| Around { needs_ready, needs: "ecom-db".into(), ..Around::default() };
        assert!(is_fatal(&outlook(&pod, &t, &[], &around(true))));
        assert!(
            matches!(outlook(&pod, &t, &[], &around(false)), Outlook::Retried(w) if w.contains("ecom-db"))
        );
        let config = pod_waiting("CreateContainerConfigError");
        let t = trouble(&config, &[], 0).unwrap();
        assert!(matches!(outlook(&config, &t, &[], &around(true)), Outlook::Blocked(_)));
    }
}
