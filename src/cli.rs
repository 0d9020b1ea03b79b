//! Command-line interface (clap derive). Raw arguments become a validated [`crate::config::Config`]
//! before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::EXIT_CODES;

#[derive(Parser, Debug)]
#[command(
    name = "bookstore",
    version,
    about = "Bring the BookStore kind stack up from scratch, or back to health after a Docker restart",
    after_help = EXIT_CODES,
    after_long_help = concat!(
        "Examples:\n",
        "  bookstore up                      # bootstrap it if absent, else restart what is broken\n",
        "  bookstore up --dry-run            # what up would restart and keep, and why\n",
        "  bookstore recover --dry-run       # print every command and request, change nothing\n",
        "  bookstore recover --phased        # the restart guide's exact phases\n",
        "  bookstore up --timings            # and a timeline page in bookstore-timings/\n",
        "  bookstore connectors              # re-register the Debezium connectors only\n",
        "  bookstore smoke                   # check every route\n",
        "  bookstore doctor                  # what is wrong, the evidence, and the command that fixes it\n",
        "  bookstore status --json           # workloads, connectors and routes as one JSON document\n",
        "  bookstore watch                   # heal the stack by itself after every Docker restart\n",
        "  bookstore watch --install         # ... at login, as a user service (launchd or systemd)\n",
        "  bookstore down --yes              # delete the cluster (scripts)\n",
        "  bookstore up --context k3s-dev    # a shared cluster the stack file's allow_contexts names\n",
        "\n",
        crate::exit_codes!()
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Stack file to use instead of the embedded default (paths in it resolve from its folder)
    #[arg(long, global = true, env = "BOOKSTORE_STACK", value_name = "FILE")]
    pub stack: Option<PathBuf>,

    /// The kube context to work on (default: the kind cluster's, `kind-<cluster>`); any other
    /// must be listed under `allow_contexts:` in the stack file (a shared development cluster)
    #[arg(long, global = true, env = "BOOKSTORE_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// Print the exact commands and HTTP requests, secrets masked, and change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Also write newline-delimited JSON events to stdout (schema in the README)
    #[arg(long, global = true)]
    pub json: bool,

    /// Show every child command and its output on stderr
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// When to colour the output (NO_COLOR is honoured)
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bootstrap the stack when there is no kind cluster (or resume one), else restart only what
    /// is broken (a healthy stack costs a check, never a restart), then smoke-test it
    Up(UpArgs),
    /// Recover after a Docker restart: ztunnel, every workload, the connectors, then a smoke test
    Recover(RecoverArgs),
    /// Re-register the Debezium connectors only
    Connectors,
    /// Check every route through the host ports
    Smoke {
        /// How long to retry failing checks (default: the stack file's smoke.timeout)
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// Diagnose the stack, read-only: each problem with its evidence and the command that fixes
    /// it (exit 6 when any is an error)
    Doctor,
    /// One table: each workload (ready/desired, restarts, age), each connector, each route
    Status,
    /// Heal the stack by itself: follow Docker's events for the kind node and, whenever it starts
    /// again (Docker Desktop restart, `docker restart`, reboot), run what `bookstore up` runs.
    /// Runs until Ctrl-C (exit 130) or SIGTERM (exit 0)
    Watch(WatchArgs),
    /// Print a shell completion script (e.g. `bookstore completions bash > /etc/bash_completion.d/bookstore`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Delete the kind cluster and everything in it (the only destructive command)
    Down {
        /// Do not ask for confirmation (required when stdin is not a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Recover(_) => "recover",
            Command::Connectors => "connectors",
            Command::Smoke { .. } => "smoke",
            Command::Doctor => "doctor",
            Command::Status => "status",
            Command::Watch(_) => "watch",
            Command::Down { .. } => "down",
            Command::Completions { .. } => "completions",
        }
    }
}

impl Command {
    /// The recovery's flags, which `up` shares.
    pub fn recover_args(&self) -> Option<&RecoverArgs> {
        match self {
            Command::Up(up) => Some(&up.recover),
            Command::Recover(args) => Some(args),
            _ => None,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub recover: RecoverArgs,

    /// Bootstrap tier by tier (each folder of manifests applied and waited for before the next,
    /// the images after Istio), as before the dependency graph: kept for comparison
    #[arg(long)]
    pub tiers: bool,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// How often to check every route (read-only) and heal what fails; 0 turns the check off
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub interval: String,

    /// Run `bookstore watch` at login as a user service (a LaunchAgent on macOS, a systemd user
    /// unit on Linux), from a copy of this binary and of the stack's folder that a reinstall
    /// replaces; with --dry-run, print the files and the commands
    #[arg(long, group = "service")]
    pub install: bool,

    /// Stop the user service and remove exactly what --install added
    #[arg(long, group = "service")]
    pub uninstall: bool,

    /// Is the user service installed and running, and where is its log
    #[arg(long, group = "service")]
    pub status: bool,

    /// The service manager for --install/--uninstall/--status (default: launchd on macOS,
    /// systemd elsewhere)
    #[arg(long, value_enum)]
    pub manager: Option<ManagerArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManagerArg {
    Launchd,
    Systemd,
}

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// The restart guide's exact phases: every database Ready before any application restarts,
    /// and its 10s settle after ztunnel
    #[arg(long)]
    pub phased: bool,

    /// Pause after ztunnel's rollout before restarting workloads (e.g. 0s, 10s)
    #[arg(long, value_name = "DURATION")]
    pub settle: Option<String>,

    /// Keep waiting until each deadline even when a pod is in a state waiting cannot fix (a crash
    /// loop with its dependencies Ready, an image that does not exist, a sandbox failing with the
    /// mesh Ready); by default the wait fails at once, with its logs and events
    #[arg(long)]
    pub tolerate: bool,

    /// Write a timeline of the run to --timings-dir: an HTML page (`html`, the default), the same
    /// as a JSON document (`json`), or both (`html,json`); on a terminal also a text rendering
    #[arg(long, value_name = "FORMATS", num_args = 0..=1, require_equals = true, default_missing_value = "html")]
    pub timings: Option<String>,

    /// Folder for the --timings files
    #[arg(long, value_name = "DIR", env = "BOOKSTORE_TIMINGS_DIR", default_value = "bookstore-timings")]
    pub timings_dir: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
