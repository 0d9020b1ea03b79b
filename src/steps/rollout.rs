//! The rollout graph's executor: each task starts the moment what it waits for is done; restarts
//! that become due together share one `kubectl rollout restart`, across namespaces; one
//! `kubectl get --watch` serves every readiness wait; connectors register on their own threads.
//! The bootstrap runs the same graph with "apply, then wait" tasks beside the restarts (units
//! due together share one `kubectl apply`) and preparations its own code runs (`StartPrep`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::exec::Stream;
use crate::kube::{Rollout, deployment_rollout};
use crate::plan::{Graph, Order, Prep, Task};
use crate::secret::Secret;
use crate::ui::human;

use super::failfast::{FailFast, Needs, Waiting};
use super::{Ctx, connectors};

enum Msg {
    Event {
        namespace: String,
        name: String,
        generation: i64,
        rollout: Rollout,
        selector: BTreeMap<String, String>,
    },
    WatchEnded,
    Restarted(Result<()>),
    /// The pods a [`Task::Replace`] deletes are deleted (workload index).
    Deleted(usize, Result<()>),
    Registered(usize, Result<String>),
    /// Bootstrap: the apply of these units returned the generations it left.
    Applied(Vec<usize>, Result<BTreeMap<(String, String), i64>>),
    /// Bootstrap: a gateway of this unit is Programmed (or its wait failed).
    Programmed(usize, Result<()>),
    /// Bootstrap: a preparation is done, with the line that says so.
    Prepared(Prep, Result<String>),
}

enum State {
    Waiting,
    /// `needs_ready`: everything it needs was Ready when it was restarted (always so in graph
    /// order; not in the guide's phases).
    Restarting {
        since: Instant,
        before: i64,
        last: String,
        needs_ready: bool,
        /// A workload `up` left alone but waits for: not Ready by its deadline, it is restarted
        /// once (a pod stuck from an interrupted run), and the deadline starts again.
        restart_if_late: bool,
    },
    Registering {
        since: Instant,
    },
    /// Bootstrap: `applied` holds the generations the apply left (None until it returned).
    Applying {
        since: Instant,
        applied: Option<BTreeMap<(String, String), i64>>,
        programmed: usize,
    },
    Preparing {
        since: Instant,
    },
    Done,
}

/// Starts a bootstrap preparation the moment it is due; it reports through [`Prepared`].
pub type StartPrep<'p> = dyn Fn(Prep, Prepared) + 'p;

/// How a preparation reports that it is done (from any thread). Dropped unsent (its thread
/// ended without a word), it reports an error, so no wait hangs on it.
pub struct Prepared {
    tx: Option<Sender<Msg>>,
    prep: Prep,
}

impl Prepared {
    /// Done: the line to show (`Ok`), or the error that stops the bootstrap.
    pub fn send(mut self, result: Result<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Prepared(self.prep, result));
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let error = if crate::wait::interrupted() {
                Error::Interrupted
            } else {
                let what = format!("{:?}", self.prep);
                Error::step(
                    format!("the bootstrap's {what} stopped without a result"),
                    "run `bookstore up` again",
                )
            };
            let _ = tx.send(Msg::Prepared(self.prep, Err(error)));
        }
    }
}

/// The one `kubectl get deployments --watch` of a wait. kubectl exits 0 when the API server
/// drops the stream (a Docker restart, an API that flaps): the watch is then started again, and
/// its initial listing resyncs every object, at most `MAX_WATCH_RESTARTS` times.
struct Watch {
    stream: Stream,
    restarts: u32,
}

const MAX_WATCH_RESTARTS: u32 = 5;

/// Messages that arrive within this of each other are handled together ([`execute`]'s loop):
/// a watch line each for deployments that turned Ready at once.
const TOGETHER: Duration = Duration::from_millis(5);

/// How many restart kubectls are kept started ahead of need ([`Kubectl::warm_restarts`]).
///
/// [`Kubectl::warm_restarts`]: crate::kube::Kubectl::warm_restarts
pub const WARM: usize = 2;

impl Watch {
    fn start(ctx: &Ctx, tx: &Sender<Msg>) -> Result<Watch> {
        Ok(Watch { stream: stream(ctx, tx)?, restarts: 0 })
    }

    fn ended(&mut self, ctx: &Ctx, tx: &Sender<Msg>) -> Result<()> {
        self.restarts += 1;
        if self.restarts > MAX_WATCH_RESTARTS {
            return Err(Error::Command {
                line: self.stream.cmd().to_string(),
                status: "the watch kept ending".into(),
                stderr_tail: self.stream.stderr_tail(),
                next: "check that the Kubernetes API is stable, then run again".into(),
            });
        }
        self.stream = stream(ctx, tx)?;
        Ok(())
    }
}

/// Start the watch and a thread that turns its output into messages.
fn stream(ctx: &Ctx, tx: &Sender<Msg>) -> Result<Stream> {
    let mut stream = ctx.kube.watch_deployments().stream()?;
    let reader = stream.take_reader().ok_or_else(|| Error::step("watch has no output", "run again"))?;
    let tx = tx.clone();
    std::thread::spawn(move || pump(reader, &tx));
    Ok(stream)
}

fn pump(reader: impl BufRead, tx: &Sender<Msg>) {
    for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        let Ok(value) = value else { break };
        let obj = value.get("object").unwrap_or(&value);
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        let rollout = deployment_rollout(obj);
        let selector = obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        if tx.send(Msg::Event { namespace, name, generation, rollout, selector }).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::WatchEnded);
}

pub fn run(ctx: &Ctx, graph: &Graph) -> Result<()> {
    let stack = ctx.stack;
    let order = match graph.order {
        Order::Graph => "each when what it needs is Ready",
        Order::Phased => "databases first, then every app",
    };
    let restarts = graph.tasks.iter().filter(|(t, _)| matches!(t, Task::Restart(_))).count();
    let awaits = graph.tasks.iter().filter(|(t, _)| matches!(t, Task::Await(_))).count();
    let of = if restarts == stack.workloads.len() {
        String::new()
    } else {
        format!(" of {}", stack.workloads.len())
    };
    let waiting = if awaits > 0 { format!(", waiting for {awaits} more") } else { String::new() };
    let step = ctx.ui.start(&format!("Restarting {restarts}{of} workloads ({order}{waiting})"));

    // Everything that can be wrong with the input is checked before the first restart.
    let generation = ctx.deployments()?.clone();
    let absent: Vec<String> = graph
        .tasks
        .iter()
        .filter_map(|(t, _)| match t {
            Task::Restart(i) | Task::Await(i) | Task::Replace(i) => Some(&stack.workloads[*i]),
            Task::Register(_) | Task::Apply(_) | Task::Prep(_) => None,
        })
        .filter(|w| !generation.contains_key(&(w.namespace.clone(), w.name.clone())))
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect();
    if !absent.is_empty() {
        return Err(super::inputs::absent_error(ctx, &absent));
    }
    execute(ctx, graph, generation, &|_, _| {})?;
    step.done("all ready");
    Ok(())
}

/// The bootstrap graph: its units applied and waited for, its preparations started by
/// `start_prep`, its connectors registered; one line per task as it is done.
pub fn run_bootstrap(ctx: &Ctx, graph: &Graph, start_prep: &StartPrep) -> Result<()> {
    execute(ctx, graph, BTreeMap::new(), start_prep)
}

/// A task as the progress lines name it.
pub fn task_name(ctx: &Ctx, graph: &Graph, task: &Task) -> String {
    match task {
        Task::Prep(Prep::Image(i)) => graph.images[*i].name.clone(),
        other => other.name(ctx.stack).to_string(),
    }
}

fn execute(
    ctx: &Ctx,
    graph: &Graph,
    mut generation: BTreeMap<(String, String), i64>,
    start_prep: &StartPrep,
) -> Result<()> {
    let stack = ctx.stack;
    let units = &stack.bootstrap.units;
    // On a shared cluster Connect is a port-forward to the worker's pod kubectl picks when it
    // starts: opened when the first registration is due (after the worker's restart), not before.
    let mut connect = if stack.cluster.shared() { None } else { Some(connectors::connect(ctx)?) };
    // Each deployment's latest generation and rollout, from the watch (the bootstrap's waits).
    let mut latest: BTreeMap<(String, String), (i64, Rollout)> = BTreeMap::new();
    // The task that released each one (its prerequisite done last), for the progress lines.
    let mut via: BTreeMap<Task, Task> = BTreeMap::new();

    let (tx, rx) = mpsc::channel::<Msg>();
    let mut watch = Watch::start(ctx, &tx)?;
    let mut state: BTreeMap<Task, State> = graph.tasks.iter().map(|(t, _)| (*t, State::Waiting)).collect();
    let mut failfast = FailFast::new(ctx);
    // Tasks in the order they were done: the last of a task's prerequisites released it.
    let mut finished: Vec<Task> = Vec::new();
    // Workloads whose back-off pods are being deleted: their rollout is not done before.
    let mut deleting: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();

    loop {
        // Start every task whose prerequisites are done.
        let due: Vec<Task> = graph
            .tasks
            .iter()
            .filter(|(t, after)| {
                matches!(state.get(t), Some(State::Waiting))
                    && after.iter().all(|a| matches!(state.get(a), Some(State::Done)))
            })
            .map(|(t, _)| *t)
            .collect();
        // Every restart due now, in whatever namespace, goes in one `kubectl rollout restart`.
        let mut batch: Vec<(String, String)> = Vec::new();
        // Every unit due now goes in one `kubectl apply`.
        let mut apply: Vec<usize> = Vec::new();
        for task in &due {
            emit_started(ctx, graph, *task, &finished);
            if let Some(last) = released_by(graph, *task, &finished) {
                via.insert(*task, last);
            }
            match *task {
                Task::Await(i) | Task::Replace(i) => {
                    // No new generation: the current rollout (a replaced pod's: its ReplicaSet's
                    // new pod) is what is waited for.
                    let w = &stack.workloads[i];
                    let current =
                        generation.get(&(w.namespace.clone(), w.name.clone())).copied().unwrap_or(0);
                    let replace = matches!(task, Task::Replace(_));
                    let last =
                        if replace { "its pods in back-off deleted" } else { "waiting for its rollout" };
                    state.insert(
                        *task,
                        State::Restarting {
                            since: Instant::now(),
                            before: current - 1,
                            last: last.into(),
                            needs_ready: needs_done(stack, &state, i),
                            restart_if_late: !replace,
                        },
                    );
                    if replace {
                        deleting.insert(i);
                        send_deletes(ctx, &tx, i, graph.deletes.get(&i).cloned().unwrap_or_default());
                    }
                }
                Task::Restart(i) => {
                    let w = &stack.workloads[i];
                    batch.push((w.namespace.clone(), w.name.clone()));
                    let before = generation.get(&(w.namespace.clone(), w.name.clone())).copied().unwrap_or(0);
                    state.insert(
                        *task,
                        State::Restarting {
                            since: Instant::now(),
                            before,
                            last: "restart sent".into(),
                            needs_ready: needs_done(stack, &state, i),
                            restart_if_late: false,
                        },
                    );
                }
                Task::Register(i) => {
                    state.insert(*task, State::Registering { since: Instant::now() });
                    let d = ctx.desired(&stack.connect.connectors[i])?;
                    let api = match &connect {
                        Some(api) => api.clone(),
                        None => connect.insert(connectors::connect(ctx)?).clone(),
                    };
                    let (deadline, tx) = (stack.connect.timeout, tx.clone());
                    std::thread::spawn(move || {
                        let _ = tx.send(Msg::Registered(i, connectors::register(&api, &d, deadline)));
                    });
                }
                Task::Apply(u) => {
                    apply.push(u);
                    state.insert(
                        *task,
                        State::Applying { since: Instant::now(), applied: None, programmed: 0 },
                    );
                }
                Task::Prep(prep) => {
                    state.insert(*task, State::Preparing { since: Instant::now() });
                    start_prep(prep, Prepared { tx: Some(tx.clone()), prep });
                }
            }
        }
        if !apply.is_empty() {
            // The shared objects first in the stream.
            apply.sort_by_key(|u| (!units[*u].shared(), *u));
            let names: Vec<&str> = apply.iter().map(|u| units[*u].name.as_str()).collect();
            ctx.ui.info(&format!("apply {}", names.join(", ")));
            let text = crate::manifests::stream(apply.iter().flat_map(|u| &units[*u].docs));
            let cmd = ctx.kube.apply_objects(Secret::unregistered(text));
            let (kube, tx) = (ctx.kube.clone(), tx.clone());
            std::thread::spawn(move || {
                let result = kube.run(&cmd).and_then(|out| {
                    crate::kube::applied_generations(&out.stdout)
                        .map_err(|p| Error::step(format!("`{cmd}` printed {p}"), "run it by hand"))
                });
                let _ = tx.send(Msg::Applied(apply, result));
            });
        }
        if !batch.is_empty() {
            send_restarts(ctx, &tx, batch);
        }
        // The next restarts' kubectls start now, while what they wait for becomes Ready: they
        // then cost no process start-up on the critical path. Up to two: readiness a little
        // further apart than TOGETHER makes a second batch; never more than restarts are left.
        let left = state.iter().filter(|(t, s)| matches!((t, s), (Task::Restart(_), State::Waiting))).count();
        ctx.kube.warm_restarts(left.min(WARM));
        if state.values().all(|s| matches!(s, State::Done)) {
            break;
        }

        // Wait for the next message, or the earliest deadline.
        let deadline = state
            .iter()
            .filter_map(|(task, s)| match (task, s) {
                (Task::Restart(i) | Task::Await(i) | Task::Replace(i), State::Restarting { since, .. }) => {
                    Some(*since + stack.workloads[*i].timeout)
                }
                (Task::Apply(u), State::Applying { since, .. }) => Some(*since + units[*u].timeout),
                _ => None,
            })
            .min();
        let wait = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        let now_wall = crate::observe::now();
        let waiting: Vec<Waiting> = state
            .iter()
            .filter_map(|(task, s)| match (task, s) {
                (
                    Task::Restart(i) | Task::Await(i) | Task::Replace(i),
                    State::Restarting { since, needs_ready, .. },
                ) => Some(Waiting {
                    namespace: &stack.workloads[*i].namespace,
                    name: &stack.workloads[*i].name,
                    since: *since,
                    deadline: stack.workloads[*i].timeout,
                    newer_than: Some(now_wall.saturating_sub(since.elapsed().as_secs())),
                    needs: if *needs_ready {
                        Needs::ReadyAtStart
                    } else if needs_done(stack, &state, *i) {
                        Needs::ReadySince
                    } else {
                        Needs::Pending
                    },
                }),
                _ => None,
            })
            .chain(state.iter().flat_map(|(task, s)| {
                match (task, s) {
                    // A unit is applied once what it needs is Ready: every crash counts.
                    (Task::Apply(u), State::Applying { since, applied: Some(_), .. }) => units[*u]
                        .ready
                        .iter()
                        .map(|(ns, n)| Waiting {
                            namespace: ns,
                            name: n,
                            since: *since,
                            deadline: units[*u].timeout,
                            newer_than: None,
                            needs: Needs::ReadyAtStart,
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            }))
            .collect();
        failfast.check(ctx, &waiting)?;
        // Take every message that arrives within TOGETHER of the first, so readiness that
        // arrives together (deployments restarted together turn Ready within milliseconds of
        // each other, one watch line each) starts its dependents together: one restart command.
        let first = rx.recv_timeout(wait.min(Duration::from_millis(200)));
        let until = Instant::now() + TOGETHER;
        let more: Vec<Msg> = if first.is_ok() {
            std::iter::from_fn(|| rx.recv_timeout(until.saturating_duration_since(Instant::now())).ok())
                .collect()
        } else {
            Vec::new()
        };
        for received in std::iter::once(first).chain(more.into_iter().map(Ok)) {
            match received {
                Ok(Msg::Event { namespace, name, generation: g, rollout, selector }) => {
                    failfast.learn(&namespace, &name, selector);
                    generation.insert((namespace.clone(), name.clone()), g);
                    if let Rollout::Failed(why) = &rollout
                        && let Some(u) = applying_unit(&state, units, &namespace, &name)
                    {
                        return Err(Error::step(
                            format!(
                                "deployment {namespace}/{name} ({}): {why}\n{}",
                                units[u].name,
                                ctx.kube.diagnose(&namespace, &name)
                            ),
                            describe_hint(ctx, &namespace, &name),
                        ));
                    }
                    latest.insert((namespace.clone(), name.clone()), (g, rollout.clone()));
                    let Some(i) = stack.index_of(&namespace, &name) else {
                        continue;
                    };
                    let task = [Task::Await(i), Task::Replace(i)]
                        .into_iter()
                        .find(|t| state.contains_key(t))
                        .unwrap_or(Task::Restart(i));
                    if let Some(State::Restarting { since, before, last, .. }) = state.get_mut(&task) {
                        if g <= *before || deleting.contains(&i) {
                            continue; // an event from before our restart
                        }
                        match rollout {
                            Rollout::Done => {
                                ctx.ui.ok_item(
                                    &format!("{name} ready ({})", human(since.elapsed())),
                                    "workload_ready",
                                    json!({"workload": name, "namespace": namespace,
                                           "duration_ms": since.elapsed().as_millis() as u64}),
                                );
                                state.insert(task, State::Done);
                                finished.push(task);
                            }
                            Rollout::Waiting(why) => *last = why,
                            Rollout::Failed(why) => {
                                return Err(Error::step(
                                    format!(
                                        "deployment {namespace}/{name}: {why}\n{}",
                                        ctx.kube.diagnose(&namespace, &name)
                                    ),
                                    describe_hint(ctx, &namespace, &name),
                                ));
                            }
                        }
                    }
                }
                Ok(Msg::Restarted(result)) => result?,
                Ok(Msg::Deleted(i, result)) => {
                    result?;
                    deleting.remove(&i);
                }
                Ok(Msg::Applied(batch, result)) => {
                    let applied = result?;
                    for u in batch {
                        if let Some(State::Applying { applied: a, .. }) = state.get_mut(&Task::Apply(u)) {
                            *a = Some(applied.clone());
                        }
                        for (ns, name) in &units[u].programmed {
                            let cmd = ctx.kube.wait_condition(
                                "Programmed",
                                &[format!("gateways.gateway.networking.k8s.io/{name}")],
                                Some(ns),
                                units[u].timeout,
                            );
                            let (kube, tx) = (ctx.kube.clone(), tx.clone());
                            std::thread::spawn(move || {
                                let _ = tx.send(Msg::Programmed(u, kube.run(&cmd).map(|_| ())));
                            });
                        }
                    }
                }
                Ok(Msg::Programmed(u, result)) => {
                    result?;
                    if let Some(State::Applying { programmed, .. }) = state.get_mut(&Task::Apply(u)) {
                        *programmed += 1;
                    }
                }
                Ok(Msg::Prepared(prep, result)) => {
                    let line = result?;
                    let task = Task::Prep(prep);
                    if let Some(State::Preparing { since }) = state.get(&task) {
                        ctx.ui.ok_item(
                            &format!("{line} ({})", human(since.elapsed())),
                            "task_done",
                            json!({"task": task_name(ctx, graph, &task), "note": line,
                                   "duration_ms": since.elapsed().as_millis() as u64}),
                        );
                    }
                    state.insert(task, State::Done);
                    finished.push(task);
                }
                Ok(Msg::Registered(i, result)) => {
                    let note = result?;
                    let task = Task::Register(i);
                    if let Some(State::Registering { since }) = state.get(&task) {
                        let name = &stack.connect.connectors[i].name;
                        ctx.ui.ok_item(
                            &format!("connector {name} {note} ({})", human(since.elapsed())),
                            "connector_registered",
                            json!({"connector": name, "note": note, "duration_ms": since.elapsed().as_millis() as u64}),
                        );
                    }
                    state.insert(task, State::Done);
                    finished.push(task);
                }
                Ok(Msg::WatchEnded) => watch.ended(ctx, &tx)?,
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    // A workload waited for that did not become Ready by its deadline: restart it.
                    let mut late: Vec<(String, String)> = Vec::new();
                    for (task, s) in state.iter_mut() {
                        if let (
                            Task::Await(i),
                            State::Restarting {
                                since, before, last, restart_if_late: restart @ true, ..
                            },
                        ) = (task, s)
                        {
                            let w = &stack.workloads[*i];
                            if now >= *since + w.timeout {
                                ctx.ui.info(&format!(
                                    "{} did not become Ready within {} ({last}): restarting it",
                                    w.name,
                                    human(w.timeout)
                                ));
                                late.push((w.namespace.clone(), w.name.clone()));
                                *before = generation
                                    .get(&(w.namespace.clone(), w.name.clone()))
                                    .copied()
                                    .unwrap_or(0);
                                (*since, *last, *restart) = (now, "restart sent".into(), false);
                            }
                        }
                    }
                    if !late.is_empty() {
                        send_restarts(ctx, &tx, late);
                    }
                    for (task, s) in &state {
                        if let (
                            Task::Restart(i) | Task::Await(i) | Task::Replace(i),
                            State::Restarting { since, last, .. },
                        ) = (task, s)
                        {
                            let w = &stack.workloads[*i];
                            if now >= *since + w.timeout {
                                return Err(Error::Timeout {
                                    what: format!(
                                        "deployment {}/{} to finish its rollout",
                                        w.namespace, w.name
                                    ),
                                    after: w.timeout,
                                    detail: format!(
                                        "last status: {last}\n{}",
                                        ctx.kube.diagnose(&w.namespace, &w.name)
                                    ),
                                    next: describe_hint(ctx, &w.namespace, &w.name),
                                });
                            }
                        }
                        if let (Task::Apply(u), State::Applying { since, applied, .. }) = (task, s) {
                            let unit = &units[*u];
                            if now >= *since + unit.timeout {
                                let left = unit_left(unit, applied.as_ref(), &latest);
                                let (ns, name) = left.first().map(|(k, _)| k.clone()).unwrap_or_default();
                                let detail: Vec<String> =
                                    left.iter().map(|((ns, n), why)| format!("{ns}/{n}: {why}")).collect();
                                return Err(Error::Timeout {
                                    what: format!("{} to be applied and roll out", unit.name),
                                    after: unit.timeout,
                                    detail: format!(
                                        "{}\n{}",
                                        detail.join("\n"),
                                        ctx.kube.diagnose(&ns, &name)
                                    ),
                                    next: describe_hint(ctx, &ns, &name),
                                });
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("the executor holds a sender"),
            }
        }
        // Units whose deployments have all rolled out (and gateways are Programmed) are done.
        let ready: Vec<(usize, Instant)> = state
            .iter()
            .filter_map(|(task, s)| match (task, s) {
                (Task::Apply(u), State::Applying { since, applied: Some(applied), programmed })
                    if *programmed >= units[*u].programmed.len()
                        && unit_left(&units[*u], Some(applied), &latest).is_empty() =>
                {
                    Some((*u, *since))
                }
                _ => None,
            })
            .collect();
        for (u, since) in ready {
            let task = Task::Apply(u);
            let unit = &units[u];
            let after = via.get(&task).map(|t| task_name(ctx, graph, t)).unwrap_or_default();
            let (ns, name) = unit.ready.first().cloned().unwrap_or_default();
            ctx.ui.ok_item(
                &format!("{} ready ({}; applied once {after} was done)", unit.name, human(since.elapsed())),
                "workload_ready",
                json!({"workload": unit.name, "namespace": ns, "deployment": name, "after": after,
                       "duration_ms": since.elapsed().as_millis() as u64}),
            );
            state.insert(task, State::Done);
            finished.push(task);
        }
    }
    drop(watch);
    Ok(())
}

/// One `kubectl rollout restart` for every deployment (namespace, name) of `batch`, on its own
/// thread (a warm kubectl when one was started ahead); its result comes back as
/// [`Msg::Restarted`].
fn send_restarts(ctx: &Ctx, tx: &Sender<Msg>, batch: Vec<(String, String)>) {
    let names: Vec<String> = batch.iter().map(|(ns, n)| format!("{n} ({ns})")).collect();
    ctx.ui.info(&format!("restart {}", names.join(", ")));
    let (kube, tx) = (ctx.kube.clone(), tx.clone());
    std::thread::spawn(move || {
        let targets: Vec<(&str, &str, &str)> =
            batch.iter().map(|(ns, n)| ("deployment", ns.as_str(), n.as_str())).collect();
        let _ = tx.send(Msg::Restarted(kube.restart_all(&targets)));
    });
}

/// Delete the pods a [`Task::Replace`] of workload `i` names, on their own thread; the result
/// comes back as [`Msg::Deleted`]. A pod already gone (its controller replaced it meanwhile) is
/// done.
fn send_deletes(ctx: &Ctx, tx: &Sender<Msg>, i: usize, pods: Vec<crate::cluster::PodRestart>) {
    let names: Vec<String> = pods.iter().map(|p| format!("{} ({})", p.name(), p.namespace())).collect();
    ctx.ui.info(&format!(
        "delete {} (its back-off ends with it; its ReplicaSet recreates it)",
        names.join(", ")
    ));
    let (kube, tx) = (ctx.kube.clone(), tx.clone());
    std::thread::spawn(move || {
        let result = pods.iter().try_for_each(|p| match kube.run(&kube.delete_pod(p)) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("NotFound") => Ok(()),
            Err(e) => Err(e),
        });
        let _ = tx.send(Msg::Deleted(i, result));
    });
}

/// The unit being applied that deploys this deployment.
fn applying_unit(
    state: &BTreeMap<Task, State>,
    units: &[crate::stack::Unit],
    namespace: &str,
    name: &str,
) -> Option<usize> {
    units
        .iter()
        .position(|u| u.ready.iter().any(|(ns, n)| ns == namespace && n == name))
        .filter(|u| matches!(state.get(&Task::Apply(*u)), Some(State::Applying { applied: Some(_), .. })))
}

/// A unit's deployments not rolled out yet at the generation its apply left (any generation for
/// one a controller creates), with the last status of each.
fn unit_left(
    unit: &crate::stack::Unit,
    applied: Option<&BTreeMap<(String, String), i64>>,
    latest: &BTreeMap<(String, String), (i64, Rollout)>,
) -> Vec<((String, String), String)> {
    unit.ready
        .iter()
        .filter_map(|key| {
            let wanted = applied.and_then(|a| a.get(key)).copied().unwrap_or(0);
            match latest.get(key) {
                Some((g, Rollout::Done)) if *g >= wanted => None,
                Some((_, Rollout::Waiting(why))) => Some((key.clone(), why.clone())),
                Some((_, Rollout::Done)) => Some((key.clone(), "the new generation not observed yet".into())),
                Some((_, Rollout::Failed(why))) => Some((key.clone(), why.clone())),
                None => Some((key.clone(), "not created yet".into())),
            }
        })
        .collect()
}

/// Wait until each deployment (namespace, name) has finished its current rollout (no restart):
/// the bootstrap's tier waits. One watch for all of them.
pub fn await_ready(ctx: &Ctx, targets: &[(String, String)], timeout: Duration) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut watch = Watch::start(ctx, &tx)?;
    let mut last: BTreeMap<(String, String), String> =
        targets.iter().map(|t| (t.clone(), "not created yet".to_string())).collect();
    let mut failfast = FailFast::new(ctx);
    while !last.is_empty() {
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        // A workload of the tier that needs another of it crash-loops until that one is Ready
        // (flink-taskmanager, flink-jobmanager): the kubelet's back-off ends it, so it waits.
        let needs = |ns: &str, name: &str| -> Needs {
            let stack = ctx.stack;
            let Some(w) = stack.index_of(ns, name).map(|i| &stack.workloads[i]) else {
                return Needs::ReadyAtStart;
            };
            let in_tier: Vec<(String, String)> = w
                .needs
                .iter()
                .filter_map(|n| stack.workload(n))
                .map(|x| (x.namespace.clone(), x.name.clone()))
                .filter(|k| targets.contains(k))
                .collect();
            if in_tier.iter().any(|k| last.contains_key(k)) {
                Needs::Pending
            } else if in_tier.is_empty() {
                Needs::ReadyAtStart
            } else {
                Needs::ReadySince
            }
        };
        let waiting: Vec<Waiting> = last
            .keys()
            .map(|(ns, name)| Waiting {
                namespace: ns,
                name,
                since: start,
                deadline: timeout,
                newer_than: None,
                needs: needs(ns, name),
            })
            .collect();
        failfast.check(ctx, &waiting)?;
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let detail: Vec<String> = last.iter().map(|((ns, n), why)| format!("{ns}/{n}: {why}")).collect();
            let (ns, name) = last.keys().next().cloned().unwrap_or_default();
            return Err(Error::Timeout {
                what: format!("{} deployment(s) to roll out", last.len()),
                after: timeout,
                detail: detail.join("\n"),
                next: describe_hint(ctx, &ns, &name),
            });
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(Msg::Event { namespace, name, rollout, selector, .. }) => {
                failfast.learn(&namespace, &name, selector);
                let key = (namespace, name);
                if let Some(why) = last.get_mut(&key) {
                    match rollout {
                        Rollout::Done => {
                            ctx.ui.ok_item(
                                &format!("{} ready ({})", key.1, human(start.elapsed())),
                                "workload_ready",
                                json!({"workload": key.1, "namespace": key.0,
                                       "duration_ms": start.elapsed().as_millis() as u64}),
                            );
                            last.remove(&key);
                        }
                        Rollout::Waiting(w) => *why = w,
                        Rollout::Failed(f) => {
                            return Err(Error::step(
                                format!("deployment {}/{}: {f}", key.0, key.1),
                                describe_hint(ctx, &key.0, &key.1),
                            ));
                        }
                    }
                }
            }
            Ok(Msg::WatchEnded) => watch.ended(ctx, &tx)?,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("this function holds a sender"),
        }
    }
    drop(watch);
    Ok(())
}

/// Which stack workloads the cluster lacks (a bootstrap that stopped halfway).
pub fn missing_workloads(ctx: &Ctx) -> Result<Vec<String>> {
    let present = ctx.deployments()?;
    Ok(crate::judge::workloads::missing(ctx.stack, |ns, name| {
        present.contains_key(&(ns.to_string(), name.to_string()))
    }))
}

/// The `task_started` event: a restart sent, a wait for a kept workload's rollout or a
/// registration begun, what the plan made it wait for, and which of those released it (the last
/// one done).
fn emit_started(ctx: &Ctx, graph: &Graph, task: Task, finished: &[Task]) {
    let stack = ctx.stack;
    let name = |t: &Task| task_name(ctx, graph, t);
    let released_by = released_by(graph, task, finished).map(|t| name(&t));
    let after: Vec<String> = graph.after(task).iter().map(name).collect();
    let mut fields = match task {
        Task::Restart(i) | Task::Await(i) | Task::Replace(i) => json!({"workload": name(&task),
            "namespace": stack.workloads[i].namespace,
            "action": if matches!(task, Task::Await(_)) { "wait" } else { "restart" }}),
        Task::Register(_) => json!({"connector": name(&task), "action": "register"}),
        Task::Apply(_) => json!({"workload": name(&task), "action": "apply"}),
        Task::Prep(_) => json!({"task": name(&task), "action": "prepare"}),
    };
    fields["after"] = json!(after);
    fields["released_by"] = json!(released_by);
    ctx.ui.emit("task_started", fields);
}

/// Of what `task` waits for, the one done last: what released it.
fn released_by(graph: &Graph, task: Task, finished: &[Task]) -> Option<Task> {
    let after = graph.after(task);
    finished.iter().rev().find(|t| after.contains(t)).copied()
}

/// Everything workload `i` needs is Ready: its task is done, or it has none (kept, Ready).
fn needs_done(stack: &crate::stack::Stack, state: &BTreeMap<Task, State>, i: usize) -> bool {
    stack.workloads[i].needs.iter().all(|need| {
        stack.index(need).is_none_or(|j| {
            [Task::Restart(j), Task::Await(j), Task::Replace(j)]
                .iter()
                .filter_map(|t| state.get(t))
                .all(|s| matches!(s, State::Done))
        })
    })
}

fn describe_hint(ctx: &Ctx, namespace: &str, name: &str) -> String {
    format!(
        "see why: `kubectl --context {c} -n {namespace} get pods -l app={name}` and \
         `kubectl --context {c} -n {namespace} logs deploy/{name} --tail=50`; then rerun (recovery is safe to rerun)",
        c = ctx.kube.context()
    )
}

pub fn describe(ctx: &Ctx, graph: &Graph, lines: &mut Vec<String>) -> Result<()> {
    let stack = ctx.stack;
    lines.push(match graph.order {
        Order::Graph => "# Restart workloads: each the moment what it needs is Ready".to_string(),
        Order::Phased => {
            "# Restart workloads in the seed's phases: every database, then every app".to_string()
        }
    });
    lines.push(format!("{}   # one watch for every readiness wait", ctx.kube.watch_deployments()));
    if !ctx.tolerate {
        lines.push(format!(
            "{}   # fail fast: every pod's state, once a workload has waited {}s",
            ctx.kube.watch_pods(),
            super::failfast::GRACE.as_secs()
        ));
        lines.push(format!(
            "{}   # fail fast: only while a waited-for pod is Pending",
            ctx.kube.list_events()
        ));
    }
    let name = |t: &Task| task_name(ctx, graph, t);
    let when = |task: &Task| {
        let after: Vec<String> = graph.after(*task).iter().map(name).collect();
        if after.is_empty() { "at once".to_string() } else { format!("once {} Ready", after.join(", ")) }
    };
    for (n, wave) in graph.waves().iter().enumerate() {
        let mut targets: Vec<(&str, &str, &str)> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for task in wave {
            match task {
                Task::Restart(i) => {
                    let w = &stack.workloads[*i];
                    targets.push(("deployment", w.namespace.as_str(), w.name.as_str()));
                    notes.push(format!("#   {} ({}) {}", w.name, w.namespace, when(task)));
                }
                Task::Await(i) => {
                    let w = &stack.workloads[*i];
                    lines.push(format!(
                        "# {} ({}): no restart; wait {} until its current rollout is done (restarted if it is not Ready by its deadline)",
                        w.name,
                        w.namespace,
                        when(task)
                    ));
                }
                Task::Replace(i) => {
                    let w = &stack.workloads[*i];
                    lines.push(format!(
                        "# {} ({}): {}, delete its pods in the kubelet's back-off (its ReplicaSet recreates them, \
                         without the back-off), then wait until they are Ready",
                        w.name,
                        w.namespace,
                        when(task)
                    ));
                    for pod in graph.deletes.get(i).into_iter().flatten() {
                        lines.push(ctx.kube.delete_pod(pod).to_string());
                    }
                }
                Task::Register(i) => {
                    let after: Vec<String> = graph.after(*task).iter().map(name).collect();
                    let once = if after.is_empty() {
                        "now".to_string()
                    } else {
                        format!("once {} are Ready", after.join(", "))
                    };
                    lines.push(format!("# connector {} {once}", name(task)));
                    connectors::describe(ctx, &stack.connect.connectors[*i], lines)?;
                }
                Task::Apply(_) | Task::Prep(_) => {} // the bootstrap's: `bootstrap::describe_graph`
            }
        }
        if !targets.is_empty() {
            lines.push(format!(
                "# wave {}: each restarts when what it needs is Ready; restarts due together share one command",
                n + 1
            ));
            lines.extend(notes);
            lines.push(ctx.kube.restart_list(&targets).to_string());
        }
    }
    Ok(())
}
