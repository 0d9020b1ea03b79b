//! The read-only view of the cluster: what every command reads before it judges or changes
//! anything. `doctor`, `status`, `smoke`, the fail-fast waits and the planner read through here;
//! nothing in this room changes anything.

pub mod evidence;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::kube::Kubectl;
use crate::secret::Secret;
use crate::stack::Stack;
use crate::ui::Ui;

/// What every step can reach.
pub struct Ctx<'a> {
    pub stack: &'a Stack,
    pub kube: Kubectl,
    pub ui: &'a Ui,
    /// `--tolerate`: readiness waits sit out their deadlines instead of failing fast on a pod in
    /// CrashLoopBackOff, ImagePullBackOff or with a FailedCreatePodSandBox event.
    pub tolerate: bool,
    /// The connector credentials, read from the secret once per run.
    secrets: OnceLock<BTreeMap<String, Secret>>,
    /// Every deployment's generation, listed once per run (before the first change).
    deployments: OnceLock<BTreeMap<(String, String), i64>>,
}

impl<'a> Ctx<'a> {
    pub fn new(stack: &'a Stack, ui: &'a Ui) -> Ctx<'a> {
        let kube = Kubectl::new(stack.cluster.context(), stack.api_timeout);
        Ctx { stack, kube, ui, tolerate: false, secrets: OnceLock::new(), deployments: OnceLock::new() }
    }

    /// The connector credentials (read once, in-process, never printed).
    /// (namespace, name) → generation of every deployment, from one `kubectl get deployments -A`
    /// per run. Read before the first change, so these are the generations before any restart.
    pub fn deployments(&self) -> Result<&BTreeMap<(String, String), i64>> {
        if let Some(d) = self.deployments.get() {
            return Ok(d);
        }
        let cmd = self.kube.list_deployments();
        let listing = self.kube.run(&cmd)?;
        let read = crate::steps::rollout::generations(&listing.stdout)
            .map_err(|p| Error::step(format!("`{cmd}`: {p}"), "run it by hand"))?;
        Ok(self.deployments.get_or_init(|| read))
    }

    pub fn credentials(&self) -> Result<&BTreeMap<String, Secret>> {
        if let Some(s) = self.secrets.get() {
            return Ok(s);
        }
        let connect = &self.stack.connect;
        let keys: Vec<&str> =
            connect.connectors.iter().flat_map(|c| [c.user_key.as_str(), c.password_key.as_str()]).collect();
        let read = self.kube.read_secret(&connect.secret_namespace, &connect.secret_name, &keys)?;
        Ok(self.secrets.get_or_init(|| read))
    }
}

/// Seconds since the epoch, by this machine's clock.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
