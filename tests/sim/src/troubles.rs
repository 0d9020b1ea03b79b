//! Troubles beyond the model's crash loops and stale registrations, and what the cluster says
//! about them: pods that cannot pull their image, fit no node, or get no sandbox; Kubernetes
//! Events from the kubelet and the scheduler (also for every crash-loop back-off); istio-cni's
//! reconcile error; a second control-plane container; the volumes and worker env the manifests
//! in `infra/k8s` give the Deployments. Texts follow `shared/reference/kind-istio.md` §2.3.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::faults::Fault;
use crate::store::{Key, Res, i64_at, str_at};
use crate::timefmt::{rfc3339, rfc3339_millis};
use crate::world::{Container, PodPhase, World, container_id};

/// What is wrong with the pods of a workload created after `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    ImagePull,
    Unschedulable,
    Sandbox,
    /// `CreateContainerConfigError`: a Secret key the container's env refers to is missing.
    Config,
}

#[derive(Debug, Clone)]
pub struct Troubled {
    pub trouble: Trouble,
    pub since: SystemTime,
}

/// The scheduler's message when the only node lacks memory.
pub const UNSCHEDULABLE: &str = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

/// istio-cni's log line when it cannot re-apply a pod's in-pod rules (istio/istio#55968).
pub const CNI_RECONCILE: &str = "failed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod, this is ok if this is a newly created pod (netns not provided, but is needed as pod is not in cache)";

fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `redis:7` → `docker.io/library/redis:7`, `bookstore/x:1` → `docker.io/bookstore/x:1`.
fn qualified_image(image: &str) -> String {
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
            Fault::ImagePullBackOff { workload } => {
                self.faults
                    .troubled
                    .insert(workload.clone(), Troubled { trouble: Trouble::ImagePull, since });
            }
            Fault::Unschedulable { workload } => {
                self.faults
                    .troubled
                    .insert(workload.clone(), Troubled { trouble: Trouble::Unschedulable, since });
            }
            Fault::ContainerConfigError { workload } => {
                self.faults.troubled.insert(workload.clone(), Troubled { trouble: Trouble::Config, since });
            }
            Fault::SandboxCreationFails { workload } => {
                self.faults.troubled.insert(workload.clone(), Troubled { trouble: Trouble::Sandbox, since });
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
        let node = self.node_name();
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
    /// it (and never becomes Ready); a crash-loop back-off gets the kubelet's `BackOff` event.
    pub fn decorate_pod(&mut self, k: &(String, String), obj: &mut Value) {
        let Some(p) = self.pods.get(k) else { return };
        let (ns, name, phase, restarts, created) =
            (p.ns.clone(), p.name.clone(), p.phase, p.restart_count, p.created_wall);
        let is_deployment = p.wl.0 == Res::Deployments;
        let troubled = self
            .faults
            .troubled
            .get(&p.wl.2)
            .filter(|t| is_deployment && created >= t.since && !matches!(phase, PodPhase::Ready))
            .map(|t| t.trouble);
        let container = str_at(obj, "/spec/containers/0/name").to_string();
        let image = str_at(obj, "/spec/containers/0/image").to_string();
        if let PodPhase::Backoff { .. } = phase {
            let uid = self
                .store
                .get(&Key::new(Res::Pods, &ns, &name))
                .map(|o| str_at(o, "/metadata/uid").to_string())
                .unwrap_or_default();
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
        let Some(trouble) = troubled else { return };
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
            Trouble::ImagePull => {
                let full = qualified_image(&image);
                obj["status"]["phase"] = json!("Pending");
                obj["status"]["conditions"] = not_ready("pull");
                obj["status"]["containerStatuses"] =
                    waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\"")));
                self.put_event(EventSpec {
                    ns: &ns,
                    pod: &name,
                    container: Some(&container),
                    typ: "Warning",
                    reason: "Failed",
                    message: format!(
                        "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{full}\": failed to resolve reference \"{full}\": {full}: not found"
                    ),
                    component: "kubelet",
                    count: None,
                });
                self.put_event(EventSpec {
                    ns: &ns,
                    pod: &name,
                    container: Some(&container),
                    typ: "Normal",
                    reason: "BackOff",
                    message: format!("Back-off pulling image \"{image}\""),
                    component: "kubelet",
                    count: None,
                });
            }
            Trouble::Unschedulable => {
                if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("nodeName");
                }
                obj["status"] = json!({"phase":"Pending","qosClass":"BestEffort",
                    "conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable",
                                   "message": UNSCHEDULABLE,"lastProbeTime": null,"lastTransitionTime": created_s}]});
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
            Trouble::Config => {
                let missing =
                    format!("couldn't find key POSTGRES_PASSWORD in Secret {ns}/{name}-credentials");
                obj["status"]["phase"] = json!("Pending");
                obj["status"]["conditions"] = not_ready("config");
                obj["status"]["containerStatuses"] =
                    waiting("CreateContainerConfigError", Some(missing.clone()));
                self.put_event(EventSpec {
                    ns: &ns,
                    pod: &name,
                    container: Some(&container),
                    typ: "Warning",
                    reason: "Failed",
                    message: format!("Error: {missing}"),
                    component: "kubelet",
                    count: None,
                });
            }
            Trouble::Sandbox => {
                obj["status"] = json!({"phase":"Pending","hostIP":"172.18.0.2","startTime": created_s,
                    "qosClass":"BestEffort","conditions": not_ready("sandbox"),
                    "containerStatuses": waiting("ContainerCreating", None)});
                let sandbox = container_id(&name, 99);
                self.put_event(EventSpec {
                    ns: &ns,
                    pod: &name,
                    container: None,
                    typ: "Warning",
                    reason: "FailedCreatePodSandBox",
                    message: format!(
                        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"{sandbox}\": plugin type=\"istio-cni\" name=\"istio-cni\" failed (add): unable to push CNI event (status code 500): partial add error: no ztunnel connection"
                    ),
                    component: "kubelet",
                    count: None,
                });
            }
        }
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
        }
        if listeners_lost {
            self.faults.listeners_lost.insert(key.clone());
        }
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        let cni = self
            .pods
            .iter()
            .find(|(_, p)| p.wl.0 == Res::DaemonSets && p.wl.1 == mesh_ns && p.wl.2 == "istio-cni-node")
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
    }
}
