//! The `--json` events: one typed protocol, written by `ui` (one JSON object a line on stdout,
//! kept in memory for `--timings`), read by `timings`, the benchmark, the tests and users'
//! scripts. Each is a variant of [`Event`], named by serde's tag `event`; every line also carries
//! `t_ms`, milliseconds since the run began ([`Stamped`]). A reader matches variants, never looks
//! a key up by its string. The README's table is tested against this enum (`tests` below).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An event as printed: the event and when it happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    #[serde(flatten)]
    pub event: Event,
    /// Milliseconds since the run began.
    pub t_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step of the run began (its title as the progress line shows it).
    StepStarted {
        step: String,
    },
    StepFinished {
        step: String,
        outcome: Outcome,
        note: String,
        duration_ms: u64,
    },
    Info {
        message: String,
    },
    Warning {
        message: String,
    },
    /// A task of the rollout or the bootstrap began: a restart sent, a kept workload's rollout
    /// waited for, a registration, a unit applied, a preparation; what the plan made it wait
    /// for, and which of those (the one done last) released it.
    TaskStarted {
        #[serde(flatten)]
        subject: Subject,
        action: TaskAction,
        after: Vec<String>,
        released_by: Option<String>,
    },
    /// A workload (ztunnel too) Ready, from its restart, or from its unit's apply in the
    /// bootstrap (then with the unit's first deployment and the task it was applied after).
    WorkloadReady {
        workload: String,
        namespace: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deployment: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A bootstrap preparation done: the Secrets, the Gateway API CRDs, Istio, an image.
    TaskDone {
        task: String,
        note: String,
        duration_ms: u64,
    },
    /// What the convergent `up` does with a workload (ztunnel too) or connector, and why.
    Decision {
        #[serde(flatten)]
        subject: Decided,
        action: DecisionAction,
        /// The reasons, `; `-joined.
        reason: String,
    },
    ConnectorRegistered {
        connector: String,
        note: String,
        duration_ms: u64,
    },
    CheckPassed {
        check: String,
        url: String,
    },
    CheckFailed {
        check: String,
        url: String,
        reason: String,
    },
    /// A line of `--dry-run`.
    Plan {
        line: String,
    },
    /// One of `doctor`'s findings.
    Finding(Finding),
    /// `watch`: the event stream (re)connected.
    Watching {
        cluster: String,
        node: String,
        started_at: Option<String>,
        /// The `--since` of its `<engine> events` (after the last event handled); none at first,
        /// and none from an engine that cannot replay (nerdctl).
        since: Option<String>,
        command: String,
        /// The node engine's program (`docker`, `podman`, `nerdctl`, …).
        engine: String,
    },
    DockerDown {
        message: String,
    },
    DockerUp {
        down_ms: u64,
    },
    NodeStarted {
        node: String,
        started_at: String,
        seen: Seen,
    },
    NodeStopped {
        node: String,
        exit_code: String,
    },
    /// The node is not running while Docker answers: stopped together with Docker (and not
    /// started again: the heal starts it), or stopped while Docker ran (left as it is).
    NodeExited {
        node: String,
        exit_code: String,
        stopped_with_docker: bool,
        action: NodeAction,
        /// The container's state (`exited`, podman's `created` after a reboot).
        state: String,
        /// Why it is judged stopped with the engine or not (`judge::engine::stopped_with_engine`).
        why: String,
    },
    HealStarted {
        heal: u32,
        reason: String,
        /// The heal starts the node first.
        start_node: bool,
    },
    HealFinished {
        heal: u32,
        outcome: HealOutcome,
        duration_ms: u64,
        commands: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// `watch --context` on a shared cluster: the Nodes' watch (re)started.
    WatchingNodes {
        cluster: String,
        context: String,
        command: String,
    },
    /// A Node seen for the first time, or with a new bootID.
    NodeSeen {
        node: String,
        boot_id: String,
        ready: Option<bool>,
    },
    /// A heal is due on a shared cluster (its first look, a reboot, a Ready back, a failing check).
    HealOwed {
        reason: String,
    },
    Error {
        message: String,
        exit_code: u8,
    },
    /// Always last.
    Summary {
        command: String,
        outcome: Outcome,
        exit_code: u8,
        duration_ms: u64,
        /// Child processes spawned, and the same by program.
        commands: usize,
        programs: BTreeMap<String, usize>,
        /// The files `--timings` wrote, when it was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timings: Option<Vec<String>>,
    },
}

/// A finding of `doctor`, as its event carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub subject: String,
    pub problem: String,
    pub evidence: Vec<String>,
    pub fix: String,
    pub note: Option<String>,
}

/// Whom a task or a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Subject {
    /// A workload (ztunnel too; in the bootstrap a unit) in its namespace.
    Workload {
        workload: String,
        namespace: String,
    },
    Connector {
        connector: String,
    },
    /// A bootstrap preparation: the Secrets, the Gateway API CRDs, Istio, an image.
    Task {
        task: String,
    },
}

impl Subject {
    pub fn name(&self) -> &str {
        match self {
            Subject::Workload { workload, .. } => workload,
            Subject::Connector { connector } => connector,
            Subject::Task { task } => task,
        }
    }
}

/// Whom a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Decided {
    Workload { workload: String, namespace: String },
    Connector { connector: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealOutcome {
    Ok,
    Failed,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    Restart,
    /// A kept workload's rollout waited for.
    Wait,
    Register,
    /// Bootstrap: a workload's unit applied.
    Apply,
    /// Bootstrap: a preparation.
    Prepare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    Restart,
    Wait,
    Keep,
    Register,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// How `watch` saw the node start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    /// Its `start` event.
    Event,
    /// A new `State.StartedAt` after a reconnect.
    Inspect,
    /// Found by the periodic check.
    Check,
    /// On the first connect: another start than the one the state file says was healed.
    State,
}

/// What `watch` does with a node that is not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    /// Stopped together with Docker, not started again by it: the heal starts it.
    Start,
    /// Stopped while Docker ran: left as it is.
    None,
}

/// The events of a run's `--json` stdout, in order (lines that are not events skipped).
pub fn parse(stdout: &str) -> Vec<Stamped> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

impl Outcome {
    pub fn of(ok: bool) -> Outcome {
        if ok { Outcome::Ok } else { Outcome::Failed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each event, every optional field given.
    fn samples() -> Vec<Event> {
        let s = |t: &str| t.to_string();
        let w = || Subject::Workload { workload: s("keycloak"), namespace: s("identity") };
        vec![
            Event::StepStarted { step: s("Observing the stack") },
            Event::StepFinished { step: s("x"), outcome: Outcome::Ok, note: s(""), duration_ms: 1 },
            Event::Info { message: s("m") },
            Event::Warning { message: s("m") },
            Event::TaskStarted {
                subject: w(),
                action: TaskAction::Restart,
                after: vec![s("keycloak-db")],
                released_by: Some(s("keycloak-db")),
            },
            Event::TaskStarted {
                subject: Subject::Connector { connector: s("ecom-connector") },
                action: TaskAction::Register,
                after: vec![],
                released_by: None,
            },
            Event::TaskStarted {
                subject: Subject::Task { task: s("Istio") },
                action: TaskAction::Prepare,
                after: vec![],
                released_by: None,
            },
            Event::WorkloadReady {
                workload: s("keycloak"),
                namespace: s("identity"),
                duration_ms: 1,
                deployment: Some(s("keycloak")),
                after: Some(s("Istio")),
            },
            Event::TaskDone { task: s("Istio"), note: s("Istio ready"), duration_ms: 1 },
            Event::Decision {
                subject: Decided::Workload { workload: s("keycloak"), namespace: s("identity") },
                action: DecisionAction::Keep,
                reason: s("healthy"),
            },
            Event::Decision {
                subject: Decided::Connector { connector: s("c") },
                action: DecisionAction::Register,
                reason: s("absent"),
            },
            Event::ConnectorRegistered { connector: s("c"), note: s("registered"), duration_ms: 1 },
            Event::CheckPassed { check: s("ui"), url: s("http://x") },
            Event::CheckFailed { check: s("ui"), url: s("http://x"), reason: s("503") },
            Event::Plan { line: s("kubectl get pods") },
            Event::Finding(Finding {
                id: s("ztunnel-stale"),
                severity: Severity::Error,
                subject: s("ztunnel"),
                problem: s("p"),
                evidence: vec![s("e")],
                fix: s("f"),
                note: Some(s("n")),
            }),
            Event::Watching {
                cluster: s("bookstore"),
                node: s("bookstore-control-plane"),
                started_at: Some(s("2026-01-01T00:00:00Z")),
                since: Some(s("1.0")),
                command: s("docker events"),
                engine: s("docker"),
            },
            Event::DockerDown { message: s("m") },
            Event::DockerUp { down_ms: 1 },
            Event::NodeStarted { node: s("n"), started_at: s("t"), seen: Seen::Event },
            Event::NodeStopped { node: s("n"), exit_code: s("137") },
            Event::NodeExited {
                node: s("n"),
                exit_code: s("0"),
                stopped_with_docker: true,
                action: NodeAction::Start,
                state: s("exited"),
                why: s("w"),
            },
            Event::HealStarted { heal: 1, reason: s("r"), start_node: false },
            Event::HealFinished {
                heal: 1,
                outcome: HealOutcome::Failed,
                duration_ms: 1,
                commands: 1,
                exit_code: Some(1),
                message: Some(s("m")),
                retry_in_ms: Some(1),
            },
            Event::WatchingNodes {
                cluster: s("c"),
                context: s("dev"),
                command: s("kubectl get nodes --watch"),
            },
            Event::NodeSeen { node: s("n"), boot_id: s("b"), ready: Some(true) },
            Event::HealOwed { reason: s("r") },
            Event::Error { message: s("m"), exit_code: 1 },
            Event::Summary {
                command: s("up"),
                outcome: Outcome::Ok,
                exit_code: 0,
                duration_ms: 1,
                commands: 1,
                programs: BTreeMap::from([(s("kubectl"), 1)]),
                timings: Some(vec![s("f.html")]),
            },
        ]
    }

    /// Every variant's name, from the enum itself: serde's error for an unknown tag lists them.
    fn variant_names() -> Vec<String> {
        let err = serde_json::from_str::<Event>(r#"{"event": "?"}"#).unwrap_err().to_string();
        let list = err.split("expected one of ").nth(1).expect("serde lists the variants");
        list.split('`').skip(1).step_by(2).map(String::from).collect()
    }

    fn name_and_fields(e: &Event) -> (String, Vec<String>) {
        let serde_json::Value::Object(map) = serde_json::to_value(e).unwrap() else { panic!("an object") };
        let name = map["event"].as_str().unwrap().to_string();
        (name, map.keys().filter(|k| *k != "event").cloned().collect())
    }

    #[test]
    fn every_event_reads_back_as_it_was_written() {
        for e in samples() {
            let line = serde_json::to_string(&Stamped { event: e.clone(), t_ms: 7 }).unwrap();
            assert!(line.starts_with("{\"event\":"), "{line}");
            let back: Stamped = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
            assert_eq!((back.event, back.t_ms), (e, 7), "{line}");
        }
        let mut sampled: Vec<String> = samples().iter().map(|e| name_and_fields(e).0).collect();
        sampled.dedup();
        assert_eq!(sampled, variant_names(), "one sample of each variant, in order");
    }

    /// The README's `--json` table names exactly these events, each with exactly its fields.
    #[test]
    fn the_readmes_event_table_is_this_enum() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let table = readme.split("### `--json` events").nth(1).expect("the README's event section");
        let mut documented: Vec<(String, Vec<String>)> = Vec::new();
        for row in table.lines().skip_while(|l| !l.starts_with("| event |")).skip(2) {
            if !row.starts_with('|') {
                break;
            }
            let cells: Vec<&str> =
                row.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
            let words = |cell: &str| -> Vec<String> {
                cell.split('`').skip(1).step_by(2).map(String::from).collect()
            };
            let mut fields = words(cells[1]);
            fields.push("t_ms".into());
            for name in words(cells[0]) {
                documented.push((name, fields.clone()));
            }
        }
        // Each event's fields, over every sample of it (a task is a workload's, a connector's or
        // a preparation's).
        let mut want: Vec<(String, Vec<String>)> = Vec::new();
        for (name, fields) in samples().iter().map(name_and_fields) {
            match want.iter_mut().find(|(n, _)| *n == name) {
                Some((_, all)) => {
                    all.extend(fields.into_iter().filter(|f| !all.contains(f)).collect::<Vec<_>>())
                }
                None => want.push((name, fields.into_iter().chain(["t_ms".to_string()]).collect())),
            }
        }
        for (name, fields) in &want {
            let Some((_, doc)) = documented.iter().find(|(n, _)| n == name) else {
                panic!("README: no row for `{name}`");
            };
            let (mut a, mut b) = (doc.clone(), fields.clone());
            a.sort();
            b.sort();
            assert_eq!(a, b, "README: the fields of `{name}`");
        }
        for (name, _) in &documented {
            assert!(want.iter().any(|(n, _)| n == name), "README: `{name}` is no event");
        }
    }
}
