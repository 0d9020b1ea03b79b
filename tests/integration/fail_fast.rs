//! The recovery's waits fail fast on a pod that waiting cannot fix (CrashLoopBackOff,
//! ImagePullBackOff, FailedCreatePodSandBox), showing its status, log lines and events;
//! `--tolerate` waits until the deadline instead.

use std::time::{Duration, Instant};

use bookstore_sim::Fault;

use crate::simkit::{bookstore, options, rewrite, start};

#[test]
fn a_crash_loop_stops_the_wait_at_once_with_its_log_and_events() {
    let sim = start(options());
    sim.fault(Fault::CrashLoop { workload: "redis".into() });
    sim.docker_restart();
    let started = Instant::now();
    let run = bookstore(&sim, &["up"]);
    run.expect(1);
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
    let sim = start(options());
    sim.fault(Fault::ImagePullBackOff { workload: "ui-service".into() });
    let run = bookstore(&sim, &["recover"]);
    run.expect(1);
    let err = &run.stderr;
    assert!(err.contains("deployment ecom/ui-service cannot become ready by waiting"), "{err}");
    assert!(err.contains("cannot pull its image bookstore/ui-service:1.0.0 (ImagePullBackOff)"), "{err}");
    assert!(err.contains("Failed to pull image \"bookstore/ui-service:1.0.0\""), "{err}");
    assert!(err.contains("Next: docker pull bookstore/ui-service:1.0.0 && kind load docker-image"), "{err}");
}

#[test]
fn a_sandbox_that_cannot_be_created_stops_the_wait() {
    let sim = start(options());
    sim.fault(Fault::SandboxCreationFails { workload: "prometheus".into() });
    let run = bookstore(&sim, &["recover"]);
    run.expect(1);
    let err = &run.stderr;
    assert!(err.contains("deployment observability/prometheus cannot become ready by waiting"), "{err}");
    assert!(err.contains("gets no sandbox (FailedCreatePodSandBox)"), "{err}");
    assert!(err.contains("partial add error: no ztunnel connection"), "{err}");
}

#[test]
fn tolerate_waits_until_the_deadline() {
    let sim = start(options());
    rewrite(
        &sim,
        "stack.yaml",
        "{ name: redis, namespace: infra, timeout: 180s }",
        "{ name: redis, namespace: infra, timeout: 6s }",
    );
    sim.fault(Fault::CrashLoop { workload: "redis".into() });
    let started = Instant::now();
    let run = bookstore(&sim, &["recover", "--tolerate"]);
    run.expect(124);
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert!(
        run.stderr.contains("timed out after 6.0s: deployment infra/redis to finish its rollout"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("cannot become ready by waiting"));
}
