//! The recovery's waits fail fast on a pod that waiting cannot fix (a crash loop with what it
//! needs Ready, an image that does not exist or is ours and not in the node, a sandbox failing
//! with ztunnel and istio-cni Ready), showing its status, log lines and events; what the kubelet
//! retries away (a rate-limited pull, `no ztunnel connection` while ztunnel reconnects) is
//! waited out, saying so; `--tolerate` waits until the deadline instead.

use std::time::{Duration, Instant};

use bookstore_sim::{Fault, PullError};

use bookstore_sim::kit::{Test, World};

#[test]
fn a_crash_loop_stops_the_wait_at_once_with_its_log_and_events() {
    let sim = World::healthy();
    sim.fault(Fault::CrashLoop { workload: "redis".into() });
    sim.docker_restart();
    let started = Instant::now();
    let run = Test::new().world(&sim).args(["up"]).code(1).run();
    // redis's deadline is 180 s: the wait gave up long before it.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    let err = &run.stderr;
    assert!(err.contains("deployment infra/redis cannot become ready by waiting: pod infra/redis-"), "{err}");
    assert!(
        err.contains("keeps crashing (CrashLoopBackOff")
            || err.contains("keeps crashing (Error (exit code 1)"),
        "{err}"
    );
    assert!(err.contains("FATAL: cannot reach (fault): connection refused; exiting"), "{err}");
    assert!(err.contains("event Warning BackOff"), "{err}");
    assert!(err.contains("or rerun with --tolerate to wait until the deadline"), "{err}");
}

#[test]
fn an_image_that_cannot_be_pulled_stops_the_wait() {
    let sim = World::healthy();
    sim.fault(Fault::ImagePullBackOff {
        workload: "ui-service".into(),
        error: PullError::NotFound,
        secs: None,
    });
    let run = Test::new().world(&sim).args(["recover"]).code(1).run();
    let err = &run.stderr;
    assert!(err.contains("deployment ecom/ui-service cannot become ready by waiting"), "{err}");
    assert!(err.contains("cannot pull its image bookstore/ui-service:1.0.0 (ImagePullBackOff)"), "{err}");
    assert!(err.contains("Failed to pull image \"bookstore/ui-service:1.0.0\""), "{err}");
    assert!(err.contains("Next: docker pull bookstore/ui-service:1.0.0 && kind load docker-image"), "{err}");
}

#[test]
fn a_sandbox_that_cannot_be_created_stops_the_wait() {
    let sim = World::healthy();
    sim.fault(Fault::SandboxCreationFails { workload: "prometheus".into() });
    let run = Test::new().world(&sim).args(["recover"]).code(1).run();
    let err = &run.stderr;
    assert!(err.contains("deployment observability/prometheus cannot become ready by waiting"), "{err}");
    assert!(err.contains("gets no sandbox (FailedCreatePodSandBox)"), "{err}");
    assert!(err.contains("the sandbox still fails with ztunnel and istio-cni Ready"), "{err}");
    assert!(err.contains("partial add error: no ztunnel connection"), "{err}");
}

#[test]
fn a_rate_limited_pull_is_waited_out_and_the_pod_starts() {
    let sim = World::healthy();
    let fault = Fault::ImagePullBackOff {
        workload: "ui-service".into(),
        error: PullError::RateLimited,
        secs: Some(6.0),
    };
    sim.fault(fault);
    let run = Test::new().world(&sim).args(["recover"]).code(0).run();
    let err = &run.stderr;
    assert!(err.contains("waiting it out: pod ecom/ui-service-"), "{err}");
    assert!(err.contains("cannot pull its image bookstore/ui-service:1.0.0 (ImagePullBackOff)"), "{err}");
    assert!(err.contains("the registry's pull rate limit (429 Too Many Requests)"), "{err}");
    assert!(err.contains("(waiting up to 3m)"), "{err}");
    assert!(!err.contains("cannot become ready by waiting"), "{err}");
    let ui: Vec<_> = sim.pods().into_iter().filter(|p| p.workload == "ui-service").collect();
    assert!(ui.iter().all(|p| p.ready && !p.image_pull_backoff), "{ui:?}");
}

#[test]
fn a_pull_timing_out_until_the_deadline_ends_at_the_deadline_not_before() {
    let sim = World::healthy();
    sim.rewrite(
        "stack.yaml",
        "{ name: ui-service, namespace: ecom, timeout: 180s,",
        "{ name: ui-service, namespace: ecom, timeout: 6s,",
    );
    sim.fault(Fault::ImagePullBackOff {
        workload: "ui-service".into(),
        error: PullError::TlsTimeout,
        secs: None,
    });
    let started = Instant::now();
    let run = Test::new().world(&sim).args(["recover"]).code(124).run();
    assert!(started.elapsed() >= Duration::from_secs(6));
    let err = &run.stderr;
    assert!(err.contains("waiting it out: pod ecom/ui-service-"), "{err}");
    assert!(err.contains("a TLS handshake timeout; the kubelet retries the pull"), "{err}");
    assert!(err.contains("timed out after 6.0s: deployment ecom/ui-service to finish its rollout"), "{err}");
    assert!(!err.contains("cannot become ready by waiting"), "{err}");
}

#[test]
fn our_image_not_in_the_node_stops_the_wait() {
    let sim = World::healthy();
    // ui-service as the bootstrap deploys it: our image, never pulled.
    let template = r#"{"spec":{"template":{"spec":{"containers":[{"name":"ui-service","image":"bookstore/ui-service:dev","imagePullPolicy":"Never"}]}}}}"#;
    sim.kubectl(&["patch", "deployment", "ui-service", "-n", "ecom", "--type=merge", "-p", template])
        .expect(0);
    sim.wait_healthy(Duration::from_secs(30)).unwrap();
    sim.fault(Fault::ImagePullBackOff {
        workload: "ui-service".into(),
        error: PullError::NotLoaded,
        secs: None,
    });
    let run = Test::new().world(&sim).args(["recover"]).code(1).run();
    let err = &run.stderr;
    assert!(err.contains("deployment ecom/ui-service cannot become ready by waiting"), "{err}");
    assert!(err.contains("cannot pull its image bookstore/ui-service:dev (ErrImageNeverPull)"), "{err}");
    assert!(
        err.contains("bookstore/ui-service:dev is built on this machine and is not in the node"),
        "{err}"
    );
    assert!(err.contains("is not present with pull policy of Never"), "{err}");
    assert!(err.contains("Next: kind load docker-image bookstore/ui-service:dev --name bookstore"), "{err}");
}

#[test]
fn a_sandbox_failing_while_ztunnel_reconnects_is_waited_out() {
    let sim = World::healthy();
    sim.fault(Fault::ZtunnelDisconnects { secs: 6.0 });
    let run = Test::new().world(&sim).args(["recover"]).code(0).run();
    let err = &run.stderr;
    assert!(err.contains("waiting it out: pod "), "{err}");
    assert!(
        err.contains("gets no sandbox (FailedCreatePodSandBox): ztunnel or istio-cni is not Ready"),
        "{err}"
    );
    assert!(!err.contains("cannot become ready by waiting"), "{err}");
    // The kubelet did retry sandboxes that failed: the events say so.
    let events = sim.kubectl(&["get", "events", "-A", "-o", "json"]);
    assert!(events.stdout.contains("no ztunnel connection"), "no sandbox failure was modelled");
}

#[test]
fn tolerate_waits_until_the_deadline() {
    let sim = World::healthy();
    sim.rewrite(
        "stack.yaml",
        "{ name: redis, namespace: infra, timeout: 180s,",
        "{ name: redis, namespace: infra, timeout: 6s,",
    );
    sim.fault(Fault::CrashLoop { workload: "redis".into() });
    let started = Instant::now();
    let run = Test::new().world(&sim).args(["recover", "--tolerate"]).code(124).run();
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert!(
        run.stderr.contains("timed out after 6.0s: deployment infra/redis to finish its rollout"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("cannot become ready by waiting"));
}
