//! The one test kit every test of the repository shares (tests/integration and tests/sim): one
//! hostile password and where it could leak, one bounded poll, one way to start a world and wait
//! on it ([`World`]), one way to run `bookstore` in it ([`Test`], a builder in the manner of
//! casey/just's `tests/test.rs`), with expectations on the exit code, stdout, stderr, the
//! `--json` events and the simulator's audit log.
//!
//! ```ignore
//! let world = World::broken();
//! let run = Test::new().world(&world).args(["up"]).json().stderr_has("Stack healthy").run();
//! world.assert_recovered();
//! world.check(); // nothing deleted, the password nowhere, kubectl always on the kind context
//! ```

mod http;
mod run;
mod test;
mod world;

use std::time::{Duration, Instant};

use base64::Engine;

pub use http::{get, http, put_json};
pub use run::{Findings, Run, Running};
pub use test::Test;
pub use world::{
    CONTEXT, Checks, SHARED_CONTEXT, World, assert_recovery_order, read_argv_log, restarted_pod,
    ztunnel_restarted,
};

/// The one hostile password: quotes, `$`, backticks, backslashes, runs of spaces, non-ASCII. No
/// shell quoting survives it by accident, and it must reach Kafka Connect byte-exact.
pub const HOSTILE: &str = "s€nt'ïnel\" $HOME ${PATH} `id` \\x\\ back\\\\slash  two  spaces ✓";

/// The time scale of the worlds `bookstore` runs in (a recovery's critical path of 51.5 s takes
/// 2.6 s): fast, and slow enough that the order of events is the model's, not the scheduler's.
pub const SCALE: f64 = 0.05;

/// Generous bound for anything a test waits on (never reached in a passing run).
pub const BOUND: Duration = Duration::from_secs(60);

/// Envoy's answer for a stale upstream (what the gateway says after a Docker restart).
pub const ENVOY_503: &str = crate::dataplane::ENVOY_503;

/// Every form in which [`HOSTILE`] could leak: raw, JSON-escaped, base64 (as a Secret holds it),
/// and fragments that survive a shell eating the quotes.
fn leak_forms() -> Vec<Vec<u8>> {
    let json = serde_json::to_string(HOSTILE).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(HOSTILE.as_bytes());
    [HOSTILE, json.trim_matches('"'), b64.as_str(), "s€nt", "two  spaces ✓"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// Where [`HOSTILE`] appears in `bytes` (the forms found), if anywhere.
pub fn leaks_in(bytes: &[u8]) -> Vec<String> {
    leak_forms()
        .iter()
        .filter(|form| bytes.windows(form.len()).any(|w| w == form.as_slice()))
        .map(|form| String::from_utf8_lossy(form).into_owned())
        .collect()
}

/// The one bounded poll: `f` every `every` until it gives `Ok`, or its last `Err` once `bound`
/// has passed (it sleeps only between attempts). Everything that waits in a test waits here.
pub fn poll<T, E>(bound: Duration, every: Duration, mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + bound;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// Poll `f` every 20 ms until it gives a value; panics naming `what` after `timeout` (a bound
/// for a wait, never an assertion on time).
#[track_caller]
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    match poll(timeout, Duration::from_millis(20), || f().ok_or(())) {
        Ok(v) => v,
        Err(()) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A simulated world with every pod Ready (panics if it does not start within `bound`): the
/// simulator alone, for the tests of the simulator's own wire behaviour; `bookstore`'s tests
/// start a [`World`].
#[track_caller]
pub fn healthy(opts: crate::SimOptions, bound: Duration) -> crate::Sim {
    let sim = crate::Sim::start(opts).expect("simulator starts");
    sim.wait_healthy(bound).expect("the simulated stack starts healthy");
    sim
}
