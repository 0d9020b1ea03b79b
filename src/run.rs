//! From parsed arguments to an exit code: validate into a [`Config`], build the plan, then run
//! it (or print it with `--dry-run`).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::cli::{Cli, ColorArg, Command};
use crate::error::{Error, Result, code};
use crate::plan::{self, Order, Step};
use crate::stack::{self, Source, Stack, parse_duration};
use crate::steps::{self, Ctx, MissingCluster};
use crate::ui::{Color, Ui};
use crate::{docker, secret};

/// What to do, validated.
pub struct Config {
    pub stack: Stack,
    pub action: Action,
    pub dry_run: bool,
}

pub enum Action {
    /// Run these steps; `missing_cluster` says what a missing cluster means.
    Steps {
        title: &'static str,
        steps: Vec<Step>,
        missing_cluster: MissingCluster,
    },
    Down {
        yes: bool,
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
        let mut stack = stack::load(source)?;
        let action = match &cli.command {
            Command::Up(args) | Command::Recover(args) => {
                let order = if args.phased { Order::Phased } else { Order::Graph };
                let settle = duration_arg("--settle", &args.settle)?;
                let (title, missing_cluster) = match cli.command {
                    Command::Up(_) => ("up", MissingCluster::Bootstrap),
                    _ => ("recover", MissingCluster::Fail),
                };
                Action::Steps { title, steps: plan::recover(&stack, order, settle), missing_cluster }
            }
            Command::Connectors => Action::Steps {
                title: "connectors",
                steps: plan::connectors(),
                missing_cluster: MissingCluster::Fail,
            },
            Command::Smoke { timeout } => {
                if let Some(t) = duration_arg("--timeout", timeout)? {
                    stack.smoke.timeout = t;
                }
                Action::Steps { title: "smoke", steps: plan::smoke(), missing_cluster: MissingCluster::Fail }
            }
            Command::Down { yes } => Action::Down { yes: *yes },
        };
        Ok(Config { stack, action, dry_run: cli.dry_run })
    }
}

/// Run the CLI; the return value is the process exit code.
pub fn run(cli: Cli) -> u8 {
    let color = match cli.color {
        ColorArg::Always => Color::Always,
        ColorArg::Never => Color::Never,
        ColorArg::Auto => Color::Auto,
    };
    let ui = Ui::new(color);
    let result = Config::from_cli(cli).and_then(|config| execute(&config, &ui));
    match result {
        Ok(()) => code::OK,
        Err(err) => {
            ui.error(&format!("{err:#}"));
            err.code()
        }
    }
}

fn execute(config: &Config, ui: &Ui) -> Result<()> {
    match &config.action {
        Action::Steps { title, steps, missing_cluster } => {
            let ctx = Ctx::new(&config.stack, ui, *missing_cluster);
            if config.dry_run {
                print_lines(&steps::describe(&ctx, steps)?);
                return Ok(());
            }
            let started = std::time::Instant::now();
            steps::run(&ctx, steps)?;
            ui.ok_line(&format!(
                "bookstore {title} finished in {} ({} commands run)",
                crate::ui::human(started.elapsed()),
                crate::exec::spawned()
            ));
            Ok(())
        }
        Action::Down { yes } => down(config, ui, *yes),
    }
}

fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{}", secret::redact(line));
    }
}

fn down(config: &Config, ui: &Ui, yes: bool) -> Result<()> {
    let name = &config.stack.cluster.name;
    let delete = docker::kind_delete_cluster(name);
    if config.dry_run {
        print_lines(&[docker::kind_get_clusters().to_string(), delete.to_string()]);
        return Ok(());
    }
    if which::which("kind").is_err() {
        return Err(Error::prerequisite(
            "`kind` was not found on PATH",
            "install kind: https://kind.sigs.k8s.io",
        ));
    }
    let clusters = docker::kind_get_clusters().run()?;
    if !docker::parse_clusters(&clusters.stdout).contains(name) {
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
