//! `bookstore doctor` end to end on the simulator, through the real kubectl and docker clients:
//! each finding provoked in the world, then its evidence and its fix command checked, and the
//! world's audit log as the witness that doctor changed nothing.

use std::net::ToSocketAddrs;
use std::time::Duration;

use bookstore::event::{Event, Severity};
use bookstore_sim::kit::{self, HOSTILE, Run, Test, World, eventually};
use bookstore_sim::{Fault, PullError, SimOptions};

/// `bookstore doctor --json` in this world, exiting `code`: the run (its human report on stderr)
/// and its findings.
#[track_caller]
fn run_doctor(world: &World, code: i32) -> (Run, kit::Findings) {
    let run = Test::new().world(world).args(["doctor"]).json().code(code).run();
    let findings = run.findings();
    (run, findings)
}

/// The same, for a test that reads the findings whatever the exit code.
fn run_doctor_any(world: &World) -> (Run, kit::Findings) {
    let run = Test::new().world(world).args(["doctor"]).json().any_code().run();
    let findings = run.findings();
    (run, findings)
}

#[test]
fn right_after_a_docker_restart_doctor_reports_the_stale_mesh_and_the_lost_connectors_then_up_heals_it() {
    let sim = World::healthy();
    sim.restart_docker();
    sim.mark();
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    sim.assert_read_only();

    // Root cause 1: the gateway's Envoy 503 with its reason ...
    let gateway = doctor.finding("gateway-upstream-reset");
    assert_eq!(gateway.severity, Severity::Error);
    assert!(gateway.problem.contains("reason: connection termination"));
    let evidence = doctor.evidence("gateway-upstream-reset");
    assert!(
        evidence.contains("(Host: myecom.net) → 503 upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
        "{evidence}"
    );
    assert_eq!(doctor.fix("gateway-upstream-reset"), "bookstore up");
    // ... and ztunnel's refusals at 15008 (nothing listens in the pods' new netns), each target
    // IP mapped back to its pod.
    let hbone = doctor.evidence("ztunnel-hbone-failing");
    assert!(hbone.contains("error=\"io error: Connection refused (os error 111)\""), "{hbone}");
    // (The gateway's routes: a NodePort's plaintext reaches its pods and logs nothing.)
    for workload in ["ui-service", "ecom-service", "inventory-service", "keycloak"] {
        let pod = sim.pods().into_iter().find(|p| p.workload == workload).expect("pod");
        let mapped = format!(
            "dst.addr={}:15008 is pod {}/{} (deployment {workload})",
            pod.ip, pod.namespace, pod.name
        );
        assert!(hbone.contains(&mapped), "{mapped} not in\n{hbone}");
    }
    assert_eq!(doctor.fix("ztunnel-hbone-failing"), "bookstore up");
    // As `up` judges it: ztunnel came back with the node and adopted none of the pods (the
    // guide's world), so it is restarted and every pod in the mesh is stale, whether or not
    // traffic to it failed yet (the databases had none).
    let ztunnel = doctor.evidence("ztunnel-stale");
    assert!(ztunnel.contains("before the node last started"), "{ztunnel}");
    assert!(ztunnel.contains("adopted none of the 16 meshed pod(s) on the node since"), "{ztunnel}");
    let stale = doctor.finding("mesh-registration-stale");
    assert_eq!(stale.subject.split(", ").count(), 16, "{stale:?}");
    assert!(
        doctor
            .evidence("mesh-registration-stale")
            .contains("deployment ecom/ecom-db: ztunnel is restarted first")
    );
    assert_eq!(doctor.fix("mesh-registration-stale"), "bookstore up");
    // Root cause 2: `GET /connectors` is empty while the stack has connector files.
    let connectors = doctor.evidence("connectors-missing");
    assert!(
        connectors.lines().next().unwrap().ends_with("/connectors?expand=status → 200 {}"),
        "{connectors}"
    );
    assert!(connectors.contains("ecom-connector (debezium/connectors/ecom-connector.json)"));
    assert_eq!(doctor.fix("connectors-missing"), "bookstore connectors");
    // A NodePort's plaintext from outside the mesh reaches a pod nothing captured: it answers.
    assert!(!doctor.has("route-failing"), "{}", doctor_run.stderr);
    // The same, for humans, on stderr; the summary is the last event.
    assert!(doctor_run.stderr.contains(" ✗ [gateway-upstream-reset] "), "{}", doctor_run.stderr);
    assert!(doctor_run.stderr.contains("     fix:      bookstore up"));
    assert!(doctor_run.stderr.contains("ERROR: doctor found"));
    let summary = doctor_run.events().last().cloned().unwrap();
    assert!(matches!(summary, Event::Summary { exit_code: 6, .. }), "{summary:?}");
    assert!(
        bookstore_sim::kit::leaks_in(format!("{}{}", doctor_run.stdout, doctor_run.stderr).as_bytes())
            .is_empty()
    );

    // After the recovery, doctor finds no error (warnings allowed) and says so.
    Test::new().world(&sim).args(["up"]).code(0).run();
    let (healed_run, healed) = run_doctor(&sim, 0);
    assert!(healed.errors().is_empty(), "{:?}\n{}", healed.errors(), healed_run.stderr);
    assert!(healed_run.stderr.contains("✓ doctor: no problems found"), "{}", healed_run.stderr);
    assert!(healed_run.stderr.contains("✓ routes: all 8 answer"));
    assert!(healed_run.stderr.contains("✓ Kafka Connect: 2 of 2 connectors RUNNING"));
}

#[test]
fn docker_down_and_no_cluster_are_findings_with_their_fix() {
    let sim = World::healthy();
    sim.docker_stop();
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    assert!(
        doctor.evidence("docker-not-running").contains("docker version --format"),
        "{}",
        doctor_run.stderr
    );
    assert!(doctor.fix("docker-not-running").contains("start Docker Desktop"));
    assert!(!doctor.has("cluster-missing"), "nothing past Docker is judged while it is down");

    let sim = World::start(SimOptions { no_cluster: true, ..World::options() });
    let (_, doctor) = run_doctor(&sim, 6);
    assert!(doctor.evidence("cluster-missing").contains("--filter label=io.x-k8s.kind.cluster=bookstore"));
    assert_eq!(doctor.fix("cluster-missing"), "bookstore up");
}

#[test]
fn a_tool_missing_from_path_is_named_with_its_install_hint() {
    let sim = World::healthy();
    // The simulator's `kind` stand-in lives in its bin folder: leave that folder off PATH.
    let real_clients: Vec<String> = ["kubectl", "docker"]
        .iter()
        .map(|t| which::which(t).unwrap().parent().unwrap().display().to_string())
        .collect();
    let doctor_run =
        Test::new().world(&sim).args(["doctor"]).json().env("PATH", real_clients.join(":")).code(6).run();
    let doctor = doctor_run.findings();
    assert!(doctor.evidence("tool-missing").starts_with("PATH="), "{}", doctor_run.stderr);
    assert!(doctor.fix("tool-missing").contains("install kind"), "{}", doctor_run.stderr);
    // The tools that are there still diagnose the rest: Docker answers.
    assert!(doctor_run.stderr.contains("Docker 28.2.2 answers"), "{}", doctor_run.stderr);
}

#[test]
fn a_stopped_node_and_a_host_port_held_by_something_else() {
    let sim = World::healthy();
    sim.docker(&["stop", "bookstore-control-plane"]).ok();
    // Something else takes the gateway's host port while the node is down.
    let port = sim.host_port(30000);
    let _squatter = eventually(Duration::from_secs(5), "the node's host port to be released", || {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    });
    let (_, doctor) = run_doctor(&sim, 6);
    let stopped = doctor.evidence("node-stopped");
    assert!(stopped.starts_with("bookstore-control-plane: exited (Exited (137)"), "{stopped}");
    assert_eq!(doctor.fix("node-stopped"), "docker start bookstore-control-plane");
    let taken = doctor.evidence("host-port-taken");
    let line = format!(
        "127.0.0.1:{port} (for containerPort 30000) accepts connections, and no container publishes it"
    );
    assert!(taken.contains(&line), "{taken}");
    assert!(doctor.fix("host-port-taken").starts_with(&format!("lsof -nP -iTCP:{port} -sTCP:LISTEN")));
    assert!(!doctor.has("api-not-ready"), "the API is not asked while its node is stopped");
}

#[test]
fn a_second_control_plane_is_named_with_its_role_label() {
    let sim = World::healthy();
    sim.fault(Fault::ExtraControlPlane);
    let (_, doctor) = run_doctor(&sim, 6);
    let evidence = doctor.evidence("multiple-control-planes");
    assert!(
        evidence.contains("bookstore-control-plane: label io.x-k8s.kind.role=control-plane"),
        "{evidence}"
    );
    assert!(
        evidence.contains("bookstore-control-plane2: label io.x-k8s.kind.role=control-plane"),
        "{evidence}"
    );
    assert_eq!(doctor.fix("multiple-control-planes"), "bookstore down && bookstore up");
}

#[test]
fn an_older_cluster_without_the_new_port_mappings_gets_the_guides_advice() {
    let sim = World::start(SimOptions { old_cluster: true, ..World::options() });
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    let f = doctor.finding("port-mapping-missing");
    assert_eq!(f.subject, "32100, 32200, 32300");
    let evidence = doctor.evidence("port-mapping-missing");
    assert!(
        evidence.contains(
            "docker inspect bookstore-control-plane: HostConfig.PortBindings[\"32300/tcp\"] has none"
        ),
        "{evidence}"
    );
    assert_eq!(doctor.fix("port-mapping-missing"), "bookstore down && bookstore up");
    // What the missing mappings break: the routes and Connect behind them do not answer.
    assert!(
        doctor.evidence("route-failing").contains("kiali [kiali]: GET http://127.0.0.1:"),
        "{}",
        doctor_run.stderr
    );
    assert!(doctor.evidence("connect-not-answering").contains("/connectors?expand=status → no answer"));
}

#[test]
fn an_api_that_does_not_answer_and_a_missing_kube_context() {
    let sim = World::healthy();
    sim.fault(Fault::ApiRefuseFor { secs: 30.0 });
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    assert!(doctor.evidence("api-not-ready").contains("get --raw /readyz"), "{}", doctor_run.stderr);
    assert_eq!(doctor.fix("api-not-ready"), "docker restart bookstore-control-plane");

    let sim = World::healthy();
    let empty = sim.dir().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n").unwrap();
    let run = Test::new().world(&sim).args(["doctor"]).env("KUBECONFIG", &empty).code(6).run();
    assert!(
        run.stderr.contains("[kube-context-missing] kube context `kind-bookstore` is not in your kubeconfig"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("fix:      kind export kubeconfig --name bookstore"));
}

#[test]
fn an_unpinned_host_port_is_reported_not_refused() {
    let sim = World::healthy();
    let port = sim.host_port(32200);
    sim.rewrite("kind/cluster.yaml", &format!("hostPort: {port}"), "hostPort: -1");
    // Other commands refuse such a config (exit 2); doctor explains it.
    Test::new().world(&sim).args(["smoke"]).code(2).run();
    let (_, doctor) = run_doctor(&sim, 6);
    let evidence = doctor.evidence("host-port-unpinned");
    assert!(
        evidence.contains("containerPort 32200 has hostPort: -1 (Docker picks a new host port"),
        "{evidence}"
    );
    assert!(evidence.contains(&format!("the node publishes it on 127.0.0.1:{port} now")), "{evidence}");
    assert!(
        doctor.fix("host-port-unpinned").starts_with("set `hostPort: 32200` for containerPort 32200 in ")
    );
}

#[test]
fn legacy_socat_proxies_are_a_warning_with_the_rm_command() {
    let sim = World::start(SimOptions { legacy_proxies: true, ..World::options() });
    let (doctor_run, doctor) = run_doctor(&sim, 0);
    let f = doctor.finding("legacy-proxy");
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(doctor.fix("legacy-proxy"), "docker rm -f debezium-proxy flink-proxy kiali-proxy");
    assert!(doctor_run.stderr.contains(" ! [legacy-proxy] "), "{}", doctor_run.stderr);
}

#[test]
fn route_host_names_not_resolving_to_this_machine_are_a_warning() {
    let sim = World::healthy();
    sim.rewrite("stack.yaml", "host: idp.keycloak.net", "host: idp.bookstore-doctor.invalid");
    let (_, doctor) = run_doctor_any(&sim);
    let f = doctor.finding("host-name-not-local");
    assert_eq!(f.severity, Severity::Warning);
    let evidence = doctor.evidence("host-name-not-local");
    assert!(evidence.contains("idp.bookstore-doctor.invalid does not resolve"), "{evidence}");
    // myecom.net is named exactly when this machine's resolver does not send it to loopback.
    let local = ("myecom.net", 80).to_socket_addrs().is_ok_and(|mut a| a.any(|s| s.ip().is_loopback()));
    assert_eq!(evidence.contains("myecom.net"), !local, "{evidence}");
    let names =
        if local { "idp.bookstore-doctor.invalid" } else { "idp.bookstore-doctor.invalid myecom.net" };
    assert_eq!(
        doctor.fix("host-name-not-local"),
        format!("echo '127.0.0.1 {names}' | sudo tee -a /etc/hosts")
    );
}

#[test]
fn pods_in_trouble_are_reported_with_their_log_lines_and_events() {
    let sim = World::healthy();
    for (fault, workload) in [
        (Fault::CrashLoop { workload: "redis".into() }, "redis"),
        (
            Fault::ImagePullBackOff { workload: "prometheus".into(), error: PullError::NotFound, secs: None },
            "prometheus",
        ),
        (Fault::SandboxCreationFails { workload: "pgadmin".into() }, "pgadmin"),
        (Fault::Unschedulable { workload: "flink-jobmanager".into() }, "flink-jobmanager"),
    ] {
        sim.fault(fault);
        let ns = if workload == "prometheus" {
            "observability"
        } else if workload.starts_with("flink") {
            "analytics"
        } else {
            "infra"
        };
        sim.kubectl(&["rollout", "restart", &format!("deployment/{workload}"), "-n", ns]).ok();
    }
    sim.wait_for(Duration::from_secs(20), "the new pods and redis's crash loop", |w| {
        let pods = |name: &str| w.pods.values().filter(|p| p.wl.2 == name).count();
        let crashed =
            w.pod_views().iter().any(|p| p.workload == "redis" && p.crash_loop && p.restart_count >= 3);
        crashed && ["prometheus", "pgadmin", "flink-jobmanager"].iter().all(|n| pods(n) == 2)
    })
    .unwrap();
    let (_, doctor) = run_doctor(&sim, 6);

    let crash = doctor.evidence("pod-crash-looping");
    // In back-off, or running again between two back-offs: a crash loop either way.
    let state =
        crash.contains("status: CrashLoopBackOff: back-off") || crash.contains("status: Error (exit code 1)");
    assert!(state, "{crash}");
    assert!(crash.contains("FATAL: cannot reach (fault): connection refused; exiting"), "{crash}");
    assert!(crash.contains("event Warning BackOff"), "{crash}");
    assert!(crash.contains("Back-off restarting failed container redis in pod redis-"), "{crash}");
    assert_eq!(doctor.fix("pod-crash-looping"), "bookstore recover");
    assert!(
        doctor
            .finding("pod-crash-looping")
            .note
            .as_deref()
            .unwrap_or("")
            .contains("bookstore up deletes it once"),
        "{:?}",
        doctor.finding("pod-crash-looping")
    );

    let pull = doctor.evidence("pod-image-pull-failing");
    assert!(
        pull.contains("status: ImagePullBackOff: Back-off pulling image \"bookstore/prometheus:1.0.0\""),
        "{pull}"
    );
    assert!(pull.contains("event Warning Failed"), "{pull}");
    assert!(
        pull.contains("Failed to pull image \"bookstore/prometheus:1.0.0\": rpc error: code = NotFound"),
        "{pull}"
    );
    // A tag that does not exist is not retried away: an error, saying why.
    let f = doctor.finding("pod-image-pull-failing");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.problem.contains("the registry answered `not found`"), "{f:?}");
    assert_eq!(
        doctor.fix("pod-image-pull-failing"),
        "docker pull bookstore/prometheus:1.0.0 && kind load docker-image bookstore/prometheus:1.0.0 --name bookstore"
    );

    let sandbox = doctor.evidence("pod-sandbox-failing");
    assert!(
        sandbox.contains("event Warning FailedCreatePodSandBox")
            && sandbox.contains(": Failed to create pod sandbox"),
        "{sandbox}"
    );
    assert!(sandbox.contains("no ztunnel connection"), "{sandbox}");
    assert_eq!(doctor.fix("pod-sandbox-failing"), "bookstore recover");

    let pending = doctor.evidence("pod-unschedulable");
    assert!(pending.contains("0/1 nodes are available: 1 Insufficient memory"), "{pending}");
    assert!(pending.contains("event Warning FailedScheduling"), "{pending}");
    // The subject names the pod; the problem its deployment.
    let f = doctor.finding("pod-image-pull-failing");
    assert!(f.subject.starts_with("observability/prometheus-"));
    assert!(f.problem.contains("(deployment prometheus) cannot pull its image"));
}

/// What the kubelet retries away is a warning, with what waiting fixes; the same sandbox failure
/// once ztunnel and istio-cni are Ready again is an error.
#[test]
fn a_sandbox_failing_while_ztunnel_reconnects_is_a_warning_and_an_error_once_it_persists() {
    let sim = World::healthy();
    sim.fault(Fault::ZtunnelDisconnects { secs: 600.0 });
    sim.kubectl(&["rollout", "restart", "deployment/pgadmin", "-n", "infra"]).ok();
    sim.wait_for(Duration::from_secs(20), "pgadmin's new pod without a sandbox", |w| {
        w.pods.values().filter(|p| p.wl.2 == "pgadmin").count() == 2
    })
    .unwrap();
    let (_, doctor) = run_doctor_any(&sim);
    let f = doctor.finding("pod-sandbox-failing");
    assert_eq!(f.severity, Severity::Warning, "{f:?}");
    let note = f.note.as_deref().unwrap_or_default();
    assert!(note.starts_with("waiting fixes it: ztunnel or istio-cni is not Ready"), "{note}");
    assert!(doctor.evidence("pod-sandbox-failing").contains("no ztunnel connection"));

    let sim = World::healthy();
    sim.fault(Fault::SandboxCreationFails { workload: "pgadmin".into() });
    sim.kubectl(&["rollout", "restart", "deployment/pgadmin", "-n", "infra"]).ok();
    // The kubelet's pod worker retries every 10 s (0.5 s here): failures a second after ztunnel
    // and istio-cni were Ready are there within a few retries.
    sim.wait_for(Duration::from_secs(20), "sandbox retries with the mesh Ready", |w| {
        w.store
            .list(bookstore_sim::store::Res::Events, None)
            .iter()
            .any(|e| e["reason"] == "FailedCreatePodSandBox" && e["count"].as_i64().unwrap_or(0) >= 5)
    })
    .unwrap();
    let (_, doctor) = run_doctor_any(&sim);
    let f = doctor.finding("pod-sandbox-failing");
    assert_eq!(f.severity, Severity::Error, "{f:?}");
    assert!(f.problem.contains("the sandbox still fails with ztunnel and istio-cni Ready"));
}

#[test]
fn istio_cni_reconcile_failure_and_refused_hbone_name_the_pod() {
    let sim = World::healthy();
    sim.fault(Fault::CniReconcileFailed { workload: "ui-service".into() });
    let pod = sim.pods().into_iter().find(|p| p.workload == "ui-service").unwrap();
    let (_, doctor) = run_doctor(&sim, 6);
    let cni = doctor.evidence("istio-cni-reconcile-failed");
    assert!(cni.contains("failed to reconcile inpod rules for pod, try restarting the pod"), "{cni}");
    assert!(cni.contains(&format!("ns=ecom name={}", pod.name)));
    assert_eq!(
        doctor.fix("istio-cni-reconcile-failed"),
        "kubectl --context kind-bookstore -n ecom rollout restart deployment/ui-service"
    );
    let hbone = doctor.evidence("ztunnel-hbone-failing");
    assert!(
        hbone.contains(&format!(
            "dst.addr={}:15008 is pod ecom/{} (deployment ui-service): 1 line(s), error=\"io error: Connection refused (os error 111)\"",
            pod.ip, pod.name
        )),
        "{hbone}"
    );
}

#[test]
fn kafka_volume_and_config_providers_are_read_from_the_deployments() {
    // The default world: Kafka without a PVC, a worker that declares no provider.
    let sim = World::healthy();
    let (_, doctor) = run_doctor(&sim, 0);
    assert_eq!(doctor.finding("kafka-no-volume").severity, Severity::Warning);
    assert_eq!(
        doctor.evidence("kafka-no-volume"),
        "deployment infra/kafka: spec.template.spec.volumes has no persistentVolumeClaim"
    );
    let manifest = sim.dir().join("infra/k8s/20-infra/kafka.yaml");
    assert_eq!(
        doctor.fix("kafka-no-volume"),
        format!(
            "kubectl --context kind-bookstore apply --server-side --field-manager=bookstore -f {} && bookstore connectors",
            manifest.display()
        )
    );
    let providers = doctor.evidence("connector-provider-undeclared");
    assert!(providers.contains("ecom-connector: \"database.user\" uses ${file:/opt/kafka/"), "{providers}");
    assert!(providers.contains("deployment infra/debezium: CONNECT_CONFIG_PROVIDERS is not set"));
    assert!(doctor.fix("connector-provider-undeclared").ends_with("infra/k8s/25-cdc/debezium.yaml"));

    // The manifests' world: Kafka on its PVC, the worker declaring `file`.
    let sim = World::start(SimOptions { kafka_pvc: true, worker_file_provider: true, ..World::options() });
    let (doctor_run, doctor) = run_doctor(&sim, 0);
    assert!(
        !doctor.has("kafka-no-volume") && !doctor.has("connector-provider-undeclared"),
        "{:?}",
        doctor.ids()
    );
    assert!(doctor_run.stderr.contains("✓ kafka keeps its topics on a volume (kafka-data)"));

    // A key-less `${file:/path}`: never resolved; bookstore's inline credentials still register.
    sim.rewrite(
        "debezium/connectors/ecom-connector.json",
        "credentials.properties:ECOM_DB_PASSWORD}",
        "credentials.properties}",
    );
    let (_, doctor) = run_doctor_any(&sim);
    let evidence = doctor.evidence("connector-placeholder-keyless");
    assert!(
        evidence.contains("ecom-connector: \"database.password\": \"${file:/opt/kafka/external-configuration/db-credentials/credentials.properties}\""),
        "{evidence}"
    );
    assert!(
        doctor.fix("connector-placeholder-keyless").contains("credentials.properties:ECOM_DB_PASSWORD}\"")
    );
    assert_eq!(doctor.finding("connector-placeholder-keyless").severity, Severity::Warning);
    Test::new().world(&sim).args(["connectors"]).code(0).run();
}

#[test]
fn a_failed_connector_shows_the_first_line_of_its_trace() {
    let sim = World::healthy();
    sim.fault(Fault::ConnectorTaskFailed { connector: "inventory-connector".into() });
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    let f = doctor.finding("connector-failed");
    assert_eq!(f.subject, "inventory-connector");
    assert!(
        doctor
            .evidence("connector-failed")
            .starts_with("inventory-connector: task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: injected fault"),
        "{}",
        doctor_run.stderr
    );
    let port = sim.host_port(32300);
    assert_eq!(
        doctor.fix("connector-failed"),
        format!(
            "curl -sS -X POST 'http://127.0.0.1:{port}/connectors/inventory-connector/restart?includeTasks=true&onlyFailed=true'"
        )
    );
}

#[test]
fn dry_run_lists_the_reads_and_changes_nothing() {
    let run = Test::new().args(["doctor", "--dry-run"]).run();
    for line in [
        // Docker's context pinned for the run when DOCKER_HOST does not decide: `docker --context …`.
        " ps -a --filter label=io.x-k8s.kind.cluster=bookstore --format '{{json .}}'",
        "kubectl --context kind-bookstore get deployments,pods --all-namespaces -o json",
        "kubectl --context kind-bookstore logs daemonset/ztunnel -n istio-system --tail=2000",
        "kubectl --context kind-bookstore logs daemonset/istio-cni-node -n istio-system --tail=2000",
        "curl -sS http://127.0.0.1:32300/connectors",
    ] {
        assert!(run.stdout.contains(line), "{line} not in\n{}", run.stdout);
    }
    assert!(!run.stdout.contains(HOSTILE));
}

/// `cargo test -- --ignored transcript_doctor --nocapture`: what a user sees right after a
/// Docker restart, then after `bookstore up`.
#[test]
#[ignore]
fn transcript_doctor() {
    let sim = World::healthy();
    sim.restart_docker();
    let run = Test::new().world(&sim).args(["doctor"]).any_code().run();
    eprintln!("$ bookstore doctor   # right after a Docker restart (exit {})\n{}", run.code, run.stderr);
    let status = Test::new().world(&sim).args(["status"]).any_code().run();
    eprintln!("$ bookstore status\n{}", status.stdout);
    Test::new().world(&sim).args(["up"]).code(0).run();
    let run = Test::new().world(&sim).args(["doctor"]).any_code().run();
    eprintln!("$ bookstore doctor   # after bookstore up (exit {})\n{}", run.code, run.stderr);
}

#[test]
fn a_pod_whose_config_names_a_missing_secret_key_is_reported() {
    let sim = World::healthy();
    sim.fault(Fault::ContainerConfigError { workload: "redis".into() });
    sim.kubectl(&["rollout", "restart", "deployment/redis", "-n", "infra"]).ok();
    sim.wait_for(Duration::from_secs(20), "the new redis pod", |w| {
        w.pods.values().filter(|p| p.wl.2 == "redis").count() == 2
    })
    .unwrap();
    let (doctor_run, doctor) = run_doctor(&sim, 6);
    let config = doctor.evidence("pod-config-error");
    assert!(config.contains("CreateContainerConfigError"), "{config}");
    assert!(config.contains("couldn't find key POSTGRES_PASSWORD"), "{config}");
    assert!(doctor.fix("pod-config-error").contains("describe pod redis-"), "{}", doctor_run.stderr);
}
