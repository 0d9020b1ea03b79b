//! A cluster made: what `kind create cluster` and `istioctl install` leave, and the healthy
//! stack a world starts with, bootstrapped an hour ago and aged to say so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde_json::{Value, json};

use super::{AMBIENT_LABEL, ClusterState, Container, PodPhase, StoredConnector, WlKey, World, container_id};
use crate::store::{Key, Res, i64_at};

impl World {
    /// Create the kind node containers (the control plane first; each with its port mappings)
    /// and an empty cluster (what `kind create cluster` leaves). A shared cluster's node is a
    /// machine of the team's, not a container of ours.
    pub fn create_cluster(
        &mut self,
        name: &str,
        nodes: Vec<crate::config::NodeSpec>,
        puller: crate::images::Puller,
    ) {
        if !self.shared() {
            self.create_nodes(name, &nodes);
        }
        self.cluster = Some(ClusterState { name: name.to_string() });
        self.node_images.clear();
        self.link.transfers.retain(|t| t.store == crate::images::Store::Host);
        self.link.puller = puller;
        self.istio = None;
        self.clear_cluster_objects();
        self.put_namespace("default", false);
        self.workloads.clear();
        self.pods.clear();
        self.connectors.clear();
        for ns in ["kube-system", "kube-public", "kube-node-lease", "local-path-storage"] {
            self.put_namespace(ns, false);
        }
        self.write_nodes(Instant::now());
        // The node image preloads what kind itself deploys.
        for (ns, name, image, n) in [
            ("kube-system", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", 2),
            (
                "local-path-storage",
                "local-path-provisioner",
                "docker.io/kindest/local-path-provisioner:v20241212",
                1,
            ),
        ] {
            self.node_images.insert(crate::troubles::qualified_image(image));
            self.add_deployment(ns, name, image, n);
        }
    }

    /// A kernel boot ID as `/proc/sys/kernel/random/boot_id` shows it (a UUID), new each call.
    pub(super) fn next_boot_id(&self, node: &str) -> String {
        let h = container_id(&format!("boot {node}"), self.t_ms() ^ ((self.audit.len() as u64) << 32));
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }

    /// Delete every object of the cluster (DELETED events for watchers) and forget its state.
    pub fn clear_cluster_objects(&mut self) {
        for res in crate::store::ALL_RES {
            for k in self.store.keys(*res) {
                self.store.delete(&k);
            }
        }
        self.workloads.clear();
        self.pods.clear();
        self.connectors.clear();
    }

    pub fn put_namespace(&mut self, ns: &str, ambient: bool) {
        let mut labels = json!({"kubernetes.io/metadata.name": ns});
        if ambient {
            labels[AMBIENT_LABEL] = json!("ambient");
        }
        self.store.put(
            Res::Namespaces,
            json!({"metadata":{"name": ns, "labels": labels},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}),
        );
    }

    pub(super) fn workload_object(res: Res, ns: &str, name: &str, image: &str, replicas: i64) -> Value {
        let container = if name == "ztunnel" {
            "istio-proxy"
        } else if name == "istio-cni-node" {
            "install-cni"
        } else {
            name
        };
        let template = json!({"metadata":{"labels":{"app": name}},
            "spec":{"containers":[{"name": container, "image": image, "imagePullPolicy":"IfNotPresent"}],
                    "restartPolicy":"Always","terminationGracePeriodSeconds":30}});
        if res == Res::Deployments {
            json!({"metadata":{"name": name, "namespace": ns, "labels":{"app": name},
                               "annotations":{"deployment.kubernetes.io/revision":"1"}},
                   "spec":{"replicas": replicas, "selector":{"matchLabels":{"app": name}},
                           "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
                           "progressDeadlineSeconds":600,"revisionHistoryLimit":10,
                           "template": template},
                   "status":{}})
        } else {
            // Istio's charts: ztunnel surges (`maxSurge: 1, maxUnavailable: 0`, manifests/charts/
            // ztunnel/templates/daemonset.yaml), istio-cni does not (`maxUnavailable: 1`).
            let strategy = if name == "ztunnel" {
                json!({"maxSurge": 1, "maxUnavailable": 0})
            } else {
                json!({"maxSurge": 0, "maxUnavailable": 1})
            };
            json!({"metadata":{"name": name, "namespace": ns, "labels":{"app": name}},
                   "spec":{"selector":{"matchLabels":{"app": name}},
                           "updateStrategy":{"type":"RollingUpdate","rollingUpdate": strategy},
                           "revisionHistoryLimit":10,
                           "template": template},
                   "status":{"currentNumberScheduled":0,"desiredNumberScheduled":0,"numberMisscheduled":0,"numberReady":0}})
        }
    }

    pub fn add_deployment(&mut self, ns: &str, name: &str, image: &str, replicas: i64) {
        let obj = Self::workload_object(Res::Deployments, ns, name, image, replicas);
        self.store.put(Res::Deployments, obj);
    }

    pub fn add_daemonset(&mut self, ns: &str, name: &str, image: &str) {
        let obj = Self::workload_object(Res::DaemonSets, ns, name, image, 1);
        self.store.put(Res::DaemonSets, obj);
    }

    /// What `istioctl install` creates for this install (the ambient profile: istiod, istio-cni,
    /// ztunnel, with the images of its release and flags).
    pub fn install_istio(&mut self, install: &crate::istioctl::Install) {
        let ns = self.infra.stack.mesh.namespace.clone();
        self.put_namespace(&ns, false);
        let zt = self.infra.stack.mesh.daemonset.clone();
        for (deployment, name, _, image) in install.workloads() {
            let name = if name == "ztunnel" { zt.as_str() } else { name };
            if deployment {
                self.add_deployment(&ns, name, &image, 1);
            } else {
                self.add_daemonset(&ns, name, &image);
            }
        }
        self.istio = Some(install.clone());
    }

    /// The healthy BookStore stack after bootstrap, instantly: every pod Ready and registered,
    /// both connectors stored.
    pub fn bootstrap_stack(&mut self) {
        let name = self.cluster_name();
        let mut ports: Vec<(u16, u16)> = self
            .host_ports
            .iter()
            .map(|(c, h)| (*c, *h))
            .filter(|(c, _)| !(self.opts.old_cluster && [32100, 32200, 32300].contains(c)))
            .collect();
        ports.push((6443, self.kube_port));
        let puller = crate::images::Puller::from_patches(&self.infra.cluster.patches());
        let mut nodes: Vec<crate::config::NodeSpec> = super::nodes::node_names(&name, self.opts.workers)
            .into_iter()
            .map(|(node, role)| (node, role, Vec::new()))
            .collect();
        nodes[0].2 = ports;
        self.bootstrapping = true;
        self.create_cluster(&name, nodes, puller);
        self.bootstrapping = false;
        self.install_istio(&crate::istioctl::Install::ambient(&self.opts.istio_version));
        let ns = self.infra.stack.mesh.namespace.clone();
        self.add_deployment(&ns, "kiali", "quay.io/kiali/kiali:v2.10", 1);
        for ns in self.infra.app_namespaces() {
            self.put_namespace(&ns, true);
        }
        let workloads = self.infra.stack.workloads.clone();
        for w in &workloads {
            let image = format!("bookstore/{}:1.0.0", w.name);
            self.add_deployment(&w.namespace, &w.name, &image, 1);
            self.store.put(
                Res::Services,
                json!({"metadata":{"name": w.name, "namespace": w.namespace, "labels":{"app": w.name}},
                       "spec":{"type":"ClusterIP","selector":{"app": w.name},"ports":[{"port": 8080,"protocol":"TCP"}]}}),
            );
            let pvc = w.role == crate::config::Role::Database || (w.name == "kafka" && self.opts.kafka_pvc);
            if pvc {
                self.store.put(
                    Res::Pvcs,
                    json!({"metadata":{"name": format!("{}-data", w.name), "namespace": w.namespace},
                           "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"standard","resources":{"requests":{"storage":"1Gi"}}},
                           "status":{"phase":"Bound","capacity":{"storage":"1Gi"}}}),
                );
            }
        }
        if self.shared() {
            self.put_manifest_services();
        }
        self.add_volumes_and_worker_env();
        self.put_secret();
        // A stack that has run holds every image it uses (no recovery waits for a download).
        for res in [Res::Deployments, Res::DaemonSets] {
            let templates: Vec<Value> = self
                .store
                .list(res, None)
                .iter()
                .filter_map(|o| o.pointer("/spec/template").cloned())
                .collect();
            for t in templates {
                self.node_images.extend(Self::template_images(&t));
            }
        }
        // Everything Ready, captured (the mesh running on each node before the pods), rolled
        // out; then aged, and the mesh's history written with those times.
        let now = Instant::now();
        for node in self.nodes() {
            self.mesh.insert(node, crate::capture::NodeMesh::running(self.reconcile));
        }
        self.instant_ready(now);
        self.age_bootstrap();
        self.mesh_history();
        for file in self.infra.connectors().to_vec() {
            let mut config = file.config.clone();
            let db =
                config.get("database.hostname").and_then(|h| h.split('.').next()).unwrap_or("").to_string();
            if let Some((u, p)) = self.db_creds.get(&db) {
                config.insert("database.user".into(), u.clone());
                config.insert("database.password".into(), p.clone());
            }
            config.insert("name".into(), file.name.clone());
            self.connectors.insert(
                file.name.clone(),
                StoredConnector { config, created: now - Duration::from_millis(0) },
            );
        }
        // Age the stored connectors so no 404/409 window applies.
        for c in self.connectors.values_mut() {
            c.created = self.start.checked_sub(Duration::from_secs(3600)).unwrap_or(c.created);
        }
        if self.opts.legacy_proxies {
            for (i, proxy) in self.infra.stack.legacy_proxies.clone().iter().enumerate() {
                let port = [32100u16, 32200, 32300].get(i).copied().unwrap_or(32000);
                let wall = SystemTime::now();
                self.containers.push(Container {
                    id: container_id(proxy, i as u64),
                    name: proxy.clone(),
                    image: "alpine/socat".into(),
                    labels: BTreeMap::new(),
                    ports: vec![],
                    running: true,
                    created: wall,
                    started: wall,
                    finished: wall,
                    exit_code: 0,
                    stopped_by_user: false,
                    cmd: vec![format!("TCP-LISTEN:{port},fork,reuseaddr"), format!("TCP:172.19.0.4:{port}")],
                });
            }
        }
    }

    /// The credentials a database accepts: its own Secret `<db>-credentials` (POSTGRES_USER /
    /// POSTGRES_PASSWORD, what the stack's manifests give Postgres) when the cluster has one,
    /// else the ones the simulator was started with.
    pub fn db_credentials(&self, db: &str) -> Option<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = self.store.list(Res::Secrets, None).into_iter().find(|s| {
            s.pointer("/metadata/name").and_then(Value::as_str) == Some(&format!("{db}-credentials"))
        });
        if let Some(s) = secret {
            let key = |k: &str| {
                let text = s.pointer(&format!("/data/{k}")).and_then(Value::as_str)?;
                String::from_utf8(b64.decode(text).ok()?).ok()
            };
            if let (Some(u), Some(p)) = (key("POSTGRES_USER"), key("POSTGRES_PASSWORD")) {
                return Some((u, p));
            }
        }
        self.db_creds.get(db).cloned()
    }

    /// The team deployed the stack from its manifests: their Services as they wrote them (the
    /// NodePort Services a `kubectl port-forward` names on a shared cluster) over the generic
    /// ones, each Deployment's container ports (the named ports those Services target, which
    /// kubectl resolves against the pod), and the Gateway (its pod, which the gateway's NodePort
    /// Service selects).
    fn put_manifest_services(&mut self) {
        let docs: Vec<(String, Value)> = self
            .infra
            .stack
            .bootstrap
            .tiers
            .iter()
            .flat_map(|t| &t.docs)
            .filter(|d| ["Service", "Deployment", "Gateway"].contains(&d.kind.as_str()))
            .filter_map(|d| Some((d.kind.clone(), serde_saphyr::from_str::<Value>(&d.text).ok()?)))
            .collect();
        for (kind, obj) in docs {
            match kind.as_str() {
                "Service" => {
                    self.store.put(Res::Services, obj);
                    continue;
                }
                // Istio's gateway controller deploys its pod (`<name>-istio`) on the next reconcile.
                "Gateway" => {
                    self.store.put(Res::Gateways, obj);
                    continue;
                }
                _ => {}
            }
            let ports = obj.pointer("/spec/template/spec/containers/0/ports").cloned();
            let key = Key::new(
                Res::Deployments,
                obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"),
                obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
            );
            if let (Some(ports), Some(mut ours)) = (ports, self.store.get(&key).cloned()) {
                ours["spec"]["template"]["spec"]["containers"][0]["ports"] = ports;
                self.store.put(Res::Deployments, ours);
            }
        }
    }

    pub fn put_secret(&mut self) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data: serde_json::Map<String, Value> =
            self.opts.secret.iter().map(|(k, v)| (k.clone(), json!(b64.encode(v.as_bytes())))).collect();
        let c = &self.infra.stack.connect;
        let obj = json!({"metadata":{"name": c.secret_name, "namespace": c.secret_namespace},"type":"Opaque","data": data});
        self.store.put(Res::Secrets, obj);
    }

    /// The healthy stack was bootstrapped an hour ago, and its timestamps say so as a real
    /// bootstrap leaves them: the node container started first (2 h ago), Istio's pods were
    /// created and Ready next, the stack's pods after them. Without this, every timestamp would
    /// be "now" and a Docker restart a second later could not be told from the bootstrap.
    pub(super) fn age_bootstrap(&mut self) {
        let wall = SystemTime::now();
        let ago = |secs: u64| wall.checked_sub(Duration::from_secs(secs)).unwrap_or(wall);
        let nodes = self.nodes();
        for c in self.containers.iter_mut().filter(|c| nodes.contains(&c.name)) {
            c.created = ago(7200);
            c.started = ago(7200);
            c.finished = ago(7200);
        }
        // The Nodes' Ready transitions with them.
        for node in &nodes {
            self.node_booted(node, None, ago(7200));
        }
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        let keys: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for k in keys {
            if let Some(p) = self.pods.get_mut(&k) {
                let (created, ready) = if p.ns == mesh_ns { (3600, 3590) } else { (3500, 3400) };
                p.created_wall = ago(created);
                p.started_wall = ago(created);
                p.sandbox_wall = ago(created);
                p.ready_wall = Some(ago(ready));
            }
            self.write_pod(&k);
        }
    }

    /// Bring every workload to a rolled-out, Ready state at once (bootstrap only).
    pub(super) fn instant_ready(&mut self, now: Instant) {
        self.bootstrapping = true;
        self.reconcile(now);
        let keys: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for k in keys {
            if let Some(p) = self.pods.get_mut(&k) {
                p.phase = PodPhase::Ready;
                p.ready_since = None;
                p.ready_wall = Some(p.created_wall);
            }
            self.write_pod(&k);
        }
        self.reconcile(now);
        self.bootstrapping = false;
        // The bootstrap pods were created before anything else; mark rollouts as complete.
        let keys: Vec<WlKey> = self.workloads.keys().cloned().collect();
        for k in keys {
            let gen_ = self
                .store
                .get(&Key::new(k.0, &k.1, &k.2))
                .map(|o| i64_at(o, "/metadata/generation"))
                .unwrap_or(1);
            if let Some(w) = self.workloads.get_mut(&k) {
                w.completed_gen = gen_;
            }
        }
    }
}
