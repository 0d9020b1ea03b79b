//! One integration-test binary. `recover` runs the binary against fake executables and loopback
//! HTTP stand-ins (fast, no cluster); `sim_e2e`, `doctor`, `status` and `fail_fast` run it against
//! the simulator through the real `kubectl` and `docker` clients (`simkit` has their helpers).

mod agreement;
mod bootstrap;
mod converge;
mod doctor;
mod fail_fast;
mod faults;
mod harness;
mod inputs;
mod recover;
mod shared;
mod sim_e2e;
mod simkit;
mod status;
mod tidy;
mod timings;
mod watch;
mod watch_dockerd;
mod watch_service;
