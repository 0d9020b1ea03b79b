//! `bookstore-sim serve` runs a simulated world in the foreground; `bookstore-sim ctl` talks to
//! a running one through its control endpoint; `bookstore-sim bench` races the restart guide's
//! procedure against `bookstore recover` (see `bench/`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bookstore_sim::bench::{self, BenchOptions};
use bookstore_sim::{Sim, SimOptions, client};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bookstore-sim",
    about = "A simulated BookStore kind cluster for the real kubectl and docker clients"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the world in the foreground and print the environment to export.
    Serve {
        /// Directory for the socket, kubeconfig, stand-ins and the infra/ copy.
        #[arg(long)]
        dir: PathBuf,
        /// Multiplies every latency (0.1 = ten times faster).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// The infra/ directory to copy (default: the repository's).
        #[arg(long)]
        infra: Option<PathBuf>,
        #[arg(long)]
        kafka_pvc: bool,
        #[arg(long)]
        worker_file_provider: bool,
        #[arg(long)]
        old_cluster: bool,
        #[arg(long)]
        legacy_proxies: bool,
        #[arg(long)]
        no_cluster: bool,
        /// Start with a simulated Docker restart already done (the broken stack).
        #[arg(long)]
        broken: bool,
        /// An image present in the host's Docker (repeat for more).
        #[arg(long = "image")]
        images: Vec<String>,
        /// Docker's containerd image store.
        #[arg(long)]
        containerd_store: bool,
        /// The release the istioctl stand-in is (its version, the images it installs).
        #[arg(long, default_value = bookstore_sim::sim::ISTIO_VERSION)]
        istio_version: String,
    },
    /// Talk to a running world: docker-restart ['{"down_secs":3,"api_secs":1}'], docker-stop,
    /// docker-start, audit, pods, connectors, healthy, latencies, fault '<json>'.
    Ctl {
        #[arg(long)]
        dir: PathBuf,
        action: String,
        arg: Option<String>,
    },
    /// Print the latency table.
    Latencies,
    /// Benchmark: the restart guide's procedure, `bookstore recover` and `bookstore recover
    /// --phased` after a Docker restart, and `bookstore watch` healing a Docker Desktop restart,
    /// against the dependency graph's critical path.
    Bench {
        /// Multiplies every latency (1 = the realistic table, ~1 min per contender and run).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Runs per contender (min and median are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The bookstore binary (default: target/release/bookstore next to this binary).
        #[arg(long)]
        bookstore: Option<PathBuf>,
        /// Only these sections (comma-separated): guide, recover, phased, up, up-healthy, up-stale, up-worker (three nodes, one worker restarted), up-readopted, recover-readopted (the mesh re-adopted all but one), watch, bootstrap (an empty machine, cold and warm: `up --tiers` vs `up` vs a naive bash bootstrap)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Serve {
            dir,
            time_scale,
            infra,
            kafka_pvc,
            worker_file_provider,
            old_cluster,
            legacy_proxies,
            no_cluster,
            broken,
            images,
            containerd_store,
            istio_version,
        } => {
            let mut opts = SimOptions {
                time_scale,
                kafka_pvc,
                worker_file_provider,
                old_cluster,
                legacy_proxies,
                no_cluster,
                images,
                containerd_store,
                istio_version,
                dir: Some(dir),
                ..SimOptions::default()
            };
            if let Some(i) = infra {
                opts.infra_dir = i;
            }
            let sim = Sim::start(opts)?;
            if broken {
                sim.docker_restart();
            }
            for (k, v) in sim.env() {
                println!("export {k}='{v}'");
            }
            println!("# stack: {}", sim.stack_path().display());
            for port in [30000u16, 31111, 32000, 32100, 32200, 32300] {
                if let Some(host) = sim.try_host_port(port) {
                    println!("# host-port {port} {host}");
                }
            }
            println!("# control: {}", sim.control_url());
            std::io::stdout().flush()?;
            eprintln!("bookstore-sim: serving; Ctrl-C to stop");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Cmd::Ctl { dir, action, arg } => {
            let url = std::fs::read_to_string(dir.join("control.url"))
                .with_context(|| format!("no simulator running in {}", dir.display()))?;
            let addr = url.trim().trim_start_matches("http://").to_string();
            let timeout = Duration::from_secs(600);
            let (method, path, body) = match action.as_str() {
                "docker-restart" | "docker-stop" | "docker-start" => {
                    ("POST", format!("/ctl/{action}"), arg.unwrap_or_default())
                }
                "audit" | "pods" | "connectors" | "healthy" | "latencies" => {
                    ("GET", format!("/ctl/{action}"), String::new())
                }
                "fault" => (
                    "POST",
                    "/ctl/fault".to_string(),
                    arg.context("fault needs a JSON argument, e.g. '{\"fault\":\"crash_loop\",\"workload\":\"kafka\"}'")?,
                ),
                other => bail!("unknown ctl action {other}"),
            };
            let answer = client::request(&addr, method, &path, None, &body, timeout)?;
            println!("{}", answer.body);
            Ok(if (200..300).contains(&answer.status) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Latencies => {
            println!("{}", Sim::latency_table());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { time_scale, runs, bookstore, only } => {
            let bookstore = match bookstore {
                Some(p) => p,
                None => std::env::current_exe()?
                    .parent()
                    .context("the bench binary has no folder")?
                    .join("bookstore"),
            };
            bench::run(BenchOptions { time_scale, runs, bookstore, only })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
