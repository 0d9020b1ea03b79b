//! Pods that cannot run: crash loops, image pulls, missing sandboxes, container config errors,
//! unschedulable or long-Pending pods, each with its last log lines and events. What the kubelet
//! retries and clears by itself ([`judge::outlook`], the judgement the waits use) is a warning.

use crate::cluster::Event;
use crate::judge::pods::{self as judge, Outlook, TroubleKind};
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

pub fn check(ctx: &Ctx, facts: &Observation, report: &mut Report) {
    // Events are read only when a pod may need them (a sandbox failure is only seen there).
    let suspicious = facts
        .pods
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
        facts.pods.iter().filter_map(|p| judge::trouble(p, &events, facts.at).map(|t| (p, t))).collect();
    if troubled.is_empty() {
        let ready = facts.pods.iter().filter(|p| p.ready()).count();
        report.pass(&format!(
            "pods: {ready} of {} ready; none crash-looping, failing to pull, without a sandbox or stuck Pending",
            facts.pods.len()
        ));
        return;
    }
    let ours = judge::ours(ctx.stack);
    for (i, (pod, trouble)) in troubled.iter().enumerate() {
        let owner = facts.owner(pod).map(|d| d.name.clone());
        let evidence = if i < MAX_REPORTED {
            troubles::evidence(&ctx.kube, pod, trouble, &events)
        } else {
            vec![format!("{}: {}", trouble.reason, trouble.message)]
        };
        let needs_ready = owner.as_deref().is_none_or(|o| needs_ready(ctx, facts, &pod.namespace, o));
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
        f = f.evidence_lines(evidence).fix(fix);
        if let Some(note) = note {
            f = f.note(note);
        }
        report.add(f);
    }
}

/// Whether every workload this stack workload needs is Ready now (true when it is not ours).
fn needs_ready(ctx: &Ctx, facts: &Observation, namespace: &str, name: &str) -> bool {
    let stack = ctx.stack;
    let Some(w) = stack.workloads.iter().find(|w| w.name == name && w.namespace == namespace) else {
        return true;
    };
    w.needs.iter().all(|need| {
        let ns = stack.workloads.iter().find(|x| &x.name == need).map(|x| x.namespace.as_str());
        facts.deployments.iter().any(|d| {
            Some(d.namespace.as_str()) == ns && &d.name == need && d.desired > 0 && d.ready >= d.desired
        })
    })
}
