//! The release logic end to end against the simulator, through the real `kubectl` and `docker`
//! clients: a Docker restart, then `bookstore up`, and the world's audit log as the witness.

use std::time::Duration;

use bookstore_sim::{AuditEntry, Fault, SimOptions, Source};

use crate::harness::{ENVOY_503, HOSTILE};
use crate::simkit::{
    assert_every_route_answers, assert_recovery_order, bookstore, get_as as get, options, start,
};

#[test]
fn a_docker_restart_is_recovered_by_up_in_the_right_order() {
    let sim = start(options());
    let since = sim.audit().len();
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(30)).unwrap();

    // Before: the pods are Ready, yet the mesh is stale and the connectors are gone.
    let (status, body) = get(&sim, 30000, Some("myecom.net"), "/").expect("the gateway answers");
    assert_eq!(status, 503);
    assert!(body.starts_with(ENVOY_503), "{body}");
    assert_eq!(get(&sim, 32300, None, "/connectors").map(|(_, b)| b).as_deref(), Some("[]"));

    let run = bookstore(&sim, &["up"]);
    run.expect(0);

    // After: every route answers and both connectors run with the secret's credentials.
    assert_every_route_answers(&sim);
    let connectors = sim.connectors();
    assert_eq!(connectors.len(), 2);
    assert_eq!(connectors["ecom-connector"]["database.password"], HOSTILE);
    assert_eq!(connectors["inventory-connector"]["database.user"], "inventoryuser");
    // In the guide's order (ztunnel, each database before its apps), deleting nothing.
    assert_recovery_order(&sim.audit().split_off(since));
    // No secret in the tool's output.
    assert!(bookstore_sim::kit::leaks_in(format!("{}{}", run.stderr, run.stdout).as_bytes()).is_empty());
}

/// The model's teeth: restarting ztunnel repairs no pod the mesh left out (istio-cni resends its
/// cached snapshot, `keep` for each); only a pod's new sandbox, through its CNI ADD, is captured.
#[test]
fn restarting_ztunnel_alone_leaves_the_gateway_broken() {
    let sim = start(options());
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(30)).unwrap();
    // What a user might try: step 1 of the guide only.
    for args in [
        &["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"][..],
        &["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=60s"][..],
    ] {
        let out = sim.command("kubectl").args(["--context", "kind-bookstore"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    sim.wait_healthy(Duration::from_secs(30)).unwrap();
    let (status, body) = get(&sim, 30000, Some("myecom.net"), "/").expect("the gateway answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with(ENVOY_503));
}

#[test]
fn up_on_a_healthy_stack_changes_no_connector() {
    // Kafka on a volume (infra/k8s): restarting it keeps the topics, so the connectors survive and
    // their stored config equals the desired one. (Without the volume every Kafka restart loses
    // them, and re-registering is the point.)
    let sim = start(SimOptions { kafka_pvc: true, ..options() });
    bookstore(&sim, &["up"]).expect(0);
    let since = sim.audit().len();
    bookstore(&sim, &["up"]).expect(0);
    let audit: Vec<AuditEntry> = sim.audit().split_off(since);
    let puts: Vec<&AuditEntry> =
        audit.iter().filter(|e| e.source == Source::Connect && e.verb == "PUT").collect();
    assert!(
        puts.is_empty(),
        "a healthy second run PUT {:?}",
        puts.iter().map(|p| &p.path).collect::<Vec<_>>()
    );
}

#[test]
fn an_old_cluster_without_the_new_port_mappings_is_reported_and_left_alone() {
    let sim = start(SimOptions { old_cluster: true, ..options() });
    let since = sim.audit().len();
    let run = bookstore(&sim, &["up"]);
    run.expect(3);
    assert!(run.stderr.contains("32100, 32200, 32300"), "{}", run.stderr);
    assert!(run.stderr.contains("bookstore down && bookstore up"), "{}", run.stderr);
    let audit: Vec<AuditEntry> = sim.audit().split_off(since);
    assert!(
        audit.iter().all(|e| !(e.source == Source::Kube && e.verb == "PATCH")),
        "something was restarted"
    );
}

#[test]
fn legacy_socat_proxies_are_reported_and_removed() {
    let sim = start(SimOptions { legacy_proxies: true, ..options() });
    let run = bookstore(&sim, &["up"]);
    run.expect(0);
    assert!(run.stderr.contains("legacy socat proxy"), "{}", run.stderr);
    let deleted: Vec<String> = sim
        .audit()
        .iter()
        .filter(|e| e.source == Source::Docker && e.verb == "DELETE")
        .map(|e| e.path_only().to_string())
        .collect();
    for proxy in ["kiali-proxy", "flink-proxy", "debezium-proxy"] {
        assert!(
            deleted.iter().any(|p| p.ends_with(&format!("/containers/{proxy}"))),
            "{proxy} not removed: {deleted:?}"
        );
    }
}

#[test]
fn docker_down_and_no_cluster_are_told_apart() {
    let sim = start(options());
    sim.docker_stop();
    let run = bookstore(&sim, &["up"]);
    run.expect(3);
    assert!(run.stderr.contains("Docker is not running"), "{}", run.stderr);

    let sim = start(SimOptions { no_cluster: true, ..options() });
    let run = bookstore(&sim, &["recover"]);
    run.expect(3);
    assert!(run.stderr.contains("no kind cluster named `bookstore`"), "{}", run.stderr);
}

#[test]
fn an_api_that_refuses_for_a_while_after_the_restart_is_waited_for() {
    let sim = start(options());
    sim.docker_restart();
    sim.fault(Fault::ApiRefuseFor { secs: 3.0 });
    let run = bookstore(&sim, &["up"]);
    run.expect(0);
    assert!(run.stderr.contains("Kubernetes API"), "{}", run.stderr);
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/").map(|(s, _)| s), Some(200));
}

#[test]
fn phased_recovery_waits_out_a_crash_loop_its_own_order_causes() {
    // The guide's phases restart flink-taskmanager together with flink-jobmanager, which it
    // needs: the taskmanager crash-loops until the jobmanager is up. That is not a broken pod,
    // and the fail-fast wait must not give up on it. (A time scale at which the crash loop lasts
    // past the fail-fast grace period of 2 s.)
    let sim = start(SimOptions { time_scale: 0.3, ..options() });
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(30)).unwrap();
    let run = bookstore(&sim, &["recover", "--phased", "--settle", "0s"]);
    run.expect(0);
    let crashed = sim
        .audit()
        .iter()
        .any(|e| e.verb == "pod-crashed" && e.path.starts_with("analytics/flink-taskmanager"));
    assert!(crashed, "the phased order should have crash-looped flink-taskmanager once (the model's teeth)");
}
