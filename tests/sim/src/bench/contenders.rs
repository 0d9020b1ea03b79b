//! The recovery contenders: each on a fresh simulator set up as it needs, run with its
//! surroundings, measured, and its command line as the report prints it.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Result;

use super::{
    Bench, Contender, GUIDE_SETTLE_SECS, RESTARTED_WORKER, RunResult, STALE_WORKLOAD, Schedule, Timed,
    json_steps, milestones, recovery_graph, surround, time_contender, write_shim,
};
use crate::audit::Source;
use crate::config::Infra;
use crate::sim::{Sim, SimOptions};

impl Bench {
    pub(super) fn run_once(&self, c: Contender, run: usize) -> Result<RunResult> {
        let dir = self.logs.join(format!("run{run}-{}", c.slug()));
        std::fs::create_dir_all(&dir)?;
        let workers = if c == Contender::UpWorker { 2 } else { 0 };
        let readopted = matches!(c, Contender::UpReadopted | Contender::RecoverReadopted);
        let mesh_return = if readopted {
            crate::capture::MeshReturn::Readopted { seed: super::READOPT_SEED, outside: 1, among: Vec::new() }
        } else {
            crate::capture::MeshReturn::Guide
        };
        let sim = Sim::start(SimOptions {
            time_scale: self.opts.time_scale,
            mesh_return,
            workers,
            ..SimOptions::default()
        })?;
        let infra = Infra::load(&sim.dir().join("infra"))?;
        let mut stale = BTreeSet::new();
        let mut back = None;
        match c {
            Contender::UpHealthy => {}
            Contender::UpStale => {
                sim.fault(crate::faults::Fault::StaleWorkload { workload: STALE_WORKLOAD.into() })
            }
            Contender::UpWorker => {
                sim.wait_healthy(self.settle_deadline)?;
                stale = on_node(&sim, &infra, RESTARTED_WORKER);
                stale.insert(infra.stack.mesh.daemonset.clone());
                sim.restart_node(RESTARTED_WORKER);
                sim.wait_healthy(self.settle_deadline)?;
            }
            Contender::UpReadopted | Contender::RecoverReadopted => {
                let restarted = std::time::Instant::now();
                sim.docker_restart();
                sim.wait_settled(self.settle_deadline)?;
                back = Some(restarted.elapsed().as_secs_f64());
            }
            _ => {
                sim.docker_restart();
                sim.wait_healthy(self.settle_deadline)?;
            }
        }
        let calls = dir.join("kubectl.calls");
        let shim = write_shim(&dir.join("shim"), &self.real_kubectl, &calls)?;
        let mut cmd = self.command(c, &sim, &infra)?;
        surround(&mut cmd, &sim, &shim, &dir)?;
        std::fs::write(dir.join("command"), format!("{cmd:?}\n"))?;

        let since_ms = sim.clock_ms();
        let Timed { exited, status, healthy, unhealthy, cpu } =
            time_contender(&mut cmd, c.label(), &sim, &infra, self.deadline, self.clk_tck)?;
        let audit = sim.audit();
        std::fs::write(dir.join("audit.json"), serde_json::to_string(&audit)?)?;
        drop(sim);

        let steps = match c {
            Contender::Guide => Vec::new(),
            _ => json_steps(&std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()),
        };
        let since = |e: &&crate::audit::AuditEntry| e.t_ms >= since_ms;
        let mut restarted: BTreeSet<String> = audit
            .iter()
            .filter(since)
            .filter(|e| e.source == Source::Kube && e.verb == "PATCH")
            .filter_map(|e| {
                e.path_only()
                    .rsplit_once("/deployments/")
                    .or_else(|| e.path_only().rsplit_once("/daemonsets/"))
            })
            .map(|(_, name)| name.to_string())
            .collect();
        let deleted: Vec<&crate::audit::AuditEntry> = audit
            .iter()
            .filter(since)
            .filter(|e| e.source == Source::Controller && e.verb == "pod-delete")
            .collect();
        for e in &deleted {
            let owner = e.detail.split_once('/').map(|(kind, name)| match kind {
                "ReplicaSet" => name.rsplit_once('-').map(|(d, _)| d).unwrap_or(name),
                _ => name,
            });
            restarted.insert(owner.unwrap_or(&e.detail).to_string());
        }
        let node_path = (c == Contender::UpWorker).then(|| node_path(&infra, &stale, self.opts.time_scale));
        Ok(RunResult {
            contender: c,
            run,
            healthy,
            exited,
            code: status.and_then(|s| s.code()),
            kubectl: std::fs::read_to_string(&calls).map(|t| t.lines().count()).unwrap_or(0),
            cpu_self: cpu.own,
            cpu_children: cpu.children,
            crash_loops: audit
                .iter()
                .filter(|e| e.t_ms >= since_ms && e.source == Source::Controller && e.verb == "pod-crashed")
                .count(),
            restarts: audit
                .iter()
                .filter(|e| e.t_ms >= since_ms && e.source == Source::Kube)
                .filter(|e| {
                    (e.verb == "PATCH"
                        && (e.path.contains("/deployments/") || e.path.contains("/daemonsets/")))
                        || (e.verb == "DELETE" && e.path.contains("/pods/"))
                })
                .count(),
            ztunnel_restarted: audit.iter().any(|e| {
                e.t_ms >= since_ms
                    && e.source == Source::Kube
                    && ((e.verb == "PATCH" && e.path.contains("/daemonsets/ztunnel"))
                        || (e.verb == "DELETE" && e.path.contains("/pods/ztunnel")))
            }),
            restarted,
            stale,
            node_path,
            back,
            outside: audit
                .iter()
                .filter(|e| e.verb == "mesh-outside")
                .flat_map(|e| e.detail.split_whitespace().map(String::from).collect::<Vec<_>>())
                .collect(),
            milestones: milestones(&audit, since_ms, &infra, &self.critical_end(&infra)),
            steps,
            unhealthy,
        })
    }

    /// The last workload of the critical path (e.g. keycloak), named in the milestones.
    pub(super) fn critical_end(&self, infra: &Infra) -> String {
        Schedule::new(recovery_graph(infra, 1.0, true))
            .ok()
            .and_then(|s| s.critical().0.last().map(|n| n.name.clone()))
            .unwrap_or_default()
    }

    /// The contender's command (its surroundings: [`surround`]).
    pub(super) fn command(&self, c: Contender, sim: &Sim, infra: &Infra) -> Result<Command> {
        let scale = self.opts.time_scale;
        let cmd = match c {
            Contender::Guide => {
                let mut cmd = sim.command("bash");
                cmd.arg(&self.guide)
                    .env("TIME_SCALE", scale.to_string())
                    .env(
                        "CONNECT_URL",
                        format!("http://127.0.0.1:{}", sim.host_port(infra.stack.connect.port)),
                    )
                    .env("REPO", sim.dir());
                cmd
            }
            _ => {
                let mut cmd = sim.command(&self.opts.bookstore.to_string_lossy());
                cmd.arg(c.verb()).arg("--stack").arg(sim.stack_path());
                cmd.args(["--json", "--color", "never"]);
                let settle = if c == Contender::Phased {
                    cmd.arg("--phased");
                    GUIDE_SETTLE_SECS
                } else {
                    infra.stack.mesh.settle.as_secs_f64()
                };
                // The product's settle is a sleep like the guide's: scaled like it, off scale 1.
                if scale != 1.0 {
                    cmd.arg("--settle").arg(format!("{}ms", (settle * scale * 1000.0).round() as u64));
                }
                cmd
            }
        };
        Ok(cmd)
    }

    /// The contender's command line as [`Bench::command`] builds it, for the report.
    pub(super) fn describe(&self, c: Contender, infra: &Infra) -> String {
        let scale = self.opts.time_scale;
        match c {
            Contender::Guide => format!(
                "TIME_SCALE={scale} CONNECT_URL=http://127.0.0.1:<host port of {}> REPO=<sim> bash {}",
                infra.stack.connect.port,
                self.guide.canonicalize().unwrap_or_else(|_| self.guide.clone()).display()
            ),
            _ => {
                let settle = if scale == 1.0 {
                    String::new()
                } else if c == Contender::Phased {
                    format!(" --settle {}ms", (GUIDE_SETTLE_SECS * scale * 1000.0).round() as u64)
                } else {
                    let s = infra.stack.mesh.settle.as_secs_f64();
                    format!(" --settle {}ms", (s * scale * 1000.0).round() as u64)
                };
                let phased = if c == Contender::Phased { " --phased" } else { "" };
                format!(
                    "{} {} --stack <sim>/infra/stack.yaml --json --color never{phased}{settle}",
                    self.opts.bookstore.display(),
                    c.verb()
                )
            }
        }
    }
}

/// The stack's workloads with a pod on `node`.
fn on_node(sim: &Sim, infra: &Infra, node: &str) -> BTreeSet<String> {
    sim.pods()
        .into_iter()
        .filter(|p| p.node == node && infra.workload(&p.workload).is_some())
        .map(|p| p.workload)
        .collect()
}

/// A restarted node's own critical path: the recovery graph cut down to what is stale there
/// (its ztunnel, the workloads with a pod on it, the connectors that need one of them, Connect's
/// REST API when its worker is one), what is kept being Ready already. ztunnel's pod there is
/// deleted and recreated at once by its DaemonSet (no rollout to observe): its latency alone.
pub(super) fn node_path(infra: &Infra, stale: &BTreeSet<String>, scale: f64) -> (Vec<String>, f64) {
    let full = recovery_graph(infra, scale, true);
    let mesh = infra.stack.mesh.daemonset.clone();
    let api = format!("{} REST API", infra.stack.connect.workload);
    let keep = |name: &str| -> bool {
        if stale.contains(name) {
            return true;
        }
        if name == api {
            return stale.contains(&infra.stack.connect.workload);
        }
        infra.connectors().iter().any(|c| {
            c.name == name
                && (stale.contains(&infra.stack.connect.workload)
                    || c.needs.iter().any(|n| stale.contains(n)))
        })
    };
    let nodes: Vec<crate::bench::PathNode> = full
        .into_iter()
        .filter(|n| keep(&n.name))
        .map(|mut n| {
            if n.name == mesh {
                n.secs = crate::latency::latency_secs(&mesh) * scale;
                n.how = format!("its pod deleted, ready {:.1}", crate::latency::latency_secs(&mesh));
            }
            n.after.retain(|a| keep(a));
            // A connector re-registered with its worker kept waits for what the worker needs
            // (Kafka: its topics are Connect's store).
            if infra.connectors().iter().any(|c| c.name == n.name) && !keep(&api) {
                let worker = infra.workload(&infra.stack.connect.workload);
                n.after.extend(
                    worker.iter().flat_map(|w| w.needs.iter()).filter(|w| stale.contains(*w)).cloned(),
                );
            }
            n
        })
        .collect();
    match Schedule::new(nodes) {
        Ok(s) => {
            let (chain, total) = s.critical();
            (chain.iter().map(|n| n.name.clone()).collect(), total)
        }
        Err(_) => (Vec::new(), 0.0),
    }
}
