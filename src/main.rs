//! `bookstore`: bring the BookStore kind stack up, or back to health after a Docker restart.

use bookstore::{cli, run, wait};
use clap::Parser;

fn main() -> std::process::ExitCode {
    wait::on_interrupt();
    std::process::ExitCode::from(run::run(cli::Cli::parse()))
}
