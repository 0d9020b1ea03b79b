//! The fault matrix (issue 6): one end-to-end row per fault a half-started stack really has, on
//! the simulator, through the real `kubectl` and `docker` clients. Each row checks the exit code,
//! that the message names the cause and the next step, and the final state of the simulated
//! cluster; [`finish`] checks that the row ended as its label says, checks every run of the row
//! for deletes and for the hostile password (argv, stdout, stderr, `--json`, files), and prints
//! the counts. Every run goes through the kit ([`Test`], in a [`World`] with short deadlines).
//!
//! `cargo test --test integration faults -- --nocapture 2>&1 | grep 'fault matrix'` shows them.

use std::path::Path;
use std::sync::Mutex;

use bookstore::event::Event;
use bookstore_sim::kit::{self, CONTEXT, HOSTILE, Test, World, leaks_in};
use bookstore_sim::{Fault, PullError, Sim, SimOptions, Source};

/// How many rows this file declares (the summary line is printed when the last one finishes).
const ROWS: u32 = 53;

/// How a row ended: [`finish`] checks it from the row's runs and the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// `bookstore` brought the stack back with no help: the last run exited 0, no run stopped
    /// with an error asking something of the user (exit 5, another run holding the lock, asks
    /// only to wait), and the stack is recovered.
    Recovered,
    /// `bookstore` stopped with an exit code and an error naming the cause and the next step:
    /// the last run exited non-zero with an `ERROR:` and a next step.
    Explained,
    /// Explained, then the user did what it said and a rerun converged: a run stopped with an
    /// explained error, a later one exited 0, and the stack is recovered.
    ExplainedThenRecovered,
}

#[derive(Default)]
struct Totals {
    rows: u32,
    recovered: u32,
    explained: u32,
    leaks: u32,
    deletes: u32,
    runs: u32,
    argv_checked: u32,
}

static TOTALS: Mutex<Totals> = Mutex::new(Totals {
    rows: 0,
    recovered: 0,
    explained: 0,
    leaks: 0,
    deletes: 0,
    runs: 0,
    argv_checked: 0,
});

/// An error that names a next step (the run's `ERROR:` and what follows `Next:`, or the input
/// error's advice).
fn explained(run: &kit::Run) -> bool {
    run.code != 0 && run.stderr.contains("ERROR:") && !run.next_step().trim().is_empty()
}

/// Every row ends here: the label checked against what happened, the world's checks, the counts.
#[track_caller]
fn finish(c: &World, name: &str, ends: Ends) {
    let runs = c.runs();
    let last = runs.last().unwrap_or_else(|| panic!("{name}: the row ran nothing"));
    match ends {
        Ends::Recovered => {
            assert_eq!(last.code, 0, "{name}: labelled Recovered, the last run exited {}", last.code);
            let asked: Vec<i32> = runs.iter().map(|r| r.code).filter(|c| ![0, 5].contains(c)).collect();
            assert!(asked.is_empty(), "{name}: labelled Recovered, runs exited {asked:?}");
            c.assert_recovered();
        }
        Ends::Explained => {
            assert!(
                explained(last),
                "{name}: labelled Explained, the last run (exit {}):\n{}",
                last.code,
                last.stderr
            );
        }
        Ends::ExplainedThenRecovered => {
            let first = runs.iter().position(explained);
            assert!(
                first.is_some(),
                "{name}: labelled ExplainedThenRecovered, no run stopped with an explained error"
            );
            let later = runs[first.unwrap_or(0) + 1..].iter().any(|r| r.code == 0);
            assert!(
                later && last.code == 0,
                "{name}: labelled ExplainedThenRecovered, no later run exited 0"
            );
            c.assert_recovered();
        }
    }
    let checks = c.checks();
    let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    t.rows += 1;
    t.runs += checks.runs;
    t.argv_checked += checks.argv;
    t.leaks += checks.leaks;
    t.deletes += checks.deletes;
    if matches!(ends, Ends::Recovered | Ends::ExplainedThenRecovered) {
        t.recovered += 1;
    }
    if matches!(ends, Ends::Explained | Ends::ExplainedThenRecovered) {
        t.explained += 1;
    }
    let line = format!(
        "fault matrix: {}/{ROWS} rows: faults tried {}, recovered {}, explained {}, leaks found {}, \
         deletes found {} ({} runs, {} child argv checked)",
        t.rows, t.rows, t.recovered, t.explained, t.leaks, t.deletes, t.runs, t.argv_checked
    );
    eprintln!("[{name}] {line}");
    if t.rows == ROWS {
        eprintln!("FAULT MATRIX SUMMARY: {line}");
        let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix.txt"), &line);
    }
    drop(t);
    assert!(checks.problems.is_empty(), "{name}: {:#?}", checks.problems);
}

// ---- Docker and the kube API ----------------------------------------------------------------

#[test]
fn docker_daemon_down() {
    let c = World::broken().short_deadlines();
    let name = "docker daemon down";
    c.sim().docker_stop();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["Docker is not running"], "start Docker");
    // Only kind's listing was tried (it runs `docker ps`, which fails): nothing else was reached
    // (the cluster's reads of the same round, kubectl's and istioctl's, found the API down).
    let touched: Vec<String> =
        c.touched().into_iter().filter(|t| !t.starts_with("Standin istioctl ztunnel-config ")).collect();
    assert_eq!(touched, ["Standin kind get clusters"], "Docker is down: nothing answers");
    // The user starts Docker and runs it again.
    c.sim().docker_start();
    Test::new().world(&c).args(["up"]).json().code(0).run();
    c.assert_recovered();
    finish(&c, name, Ends::ExplainedThenRecovered);
}

/// Docker down, as the docker CLI of Docker Desktop ≤ 4.40 and distributions' docker 26/27 tells
/// it (v27.5.1: `docker info --format` exits 0 with the daemon away) and as docker 29 words it
/// (`failed to connect to the docker API at …`): "Docker is not running" (3) on every release.
#[test]
fn docker_daemon_down_on_other_docker_cli_releases() {
    use bookstore_sim::docker_cli::DockerCli;
    for (cli, words) in [
        (DockerCli::V27_5_1, "Cannot connect to the Docker daemon"),
        (DockerCli::V29, "failed to connect to the docker API at unix://"),
    ] {
        let c = World::start(SimOptions { docker_cli: cli, ..World::options() }).short_deadlines();
        let name = "docker daemon down, other docker CLI releases";
        c.sim().docker_stop();
        c.until("the Docker socket to go", || !c.sim().docker_socket().exists());
        c.mark();
        let run = Test::new().world(&c).args(["up"]).json().code(3).run();
        run.says(&["Docker is not running", "docker version", words], "start Docker");
        finish(&c, name, Ends::Explained);
    }
}

/// A node left exited by Docker (kind#3244: it halted cleanly, exit 0, and kind's
/// `--restart=on-failure:1` restarts only a node that failed; one stopped by hand takes the same
/// path), its API slower to boot than `api_timeout`: `up` starts it (control planes first), waits
/// for the API with a node's boot budget (5 min), and heals as after any restart.
#[test]
fn node_container_stopped() {
    let opts = SimOptions { node_left_exited: true, api_boot_secs: 2.0, ..World::options() };
    let c = World::start(opts).short_deadlines();
    let name = "node container left exited by Docker";
    c.edit("stack.yaml", |s| s.replace("api_timeout: 15s", "api_timeout: 1s"));
    c.sim().docker_restart();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    let said = "the kind node bookstore-control-plane is exited (exit 0): starting it";
    assert!(run.stderr.contains(said), "{}", run.stderr);
    assert!(run.stderr.contains("Waiting ≤ 5m for the Kubernetes API"), "{}", run.stderr);
    let starts: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.verb == "POST" && e.path.contains("/start"))
        .map(|e| e.path_only().to_string())
        .collect();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(starts[0].ends_with("/containers/bookstore-control-plane/start"), "{starts:?}");
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn api_refuses_for_a_while_after_a_docker_restart() {
    let c = World::healthy().short_deadlines();
    let name = "kube API refusing after a Docker restart";
    c.mark();
    c.sim().docker_restart_refusing_api(2.0);
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(run.stderr.contains("for the Kubernetes API"), "{}", run.stderr);
    let readyz = c.argv().iter().filter(|a| a.join(" ").contains("get --raw /readyz")).count();
    assert!(readyz >= 2, "the API was not waited for ({readyz} /readyz calls)");
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn api_refuses_past_its_deadline() {
    let c = World::healthy().short_deadlines();
    let name = "kube API refusing past its deadline";
    c.edit("stack.yaml", |s| s.replace("api_timeout: 15s", "api_timeout: 1s"));
    c.mark();
    c.sim().docker_restart_refusing_api(600.0);
    let run = Test::new().world(&c).args(["recover"]).json().code(124).run();
    run.says(&["Kubernetes API", CONTEXT, "/readyz", "refused"], "node container");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

fn api_errors_intermittently(name: &'static str, code: u16) {
    let c = World::broken().short_deadlines();
    c.mark();
    c.sim().fault(Fault::ApiErrors { code, count: 12 });
    Test::new().world(&c).args(["up"]).json().code(0).run();
    let failed = c.audit().iter().filter(|e| e.source == Source::Kube && e.status == code).count();
    assert_eq!(failed, 12, "the API did not fail as injected");
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn api_answers_503_intermittently() {
    api_errors_intermittently("kube API 503 intermittently", 503);
}

#[test]
fn api_answers_500_intermittently() {
    api_errors_intermittently("kube API 500 intermittently", 500);
}

// ---- rollouts -------------------------------------------------------------------------------

#[test]
fn a_rollout_that_never_completes() {
    let c = World::broken().short_deadlines();
    let name = "rollout never completes";
    c.deadline("- { name: keycloak,", "2s");
    c.sim().fault(Fault::RolloutNeverCompletes { workload: "keycloak".into() });
    c.mark();
    let run = Test::new()
        .world(&c)
        .args(["up"])
        .json()
        .code(124)
        .stderr_has("kubectl --context kind-bookstore -n identity")
        .run();
    run.says(&["identity/keycloak", "keycloak-", "not Ready"], "get pods -l app=keycloak");
    let keycloak: Vec<_> = c.sim().pods().into_iter().filter(|p| p.workload == "keycloak").collect();
    assert!(keycloak.iter().any(|p| !p.ready), "{keycloak:?}");
    finish(&c, name, Ends::Explained);
}

#[test]
fn crash_loop_backoff() {
    // The wait fails fast (exit 1) long before its deadline, with the pod's evidence;
    // `--tolerate` would sit it out (exit 124, tests/integration/fail_fast.rs).
    let c = World::broken().short_deadlines();
    let name = "CrashLoopBackOff";
    c.deadline("- { name: inventory-service,", "60s");
    c.sim().fault(Fault::CrashLoop { workload: "inventory-service".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(1).run();
    run.says(
        &["inventory/inventory-service", "CrashLoopBackOff", "FATAL: cannot reach"],
        "the log lines above say why",
    );
    assert!(
        c.sim().pods().iter().any(|p| p.workload == "inventory-service" && p.restart_count > 0 && !p.ready)
    );
    finish(&c, name, Ends::Explained);
}

#[test]
fn image_pull_backoff() {
    // A tag that does not exist: no retry changes the registry's answer.
    let c = World::broken().short_deadlines();
    let name = "ImagePullBackOff: tag not found";
    c.deadline("- { name: pgadmin,", "60s");
    c.sim().fault(Fault::ImagePullBackOff {
        workload: "pgadmin".into(),
        error: PullError::NotFound,
        secs: None,
    });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(1).run();
    run.says(&["infra/pgadmin", "ImagePullBackOff", "bookstore/pgadmin:1.0.0", "`not found`"], "pgadmin");
    assert!(c.sim().pods().iter().any(|p| p.workload == "pgadmin" && p.image_pull_backoff));
    finish(&c, name, Ends::Explained);
}

#[test]
fn image_pull_rate_limited_for_a_while() {
    // Docker Hub's 429 is retried by the kubelet's image back-off: waited out, said so.
    let c = World::broken().short_deadlines();
    let name = "ImagePullBackOff: rate limit (429) for a while";
    let fault = Fault::ImagePullBackOff {
        workload: "pgadmin".into(),
        error: PullError::RateLimited,
        secs: Some(6.0),
    };
    c.sim().fault(fault);
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(run.stderr.contains("waiting it out: pod infra/pgadmin-"), "{}", run.stderr);
    assert!(run.stderr.contains("the registry's pull rate limit (429 Too Many Requests)"), "{}", run.stderr);
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn image_pull_timing_out_until_the_deadline() {
    let c = World::broken().short_deadlines();
    let name = "ImagePullBackOff: TLS handshake timeout past the deadline";
    c.deadline("- { name: pgadmin,", "4s");
    c.sim().fault(Fault::ImagePullBackOff {
        workload: "pgadmin".into(),
        error: PullError::TlsTimeout,
        secs: None,
    });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(124).run();
    run.says(&["timed out after 4.0s", "infra/pgadmin", "ImagePullBackOff"], "get pods -l app=pgadmin");
    assert!(run.stderr.contains("a TLS handshake timeout; the kubelet retries the pull"), "{}", run.stderr);
    finish(&c, name, Ends::Explained);
}

#[test]
fn our_image_not_in_the_node() {
    // ui-service runs our image, then Docker restarts: up restarts it too (the mesh re-adopted
    // none of the pods), and its new pod finds the image not in the node.
    let c = World::healthy().short_deadlines();
    let name = "our image not loaded into the node";
    let dev = r#"{"spec":{"template":{"spec":{"containers":[{"name":"ui-service","image":"bookstore/ui-service:dev","imagePullPolicy":"Never"}]}}}}"#;
    c.kubectl(&["patch", "deployment", "ui-service", "-n", "ecom", "--type=merge", "-p", dev]).ok();
    c.sim().wait_healthy(kit::BOUND).expect("ui-service rolled out");
    c.sim().docker_restart();
    c.sim().fault(Fault::ImagePullBackOff {
        workload: "ui-service".into(),
        error: PullError::NotLoaded,
        secs: None,
    });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(1).run();
    run.says(
        &["ecom/ui-service", "ErrImageNeverPull", "bookstore/ui-service:dev is built on this machine"],
        "kind load docker-image bookstore/ui-service:dev --name bookstore",
    );
    finish(&c, name, Ends::Explained);
}

#[test]
fn sandbox_failing_while_ztunnel_reconnects() {
    let c = World::broken().short_deadlines();
    let name = "FailedCreatePodSandBox while ztunnel reconnects";
    c.sim().fault(Fault::ZtunnelDisconnects { secs: 6.0 });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(
        run.stderr.contains("gets no sandbox (FailedCreatePodSandBox): ztunnel or istio-cni is not Ready"),
        "{}",
        run.stderr
    );
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn sandbox_failing_with_ztunnel_and_istio_cni_ready() {
    let c = World::broken().short_deadlines();
    let name = "FailedCreatePodSandBox with the mesh Ready";
    c.sim().fault(Fault::SandboxCreationFails { workload: "prometheus".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(1).run();
    run.says(
        &[
            "observability/prometheus",
            "the sandbox still fails with ztunnel and istio-cni Ready",
            "no ztunnel connection",
        ],
        "bookstore recover",
    );
    finish(&c, name, Ends::Explained);
}

#[test]
fn ztunnel_crash_loops() {
    let c = World::broken().short_deadlines();
    let name = "ztunnel crash-looping";
    c.edit("stack.yaml", |s| {
        s.replace("daemonset: ztunnel\n  timeout: 20s", "daemonset: ztunnel\n  timeout: 2s")
    });
    c.sim().fault(Fault::CrashLoop { workload: "ztunnel".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(124).run();
    run.says(&["istio-system/ztunnel", "last exit: Error"], "get pods -l app=ztunnel");
    let deployments: Vec<String> = c.patches().into_iter().filter(|p| p.contains("/deployments/")).collect();
    assert!(deployments.is_empty(), "workloads restarted on a broken mesh: {deployments:?}");
    finish(&c, name, Ends::Explained);
}

// ---- Kafka Connect --------------------------------------------------------------------------

fn connect_recovers(fault: Fault) -> World {
    let c = World::broken().short_deadlines();
    c.mark();
    c.sim().fault(fault);
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(run.stderr.contains("connector ecom-connector registered"), "{}", run.stderr);
    c.assert_recovered();
    c
}

#[test]
fn connect_reachable_only_late() {
    let name = "Connect not reachable until late";
    let c = connect_recovers(Fault::ConnectReset { count: 12 });
    let resets = c.audit().iter().filter(|e| e.source == Source::Connect && e.status == 0).count();
    assert!(resets >= 12, "{resets} resets");
    finish(&c, name, Ends::Recovered);
}

#[test]
fn connect_never_reachable() {
    let c = World::broken().short_deadlines();
    let name = "Connect never reachable";
    c.edit("stack.yaml", |s| s.replacen("  timeout: 20s\n  secret:", "  timeout: 2s\n  secret:", 1));
    c.mark();
    c.sim().fault(Fault::ConnectReset { count: 1_000_000 });
    let run = Test::new().world(&c).args(["up"]).json().code(124).run();
    run.says(&["Kafka Connect REST API", "/connectors"], "debezium");
    assert!(c.sim().connectors().is_empty());
    finish(&c, name, Ends::Explained);
}

#[test]
fn connect_slow_in_every_part_of_a_registration() {
    // Unreachable for a while (~3 s of resets), then a 409 storm (~3.5 s): each part alone fits
    // in connect.timeout (4 s), together they do not. One deadline for the whole registration:
    // it gives up at the 4 s it printed, not after each part had 4 s of its own.
    let c = World::healthy().short_deadlines();
    let name = "Connect slow in every part of a registration";
    c.edit("stack.yaml", |s| s.replacen("  timeout: 20s\n  secret:", "  timeout: 4s\n  secret:", 1));
    c.mark();
    c.sim().fault(Fault::ConnectReset { count: 8 });
    c.sim().fault(Fault::Connect409Storm { message: String::new(), count: 6 });
    let run = Test::new().world(&c).args(["connectors"]).json().code(124).run();
    assert!(run.stderr.contains("Registering connector ecom-connector (≤ 4.0s)"), "{}", run.stderr);
    run.says(&["timed out after 4.0s", "ecom-connector"], "Connect worker's log");
    finish(&c, name, Ends::Explained);
}

#[test]
fn connect_500_request_timed_out_while_the_worker_starts() {
    let name = "Connect 500 Request timed out";
    let c = connect_recovers(Fault::Connect500Timeout { count: 10 });
    let timed_out = c.audit().iter().filter(|e| e.source == Source::Connect && e.status == 500).count();
    assert!(timed_out >= 10);
    finish(&c, name, Ends::Recovered);
}

fn storm(name: &'static str, message: &str) {
    let c = connect_recovers(Fault::Connect409Storm { message: message.into(), count: 6 });
    let conflicts = c.audit().iter().filter(|e| e.source == Source::Connect && e.status == 409).count();
    assert!(conflicts >= 6, "{conflicts} conflicts");
    finish(&c, name, Ends::Recovered);
}

#[test]
fn connect_409_storm_no_known_leader() {
    storm(
        "409 storm: no known leader",
        "Cannot complete request momentarily due to no known leader URL, likely because a rebalance was underway.",
    );
}

#[test]
fn connect_409_storm_conflicting_operation() {
    storm(
        "409 storm: conflicting operation",
        "Cannot complete request because of a conflicting operation (e.g. worker rebalance)",
    );
}

#[test]
fn connect_409_storm_stale_configuration() {
    storm(
        "409 storm: stale configuration",
        "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)",
    );
}

#[test]
fn a_connector_that_goes_failed_with_a_trace() {
    let c = World::broken().short_deadlines();
    let name = "connector FAILED with a trace";
    c.mark();
    c.sim().fault(Fault::ConnectorTaskFailed { connector: "inventory-connector".into() });
    let run = Test::new().world(&c).args(["up"]).json().code(1).run();
    run.says(
        &["connector inventory-connector FAILED", "task 0", "ConnectException: injected fault"],
        "bookstore connectors",
    );
    // Registered with the right credentials; it is the task that fails.
    assert_eq!(c.sim().connectors()["inventory-connector"], c.expected_connectors()["inventory-connector"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn status_404_right_after_a_create() {
    let name = "404 on status right after a create";
    let c = connect_recovers(Fault::ConnectStatus404 { count: 4 });
    let audit = c.audit();
    let mut not_found = 0;
    for name in ["ecom-connector", "inventory-connector"] {
        let created = audit
            .iter()
            .position(|e| {
                e.source == Source::Connect && e.verb == "PUT" && e.path.contains(name) && e.status == 201
            })
            .expect("created");
        let status = format!("/connectors/{name}/status");
        let answers: Vec<(usize, u16)> = audit
            .iter()
            .enumerate()
            .filter(|(_, e)| e.source == Source::Connect && e.path_only() == status)
            .map(|(i, e)| (i, e.status))
            .collect();
        assert!(answers.iter().all(|(i, _)| *i > created), "{name}: status before its create");
        not_found += answers.iter().filter(|(_, s)| *s == 404).count();
        assert_eq!(answers.last().map(|a| a.1), Some(200), "{name}: {answers:?}");
    }
    assert!(not_found >= 4, "{not_found} 404s");
    finish(&c, name, Ends::Recovered);
}

#[test]
fn an_html_502_page_instead_of_json_then_json() {
    let name = "HTML 502 page, then JSON";
    let c = connect_recovers(Fault::ConnectHtml502 { count: 6 });
    let pages = c.audit().iter().filter(|e| e.source == Source::Connect && e.status == 502).count();
    assert_eq!(pages, 6);
    finish(&c, name, Ends::Recovered);
}

#[test]
fn an_html_502_page_until_the_deadline() {
    let c = World::broken().short_deadlines();
    let name = "HTML 502 page until the deadline";
    c.edit("stack.yaml", |s| s.replacen("  timeout: 20s\n  secret:", "  timeout: 2s\n  secret:", 1));
    c.mark();
    c.sim().fault(Fault::ConnectHtml502 { count: 1_000_000 });
    let run = Test::new().world(&c).args(["up"]).json().code(124).run();
    run.says(&["HTTP 502", "502 Bad Gateway"], "debezium");
    assert!(!error_line_has_markup(&run), "raw HTML in the error:\n{}", run.stderr);
    finish(&c, name, Ends::Explained);
}

fn error_line_has_markup(run: &kit::Run) -> bool {
    run.error_text().contains("<html>") || run.error_text().contains("<center>")
}

// ---- inputs ---------------------------------------------------------------------------------

/// An input error: exit 2 before anything reaches the world.
fn input_error(c: &World, cause: &[&str]) {
    let run = Test::new().world(c).args(["up"]).json().code(2).run();
    run.says(cause, "Fix the input");
    assert_eq!(c.touched(), Vec::<String>::new(), "bad input reached the world");
    assert!(c.argv().is_empty(), "bad input ran {:?}", c.argv());
}

#[test]
fn connector_file_missing() {
    let c = World::broken().short_deadlines();
    let name = "connector file missing";
    std::fs::remove_file(c.infra("debezium/connectors/ecom-connector.json")).unwrap();
    c.mark();
    input_error(&c, &["ecom-connector.json", "No such file"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn connector_file_not_json() {
    let c = World::broken().short_deadlines();
    let name = "connector file not JSON";
    c.edit("debezium/connectors/ecom-connector.json", |s| s.replacen('{', "{ name: ", 1));
    c.mark();
    input_error(&c, &["ecom-connector.json", "line 1"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn connector_file_without_config() {
    let c = World::broken().short_deadlines();
    let name = "connector file missing `config`";
    std::fs::write(
        c.infra("debezium/connectors/inventory-connector.json"),
        r#"{"name": "inventory-connector"}"#,
    )
    .unwrap();
    c.mark();
    input_error(&c, &["inventory-connector.json", "missing field `config`"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn connector_name_mismatching_the_file() {
    let c = World::broken().short_deadlines();
    let name = "connector `name` mismatching the file";
    c.edit("debezium/connectors/ecom-connector.json", |s| {
        s.replace("\"name\": \"ecom-connector\"", "\"name\": \"ecom-connector-v2\"")
    });
    c.mark();
    input_error(&c, &["ecom-connector.json", "ecom-connector-v2"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn connector_config_name_mismatching_its_name() {
    let c = World::broken().short_deadlines();
    let name = "connector config.name mismatching name";
    c.edit("debezium/connectors/inventory-connector.json", |s| {
        s.replace("\"tasks.max\"", "\"name\": \"other\",\n    \"tasks.max\"")
    });
    c.mark();
    input_error(&c, &["inventory-connector.json", "config.name `other`"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn secret_missing() {
    let c = World::broken().short_deadlines();
    let name = "secret missing";
    c.kubectl(&["delete", "secret", "debezium-db-credentials", "-n", "infra"]).ok();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["infra/debezium-db-credentials", "not found"], "create");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

#[test]
fn secret_key_missing() {
    let c = World::broken().short_deadlines();
    let name = "secret key missing";
    c.sim().fault(Fault::RemoveSecretKey { key: "INVENTORY_DB_USER".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["infra/debezium-db-credentials", "INVENTORY_DB_USER"], "describe secret");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

#[test]
fn secret_value_not_base64() {
    let c = World::broken().short_deadlines();
    let name = "secret value not base64";
    c.kubectl(&[
        "patch",
        "secret",
        "debezium-db-credentials",
        "-n",
        "infra",
        "--type=merge",
        "-p",
        r#"{"data":{"ECOM_DB_PASSWORD":"%%% not base64 %%%"}}"#,
    ])
    .ok();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["ECOM_DB_PASSWORD", "not valid base64"], "describe secret");
    assert!(!run.stderr.contains("%%%"), "the bad value was printed");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

#[test]
fn cluster_yaml_malformed() {
    let c = World::broken().short_deadlines();
    let name = "cluster.yaml malformed";
    c.edit("kind/cluster.yaml", |s| s.replace("nodes:", "nodes: [\n"));
    c.mark();
    input_error(&c, &["cluster config", "cluster.yaml"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn cluster_yaml_without_the_connect_port_mapping() {
    let c = World::broken().short_deadlines();
    let name = "cluster.yaml without the expected port mappings";
    c.edit("kind/cluster.yaml", |s| {
        let start = s.find("      - containerPort: 32300").unwrap();
        let mut out = s[..start].to_string();
        out.push_str(s[start..].split_once("protocol: TCP\n").unwrap().1);
        out
    });
    c.mark();
    input_error(&c, &["cluster config", "containerPort 32300"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn node_without_the_new_port_mappings() {
    let c =
        World::start(bookstore_sim::SimOptions { old_cluster: true, ..World::options() }).short_deadlines();
    let name = "node created without the port mappings";
    c.sim().docker_restart();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["32100, 32200, 32300"], "bookstore down && bookstore up");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

#[test]
fn stack_with_a_dependency_cycle() {
    let c = World::broken().short_deadlines();
    let name = "stack dependency cycle";
    c.edit("stack.yaml", |s| {
        s.replace(
            "{ name: ecom-db, namespace: ecom, role: database,",
            "{ name: ecom-db, namespace: ecom, role: database, needs: [ecom-service],",
        )
    });
    c.mark();
    input_error(&c, &["dependency cycle", "ecom-db → ecom-service → ecom-db"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn stack_with_an_unknown_workload() {
    let c = World::broken().short_deadlines();
    let name = "stack unknown workload";
    c.edit("stack.yaml", |s| s.replace("needs: [flink-jobmanager]", "needs: [flink-jobmanagr]"));
    c.mark();
    input_error(&c, &["flink-taskmanager", "`flink-jobmanagr`, which is not a workload"]);
    finish(&c, name, Ends::Explained);
}

#[test]
fn stack_naming_a_workload_the_cluster_lacks() {
    let c = World::broken().short_deadlines();
    let name = "stack workload not in the cluster";
    c.edit("stack.yaml", |s| {
        s.replace(
            "  - { name: ui-service,",
            "  - { name: ghost-service, namespace: ecom, timeout: 20s }\n  - { name: ui-service,",
        )
    });
    c.mark();
    let run = Test::new().world(&c).args(["recover"]).json().code(3).run();
    run.says(&["ecom/ghost-service", "not in the cluster"], "get deploy -A");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

// ---- the kube context -------------------------------------------------------------------------

/// The user's kubeconfig with a second cluster `prod` (another simulator), optionally without
/// the kind context, and `current-context: prod`.
fn kubeconfig_with_prod(c: &World, prod: &Sim, keep_kind: bool) -> String {
    let kind = c.sim().kube_port();
    let other = prod.kube_port();
    let mut clusters = format!("- cluster:\n    server: http://127.0.0.1:{other}\n  name: prod\n");
    let mut contexts = "- context:\n    cluster: prod\n    user: prod\n  name: prod\n".to_string();
    let mut users = "- name: prod\n  user: {}\n".to_string();
    if keep_kind {
        clusters.push_str(&format!("- cluster:\n    server: http://127.0.0.1:{kind}\n  name: {CONTEXT}\n"));
        contexts.push_str(&format!(
            "- context:\n    cluster: {CONTEXT}\n    user: {CONTEXT}\n  name: {CONTEXT}\n"
        ));
        users.push_str(&format!("- name: {CONTEXT}\n  user: {{}}\n"));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{contexts}current-context: prod\n\
         preferences: {{}}\nusers:\n{users}"
    )
}

#[test]
fn current_context_points_elsewhere() {
    let prod = Sim::start(World::options()).expect("a second world");
    let c = World::broken().short_deadlines();
    let name = "current-context pointing elsewhere";
    let kubeconfig = kubeconfig_with_prod(&c, &prod, true);
    std::fs::write(c.sim().kubeconfig_path(), &kubeconfig).unwrap();
    c.mark();
    Test::new().world(&c).args(["up"]).json().code(0).run();
    c.assert_recovered();
    let touched: Vec<String> =
        prod.audit().iter().filter(|e| e.source == Source::Kube).map(|e| e.path.clone()).collect();
    assert_eq!(touched, Vec::<String>::new(), "the current context's cluster was touched");
    assert!(
        c.audit().iter().any(|e| e.source == Source::Kube && e.verb == "PATCH"),
        "the kind cluster was not"
    );
    assert_eq!(std::fs::read_to_string(c.sim().kubeconfig_path()).unwrap(), kubeconfig, "kubeconfig changed");
    finish(&c, name, Ends::Recovered);
}

#[test]
fn kind_context_missing() {
    let prod = Sim::start(World::options()).expect("a second world");
    let c = World::broken().short_deadlines();
    let name = "kind context missing from the kubeconfig";
    std::fs::write(c.sim().kubeconfig_path(), kubeconfig_with_prod(&c, &prod, false)).unwrap();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(3).run();
    run.says(&["kube context `kind-bookstore`"], "kind export kubeconfig --name bookstore");
    assert!(prod.audit().iter().all(|e| e.source != Source::Kube), "the current context was used");
    c.assert_nothing_restarted();
    finish(&c, name, Ends::Explained);
}

// ---- concurrency and Ctrl-C -----------------------------------------------------------------

#[test]
fn two_runs_at_once() {
    let c = World::healthy().short_deadlines();
    let name = "two runs at once";
    c.mark();
    c.sim().docker_restart_refusing_api(600.0);
    let first = Test::new().world(&c).args(["up"]).json().any_code().spawn();
    first.until_step("Kubernetes API");
    let second = Test::new().world(&c).args(["recover"]).json().code(5).run();
    second.says(&[&format!("pid {}", first.pid()), "bookstore up"], "wait for it to finish");
    assert!(c.patches().is_empty(), "the second run changed something");
    c.sim().fault(Fault::ApiRefuseFor { secs: 0.0 });
    let first = first.wait();
    first.expect(0);
    // The lock went with the process: the next run goes ahead.
    Test::new().world(&c).args(["connectors"]).json().run();
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

/// Ctrl-C while `bookstore up` is in a step: children stopped and reaped, exit 130 with advice;
/// then the rerun converges.
fn interrupted(c: World, name: &str, step: &str, reached: impl Fn(&World) -> bool, clear: Fault) {
    c.mark();
    let running = Test::new().world(&c).args(["up"]).json().any_code().spawn();
    running.until_step(step);
    c.until("the step to be under way", || reached(&c));
    running.interrupt();
    let run = running.wait();
    run.expect(130);
    run.says(&["interrupted"], "run it again");
    assert_eq!(c.live_clients(), Vec::<String>::new(), "children outlived bookstore");
    c.sim().fault(clear);
    Test::new().world(&c).args(["up"]).json().code(0).run();
    c.assert_recovered();
    finish(&c, name, Ends::ExplainedThenRecovered);
}

#[test]
fn ctrl_c_while_waiting_for_the_api() {
    let c = World::healthy().short_deadlines();
    let name = "Ctrl-C while waiting for the API";
    c.sim().docker_restart_refusing_api(600.0);
    interrupted(
        c,
        name,
        "Kubernetes API",
        |c| c.argv().iter().any(|a| a.join(" ").contains("/readyz")),
        Fault::ApiRefuseFor { secs: 0.0 },
    );
}

#[test]
fn ctrl_c_during_the_ztunnel_rollout() {
    let c = World::broken().short_deadlines();
    let name = "Ctrl-C during the ztunnel rollout";
    c.sim().fault(Fault::RolloutNeverCompletes { workload: "ztunnel".into() });
    interrupted(
        c,
        name,
        "Restarting ztunnel",
        |c| c.argv().iter().any(|a| a.join(" ").contains("delete pod ztunnel-")),
        Fault::Clear,
    );
}

#[test]
fn ctrl_c_during_the_workload_rollout() {
    let c = World::broken().short_deadlines();
    let name = "Ctrl-C during the workload rollout";
    c.sim().fault(Fault::RolloutNeverCompletes { workload: "keycloak".into() });
    interrupted(
        c,
        name,
        "Restarting 16 workloads",
        |c| c.audit().iter().any(|e| e.is_kube_patch_of("deployments", "keycloak")),
        Fault::Clear,
    );
}

#[test]
fn ctrl_c_during_connector_registration() {
    let c = World::broken().short_deadlines();
    let name = "Ctrl-C during connector registration";
    c.sim().fault(Fault::Connect500Timeout { count: 1_000_000 });
    interrupted(
        c,
        name,
        "Restarting 16 workloads",
        |c| c.audit().iter().filter(|e| e.source == Source::Connect && e.status == 500).count() >= 3,
        Fault::Clear,
    );
}

// ---- the helper itself ------------------------------------------------------------------------

/// The leak scanner is not vacuous: it finds the sentinel in every form it looks for.
#[test]
fn the_leak_scanner_finds_a_planted_sentinel() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(HOSTILE);
    let json = serde_json::to_string(HOSTILE).unwrap();
    for planted in [format!("x {HOSTILE} y"), format!("{{\"p\":{json}}}"), format!("data: {b64}")] {
        assert!(!leaks_in(planted.as_bytes()).is_empty(), "{planted}");
    }
    assert!(leaks_in(b"password: ***").is_empty());
}

// ---- What `up` restarts (issue 10) -----------------------------------------------------------

#[test]
fn one_workload_lost_its_mesh_registration() {
    let c = World::healthy().short_deadlines();
    let name = "one workload lost its mesh registration";
    c.sim().fault(Fault::StaleWorkload { workload: "inventory-service".into() });
    let answer = c.get(30000, Some("myecom.net"), "/inven/health");
    assert!(answer.as_ref().is_some_and(|(s, b)| *s == 503 && b.starts_with(kit::ENVOY_503)), "{answer:?}");
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(run.stderr.contains("restart inventory-service: gateway /inven/health"), "{}", run.stderr);
    assert_eq!(c.restarts(), [("inventory-service".to_string(), 1)].into(), "it alone is restarted");
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn a_pod_left_outside_the_mesh_by_istio_cni() {
    // pgadmin has no gateway route: istio-cni's log line (and ztunnel's refused HBONE) name it.
    let c = World::healthy().short_deadlines();
    let name = "a pod left outside the mesh by istio-cni";
    c.sim().fault(Fault::CniReconcileFailed { workload: "pgadmin".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
    assert!(run.stderr.contains("restart pgadmin: "), "{}", run.stderr);
    assert_eq!(c.restarts(), [("pgadmin".to_string(), 1)].into(), "it alone is restarted");
    c.assert_recovered();
    finish(&c, name, Ends::Recovered);
}

#[test]
fn hbone_blocked_to_one_workload() {
    // No restart helps (as with a NetworkPolicy that blocks port 15008): the remedy, one
    // escalation (the workload again, and ztunnel since a pod newer than it fails too), then the
    // findings and exit 4. Never a loop.
    let c = World::healthy().short_deadlines();
    let name = "HBONE blocked to one workload (a remedy that does not heal)";
    c.edit("stack.yaml", |s| s.replace("smoke:\n  timeout: 20s", "smoke:\n  timeout: 2s"));
    c.sim().fault(Fault::HboneBlocked { workload: "inventory-service".into() });
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(4).run();
    run.says(&["inventory-api [inventory-service]", "upstream reset"], "recover");
    assert!(run.stderr.contains("still fail after the remedy: escalating once"), "{}", run.stderr);
    assert!(run.stderr.contains("[gateway-upstream-reset]"), "the findings for what is left\n{}", run.stderr);
    let counts = c.restarts();
    assert_eq!(counts.get("inventory-service"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("ztunnel"), Some(&1), "{counts:?}");
    assert!(counts.values().all(|n| *n <= 2), "more than one escalation: {counts:?}");
    finish(&c, name, Ends::Explained);
}

#[test]
fn ctrl_c_once_kafka_is_ready_again() {
    // An interrupted recovery: the rerun restarts only what is still stale, not ztunnel again.
    let c = World::broken().short_deadlines();
    let name = "Ctrl-C once kafka is Ready again";
    c.mark();
    let running = Test::new().world(&c).args(["up"]).json().any_code().spawn();
    running.until_event(
        "kafka ready",
        |e| matches!(e, Event::WorkloadReady { workload, .. } if workload == "kafka"),
    );
    running.interrupt();
    running.wait().expect(130);
    let first = c.restarts();
    assert_eq!(first.get("ztunnel"), Some(&1));
    let run = Test::new().world(&c).args(["up", "--dry-run"]).json().code(0).run();
    assert!(run.stdout.contains("#   keep ztunnel: its pod"), "{}", run.stdout);
    Test::new().world(&c).args(["up"]).json().code(0).run();
    let both = c.restarts();
    let twice: Vec<&String> = both.iter().filter(|(_, n)| **n > 1).map(|(w, _)| w).collect();
    assert!(twice.is_empty(), "restarted twice over the two runs: {twice:?} (first run: {first:?})");
    assert_eq!(both.len(), 17, "ztunnel and every workload, each once: {both:?}");
    c.assert_recovered();
    finish(&c, name, Ends::ExplainedThenRecovered);
}
