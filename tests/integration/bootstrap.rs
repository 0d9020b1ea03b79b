//! `bookstore up` on a machine with no cluster: the full bootstrap, on the simulator, through the
//! real kubectl and docker clients (and the kind/istioctl stand-ins).

use std::time::Duration;

use base64::Engine;
use bookstore_sim::{AuditEntry, Sim, SimOptions, Source};

use crate::harness::BIN;
use crate::simkit::bookstore;

const APP_IMAGES: [&str; 3] =
    ["bookstore/ecom-service:dev", "bookstore/inventory-service:dev", "bookstore/ui-service:dev"];

/// An empty machine: Docker runs, no kind cluster, our three images already built.
fn empty_machine(images: bool) -> Sim {
    let opts = SimOptions {
        time_scale: 0.05,
        no_cluster: true,
        images: if images { APP_IMAGES.iter().map(|s| s.to_string()).collect() } else { vec![] },
        ..SimOptions::default()
    };
    // The stack's Gateway API URL points at the simulator, which serves the real release file.
    Sim::start(opts).expect("simulator starts")
}

/// The stack's Gateway API CRDs as a file next to it (sent to kubectl on stdin), not a URL.
fn with_local_crds(sim: Sim) -> Sim {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sim/fixtures/gateway-api-v1.4.1-standard-install.yaml");
    std::fs::copy(fixture, sim.dir().join("infra/gateway-api-crds.yaml")).unwrap();
    let stack = std::fs::read_to_string(sim.stack_path()).unwrap();
    let line =
        stack.lines().find(|l| l.trim_start().starts_with("crds: http")).expect("the crds line").to_string();
    std::fs::write(sim.stack_path(), stack.replace(&line, "    crds: gateway-api-crds.yaml")).unwrap();
    sim
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

fn get(sim: &Sim, container_port: u16, host: Option<&str>, path: &str) -> Option<u16> {
    crate::simkit::get_as(sim, container_port, host, path).map(|(status, _)| status)
}

#[test]
fn up_on_an_empty_machine_builds_the_whole_stack_and_a_second_up_recovers_it() {
    let sim = empty_machine(true);
    let plan = bookstore(&sim, &["up", "--dry-run"]);
    plan.expect(0);
    // The Gateway API's Gateway by its full name (Istio serves a `gateway` kind too).
    assert!(
        plan.stdout.contains("wait --for=condition=Programmed gateways.gateway.networking.k8s.io/"),
        "{}",
        plan.stdout
    );
    let run = bookstore(&sim, &["up"]);
    run.expect(0);
    eprintln!("{}", run.stderr);
    for step in [
        "Creating kind cluster bookstore",
        "Installing the Gateway API CRDs",
        "Installing Istio ambient",
        "Applying k8s/60-gateway",
        "Smoke-testing every route",
    ] {
        assert!(run.stderr.contains(step), "{step} missing in\n{}", run.stderr);
    }
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

    // The classic image store: kind's own load, all three images in one command.
    let loads = kind_loads(&sim);
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert!(loads[0].starts_with(&format!("load docker-image {}", APP_IMAGES.join(" "))), "{loads:?}");

    // A second `up` finds the stack complete and healthy (every pod created after ztunnel was
    // Ready): nothing is restarted, and the secrets are kept.
    let before = sim.audit().len();
    let again = bookstore(&sim, &["up"]);
    again.expect(0);
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
    let mut cmd = sim.command(BIN);
    cmd.args(["up", "--stack"]).arg(sim.stack_path()).env("NO_COLOR", "1").env("TMPDIR", sim.dir());
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let installed = |a: &[AuditEntry]| {
        a.iter().any(|e| e.source == Source::Standin && e.verb == "istioctl" && e.path.starts_with("install"))
    };
    sim.wait_for(Duration::from_secs(60), "istioctl install", |w| installed(&w.audit)).unwrap();
    // Ctrl-C right after the Istio step.
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));

    let run = bookstore(&sim, &["up"]);
    run.expect(0);
    assert!(run.stderr.contains("resuming the bootstrap"), "{}", run.stderr);
    assert!(!run.stderr.contains("Creating kind cluster"), "{}", run.stderr);
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
}

#[test]
fn a_taken_host_port_stops_the_bootstrap_before_anything_is_created() {
    let sim = empty_machine(true);
    // The simulator lets go of the ports of a cluster that does not exist yet just after start.
    let port = sim.host_port(32300);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let taken = loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() > deadline => panic!("cannot take port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let run = bookstore(&sim, &["up"]);
    run.expect(3);
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
    let run = bookstore(&sim, &["up"]);
    run.expect(3);
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

fn containerd_machine(api: &str) -> Sim {
    let opts = SimOptions {
        time_scale: 0.05,
        no_cluster: true,
        containerd_store: true,
        docker_api_version: api.into(),
        images: APP_IMAGES.iter().map(|s| s.to_string()).collect(),
        ..SimOptions::default()
    };
    with_local_crds(Sim::start(opts).expect("simulator starts"))
}

/// Docker's containerd image store with locally built (attested) images: kind's own load fails
/// there (`ctr: content digest sha256:…: not found`, the simulator's client tests show it), so
/// the images go as one archive of the node's platform.
#[test]
fn with_the_containerd_image_store_images_are_saved_for_the_nodes_platform() {
    let sim = containerd_machine("1.50");
    let run = bookstore(&sim, &["up"]);
    run.expect(0);
    let loads = kind_loads(&sim);
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert!(loads[0].starts_with("load image-archive "), "{loads:?}");
    let save = sim
        .audit()
        .into_iter()
        .find(|e| e.source == Source::Docker && e.path.contains("/images/get"))
        .expect("docker image save");
    for (part, what) in [("%22os%22%3A%22linux%22", "os"), ("%22architecture%22%3A%22amd64%22", "arch")] {
        assert!(save.path.contains(part), "the node's {what} in {}", save.path);
    }
    for image in APP_IMAGES {
        assert!(save.path.contains(&image.replace('/', "%2F").replace(':', "%3A")), "{}", save.path);
    }
    sim.wait_for(Duration::from_secs(1), "our images in the node", |w| {
        APP_IMAGES.iter().all(|i| w.node_images.contains(&format!("docker.io/{i}")))
    })
    .unwrap();
    assert_eq!(get(&sim, 30000, Some("myecom.net"), "/"), Some(200));
    assert!(run.stderr.contains("linux/amd64 archive (containerd image store)"), "{}", run.stderr);
}

/// Docker 27 (API 1.47) cannot save one platform, and kind cannot import the attested image:
/// the failing command, kind's error and what to do.
#[test]
fn an_old_docker_with_the_containerd_store_says_how_to_load_the_images() {
    let sim = containerd_machine("1.47");
    let run = bookstore(&sim, &["up"]);
    run.expect(1);
    assert!(run.stderr.contains("kind load docker-image bookstore/ecom-service:dev"), "{}", run.stderr);
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
