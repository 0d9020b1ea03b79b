//! Pods that cannot run: crash loops, image pulls, missing sandboxes, container config errors,
//! unschedulable or long-Pending pods, each with its last log lines and events. What the kubelet
//! retries and clears by itself ([`judge::outlook`], the judgement the waits use) is a warning.
//! Then the workloads `judge::workloads::health` calls missing or stuck past their deadline (what
//! `up` restarts).

use crate::cluster::{Event, Pod};
use crate::judge::pods::{self as judge, Outlook, TroubleKind};
use crate::judge::workloads::{self, Health};
use crate::observe::{Ctx, Observation};
use crate::troubles;

use super::{Finding, Report};

/// At most this many troubled pods get their logs read (one `kubectl logs` each).
const MAX_REPORTED: usize = 10;

pub fn id(kind: TroubleKind) -> &'static str {
    match kind {
        TroubleKind::CrashLoop => "pod-crash-looping",
        TroubleKind::ImagePull => "pod-image-pull-failing",
        TroubleKind::Sandbox => "pod-sandbox-failing",
        TroubleKind::Config => "pod-config-error",
        TroubleKind::Unschedulable => "pod-unschedulable",
        TroubleKind::Pending => "pod-pending",
    }
}

pub fn check(ctx: &Ctx, facts: &Observation, health: &[Health], report: &mut Report) {
    // A pod going away is no longer anyone's: not judged.
    let pods: Vec<&Pod> = facts.pods.iter().filter(|p| !p.terminating).collect();
    // Events are read only when a pod may need them (a sandbox failure is only seen there).
    let suspicious = pods
        .iter()
        .any(|p| judge::trouble(p, &[], facts.at).is_some() || p.phase == "Pending" || p.phase.is_empty());
    let events: Vec<Event> = if suspicious {
        match crate::observe::events(ctx) {
            Ok(events) => events,
            Err(e) => {
                report.skip(&format!("events: {e}"));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let troubled: Vec<_> =
        pods.iter().filter_map(|p| judge::trouble(p, &events, facts.at).map(|t| (*p, t))).collect();
    workloads_check(ctx, facts, health, &troubled, report);
    if troubled.is_empty() {
        let ready = pods.iter().filter(|p| p.ready()).count();
        report.pass(&format!(
            "pods: {ready} of {} ready; none crash-looping, failing to pull, without a sandbox or stuck Pending",
            pods.len()
        ));
        return;
    }
    let ours = judge::ours(ctx.stack);
    for (i, (pod, trouble)) in troubled.iter().enumerate() {
        let owner = workloads::owner(facts, pod).map(|d| d.name.clone());
        let evidence = if i < MAX_REPORTED {
            troubles::evidence(&ctx.kube, pod, trouble, &events)
        } else {
            vec![format!("{}: {}", trouble.reason, trouble.message)]
        };
        let needs_ready = owner
            .as_deref()
            .and_then(|o| ctx.stack.index_of(&pod.namespace, o))
            .is_none_or(|i| workloads::needs_ready(ctx.stack, facts, i));
        let around = judge::around(ctx.stack, &facts.pods, &ours, owner.as_deref(), needs_ready);
        let (fix, note) = troubles::advice(ctx.stack, pod, owner.as_deref(), trouble);
        let headline = troubles::headline(pod, owner.as_deref(), trouble);
        let subject = format!("{}/{}", pod.namespace, pod.name);
        let (mut f, note) = match judge::outlook(pod, trouble, &events, &around) {
            Outlook::Fatal(why) => {
                (Finding::error(id(trouble.kind), subject, format!("{headline}: {why}")), note)
            }
            Outlook::Blocked(what) => {
                let note = Some(note.map_or(what.clone(), |n| format!("{what}; {n}")));
                (Finding::error(id(trouble.kind), subject, headline), note)
            }
            Outlook::Retried(what) => {
                let waited = format!("waiting fixes it: {what}");
                let note = Some(note.map_or(waited.clone(), |n| format!("{waited}; if it lasts: {n}")));
                (Finding::warning(id(trouble.kind), subject, headline), note)
            }
        };
        let backoff = owner
            .as_deref()
            .and_then(|o| ctx.stack.index_of(&pod.namespace, o))
            .is_some_and(|i| matches!(health.get(i), Some(Health::BackOff { .. })));
        let note = if backoff && trouble.kind == TroubleKind::CrashLoop {
            let end = "bookstore up deletes it once what it needs is Ready: its ReplicaSet recreates it without \
                       the kubelet's back-off (kept per pod UID)";
            Some(note.map_or(end.to_string(), |n| format!("{n}; {end}")))
        } else {
            note
        };
        f = f.evidence_lines(evidence).fix(fix);
        if let Some(note) = note {
            f = f.note(note);
        }
        report.add(f);
    }
}

/// The workloads the cluster lacks, and those whose newest pod has not become Ready within their
/// deadline (unless a trouble above already names it): what `up` restarts.
fn workloads_check(
    ctx: &Ctx,
    facts: &Observation,
    health: &[Health],
    troubled: &[(&Pod, judge::Trouble)],
    report: &mut Report,
) {
    let stack = ctx.stack;
    let missing: Vec<String> = stack
        .workloads
        .iter()
        .zip(health)
        .filter(|(_, h)| **h == Health::Missing)
        .map(|(w, _)| format!("{}/{}", w.namespace, w.name))
        .collect();
    if !missing.is_empty() {
        report.add(
            Finding::error(
                "workload-missing",
                missing.join(", "),
                format!("{} deployment(s) named in the stack file are not in the cluster", missing.len()),
            )
            .evidence(format!(
                "`kubectl --context {} get deployments -A` lists none of them",
                stack.cluster.context()
            ))
            .fix("bookstore up")
            .note("resumes the bootstrap: applies what is missing, each once what it needs is Ready"),
        );
    }
    for (w, h) in stack.workloads.iter().zip(health) {
        let Health::Stuck(why) = h else { continue };
        let named = troubled.iter().any(|(p, _)| {
            workloads::owner(facts, p).is_some_and(|d| d.namespace == w.namespace && d.name == w.name)
        });
        if named {
            continue;
        }
        let newest = facts
            .deployment(&w.namespace, &w.name)
            .and_then(|d| workloads::serving(facts, d).first().copied());
        let state = newest.map(|p| {
            let ready = p.containers.iter().filter(|c| c.ready).count();
            format!(
                "pod {}/{}: phase {}, {ready}/{} container(s) ready, {} restart(s)",
                p.namespace,
                p.name,
                if p.phase.is_empty() { "unknown" } else { &p.phase },
                p.containers.len(),
                p.restarts()
            )
        });
        report.add(
            Finding::error(
                "pod-not-ready",
                format!("{}/{}", w.namespace, w.name),
                format!("deployment {}/{}: {why}", w.namespace, w.name),
            )
            .evidence_lines(state)
            .fix("bookstore up")
            .note("restarts it; if its new pod does not become Ready either, its log and events say why"),
        );
    }
}
