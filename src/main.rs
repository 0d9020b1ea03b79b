//! `bookstore`: bring the BookStore kind stack up, or back to health after a Docker restart.

mod cli;
mod cluster;
mod connect;
mod docker;
mod doctor;
mod error;
mod exec;
mod http;
mod kube;
mod manifests;
mod observe;
mod plan;
#[cfg(test)]
mod proptests;
mod run;
mod secret;
mod smoke;
mod stack;
mod status;
mod steps;
mod timings;
mod troubles;
mod ui;
mod wait;
mod watch;

use clap::Parser;

fn main() -> std::process::ExitCode {
    wait::on_interrupt();
    std::process::ExitCode::from(run::run(cli::Cli::parse()))
}
