//! One integration-test binary. `recover` runs the binary against fake executables and loopback
//! HTTP stand-ins (fast, no cluster); `sim_e2e` runs it against the simulator through the real
//! `kubectl` and `docker` clients.

mod bootstrap;
mod faults;
mod harness;
mod recover;
mod sim_e2e;
