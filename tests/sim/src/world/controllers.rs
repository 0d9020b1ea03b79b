//! The controllers: `World::reconcile` moves the world on; the Deployment/DaemonSet controllers
//! observe generations, create and delete pods and write statuses as the real ones do; Istio's
//! gateway controller; kubectl's rollout-status rule (`rollout_done`).

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::{PodState, WlKey, WlState, World, template_hash};
use crate::latency::{delays, latency_secs};
use crate::store::{Key, Res, i64_at, str_at};
use crate::timefmt::rfc3339;

impl World {
    /// Advance the world to `now`: controllers observe spec changes, create and delete pods,
    /// the kubelet starts, readies and crash-loops containers, statuses are written.
    /// Returns when something is due next.
    pub fn reconcile(&mut self, now: Instant) -> Option<Instant> {
        let download = self.advance_downloads(now);
        if !self.docker_up || !self.node_running() {
            return download;
        }
        self.reconcile_gateways();
        let mesh = self.advance_mesh(now);
        let mut next: Option<Instant> = match (download, mesh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut due = |t: Instant| {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        };
        self.write_nodes(now);
        for t in self.node_ready_at.values().filter(|t| **t > now) {
            due(*t);
        }
        self.reconnect_ztunnel(now, &mut due);
        // Sync workloads with the store.
        let mut present: BTreeSet<WlKey> = BTreeSet::new();
        for res in [Res::Deployments, Res::DaemonSets] {
            for key in self.store.keys(res) {
                present.insert((res, key.ns.clone(), key.name.clone()));
            }
        }
        self.workloads.retain(|k, _| present.contains(k));
        let gone: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| !present.contains(&p.wl)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.delete_pod(&k);
        }
        for wl in present {
            self.reconcile_workload(&wl, now, &mut due);
        }
        next
    }

    pub(super) fn reconcile_workload(&mut self, wl: &WlKey, now: Instant, due: &mut impl FnMut(Instant)) {
        let key = Key::new(wl.0, &wl.1, &wl.2);
        let Some(obj) = self.store.get(&key).cloned() else {
            return;
        };
        let gen_ = i64_at(&obj, "/metadata/generation").max(1);
        let observed = i64_at(&obj, "/status/observedGeneration");
        let template = obj.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        let replicas = if wl.0 == Res::Deployments {
            obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize
        } else {
            1
        };
        if !self.workloads.contains_key(wl) {
            let needs = self.infra.workload(&wl.2).map(|w| w.needs.clone()).unwrap_or_default();
            self.workloads.insert(
                wl.clone(),
                WlState {
                    template: template.clone(),
                    template_gen: gen_,
                    latency: latency_secs(&wl.2),
                    needs,
                    pending_since: None,
                    progress_start: now,
                    completed_gen: 0,
                },
            );
        }
        // Observe a new generation after the controller's delay.
        if gen_ > observed {
            let since = {
                let st = self.workloads.get_mut(wl).expect("inserted above");
                *st.pending_since.get_or_insert(now)
            };
            let at = if self.bootstrapping { since } else { since + self.scaled(delays::OBSERVE) };
            if now < at {
                due(at);
            } else {
                let st = self.workloads.get_mut(wl).expect("inserted above");
                st.pending_since = None;
                let new_template = st.template != template;
                if new_template {
                    st.template = template.clone();
                    st.template_gen = gen_;
                    st.progress_start = now;
                }
                // First write: the new generation is observed, nothing updated yet. A new
                // template's ReplicaSet resets Progressing in the same update (the deployment
                // controller's getNewReplicaSet), so no earlier verdict is read as this rollout's.
                let mut o = obj.clone();
                o["status"]["observedGeneration"] = json!(gen_);
                if new_template && wl.0 == Res::Deployments {
                    let rs = format!("{}-{}", wl.2, template_hash(&wl.2, gen_));
                    let old = o["status"].get("conditions").cloned().unwrap_or(json!([]));
                    let mut conds: Vec<Value> = old
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["type"] != "Progressing")
                        .cloned()
                        .collect();
                    conds.push(condition(
                        &old,
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        &format!("Created new replica set \"{rs}\""),
                    ));
                    o["status"]["conditions"] = Value::Array(conds);
                }
                if wl.0 == Res::Deployments {
                    remove_key(&mut o["status"], "updatedReplicas");
                } else {
                    remove_key(&mut o["status"], "updatedNumberScheduled");
                }
                self.store.put(wl.0, o);
                self.event("rollout-observed", &format!("{}/{}", wl.1, wl.2), &gen_.to_string());
            }
        }
        let (tgen, latency) = {
            let st = &self.workloads[wl];
            (st.template_gen, st.latency)
        };
        if wl.0 == Res::DaemonSets {
            self.daemon_pods(wl, &obj, tgen, latency, now);
        } else {
            // Create missing pods of the current template.
            let current = self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen).count();
            for _ in current..replicas {
                self.create_pod(wl, tgen, latency, now, None);
            }
        }
        // Kubelet: advance each pod of this workload.
        let keys: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| &p.wl == wl).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            // A node that is down runs nothing (its pods restart in place when it starts).
            if self.pods.get(k).is_some_and(|p| self.node_up(&p.node)) {
                self.advance_pod(k, now, due);
            }
        }
        // Surge done: once enough new pods are Ready, old pods (and extras) go.
        let new_ready =
            self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen && p.is_ready()).count();
        if wl.0 == Res::DaemonSets {
            // A node's new pod Ready: its old one goes now, the next node starts.
            let obj = self.store.get(&key).cloned().unwrap_or(Value::Null);
            self.daemon_pods(wl, &obj, tgen, latency, now);
        }
        if wl.0 == Res::Deployments && new_ready >= replicas {
            let mut doomed: Vec<(String, String)> = self
                .pods
                .iter()
                .filter(|(_, p)| &p.wl == wl && p.template_gen < tgen)
                .map(|(k, _)| k.clone())
                .collect();
            let mut current: Vec<&PodState> =
                self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen).collect();
            current.sort_by_key(|p| std::cmp::Reverse(p.is_ready()));
            doomed.extend(current.iter().skip(replicas).map(|p| (p.ns.clone(), p.name.clone())));
            for k in doomed {
                self.delete_pod(&k);
            }
        }
        self.write_status(wl, now, due);
    }

    /// The DaemonSet controller (kubernetes `pkg/controller/daemon`): a pod on every node, and a
    /// rolling update node by node as the DaemonSet's `updateStrategy` says. A node whose pod was
    /// deleted gets a new one at once (`podsShouldBeOnNode`: with surge allowed, a node whose
    /// pods are all going away needs one; without, the old one is gone first, as the simulator
    /// deletes at once). With `maxSurge` (Istio's ztunnel: 1, `maxUnavailable: 0`) the new pod
    /// runs beside the old until it is Ready, then the old goes; without (istio-cni:
    /// `maxUnavailable: 1`) the old goes first. One node at a time, in name order.
    fn daemon_pods(&mut self, wl: &WlKey, obj: &Value, tgen: i64, latency: f64, now: Instant) {
        let surge =
            obj.pointer("/spec/updateStrategy/rollingUpdate/maxSurge").and_then(Value::as_i64).unwrap_or(0)
                > 0;
        let nodes = self.nodes();
        let on = |w: &World, node: &str, new: Option<bool>| -> Vec<(String, String)> {
            w.pods
                .iter()
                .filter(|(_, p)| &p.wl == wl && p.node == node)
                .filter(|(_, p)| new.is_none_or(|n| (p.template_gen == tgen) == n))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for node in &nodes {
            if on(self, node, None).is_empty() {
                self.create_pod(wl, tgen, latency, now, Some(node));
            }
        }
        // The rolling update: the node under way finishes once its new pod is Ready (its old
        // one goes), then the next node with an old pod starts (in the same pass).
        let updating = |w: &World| {
            nodes
                .iter()
                .find(|n| !on(w, n, Some(false)).is_empty() && !on(w, n, Some(true)).is_empty())
                .cloned()
        };
        if let Some(node) = updating(self)
            && on(self, &node, Some(true)).iter().any(|k| self.pods[k].is_ready())
        {
            for k in on(self, &node, Some(false)) {
                self.delete_pod(&k);
            }
        }
        if updating(self).is_some() {
            return;
        }
        let unavailable =
            nodes.iter().any(|n| on(self, n, Some(true)).iter().any(|k| !self.pods[k].is_ready()));
        let next = nodes.iter().find(|n| !on(self, n, Some(false)).is_empty()).cloned();
        if let Some(node) = next {
            if surge {
                self.create_pod(wl, tgen, latency, now, Some(&node));
            } else if !unavailable {
                for k in on(self, &node, Some(false)) {
                    self.delete_pod(&k);
                }
                self.create_pod(wl, tgen, latency, now, Some(&node));
            }
        }
    }

    /// Istio's gateway controller: each Gateway gets a Deployment `<name>-istio`, and is
    /// `Programmed` once that Deployment has rolled out.
    pub(super) fn reconcile_gateways(&mut self) {
        let gateways: Vec<Value> = self.store.list(Res::Gateways, None).into_iter().cloned().collect();
        for gw in gateways {
            let ns = str_at(&gw, "/metadata/namespace").to_string();
            let name = str_at(&gw, "/metadata/name").to_string();
            let deploy = format!("{name}-istio");
            let key = Key::new(Res::Deployments, &ns, &deploy);
            match self.store.get(&key) {
                None => {
                    let image = self.istio.as_ref().map(|i| i.gateway_image()).unwrap_or_default();
                    let mut obj = Self::workload_object(Res::Deployments, &ns, &deploy, &image, 1);
                    obj["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] = json!(name);
                    obj["spec"]["template"]["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] =
                        json!(name);
                    self.store.put(Res::Deployments, obj);
                }
                Some(d) => {
                    let programmed =
                        gw.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
                            cs.iter()
                                .any(|c| str_at(c, "/type") == "Programmed" && str_at(c, "/status") == "True")
                        });
                    if rollout_done(d).is_ok()
                        && d.pointer("/status/observedGeneration").is_some()
                        && !programmed
                    {
                        let mut g = gw.clone();
                        g["status"] = json!({"conditions": [
                            {"type":"Accepted","status":"True","reason":"Accepted","message":"Resource accepted"},
                            {"type":"Programmed","status":"True","reason":"Programmed","message":"Resource programmed, assigned to service(s)"}]});
                        self.store.put(Res::Gateways, g);
                    }
                }
            }
        }
    }

    pub(super) fn write_status(&mut self, wl: &WlKey, now: Instant, due: &mut impl FnMut(Instant)) {
        let key = Key::new(wl.0, &wl.1, &wl.2);
        let Some(obj) = self.store.get(&key) else {
            return;
        };
        let st = &self.workloads[wl];
        let tgen = st.template_gen;
        let pods: Vec<&PodState> = self.pods.values().filter(|p| &p.wl == wl).collect();
        let total = pods.len() as i64;
        let observed = i64_at(obj, "/status/observedGeneration");
        let gen_ = i64_at(obj, "/metadata/generation");
        let updated = if observed >= gen_ {
            pods.iter().filter(|p| p.template_gen == tgen).count() as i64
        } else {
            i64_at(obj, "/status/updatedReplicas").max(i64_at(obj, "/status/updatedNumberScheduled"))
        };
        let disconnected = self.is_ztunnel(wl) && self.ztunnel_disconnected();
        let ready = pods.iter().filter(|p| p.is_ready() && !disconnected).count() as i64;
        let _ = total;
        let mut status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
        if wl.0 == Res::Deployments {
            let replicas = i64_at(obj, "/spec/replicas");
            set_count(&mut status, "replicas", total);
            set_count(&mut status, "updatedReplicas", updated);
            set_count(&mut status, "readyReplicas", ready);
            set_count(&mut status, "availableReplicas", ready);
            set_count(&mut status, "unavailableReplicas", (replicas - ready).max(0));
            let rolled = observed >= gen_ && updated >= replicas && total <= updated && ready >= updated;
            let deadline = st.progress_start + self.scaled(delays::PROGRESS_DEADLINE);
            let rs = format!("{}-{}", wl.2, template_hash(&wl.2, tgen));
            let old_progressing = status.get("conditions").and_then(Value::as_array).and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "Progressing")
                    .map(|c| (c["reason"].clone(), c["message"].clone()))
            });
            let (pstatus, preason, pmsg) = if rolled {
                (
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{rs}\" has successfully progressed."),
                )
            } else if let Some((_, message)) =
                old_progressing.as_ref().filter(|(reason, _)| reason == "NewReplicaSetAvailable")
            {
                // DeploymentTimedOut: a completed rollout never times out, however long ago it
                // finished (pods unready after a Docker restart change nothing here).
                ("True", "NewReplicaSetAvailable", message.as_str().unwrap_or("").to_string())
            } else if now >= deadline {
                (
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs}\" has timed out progressing."),
                )
            } else {
                due(deadline);
                ("True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."))
            };
            let (astatus, areason, amsg) = if ready >= replicas {
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            } else {
                ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
            };
            let old = status.get("conditions").cloned().unwrap_or(json!([]));
            let conds = vec![
                condition(&old, "Available", astatus, areason, amsg),
                condition(&old, "Progressing", pstatus, preason, &pmsg),
            ];
            status["conditions"] = Value::Array(conds);
        } else {
            // The DaemonSet controller's updateDaemonSetStatus: per node that should run it, its
            // oldest pod counts (Ready, available, updated).
            let nodes = self.nodes();
            let desired = nodes.len() as i64;
            let (mut current, mut ready, mut updated) = (0, 0, 0);
            for node in &nodes {
                let Some(oldest) = pods.iter().filter(|p| &p.node == node).min_by_key(|p| p.created_wall)
                else {
                    continue;
                };
                current += 1;
                if oldest.is_ready() && !disconnected {
                    ready += 1;
                }
                if observed >= gen_ && oldest.template_gen == tgen {
                    updated += 1;
                }
            }
            if observed < gen_ {
                updated = i64_at(obj, "/status/updatedNumberScheduled");
            }
            status["desiredNumberScheduled"] = json!(desired);
            status["currentNumberScheduled"] = json!(current);
            status["numberMisscheduled"] = json!(0);
            status["numberReady"] = json!(ready);
            set_count(&mut status, "updatedNumberScheduled", updated);
            set_count(&mut status, "numberAvailable", ready);
            set_count(&mut status, "numberUnavailable", (desired - ready).max(0));
        }
        if obj.get("status") != Some(&status) {
            let mut o = obj.clone();
            o["status"] = status;
            self.store.put(wl.0, o);
        }
        // Rollout completion, as kubectl's rollout status reads it.
        let Some(obj) = self.store.get(&key) else {
            return;
        };
        let done = rollout_done(obj).is_ok();
        let completed = self.workloads[wl].completed_gen;
        if done && completed < gen_ {
            if let Some(st) = self.workloads.get_mut(wl) {
                st.completed_gen = gen_;
            }
            let kind = wl.0.kind();
            self.event("rollout-complete", &format!("{}/{}", wl.1, wl.2), kind);
        }
    }
}

fn remove_key(v: &mut Value, k: &str) {
    if let Some(o) = v.as_object_mut() {
        o.remove(k);
    }
}

/// The real apiserver omits zero counts (`omitempty`).
fn set_count(status: &mut Value, k: &str, n: i64) {
    if n == 0 {
        remove_key(status, k);
    } else {
        status[k] = json!(n);
    }
}

fn condition(old: &Value, typ: &str, status: &str, reason: &str, message: &str) -> Value {
    let prev = old.as_array().and_then(|a| a.iter().find(|c| c["type"] == typ));
    let now = rfc3339(SystemTime::now());
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match prev {
        Some(p) if p["status"] == status && p["reason"] == reason && p["message"] == message => {
            p["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({"type": typ, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": transition, "lastUpdateTime": update})
}

/// kubectl's rollout-status rules (kube-api.md §8; kubectl's `polymorphichelpers/rollout_status.go`):
/// Ok when done, Err(waiting message, or the progress deadline's error) otherwise.
///
/// The product reads rollouts by the same rule (`bookstore::kube::deployment_rollout`), and this
/// copy stays the simulator's own: it is the model's record of when a rollout completed (the mesh
/// epoch, `World::healthy`, a Gateway's `Programmed`), the oracle the tests hold the product
/// against; borrowing the product's would move the oracle with any mistake in it. The test below
/// holds both copies to kubectl's branches.
pub fn rollout_done(obj: &Value) -> Result<(), String> {
    let name = str_at(obj, "/metadata/name");
    let gen_ = i64_at(obj, "/metadata/generation");
    let observed = i64_at(obj, "/status/observedGeneration");
    let kind = str_at(obj, "/kind");
    if kind == "DaemonSet" {
        if gen_ > observed {
            return Err("Waiting for daemon set spec update to be observed...".into());
        }
        let desired = i64_at(obj, "/status/desiredNumberScheduled");
        let updated = i64_at(obj, "/status/updatedNumberScheduled");
        let avail = i64_at(obj, "/status/numberAvailable");
        if updated < desired {
            return Err(format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
            ));
        }
        if avail < desired {
            return Err(format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {avail} of {desired} updated pods are available..."
            ));
        }
        return Ok(());
    }
    if gen_ > observed {
        return Err("Waiting for deployment spec update to be observed...".into());
    }
    let timed_out = obj.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if timed_out {
        return Err(format!("deployment \"{name}\" exceeded its progress deadline"));
    }
    let replicas = i64_at(obj, "/spec/replicas");
    let updated = i64_at(obj, "/status/updatedReplicas");
    let total = i64_at(obj, "/status/replicas");
    let avail = i64_at(obj, "/status/availableReplicas");
    if updated < replicas {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        ));
    }
    if total > updated {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            total - updated
        ));
    }
    if avail < updated {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {avail} of {updated} updated replicas are available..."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each branch of kubectl's `DeploymentStatusViewer.Status`, and what the simulator's copy and
    /// the product's (`bookstore::kube::deployment_rollout`) make of it: done or not, alike.
    #[test]
    fn the_rollout_rule_is_kubectls_in_the_simulator_and_in_the_product() {
        let d = |generation: i64, observed: i64, replicas: i64, updated: i64, total: i64, available: i64| {
            json!({"kind": "Deployment", "metadata": {"name": "x", "generation": generation},
                   "spec": {"replicas": replicas},
                   "status": {"observedGeneration": observed, "updatedReplicas": updated,
                              "replicas": total, "availableReplicas": available}})
        };
        let mut timed_out = d(2, 2, 1, 1, 1, 1);
        timed_out["status"]["conditions"] =
            json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        let mut omitted = d(1, 1, 1, 0, 0, 0);
        omitted["status"] = json!({"observedGeneration": 1}); // the apiserver omits zero counts
        let cases = [
            ("spec update not observed", d(3, 2, 1, 1, 1, 1), false),
            ("progress deadline exceeded", timed_out, false),
            ("new replicas not all updated", d(3, 3, 2, 1, 1, 1), false),
            ("old replicas pending termination", d(3, 3, 1, 1, 2, 1), false),
            ("updated replicas not available", d(3, 3, 1, 1, 1, 0), false),
            ("successfully rolled out", d(3, 3, 1, 1, 1, 1), true),
            ("scaled to zero", d(1, 1, 0, 0, 0, 0), true),
            ("zero counts omitted", omitted, false),
        ];
        for (what, obj, done) in cases {
            assert_eq!(rollout_done(&obj).is_ok(), done, "simulator: {what}");
            let product = bookstore::kube::deployment_rollout(&obj) == bookstore::kube::Rollout::Done;
            assert_eq!(product, done, "product: {what}");
        }
        let ds = |observed: i64, desired: i64, updated: i64, available: i64| {
            json!({"kind": "DaemonSet", "metadata": {"name": "ztunnel", "generation": 2},
                   "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                              "updatedNumberScheduled": updated, "numberAvailable": available}})
        };
        assert!(rollout_done(&ds(1, 1, 1, 1)).is_err(), "spec update not observed");
        assert!(rollout_done(&ds(2, 1, 0, 1)).is_err(), "new pods not updated");
        assert!(rollout_done(&ds(2, 1, 1, 0)).is_err(), "updated pods not available");
        assert!(rollout_done(&ds(2, 1, 1, 1)).is_ok());
    }
}
