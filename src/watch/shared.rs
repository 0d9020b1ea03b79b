//! `bookstore watch --context NAME` on a shared cluster (issue 19): there is no engine to follow
//! and no node container to inspect; the API is the only witness. The watcher follows the Nodes
//! through `kubectl get nodes --watch --output-watch-events -o json` (the whole list first, then
//! each change) and owes a heal when a node's `status.nodeInfo.bootID` changes (its kubelet saw a
//! new kernel: a reboot) or its `Ready` condition comes back to True. What it healed is kept per
//! node in the state file (the bootID healed), so a reboot while it was not running is healed on
//! its first look: events expire after an hour, a bootID snapshot does not. The heal is `up`'s
//! (`heal::converge`), which judges each node's restart from the API itself (`judge::boots`).
//!
//! The stream ends when the API goes away (or the server ends the watch): the watcher reconnects
//! with a backoff up to 30 s, and the list it gets first is compared with what it knew. One heal
//! at a time under the cluster's lock; a failed heal is retried with backoff; a periodic check
//! (`--interval`) probes every route once and heals what fails. SIGINT and SIGTERM end it.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Node;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::{Event, HealOutcome};
use crate::exec::Stream;
use crate::kube::Kubectl;
use crate::state;
use crate::ui::{Ui, human};
use crate::wait;

use super::{RECONNECT_CEILING, RECONNECT_FIRST, RETRY_CEILING, RETRY_FIRST, TICK, heal};

/// What the reader thread tells the watcher.
enum Msg {
    /// A watch event: its type (`ADDED`, `MODIFIED`, `DELETED`) and the Node.
    Node(String, Node),
    /// The stream of this generation ended.
    Ended(u64),
}

/// The watch's commands (`--dry-run`).
pub fn describe(config: &Config, interval: Duration) -> Vec<String> {
    let cluster = &config.stack.cluster;
    let kube = Kubectl::new(cluster.context(), Duration::ZERO);
    let mut lines = vec![
        format!("# Follow the Nodes of the shared cluster {} (no engine, no kind)", cluster.context()),
        format!("{}   # every Node, then each change; reconnected with backoff ≤ 30s", kube.watch_nodes()),
        "# A heal is owed when a node's bootID changes (a reboot) or its Ready comes back to True".into(),
    ];
    if let Some(path) = state::StateFile::for_cluster(&cluster.name).path() {
        lines.push(format!("# The bootID last healed, per node: {}", path.display()));
    }
    lines.push(
        "# On the first look and each owed heal: what `bookstore up --context …` runs (see its --dry-run)"
            .into(),
    );
    if !interval.is_zero() {
        lines.push(format!(
            "# Every {}: every route once (read-only, through port-forwards)",
            human(interval)
        ));
    }
    lines
}

struct Watcher<'a> {
    config: &'a Config,
    ui: &'a Ui,
    kube: Kubectl,
    interval: Duration,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    stream: Option<(u64, Stream)>,
    generation: u64,
    reconnect_at: Instant,
    reconnect_backoff: Duration,
    /// Each node as last seen.
    nodes: BTreeMap<String, Node>,
    /// The reason a heal is owed, when one is.
    owed: Option<String>,
    retry_at: Instant,
    retry_backoff: Duration,
    heals: u32,
    next_check: Option<Instant>,
    first: bool,
    /// Said that another run holds the lock.
    busy_said: bool,
    state: state::StateFile,
}

pub fn run(config: &Config, ui: &Ui, interval: Duration) -> Result<()> {
    wait::on_terminate();
    crate::observe::tools(&["kubectl"])?;
    let (tx, rx) = mpsc::channel();
    let cluster = &config.stack.cluster;
    let now = Instant::now();
    let mut w = Watcher {
        config,
        ui,
        kube: Kubectl::new(cluster.context(), Duration::ZERO),
        interval,
        tx,
        rx,
        stream: None,
        generation: 0,
        reconnect_at: now,
        reconnect_backoff: RECONNECT_FIRST,
        nodes: BTreeMap::new(),
        owed: None,
        retry_at: now,
        retry_backoff: RETRY_FIRST,
        heals: 0,
        next_check: None,
        first: true,
        busy_said: false,
        state: state::StateFile::for_cluster(&cluster.name),
    };
    let check = match interval.is_zero() {
        true => "no periodic check".to_string(),
        false => format!("every route checked every {}", human(interval)),
    };
    ui.info(&format!(
        "watching the Nodes of the shared cluster {} (`{}`; {check}); Ctrl-C to stop",
        cluster.context(),
        w.kube.watch_nodes()
    ));
    w.run()
}

impl Watcher<'_> {
    fn run(&mut self) -> Result<()> {
        loop {
            if wait::stopping() {
                self.stream = None;
                let signal = if wait::terminated() { "SIGTERM" } else { "Ctrl-C" };
                self.ui.info(&format!("stopped watching ({signal}) after {} heal(s)", self.heals));
                return if wait::terminated() { Ok(()) } else { Err(Error::Interrupted) };
            }
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg);
            }
            let now = Instant::now();
            if self.stream.is_none() {
                if now >= self.reconnect_at {
                    self.connect();
                }
            } else if self.owed.is_some() && now >= self.retry_at {
                self.heal()?;
                continue;
            } else if self.owed.is_none() && self.next_check.is_some_and(|t| now >= t) {
                self.check();
                continue;
            }
            match self.rx.recv_timeout(TICK) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the watcher holds a sender"),
            }
        }
    }

    /// Start the Nodes' watch: kubectl lists them first (ADDED each), then streams each change.
    fn connect(&mut self) {
        let cmd = self.kube.watch_nodes();
        let mut stream = match cmd.stream() {
            Ok(s) => s,
            Err(e) => {
                self.ui.warn(&format!("`{cmd}` did not start: {}", e.headline()));
                self.reconnect_later();
                return;
            }
        };
        let Some(reader) = stream.take_reader() else { return };
        self.generation += 1;
        let (tx, generation) = (self.tx.clone(), self.generation);
        std::thread::spawn(move || pump(reader, &tx, generation));
        self.stream = Some((generation, stream));
        self.ui.emit(Event::WatchingNodes {
            cluster: self.config.stack.cluster.name.clone(),
            context: self.config.stack.cluster.context(),
            command: cmd.to_string(),
        });
        if self.first && !self.interval.is_zero() {
            self.next_check = Some(Instant::now());
        }
    }

    fn reconnect_later(&mut self) {
        self.reconnect_at = Instant::now() + self.reconnect_backoff;
        self.reconnect_backoff = (self.reconnect_backoff * 2).min(RECONNECT_CEILING);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Ended(generation) => {
                if self.stream.as_ref().is_some_and(|(g, _)| *g == generation) {
                    let tail = self.stream.as_mut().map(|(_, s)| s.stderr_tail()).unwrap_or_default();
                    self.stream = None;
                    let why = tail.lines().last().unwrap_or("it ended").to_string();
                    self.ui.warn(&format!("the Nodes' watch ended ({why}): reconnecting"));
                    self.reconnect_later();
                }
            }
            Msg::Node(kind, node) => self.node(&kind, node),
        }
    }

    /// One Node seen: a new bootID or a Ready that came back owes a heal; the first time a node
    /// is seen, the bootID the state file says was healed is what it is compared with.
    fn node(&mut self, kind: &str, node: Node) {
        self.reconnect_backoff = RECONNECT_FIRST;
        if kind == "DELETED" {
            self.nodes.remove(&node.name);
            return;
        }
        let name = node.name.clone();
        let reason = match self.nodes.get(&name) {
            Some(before) if !node.boot_id.is_empty() && before.boot_id != node.boot_id => Some(format!(
                "node {name} rebooted: its bootID changed ({} → {})",
                short(&before.boot_id),
                short(&node.boot_id)
            )),
            Some(before) if before.ready != Some(true) && node.ready == Some(true) => {
                Some(format!("node {name} is Ready again"))
            }
            Some(_) => None,
            None => match self.state.last_healed(&name) {
                Some(healed) if !node.boot_id.is_empty() && healed != node.boot_id => Some(format!(
                    "node {name} rebooted while the watcher was not running (bootID {} healed, now {})",
                    short(&healed),
                    short(&node.boot_id)
                )),
                Some(_) => None,
                // First look: one convergent heal (a check on a healthy stack).
                None if self.first => Some(format!("first look: no heal of node {name} recorded")),
                None => Some(format!("node {name} joined the cluster")),
            },
        };
        if self.nodes.get(&name).is_some_and(|b| b.boot_id != node.boot_id) || !self.nodes.contains_key(&name)
        {
            self.ui.emit(Event::NodeSeen {
                node: name.clone(),
                boot_id: node.boot_id.clone(),
                ready: node.ready,
            });
        }
        self.nodes.insert(name, node);
        if self.first {
            // The first list: a first look is one heal, whatever it finds.
            self.first = false;
            self.owe(reason.unwrap_or_else(|| "first look".into()));
        } else if let Some(reason) = reason {
            self.owe(reason);
        }
    }

    fn owe(&mut self, reason: String) {
        if self.owed.is_none() {
            self.ui.info(&format!("heal owed: {reason}"));
            self.ui.emit(Event::HealOwed { reason: reason.clone() });
            self.owed = Some(reason);
            self.retry_at = Instant::now();
        }
    }

    /// The periodic check: every route once, read-only; a failure owes a heal.
    fn check(&mut self) {
        self.next_check = Some(Instant::now() + self.interval);
        let failures = heal::check(&self.config.stack);
        if let Some((route, url, why)) = failures.first() {
            self.owe(format!("check: route {route} ({url}) fails: {why}"));
        }
    }

    fn heal(&mut self) -> Result<()> {
        let Some(reason) = self.owed.clone() else { return Ok(()) };
        let holder = format!("pid {} running `bookstore watch` (healing: {reason})", std::process::id());
        let _lock = match crate::lock::acquire(&self.config.stack.cluster.name, &holder) {
            Ok(lock) => lock,
            Err(Error::Busy { holder: other, .. }) => {
                if !std::mem::replace(&mut self.busy_said, true) {
                    self.ui.info(&format!("waiting for {other} to finish before healing"));
                }
                self.retry_at = Instant::now() + Duration::from_millis(250);
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        self.busy_said = false;
        wait::resume();
        self.heals += 1;
        let n = self.heals;
        self.ui.emit(Event::HealStarted { heal: n, reason: reason.clone(), start_node: false });
        let started = Instant::now();
        let spawned = crate::exec::spawned();
        let result = heal::converge(self.config, self.ui);
        let took = started.elapsed();
        let (duration_ms, commands) = (took.as_millis() as u64, crate::exec::spawned() - spawned);
        match result {
            Ok(()) => {
                self.owed = None;
                self.retry_backoff = RETRY_FIRST;
                for (name, node) in &self.nodes {
                    if let Err(e) = self.state.healed(name, &node.boot_id) {
                        let path = self.state.path().map(|p| p.display().to_string()).unwrap_or_default();
                        self.ui.warn(&format!("cannot write {path}: {e}"));
                    }
                }
                self.ui.ok_line(&format!("Healed in {} ({commands} commands): {reason}", human(took)));
                self.ui.emit(Event::HealFinished {
                    heal: n,
                    outcome: HealOutcome::Ok,
                    duration_ms,
                    commands,
                    exit_code: None,
                    message: None,
                    retry_in_ms: None,
                });
                if !self.interval.is_zero() {
                    self.next_check = Some(Instant::now() + self.interval);
                }
            }
            Err(Error::Interrupted) if wait::stopping() => return Ok(()),
            Err(e) => {
                let retry = self.retry_backoff;
                self.retry_at = Instant::now() + retry;
                self.retry_backoff = (self.retry_backoff * 2).min(RETRY_CEILING);
                self.ui.warn(&format!("heal failed: {}; retrying in {}", e.headline(), human(retry)));
                self.ui.emit(Event::HealFinished {
                    heal: n,
                    outcome: HealOutcome::Failed,
                    duration_ms,
                    commands,
                    exit_code: Some(e.code()),
                    message: Some(e.to_string()),
                    retry_in_ms: Some(retry.as_millis() as u64),
                });
                heal::diagnose(self.config, self.ui);
            }
        }
        Ok(())
    }
}

/// The first 8 characters of a bootID (a UUID): enough to tell two apart in a line.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The reader thread: kubectl prints one JSON object per watch event (indented, one after the
/// other): `{"type": "ADDED", "object": {…Node…}}`.
fn pump(reader: impl BufRead, tx: &Sender<Msg>, generation: u64) {
    for event in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        let Ok(event) = event else { break };
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let Some(object) = event.get("object") else { continue };
        if object.get("kind").and_then(Value::as_str) != Some("Node") {
            continue;
        }
        if tx.send(Msg::Node(kind, crate::cluster::parse_node(object))).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::Ended(generation));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectls_watch_events_are_read_one_object_after_another() {
        let text = r#"{
    "object": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"},
               "status": {"nodeInfo": {"bootID": "b1"}, "conditions": [{"type": "Ready", "status": "True"}]}},
    "type": "ADDED"
}
{
    "object": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"},
               "status": {"nodeInfo": {"bootID": "b2"}, "conditions": [{"type": "Ready", "status": "False"}]}},
    "type": "MODIFIED"
}
"#;
        let (tx, rx) = mpsc::channel();
        pump(std::io::Cursor::new(text.as_bytes().to_vec()), &tx, 7);
        let got: Vec<String> = rx
            .try_iter()
            .map(|m| match m {
                Msg::Node(kind, n) => format!("{kind} {} {} {:?}", n.name, n.boot_id, n.ready),
                Msg::Ended(g) => format!("ended {g}"),
            })
            .collect();
        assert_eq!(got, ["ADDED a b1 Some(true)", "MODIFIED a b2 Some(false)", "ended 7"]);
    }
}
