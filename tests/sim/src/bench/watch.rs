//! `bookstore watch` (issues 11, 20): on a fresh healthy simulator Docker Desktop restarts
//! (away a few seconds, then back) with the watcher running, with the watcher started only once
//! Docker is back (a login agent), and with the node left exited by Docker (kind#3244); the
//! figure is seconds from Docker being back to every route healthy.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bookstore::event::{Event, HealOutcome, Stamped};

use super::{
    Bench, POLL_EVERY, SAMPLE_EVERY, fmt_opt, median, poll_healthy, surround, table, target, write_shim,
};
use crate::bench::Schedule;
use crate::config::Infra;
use crate::sim::{Sim, SimOptions};

/// How long Docker is away in the watch section's Docker Desktop restart, seconds × the scale.
const WATCH_DOWN_SECS: f64 = 3.0;
/// What the watcher may add after Docker is back, on top of 1.05 × the critical path: noticing
/// Docker back (its socket, polled every 100 ms), the stream and the node's inspect, the heal's
/// observation; and for a node left exited its `docker start` (issues 11 and 20: + 3 s).
const WATCH_SLACK_SECS: f64 = 3.0;

/// The worlds of the watch section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchWorld {
    /// The watcher runs when Docker Desktop restarts (issue 11).
    Running,
    /// A login agent: Docker Desktop restarts (the node with it), then the watcher starts.
    StartedAfter,
    /// Docker comes back without the node (kind#3244): the watcher starts it.
    NodeLeftExited,
}

impl WatchWorld {
    const ALL: [WatchWorld; 3] = [WatchWorld::Running, WatchWorld::StartedAfter, WatchWorld::NodeLeftExited];

    fn label(self) -> &'static str {
        match self {
            WatchWorld::Running => "watcher running",
            WatchWorld::StartedAfter => "watcher started after the restart",
            WatchWorld::NodeLeftExited => "node left exited",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            WatchWorld::Running => "running",
            WatchWorld::StartedAfter => "started-after",
            WatchWorld::NodeLeftExited => "node-left-exited",
        }
    }

    fn issue(self) -> u32 {
        if self == WatchWorld::Running { 11 } else { 20 }
    }
}

/// One watch run: seconds from Docker being back.
#[derive(Debug, Clone)]
pub(super) struct WatchRun {
    world: WatchWorld,
    pub(super) run: usize,
    pub(super) heal_started: Option<f64>,
    pub(super) heal_finished: Option<f64>,
    /// The route poll saw every route healthy.
    pub(super) healthy: Option<f64>,
    /// The watcher's exit code after SIGTERM.
    pub(super) code: Option<i32>,
    pub(super) kubectl: usize,
    pub(super) unhealthy: Option<String>,
}

impl WatchRun {
    pub(super) fn ok(&self) -> bool {
        self.code == Some(0) && self.healthy.is_some()
    }
}

impl Bench {
    /// Each world of the watch section, once (a fresh simulator each).
    pub(super) fn run_watches(&self, run: usize) -> Result<Vec<WatchRun>> {
        let mut out = Vec::new();
        for world in WatchWorld::ALL {
            eprintln!("[run {run}/{}] bookstore watch, {}: fresh simulator …", self.opts.runs, world.label());
            let r = self.run_watch(world, run)?;
            eprintln!(
                "[run {run}/{}] bookstore watch, {}: Docker back → heal started {}, heal done {}, every route healthy {}{}",
                self.opts.runs,
                world.label(),
                fmt_opt(r.heal_started, 2),
                fmt_opt(r.heal_finished, 2),
                fmt_opt(r.healthy, 2),
                r.unhealthy.as_ref().map_or(String::new(), |w| format!(" (not healthy: {w})")),
            );
            out.push(r);
        }
        Ok(out)
    }

    fn run_watch(&self, world: WatchWorld, run: usize) -> Result<WatchRun> {
        let dir = self.logs.join(format!("run{run}-watch-{}", world.slug()));
        std::fs::create_dir_all(&dir)?;
        let scale = self.opts.time_scale;
        let left = world == WatchWorld::NodeLeftExited;
        let sim =
            Sim::start(SimOptions { time_scale: scale, node_left_exited: left, ..SimOptions::default() })?;
        sim.wait_healthy(self.settle_deadline)?;
        let infra = Infra::load(&sim.dir().join("infra"))?;
        let calls = dir.join("kubectl.calls");
        let shim = write_shim(&dir.join("shim"), &self.real_kubectl, &calls)?;
        let mut cmd = sim.command(&self.opts.bookstore.to_string_lossy());
        cmd.arg("watch").arg("--stack").arg(sim.stack_path()).args(["--json", "--color", "never"]);
        surround(&mut cmd, &sim, &shim, &dir)?;
        std::fs::write(dir.join("command"), format!("{cmd:?}\n"))?;
        let events =
            || bookstore::event::parse(&std::fs::read_to_string(dir.join("stdout")).unwrap_or_default());
        let finished_at = |events: &[Stamped]| -> Vec<u64> {
            events.iter().filter(|e| matches!(e.event, Event::HealFinished { .. })).map(|e| e.t_ms).collect()
        };
        let until = |what: &str, deadline: Instant, f: &dyn Fn() -> bool| -> Result<()> {
            while !f() {
                if Instant::now() > deadline {
                    bail!("bookstore watch: no {what} within its deadline (see {})", dir.display());
                }
                std::thread::sleep(POLL_EVERY);
            }
            Ok(())
        };
        let docker_desktop_restart = || {
            // Away for a while (socket gone, event streams ended), then back: the node restarted
            // with it, or left exited.
            sim.docker_stop();
            std::thread::sleep(Duration::from_secs_f64((WATCH_DOWN_SECS * scale).max(0.5)));
            sim.docker_start();
            Instant::now()
        };
        let (mut child, started, back) = if world == WatchWorld::StartedAfter {
            let back = docker_desktop_restart();
            (cmd.spawn().context("starting bookstore watch")?, Instant::now(), back)
        } else {
            let started = Instant::now();
            let mut child = cmd.spawn().context("starting bookstore watch")?;
            // Its first look (a check on the healthy stack) done, as a login agent's long ago.
            let first = until("first heal_finished event", started + Duration::from_secs(60), &|| {
                !finished_at(&events()).is_empty()
            });
            if let Err(e) = first {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            (child, started, docker_desktop_restart())
        };
        let (healthy, unhealthy) = match poll_healthy(&sim, &infra, back + self.deadline) {
            Ok(at) => (Some((at - back).as_secs_f64()), None),
            Err(why) => (None, Some(why)),
        };
        // The watcher's clock starts with it: its t_ms on the bench's clock, from Docker's return.
        let after_back = |t_ms: u64| {
            let at = started + Duration::from_millis(t_ms);
            (at >= back).then(|| (at - back).as_secs_f64())
        };
        let _ = until("heal_finished event", back + self.deadline, &|| {
            finished_at(&events()).into_iter().any(|t| after_back(t).is_some())
        });
        // A service manager's stop.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let stop_by = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(status) = child.try_wait()? {
                break status.code();
            }
            if Instant::now() > stop_by {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(SAMPLE_EVERY);
        };
        std::fs::write(dir.join("audit.json"), serde_json::to_string(&sim.audit())?)?;
        drop(sim);
        // The first heal that starts after Docker's return, and how that heal ended.
        let events = events();
        let heal = events.iter().find_map(|e| match e.event {
            Event::HealStarted { heal, .. } => after_back(e.t_ms).map(|at| (heal, at)),
            _ => None,
        });
        let finished = heal.and_then(|(n, _)| {
            events.iter().find_map(|e| match e.event {
                Event::HealFinished { heal, outcome, .. } if heal == n => Some((outcome, e.t_ms)),
                _ => None,
            })
        });
        Ok(WatchRun {
            world,
            run,
            heal_started: heal.map(|(_, at)| at),
            heal_finished: finished.filter(|(o, _)| *o == HealOutcome::Ok).and_then(|(_, t)| after_back(t)),
            healthy,
            code,
            kubectl: std::fs::read_to_string(&calls).map(|t| t.lines().count()).unwrap_or(0),
            unhealthy,
        })
    }

    pub(super) fn report_watch(&self, graph: &Schedule, runs: &[WatchRun]) -> String {
        let scale = self.opts.time_scale;
        let (_, path) = graph.critical();
        let down = (WATCH_DOWN_SECS * scale).max(0.5);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bookstore watch (issues 11, 20): on a fresh healthy simulator, `{} watch --stack <sim>/infra/stack.yaml --json`;\n\
             Docker Desktop restarts (Docker away {down:.2} s: socket gone, event stream ended; then back), in three worlds:\n\
             the watcher running (the node restarted with Docker); the watcher started after Docker is back (a login agent:\n\
             the node restarted before it connects); the node left exited by Docker (kind#3244: the watcher starts it).\n\
             Seconds from Docker being back (kubectl spawns are the heal's):",
            self.opts.bookstore.display()
        );
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.world.label().to_string(),
                    r.run.to_string(),
                    r.code.map_or("killed".into(), |c| c.to_string()),
                    fmt_opt(r.heal_started, 2),
                    fmt_opt(r.heal_finished, 2),
                    fmt_opt(r.healthy, 2),
                    r.healthy.map_or("-".into(), |h| format!("{:.3}", h / path)),
                    r.kubectl.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            "ll",
            &["world", "run", "exit", "heal starts", "heal done", "every route healthy", "× path", "kubectl"],
            &rows,
        ));
        let limit = 1.05 * path + WATCH_SLACK_SECS;
        let at =
            if scale == 1.0 { String::new() } else { format!(" (stated for time scale 1; here {scale})") };
        let mut targets = Vec::new();
        for world in WatchWorld::ALL {
            let ok: Vec<f64> =
                runs.iter().filter(|r| r.world == world && r.ok()).filter_map(|r| r.healthy).collect();
            let all = runs.iter().filter(|r| r.world == world).count();
            let med = median(&ok);
            let _ = writeln!(
                out,
                "  {}: {}/{all} ok; median Docker back → every route healthy {} s, the critical path {path:.2} s",
                world.label(),
                ok.len(),
                fmt_opt(med, 2)
            );
            targets.push(target(
                format!(
                    "{} (issue {}): Docker back → every route 200 ≤ 1.05 × {path:.2} + {WATCH_SLACK_SECS:.0} = {limit:.2} s",
                    world.label(),
                    world.issue()
                ),
                med.map(|m| (format!("median {m:.2} s"), m <= limit)),
            ));
        }
        let _ = writeln!(out, "\ntargets (issues 11, 20){at}:");
        out.push_str(&table("lrl", &[], &targets));
        out
    }
}
