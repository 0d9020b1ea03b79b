//! `recover`, `connectors`, `smoke`, `down` and `completions` end to end on the simulator,
//! through the real `kubectl` and `docker` clients (the fake executables these tests once ran
//! against are gone: every behaviour they faked, the simulator models from the real sources).

use bookstore::event::Event;
use std::collections::BTreeMap;

use bookstore_sim::kit::{HOSTILE, Test, World, assert_recovery_order, leaks_in};
use bookstore_sim::{AuditEntry, Fault, SimOptions, Source};

/// When the audit log first shows an entry.
fn t_of(audit: &[AuditEntry], pred: impl Fn(&AuditEntry) -> bool) -> Option<u64> {
    audit.iter().find(|e| pred(e)).map(|e| e.t_ms)
}

/// One recovery after a Docker restart, read four ways: the guide's order, the flat connector
/// configs with the secret's credentials, the smoke test's Host headers, and the `--json` events.
#[test]
fn recover_follows_the_guides_order_registers_flat_configs_and_reports_json_events() {
    let world = World::broken();
    world.mark();
    let run = Test::new().world(&world).args(["recover"]).json().stderr_has("9 checks pass").run();
    let audit = world.audit();

    // Every kubectl call names the kind context explicitly (the world's checks, below, too).
    let kubectl: Vec<Vec<String>> = world.argv().into_iter().filter(|a| a[0] == "kubectl").collect();
    assert!(!kubectl.is_empty());
    for a in &kubectl {
        assert_eq!(a[1..3], ["--context", "kind-bookstore"], "{a:?}");
    }
    // ztunnel rolled out before any workload restart, one restart each, each database Ready
    // before the apps that need it, nothing deleted.
    assert_recovery_order(&audit);
    // Workloads without a dependency did not wait for the databases.
    let ui = t_of(&audit, |e| e.is_kube_patch_of("deployments", "ui-service")).expect("ui-service restarted");
    let ecom_db = t_of(&audit, |e| e.is_event("rollout-complete", "ecom/ecom-db")).expect("ecom-db Ready");
    assert!(ui < ecom_db, "ui-service waited for ecom-db ({ui} ms ≥ {ecom_db} ms)");

    // Connectors: flat configs, the secret's credentials inline, registered once debezium was
    // Ready.
    let debezium =
        t_of(&audit, |e| e.is_event("rollout-complete", "infra/debezium")).expect("debezium Ready");
    let puts: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| e.source == Source::Connect && e.verb == "PUT" && (200..300).contains(&e.status))
        .collect();
    assert_eq!(puts.len(), 2, "{puts:#?}");
    for put in &puts {
        let body: BTreeMap<String, String> = serde_json::from_str(&put.body).expect("a flat string map");
        assert!(!body.contains_key("config"));
        assert_eq!(body["database.password"], HOSTILE, "the hostile password round-trips byte-exact");
        assert!(["ecomuser", "inventoryuser"].contains(&body["database.user"].as_str()));
        assert!(put.path.ends_with("/config"), "{}", put.path);
        assert!(put.t_ms >= debezium, "{} before debezium was Ready", put.path);
    }
    // The smoke test sent each gateway route's Host header.
    let hosts: Vec<&str> = audit
        .iter()
        .filter(|e| e.source == Source::Http && e.detail.starts_with("port 30000 "))
        .map(|e| e.detail.as_str())
        .collect();
    for host in ["host myecom.net", "host idp.keycloak.net"] {
        assert!(hosts.iter().any(|d| d.ends_with(host)), "{host} not in {hosts:?}");
    }

    // The --json events: one per line on stdout, human progress on stderr.
    let events = run.events();
    assert!(matches!(events.first(), Some(Event::StepStarted { .. })));
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    // ztunnel and the 16 workloads, each restarted (`task_started`) and then Ready.
    assert_eq!(count(|e| matches!(e, Event::WorkloadReady { .. })), 17);
    assert_eq!(count(|e| matches!(e, Event::TaskStarted { .. })), 17 + 2);
    assert_eq!(count(|e| matches!(e, Event::ConnectorRegistered { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::CheckPassed { .. })), 9);
    assert!(run.stderr.contains("✓ ecom-db ready"), "{}", run.stderr);
    assert!(run.stderr.contains("kiali"), "{}", run.stderr);
    // The secret appears in no argv, output or file (and nothing was deleted).
    assert!(leaks_in(format!("{}{}", run.stdout, run.stderr).as_bytes()).is_empty(), "{}", run.stderr);
    world.check();
}

#[test]
fn a_second_run_leaves_unchanged_connectors_alone() {
    // Kafka on a volume: its restart keeps Connect's topics, so the connectors survive.
    // The stack as a first run left it: both connectors stored as the files say.
    let world = World::start(SimOptions { kafka_pvc: true, ..World::options() });
    world.mark();
    world.fault(Fault::Connect409Storm { message: String::new(), count: 2 }); // a rebalance: retried
    Test::new().world(&world).args(["recover"]).run();
    let audit = world.audit();
    let puts: Vec<&String> =
        audit.iter().filter(|e| e.source == Source::Connect && e.verb == "PUT").map(|e| &e.path).collect();
    assert!(puts.is_empty(), "PUT on the second run: {puts:?}");
    let conflicts = audit.iter().filter(|e| e.source == Source::Connect && e.status == 409).count();
    assert_eq!(conflicts, 2, "the 409s were met and retried");
    world.assert_recovered();
}

#[test]
fn phased_restarts_every_database_before_any_app() {
    let world = World::broken();
    world.mark();
    Test::new().world(&world).args(["recover", "--phased", "--settle", "0s"]).run();
    let audit = world.audit();
    let dbs = ["ecom/ecom-db", "inventory/inventory-db", "identity/keycloak-db", "analytics/analytics-db"];
    let last_db = dbs
        .iter()
        .map(|d| t_of(&audit, |e| e.is_event("rollout-complete", d)).unwrap_or_else(|| panic!("{d} Ready")))
        .max()
        .unwrap();
    for e in audit
        .iter()
        .filter(|e| e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/deployments/"))
    {
        let name = e.path_only().rsplit('/').next().unwrap_or("");
        if !dbs.iter().any(|d| d.ends_with(&format!("/{name}"))) {
            assert!(e.t_ms >= last_db, "{name} restarted before every database was Ready");
        }
    }
}

#[test]
fn dry_run_runs_nothing_and_masks_secrets() {
    let world = World::broken();
    world.mark();
    let run = Test::new()
        .world(&world)
        .args(["recover", "--dry-run"])
        .stdout_has("kubectl --context kind-bookstore rollout restart daemonset/ztunnel -n istio-system")
        .stdout_has("-X PUT")
        .run();
    // Nothing but kind's engine probe (`docker -v`: the client's own version, no daemon asked),
    // which says which engine's commands to print.
    let spawned: Vec<Vec<String>> = world.argv().into_iter().filter(|a| a[1..] != ["-v"]).collect();
    assert!(spawned.is_empty(), "the dry run spawned {spawned:?}");
    let reached: Vec<String> = world
        .audit()
        .iter()
        .filter(|e| !matches!(e.source, Source::Controller | Source::Control))
        .map(|e| format!("{:?} {} {}", e.source, e.verb, e.path))
        .collect();
    assert!(reached.is_empty(), "the dry run reached the world: {reached:?}");
    assert!(!run.stdout.contains(HOSTILE));
}

#[test]
fn the_gateways_envoy_503_fails_the_smoke_test_with_its_reason() {
    let world = World::healthy();
    // The pods behind the gateway's four routes lost their mesh registration.
    for workload in ["ui-service", "ecom-service", "inventory-service", "keycloak"] {
        world.fault(Fault::StaleWorkload { workload: workload.into() });
    }
    let run = Test::new()
        .world(&world)
        .args(["smoke", "--timeout", "1s"])
        .code(4)
        .stderr_has("reason: connection termination")
        .stderr_has("ambient")
        .run();
    // All four gateway routes are reported, not only the first.
    for name in ["✗ ui ", "✗ ecom-api ", "✗ inventory-api ", "✗ keycloak "] {
        assert!(run.stderr.contains(name), "{name} missing in {}", run.stderr);
    }
}

#[test]
fn missing_tools_docker_and_cluster_are_prerequisite_errors_that_change_nothing() {
    let world = World::healthy();
    world.docker_stop();
    Test::new().world(&world).args(["recover"]).code(3).stderr_has("Docker is not running").run();

    let world = World::start(SimOptions { no_cluster: true, ..World::options() });
    Test::new().world(&world).args(["recover"]).code(3).stderr_has("no kind cluster named `bookstore`").run();
    // `up` would bootstrap: it checks what a bootstrap needs first (here, our images' build
    // contexts) and creates nothing.
    Test::new().world(&world).args(["up"]).code(3).stderr_has("bootstrap").run();
    assert_eq!(world.writes(), Vec::<String>::new());

    // The simulator's `kind` stand-in lives in its bin folder: leave that folder off PATH.
    let world = World::healthy();
    let real_clients: Vec<String> = ["kubectl", "docker"]
        .iter()
        .map(|t| which::which(t).unwrap().parent().unwrap().display().to_string())
        .collect();
    Test::new()
        .world(&world)
        .args(["recover"])
        .env("PATH", real_clients.join(":"))
        .code(3)
        .stderr_has("`kind` was not found")
        .stderr_has("install kind")
        .run();
    world.assert_nothing_restarted();
}

#[test]
fn an_old_cluster_without_the_newer_port_mappings_is_reported_and_not_touched() {
    let world = World::start(SimOptions { old_cluster: true, ..World::options() });
    Test::new()
        .world(&world)
        .args(["recover"])
        .code(3)
        .stderr_has("32100, 32200, 32300")
        .stderr_has("bookstore down && bookstore up")
        .run();
    world.assert_nothing_restarted();
}

#[test]
fn a_missing_secret_key_fails_before_any_workload_restart() {
    let world = World::broken();
    world.fault(Fault::RemoveSecretKey { key: "INVENTORY_DB_PASSWORD".into() });
    world.mark();
    Test::new().world(&world).args(["recover"]).code(3).stderr_has("INVENTORY_DB_PASSWORD").run();
    let deployments: Vec<String> =
        world.patches().into_iter().filter(|p| p.contains("/deployments/")).collect();
    assert!(deployments.is_empty(), "{deployments:?}");
}

#[test]
fn wrong_credentials_fail_with_connects_message_and_no_secret_in_it() {
    let world = World::healthy();
    // Connect has lost them (as when Kafka loses its topics): they are registered again.
    for name in ["ecom-connector", "inventory-connector"] {
        let deleted = bookstore_sim::kit::http(
            world.host_port(32300),
            "DELETE",
            "localhost",
            &format!("/connectors/{name}"),
            None,
        );
        assert!(deleted.is_ok_and(|(s, _, _)| s == 204), "DELETE {name}");
    }
    // The database's own Secret says it accepts another password than the connector secret's.
    world
        .apply(
            r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ecom-db-credentials", "namespace": "ecom"},
                "stringData": {"POSTGRES_USER": "ecomuser", "POSTGRES_PASSWORD": "the-real-one"}}"#,
        )
        .ok();
    let run = Test::new()
        .world(&world)
        .args(["connectors"])
        .code(1)
        .stderr_has("password authentication failed")
        .run();
    assert!(leaks_in(run.stderr.as_bytes()).is_empty(), "{}", run.stderr);
}

#[test]
fn bad_input_is_a_usage_error_that_runs_nothing() {
    let world = World::healthy();
    world.mark();
    let file = world.infra("debezium/connectors/ecom-connector.json");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, "{ not json").unwrap();
    Test::new().world(&world).args(["recover"]).code(2).stderr_has("ecom-connector.json").run();
    std::fs::write(&file, good).unwrap();

    world.edit("stack.yaml", |s| s.replace("needs: [kafka]", "needs: [debezium]"));
    Test::new()
        .world(&world)
        .args(["recover"])
        .code(2)
        .stderr_has("dependency cycle: debezium → debezium")
        .run();
    assert!(world.argv().is_empty(), "bad input ran {:?}", world.argv());
    assert_eq!(world.touched(), Vec::<String>::new(), "bad input reached the world");
}

#[test]
fn a_context_missing_from_the_kubeconfig_is_named_with_the_fix() {
    let world = World::broken();
    let kubeconfig = std::fs::read_to_string(world.kubeconfig_path()).unwrap();
    std::fs::write(world.kubeconfig_path(), kubeconfig.replace("kind-bookstore", "kind-other")).unwrap();
    world.mark();
    Test::new()
        .world(&world)
        .args(["recover"])
        .code(3)
        .stderr_has("kind export kubeconfig --name bookstore")
        .run();
    world.assert_nothing_restarted();
}

#[test]
fn down_needs_confirmation_off_a_terminal() {
    let world = World::healthy();
    let deleted = || {
        world.audit().iter().any(|e| {
            e.source == Source::Standin && e.verb == "kind" && e.path == "delete cluster --name bookstore"
        })
    };
    Test::new().world(&world).args(["down"]).code(2).stderr_has("--yes").run();
    assert!(!deleted(), "down deleted the cluster without --yes");
    Test::new().world(&world).args(["down", "--yes"]).run();
    assert!(deleted(), "down --yes did not run `kind delete cluster --name bookstore`");
}

#[test]
#[ignore = "prints a transcript: cargo test --test integration transcript -- --ignored --nocapture"]
fn transcript() {
    let world = World::broken();
    let run = Test::new().world(&world).args(["recover"]).any_code().run();
    eprintln!("{}", run.stderr);
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        Test::new().args(["completions", shell]).stdout_has("recover").run();
    }
}
