//! Pods that cannot run: crash loops, image pulls, missing sandboxes, container config errors,
//! unschedulable or long-Pending pods, each with its last log lines and events.

use crate::cluster::{self, Event, TroubleKind};
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
        .any(|p| cluster::trouble(p, &[], facts.at).is_some() || p.phase == "Pending" || p.phase.is_empty());
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
        facts.pods.iter().filter_map(|p| cluster::trouble(p, &events, facts.at).map(|t| (p, t))).collect();
    if troubled.is_empty() {
        let ready = facts.pods.iter().filter(|p| p.ready()).count();
        report.pass(&format!(
            "pods: {ready} of {} ready; none crash-looping, failing to pull, without a sandbox or stuck Pending",
            facts.pods.len()
        ));
        return;
    }
    for (i, (pod, trouble)) in troubled.iter().enumerate() {
        let owner = facts.owner(pod).map(|d| d.name.clone());
        let evidence = if i < MAX_REPORTED {
            troubles::evidence(&ctx.kube, pod, trouble, &events)
        } else {
            vec![format!("{}: {}", trouble.reason, trouble.message)]
        };
        let (fix, note) = troubles::advice(ctx.stack, pod, owner.as_deref(), trouble);
        let mut f = Finding::error(
            id(trouble.kind),
            format!("{}/{}", pod.namespace, pod.name),
            troubles::headline(pod, owner.as_deref(), trouble),
        )
        .evidence_lines(evidence)
        .fix(fix);
        if let Some(note) = note {
            f = f.note(note);
        }
        report.add(f);
    }
}
