//! `bookstore-sim bench` (issue 7): the restart guide's procedure, `bookstore recover` and
//! `bookstore recover --phased`, each on a fresh simulator after a Docker restart, against the
//! critical path of the dependency graph under the same latency table.
//!
//! A figure, not a test: it prints the latency table, how the critical path was derived, one
//! table of results and PASS/MISS against the targets. Every contender gets the same
//! treatment: a fresh `Sim`, `docker_restart()`, `wait_healthy`, then the contender with the
//! simulator's environment and a `kubectl` counting shim first on PATH; after it exits, the same
//! poll of every route (and both connectors RUNNING) decides when the stack became healthy.
//! Progress goes to stderr, results to stdout; each run's logs and audit log stay on disk.
//!
//! `bookstore watch` (issues 11, 20) has its own section: on a fresh healthy simulator Docker
//! Desktop restarts (away a few seconds, then back) with the watcher running, with the watcher
//! started only once Docker is back (a login agent), and with the node left exited by Docker
//! (kind#3244); the figure is seconds from Docker being back to every route healthy, next to the
//! same critical path.

pub mod bootstrap;
mod contenders;
mod measure;
mod report;
pub mod schedule;
mod watch;

use measure::{milestones, poll_healthy};
use watch::WatchRun;

pub use measure::connectors_running;
pub(crate) use measure::{Cpu, Timed, clock_ticks, json_steps, surround, time_contender, write_shim};
pub use report::median;
pub(crate) use report::{fmt_opt, table, target};
pub use schedule::{PathNode, Schedule, recovery_graph};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::Infra;
use crate::sim::SimOptions;

/// The guide's settle after ztunnel (`sleep 10`), which `bookstore recover --phased` keeps.
const GUIDE_SETTLE_SECS: f64 = 10.0;
/// How often the healthy poll goes round every route.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// How often the contender's CPU time is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub time_scale: f64,
    pub runs: usize,
    /// The `bookstore` binary (release build).
    pub bookstore: PathBuf,
    /// Which sections run (a contender's slug, or `watch`); empty: all.
    pub only: Vec<String>,
}

/// The names `--only` takes.
pub const SECTIONS: [&str; 11] = [
    "guide",
    "recover",
    "phased",
    "up",
    "up-healthy",
    "up-stale",
    "up-worker",
    "up-readopted",
    "recover-readopted",
    "watch",
    "bootstrap",
];

impl BenchOptions {
    fn runs_section(&self, slug: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == slug)
    }
}

// ------------------------------------------------------------------ contenders and runs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Guide,
    Recover,
    Phased,
    /// `bookstore up` after the Docker restart (the convergent remedy).
    Up,
    /// `bookstore up` on a healthy stack (no Docker restart).
    UpHealthy,
    /// `bookstore up` on a healthy stack but for one workload whose pod lost its mesh
    /// registration (`Fault::StaleWorkload` on [`STALE_WORKLOAD`]).
    UpStale,
    /// `bookstore up` on three nodes after one worker ([`RESTARTED_WORKER`]) restarted alone
    /// (`docker restart`): its pods back in place, stale (issue 19).
    UpWorker,
    /// `bookstore up` after a Docker restart in which the mesh re-adopted every pod but one,
    /// drawn with [`READOPT_SEED`] (issue 22).
    UpReadopted,
    /// `bookstore recover` in that world: the whole remedy, what `up` did there before it judged
    /// what the mesh re-adopted.
    RecoverReadopted,
}

/// The seed that draws the one pod the mesh does not re-adopt in the `*-readopted` worlds
/// (`MeshReturn::Readopted`: inventory-service, a pod nothing needs).
pub const READOPT_SEED: u64 = 7;

/// The workload `Contender::UpStale` finds stale.
const STALE_WORKLOAD: &str = "inventory-service";
/// The worker `Contender::UpWorker` restarts (of a control plane and two workers).
const RESTARTED_WORKER: &str = "bookstore-worker";

impl Contender {
    const ALL: [Contender; 9] = [
        Contender::Guide,
        Contender::Recover,
        Contender::Phased,
        Contender::Up,
        Contender::UpHealthy,
        Contender::UpStale,
        Contender::UpWorker,
        Contender::UpReadopted,
        Contender::RecoverReadopted,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::Guide => "restart-guide.sh",
            Contender::Recover => "bookstore recover",
            Contender::Phased => "bookstore recover --phased",
            Contender::Up => "bookstore up",
            Contender::UpHealthy => "up, healthy stack",
            Contender::UpStale => "up, one stale workload",
            Contender::UpWorker => "up, one worker restarted",
            Contender::UpReadopted => "up, mesh re-adopted all but one",
            Contender::RecoverReadopted => "recover, mesh re-adopted all but one",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Contender::Guide => "guide",
            Contender::Recover => "recover",
            Contender::Phased => "phased",
            Contender::Up => "up",
            Contender::UpHealthy => "up-healthy",
            Contender::UpStale => "up-stale",
            Contender::UpWorker => "up-worker",
            Contender::UpReadopted => "up-readopted",
            Contender::RecoverReadopted => "recover-readopted",
        }
    }

    /// What the world looks like before the contender starts.
    fn setup(self) -> &'static str {
        match self {
            Contender::UpHealthy => "healthy (no Docker restart)",
            Contender::UpStale => "healthy, then fault stale_workload inventory-service",
            Contender::UpWorker => "3 nodes, docker restart bookstore-worker + wait_healthy",
            Contender::UpReadopted | Contender::RecoverReadopted => {
                "mesh_return Readopted{seed 7, one pod}; docker_restart + wait_settled"
            }
            _ => "docker_restart + wait_healthy",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Contender::Up
            | Contender::UpHealthy
            | Contender::UpStale
            | Contender::UpWorker
            | Contender::UpReadopted => "up",
            _ => "recover",
        }
    }
}

/// One contender's run.
#[derive(Debug, Clone)]
struct RunResult {
    contender: Contender,
    run: usize,
    /// Seconds from start until the poll saw every route healthy (None: not within the deadline).
    healthy: Option<f64>,
    exited: f64,
    /// Exit code (None: killed at the deadline, or by a signal).
    code: Option<i32>,
    kubectl: usize,
    cpu_self: f64,
    cpu_children: f64,
    crash_loops: usize,
    /// What it restarted (deployments, daemonsets whose pods it deleted), and what was stale
    /// before it started (`UpWorker`: ztunnel and the workloads with a pod on the worker).
    restarted: std::collections::BTreeSet<String>,
    stale: std::collections::BTreeSet<String>,
    /// The restarted node's own critical path (`UpWorker`): its ztunnel, then the slowest chain
    /// among the stale workloads (and the connectors they need), seconds × the time scale.
    node_path: Option<(Vec<String>, f64)>,
    /// `rollout restart` PATCHes (deployments and daemonsets) and pod DELETEs the contender sent.
    restarts: usize,
    /// ztunnel was restarted.
    ztunnel_restarted: bool,
    /// Seconds from the Docker restart until the kubelet had every pod back (Ready, or in a
    /// crash loop's back-off), before the contender started.
    back: Option<f64>,
    /// The pods the mesh did not re-adopt (the `mesh-outside` event).
    outside: Vec<String>,
    milestones: Vec<(String, Option<f64>)>,
    /// `bookstore --json` step_finished events: (step, seconds).
    steps: Vec<(String, f64)>,
    /// Why the stack was not healthy at the deadline.
    unhealthy: Option<String>,
}

impl RunResult {
    fn ok(&self) -> bool {
        self.code == Some(0) && self.healthy.is_some()
    }
}

struct Bench {
    opts: BenchOptions,
    guide: PathBuf,
    real_kubectl: PathBuf,
    clk_tck: f64,
    logs: PathBuf,
    /// Deadline for one contender (its run and the healthy poll after it).
    deadline: Duration,
    /// Deadline for the simulated stack to come back after the Docker restart.
    settle_deadline: Duration,
}

/// Run the benchmark and print its report on stdout.
pub fn run(opts: BenchOptions) -> Result<()> {
    if !(opts.time_scale > 0.0 && opts.time_scale.is_finite()) {
        bail!("--time-scale must be a positive number");
    }
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(bad) = opts.only.iter().find(|o| !SECTIONS.contains(&o.as_str())) {
        bail!("--only {bad}: not one of {}", SECTIONS.join(", "));
    }
    if !opts.bookstore.is_file() {
        bail!(
            "no bookstore binary at {}: build it first (`cargo build --release -p bookstore`), or pass --bookstore PATH",
            opts.bookstore.display()
        );
    }
    let bookstore = opts.bookstore.canonicalize()?;
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("seed/restart-guide.sh");
    if !guide.is_file() {
        bail!("the guide's script is missing: {}", guide.display());
    }
    let real_kubectl = which::which("kubectl").context("kubectl is not on PATH")?;
    let scale = opts.time_scale;

    let infra = Infra::load(&SimOptions::default().infra_dir)?;
    let graph = Schedule::new(recovery_graph(&infra, scale, true))?;
    let bare = Schedule::new(recovery_graph(&infra, scale, false))?;
    let (_, critical) = graph.critical();
    let slowest = crate::latency::LATENCIES.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let logs = tempfile::Builder::new().prefix("bookstore-bench-").tempdir()?.keep();
    let bench = Bench {
        opts: BenchOptions { bookstore, ..opts },
        guide,
        real_kubectl,
        clk_tck: clock_ticks(),
        logs,
        deadline: Duration::from_secs_f64((critical * 4.0 + 30.0).max(60.0)),
        settle_deadline: Duration::from_secs_f64(slowest * scale * 3.0 + 30.0),
    };
    let contenders: Vec<Contender> =
        Contender::ALL.into_iter().filter(|c| bench.opts.runs_section(c.slug())).collect();
    let watch = bench.opts.runs_section("watch");
    let bootstrap = bench.opts.runs_section("bootstrap");
    eprintln!(
        "bench: time scale {scale}, {} run(s) × {} contenders{}; logs in {}",
        bench.opts.runs,
        contenders.len(),
        if watch { " + bookstore watch" } else { "" },
        bench.logs.display()
    );

    let mut results: Vec<RunResult> = Vec::new();
    let mut watched: Vec<WatchRun> = Vec::new();
    for run in 1..=bench.opts.runs {
        if watch {
            watched.extend(bench.run_watches(run)?);
        }
        for c in contenders.iter().copied() {
            eprintln!("[run {run}/{}] {}: fresh simulator, Docker restart …", bench.opts.runs, c.label());
            let r = bench.run_once(c, run)?;
            eprintln!(
                "[run {run}/{}] {}: exit {} after {:.2}s, healthy at {}, {} kubectl, cpu {:.2}s + children {:.2}s{}",
                bench.opts.runs,
                c.label(),
                r.code.map_or("killed".to_string(), |c| c.to_string()),
                r.exited,
                r.healthy.map_or("-".to_string(), |t| format!("{t:.2}s")),
                r.kubectl,
                r.cpu_self,
                r.cpu_children,
                r.unhealthy.as_ref().map_or(String::new(), |w| format!(" (not healthy: {w})")),
            );
            results.push(r);
        }
    }
    if !contenders.is_empty() {
        print!("{}", bench.report(&infra, &graph, &bare, &results));
    }
    if watch {
        if !contenders.is_empty() {
            println!();
        }
        print!("{}", bench.report_watch(&graph, &watched));
    }
    if bootstrap {
        if !contenders.is_empty() || watch {
            println!();
        }
        print!("{}", bootstrap::run(&bench.opts, &bench.real_kubectl, bench.clk_tck, &bench.logs)?);
    }
    Ok(())
}
