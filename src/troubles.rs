//! A troubled pod, told the way a user can act on it: what Kubernetes says (its status, its last
//! log lines, its events) and the command that fixes it. Used by `doctor` and by the recovery's
//! waits when they fail fast. Reads through the typed `kubectl` wrapper; the advice is pure. The
//! judgement itself ([`pods::outlook`]) is `judge`'s.

use crate::cluster::{Event, Pod};
use crate::judge::pods::{self, Trouble, TroubleKind};
use crate::kube::Kubectl;
use crate::stack::Stack;

/// How many log lines and events a report shows.
pub const LOG_LINES: usize = 5;
pub const EVENTS: usize = 3;

/// The longest evidence line shown (log lines can be very long).
pub const LINE_MAX: usize = 400;

pub fn clip(line: &str) -> String {
    let line = line.trim_end();
    if line.chars().count() <= LINE_MAX {
        return line.to_string();
    }
    let cut: String = line.chars().take(LINE_MAX).collect();
    format!("{cut} …")
}

/// The evidence lines for one troubled pod: its state, its last log lines (crash loops only:
/// the other troubles never started a container), its latest events.
pub fn evidence(kube: &Kubectl, pod: &Pod, trouble: &Trouble, events: &[Event]) -> Vec<String> {
    let mut lines = Vec::new();
    let state = if trouble.message.is_empty() {
        trouble.reason.clone()
    } else {
        format!("{}: {}", trouble.reason, trouble.message)
    };
    lines.push(clip(&format!("status: {state} (restarts: {})", pod.restarts())));
    if trouble.kind == TroubleKind::CrashLoop {
        let cmd = kube.pod_logs(&pod.namespace, &pod.name, LOG_LINES);
        match cmd.run() {
            Ok(out) if !out.stdout.trim().is_empty() => {
                lines.push(format!("last log lines (`{cmd}`):"));
                lines.extend(out.stdout.lines().map(|l| format!("  {}", clip(l))));
            }
            Ok(_) => lines.push(format!("no log lines (`{cmd}`)")),
            Err(crate::error::Error::Command { stderr_tail, .. }) => lines.push(clip(&format!(
                "no logs: {}",
                stderr_tail.lines().last().unwrap_or("kubectl logs failed")
            ))),
            Err(e) => lines.push(clip(&format!("no logs: {e}"))),
        }
    }
    // The kubelet's `Error: ErrImagePull`-style events only repeat the waiting reason; the
    // event before them says why.
    let echo =
        |e: &&Event| e.message.strip_prefix("Error: ").is_some_and(|r| !r.contains(char::is_whitespace));
    let mine: Vec<&Event> = pods::events_of(events, pod).into_iter().filter(|e| !echo(e)).collect();
    for e in mine.iter().rev().take(EVENTS).rev() {
        let times = if e.count > 1 { format!(" (×{})", e.count) } else { String::new() };
        lines.push(clip(&format!("event {} {}{times}: {}", e.typ, e.reason, e.message)));
    }
    lines
}

/// The command that fixes a troubled pod, and a note on when it does not.
pub fn advice(stack: &Stack, pod: &Pod, owner: Option<&str>, trouble: &Trouble) -> (String, Option<String>) {
    let context = stack.cluster.context();
    let cluster = &stack.cluster.name;
    let ours =
        owner.is_some_and(|o| stack.workloads.iter().any(|w| w.name == o && w.namespace == pod.namespace));
    let restart = match owner {
        Some(_) if ours => "bookstore recover".to_string(),
        Some(o) => format!("kubectl --context {context} -n {} rollout restart deployment/{o}", pod.namespace),
        None => format!("kubectl --context {context} -n {} delete pod {}", pod.namespace, pod.name),
    };
    match trouble.kind {
        TroubleKind::CrashLoop => (
            restart,
            Some(format!(
                "restarts it once what it needs is Ready; if it crashes again, its log says why \
                 (`kubectl --context {context} -n {} logs {} --previous`)",
                pod.namespace, pod.name
            )),
        ),
        TroubleKind::ImagePull => {
            let image = trouble.image.clone().unwrap_or_else(|| "<image>".into());
            let built = stack.bootstrap.images.iter().find(|i| i.image == image);
            match built {
                Some(i) => (
                    format!("kind load docker-image {image} --name {cluster}"),
                    Some(format!(
                        "{image} is built here: if `docker image inspect {image}` fails, build it first \
                         (`docker build -t {image} \"${}\"`); with Docker's containerd image store, \
                         where that load fails with `content digest … not found` (kind#3795): \
                         `docker image save --platform \"$(docker version --format \
                         '{{{{.Server.Os}}}}/{{{{.Server.Arch}}}}')\" -o /tmp/image.tar {image} && kind load \
                         image-archive /tmp/image.tar --name {cluster}`",
                        i.context_env
                    )),
                ),
                None => (
                    format!("docker pull {image} && kind load docker-image {image} --name {cluster}"),
                    Some("check the image name and tag in its manifest if the pull fails".into()),
                ),
            }
        }
        TroubleKind::Sandbox => (
            "bookstore recover".to_string(),
            Some(
                "istio-cni could not hand the pod to ztunnel (`no ztunnel connection`): recovery \
                 restarts ztunnel first, then the workloads"
                    .into(),
            ),
        ),
        TroubleKind::Config => (
            format!("kubectl --context {context} -n {} describe pod {}", pod.namespace, pod.name),
            Some(
                "create the Secret or ConfigMap (or key) the message names; the kubelet retries by itself"
                    .into(),
            ),
        ),
        TroubleKind::Unschedulable => (
            "give Docker Desktop more memory/CPU (Settings → Resources), then `bookstore recover`"
                .to_string(),
            Some("the scheduler retries by itself once a node has room".into()),
        ),
        TroubleKind::Pending => (
            format!("kubectl --context {context} -n {} describe pod {}", pod.namespace, pod.name),
            Some("its events name what it waits for".into()),
        ),
    }
}

/// One line naming a trouble: `pod infra/redis-x (deployment redis) is in ImagePullBackOff`.
pub fn headline(pod: &Pod, owner: Option<&str>, trouble: &Trouble) -> String {
    let owner = owner.map(|o| format!(" (deployment {o})")).unwrap_or_default();
    let what = match trouble.kind {
        TroubleKind::CrashLoop => format!("keeps crashing ({}, {} restarts)", trouble.reason, pod.restarts()),
        TroubleKind::ImagePull => format!(
            "cannot pull its image{} ({})",
            trouble.image.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
            trouble.reason
        ),
        TroubleKind::Sandbox => "gets no sandbox (FailedCreatePodSandBox)".to_string(),
        TroubleKind::Config => format!("cannot create its container ({})", trouble.reason),
        TroubleKind::Unschedulable => "fits no node (Unschedulable)".to_string(),
        TroubleKind::Pending => {
            format!("has been Pending for over {}s ({})", pods::PENDING_GRACE, trouble.reason)
        }
    };
    format!("pod {}/{}{owner} {what}", pod.namespace, pod.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

    fn trouble(kind: TroubleKind, image: Option<&str>) -> Trouble {
        Trouble {
            kind,
            reason: "R".into(),
            message: "M".into(),
            container: None,
            image: image.map(String::from),
        }
    }

    #[test]
    fn advice_names_the_command_for_each_trouble() {
        let stack = load(Source::Embedded).unwrap();
        let pod = Pod { namespace: "infra".into(), name: "redis-x".into(), ..Pod::default() };
        let (fix, _) = advice(&stack, &pod, Some("redis"), &trouble(TroubleKind::CrashLoop, None));
        assert_eq!(fix, "bookstore recover");
        let (fix, _) = advice(&stack, &pod, Some("other"), &trouble(TroubleKind::CrashLoop, None));
        assert_eq!(fix, "kubectl --context kind-bookstore -n infra rollout restart deployment/other");
        let (fix, note) = advice(&stack, &pod, None, &trouble(TroubleKind::ImagePull, Some("redis:7")));
        assert_eq!(fix, "docker pull redis:7 && kind load docker-image redis:7 --name bookstore");
        assert!(note.is_some());
        let ours = stack.bootstrap.images[0].image.clone();
        let (fix, note) = advice(&stack, &pod, None, &trouble(TroubleKind::ImagePull, Some(&ours)));
        assert_eq!(fix, format!("kind load docker-image {ours} --name bookstore"));
        assert!(note.unwrap().contains("docker build"));
        let (fix, _) = advice(&stack, &pod, Some("redis"), &trouble(TroubleKind::Sandbox, None));
        assert_eq!(fix, "bookstore recover");
        assert_eq!(clip(&"x".repeat(LINE_MAX + 10)).chars().count(), LINE_MAX + 2);
    }
}
