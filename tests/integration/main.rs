//! One integration-test binary. `recover` runs the release logic against fake executables and
//! loopback HTTP stand-ins (fast, no cluster).

mod harness;
mod recover;
