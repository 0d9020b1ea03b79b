//! What is wrong with a pod, and what waiting can do about it: the trouble classifier (what
//! Kubernetes says: a crash loop, an image pull, a sandbox, a container config, scheduling) and
//! [`outlook`], the one judgement of whether waiting fixes it (fatal, retried by the kubelet, or
//! blocked on a change) that `doctor` and the fail-fast waits render, with what it is told about
//! the stack ([`around`]).

use crate::cluster::{Event, Pod};
use crate::stack::Stack;

/// What can be wrong with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TroubleKind {
    /// A container keeps exiting (`CrashLoopBackOff`).
    CrashLoop,
    /// The image cannot be pulled (`ImagePullBackOff`, `ErrImagePull`, …).
    ImagePull,
    /// The kubelet cannot create the pod's sandbox (`FailedCreatePodSandBox` events).
    Sandbox,
    /// A container cannot be created from its config (`CreateContainerConfigError`: a missing
    /// Secret or ConfigMap key).
    Config,
    /// No node can take the pod (`PodScheduled=False`).
    Unschedulable,
    /// Pending for longer than [`PENDING_GRACE`] for another reason.
    Pending,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trouble {
    pub kind: TroubleKind,
    /// What Kubernetes calls it (`CrashLoopBackOff`, `ImagePullBackOff`, `FailedCreatePodSandBox`,
    /// `Unschedulable`, …).
    pub reason: String,
    /// Its message (the waiting message, the latest event, the scheduler's words).
    pub message: String,
    /// The container concerned, when there is one.
    pub container: Option<String>,
    /// The image concerned (image pulls).
    pub image: Option<String>,
}

/// A pod Pending for longer than this is reported even without a known reason.
pub const PENDING_GRACE: u64 = 120;

/// A container not ready after this many restarts, its last run failed, is crash-looping even
/// in the moment it runs again between two back-offs (kubectl then shows `Running`).
pub const RESTARTS_CRASHING: u64 = 3;

/// The Warning events about this pod, oldest first.
pub fn events_of<'a>(events: &'a [Event], pod: &Pod) -> Vec<&'a Event> {
    let mut out: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.namespace == pod.namespace && e.object == pod.name && (e.kind == "Pod" || e.kind.is_empty())
        })
        .collect();
    out.sort_by_key(|e| e.last.unwrap_or(0));
    out
}

/// What is wrong with this pod, if anything. `now` is seconds since the epoch.
pub fn trouble(pod: &Pod, events: &[Event], now: u64) -> Option<Trouble> {
    let waiting = |reasons: &[&str]| {
        pod.containers.iter().find_map(|c| match &c.waiting {
            Some((r, m)) if reasons.contains(&r.as_str()) => Some((c, r.clone(), m.clone())),
            _ => None,
        })
    };
    if let Some((c, reason, message)) = waiting(&["CrashLoopBackOff"]) {
        return Some(Trouble {
            kind: TroubleKind::CrashLoop,
            reason,
            message,
            container: Some(c.name.clone()),
            image: None,
        });
    }
    let between_backoffs = pod.containers.iter().find(|c| {
        !c.ready
            && c.restarts >= RESTARTS_CRASHING
            && c.last_exit.as_ref().is_some_and(|(code, _)| *code != 0)
    });
    if let Some(c) = between_backoffs {
        let (code, why) = c.last_exit.clone().unwrap_or_default();
        let why = if why.is_empty() { "Error".to_string() } else { why };
        return Some(Trouble {
            kind: TroubleKind::CrashLoop,
            reason: format!("{why} (exit code {code})"),
            message: format!("started again after {} restarts, not ready", c.restarts),
            container: Some(c.name.clone()),
            image: None,
        });
    }
    if let Some((c, reason, message)) =
        waiting(&["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"])
    {
        return Some(Trouble {
            kind: TroubleKind::ImagePull,
            reason,
            message,
            container: Some(c.name.clone()),
            image: Some(c.image.clone()).filter(|i| !i.is_empty()),
        });
    }
    if let Some((c, reason, message)) = waiting(&["CreateContainerConfigError", "CreateContainerError"]) {
        return Some(Trouble {
            kind: TroubleKind::Config,
            reason,
            message,
            container: Some(c.name.clone()),
            image: None,
        });
    }
    if pod.phase == "Pending" || pod.phase.is_empty() {
        let sandbox = events_of(events, pod).into_iter().rev().find(|e| e.reason == "FailedCreatePodSandBox");
        if let Some(e) = sandbox {
            return Some(Trouble {
                kind: TroubleKind::Sandbox,
                reason: e.reason.clone(),
                message: e.message.clone(),
                container: None,
                image: None,
            });
        }
        if let Some(message) = &pod.unscheduled {
            return Some(Trouble {
                kind: TroubleKind::Unschedulable,
                reason: "Unschedulable".into(),
                message: message.clone(),
                container: None,
                image: None,
            });
        }
        let old = pod.created.is_some_and(|c| now.saturating_sub(c) > PENDING_GRACE);
        if pod.phase == "Pending" && old {
            let why = pod.containers.iter().find_map(|c| c.waiting.clone());
            let (reason, message) = why.unwrap_or_else(|| ("Pending".into(), String::new()));
            return Some(Trouble {
                kind: TroubleKind::Pending,
                reason,
                message,
                container: None,
                image: None,
            });
        }
    }
    None
}

/// What waiting can do about a trouble: the one judgement `doctor` and the fail-fast waits share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outlook {
    /// Waiting cannot fix it (why): the waits stop at once; `doctor` reports an error.
    Fatal(String),
    /// The kubelet retries it and it clears by itself (what is waited out): the waits wait and
    /// say so; `doctor` reports a warning.
    Retried(String),
    /// Retried too, but it clears only once something outside the pod changes (what it waits
    /// for): the waits wait until their deadline; `doctor` reports an error.
    Blocked(String),
}

/// What the judgement needs to know around a troubled pod.
#[derive(Clone, Debug, Default)]
pub struct Around<'a> {
    /// Since when ztunnel and istio-cni have both been Ready on the node, seconds since the
    /// epoch; `None` when they are not both Ready ([`super::mesh::mesh_ready_since`]).
    pub mesh_ready_since: Option<u64>,
    /// The images built on this machine (the stack's `bootstrap.images`): no registry has them.
    pub ours: &'a [String],
    /// Everything the pod's workload needs was Ready when it crashed (true when it needs nothing).
    pub needs_ready: bool,
    /// What it needs, for the message (`ecom-db`).
    pub needs: String,
}

/// What the registry answered, in the kubelet's words (containerd's errors: `…: not found`,
/// `pull access denied, repository does not exist or may require authorization: …`), that no
/// retry changes.
const PULL_FATAL: &[&str] = &[
    "not found",
    "manifest unknown",
    "pull access denied",
    "insufficient_scope",
    "unauthorized",
    "invalid reference format",
];

/// Pull errors the next attempt may not have, and how to say them.
const PULL_RETRIED: &[(&str, &str)] = &[
    ("toomanyrequests", "the registry's pull rate limit (toomanyrequests)"),
    ("429 too many requests", "the registry's pull rate limit (429 Too Many Requests)"),
    ("tls handshake timeout", "a TLS handshake timeout"),
    ("i/o timeout", "a network i/o timeout"),
    ("context deadline exceeded", "a timeout"),
    ("connection reset", "a connection reset"),
    ("connection refused", "a refused connection"),
    ("no such host", "a failed DNS lookup"),
    ("registry is unavailable", "the registry being unavailable"),
    ("503 service unavailable", "the registry answering 503"),
    ("502 bad gateway", "the registry answering 502"),
    ("500 internal server error", "the registry answering 500"),
];

/// `docker.io/library/redis:7` and `docker.io/bookstore/x:1` as people write them.
fn short_image(image: &str) -> &str {
    image.strip_prefix("docker.io/library/").or_else(|| image.strip_prefix("docker.io/")).unwrap_or(image)
}

/// The error behind an image-pull trouble: the waiting message when it carries one
/// (`ErrImagePull`; newer kubelets write `Back-off pulling image "x": ErrImagePull: …`), else the
/// kubelet's latest `Failed to pull image "<image>": …` event (kubelet `images/image_manager.go`).
pub fn pull_error(pod: &Pod, trouble: &Trouble, events: &[Event]) -> Option<String> {
    let message = trouble.message.trim();
    let carried = match trouble.reason.as_str() {
        "ErrImagePull" => Some(message),
        _ => {
            message.strip_prefix("Back-off pulling image ").and_then(|m| m.split_once("\": ")).map(|(_, e)| e)
        }
    };
    if let Some(e) = carried.filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    let image = trouble.image.as_deref().unwrap_or("");
    let prefix = format!("Failed to pull image \"{image}\": ");
    events_of(events, pod).into_iter().rev().find_map(|e| e.message.strip_prefix(&prefix)).map(String::from)
}

/// Whether waiting can fix this trouble, and what to say about it. Pure: everything it looks at
/// is passed in.
pub fn outlook(pod: &Pod, trouble: &Trouble, events: &[Event], around: &Around) -> Outlook {
    match trouble.kind {
        TroubleKind::CrashLoop if around.needs_ready => {
            Outlook::Fatal("it crashes with everything it needs Ready".into())
        }
        TroubleKind::CrashLoop => Outlook::Retried(format!(
            "it crashed while what it needs ({}) was not Ready; the kubelet's back-off starts it again",
            around.needs
        )),
        TroubleKind::ImagePull => {
            let image = trouble.image.as_deref().unwrap_or("");
            if around.ours.iter().any(|o| short_image(o) == short_image(image)) {
                return Outlook::Fatal(format!(
                    "{image} is built on this machine and is not in the node (no registry has it)"
                ));
            }
            match trouble.reason.as_str() {
                "ErrImageNeverPull" => {
                    return Outlook::Fatal("it is not in the node and its imagePullPolicy is Never".into());
                }
                "InvalidImageName" => return Outlook::Fatal("the image name is invalid".into()),
                _ => {}
            }
            let Some(error) = pull_error(pod, trouble, events) else {
                return Outlook::Retried(
                    "the pull error is not reported yet; the kubelet retries the pull".into(),
                );
            };
            let lower = error.to_lowercase();
            if let Some(marker) = PULL_FATAL.iter().find(|m| lower.contains(*m)) {
                return Outlook::Fatal(format!("the registry answered `{marker}`: {error}"));
            }
            let what = PULL_RETRIED
                .iter()
                .find(|(m, _)| lower.contains(m))
                .map(|(_, what)| what.to_string())
                .unwrap_or_else(|| format!("`{error}`"));
            Outlook::Retried(format!("{what}; the kubelet retries the pull (back-off up to 5 minutes)"))
        }
        TroubleKind::Sandbox => {
            let Some(ready) = around.mesh_ready_since else {
                return Outlook::Retried(
                    "ztunnel or istio-cni is not Ready (istio-cni answers `no ztunnel connection` until \
                     ztunnel is connected); the kubelet retries the sandbox"
                        .into(),
                );
            };
            let last = events_of(events, pod)
                .into_iter()
                .filter(|e| e.reason == "FailedCreatePodSandBox")
                .filter_map(|e| e.last)
                .max();
            match last {
                Some(t) if t > ready => {
                    Outlook::Fatal("the sandbox still fails with ztunnel and istio-cni Ready".into())
                }
                _ => Outlook::Retried(
                    "it failed before ztunnel and istio-cni were both Ready; the kubelet retries the sandbox"
                        .into(),
                ),
            }
        }
        TroubleKind::Config => {
            Outlook::Blocked("the kubelet retries once the Secret or ConfigMap key exists".into())
        }
        TroubleKind::Unschedulable => Outlook::Blocked("the scheduler retries once a node has room".into()),
        TroubleKind::Pending => Outlook::Blocked("its events name what it waits for".into()),
    }
}

/// What the judgement needs around a pod of the stack: since when ztunnel and istio-cni are both
/// Ready (read from `pods`, every pod of the cluster), our images, and what its workload needs.
/// `needs_ready` is the caller's: the waits know when a dependency became Ready, `doctor` only
/// whether it is now.
pub fn around<'a>(
    stack: &Stack,
    pods: &[Pod],
    ours: &'a [String],
    workload: Option<&str>,
    needs_ready: bool,
) -> Around<'a> {
    let needs = workload.and_then(|w| stack.workload(w)).map(|w| w.needs.join(", ")).unwrap_or_default();
    Around { mesh_ready_since: super::mesh::mesh_ready_since(stack, pods), ours, needs_ready, needs }
}

/// The images built on this machine.
pub fn ours(stack: &Stack) -> Vec<String> {
    stack.bootstrap.images.iter().map(|i| i.image.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Container;

    fn pod_waiting(reason: &str) -> Pod {
        Pod {
            namespace: "infra".into(),
            name: "p".into(),
            phase: "Running".into(),
            containers: vec![Container {
                name: "c".into(),
                image: "img:1".into(),
                waiting: Some((reason.into(), format!("{reason} message"))),
                ..Container::default()
            }],
            ..Pod::default()
        }
    }

    #[test]
    fn troubles_are_classified_by_what_kubernetes_says() {
        let now = 1_000_000;
        let t = |pod: &Pod, events: &[Event]| trouble(pod, events, now).map(|t| (t.kind, t.reason));
        assert_eq!(
            t(&pod_waiting("CrashLoopBackOff"), &[]),
            Some((TroubleKind::CrashLoop, "CrashLoopBackOff".into()))
        );
        let pull = trouble(&pod_waiting("ImagePullBackOff"), &[], now).unwrap();
        assert_eq!((pull.kind, pull.image.as_deref()), (TroubleKind::ImagePull, Some("img:1")));
        assert_eq!(t(&pod_waiting("ErrImagePull"), &[]).map(|x| x.0), Some(TroubleKind::ImagePull));
        assert_eq!(
            t(&pod_waiting("CreateContainerConfigError"), &[]).map(|x| x.0),
            Some(TroubleKind::Config)
        );
        assert_eq!(t(&pod_waiting("ContainerCreating"), &[]), None, "still starting is not a trouble");
        let mut running_again = pod_waiting("x");
        running_again.containers[0].waiting = None;
        running_again.containers[0].restarts = RESTARTS_CRASHING;
        running_again.containers[0].last_exit = Some((1, "Error".into()));
        assert_eq!(t(&running_again, &[]), Some((TroubleKind::CrashLoop, "Error (exit code 1)".into())));
        running_again.containers[0].last_exit = Some((0, "Completed".into()));
        assert_eq!(t(&running_again, &[]), None, "a clean exit is not a crash");

        let mut creating = pod_waiting("ContainerCreating");
        creating.phase = "Pending".into();
        creating.created = Some(now - 10);
        let sandbox = Event {
            namespace: "infra".into(),
            kind: "Pod".into(),
            object: "p".into(),
            typ: "Warning".into(),
            reason: "FailedCreatePodSandBox".into(),
            message: "Failed to create pod sandbox: … no ztunnel connection".into(),
            count: 3,
            last: Some(now - 1),
            source: "kubelet".into(),
        };
        let other_pod = Event { object: "q".into(), ..sandbox.clone() };
        assert_eq!(t(&creating, &[other_pod]), None);
        let found = trouble(&creating, &[sandbox], now).unwrap();
        assert_eq!(found.kind, TroubleKind::Sandbox);
        assert!(found.message.contains("no ztunnel connection"));

        let mut unscheduled = Pod { phase: "Pending".into(), created: Some(now), ..Pod::default() };
        unscheduled.unscheduled = Some("0/1 nodes are available: 1 Insufficient memory.".into());
        assert_eq!(t(&unscheduled, &[]).map(|x| x.0), Some(TroubleKind::Unschedulable));

        creating.created = Some(now - PENDING_GRACE - 1);
        assert_eq!(t(&creating, &[]), Some((TroubleKind::Pending, "ContainerCreating".into())));
        let healthy = Pod { phase: "Running".into(), ..pod_waiting("x") };
        let mut healthy = healthy;
        healthy.containers[0].waiting = None;
        assert_eq!(t(&healthy, &[]), None);
    }

    fn event(pod: &str, reason: &str, message: &str, last: u64) -> Event {
        Event {
            namespace: "infra".into(),
            kind: "Pod".into(),
            object: pod.into(),
            typ: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
            count: 1,
            last: Some(last),
            source: "kubelet".into(),
        }
    }

    fn is_fatal(o: &Outlook) -> bool {
        matches!(o, Outlook::Fatal(_))
    }

    /// The kubelet's words for each pull failure (kubelet `images/image_manager.go` records
    /// `Failed to pull image "<image>": <err>`; the errors are containerd's, `core/remotes/docker`).
    #[test]
    fn image_pulls_fail_fast_only_on_what_no_retry_changes() {
        let now = 1_000_000;
        let mut pod = pod_waiting("ImagePullBackOff");
        pod.phase = "Pending".into();
        pod.containers[0].image = "postgres:17".into();
        pod.containers[0].waiting =
            Some(("ImagePullBackOff".into(), "Back-off pulling image \"postgres:17\"".into()));
        let ours = ["bookstore/ui-service:dev".to_string()];
        let around = Around { ours: &ours, needs_ready: true, ..Around::default() };
        let judge = |pod: &Pod, error: &str| {
            let events = [
                event(
                    "p",
                    "Failed",
                    &format!("Failed to pull image \"{}\": {error}", pod.containers[0].image),
                    now - 5,
                ),
                event("p", "Failed", "Error: ImagePullBackOff", now - 1),
            ];
            let t = trouble(pod, &events, now).expect("a pull trouble");
            outlook(pod, &t, &events, &around)
        };
        let resolve = "rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/postgres:17\": failed to resolve reference \"docker.io/library/postgres:17\": ";
        for fatal in [
            "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/postgres:17\": failed to resolve reference \"docker.io/library/postgres:17\": docker.io/library/postgres:17: not found",
            &format!(
                "{resolve}pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
            ),
            "Error response from daemon: manifest for postgres:17 not found: manifest unknown: manifest unknown",
        ] {
            assert!(is_fatal(&judge(&pod, fatal)), "{fatal}");
        }
        for (retried, says) in [
            (format!("{resolve}unexpected status from HEAD request to https://registry-1.docker.io/v2/library/postgres/manifests/17: 429 Too Many Requests"), "rate limit"),
            ("failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/postgres/blobs/sha256:ab: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.".into(), "toomanyrequests"),
            (format!("{resolve}failed to do request: Head \"https://registry-1.docker.io/v2/library/postgres/manifests/17\": net/http: TLS handshake timeout"), "TLS handshake timeout"),
            (format!("{resolve}failed to do request: Head \"https://registry-1.docker.io/v2/library/postgres/manifests/17\": dial tcp 54.236.113.205:443: i/o timeout"), "i/o timeout"),
            (format!("{resolve}something new"), "something new"),
        ] {
            match judge(&pod, &retried) {
                Outlook::Retried(what) => assert!(what.contains(says), "{what}"),
                other => panic!("{retried}: {other:?}"),
            }
        }
        // No event yet: the kubelet has not said why; waited.
        let t = trouble(&pod, &[], now).unwrap();
        assert!(matches!(outlook(&pod, &t, &[], &around), Outlook::Retried(_)));
        // Newer kubelets carry the error in the back-off message itself.
        let mut carried = pod.clone();
        carried.containers[0].waiting = Some((
            "ImagePullBackOff".into(),
            "Back-off pulling image \"postgres:17\": ErrImagePull: docker.io/library/postgres:17: not found"
                .into(),
        ));
        let t = trouble(&carried, &[], now).unwrap();
        assert!(is_fatal(&outlook(&carried, &t, &[], &around)));
        // Our own image, not loaded into the node: no registry has it, whatever the pull says.
        let mut ours_pod = pod.clone();
        ours_pod.containers[0].image = "bookstore/ui-service:dev".into();
        assert!(is_fatal(&judge(&ours_pod, "dial tcp 54.236.113.205:443: i/o timeout")));
        let mut never = pod_waiting("ErrImageNeverPull");
        never.containers[0].pull_policy = "Never".into();
        let t = trouble(&never, &[], now).unwrap();
        assert!(is_fatal(&outlook(&never, &t, &[], &around)));
    }

    #[test]
    fn a_sandbox_failure_is_fatal_only_once_it_fails_with_ztunnel_and_istio_cni_ready() {
        let now = 1_000_000;
        let ready = |name: &str, since: u64| Pod {
            namespace: "istio-system".into(),
            name: name.into(),
            phase: "Running".into(),
            ready_since: Some(since),
            owner: name.rsplit_once('-').map(|(ds, _)| ("DaemonSet".to_string(), ds.to_string())),
            containers: vec![Container { ready: true, ..Container::default() }],
            ..Pod::default()
        };
        let mesh = |pods: &[Pod]| {
            super::super::mesh::ready_since(pods, "istio-system", &["ztunnel", "istio-cni-node"])
        };
        let (zt, cni) = (ready("ztunnel-x7k2p", now - 30), ready("istio-cni-node-q9f4d", now - 100));
        assert_eq!(mesh(&[zt.clone(), cni.clone()]), Some(now - 30));
        let mut reconnecting = zt.clone();
        reconnecting.containers[0].ready = false;
        assert_eq!(mesh(&[reconnecting, cni.clone()]), None, "ztunnel not Ready");
        assert_eq!(mesh(std::slice::from_ref(&zt)), None, "no istio-cni pod");
        assert_eq!(mesh(&[ready("ztunnel-extra-x7k2p", now), cni.clone()]), None, "another DaemonSet's pod");
        let mut going = zt.clone();
        going.terminating = true;
        assert_eq!(mesh(&[going, cni.clone()]), None, "a ztunnel pod going away is not the mesh");

        let mut pod = pod_waiting("ContainerCreating");
        pod.phase = "Pending".into();
        let sandbox = |last: u64| {
            [event(
                "p",
                "FailedCreatePodSandBox",
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"3f2a\": plugin type=\"istio-cni\" name=\"istio-cni\" failed (add): unable to push CNI event (status code 500): partial add error: no ztunnel connection",
                last,
            )]
        };
        let judge = |mesh_ready_since: Option<u64>, last: u64| {
            let events = sandbox(last);
            let t = trouble(&pod, &events, now).unwrap();
            outlook(&pod, &t, &events, &Around { mesh_ready_since, ..Around::default() })
        };
        assert!(matches!(judge(None, now - 1), Outlook::Retried(w) if w.contains("not Ready")));
        assert!(
            matches!(judge(Some(now - 30), now - 31), Outlook::Retried(_)),
            "failed before the mesh was Ready"
        );
        assert!(matches!(judge(Some(now - 30), now - 30), Outlook::Retried(_)), "the same second");
        assert!(is_fatal(&judge(Some(now - 30), now - 29)), "failed again with the mesh Ready");
    }

    #[test]
    fn a_crash_loop_is_fatal_only_with_what_it_needs_ready() {
        let pod = pod_waiting("CrashLoopBackOff");
        let t = trouble(&pod, &[], 0).unwrap();
        let around = |needs_ready| Around { needs_ready, needs: "ecom-db".into(), ..Around::default() };
        assert!(is_fatal(&outlook(&pod, &t, &[], &around(true))));
        assert!(
            matches!(outlook(&pod, &t, &[], &around(false)), Outlook::Retried(w) if w.contains("ecom-db"))
        );
        let config = pod_waiting("CreateContainerConfigError");
        let t = trouble(&config, &[], 0).unwrap();
        assert!(matches!(outlook(&config, &t, &[], &around(true)), Outlook::Blocked(_)));
    }
}
