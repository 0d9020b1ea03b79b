//! `bookstore watch`: the stack heals itself after Docker restarts.
//!
//! It follows Docker's event stream for the kind cluster's containers (`docker events` with the
//! cluster's label, JSON lines, through the real docker CLI) and Docker's own availability. When
//! the node container starts again (a Docker Desktop restart, `docker restart`, a reboot) it runs
//! the heal ([`heal::converge`]: what `bookstore up` runs, which waits for the Kubernetes API
//! first). A start it could not see (Docker was down, the stream was being reconnected) is caught
//! twice over: every reconnect asks for the events since the stream ended (`--since`) and
//! compares the node's `State.StartedAt` with the one it saw before. A light periodic check
//! (`--interval`) probes every route once and heals what fails the same way.
//!
//! One heal at a time, each holding the cluster's lock (a manual run waits for it, or is told
//! the watcher is healing; the watcher waits for a manual run). Docker going away in the middle
//! of a heal cancels it ([`crate::wait::cancel`]: its children are stopped) and the heal starts
//! over once Docker and the node are back; a heal that fails is retried with backoff. SIGINT
//! and SIGTERM stop the running child and end the watcher (exit 130 / 0).

mod events;
mod heal;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::docker;
use crate::error::{Error, Result};
use crate::event::{Event, HealOutcome, Seen};
use crate::exec::Stream;
use crate::ui::{Ui, human};
use crate::wait;

/// Reconnecting to Docker: the first retry, and the ceiling of the doubling backoff.
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_CEILING: Duration = Duration::from_secs(2);
/// A heal that failed: the first retry, and the ceiling.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_CEILING: Duration = Duration::from_secs(300);
/// A stream that ends sooner than this after it started counts against the reconnect backoff.
const SHORT_STREAM: Duration = Duration::from_secs(2);
/// How long the watcher sleeps at most between looks at its flags (SIGINT, SIGTERM).
const TICK: Duration = Duration::from_millis(100);

/// What the stream's reader thread tells the watcher.
enum Msg {
    Event(events::ContainerEvent),
    /// The `docker events` child of this generation ended (Docker went away, or it was stopped).
    Ended(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Docker {
    Unknown,
    Up,
    Down { since: Instant },
}

struct Watcher<'a> {
    config: &'a Config,
    ui: &'a Ui,
    node: String,
    interval: Duration,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    stream: Option<(u64, Stream, Instant)>,
    generation: u64,
    docker: Docker,
    reconnect_at: Instant,
    reconnect_backoff: Duration,
    /// When the last stream ended (wall clock): the next one asks for the events since then.
    ended_wall: Option<SystemTime>,
    /// The newest event handled (`timeNano`): a replay never acts twice.
    last_event: u128,
    /// The node's `State.StartedAt` as last seen, and whether it runs.
    started_at: Option<String>,
    /// The start a heal is owed (or was done) for: each start is healed once.
    handled: Option<String>,
    node_running: bool,
    node_missing_said: bool,
    /// A heal is due, and why.
    owed: Option<String>,
    retry_at: Instant,
    retry_backoff: Duration,
    heals: u32,
    next_check: Option<Instant>,
    /// While a heal runs: when it started (wall clock, ns); 0 otherwise. The reader thread
    /// cancels the heal when the node dies after this, or the stream ends.
    healing: Arc<AtomicU64>,
}

/// The watcher's commands (`--dry-run`).
pub fn describe(config: &Config, interval: Duration) -> Vec<String> {
    let cluster = &config.stack.cluster;
    let node = cluster.control_plane_container();
    let mut lines = vec![
        "# Follow the kind cluster's containers (reconnecting with --since <when the stream ended> \
         once Docker is back)"
            .to_string(),
        docker::events(&cluster.name, None).to_string(),
        format!("{}   # State.StartedAt, after every reconnect and every check", docker::inspect(&node)),
    ];
    if !interval.is_zero() {
        lines.push(format!("# Every {}: every route once (read-only)", human(interval)));
        for check in &config.stack.smoke.checks {
            if let Ok(req) = crate::observe::routes::request(&config.stack, check) {
                lines.push(req.to_string());
            }
        }
    }
    lines.push(
        "# When the node starts again or a check fails: what `bookstore up` runs (see `bookstore up --dry-run`)"
            .to_string(),
    );
    lines
}

pub fn run(config: &Config, ui: &Ui, interval: Duration) -> Result<()> {
    wait::on_terminate();
    crate::observe::tools(&["docker", "kubectl", "kind"])?;
    let (tx, rx) = mpsc::channel();
    let now = Instant::now();
    let mut w = Watcher {
        config,
        ui,
        node: config.stack.cluster.control_plane_container(),
        interval,
        tx,
        rx,
        stream: None,
        generation: 0,
        docker: Docker::Unknown,
        reconnect_at: now,
        reconnect_backoff: RECONNECT_FIRST,
        ended_wall: None,
        last_event: 0,
        started_at: None,
        handled: None,
        node_running: false,
        node_missing_said: false,
        owed: None,
        retry_at: now,
        retry_backoff: RETRY_FIRST,
        heals: 0,
        next_check: None,
        healing: Arc::new(AtomicU64::new(0)),
    };
    let check = if interval.is_zero() {
        "no periodic check".to_string()
    } else {
        format!("every route checked every {}", human(interval))
    };
    ui.info(&format!(
        "watching the kind node {} of cluster {} (Docker's events; {check}); Ctrl-C to stop",
        w.node, config.stack.cluster.name
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
            if self.stream.is_none() && now >= self.reconnect_at {
                self.connect();
                continue;
            }
            if self.stream.is_some() && self.node_running && self.owed.is_some() && now >= self.retry_at {
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

    /// Docker answers? Then open the event stream and look at the node.
    fn connect(&mut self) {
        let info = docker::info().not_cancellable().deadline(Duration::from_secs(10));
        if let Err(err) = info.run() {
            let why = match &err {
                Error::Command { stderr_tail, .. } => stderr_tail.lines().last().unwrap_or("").to_string(),
                other => first_line(&other.to_string()),
            };
            self.docker_down(&format!("`{info}` failed: {why}"));
            self.reconnect_later();
            return;
        }
        // Everything since the last stream ended (or since now): what happens while the new
        // stream subscribes is replayed by the daemon, not lost.
        // (A second before the last one ended: what it may not have delivered yet; replays of
        // what it did are skipped by time.)
        let since = match self.ended_wall {
            Some(t) => t.checked_sub(Duration::from_secs(1)).unwrap_or(t),
            None => SystemTime::now(),
        };
        let cmd = docker::events(&self.config.stack.cluster.name, Some(&events::unix_time(since)));
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
        let (tx, healing, node) = (self.tx.clone(), Arc::clone(&self.healing), self.node.clone());
        std::thread::spawn(move || pump(reader, &tx, &healing, &node, generation));
        self.stream = Some((generation, stream, Instant::now()));

        if let Docker::Down { since } = self.docker {
            self.ui.ok_item(
                &format!("Docker is back (it was away {})", human(since.elapsed())),
                Event::DockerUp { down_ms: since.elapsed().as_millis() as u64 },
            );
        }
        let first = self.docker == Docker::Unknown;
        self.docker = Docker::Up;
        if !self.look_at_node(Seen::Inspect) {
            self.node_running = false;
        }
        self.ui.emit(Event::Watching {
            cluster: self.config.stack.cluster.name.clone(),
            node: self.node.clone(),
            started_at: self.started_at.clone(),
            since: events::unix_time(since),
            command: cmd.to_string(),
        });
        if !self.interval.is_zero() {
            // A first look at the stack right away, then every interval.
            self.next_check = Some(Instant::now());
        }
        if first && self.started_at.is_some() {
            self.ui.detail(
                "",
                &format!("{} started at {}", self.node, self.started_at.as_deref().unwrap_or("")),
            );
        }
    }

    /// `docker info` answers now.
    fn docker_answers(&self) -> bool {
        docker::info().not_cancellable().deadline(Duration::from_secs(10)).run().is_ok()
    }

    fn reconnect_later(&mut self) {
        self.reconnect_at = Instant::now() + self.reconnect_backoff;
        self.reconnect_backoff = (self.reconnect_backoff * 2).min(RECONNECT_CEILING);
    }

    /// Say once that Docker is not running.
    fn docker_down(&mut self, why: &str) {
        if matches!(self.docker, Docker::Down { .. }) {
            return;
        }
        self.docker = Docker::Down { since: Instant::now() };
        self.ui.emit(Event::DockerDown { message: why.to_string() });
        self.ui.warn_line(&format!(
            "Docker is not running ({why}): waiting for it (rechecking every {} at most)",
            human(RECONNECT_CEILING)
        ));
    }

    /// `docker inspect` the node. A heal is due for a start not healed yet: one its `start`
    /// event announced (`seen` = [`Seen::Event`]), or a `State.StartedAt` other than the one seen before
    /// (however the watcher missed the event).
    /// Whether the node could be looked at (Docker answered).
    fn look_at_node(&mut self, seen: Seen) -> bool {
        let inspect = docker::inspect(&self.node).not_cancellable().deadline(Duration::from_secs(10));
        let node = match inspect.run() {
            Ok(out) => docker::parse_inspect(&out.stdout),
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
            // Docker going away: the event stream's end says so.
            Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("Cannot connect") => {
                return false;
            }
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
        let before = self.started_at.replace(node.started.clone());
        let new = match seen {
            Seen::Event => true,
            Seen::Inspect | Seen::Check => before.is_some_and(|b| b != node.started),
        };
        if node.running && new && self.handled.as_deref() != Some(node.started.as_str()) {
            self.handled = Some(node.started.clone());
            self.ui.emit(Event::NodeStarted {
                node: self.node.clone(),
                started_at: node.started.clone(),
                seen,
            });
            self.owe(format!("{} started again at {}", self.node, node.started));
        }
        true
    }

    fn owe(&mut self, reason: String) {
        self.ui.info(&format!("{reason}: healing"));
        self.owed = Some(reason);
        self.retry_at = Instant::now();
        self.retry_backoff = RETRY_FIRST;
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Event(e) => {
                if e.time_nano <= self.last_event || e.name != self.node {
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
                        self.ui.info(&format!(
                            "{} stopped (exit {code}): healing once it starts again",
                            self.node
                        ));
                    }
                    "destroy" => {
                        self.node_running = false;
                        self.started_at = None;
                        self.handled = None;
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
                self.ended_wall = Some(SystemTime::now());
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
        self.owe(format!(
            "the check found {} route(s) failing ({}; {}: {})",
            failures.len(),
            names.join(", "),
            first.0,
            first.2
        ));
    }

    /// One heal, holding the lock; a manual run holding it is waited for.
    fn heal(&mut self) -> Result<()> {
        let reason = self.owed.clone().unwrap_or_default();
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
                    if wait::stopping() || self.stream.is_none() || !self.node_running {
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
        self.ui.emit(Event::HealStarted { heal: n, reason: reason.clone() });
        let started = Instant::now();
        let spawned = crate::exec::spawned();
        self.healing.store(events::nanos(SystemTime::now()) as u64, Ordering::SeqCst);
        let result = heal::converge(self.config, self.ui);
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
                self.retry_backoff = RETRY_FIRST;
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
                    "Heal stopped after {}: Docker or the node went away in the middle; it starts over once they are back",
                    human(took)
                ));
                self.ui.emit(finished(HealOutcome::Cancelled, None));
                self.retry_at = Instant::now();
            }
            Err(err) if !self.docker_answers() => {
                // Docker went away under the heal (the stream's end may not have said so yet).
                self.ui.fail_line(&format!(
                    "Heal stopped after {} (exit {}): Docker does not answer; it starts over once Docker is back",
                    human(took),
                    err.code()
                ));
                self.ui.emit(finished(HealOutcome::Cancelled, None));
                // (Not at once: the stream's end is on its way.)
                self.retry_at = Instant::now() + Duration::from_secs(1);
            }
            Err(err) => {
                let retry = self.retry_backoff;
                self.retry_at = Instant::now() + retry;
                self.retry_backoff = (retry * 2).min(RETRY_CEILING);
                self.ui.fail_line(&format!("Heal failed after {} (exit {}):", human(took), err.code()));
                for line in err.to_string().lines() {
                    self.ui.detail("", line);
                }
                heal::diagnose(self.config, self.ui);
                self.ui.info(&format!("retrying in {} (or fix it and run `bookstore up`)", human(retry)));
                self.ui.emit(finished(HealOutcome::Failed, Some((&err, retry))));
            }
        }
        Ok(())
    }
}

/// The reader thread: the stream's lines as messages. A heal in progress is cancelled when the
/// node dies after it started, or when the stream ends (Docker went away).
fn pump(reader: impl std::io::BufRead, tx: &Sender<Msg>, healing: &AtomicU64, node: &str, generation: u64) {
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Some(event) = events::parse(&line) else { continue };
        let heal_started = healing.load(Ordering::SeqCst) as u128;
        if event.action == "die" && event.name == node && heal_started != 0 && event.time_nano > heal_started
        {
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
