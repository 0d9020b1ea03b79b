//! The rollout graph's executor: each task starts the moment what it waits for is done; restarts
//! that become due together share one `kubectl rollout restart`, across namespaces; one
//! `kubectl get --watch` serves every readiness wait; connectors register on their own threads.
//! The bootstrap runs the same graph with "apply, then wait" tasks beside the restarts (units
//! due together share one `kubectl apply`) and preparations its own code runs (`StartPrep`).

mod executor;
mod tiers;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::Result;
use crate::event::{Event, Subject, TaskAction};
use crate::plan::{Graph, Order, Prep, Task};

use super::{Ctx, connectors};

pub use tiers::await_ready;
pub use watch::{Prepared, StartPrep};

/// Messages that arrive within this of each other are handled together ([`execute`]'s loop):
/// a watch line each for deployments that turned Ready at once.
const TOGETHER: Duration = Duration::from_millis(5);

/// How many restart kubectls are kept started ahead of need ([`Kubectl::warm_restarts`]).
///
/// [`Kubectl::warm_restarts`]: crate::kube::Kubectl::warm_restarts
pub const WARM: usize = 2;

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
    executor::execute(ctx, graph, generation, &|_, _| {})?;
    step.done("all ready");
    Ok(())
}

/// The bootstrap graph: its units applied and waited for, its preparations started by
/// `start_prep`, its connectors registered; one line per task as it is done.
pub fn run_bootstrap(ctx: &Ctx, graph: &Graph, start_prep: &StartPrep) -> Result<()> {
    executor::execute(ctx, graph, BTreeMap::new(), start_prep)
}

/// A task as the progress lines name it.
pub fn task_name(ctx: &Ctx, graph: &Graph, task: &Task) -> String {
    match task {
        Task::Prep(Prep::Image(i)) => graph.images[*i].name.clone(),
        other => other.name(ctx.stack).to_string(),
    }
}

/// The one `kubectl apply` of these units' documents (their generations printed back).
pub fn apply_units(ctx: &Ctx, units: &[usize]) -> crate::exec::Cmd {
    let all = &ctx.stack.bootstrap.units;
    let names: Vec<&str> = units.iter().map(|u| all[*u].name.as_str()).collect();
    let text = crate::manifests::stream(units.iter().flat_map(|u| &all[*u].docs));
    ctx.write.apply_objects().stdin(text, &format!("the documents of {}", names.join(", ")))
}

/// The `task_started` event: a restart sent, a wait for a kept workload's rollout or a
/// registration begun, what the plan made it wait for, and which of those released it (the last
/// one done).
fn emit_started(ctx: &Ctx, graph: &Graph, task: Task, finished: &[Task]) {
    let stack = ctx.stack;
    let name = |t: &Task| task_name(ctx, graph, t);
    let released_by = released_by(graph, task, finished).map(|t| name(&t));
    let after: Vec<String> = graph.after(task).iter().map(name).collect();
    let workload = |namespace: &str| Subject::Workload { workload: name(&task), namespace: namespace.into() };
    let (subject, action) = match task {
        Task::Restart(i) => (workload(&stack.workloads[i].namespace), TaskAction::Restart),
        Task::Await(i) => (workload(&stack.workloads[i].namespace), TaskAction::Wait),
        // A replaced pod is a restart.
        Task::Replace(i) => (workload(&stack.workloads[i].namespace), TaskAction::Restart),
        Task::Register(_) => (Subject::Connector { connector: name(&task) }, TaskAction::Register),
        // The namespace its Ready event names: its first deployment's.
        Task::Apply(u) => {
            let unit = &stack.bootstrap.units[u];
            (workload(unit.ready.first().map_or("", |(ns, _)| ns.as_str())), TaskAction::Apply)
        }
        Task::Prep(_) => (Subject::Task { task: name(&task) }, TaskAction::Prepare),
    };
    ctx.ui.emit(Event::TaskStarted { subject, action, after, released_by });
}

/// Of what `task` waits for, the one done last: what released it.
fn released_by(graph: &Graph, task: Task, finished: &[Task]) -> Option<Task> {
    let after = graph.after(task);
    finished.iter().rev().find(|t| after.contains(t)).copied()
}

fn describe_hint(ctx: &Ctx, namespace: &str, name: &str) -> String {
    format!(
        "see why: `kubectl --context {c} -n {namespace} get pods -l app={name}` and \
         `kubectl --context {c} -n {namespace} logs deploy/{name} --tail=50`; then rerun (recovery is safe to rerun)",
        c = ctx.kube.context()
    )
}

/// The reads of every wait: the one watch of the deployments, and what the fail-fast check reads.
pub fn watches(ctx: &Ctx, lines: &mut Vec<String>) {
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
}

pub fn describe(ctx: &Ctx, graph: &Graph, lines: &mut Vec<String>) -> Result<()> {
    let stack = ctx.stack;
    lines.push(match graph.order {
        Order::Graph => "# Restart workloads: each the moment what it needs is Ready".to_string(),
        Order::Phased => {
            "# Restart workloads in the seed's phases: every database, then every app".to_string()
        }
    });
    watches(ctx, lines);
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
                        lines.push(ctx.write.delete_pod(pod).to_string());
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
            lines.push(ctx.write.restart_list(&targets).to_string());
        }
    }
    Ok(())
}
