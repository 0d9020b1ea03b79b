//! From parsed arguments to an exit code: a validated [`Config`], the lock its command's
//! [`Effect`] asks for, then dispatch to the room that runs it (or prints it with `--dry-run`);
//! the one place an error is printed, and the `summary` event.

use std::time::Instant;

use crate::cli::{Cli, ColorArg, Command as Args};
use crate::config::{Command, Config, Effect};
use crate::error::{Result, code};
use crate::event::{Event, Outcome};
use crate::ui::{Color, Ui};
use crate::{doctor, exec, lock, observe, status, steps, timings, watch};

/// Run the CLI; the return value is the process exit code.
pub fn run(cli: Cli) -> u8 {
    let color = match cli.color {
        ColorArg::Always => Color::Always,
        ColorArg::Never => Color::Never,
        ColorArg::Auto => Color::Auto,
    };
    if let Args::Completions { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "bookstore", &mut std::io::stdout());
        return code::OK;
    }
    let ui = Ui::new(color, cli.json);
    // `--timings` keeps every event from the first one on.
    let ui = if cli.command.recover_args().is_some_and(|a| a.timings.is_some()) { ui.record() } else { ui };
    exec::set_verbose(cli.verbose);
    let command = cli.command.name();
    let started = Instant::now();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (result, timings) = match Config::from_cli(cli) {
        Ok(config) => {
            // On a shared cluster no node engine, kind or istioctl ever runs, whatever a room forgets.
            let shared = config.stack.cluster.shared();
            let never = ["docker", "podman", "nerdctl", "finch", "nerdctl.lima", "kind", "istioctl"];
            exec::forbid(if shared { &never } else { &[] });
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
    exec::stop_all(std::time::Duration::from_secs(10));
    let code = match &result {
        Ok(()) => code::OK,
        Err(err) => {
            ui.error(&err.to_string(), err.code());
            err.code()
        }
    };
    // `status --json` prints one document and nothing else when it succeeds.
    if !(command == "status" && code == code::OK) {
        let summary = |timings| Event::Summary {
            command: command.to_string(),
            outcome: Outcome::of(code == code::OK),
            exit_code: code,
            duration_ms: started.elapsed().as_millis() as u64,
            commands: exec::spawned(),
            programs: exec::spawned_by_program(),
            timings,
        };
        let written = timings.as_ref().map(|out| timings::write(&ui, out, summary(None), started_unix));
        ui.emit(summary(written));
    }
    code
}

/// The lock the command's effect asks for, then the room that runs it.
fn execute(config: &Config, ui: &Ui) -> Result<()> {
    let command = &config.command;
    let _lock = match command.effect() {
        _ if config.dry_run => None,
        Effect::Cluster => Some(lock::acquire(&config.stack.cluster.name, &lock::holder(command.name()))?),
        // `watch` takes the lock for each heal, not for its whole run.
        Effect::Reads | Effect::Heals | Effect::UserService => None,
    };
    match command {
        Command::Steps { title, steps } => steps::execute(config, ui, title, steps),
        Command::Up { order, settle, tiers } => steps::up(config, ui, *order, *settle, *tiers),
        Command::Down { yes } => steps::down::run(config, ui, *yes),
        Command::Doctor if config.dry_run => {
            ui.plan(&doctor::describe(&observe::Ctx::new(&config.stack, ui)));
            Ok(())
        }
        Command::Doctor => doctor::run(&observe::Ctx::new(&config.stack, ui)),
        Command::Status => status::run(&observe::Ctx::new(&config.stack, ui)),
        Command::Watch { interval } if config.dry_run => {
            ui.plan(&watch::describe(config, *interval));
            Ok(())
        }
        Command::Watch { interval } => watch::run(config, ui, *interval),
        Command::Service { .. } if config.stack.cluster.shared() => Err(crate::error::Error::prerequisite(
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
        Command::Service { op, manager, interval } => {
            steps::service::run(config, ui, *op, *manager, interval.as_deref())
        }
    }
}
