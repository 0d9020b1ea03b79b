//! The one `kubectl get deployments --watch` of a rollout, its lines as messages, and how a
//! bootstrap preparation reports that it is done.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::Sender;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec::Stream;
use crate::kube::{Rollout, deployment_rollout};
use crate::plan::Prep;

use super::Ctx;

pub(super) enum Msg {
    Event {
        namespace: String,
        name: String,
        generation: i64,
        rollout: Rollout,
        selector: BTreeMap<String, String>,
    },
    WatchEnded,
    Restarted(Result<()>),
    /// The pods a [`crate::plan::Task::Replace`] deletes are deleted (workload index).
    Deleted(usize, Result<()>),
    Registered(usize, Result<String>),
    /// Bootstrap: the apply of these units returned the generations it left.
    Applied(Vec<usize>, Result<BTreeMap<(String, String), i64>>),
    /// Bootstrap: a gateway of this unit is Programmed (or its wait failed).
    Programmed(usize, Result<()>),
    /// Bootstrap: a preparation is done, with the line that says so.
    Prepared(Prep, Result<String>),
}

/// Starts a bootstrap preparation the moment it is due; it reports through [`Prepared`].
pub type StartPrep<'p> = dyn Fn(Prep, Prepared) + 'p;

/// How a preparation reports that it is done (from any thread). Dropped unsent (its thread
/// ended without a word), it reports an error, so no wait hangs on it.
pub struct Prepared {
    tx: Option<Sender<Msg>>,
    prep: Prep,
}

impl Prepared {
    /// Reporting to the executor listening on `tx`.
    pub(super) fn new(tx: Sender<Msg>, prep: Prep) -> Prepared {
        Prepared { tx: Some(tx), prep }
    }

    /// Done: the line to show (`Ok`), or the error that stops the bootstrap.
    pub fn send(mut self, result: Result<String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Prepared(self.prep, result));
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let error = if crate::wait::interrupted() {
                Error::Interrupted
            } else {
                let what = format!("{:?}", self.prep);
                Error::step(
                    format!("the bootstrap's {what} stopped without a result"),
                    "run `bookstore up` again",
                )
            };
            let _ = tx.send(Msg::Prepared(self.prep, Err(error)));
        }
    }
}

/// The one `kubectl get deployments --watch` of a wait. kubectl exits 0 when the API server
/// drops the stream (a Docker restart, an API that flaps): the watch is then started again, and
/// its initial listing resyncs every object, at most `MAX_WATCH_RESTARTS` times.
pub(super) struct Watch {
    stream: Stream,
    restarts: u32,
}

const MAX_WATCH_RESTARTS: u32 = 5;

impl Watch {
    pub(super) fn start(ctx: &Ctx, tx: &Sender<Msg>) -> Result<Watch> {
        Ok(Watch { stream: stream(ctx, tx)?, restarts: 0 })
    }

    pub(super) fn ended(&mut self, ctx: &Ctx, tx: &Sender<Msg>) -> Result<()> {
        self.restarts += 1;
        if self.restarts > MAX_WATCH_RESTARTS {
            return Err(Error::Command {
                line: self.stream.cmd().to_string(),
                status: "the watch kept ending".into(),
                stderr_tail: self.stream.stderr_tail(),
                next: "check that the Kubernetes API is stable, then run again".into(),
            });
        }
        self.stream = stream(ctx, tx)?;
        Ok(())
    }
}

/// Start the watch and a thread that turns its output into messages.
fn stream(ctx: &Ctx, tx: &Sender<Msg>) -> Result<Stream> {
    let mut stream = ctx.kube.watch_deployments().stream()?;
    let reader = stream.take_reader().ok_or_else(|| Error::step("watch has no output", "run again"))?;
    let tx = tx.clone();
    std::thread::spawn(move || pump(reader, &tx));
    Ok(stream)
}

fn pump(reader: impl BufRead, tx: &Sender<Msg>) {
    for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        let Ok(value) = value else { break };
        let obj = value.get("object").unwrap_or(&value);
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        let rollout = deployment_rollout(obj);
        let selector = obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        if tx.send(Msg::Event { namespace, name, generation, rollout, selector }).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::WatchEnded);
}
