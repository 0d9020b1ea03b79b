//! Helpers for the tests that run the binary against the simulator: start a world, run
//! `bookstore` in it, read `doctor --json`'s findings, rewrite the stack copy the binary reads.

use std::time::Duration;

use bookstore::event::{Event, Finding as Found, Severity, Stamped};
use bookstore_sim::{AuditEntry, Sim, SimOptions, Source};

use crate::harness::{BIN, HOSTILE, Run};

pub const SCALE: f64 = 0.05;

pub fn options() -> SimOptions {
    let mut secret = SimOptions::default().secret;
    secret.insert("ECOM_DB_PASSWORD".into(), HOSTILE.into());
    SimOptions { time_scale: SCALE, secret, ..SimOptions::default() }
}

pub fn start(opts: SimOptions) -> Sim {
    bookstore_sim::kit::healthy(opts, Duration::from_secs(30))
}

pub fn bookstore(sim: &Sim, args: &[&str]) -> Run {
    let mut cmd = sim.command(BIN);
    cmd.args(args).arg("--stack").arg(sim.stack_path()).env("NO_COLOR", "1").env("TMPDIR", sim.dir());
    Run::from(cmd.output().expect("bookstore runs"))
}

/// `bookstore doctor --json`: the human report (stderr) and the finding events (stdout).
pub struct Doctor {
    pub run: Run,
    pub findings: Vec<Found>,
    pub events: Vec<Stamped>,
}

impl Doctor {
    pub fn run(sim: &Sim) -> Doctor {
        Doctor::from(bookstore(sim, &["doctor", "--json"]))
    }

    /// What `bookstore doctor --json` printed.
    pub fn from(run: Run) -> Doctor {
        let events: Vec<Stamped> = run
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one event a line ({e}): {l}")))
            .collect();
        let findings = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Finding(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        Doctor { run, findings, events }
    }

    pub fn ids(&self) -> Vec<String> {
        self.findings.iter().map(|f| f.id.clone()).collect()
    }

    /// The finding with this id (panics naming the ids found, and the report).
    #[track_caller]
    pub fn finding(&self, id: &str) -> &Found {
        self.findings.iter().find(|f| f.id == id).unwrap_or_else(|| {
            panic!("no finding {id}; found {:?}\n--- stderr\n{}", self.ids(), self.run.stderr)
        })
    }

    pub fn has(&self, id: &str) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }

    /// All evidence lines of a finding, joined.
    #[track_caller]
    pub fn evidence(&self, id: &str) -> String {
        self.finding(id).evidence.join("\n")
    }

    #[track_caller]
    pub fn fix(&self, id: &str) -> String {
        self.finding(id).fix.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.id.clone()).collect()
    }
}

/// Replace text in a file of the stack copy the binary reads (`<sim>/infra/...`).
pub fn rewrite(sim: &Sim, rel: &str, from: &str, to: &str) {
    let path = sim.dir().join("infra").join(rel);
    let text = std::fs::read_to_string(&path).expect("stack file");
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write stack file");
}

pub fn kubectl(sim: &Sim, args: &[&str]) -> Run {
    let mut cmd = sim.command("kubectl");
    cmd.args(["--context", "kind-bookstore"]).args(args);
    Run::from(cmd.output().expect("kubectl runs"))
}

pub fn docker(sim: &Sim, args: &[&str]) -> Run {
    let mut cmd = sim.command("docker");
    cmd.args(args);
    Run::from(cmd.output().expect("docker runs"))
}

/// GET through a host port: (status, body), or None without an answer.
pub fn get(sim: &Sim, container_port: u16, path: &str) -> Option<(u16, String)> {
    get_as(sim, container_port, None, path)
}

/// GET through a host port with a Host header, as a browser on `myecom.net` would.
pub fn get_as(sim: &Sim, container_port: u16, host: Option<&str>, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let mut req = agent.get(format!("http://127.0.0.1:{}{path}", sim.host_port(container_port)));
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    let mut r = req.call().ok()?;
    let status = r.status().as_u16();
    Some((status, r.body_mut().read_to_string().unwrap_or_default()))
}

/// A Docker restart, then every pod Ready again and Connect answering (with no connectors, since
/// Kafka has no volume): what a user finds after restarting Docker Desktop.
pub fn docker_restart(sim: &Sim) {
    sim.docker_restart();
    sim.wait_healthy(Duration::from_secs(30)).expect("pods Ready again");
    eventually(Duration::from_secs(10), "Connect to answer after the restart", || {
        get(sim, 32300, "/connectors").filter(|(s, _)| *s == 200).map(|_| ())
    });
}

pub use bookstore_sim::kit::eventually;

fn t_of(audit: &[AuditEntry], pred: impl Fn(&AuditEntry) -> bool) -> Option<u64> {
    audit.iter().find(|e| pred(e)).map(|e| e.t_ms)
}

/// A recovery's audit log shows the guide's order: ztunnel's rollout completed before any
/// workload restart, one restart per workload, each database Ready before the apps that need it
/// restarted, and nothing deleted.
#[track_caller]
pub fn assert_recovery_order(audit: &[AuditEntry]) {
    let ztunnel_done =
        t_of(audit, |e| e.is_event("rollout-complete", "istio-system/ztunnel")).expect("ztunnel rolled out");
    let patches: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/deployments/"))
        .collect();
    assert_eq!(patches.len(), 16, "one restart per workload");
    assert!(patches.iter().all(|p| p.t_ms >= ztunnel_done), "a workload restarted before ztunnel was ready");
    for (app, ns, db) in [
        ("ecom-service", "ecom", "ecom-db"),
        ("inventory-service", "inventory", "inventory-db"),
        ("keycloak", "identity", "keycloak-db"),
        ("superset", "analytics", "analytics-db"),
        ("debezium", "infra", "kafka"),
    ] {
        let db_ready =
            t_of(audit, |e| e.is_event("rollout-complete", &format!("{ns}/{db}"))).expect("db rolled out");
        let app_patch = t_of(audit, |e| e.is_kube_patch_of("deployments", app)).expect("app restarted");
        assert!(
            app_patch >= db_ready,
            "{app} restarted at {app_patch} ms, before {db} was Ready at {db_ready} ms"
        );
    }
    assert!(audit.iter().all(|e| e.verb != "DELETE"), "recovery deleted something");
}

/// Every route of the stack answers 200 through its host port (with its Host header).
#[track_caller]
pub fn assert_every_route_answers(sim: &Sim) {
    for (port, host, path) in [
        (30000, Some("myecom.net"), "/"),
        (30000, Some("myecom.net"), "/ecom/books"),
        (30000, Some("myecom.net"), "/inven/health"),
        (30000, Some("idp.keycloak.net"), "/realms/bookstore"),
        (31111, None, "/misc/ping"),
        (32000, None, "/health"),
        (32100, None, "/kiali/"),
        (32200, None, "/overview"),
    ] {
        assert_eq!(get_as(sim, port, host, path).map(|(s, _)| s), Some(200), "{port} {host:?} {path}");
    }
}
