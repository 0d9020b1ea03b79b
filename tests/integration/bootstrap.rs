//! `bookstore up` on a machine with no cluster: the full bootstrap, on the simulator, through the
//! real kubectl and docker clients (and the kind/istioctl stand-ins).

use std::time::Duration;

use base64::Engine;
use bookstore_sim::kit::{Test, World, eventually};
use bookstore_sim::{AuditEntry, Sim, SimOptions, Source};

const APP_IMAGES: [&str; 3] =
    ["bookstore/ecom-service:dev", "bookstore/inventory-service:dev", "bookstore/ui-service:dev"];

/// An empty machine: Docker runs, no kind cluster, our three images already built.
pub(crate) fn empty_machine(images: bool) -> World {
    let opts = SimOptions {
        time_scale: 0.05,
        no_cluster: true,
        images: if images { APP_IMAGES.iter().map(|s| s.to_string()).collect() } else { vec![] },
        ..SimOptions::default()
    };
    // The stack's Gateway API URL points at the simulator, which serves the real release file.
    World::start(opts)
}

/// The stack's Gateway API CRDs as a file next to it (sent to kubectl on stdin), not a URL.
fn with_local_crds(sim: World) -> World {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sim/fixtures/gateway-api-v1.4.1-standard-install.yaml");
    std::fs::copy(fixture, sim.dir().join("infra/gateway-api-crds.yaml")).unwrap();
    let stack = std::fs::read_to_string(sim.stack_path()).unwrap();
    let line =
        stack.lines().find(|l| l.trim_start().starts_with("crds: http")).expect("the crds line").to_string();
    std::fs::write(sim.stack_path(), stack.replace(&line, "    crds: gateway-api-crds.yaml")).unwrap();
    sim
}

/// Istio (istiod, istio-cni, ztunnel) rolled out before the first pod of an ambient namespace
/// started, and every workload's `needs` rolled out before its first pod did.
fn the_hard_rules_held(sim: &Sim, audit: &[AuditEntry]) {
    let at = |verb: &str, subject: &str| audit.iter().position(|e| e.is_event(verb, subject));
    // A Deployment's pod is `<deployment>-<template hash>-<suffix>`.
    let first_pod = |ns: &str, deployment: &str| {
        audit.iter().position(|e| {
            e.source == Source::Controller
                && e.verb == "pod-started"
                && e.path.strip_prefix(&format!("{ns}/")).is_some_and(|pod| {
                    deployment.is_empty() || pod.rsplitn(3, '-').nth(2) == Some(deployment)
                })
        })
    };
    let istio = ["istiod", "istio-cni-node", "ztunnel"].map(|n| {
        at("rollout-complete", &format!("istio-system/{n}")).unwrap_or_else(|| panic!("{n} never rolled out"))
    });
    let stack = bookstore_sim::config::Infra::load(&sim.dir().join("infra")).unwrap().stack;
    for ns in ["ecom", "inventory", "identity", "analytics", "infra", "observability"] {
        let first = first_pod(ns, "").unwrap_or_else(|| panic!("no pod in {ns}"));
        assert!(istio.iter().all(|i| *i < first), "a pod of {ns} started before Istio was Ready");
    }
    for w in &stack.workloads {
        let first = first_pod(&w.namespace, &w.name).unwrap_or_else(|| panic!("{} never started", w.name));
        for need in &w.needs {
            let n = stack.workloads.iter().find(|x| &x.name == need).unwrap();
            let ready = at("rollout-complete", &format!("{}/{}", n.namespace, n.name))
                .unwrap_or_else(|| panic!("{need} never rolled out"));
            assert!(ready < first, "{} started before {need} was Ready", w.name);
        }
    }
}

fn secret_value(sim: &Sim, ns: &str, name: &str, key: &str) -> String {
    let out = sim
        .command("kubectl")
        .args(["--context", "kind-bookstore", "get", "secret", name, "-n", ns, "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let encoded = doc["data"][key].as_str().unwrap_or_else(|| panic!("{ns}/{name} has no {key}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

fn get(sim: &World, container_port: u16, host: Option<&str>, path: &str) -> Option<u16> {
    sim.get(container_port, host, path).map(|(status, _)| status)
}

#[test]
fn up_on_an_empty_machine_builds_the_whole_stack_and_a_second_up_recovers_it() {
    let sim = empty_machine(true);
    let plan = Test::new().world(&sim).args(["up", "--dry-run"]).code(0).run();
    // The Gateway API's Gateway by its full name (Istio serves a `gateway` kind too).
    assert!(
        plan.stdout.contains("wait --for=condition=Programmed gateways.gateway.networking.k8s.io/"),
        "{}",
        plan.stdout
    );
    let run = Test::new().world(&sim).args(["up"]).code(0).run();
    eprintln!("{}", run.stderr);
    for step in [
        "Creating kind cluster bookstore",
        "the Gateway API CRDs established",
        "Istio ready: deployment/istiod, daemonset/istio-cni-node, daemonset/ztunnel",
        "Bootstrapping 16 workloads on the dependency graph",
        "keycloak ready",
        "Smoke-testing every route",
    ] {
        assert!(run.stderr.contains(step), "{step} missing in\n{}", run.stderr);
    }
    // What released keycloak last: its database, or its image (loads go one at a time).
    let keycloak = run.stderr.lines().find(|l| l.contains("keycloak ready (")).unwrap();
    assert!(
        keycloak.contains("applied once keycloak-db was done")
            || keycloak.contains("applied once quay.io/keycloak/keycloak:26.0.7 was done"),
        "{keycloak}"
    );
    // Every route answers; both connectors run with the credentials generated on this machine.
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
    assert_eq!(get(&sim, 30000, Some("idp.keycloak.net"), "/realms/bookstore"), Some(200));
    assert_eq!(get(&sim, 32200, None, "/overview"), Some(200));
    let password = secret_value(&sim, "ecom", "ecom-db-credentials", "POSTGRES_PASSWORD");
    assert_eq!(password.len(), 32);
    assert_eq!(secret_value(&sim, "infra", "debezium-db-credentials", "ECOM_DB_PASSWORD"), password);
    let connectors = sim.connectors();
    assert_eq!(connectors["ecom-connector"]["database.password"], password);
    // No generated secret in any argv (stand-ins record theirs), any request path, or the output.
    let audit = sim.audit();
    for e in &audit {
        assert!(!(e.source == Source::Standin && e.body.contains(&password)), "secret in argv: {}", e.path);
        assert!(!e.path.contains(&password));
    }
    assert!(!run.stderr.contains(&password) && !run.stdout.contains(&password));
    // Secrets went to the API server as a request body (kubectl's stdin), with stringData.
    assert!(audit.iter().any(|e| e.source == Source::Kube
        && e.verb == "PATCH"
        && e.path.contains("/secrets/ecom-db-credentials")));

    // The CRDs are the real v1.4.1 release file, fetched by kubectl from the stack's URL and
    // applied server-side (no last-applied annotation: the HTTPRoute CRD alone is ~200 KB).
    let crd_applies: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| {
            e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/customresourcedefinitions/")
        })
        .collect();
    assert_eq!(crd_applies.len(), 6, "one server-side apply per CRD of the standard channel");
    let httproutes = crd_applies
        .iter()
        .find(|e| e.path.contains("/httproutes.gateway.networking.k8s.io"))
        .expect("the HTTPRoute CRD");
    assert!(httproutes.content_type.as_deref().is_some_and(|c| c.contains("apply-patch")));
    assert!(httproutes.body.len() > 150_000, "{} bytes", httproutes.body.len());
    assert!(httproutes.body.contains("\"gateway.networking.k8s.io/bundle-version\":\"v1.4.1\""));
    assert!(!httproutes.body.contains("last-applied-configuration"));

    // The classic image store: kind's own load, of what is on the host (ours among the first).
    let loads = kind_loads(&sim);
    assert!(loads.iter().all(|l| l.starts_with("load docker-image ")), "{loads:?}");
    assert!(APP_IMAGES.iter().all(|i| loads.iter().any(|l| l.contains(i))), "{loads:?}");
    the_hard_rules_held(&sim, &audit);
    // Istio's (distroless) images in the node before its pods, loaded first and alone (issue 23).
    crate::images::the_images_held(&sim, &run.stderr, "cold");

    // A second `up` finds the stack complete and healthy (every pod created after ztunnel was
    // Ready): nothing is restarted, and the secrets are kept.
    let before = sim.audit().len();
    let again = Test::new().world(&sim).args(["up"]).code(0).run();
    assert!(again.stderr.contains("Stack healthy: nothing to restart"), "{}", again.stderr);
    let writes: Vec<String> = sim.audit()[before..]
        .iter()
        .filter(|e| e.source == Source::Kube && e.verb != "GET")
        .map(|e| format!("{} {}", e.verb, e.path))
        .collect();
    assert!(writes.is_empty(), "a second up on a fresh stack changed {writes:?}");
    assert_eq!(secret_value(&sim, "ecom", "ecom-db-credentials", "POSTGRES_PASSWORD"), password);
}

#[test]
fn a_bootstrap_interrupted_after_istio_converges_on_the_next_up() {
    let sim = with_local_crds(empty_machine(true));
    let child = Test::new().world(&sim).args(["up"]).code(130).spawn();
    let installed = |a: &[AuditEntry]| {
        a.iter().any(|e| e.source == Source::Standin && e.verb == "istioctl" && e.path.starts_with("install"))
    };
    sim.wait_for(Duration::from_secs(60), "istioctl install", |w| installed(&w.audit)).unwrap();
    // Ctrl-C right after the Istio step.
    child.interrupt();
    child.wait();

    let run = Test::new().world(&sim).args(["up"]).code(0).run();
    assert!(run.stderr.contains("resuming the bootstrap"), "{}", run.stderr);
    assert!(!run.stderr.contains("Creating kind cluster"), "{}", run.stderr);
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
}

#[test]
fn a_taken_host_port_stops_the_bootstrap_before_anything_is_created() {
    let sim = empty_machine(true);
    // The simulator lets go of the ports of a cluster that does not exist yet just after start.
    let port = sim.host_port(32300);
    let taken = eventually(Duration::from_secs(5), &format!("port {port} to be free to take"), || {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    });
    let run = Test::new().world(&sim).args(["up"]).code(3).run();
    assert!(run.stderr.contains(&format!("host port {}", sim.host_port(32300))), "{}", run.stderr);
    assert!(run.stderr.contains("node port 32300"), "{}", run.stderr);
    assert!(
        !sim.audit()
            .iter()
            .any(|e| e.source == Source::Standin && e.verb == "kind" && e.path.starts_with("create"))
    );
    drop(taken);
}

#[test]
fn a_missing_build_context_is_a_preflight_error() {
    let sim = empty_machine(false);
    let run = Test::new().world(&sim).args(["up"]).code(3).run();
    assert!(run.stderr.contains("BOOKSTORE_ECOM_SERVICE_CONTEXT"), "{}", run.stderr);
    assert!(
        !sim.audit()
            .iter()
            .any(|e| e.source == Source::Standin && e.verb == "kind" && e.path.starts_with("create"))
    );
}

/// The kind stand-in's loads, as argv lines.
fn kind_loads(sim: &Sim) -> Vec<String> {
    sim.audit()
        .iter()
        .filter(|e| e.source == Source::Standin && e.verb == "kind" && e.path.starts_with("load"))
        .map(|e| e.path.clone())
        .collect()
}

fn containerd_machine(api: &str) -> World {
    let opts = SimOptions {
        time_scale: 0.05,
        no_cluster: true,
        containerd_store: true,
        docker_api_version: api.into(),
        images: APP_IMAGES.iter().map(|s| s.to_string()).collect(),
        ..SimOptions::default()
    };
    with_local_crds(World::start(opts))
}

/// Docker's containerd image store with locally built (attested) images: kind's own load fails
/// there (`ctr: content digest sha256:…: not found`, the simulator's client tests show it), so
/// the images go as one archive of the node's platform.
#[test]
fn with_the_containerd_image_store_images_are_saved_for_the_nodes_platform() {
    let sim = containerd_machine("1.50");
    Test::new().world(&sim).args(["up"]).code(0).run();
    let loads = kind_loads(&sim);
    assert!(!loads.is_empty() && loads.iter().all(|l| l.starts_with("load image-archive ")), "{loads:?}");
    let saves: Vec<String> = sim
        .audit()
        .into_iter()
        .filter(|e| e.source == Source::Docker && e.path.contains("/images/get"))
        .map(|e| e.path)
        .collect();
    for save in &saves {
        for (part, what) in [("%22os%22%3A%22linux%22", "os"), ("%22architecture%22%3A%22amd64%22", "arch")] {
            assert!(save.contains(part), "the node's {what} in {save}");
        }
    }
    for image in APP_IMAGES {
        let name = image.replace('/', "%2F").replace(':', "%3A");
        assert!(saves.iter().any(|s| s.contains(&name)), "{image} not saved: {saves:?}");
    }
    sim.wait_for(Duration::from_secs(1), "our images in the node", |w| {
        APP_IMAGES.iter().all(|i| w.node_images.contains(&format!("docker.io/{i}")))
    })
    .unwrap();
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
    // Pulled images are indexes of every platform there too: they go the same way.
    sim.wait_for(Duration::from_secs(1), "a pulled image in the node", |w| {
        w.node_images.contains("docker.io/library/postgres:16.9-alpine")
    })
    .unwrap();
}

/// Docker 27 (API 1.47) cannot save one platform, and kind cannot import the attested image:
/// the failing command, kind's error and what to do.
#[test]
fn an_old_docker_with_the_containerd_store_says_how_to_load_the_images() {
    let sim = containerd_machine("1.47");
    let run = Test::new().world(&sim).args(["up"]).code(1).run();
    assert!(run.stderr.contains("the node's kubelet pulls the"), "{}", run.stderr);
    assert!(run.stderr.contains("kind load docker-image bookstore/"), "{}", run.stderr);
    assert!(run.stderr.contains("ctr: content digest sha256:"), "{}", run.stderr);
    assert!(run.stderr.contains("Upgrade Docker to 28"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "docker build --provenance=false -t bookstore/ecom-service:dev $BOOKSTORE_ECOM_SERVICE_CONTEXT"
        ),
        "{}",
        run.stderr
    );
}

/// The images start before the cluster exists, slowest chains first, and a `down` then `up`
/// downloads nothing the host already has.
#[test]
fn images_are_fetched_from_the_start_and_not_again_after_down() {
    let sim = empty_machine(true);
    Test::new().world(&sim).args(["up"]).code(0).run();
    let audit = sim.audit();
    let pulls: Vec<&AuditEntry> =
        audit.iter().filter(|e| e.source == Source::Docker && e.path.contains("/images/create")).collect();
    let created = audit.iter().position(|e| e.verb == "cluster-created").expect("the cluster created");
    // A pull's request is audited when it answers: one was done before the cluster was.
    let first_pull =
        audit.iter().position(|e| e.source == Source::Docker && e.path.contains("/images/create"));
    assert!(first_pull.is_some_and(|p| p < created), "no pull while kind created the cluster");
    assert!(pulls[0].path.contains("istio"), "Istio's images first: {}", pulls[0].path);
    assert!(pulls.len() >= 10, "{} pulls", pulls.len());
    let since = audit.len();

    Test::new().world(&sim).args(["down", "--yes"]).code(0).run();
    Test::new().world(&sim).args(["up"]).code(0).run();
    let again = sim.audit().split_off(since);
    assert!(
        !again.iter().any(|e| e.source == Source::Docker && e.path.contains("/images/create")),
        "pulled again after down"
    );
    assert!(!again.iter().any(|e| e.is_event("image-pulled", "docker.io/library/postgres:16.9-alpine")));
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
}

/// `up --dry-run` shows the graph: what waits for what.
#[test]
fn the_dry_run_shows_the_graph() {
    let sim = empty_machine(true);
    let run = Test::new().world(&sim).args(["up", "--dry-run"]).code(0).run();
    for line in [
        "# Istio: once image docker.io/istio/",
        "# keycloak: once keycloak-db, the Secrets, Istio, image quay.io/keycloak/keycloak:26.0.7 done",
        "# ecom-connector: once ecom-db, debezium done",
        "docker pull -q postgres:16.9-alpine",
    ] {
        assert!(run.stdout.contains(line), "{line} missing in\n{}", run.stdout);
    }
    assert!(!sim.audit().iter().any(|e| e.is_write()), "the dry run changed something");
}

/// `up --tiers` keeps the bootstrap before the graph reachable: tier by tier.
#[test]
fn up_tiers_bootstraps_tier_by_tier() {
    let sim = empty_machine(true);
    let run = Test::new().world(&sim).args(["up", "--tiers"]).code(0).run();
    for step in ["Installing Istio ambient", "Applying k8s/10-databases", "Applying k8s/60-gateway"] {
        assert!(run.stderr.contains(step), "{step} missing in\n{}", run.stderr);
    }
    assert_eq!(get(&sim, 30000, Some("idp.keycloak.net"), "/realms/bookstore"), Some(200));
}
