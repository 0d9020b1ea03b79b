//! One integration-test binary: `bookstore` end to end against the simulator, through the real
//! `kubectl` and `docker` clients. Every test runs the binary the same way, through the one kit
//! (`bookstore_sim::kit`: a `World` started and waited on, a `Test` builder with expectations,
//! one bounded poll); `tidy` checks the repository's own rules.

mod agreement;
mod bootstrap;
mod chaos;
mod converge;
mod doctor;
mod fail_fast;
mod fake_node;
mod faults;
mod images;
mod inputs;
mod manifests;
mod nodes;
mod podman;
mod readopt;
mod recover;
mod shared;
mod sim_e2e;
mod status;
mod tidy;
mod timings;
mod watch;
mod watch_dockerd;
mod watch_service;
