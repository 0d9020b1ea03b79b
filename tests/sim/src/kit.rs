//! The test kit every test of bookstore shares (tests/integration and tests/sim): one hostile
//! password and where it could leak, one bounded poll, one "a world, healthy" start.

use std::time::{Duration, Instant};

use base64::Engine;

use crate::sim::{Sim, SimOptions};

/// The one hostile password: quotes, `$`, backticks, backslashes, runs of spaces, non-ASCII. No
/// shell quoting survives it by accident, and it must reach Kafka Connect byte-exact.
pub const HOSTILE: &str = "s€nt'ïnel\" $HOME ${PATH} `id` \\x\\ back\\\\slash  two  spaces ✓";

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

/// Poll `f` every 20 ms until it gives a value; panics naming `what` after `timeout` (a bound
/// for a wait, never an assertion on time).
#[track_caller]
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A simulated world with every pod Ready (panics if it does not start within `bound`).
#[track_caller]
pub fn healthy(opts: SimOptions, bound: Duration) -> Sim {
    let sim = Sim::start(opts).expect("simulator starts");
    sim.wait_healthy(bound).expect("the simulated stack starts healthy");
    sim
}
