//! From parsed arguments to a validated [`Config`] before anything runs (just's `config.rs`): the
//! stack file loaded and checked, every flag's value parsed, and the [`Command`] to run, which
//! knows what it changes ([`Command::effect`]: the lock follows from it).

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{self, Cli, ManagerArg, RecoverArgs};
use crate::error::{Error, Result};
use crate::plan::{self, Known, Order, Step};
use crate::stack::{self, Source, Stack, parse_duration};

/// What to do, validated.
pub struct Config {
    pub stack: Stack,
    pub command: Command,
    pub dry_run: bool,
    /// `--tolerate`: waits sit out their deadlines instead of failing fast on a broken pod.
    pub tolerate: bool,
    /// `--timings`: which timeline files to write, and where.
    pub timings: Option<TimingsOut>,
}

/// `--timings=html,json` and `--timings-dir`.
#[derive(Clone, Debug)]
pub struct TimingsOut {
    pub html: bool,
    pub json: bool,
    pub dir: PathBuf,
}

/// The command to run, its flags parsed.
pub enum Command {
    /// Run these steps (`recover`, `connectors`, `smoke`).
    Steps { title: &'static str, steps: Vec<Step> },
    /// Detect (read-only), then bootstrap, resume the bootstrap, or converge.
    Up {
        order: Order,
        settle: Option<Duration>,
        /// `--tiers`: bootstrap tier by tier, as before the graph.
        tiers: bool,
    },
    /// Delete the kind cluster.
    Down { yes: bool },
    /// Read-only diagnosis.
    Doctor,
    /// Read-only table.
    Status,
    /// Follow Docker's events; heal whenever the node starts again or the periodic check
    /// (`interval`, zero: off) fails.
    Watch { interval: Duration },
    /// `watch --install|--uninstall|--status`.
    Service { op: ServiceOp, manager: Manager, interval: Option<String> },
}

/// What a command changes, and so which lock it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing: no lock.
    Reads,
    /// The cluster: its lock for the whole run.
    Cluster,
    /// The cluster, now and then: its lock for each heal (`watch`).
    Heals,
    /// The user's service files, not the cluster: no lock.
    UserService,
}

/// `watch --install`, `--uninstall`, `--status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceOp {
    Install,
    Uninstall,
    Status,
}

/// Which service manager runs `watch` at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manager {
    Launchd,
    Systemd,
}

impl Manager {
    /// This machine's: launchd on macOS, systemd elsewhere.
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") { Manager::Launchd } else { Manager::Systemd }
    }
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Steps { title, .. } => title,
            Command::Up { .. } => "up",
            Command::Down { .. } => "down",
            Command::Doctor => "doctor",
            Command::Status => "status",
            Command::Watch { .. } | Command::Service { .. } => "watch",
        }
    }

    /// What it changes when it runs (a dry run changes nothing, whatever the command).
    pub fn effect(&self) -> Effect {
        match self {
            Command::Steps { steps, .. } if steps.iter().any(Step::changes) => Effect::Cluster,
            Command::Steps { .. } => Effect::Reads,
            Command::Up { .. } | Command::Down { .. } => Effect::Cluster,
            Command::Doctor | Command::Status => Effect::Reads,
            Command::Watch { .. } => Effect::Heals,
            Command::Service { op: ServiceOp::Status, .. } => Effect::Reads,
            Command::Service { op: ServiceOp::Install | ServiceOp::Uninstall, .. } => Effect::UserService,
        }
    }
}

fn duration_arg(flag: &str, text: Option<&str>) -> Result<Option<Duration>> {
    match text {
        None => Ok(None),
        Some(t) => parse_duration(t).map(Some).ok_or_else(|| {
            Error::input(format!("{flag} value"), format!("`{t}` is not a duration (e.g. 0s, 10s, 2m)"))
        }),
    }
}

fn timings_arg(args: &RecoverArgs) -> Result<Option<TimingsOut>> {
    let Some(formats) = &args.timings else { return Ok(None) };
    let mut out = TimingsOut { html: false, json: false, dir: args.timings_dir.clone() };
    for format in formats.split(',').map(str::trim) {
        match format {
            "html" => out.html = true,
            "json" => out.json = true,
            other => {
                return Err(Error::input(
                    "--timings value",
                    format!("`{other}` is not a format (html, json, or html,json)"),
                ));
            }
        }
    }
    Ok(Some(out))
}

impl Config {
    /// Everything checked before the first change: the stack file (and everything it names),
    /// every flag's value. `completions` is not a [`Command`]: the caller prints it first.
    pub fn from_cli(cli: Cli) -> Result<Config> {
        let source = match &cli.stack {
            Some(path) => Source::File(path.clone()),
            None => Source::Embedded,
        };
        // doctor and status report a cluster config without fixed host ports instead of refusing it.
        let diagnosis = matches!(cli.command, cli::Command::Doctor | cli::Command::Status);
        let mut stack = if diagnosis { stack::load_for_diagnosis(source)? } else { stack::load(source)? };
        // The cluster is checked against the stack file's allow_contexts before anything runs.
        stack.cluster.target = stack.target(cli.context.as_deref())?;
        let tolerate = cli.command.recover_args().is_some_and(|a| a.tolerate);
        let timings = match cli.command.recover_args() {
            Some(args) => timings_arg(args)?,
            None => None,
        };
        let order = |args: &RecoverArgs| if args.phased { Order::Phased } else { Order::Graph };
        let command = match &cli.command {
            cli::Command::Up(up) => Command::Up {
                order: order(&up.recover),
                settle: duration_arg("--settle", up.recover.settle.as_deref())?,
                tiers: up.tiers,
            },
            cli::Command::Recover(args) => {
                let settle = duration_arg("--settle", args.settle.as_deref())?;
                let steps = plan::recover(&stack, order(args), settle, Known::default());
                Command::Steps { title: "recover", steps }
            }
            cli::Command::Connectors => Command::Steps { title: "connectors", steps: plan::connectors() },
            cli::Command::Smoke { timeout } => {
                if let Some(t) = duration_arg("--timeout", timeout.as_deref())? {
                    stack.smoke.timeout = t;
                }
                Command::Steps { title: "smoke", steps: plan::smoke() }
            }
            cli::Command::Down { yes } => Command::Down { yes: *yes },
            cli::Command::Watch(args) => {
                let interval = duration_arg("--interval", Some(&args.interval))?.unwrap_or_default();
                let op = match (args.install, args.uninstall, args.status) {
                    (true, _, _) => Some(ServiceOp::Install),
                    (_, true, _) => Some(ServiceOp::Uninstall),
                    (_, _, true) => Some(ServiceOp::Status),
                    _ => None,
                };
                match op {
                    Some(op) => Command::Service {
                        op,
                        manager: match args.manager {
                            Some(ManagerArg::Launchd) => Manager::Launchd,
                            Some(ManagerArg::Systemd) => Manager::Systemd,
                            None => Manager::native(),
                        },
                        interval: (args.interval != "60s").then(|| args.interval.clone()),
                    },
                    None if args.manager.is_some() => {
                        return Err(Error::input(
                            "invocation",
                            "--manager goes with --install, --uninstall or --status",
                        ));
                    }
                    None => Command::Watch { interval },
                }
            }
            cli::Command::Doctor => Command::Doctor,
            cli::Command::Status => Command::Status,
            cli::Command::Completions { .. } => {
                return Err(Error::input("invocation", "completions print before the stack loads"));
            }
        };
        Ok(Config { stack, command, dry_run: cli.dry_run, tolerate, timings })
    }
}
