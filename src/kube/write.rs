//! kubectl's changes: [`KubectlWrite`] (server-side apply, `rollout restart`, the warm
//! restarts). Only the steps hold one.

use std::time::Duration;

use crate::cluster::PodRestart;
use crate::error::Result;
use crate::exec::Cmd;
use crate::wait::{Attempt, Poll};

use super::{Kubectl, transient};

/// kubectl's changes: only the steps hold one.
///
/// The read half has none of these commands, and the read-only context carries no change
/// half: both of these fail to compile (the doc tests check that they do).
///
/// ```compile_fail,E0599
/// fn reader(kube: &bookstore::kube::Kubectl) {
///     let _ = kube.restart_list(&[]);
/// }
/// ```
///
/// ```compile_fail,E0609
/// fn reader(ctx: &bookstore::observe::Ctx) {
///     let _ = &ctx.write;
/// }
/// ```
#[derive(Clone, Debug)]
pub struct KubectlWrite {
    kube: Kubectl,
    /// `kubectl rollout restart -f -` started ahead of need ([`KubectlWrite::warm_restarts`]),
    /// shared by every clone: a restart takes one instead of starting kubectl.
    warm: Warm,
}

/// Children waiting for their objects on stdin; dropped unused, they are killed and reaped.
#[derive(Clone, Default)]
struct Warm(std::sync::Arc<std::sync::Mutex<Vec<crate::exec::Early>>>);

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|w| w.len()).unwrap_or(0);
        write!(f, "Warm({n})")
    }
}

/// The objects (kind, namespace, name) as the List `kubectl rollout restart -f -` reads on stdin.
fn restart_items(targets: &[(&str, &str, &str)]) -> String {
    let items: Vec<serde_json::Value> = targets
        .iter()
        .map(|(kind, ns, name)| {
            let kind = if *kind == "daemonset" { "DaemonSet" } else { "Deployment" };
            serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}})
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// The objects `kubectl rollout restart` reports as restarted (`deployment.apps/x restarted`).
pub fn restarted(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" restarted"))
        .filter_map(|obj| obj.rsplit_once('/').map(|(_, name)| name.to_string()))
        .collect()
}

impl KubectlWrite {
    /// The change half, on the read half's context.
    pub fn new(kube: &Kubectl) -> KubectlWrite {
        KubectlWrite { kube: kube.clone(), warm: Warm::default() }
    }

    /// `istioctl install` with the stack's flags (`bootstrap.istio.install`, said once for this
    /// and [`super::istioctl_manifest`]), on the cluster's context like every kubectl call,
    /// without asking.
    pub fn istioctl_install(&self, flags: &[String]) -> Cmd {
        Cmd::new("istioctl")
            .args(["install", "--context", self.kube.context()])
            .args(flags.iter().cloned())
            .arg("--skip-confirmation")
            .deadline(Duration::from_secs(900))
    }

    /// `rollout restart` of every target (kind, namespace, name), in as many namespaces as given,
    /// with one kubectl call: the objects are named on stdin, so kubectl takes each one's
    /// namespace from there. Transient apiserver failures are retried for the targets not yet
    /// restarted (kubectl reports each `… restarted`), as is kubectl's refusal of a second restart
    /// within one second (a rerun right after an interrupted run meets it).
    /// A warm kubectl ([`Kubectl::warm_restarts`]) makes the first attempt when there is one.
    pub fn restart_all(&self, targets: &[(&str, &str, &str)]) -> Result<()> {
        let mut left: Vec<(String, String, String)> =
            targets.iter().map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string())).collect();
        let what = format!("{} (the Kubernetes API kept failing)", self.restart_list(targets));
        let next = self.kube.api_hint();
        let mut early = self.take_warm(&self.restart_list(targets));
        Poll::new(&what, self.kube.retry_for, &next).run(|| {
            let refs: Vec<(&str, &str, &str)> =
                left.iter().map(|(k, ns, n)| (k.as_str(), ns.as_str(), n.as_str())).collect();
            let cmd = self.restart_list(&refs);
            let ran = match early.take() {
                Some(e) if e.cmd().same_argv(&cmd) => e.feed(restart_items(&refs)),
                _ => cmd.run_unchecked(),
            };
            let out = match ran {
                Ok(out) => out,
                Err(e) => return Attempt::Fail(e),
            };
            // Names are unique across the stack (checked when it loads).
            let done = restarted(&out.stdout);
            left.retain(|(_, _, n)| !done.contains(n));
            let too_soon = out.stderr.contains("already been triggered within the past second");
            if out.status.success() || left.is_empty() {
                Attempt::Done(())
            } else if transient(&out.stderr) || too_soon {
                Attempt::Retry(crate::exec::tail(&out.stderr, 1))
            } else {
                let status = out.status.code().map_or("killed by a signal".into(), |c| format!("exit {c}"));
                Attempt::Fail(self.kube.explain(cmd.failure(&status, &out.stderr)))
            }
        })
    }

    /// Keep `n` `kubectl rollout restart -f -` started, waiting for their objects on stdin
    /// (kubectl's start-up and kubeconfig done): the next restarts cost no process start-up.
    /// Started while what a restart waits for becomes Ready, never on the critical path.
    pub fn warm_restarts(&self, n: usize) {
        let Ok(mut warm) = self.warm.0.lock() else { return };
        while warm.len() < n {
            match self.kube.base().args(["rollout", "restart", "-f", "-"]).start_early() {
                Ok(early) => warm.push(early),
                Err(_) => return,
            }
        }
    }

    /// A warm kubectl that runs `cmd`'s argv, if one is waiting.
    fn take_warm(&self, cmd: &Cmd) -> Option<crate::exec::Early> {
        let mut warm = self.warm.0.lock().ok()?;
        let i = warm.iter().position(|e| e.cmd().same_argv(cmd))?;
        Some(warm.swap_remove(i))
    }

    /// Kill and reap the warm kubectls no restart took.
    pub fn cool(&self) {
        let unused = self.warm.0.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        drop(unused);
    }

    /// `kubectl rollout restart` of the objects (kind, namespace, name): one DaemonSet (ztunnel)
    /// as `daemonset/<name> -n <ns>`, the guide's line; deployments always as `-f -` with them as
    /// a List on stdin, one call for all of them in any namespaces, so the command the rollout
    /// runs is the one `--dry-run` shows whichever restarts fall due together.
    pub fn restart_list(&self, targets: &[(&str, &str, &str)]) -> Cmd {
        if let [(kind @ "daemonset", ns, name)] = targets {
            return self.kube.base().args(["rollout", "restart", &format!("{kind}/{name}"), "-n", ns]);
        }
        self.kube.base().args(["rollout", "restart", "-f", "-"]).stdin_text(restart_items(targets))
    }

    /// Restart one pod by deleting it: its controller recreates it ([`PodRestart`]: the only
    /// deletion outside `down`). `--wait=false`: the caller waits for the replacement (a pod
    /// that is not this one, by its UID), not for this one's graceful termination.
    pub fn delete_pod(&self, pod: &PodRestart) -> Cmd {
        self.kube
            .base()
            .args(["delete", "pod", pod.name(), "-n", pod.namespace(), "--wait=false"])
            .deadline(Duration::from_secs(30))
    }

    /// Server-side apply of manifests on stdin (never in argv): give it them with
    /// [`Cmd::stdin`], or say what they will be with [`Cmd::later`] (and [`Cmd::secret`] when
    /// they hold secrets).
    pub fn apply(&self) -> Cmd {
        self.kube
            .base()
            .args(["apply", "--server-side", "--field-manager=bookstore", "--force-conflicts", "-f", "-"])
            .deadline(Duration::from_secs(120))
    }

    /// Server-side apply of a stream of manifests on stdin, printing the objects as applied (a
    /// `List` of them, or the one object), so their generations are known.
    pub fn apply_objects(&self) -> Cmd {
        self.apply().args(["-o", "json"])
    }

    /// Server-side apply of a remote manifest (kubectl fetches it).
    pub fn apply_url(&self, url: &str) -> Cmd {
        self.kube
            .base()
            .args(["apply", "--server-side", "--field-manager=bookstore", "--force-conflicts", "-f", url])
            .deadline(Duration::from_secs(180))
    }
}
