//! `bookstore watch`: the stack heals itself after Docker (or Podman, or nerdctl) restarts; on a
//! shared cluster (`--context`) after a node reboots ([`shared`]: its Nodes, through the API).
//!
//! It follows the node engine's event stream for the kind cluster's containers (`docker events`
//! / `podman events` with the cluster's label, nerdctl's unfiltered, JSON lines, through the real
//! CLI, read by [`crate::engine`]) and the engine's own availability (its `version`, which fails
//! whenever the engine does not answer). When the node container starts again (a Docker Desktop
//! restart, `docker restart`, a reboot) it runs
//! the heal ([`heal::converge`]: what `bookstore up` runs), once the Kubernetes API answers (its
//! own budget: minutes, after a node start). A start it could not see is caught three times
//! over: every reconnect asks for the events since the last one it saw (`--since`, on Docker's
//! clock; nerdctl replays nothing, so this comparison is what catches its missed starts),
//! compares the node's `State.StartedAt` with the one it saw before, and the first
//! connect runs one convergent heal (a check on a healthy stack) and compares with the start it
//! last healed (its state file, [`state`]): a login agent starts after Docker has restarted the
//! node. A light periodic check (`--interval`) probes every route once and heals what fails.
//!
//! A node its engine did not start again (kind's `--restart=on-failure:1` restarts only a node
//! that failed; its podman nodes have no restart policy): one that stopped together with the
//! engine (its `die` came as the engine went away, the engine's current run never saw it die,
//! podman reset it to `created` after a reboot) is started by the heal; one stopped while the
//! engine ran is left as it is, and said so. The judgement is [`crate::judge::engine::stopped_with_engine`].
//!
//! While Docker is away it probes with a backoff up to 30 s and watches the endpoint's socket
//! (a connect, no process) to notice it back at once. Docker's timestamps are compared only with
//! Docker's timestamps (Docker Desktop's VM clock drifts from the host's after sleep).
//!
//! One heal at a time, each holding the cluster's lock (a manual run waits for it, or is told
//! the watcher is healing; the watcher waits for a manual run). Docker or the node going away in
//! the middle of a heal cancels it ([`crate::wait::cancel`]: its children are stopped) and the
//! heal starts over once they are back; a heal that fails is retried with backoff. SIGINT and
//! SIGTERM stop the running child and end the watcher (exit 130 / 0).
//!
//! Size: one state machine (the engine's availability, its event stream, the heal under way, the
//! periodic check) whose transitions read best side by side; what a heal runs is in `heal.rs`, the
//! pure parts in `events.rs` and `judge::engine`.

mod heal;
mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::{ContainerEvent, Engine, Node};
use crate::error::{Error, Result};
use crate::event::{Event, HealOutcome, NodeAction, Seen};
use crate::exec::Stream;
use crate::state;
use crate::ui::{Ui, human};
use crate::wait;

/// Probing Docker while it is away: the first retry, and the ceiling of the doubling backoff
/// (~120 probes an hour at most; the endpoint's socket tells sooner when it is back).
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_CEILING: Duration = Duration::from_secs(30);
/// The ceiling while the endpoint's socket accepts connections but Docker does not answer yet.
const RECONNECT_SOCKET_UP: Duration = Duration::from_secs(2);
/// A heal that failed: the first retry, and the ceiling.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_CEILING: Duration = Duration::from_secs(300);
/// A stream that ends sooner than this after it started counts against the reconnect backoff.
const SHORT_STREAM: Duration = Duration::from_secs(2);
/// A node whose `die` came this long (or less) before the event stream ended stopped together
/// with Docker (a daemon stops its containers, then goes: moby's shutdown timeout is 15 s).
const WITH_DOCKER: Duration = Duration::from_secs(20);
/// How long the watcher sleeps at most between looks at its flags (SIGINT, SIGTERM) and at the
/// endpoint's socket while Docker is away.
const TICK: Duration = Duration::from_millis(100);

/// What the stream's reader thread tells the watcher.
enum Msg {
    Event(ContainerEvent),
    /// The `docker events` child of this generation ended (Docker went away, or it was stopped).
    Ended(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Docker {
    Unknown,
    Up,
    Down { since: Instant },
}

/// How the node last stopped, as this watcher saw it (its `die`).
struct NodeStop {
    /// The `die`'s `timeNano` (Docker's clock).
    at: u128,
    /// When the watcher read it (this host's monotonic clock).
    seen: Instant,
    exit_code: String,
    /// The event stream ended (Docker went away) within [`WITH_DOCKER`] of it.
    with_docker: bool,
    /// Said that it is left stopped.
    said: bool,
}

/// A heal that is due.
struct Owed {
    reason: String,
    /// The node is not running and stopped with Docker: the heal starts it first.
    start: bool,
}

struct Watcher<'a> {
    config: &'a Config,
    ui: &'a Ui,
    /// The node engine, chosen once: a `docker context use` elsewhere does not move the watcher.
    engine: &'static Engine,
    node: String,
    /// The node container's ID, as last inspected (nerdctl's events name it by this only);
    /// shared with the stream's reader.
    node_id: Arc<std::sync::Mutex<String>>,
    interval: Duration,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    stream: Option<(u64, Stream, Instant)>,
    generation: u64,
    docker: Docker,
    reconnect_at: Instant,
    reconnect_backoff: Duration,
    /// The Docker endpoint (`unix://…`, `tcp://…`), when a connect can tell it is there.
    endpoint: Option<String>,
    /// Whether the endpoint accepted a connection at the last look.
    endpoint_up: bool,
    /// The newest event handled (`timeNano`, Docker's clock): a replay never acts twice, and a
    /// reconnect asks for the events since then.
    last_event: u128,
    /// The node's `State.StartedAt` as last seen, and whether it runs.
    started_at: Option<String>,
    /// The start a heal is owed (or was done) for: each start is healed once.
    handled: Option<String>,
    node_running: bool,
    /// The node was running when the event stream last ended (the engine went away).
    running_at_outage: bool,
    node_missing_said: bool,
    stop: Option<NodeStop>,
    owed: Option<Owed>,
    retry_at: Instant,
    retry_backoff: Duration,
    heals: u32,
    next_check: Option<Instant>,
    /// While a heal runs: the node's last start or stop it began from (`State.StartedAt` /
    /// `FinishedAt`, Docker's clock, ns); 0 otherwise. The reader thread cancels the heal when
    /// the node dies after it, or the stream ends.
    healing: Arc<AtomicU64>,
    state: state::StateFile,
}

/// The watcher's commands (`--dry-run`).
pub fn describe(config: &Config, interval: Duration) -> Vec<String> {
    if config.stack.cluster.shared() {
        return shared::describe(config, interval);
    }
    let cluster = &config.stack.cluster;
    let node = cluster.control_plane_container();
    let state = state::StateFile::for_cluster(&cluster.name);
    let engine = Engine::for_run();
    let mut lines = Vec::new();
    engine.describe(&mut lines);
    lines.push(format!(
        "{}   # {} answers? (while it is away: backoff ≤ 30s, and its socket watched)",
        engine.version(),
        engine.kind.title()
    ));
    if let Some(host) = engine.host() {
        lines.push(format!("# its endpoint {host}, whose socket is watched while it is away"));
    }
    let since = if engine.replays() {
        "reconnecting with --since <the last event seen> once it is back"
    } else {
        "it replays nothing: every node's start compared on each reconnect"
    };
    lines.push(format!("# Follow the kind cluster's containers ({since})"));
    lines.push(engine.events(&cluster.name, None).to_string());
    lines.push(format!(
        "{}   # State.StartedAt, after every reconnect and every check",
        engine.inspect(&node)
    ));
    if let Some(path) = state.path() {
        lines.push(format!("# The start last healed, per node: {}", path.display()));
    }
    lines.push(
        "# On the first connect, when the node starts again or a check fails: the Kubernetes API waited \
         for (≤ 5m), then what `bookstore up` runs (see `bookstore up --dry-run`)"
            .to_string(),
    );
    if !interval.is_zero() {
        lines.push(format!("# Every {}: every route once (read-only)", human(interval)));
        for check in &config.stack.smoke.checks {
            if let Ok(req) = crate::observe::routes::request(&config.stack, check) {
                lines.push(req.to_string());
            }
        }
    }
    lines
}

pub fn run(config: &Config, ui: &Ui, interval: Duration) -> Result<()> {
    if config.stack.cluster.shared() {
        // No engine to follow on a shared cluster: its Nodes, through the API.
        return shared::run(config, ui, interval);
    }
    wait::on_terminate();
    let engine = Engine::for_run();
    crate::observe::tools(&[engine.program.as_str(), "kubectl", "kind"])?;
    let (tx, rx) = mpsc::channel();
    let now = Instant::now();
    let endpoint =
        engine.host().map(String::from).filter(|host| crate::http::endpoint_accepts(host).is_some());
    let mut w = Watcher {
        config,
        ui,
        engine,
        node: config.stack.cluster.control_plane_container(),
        node_id: Arc::default(),
        interval,
        tx,
        rx,
        stream: None,
        generation: 0,
        docker: Docker::Unknown,
        reconnect_at: now,
        reconnect_backoff: RECONNECT_FIRST,
        endpoint,
        endpoint_up: true,
        last_event: 0,
        started_at: None,
        handled: None,
        node_running: false,
        running_at_outage: false,
        node_missing_said: false,
        stop: None,
        owed: None,
        retry_at: now,
        retry_backoff: RETRY_FIRST,
        heals: 0,
        next_check: None,
        healing: Arc::new(AtomicU64::new(0)),
        state: state::StateFile::for_cluster(&config.stack.cluster.name),
    };
    let check = if interval.is_zero() {
        "no periodic check".to_string()
    } else {
        format!("every route checked every {}", human(interval))
    };
    ui.info(&format!(
        "watching the kind node {} of cluster {} ({}'s events: {}; {check}); Ctrl-C to stop",
        w.node,
        config.stack.cluster.name,
        engine.kind.title(),
        engine.summary()
    ));
    w.run()
}

impl Watcher<'_> {
    fn run(&mut self) -> Result<()> {
        loop {
            if wait::stopping() {
                return self.stop();
            }
            // What happened meanwhile first (a heal that just ended: its node's `die`, the
            // stream's end), so nothing is decided on a stale view.
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg);
            }
            let now = Instant::now();
            if self.stream.is_none() {
                self.watch_endpoint();
                if Instant::now() >= self.reconnect_at {
                    self.connect();
                    continue;
                }
            }
            let healable = self.owed.as_ref().is_some_and(|o| o.start || self.node_running);
            if self.stream.is_some() && healable && now >= self.retry_at {
                self.heal()?;
                continue;
            }
            if self.stream.is_some() && self.owed.is_none() && self.next_check.is_some_and(|t| now >= t) {
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

    fn stop(&mut self) -> Result<()> {
        self.stream = None;
        let signal = if wait::terminated() { "SIGTERM" } else { "Ctrl-C" };
        self.ui.info(&format!("stopped watching ({signal}) after {} heal(s)", self.heals));
        if wait::terminated() { Ok(()) } else { Err(Error::Interrupted) }
    }

    /// While Docker is away: its endpoint accepting connections again means it is coming back
    /// (probe now); not accepting, nothing to probe for but the slow backoff.
    fn watch_endpoint(&mut self) {
        if !matches!(self.docker, Docker::Down { .. }) {
            return;
        }
        let Some(up) = self.endpoint.as_deref().and_then(crate::http::endpoint_accepts) else { return };
        if up && !self.endpoint_up {
            self.reconnect_at = Instant::now();
            self.reconnect_backoff = RECONNECT_FIRST;
        }
        self.endpoint_up = up;
    }

    /// Docker answers? Then open the event stream and look at the node.
    fn connect(&mut self) {
        let probe = self.engine.version().not_cancellable().deadline(Duration::from_secs(10));
        let why = match crate::observe::engine_answers(self.engine, &probe) {
            Ok(Ok(_)) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => return, // stopping: the loop ends it
        };
        if let Some(why) = why {
            self.docker_down(&why.lines().map(str::trim).collect::<Vec<_>>().join(" "));
            self.reconnect_later();
            return;
        }
        // Everything since the last event seen (Docker's clock): what happened while the stream
        // was down is replayed by the daemon (what it still has), replays of what was handled
        // are skipped by time. The first stream needs none: the node is inspected below.
        let since = (self.last_event > 0 && self.engine.replays()).then_some(self.last_event);
        let cmd = self.engine.events(&self.config.stack.cluster.name, since);
        let mut stream = match cmd.stream() {
            Ok(s) => s,
            Err(err) => {
                self.docker_down(&first_line(&err.to_string()));
                self.reconnect_later();
                return;
            }
        };
        let Some(reader) = stream.take_reader() else { return };
        self.generation += 1;
        let generation = self.generation;
        let (tx, healing) = (self.tx.clone(), Arc::clone(&self.healing));
        let (engine, node, id) = (self.engine, self.node.clone(), Arc::clone(&self.node_id));
        std::thread::spawn(move || pump(engine, reader, &tx, &healing, (&node, &id), generation));
        self.stream = Some((generation, stream, Instant::now()));

        if let Docker::Down { since } = self.docker {
            self.ui.ok_item(
                &format!("{} is back (it was away {})", self.engine.kind.title(), human(since.elapsed())),
                Event::DockerUp { down_ms: since.elapsed().as_millis() as u64 },
            );
        }
        let first = self.generation == 1;
        self.docker = Docker::Up;
        self.reconnect_backoff = RECONNECT_FIRST;
        if !self.look_at_node(Seen::Inspect) {
            self.node_running = false;
        }
        self.ui.emit(Event::Watching {
            cluster: self.config.stack.cluster.name.clone(),
            node: self.node.clone(),
            started_at: self.started_at.clone(),
            since: since.map(crate::engine::docker::unix_time_nanos),
            command: cmd.to_string(),
            engine: self.engine.program.clone(),
        });
        if !self.interval.is_zero() {
            // A first look at the stack right away, then every interval.
            self.next_check = Some(Instant::now());
        }
        if first {
            self.first_look();
        }
    }

    /// The first connect: a start that happened before the watcher ran (a login agent starts
    /// after Docker has restarted the node) is healed like one it saw. One convergent heal,
    /// whatever the state file says (on a healthy stack it is a check); the file says why.
    fn first_look(&mut self) {
        let Some(started) = self.started_at.clone() else { return };
        if !self.node_running || self.owed.is_some() {
            return;
        }
        let reason = match self.state.last_healed(&self.node) {
            Some(healed) if healed == started => format!(
                "first look: {} has not started again since the heal of its start at {started}",
                self.node
            ),
            Some(healed) => {
                self.ui.emit(Event::NodeStarted {
                    node: self.node.clone(),
                    started_at: started.to_string(),
                    seen: Seen::State,
                });
                format!(
                    "{} started at {started}, while the watcher was not running (the last start healed: {healed})",
                    self.node
                )
            }
            None => format!("first look: no heal of {} recorded (it started at {started})", self.node),
        };
        self.handled = Some(started);
        self.owe(reason, false);
    }

    /// The next probe: soon while the endpoint's socket accepts (Docker is starting), at the
    /// ceiling while it does not (its socket accepting again brings the probe forward), on the
    /// doubling backoff where no socket tells.
    fn reconnect_later(&mut self) {
        let (wait, ceiling) = match (&self.endpoint, self.endpoint_up) {
            (Some(_), true) => (self.reconnect_backoff, RECONNECT_SOCKET_UP),
            (Some(_), false) => (RECONNECT_CEILING, RECONNECT_SOCKET_UP),
            (None, _) => (self.reconnect_backoff, RECONNECT_CEILING),
        };
        self.reconnect_at = Instant::now() + wait;
        self.reconnect_backoff = (self.reconnect_backoff * 2).min(ceiling);
    }

    /// Say once that Docker is not running.
    fn docker_down(&mut self, why: &str) {
        if matches!(self.docker, Docker::Down { .. }) {
            return;
        }
        self.docker = Docker::Down { since: Instant::now() };
        self.endpoint_up = self.endpoint.as_deref().and_then(crate::http::endpoint_accepts).unwrap_or(true);
        self.ui.emit(Event::DockerDown { message: why.to_string() });
        let watched = match &self.endpoint {
            Some(host) => {
                format!("watching {host}, and asking again every {} at most", human(RECONNECT_CEILING))
            }
            None => format!("asking again every {} at most", human(RECONNECT_CEILING)),
        };
        self.ui.warn_line(&format!(
            "{} is not running ({why}): waiting for it ({watched})",
            self.engine.kind.title()
        ));
    }

    /// `docker inspect` the node. A heal is due for a start not healed yet: one its `start`
    /// event announced (`seen` = [`Seen::Event`]), or a `State.StartedAt` other than the one seen before
    /// (however the watcher missed the event). A node not running is judged ([`Self::node_exited`]).
    /// Whether the node could be looked at (Docker answered).
    fn look_at_node(&mut self, seen: Seen) -> bool {
        let inspect = self.engine.inspect(&self.node).not_cancellable().deadline(Duration::from_secs(10));
        let node = match inspect.run() {
            Ok(out) => self.engine.parse_inspect(&out.stdout),
            Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("No such") => {
                self.node_running = false;
                if !std::mem::replace(&mut self.node_missing_said, true) {
                    self.ui.warn(&format!(
                        "there is no kind node container {} (no cluster yet? `bookstore up` creates it): \
                         waiting for it",
                        self.node
                    ));
                }
                return true;
            }
            // The engine going away: the event stream's end says so.
            Err(Error::Command { stderr_tail, .. }) if self.engine.unreachable(&stderr_tail) => return false,
            Err(err) => Err(first_line(&err.to_string())),
        };
        let node = match node {
            Ok(n) => n,
            Err(why) => {
                self.ui.warn(&format!("`{inspect}`: {why}"));
                return false;
            }
        };
        self.node_missing_said = false;
        self.node_running = node.running;
        if node.running {
            self.running_at_outage = false;
        }
        *self.node_id.lock().unwrap_or_else(|p| p.into_inner()) = node.id.clone();
        let before = self.started_at.replace(node.started.clone());
        if !node.running {
            self.node_exited(&node);
            return true;
        }
        self.stop = None;
        if self.owed.as_ref().is_some_and(|o| o.start) {
            // Started meanwhile (by hand, or by a heal that was cut short): heal it as it is.
            self.owed = None;
        }
        let new = match seen {
            Seen::Event => true,
            Seen::Inspect | Seen::Check | Seen::State => before.is_some_and(|b| b != node.started),
        };
        if new && self.handled.as_deref() != Some(node.started.as_str()) {
            self.handled = Some(node.started.clone());
            self.ui.emit(Event::NodeStarted {
                node: self.node.clone(),
                started_at: node.started.clone(),
                seen,
            });
            self.owe(format!("{} started again at {}", self.node, node.started), false);
        }
        true
    }

    /// The node is not running while its engine answers. Stopped together with the engine (its
    /// `die` came as the engine went away, the engine's current run never saw it die, podman
    /// reset it to `created` after a reboot), the engine did not start it again: the heal starts
    /// it. Stopped while the engine ran (a `docker stop`, a crash): left as it is, said once.
    /// The judgement is [`crate::judge::engine::stopped_with_engine`]'s.
    fn node_exited(&mut self, node: &Node) {
        if self.owed.as_ref().is_some_and(|o| o.start) {
            return;
        }
        let seen = self.stop.as_ref().map(|s| s.with_docker);
        let remembered = if seen.is_none() { self.remembers_exit(node) } else { None };
        let verdict = crate::judge::engine::stopped_with_engine(&crate::judge::engine::Stop {
            state: node.status.clone(),
            seen,
            remembered,
            across_outage: self.running_at_outage,
        });
        let code = self.stop.as_ref().map_or(node.exit_code.to_string(), |s| s.exit_code.clone());
        if self.stop.is_none() {
            let at = crate::utc::nanos(&node.finished).unwrap_or(0);
            let seen = Instant::now();
            let with_docker = verdict.is_ok();
            self.stop = Some(NodeStop { at, seen, exit_code: code.clone(), with_docker, said: false });
        }
        let (engine, program) = (self.engine.kind.title(), &self.engine.program);
        match verdict {
            Ok(why) => {
                self.ui.emit(Event::NodeExited {
                    node: self.node.clone(),
                    exit_code: code.clone(),
                    stopped_with_docker: true,
                    action: NodeAction::Start,
                    state: node.status.clone(),
                    why: why.clone(),
                });
                self.owe(
                    format!(
                        "{} stopped together with {engine} ({why}; exit {code}) and {engine} did not start it \
                         again (kind's nodes restart only after a failure, podman's never): starting it",
                        self.node
                    ),
                    true,
                );
            }
            Err(why) => {
                let said = self.stop.as_ref().is_some_and(|s| s.said);
                if !said {
                    self.ui.emit(Event::NodeExited {
                        node: self.node.clone(),
                        exit_code: code.clone(),
                        stopped_with_docker: false,
                        action: NodeAction::None,
                        state: node.status.clone(),
                        why: why.clone(),
                    });
                    self.ui.warn(&format!(
                        "{} was stopped while {engine} ran ({why}; exit {code}; `{program} stop`, or it failed): \
                         left as it is; `bookstore up` starts it and heals the stack (or `{program} start {}`)",
                        self.node, self.node
                    ));
                }
                if let Some(stop) = &mut self.stop {
                    stop.said = true;
                }
            }
        }
    }

    /// Does the engine's current run remember the node's last exit? A daemon's ring of events
    /// is empty when it starts, podman's log lives on tmpfs: an exit replayed around
    /// `State.FinishedAt` happened while it ran. `None`: the engine cannot replay (nerdctl).
    fn remembers_exit(&self, node: &Node) -> Option<bool> {
        let Some(finished) = crate::utc::nanos(&node.finished) else { return Some(false) };
        let (since, until) = (finished.saturating_sub(1_000_000_000), finished + 1_000_000_000);
        let cmd = self.engine.past_exits(&self.node, since, until)?.not_cancellable();
        Some(cmd.run().is_ok_and(|out| {
            out.stdout.lines().filter_map(|l| self.engine.parse_event(l)).any(|e| {
                e.action == "die"
                    && e.is_about(&self.node, &node.id)
                    && (since..=until).contains(&e.time_nano)
            })
        }))
    }

    fn owe(&mut self, reason: String, start: bool) {
        self.ui.info(&format!("{reason}: healing"));
        self.owed = Some(Owed { reason, start });
        self.retry_at = Instant::now();
        self.retry_backoff = RETRY_FIRST;
    }

    /// An event about another container of the cluster: a worker (issue 19). Its start owes a
    /// heal (what `up` runs judges every node against its own start: only that node's ztunnel
    /// pod and the workloads with pods there are restarted). Docker's and podman's streams are
    /// filtered by the cluster's label; nerdctl's is not and names no container, so there a
    /// worker's start is caught by the heal the control plane's start owes, not by its own.
    fn another_node(&mut self, e: &crate::engine::ContainerEvent) {
        if self.engine.kind == crate::engine::Kind::Nerdctl || e.name.is_empty() {
            return;
        }
        self.last_event = e.time_nano;
        if e.action == "start" && self.owed.is_none() {
            self.owe(format!("{} started again", e.name), false);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Event(e) => {
                let id = self.node_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if e.time_nano <= self.last_event {
                    return;
                }
                if !e.is_about(&self.node, &id) {
                    self.another_node(&e);
                    return;
                }
                self.last_event = e.time_nano;
                match e.action.as_str() {
                    "start" => {
                        self.look_at_node(Seen::Event);
                    }
                    "die" => {
                        self.node_running = false;
                        let code = e.exit_code.clone().unwrap_or_default();
                        self.ui.emit(Event::NodeStopped { node: self.node.clone(), exit_code: code.clone() });
                        let engine = self.engine.kind.title();
                        self.ui.info(&format!(
                            "{} stopped (exit {code}): if {engine} is going away, it is started once {engine} is \
                             back; stopped by hand, it is left stopped",
                            self.node
                        ));
                        let seen = Instant::now();
                        self.stop = Some(NodeStop {
                            at: e.time_nano,
                            seen,
                            exit_code: code,
                            with_docker: false,
                            said: false,
                        });
                    }
                    "destroy" => {
                        self.node_running = false;
                        self.started_at = None;
                        self.handled = None;
                        self.stop = None;
                    }
                    _ => {}
                }
            }
            Msg::Ended(generation) => {
                let Some((current, mut stream, started)) = self.stream.take() else { return };
                if current != generation {
                    self.stream = Some((current, stream, started));
                    return;
                }
                if let Some(stop) = &mut self.stop
                    && stop.seen.elapsed() <= WITH_DOCKER
                {
                    stop.with_docker = true;
                }
                self.running_at_outage = self.node_running;
                let tail = stream.stderr_tail();
                drop(stream);
                if wait::stopping() {
                    return;
                }
                let why = tail.lines().last().unwrap_or("").trim().to_string();
                self.ui.detail(
                    "",
                    &format!("the event stream ended ({})", if why.is_empty() { "no output" } else { &why }),
                );
                if started.elapsed() < SHORT_STREAM {
                    self.reconnect_later();
                } else {
                    self.reconnect_backoff = RECONNECT_FIRST;
                    self.reconnect_at = Instant::now();
                }
            }
        }
    }

    /// The periodic check: the node's `State.StartedAt`, then every route once.
    fn check(&mut self) {
        self.next_check = Some(Instant::now() + self.interval);
        // Routes are judged only with the node up and Docker answering (not while it goes away).
        if !self.look_at_node(Seen::Check) || self.owed.is_some() || !self.node_running {
            return;
        }
        let failures = heal::check(&self.config.stack);
        if failures.is_empty() || !self.docker_answers() {
            return;
        }
        for (check, url, reason) in &failures {
            self.ui.emit(Event::CheckFailed {
                check: check.clone(),
                url: url.clone(),
                reason: reason.clone(),
            });
        }
        let names: Vec<&str> = failures.iter().map(|(c, _, _)| c.as_str()).collect();
        let first = &failures[0];
        self.owe(
            format!(
                "the check found {} route(s) failing ({}; {}: {})",
                failures.len(),
                names.join(", "),
                first.0,
                first.2
            ),
            false,
        );
    }

    /// Docker answers now.
    fn docker_answers(&self) -> bool {
        let probe = self.engine.version().not_cancellable().deadline(Duration::from_secs(10));
        matches!(crate::observe::engine_answers(self.engine, &probe), Ok(Ok(_)))
    }

    /// One heal, holding the lock; a manual run holding it is waited for.
    fn heal(&mut self) -> Result<()> {
        let Some(Owed { reason, start }) =
            self.owed.as_ref().map(|o| Owed { reason: o.reason.clone(), start: o.start })
        else {
            return Ok(());
        };
        let holder = format!("pid {} running `bookstore watch` (healing: {reason})", std::process::id());
        let mut said = false;
        let _lock = loop {
            match crate::lock::acquire(&self.config.stack.cluster.name, &holder) {
                Ok(lock) => break lock,
                Err(Error::Busy { holder: other, .. }) => {
                    if !std::mem::replace(&mut said, true) {
                        self.ui.info(&format!("waiting for {other} to finish before healing"));
                    }
                    match self.rx.recv_timeout(Duration::from_millis(250)) {
                        Ok(msg) => self.handle(msg),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => unreachable!("the watcher holds a sender"),
                    }
                    let healable = self.owed.as_ref().is_some_and(|o| o.start || self.node_running);
                    if wait::stopping() || self.stream.is_none() || !healable {
                        return Ok(());
                    }
                }
                Err(other) => return Err(other),
            }
        };
        // What a cancelled heal called off stays off; this one runs.
        wait::resume();
        self.heals += 1;
        let n = self.heals;
        self.ui.emit(Event::HealStarted { heal: n, reason: reason.clone(), start_node: start });
        let started = Instant::now();
        let spawned = crate::exec::spawned();
        // A `die` after the node's last start (or, for a node to start, after its last stop)
        // calls this heal off: Docker's clock against Docker's clock.
        let from = if start {
            self.stop.as_ref().map_or(0, |s| s.at)
        } else {
            self.started_at.as_deref().and_then(crate::utc::nanos).unwrap_or(0)
        };
        self.healing.store(from.max(1) as u64, Ordering::SeqCst);
        let result = heal::prepare(self.config, self.ui, start)
            .and_then(|()| heal::converge(self.config, self.ui).map_err(heal::Failure::Heal));
        self.healing.store(0, Ordering::SeqCst);
        let took = started.elapsed();
        let duration_ms = took.as_millis() as u64;
        let commands = crate::exec::spawned() - spawned;
        let finished = |outcome, failed: Option<(&Error, Duration)>| Event::HealFinished {
            heal: n,
            outcome,
            duration_ms,
            commands,
            exit_code: failed.map(|(e, _)| e.code()),
            message: failed.map(|(e, _)| e.to_string()),
            retry_in_ms: failed.map(|(_, retry)| retry.as_millis() as u64),
        };
        match result {
            Ok(()) => {
                self.owed = None;
                self.stop = None;
                self.retry_backoff = RETRY_FIRST;
                self.healed();
                self.ui.ok_line(&format!("Healed in {} ({commands} commands): {reason}", human(took)));
                self.ui.emit(finished(HealOutcome::Ok, None));
                if !self.interval.is_zero() {
                    self.next_check = Some(Instant::now() + self.interval);
                }
            }
            // SIGINT or SIGTERM: the loop ends it.
            Err(_) if wait::stopping() => return Ok(()),
            Err(_) if wait::cancelled() => {
                self.ui.fail_line(&format!(
                    "Heal stopped after {}: {} or the node went away in the middle; it starts over once they are back",
                    human(took),
                    self.engine.kind.title()
                ));
                self.ui.emit(finished(HealOutcome::Cancelled, None));
                self.retry_at = Instant::now();
            }
            Err(err) if !self.docker_answers() => {
                // Docker went away under the heal (the stream's end may not have said so yet).
                let engine = self.engine.kind.title();
                self.ui.fail_line(&format!(
                    "Heal stopped after {} (exit {}): {engine} does not answer; it starts over once {engine} is back",
                    human(took),
                    err.error().code()
                ));
                self.ui.emit(finished(HealOutcome::Cancelled, None));
                // (Not at once: the stream's end is on its way.)
                self.retry_at = Instant::now() + Duration::from_secs(1);
            }
            Err(failure) => {
                let retry = self.retry_backoff;
                self.retry_at = Instant::now() + retry;
                self.retry_backoff = (retry * 2).min(RETRY_CEILING);
                let err = failure.error();
                self.ui.fail_line(&format!("Heal failed after {} (exit {}):", human(took), err.code()));
                for line in err.to_string().lines() {
                    self.ui.detail("", line);
                }
                // A node still booting is no finding: only a heal that ran is diagnosed.
                if let heal::Failure::Heal(_) = failure {
                    heal::diagnose(self.config, self.ui);
                }
                self.ui.info(&format!("retrying in {} (or fix it and run `bookstore up`)", human(retry)));
                self.ui.emit(finished(HealOutcome::Failed, Some((err, retry))));
            }
        }
        Ok(())
    }

    /// After a heal: the node's start it healed (a heal that started the node gave it a new
    /// one) is handled, and kept in the state file.
    fn healed(&mut self) {
        let inspect = self.engine.inspect(&self.node).not_cancellable().deadline(Duration::from_secs(10));
        let Some(node) = inspect.run().ok().and_then(|out| self.engine.parse_inspect(&out.stdout).ok())
        else {
            return;
        };
        if !node.running {
            return;
        }
        self.node_running = true;
        self.started_at = Some(node.started.clone());
        self.handled = Some(node.started.clone());
        if let Err(e) = self.state.healed(&self.node, &node.started) {
            let path = self.state.path().map(|p| p.display().to_string()).unwrap_or_default();
            self.ui.warn(&format!("cannot write {path}: {e} (a restart while the watcher is not running is then healed as a first look)"));
        }
    }
}

/// The reader thread: the stream's lines as messages. A heal in progress is cancelled when the
/// node dies after the start (or stop) it began from, or when the stream ends (Docker went away).
fn pump(
    engine: &Engine,
    reader: impl std::io::BufRead,
    tx: &Sender<Msg>,
    healing: &AtomicU64,
    (node, id): (&str, &std::sync::Mutex<String>),
    generation: u64,
) {
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Some(event) = engine.parse_event(&line) else { continue };
        let from = healing.load(Ordering::SeqCst) as u128;
        let ours = || event.is_about(node, &id.lock().unwrap_or_else(|p| p.into_inner()));
        if event.action == "die" && from != 0 && event.time_nano > from && ours() {
            wait::cancel();
        }
        if tx.send(Msg::Event(event)).is_err() {
            return;
        }
    }
    if healing.load(Ordering::SeqCst) != 0 && !wait::stopping() {
        wait::cancel();
    }
    let _ = tx.send(Msg::Ended(generation));
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}
