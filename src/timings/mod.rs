//! `--timings`: where a run's minutes went, after `cargo build --timings`. Pure: the run's own
//! events (the ones `--json` prints, kept in memory by `Ui::record`) go in, a [`Timeline`] comes
//! out, and the timeline renders as one self-contained HTML page (`html.rs`), a few lines of text
//! for the terminal (`text.rs`) or a JSON document ([`Timeline::to_json`]). No IO but in
//! `files.rs`, which writes them.
//!
//! A bar is a workload (its restart sent → Ready), a connector (registration begun → RUNNING) or a
//! phase (a step with no workload inside: preflight, `kind create`, the Istio install, the smoke
//! test …). Each is split into waiting for what it needs (from its step's start to its restart),
//! restarting/rolling out, and Ready (until the run ends).
//!
//! The critical path is the run's own: bookstore knows no latencies in advance, so it is the
//! longest chain through the plan's graph under the durations this run observed. Steps run one
//! after another; inside a step, a task waits for the tasks its `after` names (the edges of
//! `plan::graph`), and its own duration is restart → Ready. Whatever the wall time holds beyond the
//! chain is bookstore's own work between them (listing, starting the watch, spawning kubectl).

mod files;
mod html;
mod text;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::event::{Decided, DecisionAction, Event, Outcome, Stamped, Subject, TaskAction};

pub use files::write;
pub use html::html;
pub use text::text;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Phase,
    /// A workload restarted.
    Workload,
    /// The bootstrap: a workload's unit applied.
    Applied,
    /// A workload kept but waited for (its rollout was under way; `up`'s `wait`).
    Awaited,
    Connector,
    /// A bootstrap preparation: the Secrets, the Gateway API CRDs, Istio, an image.
    Prep,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Phase => "phase",
            Kind::Workload => "workload",
            Kind::Applied => "applied",
            Kind::Awaited => "awaited",
            Kind::Connector => "connector",
            Kind::Prep => "prep",
        }
    }
}

/// A workload's restart/keep decision (the `decision` event of the convergent `up`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub name: String,
    pub kind: Kind,
    pub namespace: Option<String>,
    /// What the plan made it wait for (`task_started`'s `after`).
    pub needs: Vec<String>,
    /// The one of `needs` whose readiness released it; None when it waited for nothing.
    pub released_by: Option<String>,
    /// What came just before it when nothing in `needs` did: the previous step's last bar.
    pub after_step: Option<String>,
    /// Index of the step it ran in.
    pub step: usize,
    /// Milliseconds from the run's start: its step began (it waits from here)…
    pub queued_ms: u64,
    /// …its restart was sent (or its registration, or the phase, began)…
    pub start_ms: u64,
    /// …it was Ready (RUNNING, the phase done); None when it never was.
    pub ready_ms: Option<u64>,
    pub failed: bool,
    /// The step's note, the connector's outcome, the checks that passed.
    pub note: String,
    pub decision: Option<Decision>,
    pub critical: bool,
}

impl Bar {
    /// A bar of `kind` in step `step` that waits from `queued_ms` and starts at `start_ms`.
    fn new(name: &str, kind: Kind, step: usize, queued_ms: u64, start_ms: u64) -> Bar {
        Bar {
            name: name.to_string(),
            kind,
            namespace: None,
            needs: Vec::new(),
            released_by: None,
            after_step: None,
            step,
            queued_ms,
            start_ms,
            ready_ms: None,
            failed: false,
            note: String::new(),
            decision: None,
            critical: false,
        }
    }

    pub fn waited_ms(&self) -> u64 {
        self.start_ms.saturating_sub(self.queued_ms)
    }

    /// Restart → Ready, or → the end of the run when it never became Ready.
    pub fn took_ms(&self, wall_ms: u64) -> u64 {
        self.ready_ms.unwrap_or(wall_ms).saturating_sub(self.start_ms)
    }

    /// The label: a step's title without its parenthesis ("Creating kind cluster bookstore").
    pub fn label(&self) -> &str {
        self.name.split(" (").next().unwrap_or(&self.name)
    }

    /// Why it started when it did, for the hover and the table.
    pub fn released_text(&self) -> String {
        match (&self.released_by, &self.after_step) {
            (Some(by), _) => format!("released by {by} Ready"),
            (None, Some(prev)) if !self.needs.is_empty() => {
                format!("its needs were done at once; started after {prev}")
            }
            (None, Some(prev)) => format!("started after {prev}"),
            (None, None) => "started with the run".to_string(),
        }
    }
}

/// A workload or connector the run kept (a `decision` with action `keep`, and no bar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub name: String,
    /// `Workload` or `Connector`.
    pub kind: Kind,
    pub namespace: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub command: String,
    pub outcome: String,
    pub exit_code: i64,
    /// Unix seconds of the run's start.
    pub started_unix: u64,
    pub wall_ms: u64,
    /// Child processes spawned, and by program.
    pub commands: u64,
    pub programs: BTreeMap<String, u64>,
    pub error: Option<String>,
    /// In the order they started.
    pub bars: Vec<Bar>,
    pub kept: Vec<Kept>,
    /// Indices into `bars`, first to last.
    pub critical: Vec<usize>,
    pub critical_ms: u64,
}

struct StepSpan {
    title: String,
    start_ms: u64,
    end_ms: Option<u64>,
    ok: bool,
    note: String,
    checks: Vec<String>,
}

/// Whom a task is about, as a bar: its name, its kind and its namespace.
fn subject(subject: &Subject, action: TaskAction) -> (String, Kind, Option<String>) {
    match subject {
        Subject::Workload { workload, namespace } => {
            let kind = match action {
                TaskAction::Wait => Kind::Awaited,
                TaskAction::Apply => Kind::Applied,
                TaskAction::Restart | TaskAction::Register | TaskAction::Prepare => Kind::Workload,
            };
            (workload.clone(), kind, Some(namespace.clone()))
        }
        Subject::Connector { connector } => (connector.clone(), Kind::Connector, None),
        Subject::Task { task } => (task.clone(), Kind::Prep, None),
    }
}

/// A bar and an event about the same workload, connector or preparation.
fn same(bar: &Bar, name: &str, kind: Kind) -> bool {
    let class = |k: Kind| match k {
        Kind::Workload | Kind::Awaited | Kind::Applied => 0,
        Kind::Connector => 1,
        Kind::Prep => 2,
        Kind::Phase => 3,
    };
    bar.name == name && bar.kind != Kind::Phase && class(bar.kind) == class(kind)
}

/// What the run's summary says.
#[derive(Default)]
struct Summary {
    command: String,
    outcome: String,
    exit_code: i64,
    duration_ms: u64,
    commands: u64,
    programs: BTreeMap<String, u64>,
}

impl Timeline {
    /// The timeline of a run from its events, in the order emitted; the `summary` event (wall
    /// time, child processes) is expected last. `started_unix`: the run's start, for the page.
    pub fn from_events(events: &[Stamped], started_unix: u64) -> Timeline {
        let mut steps: Vec<StepSpan> = Vec::new();
        let mut tasks: Vec<Bar> = Vec::new();
        let mut decisions: Vec<(String, Kind, String, Decision)> = Vec::new();
        let mut summary = Summary::default();
        let mut error = None;
        let mut last_t = 0;
        for Stamped { event, t_ms } in events {
            let t = *t_ms;
            last_t = last_t.max(t);
            let current = steps.len().checked_sub(1);
            let step_start = current.map_or(0, |i| steps[i].start_ms);
            // The task bar (name, kind, namespace) an event says is Ready, and its note.
            let mut ready: Option<(&str, Kind, Option<&str>, &str)> = None;
            match event {
                Event::StepStarted { step } => steps.push(StepSpan {
                    title: step.clone(),
                    start_ms: t,
                    end_ms: None,
                    ok: false,
                    note: String::new(),
                    checks: Vec::new(),
                }),
                Event::StepFinished { step, outcome, note, .. } => {
                    if let Some(s) = steps.iter_mut().rev().find(|s| s.title == *step && s.end_ms.is_none()) {
                        s.end_ms = Some(t);
                        s.ok = *outcome == Outcome::Ok;
                        s.note = note.clone();
                    }
                }
                Event::TaskStarted { subject: who, action, after, released_by } => {
                    let (name, kind, namespace) = subject(who, *action);
                    tasks.push(Bar {
                        namespace,
                        needs: after.clone(),
                        released_by: released_by.clone(),
                        ..Bar::new(&name, kind, current.unwrap_or(0), step_start, t)
                    });
                }
                Event::WorkloadReady { workload, namespace, .. } => {
                    ready = Some((workload, Kind::Workload, Some(namespace), ""));
                }
                Event::ConnectorRegistered { connector, note, .. } => {
                    ready = Some((connector, Kind::Connector, None, note));
                }
                Event::TaskDone { task, note, .. } => ready = Some((task, Kind::Prep, None, note)),
                Event::CheckPassed { check, .. } | Event::CheckFailed { check, .. } => {
                    if let Some(i) = current {
                        let mark = if matches!(event, Event::CheckPassed { .. }) { "✓" } else { "✗" };
                        steps[i].checks.push(format!("{mark} {check} at {}", secs(t)));
                    }
                }
                Event::Decision { subject, action, reason } => {
                    let (name, kind, namespace) = match subject {
                        Decided::Workload { workload, namespace } => {
                            (workload, Kind::Workload, namespace.clone())
                        }
                        Decided::Connector { connector } => (connector, Kind::Connector, String::new()),
                    };
                    let action = match action {
                        DecisionAction::Restart => "restart",
                        DecisionAction::Wait => "wait",
                        DecisionAction::Keep => "keep",
                        DecisionAction::Register => "register",
                    };
                    decisions.push((
                        name.clone(),
                        kind,
                        namespace,
                        Decision { action: action.to_string(), reason: reason.clone() },
                    ));
                }
                Event::Error { message, .. } => error = Some(message.clone()),
                Event::Summary { command, outcome, exit_code, duration_ms, commands, programs, .. } => {
                    summary = Summary {
                        command: command.clone(),
                        outcome: match outcome {
                            Outcome::Ok => "ok".into(),
                            Outcome::Failed => "failed".into(),
                        },
                        exit_code: i64::from(*exit_code),
                        duration_ms: *duration_ms,
                        commands: *commands as u64,
                        programs: programs.iter().map(|(p, n)| (p.clone(), *n as u64)).collect(),
                    }
                }
                // Not part of a timeline.
                Event::Info { .. }
                | Event::Warning { .. }
                | Event::Plan { .. }
                | Event::Finding(_)
                | Event::Watching { .. }
                | Event::DockerDown { .. }
                | Event::DockerUp { .. }
                | Event::NodeStarted { .. }
                | Event::NodeStopped { .. }
                | Event::NodeExited { .. }
                | Event::HealStarted { .. }
                | Event::HealFinished { .. }
                | Event::WatchingNodes { .. }
                | Event::NodeSeen { .. }
                | Event::HealOwed { .. } => {}
            }
            if let Some((name, kind, namespace, note)) = ready {
                let open = tasks.iter_mut().rev().find(|b| {
                    same(b, name, kind)
                        && b.ready_ms.is_none()
                        && (namespace.is_none() || b.namespace.as_deref() == namespace)
                });
                let bar = match open {
                    Some(bar) => bar,
                    // Readiness without a restart (a bootstrap tier's apply): it rolled out
                    // from its step's start.
                    None => {
                        tasks.push(Bar {
                            namespace: namespace.map(String::from),
                            ..Bar::new(name, kind, current.unwrap_or(0), step_start, step_start)
                        });
                        tasks.last_mut().expect("just pushed")
                    }
                };
                bar.ready_ms = Some(t);
                bar.note = note.to_string();
            }
        }
        let wall_ms = summary.duration_ms.max(last_t);

        // Steps without a task inside are phases; a step with tasks is shown by its tasks.
        let mut bars: Vec<Bar> = tasks;
        for (i, s) in steps.iter().enumerate() {
            if bars.iter().any(|b| b.step == i && b.kind != Kind::Phase) {
                continue;
            }
            let mut note = s.note.clone();
            if !s.checks.is_empty() {
                note = format!("{note} ({})", s.checks.join(", ")).trim().to_string();
            }
            bars.push(Bar {
                ready_ms: s.end_ms.filter(|_| s.ok),
                failed: s.end_ms.is_some() && !s.ok,
                note,
                ..Bar::new(&s.title, Kind::Phase, i, s.start_ms, s.start_ms)
            });
        }
        let failed_run = summary.outcome == "failed";
        for b in &mut bars {
            // A task never Ready in a failed run is where it stopped.
            if b.ready_ms.is_none() && failed_run {
                b.failed = true;
            }
            let decided = |(name, kind, ns, _): &&(String, Kind, String, Decision)| {
                same(b, name, *kind)
                    && (*kind == Kind::Connector || b.namespace.as_deref().is_none_or(|n| n == ns))
            };
            if let Some((_, _, _, d)) = decisions.iter().find(decided) {
                b.decision = Some(d.clone());
            }
        }
        bars.sort_by_key(|b| (b.start_ms, b.step));
        let kept = decisions
            .iter()
            .filter(|(name, kind, _, d)| d.action == "keep" && !bars.iter().any(|b| same(b, name, *kind)))
            .map(|(name, kind, ns, d)| Kept {
                name: name.clone(),
                kind: *kind,
                namespace: ns.clone(),
                reason: d.reason.clone(),
            })
            .collect();

        let Summary { command, outcome, exit_code, commands, programs, .. } = summary;
        let mut timeline = Timeline {
            command,
            outcome,
            exit_code,
            started_unix,
            wall_ms,
            commands,
            programs,
            error,
            bars,
            kept,
            critical: Vec::new(),
            critical_ms: 0,
        };
        timeline.link_steps();
        let (chain, total) = critical_path(&timeline.bars, wall_ms);
        for i in &chain {
            timeline.bars[*i].critical = true;
        }
        timeline.critical = chain;
        timeline.critical_ms = total;
        timeline
    }

    /// Each bar's predecessor when nothing it needs came later: the previous step's last bar.
    fn link_steps(&mut self) {
        let mut steps: Vec<usize> = self.bars.iter().map(|b| b.step).collect();
        steps.sort();
        steps.dedup();
        for (k, step) in steps.iter().enumerate() {
            let Some(prev) = k.checked_sub(1).map(|p| steps[p]) else { continue };
            let last = self
                .bars
                .iter()
                .filter(|b| b.step == prev)
                .max_by_key(|b| b.ready_ms.unwrap_or(self.wall_ms))
                .map(|b| b.label().to_string());
            for b in self.bars.iter_mut().filter(|b| b.step == *step) {
                b.after_step = last.clone();
            }
        }
    }

    /// The critical path as `ztunnel 0.6s → keycloak-db 0.7s → …`.
    pub fn chain_text(&self) -> String {
        self.critical
            .iter()
            .map(|i| {
                let b = &self.bars[*i];
                format!("{} {}", b.label(), secs(b.took_ms(self.wall_ms)))
            })
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// "kubectl 12, docker 2" (most first).
    pub fn programs_text(&self) -> String {
        let mut programs: Vec<(&String, &u64)> = self.programs.iter().collect();
        programs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        programs.iter().map(|(p, n)| format!("{p} {n}")).collect::<Vec<_>>().join(", ")
    }

    pub fn kubectl(&self) -> u64 {
        self.programs.get("kubectl").copied().unwrap_or(0)
    }

    /// The JSON document of `--timings=json` (schema in the README).
    pub fn to_json(&self) -> Value {
        let bars: Vec<Value> = self
            .bars
            .iter()
            .map(|b| {
                json!({
                    "name": b.name, "kind": b.kind.as_str(), "namespace": b.namespace,
                    "needs": b.needs, "released_by": b.released_by,
                    "queued_ms": b.queued_ms, "start_ms": b.start_ms, "ready_ms": b.ready_ms,
                    "waited_ms": b.waited_ms(), "took_ms": b.took_ms(self.wall_ms),
                    "outcome": if b.failed { "failed" } else if b.ready_ms.is_some() { "ok" } else { "unfinished" },
                    "critical": b.critical, "note": b.note,
                    "decision": b.decision.as_ref().map(|d| json!({"action": d.action, "reason": d.reason})),
                })
            })
            .collect();
        json!({
            "command": self.command, "outcome": self.outcome, "exit_code": self.exit_code,
            "started_at": utc(self.started_unix), "wall_ms": self.wall_ms,
            "commands": self.commands, "programs": self.programs, "error": self.error,
            "critical_path": {
                "ms": self.critical_ms,
                "chain": self.critical.iter().map(|i| self.bars[*i].label()).collect::<Vec<_>>(),
            },
            "bars": bars,
            "kept": self.kept.iter().map(|k| json!({"name": k.name, "kind": k.kind.as_str(), "namespace": k.namespace, "reason": k.reason})).collect::<Vec<_>>(),
        })
    }
}

/// The longest chain under the observed durations: steps one after another; inside a step each
/// task after the tasks it needs (those in the same step), a task needing none after the step's
/// start. Returns indices into `bars` (first to last) and the chain's length.
pub fn critical_path(bars: &[Bar], wall_ms: u64) -> (Vec<usize>, u64) {
    let mut steps: Vec<usize> = bars.iter().map(|b| b.step).collect();
    steps.sort();
    steps.dedup();
    let mut chain: Vec<usize> = Vec::new();
    let mut base = 0u64;
    for step in steps {
        let mut members: Vec<usize> = (0..bars.len()).filter(|i| bars[*i].step == step).collect();
        members.sort_by_key(|i| bars[*i].start_ms);
        // Finish along the longest chain to each member, and the member it came through.
        let mut finish: BTreeMap<usize, (u64, Option<usize>)> = BTreeMap::new();
        for _ in 0..members.len() {
            for &i in &members {
                if finish.contains_key(&i) {
                    continue;
                }
                let preds: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|j| *j != i && bars[i].needs.iter().any(|n| *n == bars[*j].name))
                    .collect();
                if preds.iter().any(|p| !finish.contains_key(p)) {
                    continue;
                }
                let from = preds.iter().map(|p| (finish[p].0, Some(*p))).max_by_key(|(t, _)| *t);
                let (start, via) = from.unwrap_or((base, None));
                finish.insert(i, (start + bars[i].took_ms(wall_ms), via));
            }
        }
        let Some((&end, &(t, _))) = finish.iter().max_by_key(|(i, (t, _))| (*t, std::cmp::Reverse(**i)))
        else {
            continue;
        };
        let mut inner = vec![end];
        while let Some(Some(prev)) = finish.get(inner.last().expect("non-empty")).map(|(_, v)| *v) {
            inner.push(prev);
        }
        inner.reverse();
        chain.extend(inner);
        base = t;
    }
    (chain, base)
}

/// Seconds as the page shows them: 0.6s, 12.3s, 1m30s.
pub fn secs(ms: u64) -> String {
    crate::ui::human(std::time::Duration::from_millis(ms))
}

/// Unix seconds as `2026-01-31T08:40:00Z`.
pub use crate::utc::format as utc;

/// The file-name stamp: `20260131T084000Z`.
pub fn stamp(unix: u64) -> String {
    utc(unix).replace(['-', ':'], "")
}

#[cfg(test)]
pub(crate) mod tests;
