//! The release logic end to end against the simulator, through the real `kubectl` and `docker`
//! clients: a Docker restart, then `bookstore up`, and the world's audit log as the witness.

use bookstore_sim::kit::{BOUND, ENVOY_503, HOSTILE, Test, World, assert_recovery_order};
use bookstore_sim::{AuditEntry, Fault, SimOptions, Source};

#[test]
fn a_docker_restart_is_recovered_by_up_in_the_right_order() {
    let sim = World::healthy();
    let since = sim.audit().len();
    sim.docker_restart();
    sim.wait_healthy(BOUND).unwrap();

    // Before: the pods are Ready, yet the mesh is stale and the connectors are gone.
    let (status, body) = sim.get(30000, Some("myecom.net"), "/").expect("the gateway answers");
    assert_eq!(status, 503);
    assert!(body.starts_with(ENVOY_503), "{body}");
    assert_eq!(sim.get(32300, None, "/connectors").map(|(_, b)| b).as_deref(), Some("[]"));

    let run = Test::new().world(&sim).args(["up"]).code(0).run();

    // After: every route answers and both connectors run with the secret's credentials.
    sim.assert_every_route_answers();
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
    let sim = World::healthy();
    sim.docker_restart();
    sim.wait_healthy(BOUND).unwrap();
    // What a user might try: step 1 of the guide only.
    for args in [
        &["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"][..],
        &["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=60s"][..],
    ] {
        sim.kubectl(args).ok();
    }
    sim.wait_healthy(BOUND).unwrap();
    let (status, body) = sim.get(30000, Some("myecom.net"), "/").expect("the gateway answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with(ENVOY_503));
}

#[test]
fn up_on_a_healthy_stack_changes_no_connector() {
    // Kafka on a volume (infra/k8s): restarting it keeps the topics, so the connectors survive and
    // their stored config equals the desired one. (Without the volume every Kafka restart loses
    // them, and re-registering is the point.)
    let sim = World::start(SimOptions { kafka_pvc: true, ..World::options() });
    Test::new().world(&sim).args(["up"]).code(0).run();
    let since = sim.audit().len();
    Test::new().world(&sim).args(["up"]).code(0).run();
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
    let sim = World::start(SimOptions { old_cluster: true, ..World::options() });
    let since = sim.audit().len();
    let run = Test::new().world(&sim).args(["up"]).code(3).run();
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
    let sim = World::start(SimOptions { legacy_proxies: true, ..World::options() });
    let run = Test::new().world(&sim).args(["up"]).code(0).run();
    assert!(run.stderr.contains("legacy socat proxy"), "{}", run.stderr);
    // In one command, after every check.
    let rm: Vec<String> =
        sim.argv().iter().map(|a| a.join(" ")).filter(|l| l.starts_with("docker rm")).collect();
    assert_eq!(rm, ["docker rm -f debezium-proxy flink-proxy kiali-proxy"]);
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
    sim.check();
}

#[test]
fn docker_down_and_no_cluster_are_told_apart() {
    let sim = World::healthy();
    sim.docker_stop();
    let run = Test::new().world(&sim).args(["up"]).code(3).run();
    assert!(run.stderr.contains("Docker is not running"), "{}", run.stderr);

    let sim = World::start(SimOptions { no_cluster: true, ..World::options() });
    let run = Test::new().world(&sim).args(["recover"]).code(3).run();
    assert!(run.stderr.contains("no kind cluster named `bookstore`"), "{}", run.stderr);
}

#[test]
fn an_api_that_refuses_for_a_while_after_the_restart_is_waited_for() {
    let sim = World::healthy();
    sim.docker_restart();
    sim.fault(Fault::ApiRefuseFor { secs: 3.0 });
    let run = Test::new().world(&sim).args(["up"]).code(0).run();
    assert!(run.stderr.contains("Kubernetes API"), "{}", run.stderr);
    assert_eq!(sim.get(30000, Some("myecom.net"), "/").map(|(s, _)| s), Some(200));
}

#[test]
fn phased_recovery_waits_out_a_crash_loop_its_own_order_causes() {
    // The guide's phases restart flink-taskmanager together with flink-jobmanager, which it
    // needs: the taskmanager crash-loops until the jobmanager is up. That is not a broken pod,
    // and the fail-fast wait must not give up on it. (A time scale at which the crash loop lasts
    // past the fail-fast grace period of 2 s.)
    let sim = World::start(SimOptions { time_scale: 0.3, ..World::options() });
    sim.docker_restart();
    sim.wait_healthy(BOUND).unwrap();
    Test::new().world(&sim).args(["recover", "--phased", "--settle", "0s"]).code(0).run();
    let crashed = sim
        .audit()
        .iter()
        .any(|e| e.verb == "pod-crashed" && e.path.starts_with("analytics/flink-taskmanager"));
    assert!(crashed, "the phased order should have crash-looped flink-taskmanager once (the model's teeth)");
}
