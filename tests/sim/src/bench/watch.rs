//! `bookstore watch` (issue 11): on a fresh healthy simulator the watcher is started, Docker
//! Desktop restarts, and the figure is seconds from Docker being back to every route healthy.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bookstore::event::{Event, HealOutcome};

use super::{
    Bench, POLL_EVERY, SAMPLE_EVERY, fmt_opt, median, poll_healthy, surround, table, target, write_shim,
};
use crate::bench::Schedule;
use crate::config::Infra;
use crate::sim::{Sim, SimOptions};

/// How long Docker is away in the watch section's Docker Desktop restart, seconds × the scale.
const WATCH_DOWN_SECS: f64 = 3.0;
/// The watcher's reconnect backoff ceiling (`src/watch/mod.rs`): the most it adds after Docker is back.
const WATCH_RECONNECT_SECS: f64 = 2.0;

/// One watch run: seconds from Docker being back.
#[derive(Debug, Clone)]
pub(super) struct WatchRun {
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
    pub(super) fn run_watch(&self, run: usize) -> Result<WatchRun> {
        let dir = self.logs.join(format!("run{run}-watch"));
        std::fs::create_dir_all(&dir)?;
        let scale = self.opts.time_scale;
        let sim = Sim::start(SimOptions { time_scale: scale, ..SimOptions::default() })?;
        sim.wait_healthy(self.settle_deadline)?;
        let infra = Infra::load(&sim.dir().join("infra"))?;
        let calls = dir.join("kubectl.calls");
        let shim = write_shim(&dir.join("shim"), &self.real_kubectl, &calls)?;
        let mut cmd = sim.command(&self.opts.bookstore.to_string_lossy());
        cmd.arg("watch").arg("--stack").arg(sim.stack_path()).args(["--json", "--color", "never"]);
        surround(&mut cmd, &sim, &shim, &dir)?;
        std::fs::write(dir.join("command"), format!("{cmd:?}\n"))?;
        let started = Instant::now();
        let mut child = cmd.spawn().context("starting bookstore watch")?;
        let events =
            || bookstore::event::parse(&std::fs::read_to_string(dir.join("stdout")).unwrap_or_default());
        let until = |what: &str, deadline: Instant, f: &dyn Fn() -> bool| -> Result<()> {
            while !f() {
                if Instant::now() > deadline {
                    bail!("bookstore watch: no {what} within its deadline (see {})", dir.display());
                }
                std::thread::sleep(POLL_EVERY);
            }
            Ok(())
        };
        let watching = until("watching event", started + Duration::from_secs(60), &|| {
            events().iter().any(|e| matches!(e.event, Event::Watching { .. }))
        });
        if let Err(e) = watching {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        // Docker Desktop restarts: away for a while, then back with the node restarted.
        sim.docker_stop();
        std::thread::sleep(Duration::from_secs_f64((WATCH_DOWN_SECS * scale).max(0.5)));
        sim.docker_start();
        let back = Instant::now();
        let (healthy, unhealthy) = match poll_healthy(&sim, &infra, back + self.deadline) {
            Ok(at) => (Some((at - back).as_secs_f64()), None),
            Err(why) => (None, Some(why)),
        };
        let _ = until("heal_finished event", back + self.deadline, &|| {
            events().iter().any(|e| matches!(e.event, Event::HealFinished { .. }))
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
        // The watcher's clock starts with it: its t_ms on the bench's clock, from Docker's return
        // (the first heal that starts after it, and how that heal ended).
        let after_back = |t_ms: u64| {
            let at = started + Duration::from_millis(t_ms);
            (at >= back).then(|| (at - back).as_secs_f64())
        };
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
            "bookstore watch (issue 11): on a fresh healthy simulator, `{} watch --stack <sim>/infra/stack.yaml --json`;\n\
             Docker Desktop restarts (Docker away {down:.2} s: socket gone, event stream ended; then back, the node restarted);\n\
             seconds from Docker being back (kubectl spawns are the heal's):",
            self.opts.bookstore.display()
        );
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
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
            "l",
            &["run", "exit", "heal starts", "heal done", "every route healthy", "× path", "kubectl"],
            &rows,
        ));
        let ok: Vec<f64> = runs.iter().filter(|r| r.ok()).filter_map(|r| r.healthy).collect();
        let med = median(&ok);
        let _ = writeln!(
            out,
            "  {}/{} ok; median Docker back → every route healthy {} s, the critical path {path:.2} s",
            ok.len(),
            runs.len(),
            fmt_opt(med, 2)
        );
        let limit = 1.05 * path + WATCH_RECONNECT_SECS + 1.0;
        let at =
            if scale == 1.0 { String::new() } else { format!(" (stated for time scale 1; here {scale})") };
        let _ = writeln!(out, "\ntargets (issue 11){at}:");
        let rows = vec![target(
            format!(
                "Docker back → every route 200 ≤ 1.05 × {path:.2} + {WATCH_RECONNECT_SECS:.0} (reconnect ceiling) + 1 = {limit:.2} s"
            ),
            med.map(|m| (format!("median {m:.2} s"), m <= limit)),
        )];
        out.push_str(&table("lrl", &[], &rows));
        out
    }
}
