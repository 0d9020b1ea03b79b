//! Kafka Connect REST: idempotent registration in Strimzi's manner (GET the config, PUT the flat
//! config only when it differs), 409 and start-up answers retried, then wait for RUNNING.
//! Semantics: ../shared/reference/kafka-connect.md.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::secret::Secret;
use crate::wait::{Attempt, Deadline, Poll};

/// The shortest time a request gets when a deadline is about to end: enough for a last answer.
const LAST_TRY: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Connect {
    base: String,
    /// The command that shows the worker's log (with the kind context), for advice.
    logs: String,
    /// On a shared cluster, the port-forward `base` goes through (stopped with the last clone).
    port: Option<std::sync::Arc<crate::ports::Port>>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect").field("base", &self.base).finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// The config to register: the file's flat config plus `name` and the injected credentials.
#[derive(Clone)]
pub struct Desired {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub user: Secret,
    pub password: Secret,
}

impl Desired {
    fn map(&self) -> BTreeMap<String, String> {
        let mut map = self.config.clone();
        map.insert("name".into(), self.name.clone());
        map.insert("database.user".into(), self.user.expose().to_string());
        map.insert("database.password".into(), self.password.expose().to_string());
        map
    }

    /// A stored config (`GET /connectors/{name}/config`) is exactly this one.
    pub fn matches(&self, stored: &BTreeMap<String, Value>) -> bool {
        let want = self.map();
        stored.len() == want.len()
            && want.iter().all(|(k, v)| stored.get(k).and_then(Value::as_str) == Some(v.as_str()))
    }

    /// The PUT body, flat (`PUT /connectors/{name}/config` rejects the `{"name","config"}` wrapper).
    pub fn body(&self) -> Secret {
        Secret::unregistered(serde_json::to_string(&self.map()).unwrap_or_default())
    }
}

/// The pasteable command that shows the Connect worker's log.
fn logs(stack: &crate::stack::Stack) -> String {
    let c = &stack.connect;
    let namespace = stack.workload(&c.workload).map_or("infra", |w| &w.namespace);
    format!(
        "kubectl --context {} -n {namespace} logs deploy/{} --tail=100",
        stack.cluster.context(),
        c.workload
    )
}

impl Connect {
    /// The stack's Connect REST API (the host port mapped to `connect.port`), with the pasteable
    /// command that shows its worker's log for error advice.
    pub fn for_stack(stack: &crate::stack::Stack) -> Result<Connect> {
        // On a shared cluster, a port-forward held as long as this value.
        let port = crate::ports::open(stack, stack.connect.port)?;
        let mut api = Connect::new(port.local, logs(stack));
        api.port = Some(std::sync::Arc::new(port));
        Ok(api)
    }

    /// The same API as printed lines show it (`--dry-run`): nothing is started for it, so on a
    /// shared cluster its base names the port-forward's local port instead of a number.
    pub fn shown(stack: &crate::stack::Stack) -> Result<Connect> {
        Ok(Connect { base: crate::ports::shown(stack, stack.connect.port)?, logs: logs(stack), port: None })
    }

    /// `logs`: the pasteable command that shows the worker's log.
    pub fn new(host_port: u16, logs: String) -> Connect {
        Connect { base: format!("http://127.0.0.1:{host_port}"), logs, port: None }
    }

    pub fn list(&self) -> Request {
        Request::get(format!("{}/connectors", self.base)).timeout(Duration::from_secs(5))
    }

    /// `POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true` (Kafka ≥ 3.0), as a
    /// pasteable line: what restarts a FAILED connector's failed parts once their cause is fixed.
    pub fn restart_failed_line(&self, name: &str) -> String {
        format!(
            "curl -sS -X POST '{}/connectors/{name}/restart?includeTasks=true&onlyFailed=true'",
            self.base
        )
    }

    pub fn get_config(&self, name: &str) -> Request {
        Request::get(format!("{}/connectors/{name}/config", self.base))
    }

    pub fn put_config(&self, name: &str, body: Secret) -> Request {
        Request::put_json(format!("{}/connectors/{name}/config", self.base), body)
    }

    pub fn status(&self, name: &str) -> Request {
        Request::get(format!("{}/connectors/{name}/status", self.base))
    }

    /// Wait until the REST API lists connectors, within `deadline` (each request's timeout cut to
    /// what is left of it, as in [`Connect::register`] and [`Connect::wait_running`]).
    pub fn wait_ready(&self, deadline: Deadline) -> Result<()> {
        let req = self.list();
        let what = format!("Kafka Connect REST API to answer ({})", req.url);
        let next = format!(
            "check the worker: `{}`; is its port mapped in the cluster config (extraPortMappings)?",
            self.logs
        );
        Poll {
            first: Duration::from_millis(100),
            ceiling: Duration::from_millis(500),
            ..Poll::within(&what, deadline, &next)
        }
        .run(|| match within(&req, deadline).send() {
            Ok(r) if r.status == 200 && r.json().is_some_and(|v| v.is_array()) => Attempt::Done(()),
            Ok(r) => Attempt::Retry(answer(&r)),
            Err(e) => Attempt::Retry(e),
        })
    }

    /// Register one connector idempotently. Retries 409 (rebalance, stale config) and 500
    /// "Request timed out" (worker still joining) within the deadline; a 400 fails at once.
    pub fn register(&self, desired: &Desired, deadline: Deadline) -> Result<Outcome> {
        let name = desired.name.as_str();
        let get = self.get_config(name);
        let put = self.put_config(name, desired.body());
        let what = format!("registering connector {name}");
        let next = format!("check the Connect worker's log: `{}`", self.logs);
        Poll::within(&what, deadline, &next).run(|| {
            let current = match within(&get, deadline).send() {
                Err(e) => return Attempt::Retry(e),
                Ok(r) if r.status == 404 => None,
                Ok(r) if r.status == 200 => match serde_json::from_str::<BTreeMap<String, Value>>(&r.body) {
                    Ok(map) => Some(map),
                    Err(_) => return Attempt::Fail(unexpected(&get, &r)),
                },
                Ok(r) if retryable(&r) => return Attempt::Retry(answer(&r)),
                Ok(r) => return Attempt::Fail(unexpected(&get, &r)),
            };
            if current.as_ref().is_some_and(|c| desired.matches(c)) {
                return Attempt::Done(Outcome::Unchanged);
            }
            match within(&put, deadline).send() {
                Err(e) => Attempt::Retry(e),
                Ok(r) if r.status == 201 => Attempt::Done(Outcome::Created),
                Ok(r) if r.status == 200 => Attempt::Done(Outcome::Updated),
                Ok(r) if retryable(&r) => Attempt::Retry(answer(&r)),
                Ok(r) => Attempt::Fail(rejected(&put, &r, name)),
            }
        })
    }

    /// Wait until the connector and every task are RUNNING; a FAILED one fails at once with its
    /// trace.
    pub fn wait_running(&self, name: &str, deadline: Deadline) -> Result<()> {
        let req = self.status(name);
        let what = format!("connector {name} to be RUNNING");
        let next = format!("inspect it: `curl -s {}`", req.url);
        // A status GET is cheap, and a connector runs a moment after Connect stores it (its
        // status answers 404 until its worker has assigned it): look every 250 ms at most, so
        // RUNNING is seen within a quarter second (the default's 1 s ceiling saw it up to a
        // second late, on the critical path when the connectors come last).
        let poll = Poll { ceiling: Duration::from_millis(250), ..Poll::within(&what, deadline, &next) };
        poll.run(|| match within(&req, deadline).send() {
            Err(e) => Attempt::Retry(e),
            Ok(r) if r.status == 200 => match r.json().as_ref().map(State::of) {
                Some(s) if s.failed() => Attempt::Fail(Error::step(
                    format!("connector {name} FAILED:\n{}", s.failures()),
                    format!(
                        "fix the cause above, then run `bookstore connectors` (see `curl -s {}`)",
                        req.url
                    ),
                )),
                Some(s) if s.running() => Attempt::Done(()),
                _ => Attempt::Retry(answer(&r)),
            },
            Ok(r) => Attempt::Retry(answer(&r)),
        })
    }
}

/// The request with its timeout cut to what is left of the deadline.
fn within(req: &Request, deadline: Deadline) -> Request {
    req.clone().timeout(deadline.cap(req.timeout, LAST_TRY))
}

/// A connector's state, as Connect reports it (`GET /connectors/{name}/status`, or each entry's
/// `status` in `GET /connectors?expand=status`). Parsed once here: the registration's wait, the
/// routes' judgement, `status` and `doctor` read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The connector's own state (`RUNNING`, `FAILED`, `PAUSED`, `UNASSIGNED`, …; empty while
    /// its status is not known yet).
    pub connector: String,
    /// (task id, state, its trace).
    pub tasks: Vec<(u64, String, Option<String>)>,
    /// The connector's own trace, when it FAILED.
    pub trace: Option<String>,
}

fn first_line(trace: &str) -> &str {
    trace.lines().next().unwrap_or("").trim()
}

impl State {
    /// One connector's status object: `{"connector": {"state", "trace"}, "tasks": [{"id", "state", "trace"}]}`.
    pub fn of(status: &Value) -> State {
        let state = |v: &Value| v.get("state").and_then(Value::as_str).unwrap_or("").to_string();
        let trace = |v: &Value| v.get("trace").and_then(Value::as_str).map(String::from);
        let connector = status.get("connector");
        let tasks = status
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| (t.get("id").and_then(Value::as_u64).unwrap_or(0), state(t), trace(t)))
            .collect();
        let own = connector.map(state).unwrap_or_default();
        let trace = connector.filter(|_| own == "FAILED").and_then(trace);
        State { connector: own, tasks, trace }
    }

    /// The connector and every task RUNNING (a connector without tasks does not run yet).
    pub fn running(&self) -> bool {
        self.connector == "RUNNING" && !self.tasks.is_empty() && self.tasks.iter().all(|t| t.1 == "RUNNING")
    }

    pub fn failed(&self) -> bool {
        self.connector == "FAILED" || self.tasks.iter().any(|t| t.1 == "FAILED")
    }

    /// `RUNNING (1/1 tasks)`, `FAILED: task 0: org.apache…ConnectException: …`, …
    pub fn summary(&self) -> String {
        if let Some(trace) = &self.trace {
            return format!("FAILED: {}", first_line(trace));
        }
        if let Some((id, _, trace)) = self.tasks.iter().find(|t| t.1 == "FAILED") {
            return format!("task {id} FAILED: {}", trace.as_deref().map_or("(no trace)", first_line));
        }
        let running = self.tasks.iter().filter(|t| t.1 == "RUNNING").count();
        let state = if self.connector.is_empty() { "status not known yet" } else { &self.connector };
        format!("{state} ({running}/{} tasks running)", self.tasks.len())
    }

    /// What FAILED, each part with the first lines of its trace (a registration's error).
    pub fn failures(&self) -> String {
        let part = |id: String, trace: &Option<String>| {
            let lines: Vec<&str> = trace.as_deref().unwrap_or("(no trace)").lines().take(3).collect();
            format!("  {id}: {}", lines.join("\n    "))
        };
        let own = (self.connector == "FAILED").then(|| part("connector".into(), &self.trace));
        let tasks = self
            .tasks
            .iter()
            .filter(|t| t.1 == "FAILED")
            .map(|(id, _, trace)| part(format!("task {id}"), trace));
        own.into_iter().chain(tasks).collect::<Vec<_>>().join("\n")
    }
}

/// `GET /connectors?expand=status` → each connector's state.
pub fn states(answer: &Value) -> Option<BTreeMap<String, State>> {
    let mut out = BTreeMap::new();
    for (name, entry) in answer.as_object()? {
        out.insert(
            name.clone(),
            entry.get("status").map(State::of).unwrap_or_else(|| State::of(&Value::Null)),
        );
    }
    Some(out)
}

/// 409 (rebalance / stale config / no leader) and the worker's start-up 500s are worth retrying.
fn retryable(r: &Response) -> bool {
    let message = r.message();
    r.status == 409
        || r.status == 503
        || (r.status == 500 && message.starts_with("Request timed out"))
        || (r.status == 502 || r.status == 504)
}

fn answer(r: &Response) -> String {
    format!("HTTP {}: {}", r.status, r.summary())
}

fn unexpected(req: &Request, r: &Response) -> Error {
    Error::Http {
        request: req.to_string(),
        problem: format!("unexpected answer HTTP {}: {}", r.status, r.message()),
        next: "check that port 32300 reaches Kafka Connect (`curl -s http://127.0.0.1:32300/`)".into(),
    }
}

fn rejected(req: &Request, r: &Response, name: &str) -> Error {
    let message = r.message();
    let next = if message.contains("${") {
        "the worker did not resolve a ${provider:...} placeholder: the credentials must be inline \
         (bookstore injects them from the secret) or the worker must declare that config provider"
            .to_string()
    } else if message.contains("password authentication failed") {
        "the database rejected the credentials from the secret: check that its user/password keys \
         match the database's, then run `bookstore connectors`"
            .to_string()
    } else if r.status == 500 && message.contains("Cannot deserialize") {
        format!("the body was not a flat config map; check infra/debezium/connectors/{name}.json")
    } else {
        format!("fix the connector config for {name}, then run `bookstore connectors`")
    };
    Error::Http {
        request: req.to_string(),
        problem: format!("Connect answered HTTP {}: {message}", r.status),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn running_means_connector_and_every_task() {
        let s = |c: &str, t: &[&str]| {
            State::of(&json!({"connector": {"state": c}, "tasks": t.iter().enumerate()
                .map(|(i, s)| json!({"id": i, "state": s, "trace": "boom\n\tat x"})).collect::<Vec<_>>()}))
        };
        assert!(s("RUNNING", &["RUNNING"]).running());
        assert!(!s("RUNNING", &[]).running());
        assert!(!s("UNASSIGNED", &["RUNNING"]).running());
        let failed = s("RUNNING", &["FAILED"]);
        assert!(failed.failed() && !failed.running());
        assert_eq!(failed.failures(), "  task 0: boom\n    \tat x");
    }

    #[test]
    fn expanded_status_gives_each_connectors_state_and_first_trace_line() {
        let answer = json!({
            "ok": {"status": {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}},
            "bad": {"status": {"connector": {"state": "RUNNING"},
                    "tasks": [{"id": 0, "state": "FAILED", "trace": "org.x.ConnectException: boom\n\tat a.b(C.java:1)"}]}},
            "young": {}
        });
        let s = states(&answer).unwrap();
        assert!(s["ok"].running() && !s["ok"].failed());
        assert!(s["bad"].failed());
        assert_eq!(s["bad"].summary(), "task 0 FAILED: org.x.ConnectException: boom");
        assert_eq!(s["young"].summary(), "status not known yet (0/0 tasks running)");
        assert_eq!(s["ok"].summary(), "RUNNING (1/1 tasks running)");
        assert!(states(&json!([])).is_none());
    }

    #[test]
    fn the_body_is_flat_with_the_credentials_inline() {
        let d = Desired {
            name: "c".into(),
            config: BTreeMap::from([("connector.class".into(), "X".into())]),
            user: Secret::new("usr".into()),
            password: Secret::new("p\"w$".into()),
        };
        let body: BTreeMap<String, String> = serde_json::from_str(d.body().expose()).unwrap();
        assert_eq!(body["name"], "c");
        assert_eq!(body["database.password"], "p\"w$");
        assert!(!body.contains_key("config"));
    }
}
