//! The simulator against the real clients: `/usr/bin/kubectl` (dispatcher → kubectl 1.32) and
//! the docker 28 CLI. Each test owns one simulator (own ports, socket, KUBECONFIG, cache).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use bookstore_sim::kit::{Run, World, eventually, get, http, put_json};
use bookstore_sim::{Fault, MeshReturn, PullError, Sim, SimOptions, Source};
use serde_json::Value;

/// These tests' time scale: the simulator's own wire behaviour, fast.
const SCALE: f64 = 0.02;

fn opts() -> bookstore_sim::SimOptions {
    bookstore_sim::SimOptions { time_scale: SCALE, ..bookstore_sim::SimOptions::default() }
}

const ENVOY_503: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

/// A flat connector config from the shipped file, with credentials inline.
fn flat_config(sim: &World, connector: &str, user: &str, pass: &str) -> Value {
    let path = sim.dir().join("infra/debezium/connectors").join(format!("{connector}.json"));
    let text = std::fs::read_to_string(path).expect("connector file");
    let v: Value = serde_json::from_str(&text).expect("json");
    let mut c = v["config"].clone();
    c["database.user"] = user.into();
    c["database.password"] = pass.into();
    c
}

#[test]
fn readyz_and_rollout_restart_status_complete() {
    let sim = World::start(opts());
    assert_eq!(sim.kubectl(&["get", "--raw", "/readyz"]).ok(), "ok");

    let out = sim.kubectl(&["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"]).ok();
    assert_eq!(out.trim(), "daemonset.apps/ztunnel restarted");
    let out =
        sim.kubectl(&["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=90s"]).ok();
    assert!(out.contains("daemon set \"ztunnel\" successfully rolled out"), "{out}");

    let out = sim
        .kubectl(&["rollout", "restart", "deployment/ecom-db", "deployment/ui-service", "-n", "ecom"])
        .ok();
    assert!(out.contains("deployment.apps/ecom-db restarted"), "{out}");
    assert!(out.contains("deployment.apps/ui-service restarted"), "{out}");
    let out = sim.kubectl(&["rollout", "status", "deployment/ecom-db", "-n", "ecom", "--timeout=120s"]).ok();
    assert!(out.contains("deployment \"ecom-db\" successfully rolled out"), "{out}");

    let audit = sim.audit();
    let patch =
        audit.iter().find(|e| e.is_kube_patch_of("daemonsets", "ztunnel")).expect("ztunnel PATCH audited");
    assert_eq!(patch.content_type.as_deref(), Some("application/strategic-merge-patch+json"));
    assert!(patch.body.contains("kubectl.kubernetes.io/restartedAt"));
    let zt_done = audit
        .iter()
        .position(|e| e.is_event("rollout-complete", "istio-system/ztunnel"))
        .expect("ztunnel rollout completion recorded");
    let db_patch =
        audit.iter().position(|e| e.is_kube_patch_of("deployments", "ecom-db")).expect("ecom-db PATCH");
    assert!(zt_done < db_patch);
    assert!(audit.iter().any(|e| e.is_event("rollout-complete", "ecom/ecom-db")));
    assert!(!audit.iter().any(|e| e.source == Source::Kube && e.verb == "DELETE"));
}

#[test]
fn get_watch_streams_list_then_modified_events() {
    let sim = World::start(opts());
    let mut child = sim
        .command("kubectl")
        .args([
            "--context",
            "kind-bookstore",
            "get",
            "deployments",
            "--all-namespaces",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        // kubectl 1.32 prints one compact JSON object per line (per event).
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let mut events = Vec::new();
    let workloads = 16 + 2 + 2; // stack + istiod/kiali + coredns/local-path
    while events.len() < workloads {
        let ev = rx.recv_timeout(Duration::from_secs(10)).expect("initial events");
        events.push(ev);
    }
    assert!(events.iter().all(|e| e["type"] == "ADDED"), "initial list arrives as ADDED");
    sim.kubectl(&["rollout", "restart", "deployment/kafka", "-n", "infra"]).ok();
    let mut gens = Vec::new();
    let done = loop {
        let ev = rx.recv_timeout(Duration::from_secs(10)).expect("MODIFIED events for kafka");
        if ev["object"]["metadata"]["name"] != "kafka" {
            continue;
        }
        assert_eq!(ev["type"], "MODIFIED");
        let o = &ev["object"];
        gens.push((
            o["metadata"]["generation"].as_i64().unwrap_or(0),
            o["status"]["observedGeneration"].as_i64().unwrap_or(0),
            o["status"]["updatedReplicas"].as_i64().unwrap_or(0),
            o["status"]["replicas"].as_i64().unwrap_or(0),
            o["status"]["availableReplicas"].as_i64().unwrap_or(0),
        ));
        if o["metadata"]["generation"] == 2
            && o["status"]["observedGeneration"] == 2
            && o["status"]["updatedReplicas"] == 1
            && o["status"]["replicas"] == 1
            && o["status"]["availableReplicas"] == 1
        {
            break true;
        }
    };
    assert!(done);
    // generation first, then observed with 0 updated, then the surge, then done.
    assert_eq!(gens.first(), Some(&(2, 1, 1, 1, 1)), "{gens:?}");
    assert!(gens.contains(&(2, 2, 0, 1, 1)), "{gens:?}");
    assert!(gens.contains(&(2, 2, 1, 2, 1)), "{gens:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn secret_json_keeps_hostile_password() {
    let hostile = bookstore_sim::kit::HOSTILE;
    let mut o = opts();
    o.secret.insert("ECOM_DB_PASSWORD".into(), hostile.into());
    let sim = World::start(o);
    let out = sim.kubectl(&["get", "secret", "debezium-db-credentials", "-n", "infra", "-o", "json"]).ok();
    let v: Value = serde_json::from_str(&out).expect("json");
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["ECOM_DB_PASSWORD"].as_str().expect("key"))
        .expect("base64");
    assert_eq!(String::from_utf8(b).expect("utf8"), hostile);
    for k in ["ECOM_DB_USER", "INVENTORY_DB_USER", "INVENTORY_DB_PASSWORD"] {
        assert!(v["data"][k].is_string(), "{k}");
    }
    sim.fault(Fault::RemoveSecretKey { key: "INVENTORY_DB_PASSWORD".into() });
    let out = sim.kubectl(&["get", "secret", "debezium-db-credentials", "-n", "infra", "-o", "json"]).ok();
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(v["data"]["INVENTORY_DB_PASSWORD"].is_null());
}

#[test]
fn docker_cli_info_inspect_ps_rm_and_daemon_down() {
    let mut o = opts();
    o.legacy_proxies = true;
    let sim = World::start(o);
    assert_eq!(sim.docker(&["info", "--format", "{{.ServerVersion}}"]).ok().trim(), "28.2.2");
    let out = sim.docker(&["inspect", "--type", "container", "bookstore-control-plane"]).ok();
    let v: Value = serde_json::from_str(&out).expect("json");
    let c = &v[0];
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["Config"]["Labels"]["io.x-k8s.kind.cluster"], "bookstore");
    assert_eq!(c["Config"]["Labels"]["io.x-k8s.kind.role"], "control-plane");
    assert_eq!(c["HostConfig"]["PortBindings"]["32300/tcp"][0]["HostPort"], sim.host_port(32300).to_string());
    assert_eq!(c["HostConfig"]["PortBindings"]["30000/tcp"][0]["HostIp"], "127.0.0.1");
    assert!(c["HostConfig"]["PortBindings"]["6443/tcp"].is_array());
    assert!(c["NetworkSettings"]["Ports"]["30000/tcp"].is_array());

    let out = sim
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "label=io.x-k8s.kind.cluster",
            "--format",
            "{{.Label \"io.x-k8s.kind.cluster\"}}",
        ])
        .ok();
    assert_eq!(out.trim(), "bookstore");
    let out = sim.docker(&["ps", "-a", "--filter", "name=^kiali-proxy$", "--format", "{{.Names}}"]).ok();
    assert_eq!(out.trim(), "kiali-proxy");
    let out = sim.docker(&["ps", "-a", "--filter", "name=proxy", "--format", "{{.Names}}"]).ok();
    assert_eq!(out.lines().count(), 3, "{out}");

    sim.docker(&["rm", "-f", "kiali-proxy", "flink-proxy", "debezium-proxy"]).ok();
    let out = sim.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(out.trim(), "bookstore-control-plane");
    // Missing container: rm -f exits 0 (prints No such container); inspect exits 1.
    let o = sim.docker(&["inspect", "--type", "container", "nope"]);
    assert!(!o.success());
    assert!(
        sim.audit()
            .iter()
            .any(|e| e.source == Source::Docker && e.verb == "DELETE" && e.path.contains("kiali-proxy"))
    );

    sim.docker_stop();
    let o = sim.docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(!o.success());
    assert!(o.stderr.contains("Cannot connect to the Docker daemon at unix://"), "{}", o.stderr);
    let o = sim.kubectl(&["get", "--raw", "/readyz"]);
    assert!(!o.success());
    assert!(get(sim.host_port(30000), "myecom.net", "/").is_err());
    let o = sim.client("kind", &["get", "clusters"]);
    assert!(!o.success());
    assert!(o.stderr.contains("failed to list clusters"), "{}", o.stderr);

    sim.docker_start();
    assert_eq!(sim.docker(&["info", "--format", "{{.ServerVersion}}"]).ok().trim(), "28.2.2");
    assert_eq!(sim.kubectl(&["get", "--raw", "/readyz"]).ok(), "ok");
}

#[test]
fn docker_restart_breaks_gateway_and_empties_connect() {
    let sim = World::start(opts());
    let gw = sim.host_port(30000);
    let connect = sim.host_port(32300);
    assert_eq!(get(gw, "myecom.net", "/ecom/books").map(|r| r.0), Ok(200));
    let (s, body) = get(connect, "localhost", "/connectors").expect("connect answers");
    assert_eq!(s, 200);
    let names: Vec<String> = serde_json::from_str(&body).expect("json");
    assert_eq!(names.len(), 2);

    sim.docker_restart();
    // Once the pods are Ready again, the gateway still cannot reach them.
    sim.wait_for(Duration::from_secs(10), "ui-service Ready", |w| w.ready_pod("ui-service").is_some())
        .expect("ui ready");
    let (s, body) = get(gw, "myecom.net", "/").expect("gateway answers");
    assert_eq!((s, body.as_str()), (503, ENVOY_503));
    let (s, body) = eventually(Duration::from_secs(20), "Connect answering", || {
        get(connect, "localhost", "/connectors").ok().filter(|(s, _)| *s == 200)
    });
    assert_eq!((s, body.as_str()), (200, "[]"));
    assert!(sim.connectors().is_empty());
    // A NodePort's plaintext from outside the mesh reaches a pod that nothing captured.
    sim.wait_for(Duration::from_secs(10), "pgadmin Ready", |w| w.ready_pod("pgadmin").is_some())
        .expect("pgadmin ready");
    assert_eq!(get(sim.host_port(31111), "localhost", "/misc/ping").map(|r| r.0), Ok(200));
    // ztunnel's log names the HBONE port nothing listens on in the pod's new netns.
    let logs =
        sim.kubectl(&["logs", "-l", "app=ztunnel", "-n", "istio-system", "--since=10m", "--tail=-1"]).ok();
    assert!(
        logs.contains("error=\"io error: Connection refused (os error 111)\"") && logs.contains(":15008"),
        "{logs}"
    );
    assert!(sim.pods().iter().filter(|p| p.ambient).all(|p| !p.registered));
}

fn restart(sim: &World, ns: &str, deploys: &[&str]) {
    let mut args = vec!["rollout", "restart"];
    let names: Vec<String> = deploys.iter().map(|d| format!("deployment/{d}")).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["-n", ns]);
    sim.kubectl(&args).ok();
    for d in deploys {
        let target = format!("deployment/{d}");
        sim.kubectl(&["rollout", "status", &target, "-n", ns, "--timeout=120s"]).ok();
    }
}

/// The capture model's teeth (`capture.rs`): after the guide's Docker restart, restarting ztunnel
/// repairs no pod (istio-cni resends its cached snapshot: `keep` for each); a restarted pod's new
/// sandbox goes through the CNI ADD and is in the mesh again, whether or not ztunnel restarted.
/// A new app in the mesh cannot reach its database outside it (refused at 15008): databases first.
#[test]
fn restarting_ztunnel_repairs_nothing_a_restarted_pod_is_captured_again() {
    let sim = World::start(opts());
    let gw = sim.host_port(30000);
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(20)).expect("pods Ready again");
    sim.kubectl(&["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"]).ok();
    sim.kubectl(&["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=90s"]).ok();
    sim.wait_for(Duration::from_secs(5), "the new ztunnel's snapshot", |w| {
        w.mesh.values().all(|m| m.ztunnel.is_some())
    })
    .unwrap();
    let (s, body) = get(gw, "myecom.net", "/").expect("gateway answers");
    assert_eq!((s, body.as_str()), (503, ENVOY_503));
    assert!(sim.pods().iter().filter(|p| p.ambient).all(|p| !p.registered));

    restart(&sim, "ecom", &["ecom-db"]);
    std::thread::sleep(Duration::from_millis(1100));
    restart(&sim, "ecom", &["ecom-service", "ui-service"]);
    assert_eq!(get(gw, "myecom.net", "/").map(|r| r.0), Ok(200));
    assert_eq!(get(gw, "myecom.net", "/ecom/books").map(|r| r.0), Ok(200));
    // Not restarted: still outside the mesh.
    let (s, body) = get(gw, "myecom.net", "/inven/health").expect("answers");
    assert_eq!((s, body.as_str()), (503, ENVOY_503));
    let cni = sim.kubectl(&["logs", "daemonset/istio-cni-node", "-n", "istio-system", "--tail=-1"]).ok();
    assert!(cni.contains("\tinfo\tcni-agent\tadding pod to the mesh\tns=ecom name=ui-service-"), "{cni}");
    assert!(cni.contains("\tinfo\tcni-agent\tsending pod add to ztunnel\tuid=5a1e"), "{cni}");

    // An app restarted before its database: in the mesh, it is refused by the database outside.
    restart(&sim, "identity", &["keycloak-db"]);
    std::thread::sleep(Duration::from_millis(1100));
    sim.kubectl(&["rollout", "restart", "deployment/inventory-service", "-n", "inventory"]).ok();
    sim.wait_for(Duration::from_secs(20), "inventory-service's crash loop", |w| {
        w.pod_views().iter().any(|p| p.workload == "inventory-service" && p.crash_loop)
    })
    .unwrap();
    let zt = sim.kubectl(&["logs", "daemonset/ztunnel", "-n", "istio-system", "--tail=-1"]).ok();
    let db = sim.pods().into_iter().find(|p| p.workload == "inventory-db").unwrap();
    assert!(
        zt.lines().any(|l| l.contains("src.workload=\"inventory-service-")
            && l.contains(&format!("dst.addr={}:15008", db.ip))
            && l.contains("error=\"io error: Connection refused (os error 111)\"")),
        "{zt}"
    );
}

/// The capture state machine through the real clients: the guide's world adopts nothing after a
/// Docker restart (istio-cni's scan finds no netns: `sending 'keep'`; ztunnel's workloadState is
/// empty), the re-adopted world all but the pod drawn; `istioctl ztunnel-config all -o json`
/// prints ztunnel's dump; the API server's pod proxy cannot reach its admin port.
#[test]
fn after_a_docker_restart_ztunnel_holds_what_istio_cni_captured() {
    let state = |sim: &World| -> serde_json::Map<String, Value> {
        let out = sim.client(
            "istioctl",
            &[
                "ztunnel-config",
                "all",
                "--node",
                "bookstore-control-plane",
                "--istio-namespace",
                "istio-system",
                "--context",
                "kind-bookstore",
                "-o",
                "json",
            ],
        );
        assert!(out.success(), "{}", out.stderr);
        let dump: Value = serde_json::from_str(&out.stdout).expect("the config dump is JSON");
        assert!(dump["workloads"].as_array().is_some_and(|w| !w.is_empty()));
        dump["workloadState"].as_object().cloned().expect("workloadState")
    };
    let sim = World::start(opts());
    let meshed = sim.pods().into_iter().filter(|p| p.ambient).count();
    assert_eq!(state(&sim).len(), meshed, "the healthy world: every meshed pod Up");
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(20)).expect("pods Ready again");
    assert!(state(&sim).is_empty(), "the guide's world: nothing adopted");
    let cni = sim.kubectl(&["logs", "daemonset/istio-cni-node", "-n", "istio-system", "--tail=-1"]).ok();
    assert!(cni.contains("\tinfo\tcni-agent\tinpod reconcile mode enabled"), "{cni}");
    assert!(cni.contains("\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod"), "{cni}");
    assert!(cni.contains("netns is not available for pod, sending 'keep' to ztunnel\tuid="), "{cni}");
    assert!(
        !cni.contains("adding pod to the mesh"),
        "the previous container's lines are not this one's: {cni}"
    );
    let zt = sim.kubectl(&["logs", "daemonset/ztunnel", "-n", "istio-system", "--tail=-1"]).ok();
    assert!(zt.contains("\tinfo\tinpod::statemanager\treceived snapshot sent\t"), "{zt}");
    // The annotation survives and proves nothing; istioctl's PROTOCOL comes from it.
    let pods: Value =
        serde_json::from_str(&sim.kubectl(&["get", "pods", "-n", "ecom", "-o", "json"]).ok()).unwrap();
    assert!(
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["metadata"]["annotations"]["ambient.istio.io/redirection"] == "enabled")
    );
    let summary = sim.client("istioctl", &["ztunnel-config", "workloads"]).ok();
    assert!(summary.lines().any(|l| l.starts_with("ecom ui-service-") && l.ends_with(" HBONE")), "{summary}");
    // The pod proxy: ztunnel's admin port listens on localhost only.
    let zt_pod = sim.pods().into_iter().find(|p| p.workload == "ztunnel").unwrap();
    let proxied = sim.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/istio-system/pods/{}:15000/proxy/config_dump", zt_pod.name),
    ]);
    assert!(!proxied.success());
    assert!(
        proxied.stderr.contains(&format!("Error from server (ServiceUnavailable): error trying to reach service: dial tcp {}:15000: connect: connection refused", zt_pod.ip)),
        "{}",
        proxied.stderr
    );

    // The mesh re-adopts all but one pod, drawn with the seed.
    let sim = World::start(SimOptions {
        mesh_return: MeshReturn::Readopted { seed: 7, outside: 1, among: vec![] },
        ..opts()
    });
    sim.docker_restart();
    sim.wait_for(Duration::from_secs(20), "the mesh settled", |w| {
        w.mesh.values().all(|m| m.timeline.is_empty())
    })
    .unwrap();
    let outside: Vec<_> = sim.pods().into_iter().filter(|p| p.ambient && !p.registered).collect();
    assert_eq!(outside.len(), 1, "{outside:?}");
    let state = state(&sim);
    assert_eq!(state.len(), meshed - 1);
    assert!(state.values().all(|v| v["state"] == "Up"));
    let cni = sim.kubectl(&["logs", "daemonset/istio-cni-node", "-n", "istio-system", "--tail=-1"]).ok();
    assert!(cni.contains("sending pod to ztunnel as part of snapshot\tuid="), "{cni}");
    assert!(cni.contains("sending pod add to ztunnel\tuid="), "some pods by their CNI ADD: {cni}");
    let again = World::start(SimOptions {
        mesh_return: MeshReturn::Readopted { seed: 7, outside: 1, among: vec![] },
        ..opts()
    });
    again.docker_restart();
    again
        .wait_for(Duration::from_secs(20), "the mesh settled", |w| {
            w.mesh.values().all(|m| m.timeline.is_empty())
        })
        .unwrap();
    let drawn: Vec<String> =
        again.pods().into_iter().filter(|p| p.ambient && !p.registered).map(|p| p.workload).collect();
    assert_eq!(drawn, [outside[0].workload.clone()], "the same seed draws the same pod");
}

#[test]
fn connect_put_semantics() {
    let sim = World::start(opts());
    let port = sim.host_port(32300);
    let user = "ecomuser";
    let pass = "ecompass";
    // Unknown connector.
    let (s, body) = get(port, "localhost", "/connectors/nope/config").expect("answers");
    assert_eq!(s, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        serde_json::json!({"error_code":404,"message":"Connector nope not found"})
    );
    // The wrapper → Jackson's 500.
    let file = std::fs::read_to_string(sim.dir().join("infra/debezium/connectors/ecom-connector.json"))
        .expect("file");
    let (s, _, body) = put_json(port, "/connectors/ecom-connector/config", &file);
    assert_eq!(s, 500, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let m = v["message"].as_str().expect("message");
    assert!(m.starts_with("Cannot deserialize value of type `java.lang.String` from Object value (token `JsonToken.START_OBJECT`)"), "{m}");
    assert!(m.ends_with("(through reference chain: java.util.LinkedHashMap[\"config\"])"), "{m}");
    // The flat config as shipped: literal ${file:...} → auth failure (400).
    let shipped: Value = serde_json::from_str(&file).expect("json");
    let (s, _, body) = put_json(port, "/connectors/new-one/config", &shipped["config"].to_string());
    assert_eq!(s, 400, "{body}");
    let m = serde_json::from_str::<Value>(&body).expect("json")["message"].as_str().unwrap_or("").to_string();
    assert_eq!(
        m,
        "Connector configuration is invalid and contains the following 1 error(s):\nError while validating connector config: FATAL: password authentication failed for user \"${file:/opt/kafka/external-configuration/db-credentials/credentials.properties:ECOM_DB_USER}\"\nYou can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`"
    );
    // Name mismatch.
    let mut cfg = flat_config(&sim, "ecom-connector", user, pass);
    cfg["name"] = "other".into();
    let (s, _, body) = put_json(port, "/connectors/new-one/config", &cfg.to_string());
    assert_eq!(s, 400);
    assert!(
        body.contains(
            "Connector name configuration (other) doesn't match connector name in the URL (new-one)"
        )
    );
    // Right credentials: 201 + Location, name inserted.
    let cfg = flat_config(&sim, "ecom-connector", user, pass);
    let (s, head, body) = put_json(port, "/connectors/new-one/config", &cfg.to_string());
    assert_eq!(s, 201, "{body}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("location: http://127.0.0.1:{port}/connectors/new-one")),
        "{head}"
    );
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["name"], "new-one");
    assert_eq!(v["config"]["name"], "new-one");
    assert_eq!(v["tasks"], serde_json::json!([]));
    // Right after the create: 409 stale config on GET config, 404 on status.
    let (s, body) = get(port, "localhost", "/connectors/new-one/config").expect("answers");
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("Cannot complete request momentarily due to stale configuration"));
    // Again: 200, and a write.
    let (s, _, _) = put_json(port, "/connectors/new-one/config", &cfg.to_string());
    assert_eq!(s, 200);
    let puts = sim
        .audit()
        .iter()
        .filter(|e| e.source == Source::Connect && e.verb == "PUT" && e.status == 200)
        .count();
    assert_eq!(puts, 1);
    let status = eventually(Duration::from_secs(10), "status RUNNING", || {
        let (s, body) = get(port, "localhost", "/connectors/new-one/status").ok()?;
        (s == 200).then(|| serde_json::from_str::<Value>(&body).ok()).flatten()
    });
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(status["tasks"][0]["state"], "RUNNING");
    // The status topic lagging: 404, never the rebalance 409 (status has no rebalance check).
    sim.fault(Fault::ConnectStatus404 { count: 1 });
    let (s, body) = get(port, "localhost", "/connectors/new-one/status").expect("answers");
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("No status found for connector new-one"), "{body}");
    let (s, _, _) = put_json(port, "/connectors/other-one/config", &cfg.to_string());
    assert_eq!(s, 201);
    let (s, body) = get(port, "localhost", "/connectors/other-one/status").expect("answers");
    assert!(s == 404 || s == 200, "status right after a create: {s} {body}");
    let stored = sim.connectors();
    assert_eq!(stored["new-one"]["database.password"], pass);
    // Wrong Content-Type → 415.
    let (s, _, _) = http(port, "PUT", "localhost", "/connectors/new-one/config", Some(("text/plain", "{}")))
        .expect("answers");
    assert_eq!(s, 415);
}

#[test]
fn connect_file_provider_resolves_keyed_placeholders_only() {
    let mut o = opts();
    o.worker_file_provider = true;
    let sim = World::start(o);
    let port = sim.host_port(32300);
    let file = std::fs::read_to_string(sim.dir().join("infra/debezium/connectors/inventory-connector.json"))
        .expect("file");
    let shipped: Value = serde_json::from_str(&file).expect("json");
    let (s, _, body) = put_json(port, "/connectors/inv2/config", &shipped["config"].to_string());
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(
        v["config"]["database.password"].as_str().unwrap_or("").starts_with("${file:"),
        "raw placeholders kept"
    );
    let mut cfg = shipped["config"].clone();
    cfg["database.password"] =
        "${file:/opt/kafka/external-configuration/db-credentials/credentials.properties}".into();
    let (s, _, body) = put_json(port, "/connectors/inv3/config", &cfg.to_string());
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("password authentication failed"));
}

#[test]
fn kind_and_istioctl_standins() {
    let sim = World::start(opts());
    let o = sim.client("kind", &["get", "clusters"]);
    assert_eq!(o.ok().trim(), "bookstore");

    let mut opts2 = opts();
    opts2.no_cluster = true;
    opts2.images = vec!["bookstore/ui:1".into()];
    let empty = World::start(opts2);
    let o = empty.client("kind", &["get", "clusters"]);
    assert!(o.success());
    assert_eq!(o.stdout, "");
    assert_eq!(o.stderr.trim(), "No kind clusters found.");
    let o = empty.client("kubectl", &["get", "--raw", "/readyz"]);
    assert!(!o.success());
    let cfg = empty.dir().join("infra/kind/cluster.yaml");
    let cfg = cfg.display().to_string();
    let o = empty
        .client("kind", &["create", "cluster", "--name", "bookstore", "--config", &cfg, "--wait", "120s"]);
    assert!(o.success(), "{}", o.stderr);
    assert!(o.stderr.contains("Set kubectl context to \"kind-bookstore\""));
    assert_eq!(empty.client("kubectl", &["get", "--raw", "/readyz"]).ok(), "ok");
    // Without --skip-confirmation (and no terminal to answer) istioctl cancels, installing nothing.
    let o = empty.client("istioctl", &["install", "--set", "profile=ambient"]);
    assert!(!o.success());
    assert!(o.stdout.contains("Proceed? (y/N) Cancelled."));
    assert!(!empty.kubectl(&["get", "daemonset", "ztunnel", "-n", "istio-system"]).success());
    let o = empty.client("istioctl", &["install", "--set", "profile=ambient", "--skip-confirmation"]);
    assert!(o.ok().contains("Installation complete"));
    let out = empty
        .client("kubectl", &["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=30s"])
        .ok();
    assert!(out.contains("successfully rolled out"));
    // `manifest generate` with the install's flags prints what the install deployed.
    assert_eq!(
        empty.client("istioctl", &["version", "--remote=false"]).ok().trim(),
        "client version: 1.26.0"
    );
    let manifest = empty.client("istioctl", &["manifest", "generate", "--set", "profile=ambient"]).ok();
    let deployed = empty
        .kubectl(&[
            "get",
            "daemonset",
            "ztunnel",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .ok();
    assert_eq!(deployed, "docker.io/istio/ztunnel:1.26.0-distroless");
    assert!(manifest.contains(&format!("image: {deployed}\n")), "{manifest}");
    let o = empty
        .client("istioctl", &["manifest", "generate", "--set", "profile=ambient", "--skip-confirmation"]);
    assert_eq!(o.stderr.trim(), "Error: unknown flag: --skip-confirmation");
    let o = empty.client("kind", &["load", "docker-image", "bookstore/ui:1", "--name", "bookstore"]);
    assert!(o.success(), "{}", o.stderr);
    assert!(o.stderr.contains("not yet present on node"), "{}", o.stderr);
    let o = empty.client("kind", &["load", "docker-image", "bookstore/ui:1", "--name", "bookstore"]);
    assert!(o.stderr.contains("found to be already present on all nodes"), "{}", o.stderr);
    let o = empty.client("kind", &["load", "docker-image", "bookstore/other:1", "--name", "bookstore"]);
    assert_eq!(o.stderr.trim(), "ERROR: image: \"bookstore/other:1\" not present locally");
    let o = empty.client("kind", &["delete", "cluster", "--name", "bookstore"]);
    assert!(o.success());
    assert!(o.stderr.contains("Deleted nodes: [\"bookstore-control-plane\"]"));
    let o = empty.client("kind", &["get", "clusters"]);
    assert_eq!(o.stderr.trim(), "No kind clusters found.");
    assert!(empty.audit().iter().any(|e| e.source == Source::Standin && e.verb == "istioctl"));
}

#[test]
fn old_cluster_lacks_bindings_and_ports() {
    let mut o = opts();
    o.old_cluster = true;
    let sim = World::start(o);
    let out = sim.docker(&["inspect", "--type", "container", "bookstore-control-plane"]).ok();
    let v: Value = serde_json::from_str(&out).expect("json");
    let b = &v[0]["HostConfig"]["PortBindings"];
    for p in ["32100/tcp", "32200/tcp", "32300/tcp"] {
        assert!(b[p].is_null(), "{p}");
    }
    assert!(b["30000/tcp"].is_array());
    assert!(get(sim.host_port(32300), "localhost", "/connectors").is_err());
    assert_eq!(get(sim.host_port(30000), "myecom.net", "/").map(|r| r.0), Ok(200));
}

#[test]
fn faults_api_refuse_errors_crash_loop() {
    let sim = World::start(opts());
    sim.fault(Fault::ApiRefuseFor { secs: 1.0 });
    let o = sim.kubectl(&["get", "--raw", "/readyz"]);
    assert!(!o.success());
    assert!(o.stderr.contains("was refused"), "{}", o.stderr);
    let s = eventually(Duration::from_secs(5), "API back", || {
        let o = sim.kubectl(&["get", "--raw", "/readyz"]);
        o.success().then(|| o.ok())
    });
    assert_eq!(s, "ok");

    sim.fault(Fault::CrashLoop { workload: "redis".into() });
    sim.kubectl(&["rollout", "restart", "deployment/redis", "-n", "infra"]).ok();
    let o = sim.kubectl(&["rollout", "status", "deployment/redis", "-n", "infra", "--timeout=1s"]);
    assert!(!o.success());
    let pods: Value = serde_json::from_str(
        &sim.kubectl(&["get", "pods", "-n", "infra", "-l", "app=redis", "-o", "json"]).ok(),
    )
    .expect("json");
    let waiting: Vec<&Value> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
        .collect();
    assert_eq!(waiting.len(), 1, "{pods}");
    assert!(waiting[0]["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1));

    sim.fault(Fault::ApiErrors { code: 503, count: 1 });
    let o = sim.kubectl(&["get", "--raw", "/readyz"]);
    let _ = o; // first request fails, kubectl may or may not retry
    assert!(sim.audit().iter().any(|e| e.source == Source::Kube && e.status == 503));
}

#[test]
fn faults_image_pull_backoff_and_connect_reset() {
    let sim = World::start(opts());
    sim.fault(Fault::ImagePullBackOff { workload: "redis".into(), error: PullError::NotFound, secs: None });
    sim.kubectl(&["rollout", "restart", "deployment/redis", "-n", "infra"]).ok();
    let o = sim.kubectl(&["rollout", "status", "deployment/redis", "-n", "infra", "--timeout=1s"]);
    assert!(!o.success());
    let pods: Value = serde_json::from_str(
        &sim.kubectl(&["get", "pods", "-n", "infra", "-l", "app=redis", "-o", "json"]).ok(),
    )
    .expect("json");
    let pulling: Vec<&Value> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff")
        .collect();
    assert_eq!(pulling.len(), 1, "{pods}");
    assert_eq!(pulling[0]["status"]["phase"], "Pending");
    let message = pulling[0]["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str();
    assert_eq!(message, Some("Back-off pulling image \"bookstore/redis:1.0.0\""));
    let name = pulling[0]["metadata"]["name"].as_str().expect("name");
    let o = sim.kubectl(&["logs", name, "-n", "infra"]);
    assert!(!o.success());
    assert!(o.stderr.contains("is waiting to start: trying and failing to pull image"), "{}", o.stderr);
    assert!(sim.pods().iter().any(|p| p.workload == "redis" && p.image_pull_backoff && !p.ready));

    let port = sim.host_port(32300);
    sim.fault(Fault::ConnectReset { count: 2 });
    assert!(get(port, "localhost", "/connectors").is_err());
    assert!(get(port, "localhost", "/connectors").is_err());
    assert_eq!(get(port, "localhost", "/connectors").map(|r| r.0), Ok(200));
}

/// kubectl ≥1.35 streams the initial list (sendInitialEvents) and waits for the bookmark.
#[test]
fn watch_list_sends_initial_events_end_bookmark() {
    let sim = World::start(opts());
    let path = "/apis/apps/v1/namespaces/ecom/deployments?allowWatchBookmarks=true&fieldSelector=metadata.name%3Decom-db&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=2&watch=true";
    let (s, _, body) = http(sim.kube_port(), "GET", "127.0.0.1", path, None).expect("answers");
    assert_eq!(s, 200);
    // chunked: pull the JSON lines out.
    let events: Vec<Value> =
        body.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "ecom-db");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert!(events.iter().skip(2).all(|e| e["type"] == "BOOKMARK"), "heartbeats");
}

#[test]
fn latency_table_prints() {
    let t = Sim::latency_table().to_string();
    assert!(t.contains("keycloak"));
    let m: BTreeMap<String, f64> = Sim::latency_table().rows.into_iter().collect();
    assert_eq!(m["ztunnel"], 4.0);
    assert_eq!(m["superset"], 35.0);
    let _ = SimOptions::default();
}

/// The seed's procedure, done by hand with the real clients, heals everything: the model is
/// strict but fair.
#[test]
fn full_recovery_procedure_heals_everything() {
    let sim = World::start(opts());
    sim.docker_restart();
    sim.kubectl(&["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"]).ok();
    sim.kubectl(&["rollout", "status", "daemonset/ztunnel", "-n", "istio-system", "--timeout=90s"]).ok();
    for (ns, db) in [
        ("ecom", "ecom-db"),
        ("inventory", "inventory-db"),
        ("identity", "keycloak-db"),
        ("analytics", "analytics-db"),
    ] {
        restart(&sim, ns, &[db]);
    }
    for (ns, apps) in [
        ("ecom", vec!["ecom-service", "ui-service"]),
        ("inventory", vec!["inventory-service"]),
        ("identity", vec!["keycloak"]),
        ("infra", vec!["kafka", "redis", "debezium", "pgadmin"]),
        ("analytics", vec!["flink-jobmanager", "flink-taskmanager", "superset"]),
        ("observability", vec!["prometheus"]),
    ] {
        restart(&sim, ns, &apps);
    }
    let connect = sim.host_port(32300);
    let body = eventually(Duration::from_secs(20), "Connect answering", || {
        get(connect, "localhost", "/connectors").ok().filter(|(s, _)| *s == 200).map(|(_, b)| b)
    });
    assert_eq!(body, "[]");
    for (name, user, pass) in [
        ("ecom-connector", "ecomuser", "ecompass"),
        ("inventory-connector", "inventoryuser", "inventorypass"),
    ] {
        let cfg = flat_config(&sim, name, user, pass);
        let (s, _, body) = put_json(connect, &format!("/connectors/{name}/config"), &cfg.to_string());
        assert_eq!(s, 201, "{body}");
        let st = eventually(Duration::from_secs(10), "RUNNING", || {
            let (s, b) = get(connect, "localhost", &format!("/connectors/{name}/status")).ok()?;
            (s == 200).then(|| serde_json::from_str::<Value>(&b).ok()).flatten()
        });
        assert_eq!(st["tasks"][0]["state"], "RUNNING");
    }
    sim.wait_healthy(Duration::from_secs(10)).expect("healthy");
    let gw = sim.host_port(30000);
    for (host, path) in [
        ("myecom.net", "/"),
        ("myecom.net", "/ecom/books"),
        ("myecom.net", "/inven/health"),
        ("idp.keycloak.net", "/realms/bookstore"),
    ] {
        assert_eq!(get(gw, host, path).map(|r| r.0), Ok(200), "{host}{path}");
    }
    for (port, path) in [(31111, "/misc/ping"), (32000, "/health"), (32100, "/kiali/"), (32200, "/overview")]
    {
        assert_eq!(get(sim.host_port(port), "localhost", path).map(|r| r.0), Ok(200), "{port}{path}");
    }
    assert!(sim.pods().iter().all(|p| p.ready && (!p.ambient || p.registered)));
    let audit = sim.audit();
    let epoch = audit
        .iter()
        .position(|e| e.verb == "rollout-complete" && e.path == "istio-system/ztunnel")
        .expect("ztunnel's rollout completed");
    let first_deploy_patch = audit
        .iter()
        .position(|e| e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/deployments/"))
        .expect("patches");
    assert!(epoch < first_deploy_patch);
    assert!(!audit.iter().any(|e| e.verb == "DELETE"));
}

/// The progress deadline bounds a rollout, not a deployment's life (the deployment controller's
/// `DeploymentTimedOut`: a Progressing condition of `NewReplicaSetAvailable` never times out, and
/// a new ReplicaSet resets the condition in the same status update that observes the spec): a
/// restart long after the last rollout, its Docker restart in between, rolls out.
#[test]
fn a_restart_long_after_the_last_rollout_does_not_exceed_the_progress_deadline() {
    // 600 s × 0.01 = 6 s of progress deadline.
    let sim = World::start(SimOptions { time_scale: 0.01, ..opts() });
    std::thread::sleep(Duration::from_millis(6500));
    sim.docker_restart();
    let progressing = |sim: &World| {
        let d: Value = serde_json::from_str(
            &sim.kubectl(&["get", "deployment/keycloak", "-n", "identity", "-o", "json"]).ok(),
        )
        .unwrap();
        let conditions = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.into_iter().find(|c| c["type"] == "Progressing").map(|c| c["reason"].clone())
    };
    // keycloak takes 400 ms to be Ready again: meanwhile the last rollout's condition stands, and
    // a restart then rolls out.
    assert_eq!(progressing(&sim), Some(Value::from("NewReplicaSetAvailable")));
    // Its database first: a keycloak in the mesh cannot reach one left outside it.
    restart(&sim, "identity", &["keycloak-db", "keycloak"]);
    assert_eq!(progressing(&sim), Some(Value::from("NewReplicaSetAvailable")));
}

/// The real Gateway API v1.4.1 standard install (~700 KB), served where the stack file's URL
/// points: a server-side apply (what `bookstore` runs) stores it without a last-applied
/// annotation; a client-side apply copies each CRD into that annotation, which the apiserver caps
/// at 256 KiB (the HTTPRoute CRD's fits, at ~197 KB); the CRDs become Established and their
/// resources are served.
#[test]
fn gateway_api_crds_apply_as_the_real_file() {
    let sim = World::start(opts());
    let stack = std::fs::read_to_string(sim.stack_path()).unwrap();
    let url = stack.lines().find_map(|l| l.trim().strip_prefix("crds: ")).expect("the stack's crds line");
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1.4.1/standard-install.yaml"), "{url}");
    let before = sim.kubectl(&["get", "gateways.gateway.networking.k8s.io", "-A"]);
    assert!(!before.success(), "Gateways served before their CRD");

    let applied = sim.kubectl(&["apply", "--server-side", "--field-manager=bookstore", "-f", url]).ok();
    for crd in
        ["gatewayclasses", "gateways", "grpcroutes", "httproutes", "referencegrants", "backendtlspolicies"]
    {
        let line = format!(
            "customresourcedefinition.apiextensions.k8s.io/{crd}.gateway.networking.k8s.io serverside-applied"
        );
        assert!(applied.contains(&line), "{applied}");
    }
    let crds = ["crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io"];
    sim.kubectl(&[&["wait", "--for=condition=Established", "--timeout=10s"][..], &crds[..]].concat()).ok();
    let annotations = |name: &str| {
        let crd = sim.kubectl(&["get", "crd", name, "-o", "json"]).ok();
        let crd: Value = serde_json::from_str(&crd).unwrap();
        crd["metadata"]["annotations"].as_object().cloned().unwrap_or_default()
    };
    let ssa = annotations("httproutes.gateway.networking.k8s.io");
    assert_eq!(ssa["gateway.networking.k8s.io/bundle-version"], "v1.4.1", "the real file, not a stub");
    assert!(!ssa.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    sim.kubectl(&["get", "gateways.gateway.networking.k8s.io", "-A"]).ok();

    sim.kubectl(&["apply", "-f", url]).ok();
    let last = annotations("httproutes.gateway.networking.k8s.io")["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap()
        .len();
    assert!((150_000..262_144).contains(&last), "{last} bytes");

    // Over the limit: the apiserver's answer, as kubectl prints it.
    let big = sim.dir().join("big.json");
    let manifest = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": "ecom", "annotations": {"big": "x".repeat(270_000)}}});
    std::fs::write(&big, manifest.to_string()).unwrap();
    let over = sim.kubectl(&["create", "-f", big.to_str().unwrap()]);
    assert!(!over.success());
    let err = over.stderr;
    assert!(err.contains("metadata.annotations: Too long: must have at most 262144 bytes"), "{err}");
}

/// The containerd image store (kind#3795): a locally built image is an index with a provenance
/// attestation whose manifest a plain `docker save` leaves out, so kind's all-platforms import
/// fails, by `load docker-image` and by `load image-archive` of that archive alike; one platform
/// saved (`docker image save --platform`, API ≥ 1.48) imports. The classic store saves whole.
#[test]
fn image_archives_under_the_containerd_and_the_classic_store() {
    let image = "bookstore/ui-service:dev";
    let world = |containerd: bool, api: &str| {
        World::start(SimOptions {
            containerd_store: containerd,
            docker_api_version: api.into(),
            images: vec![image.into()],
            ..opts()
        })
    };
    let sim = world(true, "1.50");
    let plain = sim.dir().join("plain.tar").display().to_string();
    sim.docker(&["save", "-o", &plain, image]).ok();
    let o = sim.client("kind", &["load", "image-archive", &plain, "--name", "bookstore"]);
    assert_eq!(Some(o.code), Some(1));
    let err = o.stderr;
    assert!(err.contains("ctr --namespace=k8s.io images import --all-platforms --digests"), "{err}");
    assert!(err.contains("Command Output: ctr: content digest sha256:"), "{err}");
    assert!(err.trim_end().ends_with(": not found"), "{err}");
    let o = sim.client("kind", &["load", "docker-image", image, "--name", "bookstore"]);
    assert_eq!(Some(o.code), Some(1));
    assert!(o.stderr.contains("ctr: content digest sha256:"), "{}", o.stderr);

    let one = sim.dir().join("one.tar").display().to_string();
    sim.docker(&["image", "save", "--platform", "linux/amd64", "-o", &one, image]).ok();
    let get = sim.audit().into_iter().rfind(|e| e.source == Source::Docker && e.path.contains("/images/get"));
    assert!(get.expect("GET /images/get").path.contains("platform="), "the CLI sends the platform");
    let o = sim.client("kind", &["load", "image-archive", &one, "--name", "bookstore"]);
    assert!(o.success(), "{}", o.stderr);
    let o = sim.client("kind", &["load", "docker-image", image, "--name", "bookstore"]);
    assert!(o.stderr.contains("already present on all nodes"), "loaded: {}", o.stderr);
    let o = sim.docker(&["image", "save", "--platform", "linux/arm64", "-o", &one, image]);
    assert!(o.stderr.contains("no suitable export target found"), "{}", o.stderr);

    // Docker 27 (API 1.47) has no `save --platform`: the CLI refuses before any request.
    let old = world(true, "1.47");
    let o = old.docker(&["image", "save", "--platform", "linux/amd64", "-o", &one, image]);
    assert!(!o.success());
    assert!(o.stderr.contains("1.48"), "{}", o.stderr);

    // The classic store: the fast path works.
    let classic = world(false, "1.50");
    let o = classic.client("kind", &["load", "docker-image", image, "--name", "bookstore"]);
    assert!(o.success(), "{}", o.stderr);
}

/// Downloads: `docker pull` on the host takes its size over the machine's link; the kubelet
/// pulls what a new pod needs (one at a time by default) and the pod waits in ContainerCreating;
/// a loaded image is there at once; a stack that has run has every image.
#[test]
fn images_download_over_one_link_and_stay_in_the_node() {
    let sim = World::start(SimOptions { no_cluster: true, time_scale: 0.01, bandwidth_mb_s: 10.0, ..opts() });
    // redis (17 MB) at 10 MB/s and scale 0.01: about 17 ms.
    let o = sim.docker(&["pull", "redis:7.4.2-alpine"]);
    assert!(o.ok().contains("docker.io/library/redis:7.4.2-alpine"), "{}", o.stderr);
    let listed = sim.docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).ok();
    assert_eq!(listed.trim(), "redis:7.4.2-alpine");
    let o = sim.docker(&["pull", "redis:7.4.2-alpine"]);
    assert!(o.ok().contains("docker.io/library/redis:7.4.2-alpine"));
    let pulled = |w: &bookstore_sim::World, store: &str| {
        w.audit
            .iter()
            .filter(|e| {
                e.is_event("image-pulled", "docker.io/library/redis:7.4.2-alpine") && e.detail == store
            })
            .count()
    };
    sim.wait_for(Duration::from_secs(1), "one host pull", |w| pulled(w, "host") == 1).unwrap();

    let cfg = sim.dir().join("infra/kind/cluster.yaml").display().to_string();
    sim.client("kind", &["create", "cluster", "--name", "bookstore", "--config", &cfg]).ok();
    // A pod whose image the node lacks waits in ContainerCreating until the kubelet pulled it.
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: cache, namespace: default}\n\
                    spec:\n  replicas: 1\n  selector: {matchLabels: {app: cache}}\n  template:\n    \
                    metadata: {labels: {app: cache}}\n    spec: {containers: [{name: c, image: redis:7.4.2-alpine}]}\n";
    let mut apply = sim.command("kubectl");
    apply.args(["--context", "kind-bookstore", "apply", "--server-side", "-f", "-"]).stdin(Stdio::piped());
    apply.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = apply.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap()).ok();
    sim.wait_for(Duration::from_secs(5), "the kubelet's pull", |w| pulled(w, "node") == 1).unwrap();
    let o = sim.client("kind", &["load", "docker-image", "redis:7.4.2-alpine", "--name", "bookstore"]);
    assert!(o.stderr.contains("already present on all nodes"), "{}", o.stderr);
    let out = sim.kubectl(&["rollout", "status", "deployment/cache", "--timeout=30s"]).ok();
    assert!(out.contains("successfully rolled out"), "{out}");

    // A stack that has run needs no download.
    let healthy = World::start(opts());
    assert!(!healthy.audit().iter().any(|e| e.verb == "image-pulled" || e.verb == "pod-pulling"));
}
