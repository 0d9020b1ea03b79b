//! The rollout graph's executor: the state of each task, and a named handler for each kind of
//! message (a watch line, a restart sent, an apply returned, a Gateway Programmed, a
//! preparation done, a registration done, a deadline).
//!
//! Size: one state machine: a named handler for each kind of message, over the same task state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::kube::Rollout;
use crate::plan::{Graph, Prep, Task};
use crate::ui::human;

use super::super::failfast::{FailFast, Needs, Waiting};
use super::super::{Ctx, connectors};
use super::watch::{Msg, Prepared, StartPrep, Watch};
use super::{TOGETHER, WARM, apply_units, describe_hint, emit_started, released_by, task_name};

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

pub(super) fn execute(
    ctx: &Ctx,
    graph: &Graph,
    generation: BTreeMap<(String, String), i64>,
    start_prep: &StartPrep,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut executor = Executor {
        ctx,
        graph,
        start_prep,
        // On a shared cluster Connect is a port-forward to the worker's pod kubectl picks when it
        // starts: opened when the first registration is due (after the worker's restart).
        connect: if ctx.stack.cluster.shared() { None } else { Some(connectors::connect(ctx)?) },
        state: graph.tasks.iter().map(|(t, _)| (*t, State::Waiting)).collect(),
        generation,
        latest: BTreeMap::new(),
        via: BTreeMap::new(),
        finished: Vec::new(),
        deleting: BTreeSet::new(),
        watch: Watch::start(ctx, &tx)?,
        tx,
        failfast: FailFast::new(ctx),
    };
    loop {
        executor.start_due()?;
        if executor.state.values().all(|s| matches!(s, State::Done)) {
            return Ok(());
        }
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        let waiting = waiting(ctx.stack, &executor.state);
        executor.failfast.check(ctx, &waiting)?;
        // Take every message that arrives within TOGETHER of the first, so readiness that
        // arrives together (deployments restarted together turn Ready within milliseconds of
        // each other, one watch line each) starts its dependents together: one restart command.
        let first = rx.recv_timeout(executor.wait().min(Duration::from_millis(200)));
        let until = Instant::now() + TOGETHER;
        let more: Vec<Msg> = if first.is_ok() {
            std::iter::from_fn(|| rx.recv_timeout(until.saturating_duration_since(Instant::now())).ok())
                .collect()
        } else {
            Vec::new()
        };
        for received in std::iter::once(first).chain(more.into_iter().map(Ok)) {
            match received {
                Ok(Msg::Event { namespace, name, generation, rollout, selector }) => {
                    executor.on_event(namespace, name, generation, rollout, selector)?;
                }
                Ok(Msg::Restarted(result)) => result?,
                Ok(Msg::Deleted(i, result)) => {
                    result?;
                    executor.deleting.remove(&i);
                }
                Ok(Msg::Applied(batch, result)) => executor.on_applied(batch, result)?,
                Ok(Msg::Programmed(u, result)) => executor.on_programmed(u, result)?,
                Ok(Msg::Prepared(prep, result)) => executor.on_prepared(prep, result)?,
                Ok(Msg::Registered(i, result)) => executor.on_registered(i, result)?,
                Ok(Msg::WatchEnded) => executor.watch.ended(ctx, &executor.tx)?,
                Err(RecvTimeoutError::Timeout) => executor.on_timeout()?,
                Err(RecvTimeoutError::Disconnected) => unreachable!("the executor holds a sender"),
            }
        }
        executor.finish_units();
    }
}

/// The graph's executor: each task's state, what the watch said, and a named handler for each
/// kind of message.
struct Executor<'c, 'a> {
    ctx: &'c Ctx<'a>,
    graph: &'c Graph,
    start_prep: &'c StartPrep<'c>,
    /// Connect's REST API: opened at the start on kind, at the first registration on a shared
    /// cluster.
    connect: Option<crate::connect::Connect>,
    state: BTreeMap<Task, State>,
    /// Each deployment's generation: before the run, then as the watch reports it.
    generation: BTreeMap<(String, String), i64>,
    /// Each deployment's latest generation and rollout, from the watch (the bootstrap's waits).
    latest: BTreeMap<(String, String), (i64, Rollout)>,
    /// The task that released each one (its prerequisite done last), for the progress lines.
    via: BTreeMap<Task, Task>,
    /// Tasks in the order they were done: the last of a task's prerequisites released it.
    finished: Vec<Task>,
    /// Workloads whose back-off pods are being deleted: their rollout is not done before.
    deleting: BTreeSet<usize>,
    watch: Watch,
    tx: Sender<Msg>,
    failfast: FailFast,
}

impl Executor<'_, '_> {
    fn units(&self) -> &[crate::stack::Unit] {
        &self.ctx.stack.bootstrap.units
    }

    /// Start every task whose prerequisites are done: the restarts due now in one `kubectl
    /// rollout restart` (whatever their namespaces), the units due now in one `kubectl apply`.
    fn start_due(&mut self) -> Result<()> {
        let (ctx, stack) = (self.ctx, self.ctx.stack);
        let due: Vec<Task> = self
            .graph
            .tasks
            .iter()
            .filter(|(t, after)| {
                matches!(self.state.get(t), Some(State::Waiting))
                    && after.iter().all(|a| matches!(self.state.get(a), Some(State::Done)))
            })
            .map(|(t, _)| *t)
            .collect();
        let mut batch: Vec<(String, String)> = Vec::new();
        let mut apply: Vec<usize> = Vec::new();
        for task in due {
            emit_started(ctx, self.graph, task, &self.finished);
            if let Some(last) = released_by(self.graph, task, &self.finished) {
                self.via.insert(task, last);
            }
            let now = Instant::now();
            let state = match task {
                Task::Await(i) | Task::Replace(i) => {
                    // No new generation: the current rollout (a replaced pod's: its ReplicaSet's
                    // new pod) is what is waited for.
                    let w = &stack.workloads[i];
                    let current =
                        self.generation.get(&(w.namespace.clone(), w.name.clone())).copied().unwrap_or(0);
                    let replace = matches!(task, Task::Replace(_));
                    if replace {
                        self.deleting.insert(i);
                        let pods = self.graph.deletes.get(&i).cloned().unwrap_or_default();
                        send_deletes(ctx, &self.tx, i, pods);
                    }
                    State::Restarting {
                        since: now,
                        before: current - 1,
                        last: if replace {
                            "its pods in back-off deleted"
                        } else {
                            "waiting for its rollout"
                        }
                        .into(),
                        needs_ready: needs_done(stack, &self.state, i),
                        restart_if_late: !replace,
                    }
                }
                Task::Restart(i) => {
                    let w = &stack.workloads[i];
                    batch.push((w.namespace.clone(), w.name.clone()));
                    State::Restarting {
                        since: now,
                        before: self
                            .generation
                            .get(&(w.namespace.clone(), w.name.clone()))
                            .copied()
                            .unwrap_or(0),
                        last: "restart sent".into(),
                        needs_ready: needs_done(stack, &self.state, i),
                        restart_if_late: false,
                    }
                }
                Task::Register(i) => {
                    let d = ctx.desired(&stack.connect.connectors[i])?;
                    let api = match &self.connect {
                        Some(api) => api.clone(),
                        None => self.connect.insert(connectors::connect(ctx)?).clone(),
                    };
                    let (deadline, tx) = (stack.connect.timeout, self.tx.clone());
                    std::thread::spawn(move || {
                        let _ = tx.send(Msg::Registered(i, connectors::register(&api, &d, deadline)));
                    });
                    State::Registering { since: now }
                }
                Task::Apply(u) => {
                    apply.push(u);
                    State::Applying { since: now, applied: None, programmed: 0 }
                }
                Task::Prep(prep) => {
                    (self.start_prep)(prep, Prepared::new(self.tx.clone(), prep));
                    State::Preparing { since: now }
                }
            };
            self.state.insert(task, state);
        }
        if !apply.is_empty() {
            // The shared objects first in the stream.
            let units = self.units();
            apply.sort_by_key(|u| (!units[*u].shared(), *u));
            let names: Vec<&str> = apply.iter().map(|u| units[*u].name.as_str()).collect();
            ctx.ui.info(&format!("apply {}", names.join(", ")));
            let cmd = apply_units(ctx, &apply);
            let (kube, tx) = (ctx.kube.clone(), self.tx.clone());
            std::thread::spawn(move || {
                let result = kube.run(&cmd).and_then(|out| {
                    crate::kube::applied_generations(&out.stdout)
                        .map_err(|p| Error::step(format!("`{cmd}` printed {p}"), "run it by hand"))
                });
                let _ = tx.send(Msg::Applied(apply, result));
            });
        }
        if !batch.is_empty() {
            send_restarts(ctx, &self.tx, batch);
        }
        // The next restarts' kubectls start now, while what they wait for becomes Ready: they
        // then cost no process start-up on the critical path. Up to two: readiness a little
        // further apart than TOGETHER makes a second batch; never more than restarts are left.
        let left =
            self.state.iter().filter(|(t, s)| matches!((t, s), (Task::Restart(_), State::Waiting))).count();
        ctx.write.warm_restarts(left.min(WARM));
        Ok(())
    }

    /// How long until the earliest deadline of what is under way.
    fn wait(&self) -> Duration {
        let workloads = &self.ctx.stack.workloads;
        self.state
            .iter()
            .filter_map(|(task, s)| match (task, s) {
                (Task::Restart(i) | Task::Await(i) | Task::Replace(i), State::Restarting { since, .. }) => {
                    Some(*since + workloads[*i].timeout)
                }
                (Task::Apply(u), State::Applying { since, .. }) => Some(*since + self.units()[*u].timeout),
                _ => None,
            })
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
    }

    /// The watch saw a deployment: a restarted or awaited workload Ready (or failed), or a unit's
    /// deployment rolling out.
    fn on_event(
        &mut self,
        namespace: String,
        name: String,
        g: i64,
        rollout: Rollout,
        selector: BTreeMap<String, String>,
    ) -> Result<()> {
        let ctx = self.ctx;
        self.failfast.learn(&namespace, &name, selector);
        self.generation.insert((namespace.clone(), name.clone()), g);
        if let Rollout::Failed(why) = &rollout
            && let Some(u) = applying_unit(&self.state, self.units(), &namespace, &name)
        {
            return Err(Error::step(
                format!(
                    "deployment {namespace}/{name} ({}): {why}\n{}",
                    self.units()[u].name,
                    ctx.kube.diagnose(&namespace, &name)
                ),
                describe_hint(ctx, &namespace, &name),
            ));
        }
        self.latest.insert((namespace.clone(), name.clone()), (g, rollout.clone()));
        let Some(i) = ctx.stack.index_of(&namespace, &name) else {
            return Ok(());
        };
        let task = [Task::Await(i), Task::Replace(i)]
            .into_iter()
            .find(|t| self.state.contains_key(t))
            .unwrap_or(Task::Restart(i));
        let deleting = self.deleting.contains(&i);
        let Some(State::Restarting { since, before, last, .. }) = self.state.get_mut(&task) else {
            return Ok(());
        };
        if g <= *before || deleting {
            return Ok(()); // an event from before our restart (or before the pods are deleted)
        }
        match rollout {
            Rollout::Done => {
                ctx.ui.ok_item(
                    &format!("{name} ready ({})", human(since.elapsed())),
                    Event::WorkloadReady {
                        workload: name.clone(),
                        namespace: namespace.clone(),
                        duration_ms: since.elapsed().as_millis() as u64,
                        deployment: None,
                        after: None,
                    },
                );
                self.done(task);
            }
            Rollout::Waiting(why) => *last = why,
            Rollout::Failed(why) => {
                return Err(Error::step(
                    format!("deployment {namespace}/{name}: {why}\n{}", ctx.kube.diagnose(&namespace, &name)),
                    describe_hint(ctx, &namespace, &name),
                ));
            }
        }
        Ok(())
    }

    /// The bootstrap's apply of these units returned: the generations it left, and a wait for
    /// each of their Gateways to be Programmed.
    fn on_applied(
        &mut self,
        batch: Vec<usize>,
        result: Result<BTreeMap<(String, String), i64>>,
    ) -> Result<()> {
        let ctx = self.ctx;
        let applied = result?;
        for u in batch {
            if let Some(State::Applying { applied: a, .. }) = self.state.get_mut(&Task::Apply(u)) {
                *a = Some(applied.clone());
            }
            let unit = &ctx.stack.bootstrap.units[u];
            for (ns, name) in &unit.programmed {
                let cmd = ctx.kube.wait_programmed(ns, name, unit.timeout);
                let (kube, tx) = (ctx.kube.clone(), self.tx.clone());
                std::thread::spawn(move || {
                    let _ = tx.send(Msg::Programmed(u, kube.run(&cmd).map(|_| ())));
                });
            }
        }
        Ok(())
    }

    fn on_programmed(&mut self, u: usize, result: Result<()>) -> Result<()> {
        result?;
        if let Some(State::Applying { programmed, .. }) = self.state.get_mut(&Task::Apply(u)) {
            *programmed += 1;
        }
        Ok(())
    }

    /// A bootstrap preparation is done, with the line that says so.
    fn on_prepared(&mut self, prep: Prep, result: Result<String>) -> Result<()> {
        let line = result?;
        let task = Task::Prep(prep);
        if let Some(State::Preparing { since }) = self.state.get(&task) {
            self.ctx.ui.ok_item(
                &format!("{line} ({})", human(since.elapsed())),
                Event::TaskDone {
                    task: task_name(self.ctx, self.graph, &task),
                    note: line,
                    duration_ms: since.elapsed().as_millis() as u64,
                },
            );
        }
        self.done(task);
        Ok(())
    }

    /// A connector is registered and RUNNING.
    fn on_registered(&mut self, i: usize, result: Result<String>) -> Result<()> {
        let note = result?;
        let task = Task::Register(i);
        if let Some(State::Registering { since }) = self.state.get(&task) {
            let name = &self.ctx.stack.connect.connectors[i].name;
            self.ctx.ui.ok_item(
                &format!("connector {name} {note} ({})", human(since.elapsed())),
                Event::ConnectorRegistered {
                    connector: name.clone(),
                    note,
                    duration_ms: since.elapsed().as_millis() as u64,
                },
            );
        }
        self.done(task);
        Ok(())
    }

    /// Nothing arrived for a while: a workload waited for that is late is restarted once; a
    /// deadline passed is an error.
    fn on_timeout(&mut self) -> Result<()> {
        let ctx = self.ctx;
        let stack = ctx.stack;
        let now = Instant::now();
        let mut late: Vec<(String, String)> = Vec::new();
        for (task, s) in self.state.iter_mut() {
            if let (
                Task::Await(i),
                State::Restarting { since, before, last, restart_if_late: restart @ true, .. },
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
                    *before =
                        self.generation.get(&(w.namespace.clone(), w.name.clone())).copied().unwrap_or(0);
                    (*since, *last, *restart) = (now, "restart sent".into(), false);
                }
            }
        }
        if !late.is_empty() {
            send_restarts(ctx, &self.tx, late);
        }
        for (task, s) in &self.state {
            if let (
                Task::Restart(i) | Task::Await(i) | Task::Replace(i),
                State::Restarting { since, last, .. },
            ) = (task, s)
            {
                let w = &stack.workloads[*i];
                if now >= *since + w.timeout {
                    return Err(Error::Timeout {
                        what: format!("deployment {}/{} to finish its rollout", w.namespace, w.name),
                        after: w.timeout,
                        detail: format!("last status: {last}\n{}", ctx.kube.diagnose(&w.namespace, &w.name)),
                        next: describe_hint(ctx, &w.namespace, &w.name),
                    });
                }
            }
            if let (Task::Apply(u), State::Applying { since, applied, .. }) = (task, s) {
                let unit = &self.units()[*u];
                if now >= *since + unit.timeout {
                    let left = unit_left(unit, applied.as_ref(), &self.latest);
                    let (ns, name) = left.first().map(|(k, _)| k.clone()).unwrap_or_default();
                    let detail: Vec<String> =
                        left.iter().map(|((ns, n), why)| format!("{ns}/{n}: {why}")).collect();
                    return Err(Error::Timeout {
                        what: format!("{} to be applied and roll out", unit.name),
                        after: unit.timeout,
                        detail: format!("{}\n{}", detail.join("\n"), ctx.kube.diagnose(&ns, &name)),
                        next: describe_hint(ctx, &ns, &name),
                    });
                }
            }
        }
        Ok(())
    }

    /// Units whose deployments have all rolled out (and gateways are Programmed) are done.
    fn finish_units(&mut self) {
        let ctx = self.ctx;
        let ready: Vec<(usize, Instant)> = self
            .state
            .iter()
            .filter_map(|(task, s)| match (task, s) {
                (Task::Apply(u), State::Applying { since, applied: Some(applied), programmed })
                    if *programmed >= self.units()[*u].programmed.len()
                        && unit_left(&self.units()[*u], Some(applied), &self.latest).is_empty() =>
                {
                    Some((*u, *since))
                }
                _ => None,
            })
            .collect();
        for (u, since) in ready {
            let task = Task::Apply(u);
            let unit = &ctx.stack.bootstrap.units[u];
            let after = self.via.get(&task).map(|t| task_name(ctx, self.graph, t)).unwrap_or_default();
            let (ns, name) = unit.ready.first().cloned().unwrap_or_default();
            ctx.ui.ok_item(
                &format!("{} ready ({}; applied once {after} was done)", unit.name, human(since.elapsed())),
                Event::WorkloadReady {
                    workload: unit.name.clone(),
                    namespace: ns,
                    duration_ms: since.elapsed().as_millis() as u64,
                    deployment: Some(name),
                    after: Some(after),
                },
            );
            self.done(task);
        }
    }

    fn done(&mut self, task: Task) {
        self.state.insert(task, State::Done);
        self.finished.push(task);
    }
}

/// What the fail-fast check looks at: every workload restarting or waited for, and every
/// deployment of a unit applied.
fn waiting<'s>(stack: &'s crate::stack::Stack, state: &'s BTreeMap<Task, State>) -> Vec<Waiting<'s>> {
    let units = &stack.bootstrap.units;
    let now_wall = crate::observe::now();
    let mut out = Vec::new();
    for (task, s) in state {
        match (task, s) {
            (
                Task::Restart(i) | Task::Await(i) | Task::Replace(i),
                State::Restarting { since, needs_ready, .. },
            ) => {
                out.push(Waiting {
                    namespace: &stack.workloads[*i].namespace,
                    name: &stack.workloads[*i].name,
                    since: *since,
                    deadline: stack.workloads[*i].timeout,
                    newer_than: Some(now_wall.saturating_sub(since.elapsed().as_secs())),
                    needs: if *needs_ready {
                        Needs::ReadyAtStart
                    } else if needs_done(stack, state, *i) {
                        Needs::ReadySince
                    } else {
                        Needs::Pending
                    },
                });
            }
            // A unit is applied once what it needs is Ready: every crash counts.
            (Task::Apply(u), State::Applying { since, applied: Some(_), .. }) => {
                out.extend(units[*u].ready.iter().map(|(ns, n)| Waiting {
                    namespace: ns,
                    name: n,
                    since: *since,
                    deadline: units[*u].timeout,
                    newer_than: None,
                    needs: Needs::ReadyAtStart,
                }));
            }
            _ => {}
        }
    }
    out
}

/// One `kubectl rollout restart` for every deployment (namespace, name) of `batch`, on its own
/// thread (a warm kubectl when one was started ahead); its result comes back as
/// [`Msg::Restarted`].
fn send_restarts(ctx: &Ctx, tx: &Sender<Msg>, batch: Vec<(String, String)>) {
    let names: Vec<String> = batch.iter().map(|(ns, n)| format!("{n} ({ns})")).collect();
    ctx.ui.info(&format!("restart {}", names.join(", ")));
    let (write, tx) = (ctx.write.clone(), tx.clone());
    std::thread::spawn(move || {
        let targets: Vec<(&str, &str, &str)> =
            batch.iter().map(|(ns, n)| ("deployment", ns.as_str(), n.as_str())).collect();
        let _ = tx.send(Msg::Restarted(write.restart_all(&targets)));
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
    let (kube, write, tx) = (ctx.kube.clone(), ctx.write.clone(), tx.clone());
    std::thread::spawn(move || {
        let result = pods.iter().try_for_each(|p| match kube.run(&write.delete_pod(p)) {
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
