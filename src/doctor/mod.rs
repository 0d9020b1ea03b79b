//! `bookstore doctor`: a read-only diagnosis. Each family of checks reads what it needs through
//! the typed wrappers (`docker`, `kube`, `connect`, `http`) and judges it with pure functions;
//! every problem becomes a [`Finding`]: a stable id, a severity, what is wrong, the evidence (the
//! log line, the HTTP answer, the inspect field; secrets redacted) and the command that fixes it.
//! Nothing here changes anything.
//!
//! Families: `host` (Docker, the kind nodes, port mappings, legacy proxies, host names), `pods`
//! (crash loops, image pulls, sandboxes, scheduling), `mesh` (routes, ztunnel's HBONE failures,
//! istio-cni), `kafka` (connectors, Kafka's volume, connector placeholders and providers).

mod host;
mod kafka;
mod mesh;
mod pods;

use crate::error::{Error, Result};
use crate::event::{self, Event};
use crate::observe::{Ctx, Observation};
use crate::ui::Ui;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something is broken now: `doctor` exits 6.
    Error,
    /// Something will break, or breaks what the tool does not need (exit 0).
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem, with what proves it and what fixes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable kebab-case id (documented in the README; scripts match on it).
    pub id: &'static str,
    pub severity: Severity,
    /// What it concerns: pods, routes, connectors, ports, containers.
    pub subject: String,
    /// What is wrong, in a sentence.
    pub problem: String,
    /// What shows it: log lines, HTTP answers, inspect fields, events.
    pub evidence: Vec<String>,
    /// The command that fixes it.
    pub fix: String,
    /// When the fix is not enough, or what it does.
    pub note: Option<String>,
}

impl Finding {
    pub fn new(
        id: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Finding {
            id,
            severity,
            subject: subject.into(),
            problem: problem.into(),
            evidence: Vec::new(),
            fix: String::new(),
            note: None,
        }
    }

    pub fn error(id: &'static str, subject: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding::new(id, Severity::Error, subject, problem)
    }

    pub fn warning(id: &'static str, subject: impl Into<String>, problem: impl Into<String>) -> Self {
        Finding::new(id, Severity::Warning, subject, problem)
    }

    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(crate::troubles::clip(&line.into()));
        self
    }

    pub fn evidence_lines(mut self, lines: impl IntoIterator<Item = String>) -> Self {
        self.evidence.extend(lines.into_iter().map(|l| crate::troubles::clip(&l)));
        self
    }

    pub fn fix(mut self, command: impl Into<String>) -> Self {
        self.fix = command.into();
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Findings as they are found: printed on stderr in kind's ✓/✗ style (and as `finding` events
/// with `--json`), counted for the exit code.
pub struct Report<'a> {
    ui: &'a Ui,
    pub findings: Vec<Finding>,
    /// Findings only: no line for a check that passed or was skipped.
    quiet: bool,
}

impl<'a> Report<'a> {
    pub fn new(ui: &'a Ui) -> Report<'a> {
        Report { ui, findings: Vec::new(), quiet: false }
    }

    /// A check that found nothing wrong.
    pub fn pass(&self, text: &str) {
        if !self.quiet {
            self.ui.ok_line(text);
        }
    }

    /// A check that could not run, and why (not a finding: nothing is known to be wrong).
    pub fn skip(&self, text: &str) {
        if !self.quiet {
            self.ui.detail("", &format!("• skipped: {text}"));
        }
    }

    pub fn add(&mut self, f: Finding) {
        self.ui.emit(Event::Finding(event::Finding {
            id: f.id.to_string(),
            severity: match f.severity {
                Severity::Error => event::Severity::Error,
                Severity::Warning => event::Severity::Warning,
            },
            subject: f.subject.clone(),
            problem: f.problem.clone(),
            evidence: f.evidence.clone(),
            fix: f.fix.clone(),
            note: f.note.clone(),
        }));
        let head = format!("[{}] {}", f.id, f.problem);
        match f.severity {
            Severity::Error => self.ui.fail_line(&head),
            Severity::Warning => self.ui.warn_line(&head),
        }
        for (i, line) in f.evidence.iter().enumerate() {
            self.ui.detail(if i == 0 { "evidence: " } else { "          " }, line);
        }
        self.ui.detail("fix:      ", &f.fix);
        if let Some(note) = &f.note {
            self.ui.detail("note:     ", note);
        }
        self.findings.push(f);
    }

    pub fn add_all(&mut self, findings: Vec<Finding>) {
        for f in findings {
            self.add(f);
        }
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }
}

/// Run every check. `Err(Error::Findings)` (exit 6) when any error finding exists.
pub fn run(ctx: &Ctx) -> Result<()> {
    let mut report = Report::new(ctx.ui);
    match host::check(ctx, &mut report)? {
        Some(nodes) if api_ready(ctx, &nodes, &mut report) => {
            register_credentials(ctx);
            match crate::observe::cluster(ctx, nodes) {
                Ok(obs) => cluster_checks(ctx, &obs, &mut report),
                Err(e) => report.skip(&format!("the cluster checks: {}", e.headline())),
            }
        }
        // The connector files can be judged without a cluster.
        _ => kafka::check_files(ctx, None, &mut report),
    }
    let (errors, warnings) = (report.count(Severity::Error), report.count(Severity::Warning));
    if errors > 0 {
        return Err(Error::Findings { errors, warnings });
    }
    let warned = if warnings == 0 { String::new() } else { format!(" ({warnings} warning(s) above)") };
    ctx.ui.ok_line(&format!("doctor: no problems found{warned}"));
    Ok(())
}

/// The connector credentials are registered with the redactor (never printed): logs, traces and
/// Connect's error bodies shown as evidence can echo them. Each key on its own, so a secret that
/// lacks one still has the others masked.
fn register_credentials(ctx: &Ctx) {
    let c = &ctx.stack.connect;
    if let Ok(out) = ctx.kube.get_secret(&c.secret_namespace, &c.secret_name).run() {
        for connector in &c.connectors {
            for key in [&connector.user_key, &connector.password_key] {
                let _ = crate::kube::decode_secret(&out.stdout, &[key.as_str()]);
            }
        }
    }
}

/// The findings an observation of the cluster shows: pods, the mesh, Kafka and Connect.
fn cluster_checks(ctx: &Ctx, obs: &Observation, report: &mut Report) {
    // A shared cluster was built by no engine of ours.
    if !ctx.stack.cluster.shared() {
        match host::mismatch_finding(ctx.engine(), &obs.provider_ids) {
            Some(f) => report.add(f),
            None if obs.provider_ids.as_ref().is_ok_and(|ids| !ids.is_empty()) => {
                report.pass(&format!("the cluster's Nodes say {} built it", ctx.engine().kind.provider()))
            }
            None => {}
        }
    }
    if ctx.stack.cluster.shared() {
        nodes_check(obs, report);
    }
    let (ztunnel, health) = crate::judge::workloads::judge(ctx.stack, obs);
    pods::check(ctx, obs, &health, report);
    mesh::check(ctx, obs, &ztunnel, &health, report);
    kafka::check(ctx, obs, report);
}

/// A shared cluster's Nodes: each Ready, and when it last started by the API's evidence
/// (`judge::boots`, what the mesh rule then judges its pods by).
fn nodes_check(obs: &Observation, report: &mut Report) {
    if let Err(e) = &obs.node_events {
        report.skip(&format!("the events on Nodes (the kubelet's Starting/Rebooted): {e}"));
    }
    for n in crate::status::nodes(obs) {
        if n.ready {
            report.pass(&format!("{} is Ready; {}", n.name, n.evidence));
        } else {
            report.add(
                Finding::error("node-not-ready", n.name.clone(), format!("node {} is not Ready", n.name))
                    .evidence(n.evidence.clone())
                    .fix(format!("kubectl describe node {}", n.name))
                    .note("a node of a shared cluster is its team's: bookstore never restarts it"),
            );
        }
    }
}

/// The findings for what is left, printed (the convergent `up`'s verification failed twice).
pub fn report_cluster(ctx: &Ctx, obs: &Observation) {
    cluster_checks(ctx, obs, &mut Report { ui: ctx.ui, findings: Vec::new(), quiet: true });
}

/// The API answers `/readyz` (retried briefly: it refuses for a while after a Docker restart).
fn api_ready(ctx: &Ctx, nodes: &[crate::engine::Node], report: &mut Report) -> bool {
    let cmd = ctx.kube.readyz();
    let deadline = ctx.stack.api_timeout.min(std::time::Duration::from_secs(10));
    let result = crate::observe::wait_api(ctx, deadline, "");
    // The control plane serves the API (the observed node containers are control planes first).
    let node = nodes.first().map(|n| n.name.clone()).unwrap_or_default();
    match result {
        Ok(()) => {
            report.pass(&format!("Kubernetes API of {} answers /readyz", ctx.kube.context()));
            true
        }
        Err(Error::Prerequisite { problem, .. }) => {
            report.add(
                Finding::error("kube-context-missing", ctx.kube.context(), problem)
                    .evidence(format!("`{cmd}` failed: the context is not in the kubeconfig"))
                    .fix(format!("kind export kubeconfig --name {}", ctx.stack.cluster.name)),
            );
            false
        }
        Err(e) => {
            let detail = match &e {
                Error::Timeout { detail, .. } => detail.clone(),
                other => other.to_string(),
            };
            report.add(
                Finding::error(
                    "api-not-ready",
                    ctx.kube.context(),
                    format!("the Kubernetes API does not answer (waited {})", crate::ui::human(deadline)),
                )
                .evidence(format!("`{cmd}`: {}", detail.trim()))
                .fix(match ctx.stack.cluster.shared() {
                    true => format!("kubectl --context {} cluster-info", ctx.kube.context()),
                    false => format!("{} restart {node}", ctx.engine().program),
                })
                .note("after a Docker restart the API can take a minute: rerun `bookstore doctor` first"),
            );
            false
        }
    }
}

/// The commands and requests `doctor` makes, for `--dry-run`.
pub fn describe(ctx: &Ctx) -> Vec<String> {
    let mut lines = vec![
        "# Diagnose (read-only): the node engine, the kind node, ports, the cluster, the mesh, Connect"
            .into(),
    ];
    host::describe(ctx, &mut lines);
    lines.push(ctx.kube.readyz().to_string());
    crate::observe::describe(ctx, &mut lines);
    lines.push(format!("{}   # only when a pod is in trouble", ctx.kube.list_events()));
    lines.push(format!(
        "{}   # each crash-looping pod",
        ctx.kube.pod_logs("<namespace>", "<pod>", crate::troubles::LOG_LINES)
    ));
    lines
}
