//! Doctor and up agree (issue 18): every world of the fault matrix (the simulator's faults, each
//! as its row sets it up, independent faults of one kind sharing a world) is judged by `bookstore
//! doctor` and planned by `bookstore up --dry-run`, through the real clients. Their verdicts must
//! name the same things:
//! - a workload (or ztunnel) doctor calls broken, with an error, is one `up` restarts or waits
//!   for; one `up` restarts is one doctor calls broken;
//! - a connector doctor calls broken is one `up` registers; one `up` registers is one doctor calls
//!   broken, or one that needs a workload doctor calls broken (the README's rule: a restart of
//!   what a connector needs is followed by its registration);
//! - when `up` refuses (a non-zero exit), doctor says something is wrong too (a non-zero exit).
//!
//! One simulator per world, several worlds at once; each world is settled (what its row waits
//! for) before the two read it, and both read it at the same time.
//!
//! `cargo test --test integration agreement -- --nocapture` prints each world's verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bookstore::event::{Event, Finding, Severity, Stamped};
use bookstore::stack::{Source, Stack};
use bookstore_sim::kit::{Run, Test, World};
use bookstore_sim::{Fault, PullError, SimOptions};

const BOUND: Duration = Duration::from_secs(30);

/// One world: how it is set up from a healthy stack (its own options), and how long after that
/// it is settled.
struct Setting {
    name: &'static str,
    options: fn() -> SimOptions,
    setup: fn(&World),
}

fn restart(sim: &World, workload: &str, namespace: &str) {
    sim.kubectl(&["rollout", "restart", &format!("deployment/{workload}"), "-n", namespace]).expect(0);
}

/// Until `workload` has `n` pods.
fn pods(sim: &World, workload: &str, n: usize) {
    let what = format!("{workload} to have {n} pods");
    sim.wait_for(BOUND, &what, |w| w.pods.values().filter(|p| p.wl.2 == workload).count() == n).unwrap();
}

fn worlds() -> Vec<Setting> {
    vec![
        Setting { name: "a healthy stack", options: World::options, setup: |_| {} },
        Setting {
            name: "right after a Docker restart",
            options: World::options,
            setup: |w| w.restart_docker(),
        },
        Setting {
            name: "a Docker restart, Kafka on its volume",
            options: || SimOptions { kafka_pvc: true, ..World::options() },
            setup: |w| w.restart_docker(),
        },
        Setting {
            // The recovery was interrupted: ztunnel and two workloads restarted since.
            name: "an interrupted recovery",
            options: World::options,
            setup: |sim| {
                sim.restart_docker();
                sim.kubectl(&["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"]).expect(0);
                sim.kubectl(&[
                    "rollout",
                    "status",
                    "daemonset/ztunnel",
                    "-n",
                    "istio-system",
                    "--timeout=30s",
                ])
                .expect(0);
                restart(sim, "ecom-db", "ecom");
                restart(sim, "redis", "infra");
                sim.wait_healthy(BOUND).unwrap();
            },
        },
        Setting {
            // The mesh's evidence on a healthy stack: Envoy's reset, ztunnel's and istio-cni's
            // lines, HBONE blocked for good; a FAILED connector.
            name: "stale, unreconciled and blocked pods, a FAILED connector",
            options: World::options,
            setup: |sim| {
                sim.fault(Fault::StaleWorkload { workload: "inventory-service".into() });
                sim.fault(Fault::CniReconcileFailed { workload: "pgadmin".into() });
                sim.fault(Fault::HboneBlocked { workload: "keycloak".into() });
                sim.fault(Fault::ConnectorTaskFailed { connector: "inventory-connector".into() });
                // Traffic to the blocked workload, so ztunnel logs it.
                let _ = sim.get(30000, Some("idp.keycloak.net"), "/realms/bookstore");
            },
        },
        Setting {
            // Each trouble on a new pod of its workload, as a restart makes them.
            name: "pods in trouble after their restart",
            options: World::options,
            setup: |sim| {
                for (fault, workload, ns) in [
                    (Fault::CrashLoop { workload: "redis".into() }, "redis", "infra"),
                    (
                        Fault::ImagePullBackOff {
                            workload: "prometheus".into(),
                            error: PullError::NotFound,
                            secs: None,
                        },
                        "prometheus",
                        "observability",
                    ),
                    (
                        Fault::ImagePullBackOff {
                            workload: "superset".into(),
                            error: PullError::RateLimited,
                            secs: None,
                        },
                        "superset",
                        "analytics",
                    ),
                    (Fault::SandboxCreationFails { workload: "pgadmin".into() }, "pgadmin", "infra"),
                    (
                        Fault::Unschedulable { workload: "flink-jobmanager".into() },
                        "flink-jobmanager",
                        "analytics",
                    ),
                    (Fault::ContainerConfigError { workload: "ui-service".into() }, "ui-service", "ecom"),
                    (Fault::RolloutNeverCompletes { workload: "keycloak".into() }, "keycloak", "identity"),
                ] {
                    sim.fault(fault);
                    restart(sim, workload, ns);
                }
                for w in ["prometheus", "superset", "pgadmin", "flink-jobmanager", "ui-service", "keycloak"] {
                    pods(sim, w, 2);
                }
                sim.wait_for(BOUND, "redis's crash loop", |w| {
                    w.pod_views()
                        .iter()
                        .any(|p| p.workload == "redis" && p.crash_loop && p.restart_count >= 3)
                })
                .unwrap();
            },
        },
        Setting {
            // Issue 22: the mesh re-adopted every pod but one database's after a Docker restart;
            // the app that needs it crash-loops (refused at 15008).
            name: "the mesh re-adopted all but one database",
            options: crate::readopt::readopted_options,
            setup: |sim| {
                crate::readopt::restart_readopted(sim);
            },
        },
        Setting {
            // Issue 22: an app in its crash-loop back-off whose database is Ready.
            name: "a crash-looping app whose database is Ready",
            options: World::options,
            setup: crate::readopt::crash_looping_app,
        },
        Setting {
            name: "ztunnel disconnected from istio-cni",
            options: World::options,
            setup: |sim| {
                sim.fault(Fault::ZtunnelDisconnects { secs: 600.0 });
                restart(sim, "pgadmin", "infra");
                pods(sim, "pgadmin", 2);
            },
        },
        Setting {
            name: "ztunnel crash-looping",
            options: World::options,
            setup: |sim| {
                sim.fault(Fault::CrashLoop { workload: "ztunnel".into() });
                sim.kubectl(&["rollout", "restart", "daemonset/ztunnel", "-n", "istio-system"]).expect(0);
                sim.wait_for(BOUND, "ztunnel's crash loop", |w| {
                    w.pod_views()
                        .iter()
                        .any(|p| p.workload == "ztunnel" && p.crash_loop && p.restart_count >= 3)
                })
                .unwrap();
            },
        },
        Setting {
            name: "Connect never reachable",
            options: World::options,
            setup: |sim| sim.fault(Fault::ConnectReset { count: 1_000_000 }),
        },
        Setting {
            name: "Connect answering 409 for every connector",
            options: World::options,
            setup: |sim| sim.fault(Fault::Connect409Storm { message: String::new(), count: 1_000_000 }),
        },
        Setting {
            name: "Connect answering an HTML 502 page",
            options: World::options,
            setup: |sim| sim.fault(Fault::ConnectHtml502 { count: 1_000_000 }),
        },
        Setting {
            name: "a secret key missing",
            options: World::options,
            setup: |sim| sim.fault(Fault::RemoveSecretKey { key: "INVENTORY_DB_USER".into() }),
        },
        Setting {
            name: "the secret missing",
            options: World::options,
            setup: |sim| {
                sim.kubectl(&["delete", "secret", "debezium-db-credentials", "-n", "infra"]).expect(0);
            },
        },
        Setting {
            name: "the node container stopped",
            options: World::options,
            setup: |sim| {
                sim.docker(&["stop", "bookstore-control-plane"]).expect(0);
            },
        },
        Setting { name: "Docker down", options: World::options, setup: |sim| sim.docker_stop() },
        Setting {
            name: "a node without the new port mappings",
            options: || SimOptions { old_cluster: true, ..World::options() },
            setup: |sim| sim.docker_restart(),
        },
        Setting {
            name: "the kube API refusing",
            options: World::options,
            setup: |sim| {
                sim.rewrite(
                    "stack.yaml",
                    "cluster: kind/cluster.yaml\n",
                    "cluster: kind/cluster.yaml\napi_timeout: 1s\n",
                );
                sim.fault(Fault::ApiRefuseFor { secs: 600.0 });
            },
        },
        Setting {
            name: "the kind context missing from the kubeconfig",
            options: World::options,
            setup: |sim| {
                let empty = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n";
                std::fs::write(sim.kubeconfig_path(), empty).unwrap();
            },
        },
        Setting {
            name: "a second control plane and the legacy proxies",
            options: || SimOptions { legacy_proxies: true, ..World::options() },
            setup: |sim| sim.fault(Fault::ExtraControlPlane),
        },
        Setting {
            name: "a stack workload the cluster lacks",
            options: World::options,
            setup: |sim| {
                sim.rewrite(
                    "stack.yaml",
                    "  - { name: ui-service,",
                    "  - { name: ghost-service, namespace: ecom, timeout: 20s }\n  - { name: ui-service,",
                )
            },
        },
        Setting {
            name: "a connector file that is not JSON",
            options: World::options,
            setup: |sim| sim.rewrite("debezium/connectors/ecom-connector.json", "{", "{ name: "),
        },
    ]
}

/// What one side calls broken (doctor) or acts on (up).
#[derive(Debug, Default)]
struct Verdicts {
    code: i32,
    /// Workload (or `ztunnel`) → what says so.
    workloads: BTreeMap<String, Vec<String>>,
    connectors: BTreeMap<String, Vec<String>>,
}

/// Doctor's errors, by the workloads and connectors they name: pods by their workload, routes by
/// the workload they serve, deployments by name, connectors by name (Connect not answering: all).
fn doctor(run: &Run, stack: &Stack, pods: &BTreeMap<String, String>) -> Verdicts {
    let mut v = Verdicts { code: run.code, ..Verdicts::default() };
    for line in run.stdout.lines() {
        let e: Stamped = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Event::Finding(Finding { id, severity: Severity::Error, subject, .. }) = e.event else {
            continue;
        };
        let subjects: Vec<&str> = subject.split(", ").collect();
        let name = |map: &mut BTreeMap<String, Vec<String>>, what: &str| {
            map.entry(what.to_string()).or_default().push(id.clone())
        };
        match id.as_str() {
            "connect-not-answering" => {
                stack.connect.connectors.iter().for_each(|c| name(&mut v.connectors, &c.name))
            }
            i if i.starts_with("connector")
                && i != "connector-provider-undeclared"
                && i != "connector-placeholder-keyless" =>
            {
                subjects.iter().for_each(|s| name(&mut v.connectors, s))
            }
            "ztunnel-stale" => name(&mut v.workloads, &stack.mesh.daemonset),
            "gateway-upstream-reset" | "route-failing" => {
                for s in &subjects {
                    let serves =
                        stack.smoke.checks.iter().find(|c| c.name == *s).and_then(|c| c.serves.clone());
                    if let Some(w) = serves.filter(|w| stack.index(w).is_some()) {
                        name(&mut v.workloads, &w);
                    }
                }
            }
            _ => {
                for s in &subjects {
                    let Some((ns, rest)) = s.split_once('/') else { continue };
                    // A pod by its workload (the world's own word; a pod gone since, by its name),
                    // a deployment by its name.
                    let by_name = stack
                        .workloads
                        .iter()
                        .filter(|w| w.namespace == ns && rest.starts_with(&format!("{}-", w.name)))
                        .max_by_key(|w| w.name.len())
                        .map(|w| w.name.clone());
                    if let Some(w) = pods.get(*s) {
                        name(&mut v.workloads, w);
                    } else if stack.index_of(ns, rest).is_some() {
                        name(&mut v.workloads, rest);
                    } else if let Some(w) = by_name {
                        name(&mut v.workloads, &w);
                    }
                }
            }
        }
    }
    v
}

/// What `up --dry-run` restarts, waits for and registers: its decision lines (`#   restart
/// ecom-db: …`), or the workloads a resumed bootstrap applies.
fn up(run: &Run) -> (Verdicts, BTreeSet<String>) {
    let mut v = Verdicts { code: run.code, ..Verdicts::default() };
    let mut waits = BTreeSet::new();
    for line in run.stdout.lines() {
        let Some(decision) = line.strip_prefix("#   ") else { continue };
        let Some((head, why)) = decision.split_once(": ") else { continue };
        match head.split_once(' ') {
            Some(("restart", w)) => {
                v.workloads.insert(w.to_string(), vec![why.to_string()]);
            }
            Some(("register", c)) => {
                v.connectors.insert(c.to_string(), vec![why.to_string()]);
            }
            _ if head.starts_with("wait for ") => {
                waits.insert(head["wait for ".len()..].to_string());
            }
            _ => {}
        }
    }
    // `the stack is incomplete (ecom/ghost-service missing): resuming the bootstrap`
    if let Some(at) = run.stderr.find("the stack is incomplete (") {
        let rest = &run.stderr[at + "the stack is incomplete (".len()..];
        let list = rest.split(" missing)").next().unwrap_or("");
        for w in list.split(", ").filter_map(|s| s.split_once('/')).map(|(_, w)| w) {
            v.workloads.insert(w.to_string(), vec!["resumes the bootstrap".into()]);
        }
    }
    (v, waits)
}

/// Everything a connector needs, transitively (the Connect worker, its databases, what they need).
fn needs(stack: &Stack, connector: &str) -> BTreeSet<String> {
    let c = stack.connect.connectors.iter().find(|c| c.name == connector).expect("a stack connector");
    let mut out: Vec<String> =
        std::iter::once(stack.connect.workload.clone()).chain(c.needs.clone()).collect();
    let mut k = 0;
    while k < out.len() {
        for n in stack.workload(&out[k]).map(|w| w.needs.clone()).unwrap_or_default() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        k += 1;
    }
    out.into_iter().collect()
}

/// The disagreements between doctor's verdicts and up's plan, one line each.
fn disagreements(
    stack: &Stack,
    doctor: &Verdicts,
    (up, waits): &(Verdicts, BTreeSet<String>),
) -> Vec<String> {
    let mut out = Vec::new();
    if up.code != 0 {
        if doctor.code == 0 {
            out.push(format!("up refuses (exit {}), doctor finds nothing wrong", up.code));
        }
        return out;
    }
    for (w, ids) in &doctor.workloads {
        if !up.workloads.contains_key(w) && !waits.contains(w) {
            out.push(format!("doctor calls {w} broken ({}); up keeps it", ids.join(", ")));
        }
    }
    for (w, why) in &up.workloads {
        if !doctor.workloads.contains_key(w) {
            out.push(format!("up restarts {w} ({}); doctor finds nothing wrong with it", why.join("; ")));
        }
    }
    for (c, ids) in &doctor.connectors {
        if !up.connectors.contains_key(c) {
            out.push(format!("doctor calls connector {c} broken ({}); up keeps it", ids.join(", ")));
        }
    }
    for (c, why) in &up.connectors {
        let needed_broken = needs(stack, c).iter().any(|w| doctor.workloads.contains_key(w));
        if !doctor.connectors.contains_key(c) && !needed_broken {
            out.push(format!("up registers {c} ({}); doctor finds nothing wrong with it", why.join("; ")));
        }
    }
    out
}

/// One world: set up, both commands at once, their verdicts compared.
fn judge(world: &Setting) -> (String, Vec<String>) {
    let sim = World::start((world.options)());
    (world.setup)(&sim);
    let doctor_run = Test::new().world(&sim).args(["doctor", "--json"]).any_code().spawn();
    let up_run = Test::new().world(&sim).args(["up", "--dry-run"]).any_code().spawn();
    let doctor_run: Run = doctor_run.wait();
    let up_run: Run = up_run.wait();
    let pods: BTreeMap<String, String> =
        sim.pods().into_iter().map(|p| (format!("{}/{}", p.namespace, p.name), p.workload)).collect();
    let stack = bookstore::stack::load_for_diagnosis(Source::File(sim.stack_path()));
    let Ok(stack) = stack else {
        // A stack file up and doctor both refuse: nothing to compare but their exits.
        let d = Verdicts { code: doctor_run.code, ..Verdicts::default() };
        let u = (Verdicts { code: up_run.code, ..Verdicts::default() }, BTreeSet::new());
        let embedded = bookstore::stack::load(Source::Embedded).unwrap();
        let summary = format!("[{}] up exit {}, doctor exit {}", world.name, up_run.code, doctor_run.code);
        return (summary, disagreements(&embedded, &d, &u));
    };
    let d = doctor(&doctor_run, &stack, &pods);
    let u = up(&up_run);
    let summary = format!(
        "[{}] up exit {} restarts {:?} registers {:?} waits {:?}; doctor exit {} broken {:?} connectors {:?}",
        world.name,
        u.0.code,
        u.0.workloads.keys().collect::<Vec<_>>(),
        u.0.connectors.keys().collect::<Vec<_>>(),
        u.1,
        d.code,
        d.workloads.keys().collect::<Vec<_>>(),
        d.connectors.keys().collect::<Vec<_>>(),
    );
    let mut found = disagreements(&stack, &d, &u);
    if !found.is_empty() {
        found.push(format!(
            "--- doctor\n{}--- up --dry-run\n{}{}",
            doctor_run.stderr, up_run.stdout, up_run.stderr
        ));
    }
    (summary, found)
}

#[test]
fn doctor_and_up_agree_on_every_fault_world() {
    let worlds = worlds();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    // Three worlds at once: each is mostly waiting (its simulator's time, the two commands' reads).
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(world) = worlds.get(i) else { break };
                    let judged = judge(world);
                    results.lock().unwrap().push(judged);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut failures = Vec::new();
    for (summary, found) in &results {
        eprintln!("{summary}");
        if !found.is_empty() {
            failures.push(format!("{summary}\n  {}", found.join("\n  ")));
        }
    }
    eprintln!("agreement: {} worlds, {} disagreeing", results.len(), failures.len());
    assert_eq!(results.len(), worlds.len(), "a world did not finish");
    assert!(failures.is_empty(), "doctor and up disagree:\n{}", failures.join("\n\n"));
}
