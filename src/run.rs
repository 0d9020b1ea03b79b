//! From parsed arguments to an exit code: validate into a [`Config`], build the plan, then run
//! it (or print it with `--dry-run`).

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::cli::{Cli, ColorArg, Command, ManagerArg, RecoverArgs};
use crate::engine::{self, Engine};
use crate::error::{Error, Result, code};
use crate::observe::Ctx;
use crate::plan::{self, Known, Order, Step};
use crate::secret;
use crate::stack::{self, Source, Stack, parse_duration};
use crate::steps;
use crate::ui::{Color, Ui};

/// What to do, validated.
pub struct Config {
    pub stack: Stack,
    pub action: Action,
    pub dry_run: bool,
    /// `--tolerate`: waits sit out their deadlines instead of failing fast on a broken pod.
    pub tolerate: bool,
    /// `--timings`: which timeline files to write, and where.
    pub timings: Option<TimingsOut>,
}

#[derive(Clone, Debug)]
pub struct TimingsOut {
    pub html: bool,
    pub json: bool,
    pub dir: std::path::PathBuf,
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

pub enum Action {
    /// Run these steps.
    Steps {
        title: &'static str,
        steps: Vec<Step>,
    },
    /// Detect (read-only), then bootstrap, resume the bootstrap, or recover.
    Up {
        order: Order,
        settle: Option<Duration>,
        /// `--tiers`: bootstrap tier by tier, as before the graph.
        tiers: bool,
    },
    Down {
        yes: bool,
    },
    /// Read-only diagnosis.
    Doctor,
    /// Read-only table.
    Status,
    /// Follow Docker's events; heal (taking the lock) whenever the node starts again or the
    /// periodic check (`interval`, zero: off) fails.
    Watch {
        interval: Duration,
    },
    /// `watch --install|--uninstall|--status`.
    Service {
        op: crate::watch::service::Op,
        manager: crate::watch::service::Manager,
        interval: Option<String>,
    },
}

fn duration_arg(flag: &str, text: &Option<String>) -> Result<Option<Duration>> {
    match text {
        None => Ok(None),
        Some(t) => parse_duration(t).map(Some).ok_or_else(|| {
            Error::input(format!("{flag} value"), format!("`{t}` is not a duration (e.g. 0s, 10s, 2m)"))
        }),
    }
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config> {
        let source = match &cli.stack {
            Some(path) => Source::File(path.clone()),
            None => Source::Embedded,
        };
        // doctor and status report a cluster config without fixed host ports instead of refusing it.
        let diagnosis = matches!(cli.command, Command::Doctor | Command::Status);
        let mut stack = if diagnosis { stack::load_for_diagnosis(source)? } else { stack::load(source)? };
        // The cluster is checked against the stack file's allow_contexts before anything runs.
        stack.cluster.target = stack.target(cli.context.as_deref())?;
        let tolerate = cli.command.recover_args().is_some_and(|a| a.tolerate);
        let timings = match cli.command.recover_args() {
            Some(args) => timings_arg(args)?,
            None => None,
        };
        let action = match &cli.command {
            Command::Up(up) => Action::Up {
                order: if up.recover.phased { Order::Phased } else { Order::Graph },
                settle: duration_arg("--settle", &up.recover.settle)?,
                tiers: up.tiers,
            },
            Command::Recover(args) => {
                let order = if args.phased { Order::Phased } else { Order::Graph };
                let settle = duration_arg("--settle", &args.settle)?;
                Action::Steps {
                    title: "recover",
                    steps: plan::recover(&stack, order, settle, Known::default()),
                }
            }
            Command::Connectors => Action::Steps { title: "connectors", steps: plan::connectors() },
            Command::Smoke { timeout } => {
                if let Some(t) = duration_arg("--timeout", timeout)? {
                    stack.smoke.timeout = t;
                }
                Action::Steps { title: "smoke", steps: plan::smoke() }
            }
            Command::Down { yes } => Action::Down { yes: *yes },
            Command::Watch(args) => {
                use crate::watch::service::{Manager, Op};
                let interval = duration_arg("--interval", &Some(args.interval.clone()))?.unwrap_or_default();
                let op = match (args.install, args.uninstall, args.status) {
                    (true, _, _) => Some(Op::Install),
                    (_, true, _) => Some(Op::Uninstall),
                    (_, _, true) => Some(Op::Status),
                    _ => None,
                };
                match op {
                    Some(op) => Action::Service {
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
                    None => Action::Watch { interval },
                }
            }
            Command::Doctor => Action::Doctor,
            Command::Status => Action::Status,
            Command::Completions { .. } => unreachable!("handled before the stack loads"),
        };
        Ok(Config { stack, action, dry_run: cli.dry_run, tolerate, timings })
    }
}

/// Run the CLI; the return value is the process exit code.
pub fn run(cli: Cli) -> u8 {
    let color = match cli.color {
        ColorArg::Always => Color::Always,
        ColorArg::Never => Color::Never,
        ColorArg::Auto => Color::Auto,
    };
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "bookstore", &mut std::io::stdout());
        return code::OK;
    }
    let ui = Ui::new(color, cli.json);
    // `--timings` keeps every event from the first one on.
    let ui = if cli.command.recover_args().is_some_and(|a| a.timings.is_some()) { ui.record() } else { ui };
    crate::exec::set_verbose(cli.verbose);
    let command = cli.command.name();
    let started = std::time::Instant::now();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (result, timings) = match Config::from_cli(cli) {
        Ok(config) => {
            // On a shared cluster no node engine, kind or istioctl ever runs, whatever a room forgets.
            let shared = config.stack.cluster.shared();
            let never = ["docker", "podman", "nerdctl", "finch", "nerdctl.lima", "kind", "istioctl"];
            crate::exec::forbid(if shared { &never } else { &[] });
            let timings = config.timings.clone().filter(|_| !config.dry_run);
            if config.dry_run && config.timings.is_some() {
                ui.info("--dry-run: nothing runs, so --timings writes no timeline");
            }
            (execute(&config, &ui), timings)
        }
        Err(err) => (Err(err), None),
    };
    // Children still running on other threads (a restart, a watch) are stopped and reaped
    // before the process exits, whatever the outcome.
    crate::exec::stop_all(std::time::Duration::from_secs(10));
    let code = match &result {
        Ok(()) => code::OK,
        Err(err) => {
            ui.error(&err.to_string(), err.code());
            err.code()
        }
    };
    // `status --json` prints one document and nothing else when it succeeds.
    if !(command == "status" && code == code::OK) {
        let mut summary = serde_json::json!({"command": command, "outcome": if code == 0 { "ok" } else { "failed" },
            "exit_code": code, "duration_ms": started.elapsed().as_millis() as u64,
            "commands": crate::exec::spawned(), "programs": crate::exec::spawned_by_program()});
        if let Some(out) = &timings {
            summary["timings"] = serde_json::json!(write_timings(&ui, out, &summary, started_unix));
        }
        ui.emit("summary", summary);
    }
    code
}

/// `--timings`: the run's recorded events (and its summary) as a timeline, on a terminal as text
/// after the summary line, and as the files asked for. Returns the paths written.
fn write_timings(ui: &Ui, out: &TimingsOut, summary: &serde_json::Value, started_unix: u64) -> Vec<String> {
    use crate::timings::{self, Timeline};
    let mut events = ui.recorded();
    let mut last = summary.clone();
    last["event"] = "summary".into();
    events.push(last);
    let timeline = Timeline::from_events(&events, started_unix);
    if std::io::stderr().is_terminal() {
        let width = console::Term::stderr().size().1 as usize;
        for line in timings::text(&timeline, width, ui.color()) {
            ui.plain(&line);
        }
    }
    let base = out.dir.join(format!("{}-{}", timeline.command, timings::stamp(started_unix)));
    let mut written = Vec::new();
    for (wanted, ext) in [(out.html, "html"), (out.json, "json")] {
        if !wanted {
            continue;
        }
        let body = match ext {
            "html" => timings::html(&timeline),
            _ => serde_json::to_string_pretty(&timeline.to_json()).unwrap_or_default() + "\n",
        };
        let path = base.with_extension(ext);
        match std::fs::create_dir_all(&out.dir).and_then(|()| std::fs::write(&path, secret::redact(&body))) {
            Ok(()) => {
                ui.ok_line(&format!("timings: {}", path.display()));
                written.push(path.display().to_string());
            }
            Err(e) => ui.warn(&format!(
                "cannot write the timings to {}: {e}; pass --timings-dir DIR to write them elsewhere",
                path.display()
            )),
        }
    }
    written
}

/// One mutating run at a time per cluster: an advisory lock on a file in the temp dir, released
/// by the OS when the process exits (even on a crash or Ctrl-C).
fn lock(cluster: &str, command: &str) -> Result<std::fs::File> {
    lock_as(cluster, &format!("pid {} running `bookstore {command}`", std::process::id()))
}

/// The lock, holding `holder` as what a second run is told is working on the cluster.
pub(crate) fn lock_as(cluster: &str, holder: &str) -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("bookstore-{cluster}.lock"));
    let lock_error = |e: std::io::Error| {
        Error::step(
            format!("cannot open the lock file {}: {e}", path.display()),
            "check the temp dir's permissions",
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::Seek;
            let _ = file.set_len(0);
            let _ = file.seek(std::io::SeekFrom::Start(0));
            let _ = write!(file, "{holder}");
            let _ = file.flush();
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = if holder.trim().is_empty() { "unknown process".to_string() } else { holder };
            Err(Error::Busy { holder, lock: path.display().to_string() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
    }
}

fn execute(config: &Config, ui: &Ui) -> Result<()> {
    // `watch` takes the lock for each heal, not for its whole run.
    let mutating = !config.dry_run
        && !matches!(
            &config.action,
            Action::Steps { title: "smoke", .. }
                | Action::Doctor
                | Action::Status
                | Action::Watch { .. }
                | Action::Service { .. }
        );
    let _lock = if mutating {
        let command = match &config.action {
            Action::Steps { title, .. } => title,
            Action::Up { .. } => "up",
            Action::Down { .. } => "down",
            Action::Doctor | Action::Status | Action::Watch { .. } | Action::Service { .. } => {
                unreachable!("takes no lock here")
            }
        };
        Some(lock(&config.stack.cluster.name, command)?)
    } else {
        None
    };
    match &config.action {
        Action::Steps { title, steps } => {
            run_steps(config, &ctx(config, ui), title, steps, Instant::now(), crate::exec::spawned())
        }
        Action::Up { order, settle, tiers } => up(config, ui, *order, *settle, *tiers),
        Action::Down { yes } => down(config, ui, *yes),
        Action::Doctor if config.dry_run => {
            print_lines(ui, &crate::doctor::describe(&ctx(config, ui)));
            Ok(())
        }
        Action::Doctor => crate::doctor::run(&ctx(config, ui)),
        Action::Status => crate::status::run(&ctx(config, ui)),
        Action::Watch { interval } if config.dry_run => {
            print_lines(ui, &crate::watch::describe(config, *interval));
            Ok(())
        }
        Action::Watch { interval } => crate::watch::run(config, ui, *interval),
        Action::Service { .. } if config.stack.cluster.shared() => Err(Error::prerequisite(
            format!(
                "the watcher's service runs on the kind cluster; it is not installed for the shared \
                 cluster `{}`",
                config.stack.cluster.context()
            ),
            format!(
                "run `bookstore watch --context {}` under your own supervisor, or drop --context",
                config.stack.cluster.context()
            ),
        )),
        Action::Service { op, manager, interval } => {
            crate::watch::service::run(config, ui, *op, *manager, interval.as_deref())
        }
    }
}

/// `bookstore up`: detection, then the bootstrap, its resumption, or the recovery. (`watch`
/// heals with this.)
/// `tiers`: a bootstrap goes tier by tier (`up --tiers`) instead of on the graph.
pub(crate) fn up(
    config: &Config,
    ui: &Ui,
    order: Order,
    settle: Option<Duration>,
    tiers: bool,
) -> Result<()> {
    // Detection and the observation only read: they run with --dry-run too, so the printed plan
    // is the one `up` would run here. One context for the observation and the run: what was
    // read is not read again.
    let (started, spawned) = (Instant::now(), crate::exec::spawned());
    let ctx = ctx(config, ui);
    let steps = steps::plan_up(&ctx, order, settle, tiers)?;
    run_steps(config, &ctx, "up", &steps, started, spawned)
}

fn ctx<'a>(config: &'a Config, ui: &'a Ui) -> Ctx<'a> {
    let mut ctx = Ctx::new(&config.stack, ui);
    ctx.tolerate = config.tolerate;
    ctx
}

/// Run the steps (or print them with `--dry-run`); `started` and `spawned`: when the command
/// began and the child count then (for `up`, before its observation).
fn run_steps(
    config: &Config,
    ctx: &Ctx,
    title: &str,
    steps: &[plan::Step],
    started: Instant,
    spawned: usize,
) -> Result<()> {
    let ui = ctx.ui;
    if config.dry_run {
        print_lines(ui, &steps::describe(ctx, steps)?);
        return Ok(());
    }
    steps::run(ctx, steps)?;
    ui.ok_line(&format!(
        "bookstore {title} finished in {} ({} commands run)",
        crate::ui::human(started.elapsed()),
        crate::exec::spawned() - spawned
    ));
    Ok(())
}

/// Dry-run output: pasteable lines on stdout, or `plan` events with `--json`.
fn print_lines(ui: &Ui, lines: &[String]) {
    if ui.json() {
        for line in lines {
            ui.emit("plan", serde_json::json!({"line": line}));
        }
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{}", secret::redact(line));
    }
}

fn down(config: &Config, ui: &Ui, yes: bool) -> Result<()> {
    let name = &config.stack.cluster.name;
    if config.stack.cluster.shared() {
        return Err(Error::prerequisite(
            format!(
                "`down` deletes the kind cluster {name}; on the shared cluster `{}` bookstore deletes nothing",
                config.stack.cluster.context()
            ),
            "drop --context to delete the kind cluster",
        ));
    }
    let engine = Engine::for_run();
    let delete = engine.write().kind_delete_cluster(name);
    if config.dry_run {
        print_lines(ui, &[engine.kind_get_clusters().to_string(), delete.to_string()]);
        return Ok(());
    }
    if which::which("kind").is_err() {
        return Err(Error::prerequisite(
            "`kind` was not found on PATH",
            "install kind: https://kind.sigs.k8s.io",
        ));
    }
    let clusters = engine.kind_get_clusters().run()?;
    if !engine::parse_names(&clusters.stdout).contains(name) {
        ui.ok_line(&format!("no kind cluster named {name}: nothing to delete"));
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::input(
                "invocation",
                format!(
                    "`down` deletes the cluster {name} and all its data; pass --yes to confirm when not on a terminal"
                ),
            ));
        }
        eprint!("Delete the kind cluster {name} and all its data (databases, Kafka)? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            ui.info("not deleted");
            return Err(Error::input("confirmation", "not confirmed"));
        }
    }
    let step = ui.start(&format!("Deleting cluster {name}"));
    delete.run()?;
    step.done("deleted");
    Ok(())
}
