//! The troubles `bookstore doctor` diagnoses, as the real kubectl and docker clients see them:
//! pod states with their Events, istio-cni's reconcile error, refused HBONE in ztunnel's log, a
//! second control-plane container, the worker env and the volumes of the Deployments.

use std::time::Duration;

use bookstore_sim::kit::{Run, World, eventually, http};
use bookstore_sim::{Fault, PullError, SimOptions};
use serde_json::Value;

/// These tests' time scale: the simulator's own wire behaviour, fast.
const SCALE: f64 = 0.02;

fn opts() -> bookstore_sim::SimOptions {
    bookstore_sim::SimOptions { time_scale: SCALE, ..bookstore_sim::SimOptions::default() }
}

fn json(o: &Run) -> Value {
    serde_json::from_str(&o.ok()).expect("kubectl printed JSON")
}

/// The first container's waiting reason of every pod of `app` in `ns`.
fn waiting(sim: &World, ns: &str, app: &str) -> Vec<String> {
    let pods = json(&sim.kubectl(&["get", "pods", "-n", ns, "-l", &format!("app={app}"), "-o", "json"]));
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p.pointer("/status/containerStatuses/0/state/waiting/reason"))
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

fn events(sim: &World) -> Vec<(String, String, String)> {
    let all = json(&sim.kubectl(&["get", "events", "-A", "-o", "json"]));
    all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            let s = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
            (s("/involvedObject/name"), s("/reason"), s("/message"))
        })
        .collect()
}

#[test]
fn troubled_pods_show_their_state_and_events() {
    let sim = World::start(opts());
    sim.fault(Fault::ImagePullBackOff { workload: "redis".into(), error: PullError::NotFound, secs: None });
    sim.fault(Fault::SandboxCreationFails { workload: "prometheus".into() });
    sim.fault(Fault::Unschedulable { workload: "superset".into() });
    sim.fault(Fault::CrashLoop { workload: "pgadmin".into() });
    for (name, ns) in
        [("redis", "infra"), ("prometheus", "observability"), ("superset", "analytics"), ("pgadmin", "infra")]
    {
        sim.kubectl(&["rollout", "restart", &format!("deployment/{name}"), "-n", ns]).ok();
    }
    eventually(Duration::from_secs(10), "the troubles show", || {
        let pull = waiting(&sim, "infra", "redis").contains(&"ImagePullBackOff".to_string());
        let crash = waiting(&sim, "infra", "pgadmin").contains(&"CrashLoopBackOff".to_string());
        let sandbox = waiting(&sim, "observability", "prometheus").contains(&"ContainerCreating".to_string());
        (pull && crash && sandbox).then_some(())
    });
    let pods = json(&sim.kubectl(&["get", "pods", "-n", "analytics", "-l", "app=superset", "-o", "json"]));
    let pending: Vec<&Value> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p.pointer("/status/phase") == Some(&Value::from("Pending")))
        .collect();
    assert_eq!(pending.len(), 1, "{pods}");
    assert_eq!(pending[0].pointer("/status/conditions/0/reason"), Some(&Value::from("Unschedulable")));

    let ev = events(&sim);
    let has = |reason: &str, text: &str| ev.iter().any(|(_, r, m)| r == reason && m.contains(text));
    assert!(has("Failed", "Failed to pull image \"bookstore/redis:1.0.0\""), "{ev:?}");
    assert!(has("FailedCreatePodSandBox", "no ztunnel connection"), "{ev:?}");
    assert!(has("FailedScheduling", "Insufficient memory"), "{ev:?}");
    assert!(has("BackOff", "Back-off restarting failed container pgadmin"), "{ev:?}");
    // The old pods keep serving: a bad rollout does not take the running pod down.
    let ready = sim.pods().iter().filter(|p| p.workload == "redis" && p.ready).count();
    assert_eq!(ready, 1);
}

#[test]
fn cni_reconcile_failure_is_logged_and_hbone_to_the_pod_is_refused() {
    let sim = World::start(opts());
    sim.fault(Fault::CniReconcileFailed { workload: "ui-service".into() });
    let cni = sim.kubectl(&["logs", "daemonset/istio-cni-node", "-n", "istio-system", "--tail=5"]).ok();
    let pod = sim.pods().into_iter().find(|p| p.workload == "ui-service").expect("ui pod");
    assert!(cni.contains("failed to reconcile inpod rules for pod"), "{cni}");
    assert!(cni.contains(&format!("ns=ecom name={}", pod.name)), "{cni}");
    let (status, _, _) = http(sim.host_port(30000), "GET", "myecom.net", "/", None).expect("gateway answers");
    assert_eq!(status, 503);
    let zt = sim.kubectl(&["logs", "daemonset/ztunnel", "-n", "istio-system", "--tail=5"]).ok();
    assert!(zt.contains(&format!("dst.addr={}:15008", pod.ip)), "{zt}");
    assert!(zt.contains("Connection refused (os error 111)"), "{zt}");
}

#[test]
fn a_second_control_plane_is_listed_with_its_role_label() {
    let sim = World::start(opts());
    sim.fault(Fault::ExtraControlPlane);
    let out = sim
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "label=io.x-k8s.kind.cluster=bookstore",
            "--format",
            "{{.Names}} {{.Label \"io.x-k8s.kind.role\"}}",
        ])
        .ok();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["bookstore-control-plane control-plane", "bookstore-control-plane2 control-plane"]);
}

#[test]
fn deployments_carry_the_volumes_and_worker_env_of_the_manifests() {
    let deploy = |sim: &World, ns: &str, name: &str| {
        json(&sim.kubectl(&["get", "deployment", name, "-n", ns, "-o", "json"]))
    };
    let sim = World::start(opts());
    let kafka = deploy(&sim, "infra", "kafka");
    assert!(kafka.pointer("/spec/template/spec/volumes").is_none(), "no PVC by default");
    let db = deploy(&sim, "ecom", "ecom-db");
    assert_eq!(
        db.pointer("/spec/template/spec/volumes/0/persistentVolumeClaim/claimName"),
        Some(&Value::from("ecom-db-data"))
    );
    let env = deploy(&sim, "infra", "debezium");
    let names: Vec<&str> = env["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!names.contains(&"CONNECT_CONFIG_PROVIDERS"), "{names:?}");

    let sim = World::start(SimOptions { kafka_pvc: true, worker_file_provider: true, ..opts() });
    let kafka = deploy(&sim, "infra", "kafka");
    assert_eq!(
        kafka.pointer("/spec/template/spec/volumes/0/persistentVolumeClaim/claimName"),
        Some(&Value::from("kafka-data"))
    );
    let env = deploy(&sim, "infra", "debezium");
    let providers = env["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "CONNECT_CONFIG_PROVIDERS")
        .and_then(|e| e["value"].as_str())
        .map(String::from);
    assert_eq!(providers.as_deref(), Some("file"));
}
