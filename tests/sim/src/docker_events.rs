//! Docker's event stream (`GET /events`) as moby's daemon serves it (`daemon/events/events.go`,
//! `daemon/events/filter.go`, `api/server/router/system/system_routes.go`): an in-memory ring of
//! the last 256 messages (lost when the daemon restarts), `since`/`until` replaying that ring,
//! filters by `type`, `event`, `container`, `image` and `label`, one JSON object per line, the
//! legacy `status`/`id`/`from` fields below API 1.52. When the daemon stops, open streams end
//! without their last chunk (the CLI prints `unexpected EOF` and exits 1).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::server::{self, Resp};
use crate::world::{Container, SharedRef, World};

/// The daemon keeps this many messages for `since` (moby's `eventsLimit`).
pub const RING: usize = 256;

/// One message (`events.Message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub typ: String,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: u128,
}

impl Message {
    /// A container event: the actor's attributes are its labels, `image` and `name`, then
    /// `extra` (`exitCode`, `signal`), as the daemon's `LogContainerEventWithAttributes` does.
    pub fn container(c: &Container, action: &str, extra: &[(&str, &str)]) -> Message {
        let mut attributes = c.labels.clone();
        attributes.insert("image".into(), c.image.clone());
        attributes.insert("name".into(), c.name.clone());
        for (k, v) in extra {
            attributes.insert((*k).to_string(), (*v).to_string());
        }
        Message {
            typ: "container".into(),
            action: action.into(),
            id: c.id.clone(),
            attributes,
            time_nano: now_nanos(),
        }
    }

    /// The wire form; below API 1.52 with the legacy fields the docker CLI read until v25.
    pub fn to_json(&self, legacy: bool) -> Value {
        let mut v = json!({
            "Type": self.typ, "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": (self.time_nano / 1_000_000_000) as u64,
            "timeNano": self.time_nano as u64,
        });
        if legacy && (self.typ == "container" || self.typ == "image") {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if self.typ == "container" {
                v["from"] = json!(self.attributes.get("image").cloned().unwrap_or_default());
            }
        }
        v
    }
}

pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos()
}

/// A host time in nanoseconds on a clock `offset_ms` off it.
pub fn offset_nanos(nanos: u128, offset_ms: i64) -> u128 {
    let shift = offset_ms.unsigned_abs() as u128 * 1_000_000;
    if offset_ms < 0 { nanos.saturating_sub(shift) } else { nanos + shift }
}

/// The daemon's ring of recent messages and the signal that wakes open streams.
pub struct EventLog {
    ring: VecDeque<(u64, Message)>,
    seq: u64,
    tx: watch::Sender<u64>,
    /// Every open stream's progress: the last sequence number handed to its connection.
    streams: Vec<Weak<AtomicU64>>,
    /// The stopping daemon's events are out (once per stop).
    stopping: bool,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            ring: VecDeque::with_capacity(RING),
            seq: 0,
            tx: watch::channel(0).0,
            streams: Vec::new(),
            stopping: false,
        }
    }
}

impl EventLog {
    pub fn publish(&mut self, m: Message) {
        self.seq += 1;
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((self.seq, m));
        self.tx.send_replace(self.seq);
    }

    /// A new daemon starts with an empty ring: what happened before it is not replayed.
    pub fn daemon_restarted(&mut self) {
        self.ring.clear();
        self.stopping = false;
    }

    /// A new stream's progress counter, starting at the current sequence number.
    fn register(&mut self) -> Arc<AtomicU64> {
        self.streams.retain(|w| w.strong_count() > 0);
        let p = Arc::new(AtomicU64::new(self.seq));
        self.streams.push(Arc::downgrade(&p));
        p
    }

    /// Has every open stream handed its connection everything up to `seq`?
    pub fn flushed(&self, seq: u64) -> bool {
        self.streams.iter().filter_map(Weak::upgrade).all(|p| p.load(Ordering::SeqCst) >= seq)
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// What `since`/`until` replay (`loadBufferedEvents`): nothing without either; else every
    /// message at or after `since` and not after `until`, in order.
    pub fn buffered(&self, since: Option<u128>, until: Option<u128>, f: &Filter) -> Vec<Message> {
        if since.is_none() && until.is_none() {
            return Vec::new();
        }
        self.ring
            .iter()
            .map(|(_, m)| m)
            .filter(|m| since.is_none_or(|s| m.time_nano >= s))
            .filter(|m| until.is_none_or(|u| m.time_nano <= u))
            .filter(|m| f.include(m))
            .cloned()
            .collect()
    }

    /// Messages published after `seq` (for a live stream).
    pub fn after(&self, seq: u64, f: &Filter) -> Vec<Message> {
        self.ring.iter().filter(|(s, m)| *s > seq && f.include(m)).map(|(_, m)| m.clone()).collect()
    }

    /// Every message still in the ring (tests).
    pub fn all(&self) -> Vec<Message> {
        self.ring.iter().map(|(_, m)| m.clone()).collect()
    }
}

/// What the daemon logs for each container action (seen on a real dockerd 20.10 here: `docker
/// restart` gives kill, die, stop, start, restart; a daemon stopping gives kill, die, stop for
/// every running container; a daemon starting gives start for each one it restarts).
impl World {
    fn log_container(&mut self, i: usize, action: &str, extra: &[(&str, &str)]) {
        let mut m = Message::container(&self.containers[i], action, extra);
        m.time_nano = self.docker_nanos();
        self.docker_events.publish(m);
    }

    /// The container exits with `code` now (`State.ExitCode`, `FinishedAt`), and says so.
    fn died(&mut self, i: usize, code: i32) {
        self.containers[i].exit_code = code;
        self.containers[i].finished = SystemTime::now();
        self.log_container(i, "die", &[("exitCode", &code.to_string())]);
    }

    /// A running container is stopped (`docker stop`, the daemon shutting down): its stop signal
    /// (a kind node's is SIGRTMIN+3), then the exit `restart_policy::stop_exit_code` gives it.
    pub fn stop_events(&mut self, i: usize) {
        let signal = if crate::restart_policy::is_node(&self.containers[i]) { "37" } else { "15" };
        let code = crate::restart_policy::stop_exit_code(&self.containers[i], self.opts.node_left_exited);
        self.log_container(i, "kill", &[("signal", signal)]);
        self.died(i, code);
        self.log_container(i, "stop", &[]);
    }

    /// `POST /containers/{id}/{action}` succeeded; `was_running` is its state before.
    pub fn action_events(&mut self, i: usize, action: &str, was_running: bool, signal: &str) {
        match action {
            "stop" if was_running => self.stop_events(i),
            "kill" if was_running => {
                self.log_container(i, "kill", &[("signal", signal)]);
                self.died(i, 137);
            }
            "start" if !was_running => self.log_container(i, "start", &[]),
            "restart" => {
                if was_running {
                    self.stop_events(i);
                }
                self.log_container(i, "start", &[]);
                self.log_container(i, "restart", &[]);
            }
            _ => {}
        }
    }

    /// `DELETE /containers/{id}` (forced when running).
    pub fn destroy_events(&mut self, i: usize) {
        if self.containers[i].running {
            self.log_container(i, "kill", &[("signal", "9")]);
            self.died(i, 137);
        }
        self.log_container(i, "destroy", &[]);
    }

    /// `docker run` (kind creating its node).
    pub fn container_created_events(&mut self, name: &str) {
        if let Some(i) = self.containers.iter().position(|c| c.name == name) {
            self.log_container(i, "create", &[]);
            self.log_container(i, "start", &[]);
        }
    }

    pub(crate) fn daemon_stopping_events(&mut self) {
        if !self.docker_up || self.docker_events.stopping {
            return;
        }
        self.docker_events.stopping = true;
        for i in 0..self.containers.len() {
            if self.containers[i].running {
                self.stop_events(i);
            }
        }
    }

    /// A new daemon: an empty ring, then a `start` for every container it brings back.
    pub(crate) fn daemon_started_events(&mut self, restarted: &[usize]) {
        self.docker_events.daemon_restarted();
        for &i in restarted {
            self.log_container(i, "start", &[]);
        }
    }
}

/// `filters={"label":{"k=v":true},"type":["container"]}` (map or list form), as `filters.FromJSON`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    args: BTreeMap<String, Vec<String>>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        if text.trim().is_empty() {
            return Ok(Filter::default());
        }
        let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid filter: {e}"))?;
        let obj = v.as_object().ok_or("invalid filter: not an object")?;
        let mut args = BTreeMap::new();
        for (k, vals) in obj {
            let list: Vec<String> = match vals {
                Value::Object(m) => m.keys().cloned().collect(),
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                _ => return Err(format!("invalid filter: {k}")),
            };
            args.insert(k.clone(), list);
        }
        for k in args.keys() {
            if !["type", "event", "container", "image", "label", "scope", "daemon", "network", "volume"]
                .contains(&k.as_str())
            {
                return Err(format!("invalid filter '{k}'"));
            }
        }
        Ok(Filter { args })
    }

    fn get(&self, key: &str) -> Option<&Vec<String>> {
        self.args.get(key).filter(|v| !v.is_empty())
    }

    /// `ExactMatch`: no such filter, or one of its values equals `value`.
    fn exact(&self, key: &str, value: &str) -> bool {
        self.get(key).is_none_or(|vals| vals.iter().any(|v| v == value))
    }

    /// `FuzzyMatch`: exact, or `value` starts with one of the filter's values.
    fn fuzzy(&self, key: &str, value: &str) -> bool {
        self.get(key).is_none_or(|vals| vals.iter().any(|v| value.starts_with(v.as_str())))
    }

    /// `Filter.Include`: every filter given matches.
    pub fn include(&self, m: &Message) -> bool {
        let name = m.attributes.get("name").map(String::as_str).unwrap_or("");
        // `fuzzyMatchName`: the ID or the `name` attribute starts with a value of the filter.
        let named = |key: &str| self.fuzzy(key, &m.id) || self.fuzzy(key, name);
        let image_attr = if m.typ == "image" { "name" } else { "image" };
        let image = m.attributes.get(image_attr).map(String::as_str).unwrap_or("");
        let labels = self.get("label").is_none_or(|wanted| {
            wanted.iter().all(|kv| match kv.split_once('=') {
                Some((k, v)) => m.attributes.get(k).is_some_and(|x| x == v),
                None => m.attributes.contains_key(kv.as_str()),
            })
        });
        self.exact("event", &m.action)
            && self.exact("type", &m.typ)
            && self.exact("scope", "local")
            && ["container", "daemon", "network", "volume"].iter().all(|k| named(k))
            && (self.exact("image", &m.id) || self.exact("image", image))
            && labels
    }
}

/// `since`/`until` as the CLI sends them (`1764156639` or `1764156639.123456789`): nanoseconds.
pub fn parse_timestamp(text: &str) -> Result<Option<u128>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u128 = secs.parse().map_err(|_| format!("invalid timestamp {text:?}"))?;
    let mut nanos = String::from(frac);
    if nanos.len() > 9 || !nanos.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid timestamp {text:?}"));
    }
    while nanos.len() < 9 {
        nanos.push('0');
    }
    let nanos: u128 = nanos.parse().unwrap_or(0);
    Ok(Some(secs * 1_000_000_000 + nanos))
}

fn bad_request(m: &str) -> Resp {
    server::json(400, &json!({ "message": m }))
}

/// `GET /events`: the replay, then live messages until `until`, the client going away, or the
/// daemon stopping (its connection is dropped: no final chunk).
pub fn stream(shared: &SharedRef, q: &[(String, String)], api: &str) -> Resp {
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let since = match parse_timestamp(param("since")) {
        Ok(t) => t,
        Err(e) => return bad_request(&format!("invalid since timestamp: {e}")),
    };
    let until = match parse_timestamp(param("until")) {
        Ok(t) => t,
        Err(e) => return bad_request(&format!("invalid until timestamp: {e}")),
    };
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return bad_request(&format!(
            "`since` time ({}) cannot be after `until` time ({})",
            param("since"),
            param("until")
        ));
    }
    let filter = match Filter::parse(param("filters")) {
        Ok(f) => f,
        Err(e) => return bad_request(&e),
    };
    let legacy = api_less_than(api, (1, 52));
    // The daemon's clock (Docker Desktop's VM may be off the host's).
    let offset = shared.lock().opts.docker_clock_offset_ms;
    let daemon_now = move || offset_nanos(now_nanos(), offset);
    let now = daemon_now();
    let only_past = until.is_some_and(|u| u < now);
    let (buffered, mut seq, mut changed, progress) = {
        let mut w = shared.lock();
        let e = &mut w.docker_events;
        (e.buffered(since, until, &filter), e.seq(), e.subscribe(), e.register())
    };
    // Frames, and after each batch a mark (`None`) saying how far the stream has got: the
    // connection has taken every frame before a mark once the mark is read.
    let (tx, rx) = mpsc::channel::<(u64, Option<Bytes>)>(256);
    let shared = shared.clone();
    tokio::spawn(async move {
        let line = |m: &Message| Some(Bytes::from(format!("{}\n", m.to_json(legacy))));
        for m in &buffered {
            if tx.send((seq, line(m))).await.is_err() {
                return;
            }
        }
        if only_past {
            return;
        }
        let end = until.map(|u| {
            tokio::time::Instant::now() + Duration::from_nanos(u.saturating_sub(daemon_now()) as u64)
        });
        loop {
            let (fresh, last) = {
                let w = shared.lock();
                (w.docker_events.after(seq, &filter), w.docker_events.seq())
            };
            seq = last;
            for m in fresh.iter().filter(|m| until.is_none_or(|u| m.time_nano <= u)) {
                if tx.send((seq, line(m))).await.is_err() {
                    return;
                }
            }
            if tx.send((seq, None)).await.is_err() {
                return;
            }
            let until_end = async {
                match end {
                    Some(e) => tokio::time::sleep_until(e).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => if tx.is_closed() { return },
                _ = until_end => return,
            }
        }
    });
    let body = futures_util::stream::unfold((rx, progress), |(mut rx, progress)| async move {
        loop {
            match rx.recv().await? {
                (seq, None) => progress.store(seq, Ordering::SeqCst),
                (_, Some(b)) => return Some((Ok::<_, io::Error>(Frame::data(b)), (rx, progress))),
            }
        }
    });
    let mut r = Response::new(StreamBody::new(body).boxed_unsync());
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// A stopping daemon's events reach every open stream before it goes away: publish them, then
/// wait (bounded) until each stream's connection has taken them. Blocks: not on the runtime.
pub fn publish_stopping(shared: &SharedRef) {
    let seq = {
        let mut w = shared.lock();
        w.daemon_stopping_events();
        w.docker_events.seq()
    };
    let end = Instant::now() + Duration::from_secs(2);
    while !shared.lock().docker_events.flushed(seq) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The frames are in the connection's buffer; give it a moment to write them.
    std::thread::sleep(Duration::from_millis(20));
}

/// `1.50` < `1.52`; an unversioned path is the daemon's own (current) version.
fn api_less_than(api: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = api.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if !api.is_empty() => (a, b) < (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(action: &str, name: &str, labels: &[(&str, &str)], t: u128) -> Message {
        let mut attributes: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        attributes.insert("name".into(), name.into());
        attributes.insert("image".into(), "kindest/node:v1.32.2".into());
        Message {
            typ: "container".into(),
            action: action.into(),
            id: format!("{name}-id"),
            attributes,
            time_nano: t,
        }
    }

    #[test]
    fn filters_match_as_the_daemons_do() {
        let node = msg("start", "bookstore-control-plane", &[("io.x-k8s.kind.cluster", "bookstore")], 1);
        let other = msg("start", "kiali-proxy", &[], 1);
        let f = Filter::parse(r#"{"label":{"io.x-k8s.kind.cluster=bookstore":true},"type":["container"]}"#)
            .unwrap();
        assert!(f.include(&node) && !f.include(&other));
        let f = Filter::parse(r#"{"label":{"io.x-k8s.kind.cluster":true}}"#).unwrap();
        assert!(f.include(&node) && !f.include(&other));
        let f = Filter::parse(r#"{"container":{"bookstore-control":true},"event":{"die":true}}"#).unwrap();
        assert!(!f.include(&node), "event filter");
        assert!(f.include(&msg("die", "bookstore-control-plane", &[], 1)), "name prefix");
        assert!(Filter::parse(r#"{"colour":{"red":true}}"#).is_err());
        assert!(Filter::parse("").unwrap().include(&other));
    }

    #[test]
    fn since_replays_the_ring_and_a_new_daemon_forgets_it() {
        let mut log = EventLog::default();
        for t in 1..=300u128 {
            log.publish(msg("start", "n", &[], t));
        }
        let all = Filter::default();
        assert!(log.buffered(None, None, &all).is_empty(), "no replay without since/until");
        let replay = log.buffered(Some(0), None, &all);
        assert_eq!(replay.len(), RING);
        assert_eq!(replay[0].time_nano, 300 - RING as u128 + 1);
        assert_eq!(log.buffered(Some(290), Some(295), &all).len(), 6);
        log.daemon_restarted();
        assert!(log.buffered(Some(0), None, &all).is_empty());
    }

    #[test]
    fn timestamps_and_wire_form() {
        assert_eq!(parse_timestamp("12").unwrap(), Some(12_000_000_000));
        assert_eq!(parse_timestamp("12.5").unwrap(), Some(12_500_000_000));
        assert_eq!(parse_timestamp("").unwrap(), None);
        assert!(parse_timestamp("x").is_err());
        let v = msg("die", "n", &[], 1_500_000_000).to_json(true);
        assert_eq!(v["status"], "die");
        assert_eq!(v["time"], 1);
        assert_eq!(v["Actor"]["Attributes"]["name"], "n");
        assert!(msg("die", "n", &[], 1).to_json(false).get("status").is_none());
        assert!(api_less_than("1.50", (1, 52)) && !api_less_than("1.52", (1, 52)));
    }
}
