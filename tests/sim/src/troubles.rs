//! Troubles beyond the model's crash loops and stale registrations, and what the cluster says
//! about them: pods that cannot pull their image, fit no node, or get no sandbox; Kubernetes
//! Events from the kubelet and the scheduler (also for every crash-loop back-off); istio-cni's
//! reconcile error; a second control-plane container; the volumes and worker env the manifests
//! in `infra/k8s` give the Deployments. Texts follow `shared/reference/kind-istio.md` §2.3, the
//! kubelet (`images/image_manager.go`, `kuberuntime_manager.go` `SyncPod`) and containerd
//! (`core/remotes/docker/resolver.go`, `client/pull.go`, CRI `PullImage`).
//!
//! The kubelet retries: a pull at every step of its image back-off, a sandbox at every retry of
//! its pod worker, each attempt recording its events again; an attempt after the cause is gone
//! (a pull window over, ztunnel reconnected) succeeds and the container starts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::faults::{Fault, PullError};
use crate::latency::delays;
use crate::store::{Key, Res, i64_at, str_at};
use crate::timefmt::{rfc3339, rfc3339_millis};
use crate::world::{Container, PodPhase, World, container_id};

/// What is wrong with the pods of a workload created after `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    ImagePull(PullError),
    Unschedulable,
    Sandbox,
    /// `CreateContainerConfigError`: a Secret key the container's env refers to is missing.
    Config,
}

#[derive(Debug, Clone)]
pub struct Troubled {
    pub trouble: Trouble,
    pub since: SystemTime,
    /// A pod's attempts fail for this long from its first (`None`: always).
    pub secs: Option<f64>,
}

/// One troubled pod, as the kubelet keeps retrying it.
#[derive(Debug, Clone)]
pub struct PodTrouble {
    pub trouble: Trouble,
    /// The pull window or the ztunnel reconnection that ends it (`None`: never).
    pub until: Option<Instant>,
    /// The kubelet's next attempt, and its current back-off (seconds at scale 1).
    pub next: Instant,
    pub backoff: f64,
}

/// `ZtunnelDisconnects`: armed (since) until the next ambient Deployment pod is created, then
/// disconnected from `from` until `until`.
#[derive(Debug, Clone, Copy)]
pub enum Disconnect {
    Armed { secs: f64, since: SystemTime },
    Until { from: SystemTime, until: Instant },
}

/// The scheduler's message when the only node lacks memory.
pub const UNSCHEDULABLE: &str = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

/// istio-cni's log line when it cannot re-apply a pod's in-pod rules (istio/istio#55968).
pub const CNI_RECONCILE: &str = "failed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod, this is ok if this is a newly created pod (netns not provided, but is needed as pod is not in cache)";

pub(crate) fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The kubelet pulls nothing with `imagePullPolicy: Never`: an image not in the node is
/// `ErrImageNeverPull` (kubelet `images/image_manager.go`).
fn never_pulls(error: PullError, policy: &str) -> bool {
    error == PullError::NotLoaded && policy == "Never"
}

fn never_pull_message(image: &str) -> String {
    format!("Container image \"{image}\" is not present with pull policy of Never")
}

fn missing_key(ns: &str, pod: &str) -> String {
    format!("couldn't find key POSTGRES_PASSWORD in Secret {ns}/{pod}-credentials")
}

/// The pull error as the CRI reports it to the kubelet: containerd's `PullImage` wraps the
/// resolver's error (`failed to pull and unpack image %q: failed to resolve reference %q: …`);
/// the resolver says `<ref>: not found` for a 404, `pull access denied, repository does not exist
/// or may require authorization: …` for a 401 after the token dance, `unexpected status from HEAD
/// request to <url>: 429 Too Many Requests` for the rate limit, and Go's transport errors as they come.
fn pull_error(error: PullError, image: &str) -> String {
    let full = qualified_image(image);
    let resolve =
        format!("failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\"");
    let url = manifest_url(&full);
    match error {
        PullError::NotFound => format!("rpc error: code = NotFound desc = {resolve}: {full}: not found"),
        PullError::Denied | PullError::NotLoaded => format!(
            "rpc error: code = Unknown desc = {resolve}: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
        ),
        PullError::RateLimited => format!(
            "rpc error: code = Unknown desc = {resolve}: unexpected status from HEAD request to {url}: 429 Too Many Requests"
        ),
        PullError::TlsTimeout => format!(
            "rpc error: code = Unknown desc = {resolve}: failed to do request: Head \"{url}\": net/http: TLS handshake timeout"
        ),
        PullError::IoTimeout => format!(
            "rpc error: code = Unknown desc = {resolve}: failed to do request: Head \"{url}\": dial tcp 54.236.113.205:443: i/o timeout"
        ),
    }
}

/// `docker.io/library/redis:7` → `https://registry-1.docker.io/v2/library/redis/manifests/7`.
fn manifest_url(full: &str) -> String {
    let (host, path) = full.split_once('/').unwrap_or(("docker.io", full));
    let host = if host == "docker.io" { "registry-1.docker.io" } else { host };
    let (repo, tag) = path.rsplit_once(':').unwrap_or((path, "latest"));
    format!("https://{host}/v2/{repo}/manifests/{tag}")
}

/// `redis:7` → `docker.io/library/redis:7`, `bookstore/x:1` → `docker.io/bookstore/x:1`.
pub(crate) fn qualified_image(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    }
}

/// One Event (core v1), as the kubelet or the scheduler records it.
pub struct EventSpec<'a> {
    pub ns: &'a str,
    pub pod: &'a str,
    pub container: Option<&'a str>,
    pub typ: &'a str,
    pub reason: &'a str,
    pub message: String,
    pub component: &'a str,
    /// `None`: one more than the stored event's count.
    pub count: Option<i64>,
}

impl World {
    pub fn apply_trouble(&mut self, f: &Fault) {
        let since = SystemTime::now();
        match f {
            Fault::ImagePullBackOff { workload, error, secs } => {
                let trouble = Trouble::ImagePull(*error);
                self.faults.troubled.insert(workload.clone(), Troubled { trouble, since, secs: *secs });
            }
            Fault::Unschedulable { workload } => {
                let trouble = Trouble::Unschedulable;
                self.faults.troubled.insert(workload.clone(), Troubled { trouble, since, secs: None });
            }
            Fault::ContainerConfigError { workload } => {
                let trouble = Trouble::Config;
                self.faults.troubled.insert(workload.clone(), Troubled { trouble, since, secs: None });
            }
            Fault::SandboxCreationFails { workload } => {
                let trouble = Trouble::Sandbox;
                self.faults.troubled.insert(workload.clone(), Troubled { trouble, since, secs: None });
            }
            Fault::ZtunnelDisconnects { secs } => {
                self.faults.disconnect = Some(Disconnect::Armed { secs: *secs, since })
            }
            Fault::CniReconcileFailed { workload } => self.cni_reconcile_failed(workload, true),
            Fault::StaleWorkload { workload } => self.cni_reconcile_failed(workload, false),
            Fault::HboneBlocked { workload } => {
                self.faults.hbone_blocked.insert(workload.clone());
                for p in self.pods.values_mut().filter(|p| p.wl.0 == Res::Deployments && &p.wl.2 == workload)
                {
                    p.registered = false;
                }
                self.event("hbone-blocked", workload, "");
            }
            Fault::ExtraControlPlane => self.add_control_plane(),
            _ => {}
        }
    }

    /// Record (or bump) one Event.
    pub fn put_event(&mut self, e: EventSpec) {
        let name = format!("{}.{:016x}", e.pod, fnv(&format!("{}/{}/{}", e.reason, e.typ, e.message)));
        let key = Key::new(Res::Events, e.ns, &name);
        let now = rfc3339(SystemTime::now());
        let (first, count) = match self.store.get(&key) {
            Some(old) => (old["firstTimestamp"].clone(), e.count.unwrap_or(i64_at(old, "/count") + 1)),
            None => (json!(now), e.count.unwrap_or(1)),
        };
        let uid = self
            .store
            .get(&Key::new(Res::Pods, e.ns, e.pod))
            .map(|o| str_at(o, "/metadata/uid").to_string())
            .unwrap_or_default();
        // The kubelet of the pod's node reports it.
        let node = self
            .pods
            .get(&(e.ns.to_string(), e.pod.to_string()))
            .map(|p| p.node.clone())
            .unwrap_or_else(|| self.node_name());
        let mut involved = json!({"kind":"Pod","namespace": e.ns,"name": e.pod,"uid": uid,"apiVersion":"v1"});
        if let Some(c) = e.container {
            involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
        }
        let host = if e.component == "kubelet" { json!(node) } else { Value::Null };
        let mut source = json!({"component": e.component});
        if !host.is_null() {
            source["host"] = host.clone();
        }
        self.store.put(
            Res::Events,
            json!({"metadata":{"name": name,"namespace": e.ns},
                   "involvedObject": involved,"reason": e.reason,"message": e.message,
                   "source": source,"firstTimestamp": first,"lastTimestamp": now,"count": count,
                   "type": e.typ,"eventTime": null,"reportingComponent": e.component,
                   "reportingInstance": if host.is_null() { json!("") } else { host }}),
        );
    }

    /// Called for every pod write: a troubled pod is rendered as the kubelet or scheduler leaves
    /// it (and does not start while troubled); a crash-loop back-off gets the kubelet's `BackOff`
    /// event.
    pub fn decorate_pod(&mut self, k: &(String, String), obj: &mut Value) {
        let Some(p) = self.pods.get(k) else { return };
        let (ns, name, phase, restarts, created) =
            (p.ns.clone(), p.name.clone(), p.phase, p.restart_count, p.created_wall);
        let container = str_at(obj, "/spec/containers/0/name").to_string();
        let image = str_at(obj, "/spec/containers/0/image").to_string();
        let policy = str_at(obj, "/spec/containers/0/imagePullPolicy").to_string();
        if let PodPhase::Backoff { .. } = phase {
            let uid = self.pod_uid(&ns, &name);
            self.put_event(EventSpec {
                ns: &ns,
                pod: &name,
                container: Some(&container),
                typ: "Warning",
                reason: "BackOff",
                message: format!(
                    "Back-off restarting failed container {container} in pod {name}_{ns}({uid})"
                ),
                component: "kubelet",
                count: Some(restarts as i64),
            });
        }
        let Some(trouble) = self.pod_trouble(k, &image, &policy) else { return };
        if let Some(p) = self.pods.get_mut(k) {
            p.phase = PodPhase::Starting { due: None };
        }
        let created_s = rfc3339(created);
        let not_ready = |reason: &str| {
            json!([
                {"type":"PodReadyToStartContainers","status": if reason == "sandbox" {"False"} else {"True"},"lastTransitionTime": created_s},
                {"type":"Initialized","status":"True","lastTransitionTime": created_s},
                {"type":"Ready","status":"False","reason":"ContainersNotReady","message": format!("containers with unready status: [{container}]"),"lastTransitionTime": created_s},
                {"type":"ContainersReady","status":"False","reason":"ContainersNotReady","message": format!("containers with unready status: [{container}]"),"lastTransitionTime": created_s},
                {"type":"PodScheduled","status":"True","lastTransitionTime": created_s}
            ])
        };
        let waiting = |reason: &str, message: Option<String>| {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!([{"name": container,"image": image,"imageID":"","ready":false,"started":false,
                    "restartCount":0,"state":{"waiting": w},"lastState":{}}])
        };
        match trouble {
            Trouble::ImagePull(error) => {
                obj["status"]["phase"] = json!("Pending");
                obj["status"]["conditions"] = not_ready("pull");
                obj["status"]["containerStatuses"] = if never_pulls(error, &policy) {
                    waiting("ErrImageNeverPull", Some(never_pull_message(&image)))
                } else {
                    waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\"")))
                };
            }
            Trouble::Unschedulable => {
                if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("nodeName");
                }
                obj["status"] = json!({"phase":"Pending","qosClass":"BestEffort",
                    "conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable",
                                   "message": UNSCHEDULABLE,"lastProbeTime": null,"lastTransitionTime": created_s}]});
            }
            Trouble::Config => {
                obj["status"]["phase"] = json!("Pending");
                obj["status"]["conditions"] = not_ready("config");
                obj["status"]["containerStatuses"] =
                    waiting("CreateContainerConfigError", Some(missing_key(&ns, &name)));
            }
            Trouble::Sandbox => {
                obj["status"] = json!({"phase":"Pending","hostIP":"172.18.0.2","startTime": created_s,
                    "qosClass":"BestEffort","conditions": not_ready("sandbox"),
                    "containerStatuses": waiting("ContainerCreating", None)});
            }
        }
    }

    fn pod_uid(&self, ns: &str, name: &str) -> String {
        self.store
            .get(&Key::new(Res::Pods, ns, name))
            .map(|o| str_at(o, "/metadata/uid").to_string())
            .unwrap_or_default()
    }

    /// Whether new pods of this workload start by failing to pull their image (its fault).
    pub fn pulls_fail(&self, workload: &str) -> bool {
        self.faults.troubled.get(workload).is_some_and(|t| matches!(t.trouble, Trouble::ImagePull(_)))
    }

    /// ztunnel has no connection to istio-cni now (`ZtunnelDisconnects`).
    pub fn ztunnel_disconnected(&self) -> bool {
        matches!(self.faults.disconnect, Some(Disconnect::Until { until, .. }) if Instant::now() < until)
    }

    /// The trouble of a pod, taken on at its first write: its workload's fault if the pod was
    /// created after it (a window of `secs` starts then), or `no ztunnel connection` for an
    /// ambient pod created while ztunnel is disconnected. The kubelet's first attempt is made then.
    fn pod_trouble(&mut self, k: &(String, String), image: &str, policy: &str) -> Option<Trouble> {
        if let Some(t) = self.faults.pod_troubles.get(k) {
            return Some(t.trouble);
        }
        if self.faults.untroubled.contains(k) {
            return None;
        }
        let p = self.pods.get(k)?;
        if p.wl.0 != Res::Deployments || p.is_ready() {
            return None;
        }
        let (ambient, workload, created) = (p.ambient, p.wl.2.clone(), p.created_wall);
        let now = Instant::now();
        let fault = self.faults.troubled.get(&workload).filter(|t| created >= t.since).cloned();
        let (trouble, until) = match fault {
            Some(t) => (t.trouble, t.secs.map(|s| now + Duration::from_secs_f64(s))),
            None if !ambient => return None,
            None => {
                let until = match self.faults.disconnect {
                    Some(Disconnect::Armed { secs, since }) if created >= since => {
                        let until = now + Duration::from_secs_f64(secs);
                        self.disconnect_ztunnel(created, until);
                        until
                    }
                    Some(Disconnect::Until { from, until }) if created >= from && now < until => until,
                    _ => return None,
                };
                (Trouble::Sandbox, Some(until))
            }
        };
        self.faults.pod_troubles.insert(k.clone(), PodTrouble { trouble, until, next: now, backoff: 0.0 });
        self.attempt(k, now, image, policy);
        Some(trouble)
    }

    /// The kubelet's next attempt at a troubled pod, when it is due (`advance_pod` for a pod that
    /// cannot start): its events again, or the container started once the cause is gone.
    pub fn kubelet_retry(&mut self, k: &(String, String), now: Instant, due: &mut impl FnMut(Instant)) {
        let Some(next) = self.faults.pod_troubles.get(k).map(|t| t.next) else { return };
        if now < next {
            due(next);
            return;
        }
        let (image, policy) = self
            .store
            .get(&Key::new(Res::Pods, &k.0, &k.1))
            .map(|o| {
                (
                    str_at(o, "/spec/containers/0/image").to_string(),
                    str_at(o, "/spec/containers/0/imagePullPolicy").to_string(),
                )
            })
            .unwrap_or_default();
        if let Some(next) = self.attempt(k, now, &image, &policy) {
            due(next);
        }
        if !self.faults.pod_troubles.contains_key(k) {
            self.write_pod(k);
        }
    }

    /// One attempt of the kubelet: after the cause is gone it succeeds (the container is started,
    /// Ready after its latency); before, it fails as the kubelet records it, and the next attempt
    /// comes after the back-off. Returns when the world is due next for this pod.
    fn attempt(&mut self, k: &(String, String), now: Instant, image: &str, policy: &str) -> Option<Instant> {
        let t = self.faults.pod_troubles.get(k)?.clone();
        let (ns, name) = (k.0.clone(), k.1.clone());
        let container = self
            .store
            .get(&Key::new(Res::Pods, &ns, &name))
            .map(|o| str_at(o, "/spec/containers/0/name").to_string())
            .filter(|c| !c.is_empty())
            .or_else(|| self.pods.get(k).map(|p| p.wl.2.clone()))
            .unwrap_or_default();
        let kubelet = |typ: &'static str, reason: &'static str, message: String, in_container: bool| {
            (typ, reason, message, in_container)
        };
        if t.until.is_some_and(|u| now >= u) {
            self.faults.pod_troubles.remove(k);
            self.faults.untroubled.insert(k.clone());
            let latency =
                self.pods.get(k).and_then(|p| self.workloads.get(&p.wl)).map(|w| w.latency).unwrap_or(3.0);
            let due = now + self.scaled(latency);
            if let Some(p) = self.pods.get_mut(k) {
                p.image_pull_error = false;
                p.phase = PodPhase::Starting { due: Some(due) };
            }
            if let Trouble::ImagePull(_) = t.trouble {
                let events = [kubelet(
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in 1.843s (1.843s including waiting). Image size: 45603352 bytes."
                    ),
                    true,
                )];
                self.kubelet_events(&ns, &name, &container, events);
            }
            self.event("pod-trouble-cleared", &format!("{ns}/{name}"), "");
            return Some(due);
        }
        let events: Vec<(&str, &str, String, bool)> = match t.trouble {
            Trouble::ImagePull(error) if never_pulls(error, policy) => vec![
                kubelet("Warning", "ErrImageNeverPull", never_pull_message(image), true),
                kubelet("Warning", "Failed", "Error: ErrImageNeverPull".into(), true),
            ],
            Trouble::ImagePull(error) => vec![
                kubelet("Normal", "Pulling", format!("Pulling image \"{image}\""), true),
                kubelet(
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{image}\": {}", pull_error(error, image)),
                    true,
                ),
                kubelet("Warning", "Failed", "Error: ErrImagePull".into(), true),
                kubelet("Normal", "BackOff", format!("Back-off pulling image \"{image}\""), true),
                kubelet("Warning", "Failed", "Error: ImagePullBackOff".into(), true),
            ],
            Trouble::Config => {
                vec![kubelet("Warning", "Failed", format!("Error: {}", missing_key(&ns, &name)), true)]
            }
            Trouble::Sandbox => {
                let sandbox = container_id(&name, 99);
                vec![kubelet(
                    "Warning",
                    "FailedCreatePodSandBox",
                    format!(
                        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"{sandbox}\": plugin type=\"istio-cni\" name=\"istio-cni\" failed (add): unable to push CNI event (status code 500): partial add error: no ztunnel connection"
                    ),
                    false,
                )]
            }
            Trouble::Unschedulable => vec![],
        };
        if t.trouble == Trouble::Unschedulable {
            self.put_event(EventSpec {
                ns: &ns,
                pod: &name,
                container: None,
                typ: "Warning",
                reason: "FailedScheduling",
                message: UNSCHEDULABLE.to_string(),
                component: "default-scheduler",
                count: None,
            });
        }
        self.kubelet_events(&ns, &name, &container, events);
        let backoff = match t.trouble {
            Trouble::ImagePull(_) if t.backoff == 0.0 => delays::IMAGE_BACKOFF_START,
            Trouble::ImagePull(_) => (t.backoff * 2.0).min(delays::IMAGE_BACKOFF_CAP),
            _ => delays::POD_WORKER_BACKOFF,
        };
        let next = now + self.scaled(backoff);
        if let Some(t) = self.faults.pod_troubles.get_mut(k) {
            t.backoff = backoff;
            t.next = next;
        }
        Some(next)
    }

    fn kubelet_events<'a>(
        &mut self,
        ns: &str,
        pod: &str,
        container: &str,
        events: impl IntoIterator<Item = (&'a str, &'a str, String, bool)>,
    ) {
        for (typ, reason, message, in_container) in events {
            self.put_event(EventSpec {
                ns,
                pod,
                container: in_container.then_some(container),
                typ,
                reason,
                message,
                component: "kubelet",
                count: None,
            });
        }
    }

    /// ztunnel loses its connection to istio-cni until `until`: its pods turn not Ready.
    fn disconnect_ztunnel(&mut self, from: SystemTime, until: Instant) {
        self.faults.disconnect = Some(Disconnect::Until { from, until });
        self.ztunnel_transition("ztunnel-disconnected");
    }

    /// At the end of a `ZtunnelDisconnects` window ztunnel is connected again: Ready once more.
    pub fn reconnect_ztunnel(&mut self, now: Instant, due: &mut impl FnMut(Instant)) {
        let Some(Disconnect::Until { until, .. }) = self.faults.disconnect else { return };
        if now < until {
            due(until);
            return;
        }
        self.faults.disconnect = None;
        self.ztunnel_transition("ztunnel-reconnected");
    }

    /// ztunnel's pods changed readiness: their Ready condition's transition time, and the pods
    /// and the DaemonSet written again.
    fn ztunnel_transition(&mut self, what: &str) {
        let zt: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| self.is_ztunnel(&p.wl)).map(|(k, _)| k.clone()).collect();
        for k in &zt {
            if let Some(p) = self.pods.get_mut(k) {
                p.ready_wall = Some(SystemTime::now());
            }
            self.write_pod(k);
        }
        self.event(what, "", "");
    }

    /// istio-cni fails to reconcile a pod of `workload`: its log says so, and the pod loses its
    /// registration (HBONE to it times out) and, with `listeners_lost`, its in-pod listeners
    /// (ztunnel's HBONE to it is refused).
    fn cni_reconcile_failed(&mut self, workload: &str, listeners_lost: bool) {
        let Some(key) = self
            .pods
            .iter()
            .find(|(_, p)| p.wl.0 == Res::Deployments && p.wl.2 == workload)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(p) = self.pods.get_mut(&key) {
            p.registered = false;
            p.lost = true;
        }
        if listeners_lost {
            self.faults.listeners_lost.insert(key.clone());
        }
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        // The istio-cni agent of the pod's node logs it.
        let node = self.pods.get(&key).map(|p| p.node.clone()).unwrap_or_default();
        let cni = self
            .pods
            .iter()
            .filter(|(_, p)| p.wl.0 == Res::DaemonSets && p.wl.1 == mesh_ns && p.wl.2 == "istio-cni-node")
            .min_by_key(|(_, p)| p.node != node)
            .map(|(k, _)| k.clone());
        if let Some(cni) = cni
            && let Some(p) = self.pods.get_mut(&cni)
        {
            let now = SystemTime::now();
            p.log.push((
                now,
                format!(
                    "{}\terror\tcni-agent\t{CNI_RECONCILE}\tns={} name={}",
                    rfc3339_millis(now),
                    key.0,
                    key.1
                ),
            ));
        }
        self.event("cni-reconcile-failed", &format!("{}/{}", key.0, key.1), "");
    }

    /// `kind` numbers further nodes of a role: `<cluster>-control-plane2`.
    fn add_control_plane(&mut self) {
        let cluster = self.cluster_name();
        let name = format!("{cluster}-control-plane2");
        let wall = SystemTime::now();
        self.containers.push(Container {
            id: container_id(&name, self.t_ms()),
            name,
            image: "kindest/node:v1.32.2".into(),
            labels: BTreeMap::from([
                ("io.x-k8s.kind.cluster".into(), cluster),
                ("io.x-k8s.kind.role".into(), "control-plane".into()),
            ]),
            ports: vec![],
            running: true,
            created: wall,
            started: wall,
            finished: wall,
            exit_code: 0,
            stopped_by_user: false,
            cmd: vec![],
        });
    }

    /// What the manifests give the Deployments: a PVC-backed volume wherever a `<name>-data`
    /// claim exists (the databases; Kafka with `kafka_pvc`), and the Connect worker's env
    /// (`CONNECT_CONFIG_PROVIDERS=file` only when the worker declares the file provider).
    pub fn add_volumes_and_worker_env(&mut self) {
        let connect = self.infra.stack.connect.workload.clone();
        let declares = self.opts.worker_file_provider;
        for key in self.store.keys(Res::Deployments) {
            let Some(mut obj) = self.store.get(&key).cloned() else { continue };
            let claim = format!("{}-data", key.name);
            let mut changed = false;
            if self.store.get(&Key::new(Res::Pvcs, &key.ns, &claim)).is_some() {
                obj["spec"]["template"]["spec"]["volumes"] =
                    json!([{"name":"data","persistentVolumeClaim":{"claimName": claim}}]);
                obj["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name":"data","mountPath":"/var/lib/data"}]);
                changed = true;
            }
            if key.name == connect {
                let mut env = vec![
                    json!({"name":"BOOTSTRAP_SERVERS","value":"kafka.infra.svc:9092"}),
                    json!({"name":"GROUP_ID","value":"bookstore-connect"}),
                    json!({"name":"CONFIG_STORAGE_TOPIC","value":"debezium.configs"}),
                    json!({"name":"OFFSET_STORAGE_TOPIC","value":"debezium.offsets"}),
                    json!({"name":"STATUS_STORAGE_TOPIC","value":"debezium.status"}),
                ];
                if declares {
                    env.push(json!({"name":"CONNECT_CONFIG_PROVIDERS","value":"file"}));
                    env.push(json!({"name":"CONNECT_CONFIG_PROVIDERS_FILE_CLASS",
                                    "value":"org.apache.kafka.common.config.provider.FileConfigProvider"}));
                }
                obj["spec"]["template"]["spec"]["containers"][0]["env"] = Value::Array(env);
                changed = true;
            }
            if changed {
                self.store.put(Res::Deployments, obj);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_qualified_as_containerd_reports_them() {
        assert_eq!(qualified_image("redis:7"), "docker.io/library/redis:7");
        assert_eq!(qualified_image("bookstore/x:1"), "docker.io/bookstore/x:1");
        assert_eq!(qualified_image("quay.io/debezium/connect:3"), "quay.io/debezium/connect:3");
        assert_eq!(
            manifest_url("docker.io/library/redis:7"),
            "https://registry-1.docker.io/v2/library/redis/manifests/7"
        );
        assert_eq!(
            manifest_url("quay.io/debezium/connect:3"),
            "https://quay.io/v2/debezium/connect/manifests/3"
        );
    }
}
