//! The binary end to end against fake `kind`/`kubectl`/`docker` and loopback HTTP stand-ins.

use std::collections::BTreeMap;

use bookstore::event::{Event, Stamped};
use serde_json::{Value, json};

use crate::harness::{HOSTILE, World};

/// When each deployment was restarted (by the fake's clock).
fn restart_times(world: &World) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    // The fake records each restart's targets ("<ns>/<kind>/<name>"), from argv or stdin.
    for c in world.calls().iter().filter(|c| c["event"] == "restart") {
        for target in c["targets"].as_array().unwrap() {
            if let Some((_, name)) = target.as_str().unwrap().split_once("/deployment/") {
                out.insert(name.to_string(), c["t"].as_f64().unwrap());
            }
        }
    }
    out
}

#[test]
fn recover_follows_the_guides_order_and_registers_flat_configs_with_the_secrets_credentials() {
    let world = World::new();
    let run = world.run(&["recover"]);
    run.expect(0);

    // Every kubectl call names the kind context explicitly.
    for line in world.argv_lines().iter().filter(|l| l.starts_with("kubectl")) {
        assert!(line.starts_with("kubectl --context kind-bookstore "), "{line}");
    }
    // ztunnel restarted and rolled out before any workload restart.
    let calls = world.calls();
    let ztunnel_done = calls
        .iter()
        .find(|c| c["event"] == "rolled-out")
        .map(|c| c["t"].as_f64().unwrap())
        .expect("ztunnel rollout status");
    let restarts = restart_times(&world);
    assert_eq!(restarts.len(), 16, "{restarts:?}");
    for (name, t) in &restarts {
        assert!(*t > ztunnel_done, "{name} restarted before ztunnel rolled out");
    }
    // Each app restarted only after what it needs was Ready (restart + its latency in the fake).
    for (app, db, latency) in
        [("ecom-service", "ecom-db", 0.3), ("keycloak", "keycloak-db", 0.2), ("debezium", "kafka", 0.2)]
    {
        assert!(restarts[app] >= restarts[db] + latency, "{app} restarted before {db} was Ready");
    }
    // Workloads without a dependency did not wait for the databases.
    assert!(restarts["ui-service"] < restarts["ecom-db"] + 0.3);

    // Connectors: flat configs, the secret's credentials inline, registered after debezium.
    let http = world.http.lock().unwrap();
    let puts: Vec<_> = http.requests.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 2);
    for put in &puts {
        let body: BTreeMap<String, String> = serde_json::from_str(&put.body).expect("a flat string map");
        assert!(!body.contains_key("config"));
        assert_eq!(body["database.password"], HOSTILE, "the hostile password round-trips byte-exact");
        assert!(["ecomuser", "invuser"].contains(&body["database.user"].as_str()));
        assert!(put.path.ends_with("/config"));
    }
    // The secret appears in no argv and no output.
    for line in world.argv_lines() {
        assert!(!line.contains(HOSTILE), "secret in argv: {line}");
    }
    assert!(
        bookstore_sim::kit::leaks_in(format!("{}{}", run.stdout, run.stderr).as_bytes()).is_empty(),
        "{}",
        run.stderr
    );
    // Smoke test ran against every route.
    assert!(run.stderr.contains("kiali") && run.stderr.contains("9 checks pass"), "{}", run.stderr);
}

#[test]
fn a_second_run_leaves_unchanged_connectors_alone() {
    let world = World::new();
    world.run(&["recover"]).expect(0);
    world.http.lock().unwrap().conflicts = 2; // a rebalance in progress: retried
    world.run(&["recover"]).expect(0);
    let puts = world.http.lock().unwrap().requests.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 2, "no PUT on the second run");
}

#[test]
fn phased_restarts_every_database_before_any_app() {
    let world = World::new();
    world.run(&["recover", "--phased", "--settle", "0s"]).expect(0);
    let restarts = restart_times(&world);
    let dbs = ["ecom-db", "inventory-db", "keycloak-db", "analytics-db"];
    let last_db = dbs.iter().map(|d| restarts[*d]).fold(0.0, f64::max);
    for (name, t) in &restarts {
        if !dbs.contains(&name.as_str()) {
            assert!(*t >= last_db + 0.3, "{name} restarted before ecom-db (0.3s) was Ready");
        }
    }
}

#[test]
fn dry_run_runs_nothing_and_masks_secrets() {
    let world = World::new();
    let run = world.run(&["recover", "--dry-run"]);
    run.expect(0);
    assert!(world.calls().is_empty(), "dry run spawned {:?}", world.argv_lines());
    assert!(world.http.lock().unwrap().requests.is_empty());
    assert!(
        run.stdout
            .contains("kubectl --context kind-bookstore rollout restart daemonset/ztunnel -n istio-system")
    );
    assert!(run.stdout.contains("-X PUT"));
    assert!(!run.stdout.contains(HOSTILE));
}

#[test]
fn the_gateways_envoy_503_fails_the_smoke_test_with_its_reason() {
    let world = World::new();
    world.http.lock().unwrap().gateway_503 = true;
    let run = world.run(&["smoke", "--timeout", "1s"]);
    run.expect(4);
    assert!(run.stderr.contains("reason: connection termination"), "{}", run.stderr);
    assert!(run.stderr.contains("ambient"), "{}", run.stderr);
    // All four gateway routes are reported, not only the first.
    for name in ["✗ ui ", "✗ ecom-api ", "✗ inventory-api ", "✗ keycloak "] {
        assert!(run.stderr.contains(name), "{name} missing in {}", run.stderr);
    }
}

#[test]
fn missing_tools_docker_and_cluster_are_prerequisite_errors_that_change_nothing() {
    let mut world = World::new();
    world.set("docker_down", json!(true));
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(run.stderr.contains("Docker is not running"), "{}", run.stderr);

    let mut world = World::new();
    world.set("clusters", json!([]));
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(run.stderr.contains("no kind cluster named `bookstore`"), "{}", run.stderr);
    let run = world.run(&["up"]);
    run.expect(3);
    assert!(run.stderr.contains("bootstrap"), "{}", run.stderr);
    assert!(world.restarts().is_empty());

    let world = World::new();
    std::fs::remove_file(world.dir.path().join("bin/kind")).unwrap();
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(
        run.stderr.contains("`kind` was not found") && run.stderr.contains("install kind"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_old_cluster_without_the_newer_port_mappings_is_reported_and_not_touched() {
    let mut world = World::new();
    let ports: Vec<Value> =
        world.ports.iter().filter(|(c, _)| **c < 32100).map(|(c, h)| json!([c, h])).collect();
    world.set("node", json!({"running": true, "ports": ports}));
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(
        run.stderr.contains("32100, 32200, 32300") && run.stderr.contains("bookstore down && bookstore up"),
        "{}",
        run.stderr
    );
    assert!(world.restarts().is_empty());
}

#[test]
fn legacy_proxy_containers_are_removed() {
    let mut world = World::new();
    world.set("proxies", json!(["kiali-proxy", "debezium-proxy"]));
    let run = world.run(&["recover"]);
    run.expect(0);
    assert!(
        world.argv_lines().contains(&"docker rm -f debezium-proxy kiali-proxy".to_string()),
        "{:?}",
        world.argv_lines()
    );
    assert!(run.stderr.contains("legacy socat proxy"));
}

#[test]
fn a_missing_secret_key_fails_before_any_workload_restart() {
    let mut world = World::new();
    world.set(
        "secret",
        json!({"ECOM_DB_USER": "ecomuser", "ECOM_DB_PASSWORD": "x", "INVENTORY_DB_USER": "invuser"}),
    );
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(run.stderr.contains("INVENTORY_DB_PASSWORD"), "{}", run.stderr);
    assert!(world.restart_lines_for_deployments().is_empty());
}

#[test]
fn wrong_credentials_fail_with_connects_message_and_no_secret_in_it() {
    let world = World::new();
    world.http.lock().unwrap().db_password = "the-real-one".into();
    let run = world.run(&["connectors"]);
    run.expect(1);
    assert!(run.stderr.contains("password authentication failed"), "{}", run.stderr);
    assert!(bookstore_sim::kit::leaks_in(run.stderr.as_bytes()).is_empty(), "{}", run.stderr);
}

#[test]
fn a_rollout_that_never_completes_times_out_naming_the_workload() {
    let mut world = World::new();
    world.set("never_ready", json!(["keycloak"]));
    let run = world.run(&["recover"]);
    run.expect(124);
    assert!(run.stderr.contains("identity/keycloak"), "{}", run.stderr);
    assert!(run.stderr.contains("kubectl --context kind-bookstore -n identity"), "{}", run.stderr);
}

#[test]
fn bad_input_is_a_usage_error_that_runs_nothing() {
    let world = World::new();
    let file = world.dir.path().join("infra/debezium/connectors/ecom-connector.json");
    std::fs::write(&file, "{ not json").unwrap();
    let run = world.run(&["recover"]);
    run.expect(2);
    assert!(run.stderr.contains("ecom-connector.json"), "{}", run.stderr);
    assert!(world.calls().is_empty());

    let world = World::new();
    let stack = world.stack();
    let text = std::fs::read_to_string(&stack).unwrap().replace("needs: [kafka]", "needs: [debezium]");
    std::fs::write(&stack, text).unwrap();
    let run = world.run(&["recover"]);
    run.expect(2);
    assert!(run.stderr.contains("dependency cycle: debezium → debezium"), "{}", run.stderr);
}

#[test]
fn a_context_missing_from_the_kubeconfig_is_named_with_the_fix() {
    let mut world = World::new();
    world.set("context", json!("kind-other"));
    let run = world.run(&["recover"]);
    run.expect(3);
    assert!(run.stderr.contains("kind export kubeconfig --name bookstore"), "{}", run.stderr);
    assert!(world.restarts().is_empty());
}

#[test]
fn down_needs_confirmation_off_a_terminal() {
    let world = World::new();
    let run = world.run(&["down"]);
    run.expect(2);
    assert!(run.stderr.contains("--yes"));
    assert!(!world.argv_lines().iter().any(|l| l.starts_with("kind delete")));
    world.run(&["down", "--yes"]).expect(0);
    assert!(world.argv_lines().contains(&"kind delete cluster --name bookstore".to_string()));
}

impl World {
    fn restart_lines_for_deployments(&self) -> Vec<String> {
        self.restarts().into_iter().filter(|l| l.contains("deployment/")).collect()
    }
}

#[test]
fn gateway_checks_send_the_routes_host_header() {
    let world = World::new();
    world.run(&["recover"]).expect(0);
    let http = world.http.lock().unwrap();
    let hosts: Vec<(&str, &str)> = http
        .requests
        .iter()
        .filter(|r| r.port == 30000)
        .map(|r| (r.path.as_str(), r.host.as_str()))
        .collect();
    assert!(hosts.contains(&("/", "myecom.net")), "{hosts:?}");
    assert!(hosts.contains(&("/realms/bookstore", "idp.keycloak.net")), "{hosts:?}");
}

#[test]
#[ignore = "prints a transcript: cargo test --test integration transcript -- --ignored --nocapture"]
fn transcript() {
    let world = World::new();
    let run = world.run(&["recover"]);
    eprintln!("{}", run.stderr);
}

#[test]
fn a_second_run_on_the_same_cluster_says_who_holds_the_lock() {
    let mut world = World::new();
    world.set("never_ready", json!(["keycloak"]));
    let mut first = world.command(&["recover"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let second = world.run(&["connectors"]);
    second.expect(5);
    assert!(second.stderr.contains("running `bookstore recover`"), "{}", second.stderr);
    assert_eq!(first.wait().unwrap().code(), Some(124));
    // The lock is released with the process: the next run goes ahead.
    world.set("never_ready", json!([]));
    world.run(&["connectors"]).expect(0);
}

#[test]
fn json_events_go_to_stdout_one_per_line() {
    let world = World::new();
    let run = world.run(&["recover", "--json"]);
    run.expect(0);
    let events: Vec<Event> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Stamped>(l).expect("one event a line").event)
        .collect();
    assert!(matches!(events.first(), Some(Event::StepStarted { .. })));
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    // ztunnel and the 16 workloads, each restarted (`task_started`) and then Ready.
    assert_eq!(count(|e| matches!(e, Event::WorkloadReady { .. })), 17);
    assert_eq!(count(|e| matches!(e, Event::TaskStarted { .. })), 17 + 2);
    assert_eq!(count(|e| matches!(e, Event::ConnectorRegistered { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::CheckPassed { .. })), 9);
    assert!(matches!(events.last(), Some(Event::Summary { exit_code: 0, .. })), "{}", run.stdout);
    assert!(!run.stdout.contains(HOSTILE));
    // Human progress is still on stderr.
    assert!(run.stderr.contains("✓ ecom-db ready"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    let world = World::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = world.run(&["completions", shell]);
        run.expect(0);
        assert!(run.stdout.contains("recover"), "{shell}");
    }
}
