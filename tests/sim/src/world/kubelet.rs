//! The kubelet: a pod created, started (after its images), Ready once what it needs answers,
//! crash-looping with the kubelet's back-off otherwise, deleted, and rendered into the store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::{PodPhase, PodState, WlKey, World, container_id, rand_suffix, template_hash};
use crate::latency::delays;
use crate::store::{Key, Res};
use crate::timefmt::rfc3339;

impl World {
    /// A new pod of `wl` on `node` (a DaemonSet's), or where the scheduler puts it.
    pub(super) fn create_pod(
        &mut self,
        wl: &WlKey,
        tgen: i64,
        latency: f64,
        now: Instant,
        node: Option<&str>,
    ) {
        let node = node.map(String::from).unwrap_or_else(|| self.schedule(now));
        let n = self.alloc_name();
        let hash = template_hash(&wl.2, tgen);
        let name = if wl.0 == Res::Deployments {
            format!("{}-{}-{}", wl.2, hash, rand_suffix(n, 5))
        } else {
            format!("{}-{}", wl.2, rand_suffix(n, 5))
        };
        let ip = self.alloc_ip();
        let wall = SystemTime::now();
        let due = now + self.scaled(latency);
        let template = self.workloads.get(wl).map(|w| w.template.clone()).unwrap_or(Value::Null);
        // A Gateway's pod runs Envoy injected with Istio's `gateway` template: istio-cni leaves a
        // pod with a proxy of its own out of ambient capture (`PodRedirectionEnabled`).
        let gateway = template.pointer("/metadata/labels/gateway.networking.k8s.io~1gateway-name").is_some();
        let ambient = self.ns_ambient(&wl.1) && !gateway;
        let pulling: BTreeSet<String> =
            Self::template_images(&template).into_iter().filter(|i| !self.node_images.contains(i)).collect();
        for image in &pulling {
            self.link.request(image);
        }
        let pod = PodState {
            ns: wl.1.clone(),
            name: name.clone(),
            wl: wl.clone(),
            node: node.clone(),
            template_gen: tgen,
            hash,
            ip,
            uid: String::new(),
            ambient,
            registered: false,
            netns: None,
            rules: None,
            sandbox_wall: wall,
            enrolled: None,
            pending_add: false,
            lost: false,
            phase: PodPhase::Starting {
                due: if pulling.is_empty() { self.start_due(wl, due) } else { None },
            },
            restart_count: 0,
            backoff: 0.0,
            created_wall: wall,
            started_wall: wall,
            ready_since: None,
            ready_wall: None,
            last_exit_wall: None,
            log: vec![(wall, format!("starting {}", wl.2))],
            image_pull_error: self.pulls_fail(&wl.2),
            pulling: pulling.clone(),
        };
        let subject = format!("{}/{}", wl.1, name);
        let key = (wl.1.clone(), name.clone());
        self.pods.insert(key.clone(), pod);
        // Its UID once the store has given it one, then its first sandbox: its CNI ADD.
        self.write_pod(&key);
        let uid = self
            .store
            .get(&Key::new(Res::Pods, &key.0, &key.1))
            .map(|o| crate::store::str_at(o, "/metadata/uid").to_string());
        if let Some(p) = self.pods.get_mut(&key) {
            p.uid = uid.unwrap_or_default();
        }
        self.mesh_pod_created(&key);
        let registered = self.pods.get(&key).is_some_and(|p| p.registered);
        self.event("pod-started", &subject, if registered { "registered" } else { "" });
        if pulling.is_empty() {
            self.container_started(wl);
        } else {
            self.event("pod-pulling", &subject, &pulling.iter().cloned().collect::<Vec<_>>().join(" "));
        }
        self.link.pump();
        self.write_pod(&(wl.1.clone(), name));
    }

    pub(super) fn start_due(&self, wl: &WlKey, due: Instant) -> Option<Instant> {
        if self.faults.never.contains(&wl.2) || self.pulls_fail(&wl.2) { None } else { Some(due) }
    }

    /// A container of this workload just started: Kafka without a volume starts empty.
    pub(super) fn container_started(&mut self, wl: &WlKey) {
        if wl.2 == "kafka" && !self.opts.kafka_pvc && !self.connectors.is_empty() {
            self.connectors.clear();
            self.event("kafka-topics-lost", &format!("{}/{}", wl.1, wl.2), "");
        } else if wl.2 == "kafka" && !self.opts.kafka_pvc {
            self.event("kafka-topics-lost", &format!("{}/{}", wl.1, wl.2), "");
        }
    }

    /// Is every hard dependency of this pod Ready and reachable from it?
    pub(super) fn deps_ok(&self, pod: &PodState) -> Result<(), String> {
        let needs = self.workloads.get(&pod.wl).map(|w| w.needs.clone()).unwrap_or_default();
        for need in needs {
            if self.reachable_pod(pod, &need).is_none() {
                return Err(need);
            }
        }
        Ok(())
    }

    pub(super) fn advance_pod(&mut self, k: &(String, String), now: Instant, due: &mut impl FnMut(Instant)) {
        let Some(pod) = self.pods.get(k) else { return };
        let subject = format!("{}/{}", k.0, k.1);
        let phase = pod.phase;
        match phase {
            PodPhase::Ready => {}
            PodPhase::Starting { due: None } => self.kubelet_retry(k, now, due),
            PodPhase::Starting { due: Some(t) } if now < t => due(t),
            PodPhase::Starting { due: Some(_) } => {
                let crash = self.faults.crash.contains(&pod.wl.2);
                let deps = if crash { Err("(fault)".to_string()) } else { self.deps_ok(pod) };
                let wl = pod.wl.clone();
                match deps {
                    Ok(()) => {
                        let p = self.pods.get_mut(k).expect("checked");
                        p.phase = PodPhase::Ready;
                        p.ready_since = Some(now);
                        p.ready_wall = Some(SystemTime::now());
                        self.event("pod-ready", &subject, &wl.2);
                    }
                    Err(need) => {
                        // A caller in the mesh reaches its dependency through its ztunnel: the
                        // refusal of a dependency outside the mesh is in ztunnel's log.
                        let caller = self.pods.get(k).cloned().expect("checked");
                        let callee = self.ready_pod(&need).cloned();
                        if let Some(callee) = callee
                            && caller.ambient
                            && caller.registered
                            && !callee.mesh_ok()
                        {
                            self.log_hbone_failure(&caller.name, &callee);
                        }
                        let p = self.pods.get_mut(k).expect("checked");
                        p.restart_count += 1;
                        p.backoff = if p.backoff == 0.0 {
                            delays::BACKOFF_START
                        } else {
                            (p.backoff * 2.0).min(delays::BACKOFF_CAP)
                        };
                        let wait = Duration::from_secs_f64(p.backoff * self.scale);
                        p.phase = PodPhase::Backoff { until: now + wait };
                        p.last_exit_wall = Some(SystemTime::now());
                        p.log.push((
                            SystemTime::now(),
                            format!("FATAL: cannot reach {need}: connection refused; exiting"),
                        ));
                        due(now + wait);
                        self.event("pod-crashed", &subject, &need);
                    }
                }
                self.write_pod(k);
            }
            PodPhase::Backoff { until } if now < until => due(until),
            PodPhase::Backoff { .. } => {
                let wl = pod.wl.clone();
                let lat = self.workloads.get(&wl).map(|w| w.latency).unwrap_or(3.0);
                let d = self.start_due(&wl, now + self.scaled(lat));
                let p = self.pods.get_mut(k).expect("checked");
                p.phase = PodPhase::Starting { due: d };
                p.started_wall = SystemTime::now();
                if let Some(d) = d {
                    due(d);
                }
                self.event("container-restarted", &subject, "");
                self.container_started(&wl);
                self.write_pod(k);
            }
        }
    }

    pub fn delete_pod(&mut self, k: &(String, String)) {
        if let Some(p) = self.pods.remove(k) {
            self.store.delete(&Key::new(Res::Pods, &k.0, &k.1));
            // Its controller, which recreates it.
            let owner = if p.wl.0 == Res::Deployments { "ReplicaSet" } else { "DaemonSet" };
            self.event("pod-deleted", &format!("{}/{}", k.0, k.1), owner);
            self.mesh_pod_deleted(&p);
        }
    }

    /// Render a pod into the store.
    pub fn write_pod(&mut self, k: &(String, String)) {
        let Some(p) = self.pods.get(k) else { return };
        let wl_obj = self.store.get(&Key::new(p.wl.0, &p.wl.1, &p.wl.2));
        let template = wl_obj.and_then(|o| o.pointer("/spec/template")).cloned().unwrap_or(json!({}));
        let container = template
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or(&p.wl.2)
            .to_string();
        let image = template
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or("busybox")
            .to_string();
        let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({"app": p.wl.2}));
        let ready = p.is_ready() && !(self.is_ztunnel(&p.wl) && self.ztunnel_disconnected());
        if p.wl.0 == Res::Deployments {
            labels["pod-template-hash"] = json!(p.hash);
        } else {
            labels["controller-revision-hash"] = json!(p.hash);
        }
        let owner_kind = if p.wl.0 == Res::Deployments { "ReplicaSet" } else { "DaemonSet" };
        let owner_name =
            if p.wl.0 == Res::Deployments { format!("{}-{}", p.wl.2, p.hash) } else { p.wl.2.clone() };
        let started = rfc3339(p.started_wall);
        let state = match p.phase {
            PodPhase::Backoff { .. } => json!({"waiting":{"reason":"CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={} pod={}", p.backoff.round() as u64, container, p.name)}}),
            _ if p.image_pull_error => json!({"waiting":{"reason":"ImagePullBackOff",
                "message": format!("Back-off pulling image \"{image}\"")}}),
            _ if !p.pulling.is_empty() => json!({"waiting":{"reason":"ContainerCreating"}}),
            _ => json!({"running":{"startedAt": started}}),
        };
        let pod_phase = if p.image_pull_error || !p.pulling.is_empty() { "Pending" } else { "Running" };
        let last_state = match p.last_exit_wall {
            Some(t) => {
                json!({"terminated":{"exitCode":1,"reason":"Error","startedAt": started,"finishedAt": rfc3339(t)}})
            }
            None => json!({}),
        };
        let ready_s = if ready { "True" } else { "False" };
        let ready_t = rfc3339(p.ready_wall.unwrap_or(p.started_wall));
        let created = rfc3339(p.created_wall);
        let mut annotations = json!({});
        if let (true, Some(value)) = (p.ambient, p.enrolled) {
            annotations["ambient.istio.io/redirection"] = json!(value);
        }
        let (sandbox_s, sandbox_t) =
            (if p.netns.is_some() { "True" } else { "False" }, rfc3339(p.sandbox_wall));
        let obj = json!({
            "metadata": {"name": p.name, "namespace": p.ns, "labels": labels, "annotations": annotations,
                         "creationTimestamp": created,
                         "ownerReferences":[{"apiVersion":"apps/v1","kind": owner_kind,"name": owner_name,"controller":true,"uid":"00000000-0000-4000-8000-000000000001"}]},
            "spec": {"nodeName": p.node, "containers": template.pointer("/spec/containers").cloned().unwrap_or(json!([{"name": container, "image": image}])),
                     "restartPolicy":"Always"},
            "status": {
                "phase": pod_phase,
                "hostIP": self.host_ip(&p.node), "podIP": p.ip, "podIPs": [{"ip": p.ip}],
                "startTime": created, "qosClass": "BestEffort",
                "conditions": [
                    {"type":"PodReadyToStartContainers","status": sandbox_s,"lastTransitionTime": sandbox_t},
                    {"type":"Initialized","status":"True","lastTransitionTime": created},
                    {"type":"Ready","status": ready_s,"lastTransitionTime": ready_t},
                    {"type":"ContainersReady","status": ready_s,"lastTransitionTime": ready_t},
                    {"type":"PodScheduled","status":"True","lastTransitionTime": created}
                ],
                "containerStatuses": [{
                    "name": container, "image": image, "imageID": format!("docker.io/{image}@sha256:0000"),
                    "containerID": format!("containerd://{}", container_id(&p.name, p.restart_count as u64)),
                    "ready": ready, "started": !matches!(p.phase, PodPhase::Backoff{..}) && !p.image_pull_error && p.pulling.is_empty(),
                    "restartCount": p.restart_count, "state": state, "lastState": last_state
                }]
            }
        });
        let mut obj = obj;
        self.decorate_pod(k, &mut obj);
        self.store.put(Res::Pods, obj);
    }
}
