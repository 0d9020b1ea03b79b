//! The connectors' states, each judged once from what Kafka Connect stores (`GET
//! /connectors/{name}/config` against the desired config) and runs (Connect's own route, `GET
//! /connectors?expand=status`): what `up` registers, what `doctor` reports and `status` shows.

use std::collections::BTreeMap;

use crate::connect::State;
use crate::http::Response;
use crate::observe::{Observation, Stored};
use crate::stack::Stack;

/// One stack connector, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connector {
    /// Stored with the desired config, the connector and every task RUNNING.
    Running,
    /// Kafka Connect does not have it (its config answers 404).
    Absent,
    /// Stored with another config than its file's with the secret's credentials.
    Differs,
    /// The connector or a task FAILED.
    Failed(State),
    /// Listed, not RUNNING (PAUSED, UNASSIGNED, no task yet).
    NotRunning(State),
    /// Not known: why (Connect did not answer, the credentials could not be read, it is not
    /// in Connect's listing).
    Unknown(String),
}

impl Connector {
    pub fn running(&self) -> bool {
        *self == Connector::Running
    }

    /// Why it is registered (`None` when it is RUNNING with the desired config).
    pub fn why(&self) -> Option<String> {
        match self {
            Connector::Running => None,
            Connector::Absent => Some("Kafka Connect does not have it".into()),
            Connector::Differs => Some("Kafka Connect stores another config".into()),
            Connector::Failed(s) | Connector::NotRunning(s) => Some(format!("it is {}", s.summary())),
            Connector::Unknown(why) => Some(why.clone()),
        }
    }
}

/// Connect's listing, from its route's answer: each connector's state, or what Connect answered
/// instead of a listing.
pub fn listing(
    answer: &std::result::Result<Response, String>,
) -> std::result::Result<BTreeMap<String, State>, String> {
    match answer {
        Ok(r) if r.status == 200 => r
            .json()
            .as_ref()
            .and_then(crate::connect::states)
            .ok_or_else(|| format!("HTTP 200: {}", r.summary())),
        Ok(r) => Err(format!("Connect answered HTTP {}: {}", r.status, r.summary())),
        Err(e) => Err(format!("Connect did not answer ({e})")),
    }
}

/// The listing of the observation's Connect route (`Err` when the stack has none).
pub fn listed(obs: &Observation) -> std::result::Result<BTreeMap<String, State>, String> {
    match super::routes::connect(&obs.routes) {
        Some(p) => listing(&p.answer),
        None => Err("the stack has no Connect route".into()),
    }
}

/// Each stack connector judged (index-aligned with `stack.connect.connectors`): what Connect
/// stores (absent, another config), then what it runs; positive evidence first, so a connector
/// missing from a listing Connect gave is absent even when its stored config could not be read.
pub fn judge(stack: &Stack, obs: &Observation) -> Vec<Connector> {
    let listed = listed(obs);
    stack
        .connect
        .connectors
        .iter()
        .enumerate()
        .map(|(c, connector)| {
            // `None`: Connect did not list; `Some(None)`: it listed, not this one.
            let state = listed.as_ref().ok().map(|l| l.get(&connector.name));
            match (obs.connectors.get(c), state) {
                (Some(Stored::Absent), _) => Connector::Absent,
                (Some(Stored::Differs), _) => Connector::Differs,
                (Some(Stored::Unknown(_)), Some(None)) => Connector::Absent,
                (_, Some(Some(s))) if s.failed() => Connector::Failed(s.clone()),
                (_, Some(Some(s))) if !s.running() => Connector::NotRunning(s.clone()),
                (Some(Stored::Unknown(e)), _) => {
                    Connector::Unknown(format!("its stored config is not known ({e})"))
                }
                (None, _) => Connector::Unknown("its stored config was not read".into()),
                (Some(Stored::Matches), Some(Some(_))) => Connector::Running,
                (Some(Stored::Matches), _) => Connector::Unknown("its status is not known".into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::routes::Probe;
    use crate::stack::{Source, load};

    #[test]
    fn what_connect_stores_then_what_it_runs() {
        let stack = load(Source::Embedded).unwrap();
        let mut obs = Observation::of(Vec::new(), Vec::new());
        let check = stack.smoke.checks.iter().find(|c| c.connectors_running).unwrap().clone();
        let body = r#"{"ecom-connector":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"id":0,"state":"RUNNING"}]}},
                       "inventory-connector":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"id":0,"state":"FAILED","trace":"boom"}]}}}"#;
        obs.routes =
            vec![Probe { check, url: "u".into(), answer: Ok(Response { status: 200, body: body.into() }) }];
        obs.connectors = vec![Stored::Matches, Stored::Matches];
        let judged = judge(&stack, &obs);
        assert_eq!(judged[0], Connector::Running);
        assert!(matches!(&judged[1], Connector::Failed(s) if s.summary() == "task 0 FAILED: boom"));
        obs.connectors = vec![Stored::Absent, Stored::Differs];
        assert_eq!(judge(&stack, &obs), [Connector::Absent, Connector::Differs]);
        // Connect lists its connectors, not this one: absent, whatever its config's GET answered.
        obs.connectors = vec![Stored::Unknown("HTTP 500: Request timed out".into()), Stored::Matches];
        assert!(
            matches!(judge(&stack, &obs)[0], Connector::Unknown(_)),
            "listed: its config is what is not known"
        );
        obs.routes[0].answer = Ok(Response { status: 200, body: "{}".into() });
        assert_eq!(judge(&stack, &obs)[0], Connector::Absent);
        obs.connectors = vec![Stored::Matches, Stored::Unknown("no answer (refused)".into())];
        obs.routes[0].answer = Err("refused".into());
        let judged = judge(&stack, &obs);
        assert_eq!(judged[0].why().as_deref(), Some("its status is not known"));
        assert_eq!(judged[1].why().as_deref(), Some("its stored config is not known (no answer (refused))"));
        assert!(listed(&obs).unwrap_err().contains("Connect did not answer (refused)"));
    }
}
