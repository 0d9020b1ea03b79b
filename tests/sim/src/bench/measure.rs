//! Measuring: a contender started and its CPU sampled, its surroundings (the kubectl counting
//! shim, the simulator's environment), the route poll that decides when the stack is healthy,
//! the milestones read from the audit log and the steps from `--json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{POLL_EVERY, SAMPLE_EVERY};
use crate::audit::AuditEntry;
use crate::client;
use crate::config::Infra;
use crate::sim::Sim;

/// One contender's run as measured: its exit, when every route was healthy after it, its CPU.
pub(crate) struct Timed {
    pub exited: f64,
    pub status: Option<std::process::ExitStatus>,
    pub healthy: Option<f64>,
    pub unhealthy: Option<String>,
    pub cpu: Cpu,
}

/// Start the contender, sample its CPU until it exits (killed at `deadline`), then poll every
/// route until healthy within the same deadline; seconds from its start.
pub(crate) fn time_contender(
    cmd: &mut Command,
    label: &str,
    sim: &Sim,
    infra: &Infra,
    deadline: Duration,
    clk_tck: f64,
) -> Result<Timed> {
    let start = Instant::now();
    let end = start + deadline;
    let mut child = cmd.spawn().with_context(|| format!("starting {label}"))?;
    let mut cpu = Cpu::default();
    let status = loop {
        if let Some(s) = read_cpu(child.id(), clk_tck) {
            cpu = s;
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= end {
            eprintln!("   {label} still running at its deadline ({deadline:?}): killed");
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let exited = start.elapsed().as_secs_f64();
    let (healthy, unhealthy) = match status {
        Some(_) => match poll_healthy(sim, infra, end) {
            Ok(at) => (Some((at - start).as_secs_f64()), None),
            Err(why) => (None, Some(why)),
        },
        None => (None, Some("the contender was killed at its deadline".to_string())),
    };
    Ok(Timed { exited, status, healthy, unhealthy, cpu })
}

/// A contender's surroundings: the simulator's environment with the kubectl shim first on PATH,
/// its own temp dir (bookstore's lock), the simulator's folder as working directory, no colour,
/// no stdin, stdout and stderr into `dir`'s files of those names.
pub(crate) fn surround(cmd: &mut Command, sim: &Sim, shim: &Path, dir: &Path) -> Result<()> {
    let sim_path = sim.env().into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v).unwrap_or_default();
    cmd.env("PATH", format!("{}:{sim_path}", shim.display()))
        .env("TMPDIR", sim.dir())
        .env("NO_COLOR", "1")
        .current_dir(sim.dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout"))?)
        .stderr(std::fs::File::create(dir.join("stderr"))?);
    Ok(())
}

/// `<dir>/kubectl`: appends its argv to `calls`, then execs the real kubectl.
pub(crate) fn write_shim(dir: &Path, real: &Path, calls: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let script = format!(
        "#!/bin/sh\n# bookstore-sim bench: count this kubectl process, then run the real one.\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
        sh_quote(&calls.to_string_lossy()),
        sh_quote(&real.to_string_lossy())
    );
    let path = dir.join("kubectl");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir.to_path_buf())
}

pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cpu {
    /// utime + stime, seconds.
    pub own: f64,
    /// cutime + cstime (children waited for), seconds.
    pub children: f64,
}

/// CPU times of a process from `/proc/<pid>/stat` (fields 14-17, after the `(comm)`).
pub(crate) fn read_cpu(pid: u32, clk_tck: f64) -> Option<Cpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // After the comm: state is field 3 (index 0), so utime (14) is index 11.
    Some(Cpu { own: (tick(11)? + tick(12)?) / clk_tck, children: (tick(13)? + tick(14)?) / clk_tck })
}

pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Poll every route until all are healthy (the time of that round) or the deadline.
pub(crate) fn poll_healthy(
    sim: &Sim,
    infra: &Infra,
    deadline: Instant,
) -> std::result::Result<Instant, String> {
    loop {
        let last = match stack_healthy(sim, infra) {
            Ok(()) => return Ok(Instant::now()),
            Err(why) => why,
        };
        if Instant::now() + POLL_EVERY >= deadline {
            return Err(last);
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Every smoke check of the stack file answers 2xx through its host port with its Host header;
/// the Connect check also needs every connector and its tasks RUNNING.
pub(super) fn stack_healthy(sim: &Sim, infra: &Infra) -> std::result::Result<(), String> {
    let names: Vec<&str> = infra.connectors().iter().map(|c| c.name.as_str()).collect();
    for c in &infra.stack.smoke.checks {
        let addr = format!("127.0.0.1:{}", sim.host_port(c.port));
        let path = if c.connectors_running {
            format!("{}{}expand=status", c.path, if c.path.contains('?') { '&' } else { '?' })
        } else {
            c.path.clone()
        };
        let a = client::request(&addr, "GET", &path, c.host.as_deref(), "", Duration::from_secs(2))
            .map_err(|e| format!("{}: {e:#}", c.name))?;
        if !(200..300).contains(&a.status) {
            return Err(format!("{}: HTTP {}", c.name, a.status));
        }
        if c.connectors_running {
            connectors_running(&a.body, &names).map_err(|e| format!("{}: {e}", c.name))?;
        }
    }
    Ok(())
}

/// `GET /connectors?expand=status`: every named connector and all its tasks RUNNING.
pub fn connectors_running(body: &str, names: &[&str]) -> std::result::Result<(), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    for n in names {
        let Some(status) = v.get(*n).and_then(|c| c.get("status")) else {
            return Err(format!("connector {n} has no status"));
        };
        let state = status.pointer("/connector/state").and_then(Value::as_str).unwrap_or("");
        let tasks = status.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
        let tasks_ok = !tasks.is_empty() && tasks.iter().all(|t| t["state"] == "RUNNING");
        if state != "RUNNING" || !tasks_ok {
            return Err(format!("connector {n} is not RUNNING"));
        }
    }
    Ok(())
}

/// Seconds from the contender's start of: ztunnel's rollout, the last database's, the critical
/// path's last workload, Connect's worker, the last connector stored, the last workload.
pub(super) fn milestones(
    audit: &[AuditEntry],
    since_ms: u64,
    infra: &Infra,
    critical_end: &str,
) -> Vec<(String, Option<f64>)> {
    let secs = |t: u64| (t.saturating_sub(since_ms)) as f64 / 1000.0;
    let first = |verb: &str, subject: &str| {
        audit.iter().find(|e| e.t_ms >= since_ms && e.is_event(verb, subject)).map(|e| secs(e.t_ms))
    };
    let rolled = |name: &str| {
        if name == infra.stack.mesh.daemonset {
            // Its rollout, or (`up`: its pods deleted on the stale nodes) its last new pod Ready.
            let since: Vec<AuditEntry> = audit.iter().filter(|e| e.t_ms >= since_ms).cloned().collect();
            return crate::kit::ztunnel_restarted(&since).map(secs);
        }
        let w = infra.workload(name)?;
        first("rollout-complete", &format!("{}/{}", w.namespace, w.name))
    };
    let last_of =
        |v: Vec<Option<f64>>| -> Option<f64> { v.into_iter().try_fold(0.0_f64, |m, t| t.map(|t| m.max(t))) };
    let dbs: Vec<Option<f64>> = infra
        .stack
        .workloads
        .iter()
        .filter(|w| w.role == crate::config::Role::Database)
        .map(|w| rolled(&w.name))
        .collect();
    let all: Vec<Option<f64>> = infra.stack.workloads.iter().map(|w| rolled(&w.name)).collect();
    let connectors: Vec<Option<f64>> =
        infra.connectors().iter().map(|c| first("connector-stored", &c.name)).collect();
    let connect = infra.stack.connect.workload.as_str();
    vec![
        (infra.stack.mesh.daemonset.clone(), rolled(&infra.stack.mesh.daemonset)),
        ("databases".into(), last_of(dbs)),
        (critical_end.to_string(), rolled(critical_end)),
        (connect.to_string(), rolled(connect)),
        ("connectors stored".into(), last_of(connectors)),
        ("all workloads".into(), last_of(all)),
    ]
}

/// `bookstore --json`: (step, seconds) of every `step_finished` event.
pub(crate) fn json_steps(stdout: &str) -> Vec<(String, f64)> {
    bookstore::event::parse(stdout)
        .into_iter()
        .filter_map(|e| match e.event {
            bookstore::event::Event::StepFinished { step, duration_ms, .. } => {
                Some((step.split(" (").next().unwrap_or("").to_string(), duration_ms as f64 / 1000.0))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::median;

    #[test]
    fn medians_and_connector_status() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let body = r#"{"a":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"state":"RUNNING"}]}},
                       "b":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"state":"FAILED"}]}}}"#;
        assert!(connectors_running(body, &["a"]).is_ok());
        assert!(connectors_running(body, &["a", "b"]).is_err());
        assert!(connectors_running(r#"{"a":{}}"#, &["a"]).is_err());
    }
}
