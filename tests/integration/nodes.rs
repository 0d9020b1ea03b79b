//! kind clusters with workers (issue 19 part 1), end to end on the simulator through the real
//! `kubectl` and `docker` clients: a worker restarted alone (`docker restart bookstore-worker2`)
//! is healed on that node only, a Docker restart of three nodes gets the whole remedy in the
//! guide's order, and a cluster config with workers is bootstrapped.

use std::collections::{BTreeMap, BTreeSet};

use bookstore::event::{Event, HealOutcome};
use bookstore_sim::kit::{BOUND, ENVOY_503, Test, World, assert_recovery_order};
use bookstore_sim::{SimOptions, Source};

/// A healthy stack on a control plane and two workers.
fn three_nodes() -> World {
    World::start(SimOptions { workers: 2, ..World::options() })
}

/// ztunnel's pods: node → (pod, uid), as the API has them.
fn ztunnel_pods(world: &World) -> BTreeMap<String, (String, String)> {
    let out = world.kubectl(&["get", "pods", "-n", "istio-system", "-l", "app=ztunnel", "-o", "json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("kubectl's JSON");
    doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            let text = |ptr: &str| p.pointer(ptr).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (text("/spec/nodeName"), (text("/metadata/name"), text("/metadata/uid")))
        })
        .collect()
}

/// The stack's workloads with a pod on `node`.
fn workloads_on(world: &World, node: &str) -> BTreeSet<String> {
    let stack: BTreeSet<String> = bookstore_sim::config::Infra::load(&world.dir().join("infra"))
        .unwrap()
        .stack
        .workloads
        .iter()
        .map(|w| w.name.clone())
        .collect();
    world
        .pods()
        .into_iter()
        .filter(|p| p.node == node && stack.contains(&p.workload))
        .map(|p| p.workload)
        .collect()
}

#[test]
fn a_worker_restarted_alone_is_healed_on_that_node_then_a_docker_restart_everywhere() {
    let world = three_nodes();
    assert_eq!(world.nodes(), ["bookstore-control-plane", "bookstore-worker", "bookstore-worker2"]);
    let before = ztunnel_pods(&world);
    assert_eq!(before.len(), 3, "one ztunnel pod a node: {before:?}");
    let on_w2 = workloads_on(&world, "bookstore-worker2");
    let on_w1 = workloads_on(&world, "bookstore-worker");
    assert!(!on_w2.is_empty() && !on_w1.is_empty(), "the scheduler spreads the stack: {on_w1:?} {on_w2:?}");
    assert!(workloads_on(&world, "bookstore-control-plane").is_empty(), "the control plane is tainted");

    // worker2 restarts alone: its pods come back in place, stale; the other nodes' are not.
    world.docker(&["restart", "bookstore-worker2"]).ok();
    world.wait_healthy(BOUND).unwrap();
    let stale: BTreeSet<String> =
        world.pods().into_iter().filter(|p| p.ambient && !p.registered).map(|p| p.node).collect();
    assert_eq!(
        stale,
        ["bookstore-worker2".to_string()].into(),
        "only worker2's pods lost their registration"
    );
    let broken =
        ["ui-service", "ecom-service", "inventory-service", "keycloak"].iter().find(|w| on_w2.contains(**w));
    if let Some(w) = broken {
        let (port, host, path) = match *w {
            "ui-service" => (30000, Some("myecom.net"), "/"),
            "ecom-service" => (30000, Some("myecom.net"), "/ecom/books"),
            "inventory-service" => (30000, Some("myecom.net"), "/inven/health"),
            _ => (30000, Some("idp.keycloak.net"), "/realms/bookstore"),
        };
        let (status, body) = world.get(port, host, path).expect("the gateway answers");
        assert!(status == 503 && body.starts_with(ENVOY_503), "{w} on worker2 answers {status} {body}");
    }

    world.mark();
    let run = Test::new().world(&world).args(["up"]).json().code(0).run();
    // Exactly worker2's ztunnel pod (deleted: its DaemonSet recreates it there) and the workloads
    // with a pod on worker2; the other nodes' ztunnel pods are the same pods.
    let mut expected: BTreeMap<String, usize> = on_w2.iter().map(|w| (w.clone(), 1)).collect();
    expected.insert("ztunnel".into(), 1);
    assert_eq!(world.restarts(), expected, "{}", run.stderr);
    let w2_ztunnel = &before["bookstore-worker2"].0;
    assert_eq!(
        world.pods_deleted(),
        [(format!("istio-system/{w2_ztunnel}"), "DaemonSet/ztunnel".to_string())],
        "one pod deleted: worker2's ztunnel"
    );
    let after = ztunnel_pods(&world);
    for node in ["bookstore-control-plane", "bookstore-worker"] {
        assert_eq!(after[node], before[node], "ztunnel on {node} is the same pod");
    }
    assert_ne!(after["bookstore-worker2"].1, before["bookstore-worker2"].1, "a new ztunnel pod on worker2");
    assert!(
        !world
            .audit()
            .iter()
            .any(|e| e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/daemonsets/")),
        "the DaemonSet was not rolled out"
    );
    assert!(run.stderr.contains("restart ztunnel: its pod"), "{}", run.stderr);
    world.assert_every_route_answers();
    world.assert_recovered();
    world.check();

    // A Docker restart restarts every node: ztunnel on every node first, then every workload,
    // each database Ready before its apps (the guide's order), nothing deleted but ztunnel's pods.
    world.restart_docker();
    world.mark();
    Test::new().world(&world).args(["up"]).json().code(0).run();
    assert_recovery_order(&world.audit());
    let deleted: BTreeSet<String> = world.pods_deleted().into_iter().map(|(pod, _)| pod).collect();
    let ztunnel: BTreeSet<String> =
        ztunnel_pods(&world).values().map(|(pod, _)| pod.clone()).collect::<BTreeSet<_>>();
    assert_eq!(deleted.len(), 3, "one ztunnel pod a node: {deleted:?}");
    assert!(deleted.iter().all(|p| p.starts_with("istio-system/ztunnel-")), "{deleted:?}");
    assert!(deleted.iter().all(|p| !ztunnel.contains(p.trim_start_matches("istio-system/"))));
    world.assert_every_route_answers();
    world.assert_recovered();
    world.check();
}

#[test]
fn a_cluster_config_with_workers_is_bootstrapped_on_every_node() {
    let world = World::start(SimOptions {
        no_cluster: true,
        images: ["bookstore/ecom-service:dev", "bookstore/inventory-service:dev", "bookstore/ui-service:dev"]
            .map(String::from)
            .to_vec(),
        ..World::options()
    });
    // Two workers; the port mappings stay on the control plane, as kind documents.
    world.edit("kind/cluster.yaml", |text| format!("{text}  - role: worker\n  - role: worker\n"));
    world.mark();
    let run = Test::new().world(&world).args(["up"]).json().code(0).run();
    assert!(
        run.stderr.contains("then for its 2 worker node(s) to be Ready): created, every node Ready"),
        "{}",
        run.stderr
    );
    assert_eq!(world.nodes(), ["bookstore-control-plane", "bookstore-worker", "bookstore-worker2"]);
    // Every node Ready before Istio installs, Istio's pods on each, the stack on the workers.
    let audit = world.audit();
    let waited = audit
        .iter()
        .position(|e| e.source == Source::Kube && e.path_only().starts_with("/api/v1/nodes"))
        .expect("the nodes were waited for");
    let istio = audit
        .iter()
        .position(|e| e.source == Source::Standin && e.verb == "istioctl" && e.path.contains("install"))
        .expect("istioctl install ran");
    assert!(waited < istio, "Istio installed before the workers were Ready");
    assert_eq!(ztunnel_pods(&world).len(), 3);
    assert!(workloads_on(&world, "bookstore-control-plane").is_empty());
    assert!(
        !workloads_on(&world, "bookstore-worker").is_empty()
            && !workloads_on(&world, "bookstore-worker2").is_empty()
    );
    world.assert_every_route_answers();
    // (The databases' passwords are generated here, not the kit's: no `check`.) Nothing deleted.
    assert!(!audit.iter().any(|e| e.verb == "DELETE"), "the bootstrap deleted something");
}

/// `watch` follows every node container of the cluster: a worker restarting alone (`docker
/// restart bookstore-worker2`, an OOM kill, a runtime hiccup) is healed on that node only, as `up`
/// heals it: its ztunnel pod replaced, the other nodes' the same pods.
#[test]
fn the_watcher_heals_a_worker_restarted_alone() {
    let world = three_nodes();
    let w = Test::new().world(&world).args(["watch", "--interval", "0"]).json().any_code().spawn();
    w.until_event("the first look", |e| matches!(e, Event::HealFinished { outcome: HealOutcome::Ok, .. }));
    let before = ztunnel_pods(&world);
    world.docker(&["restart", "bookstore-worker2"]).ok();
    w.until_event("the worker's heal", |e| {
        matches!(e, Event::HealFinished { heal: 2, outcome: HealOutcome::Ok, .. })
    });
    world.assert_recovered();
    let after = ztunnel_pods(&world);
    assert_ne!(after["bookstore-worker2"], before["bookstore-worker2"], "worker2's ztunnel pod replaced");
    for node in ["bookstore-control-plane", "bookstore-worker"] {
        assert_eq!(after[node], before[node], "{node}'s ztunnel pod is the same pod");
    }
    w.terminate();
    w.ends_within(BOUND, "SIGTERM").expect(0);
}
