//! `bookstore` as a library: the binary (`main.rs`) is a thin shell over `run::run`; the rooms
//! are public so that the simulator and the tests read the stack and the events through the
//! product's own types (data only: the verdicts stay the product's).

pub mod cli;
pub mod cluster;
pub mod config;
pub mod connect;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod event;
pub mod exec;
pub mod http;
pub mod judge;
pub mod kube;
pub mod lock;
pub mod manifests;
pub mod observe;
pub mod plan;
pub mod ports;
#[cfg(test)]
mod proptests;
pub mod run;
pub mod secret;
pub mod smoke;
pub mod stack;
pub mod state;
pub mod status;
pub mod steps;
pub mod timings;
pub mod troubles;
pub mod ui;
pub mod utc;
pub mod wait;
pub mod watch;
