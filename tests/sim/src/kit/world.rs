//! A world to run `bookstore` in: a simulator started and waited on, PATH wrappers that record
//! every argv of the real `kubectl`, `docker` and (where installed) `podman`, a mark from which the audit log and the argv
//! are read, and the checks every run in it must pass (nothing deleted, the hostile password
//! nowhere but in Connect, kubectl always on the kind context).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BOUND, HOSTILE, Run, SCALE, eventually, leaks_in};
use crate::audit::{AuditEntry, Source};
use crate::sim::{Sim, SimOptions};

/// The kube context of the stack's cluster.
pub const CONTEXT: &str = "kind-bookstore";

/// The kube context of a shared cluster's world ([`World::shared`]): not kind's.
pub const SHARED_CONTEXT: &str = "dev-east";

pub struct World {
    sim: Sim,
    wrap: PathBuf,
    mark: Cell<usize>,
    runs: RefCell<Vec<Run>>,
    /// The connector secret the world was started with (what the databases accept).
    secret: BTreeMap<String, String>,
    /// The kube context every kubectl of a run must name: [`CONTEXT`], or a shared cluster's.
    context: String,
}

impl Deref for World {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

/// What the checks found: the problems, and the counts the fault matrix prints.
#[derive(Debug, Default)]
pub struct Checks {
    pub problems: Vec<String>,
    pub leaks: u32,
    pub deletes: u32,
    pub argv: u32,
    pub runs: u32,
}

impl World {
    /// The worlds' options: [`SCALE`], the hostile password as both databases' password.
    pub fn options() -> SimOptions {
        let mut secret = SimOptions::default().secret;
        secret.insert("ECOM_DB_PASSWORD".into(), HOSTILE.into());
        secret.insert("INVENTORY_DB_PASSWORD".into(), HOSTILE.into());
        SimOptions { time_scale: SCALE, secret, ..SimOptions::default() }
    }

    /// A healthy stack, bootstrapped an hour ago.
    pub fn healthy() -> World {
        World::start(World::options())
    }

    /// A healthy stack on a team's shared development cluster (`SimOptions::shared_context`:
    /// [`SHARED_CONTEXT`], no Docker, no kind), its stack file allowing that context.
    pub fn shared() -> World {
        let world =
            World::start(SimOptions { shared_context: Some(SHARED_CONTEXT.into()), ..World::options() });
        world.rewrite("stack.yaml", "allow_contexts: []", &format!("allow_contexts: [{SHARED_CONTEXT}]"));
        world
    }

    /// The kube context of this world's cluster.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The usual starting point: Docker has just restarted (stale mesh, connectors lost), the
    /// pods still starting.
    pub fn broken() -> World {
        let world = World::healthy();
        world.sim.docker_restart();
        world
    }

    /// A world with these options, waited on until every pod is Ready (when it has a cluster).
    #[track_caller]
    pub fn start(opts: SimOptions) -> World {
        let waits = !opts.no_cluster;
        let secret = opts.secret.clone();
        let context = opts.shared_context.clone().unwrap_or_else(|| CONTEXT.to_string());
        let sim = Sim::start(opts).expect("simulator starts");
        if waits {
            sim.wait_healthy(BOUND).expect("the simulated stack starts healthy");
        }
        for sub in ["tmp", "wrap"] {
            std::fs::create_dir_all(sim.dir().join(sub)).expect("world folders");
        }
        let wrap = sim.dir().join("wrap");
        // podman too where it is installed: the real-podman test runs bookstore on it.
        let podman = which::which("podman").is_ok().then_some("podman");
        for tool in ["kubectl", "docker"].into_iter().chain(podman) {
            // The simulator's own docker CLI (another release's recorded behaviour, `docker_cli.rs`)
            // when it has one, else the installed client.
            let shim = sim.dir().join("bin").join(tool);
            let real =
                if shim.is_file() { shim } else { which::which(tool).expect("the real client is installed") };
            let script = format!(
                "#!/bin/sh\n\
                 # Records argv (fields \\037, records \\036) in one write, then becomes the real client.\n\
                 rec=$(printf '%s\\037' {tool} \"$@\"; printf '\\036')\n\
                 printf '%s' \"$rec\" >> '{log}'\n\
                 exec '{real}' \"$@\"\n",
                log = wrap.join("argv.log").display(),
                real = real.display(),
            );
            let path = wrap.join(tool);
            std::fs::write(&path, script).expect("a wrapper");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("executable");
        }
        let mark = Cell::new(sim.audit().len());
        World { sim, wrap, mark, runs: RefCell::new(Vec::new()), secret, context }
    }

    /// The stack copy with deadlines short enough for a fast failure and long enough for a
    /// recovery at [`SCALE`] (every `timeout` 20 s, the API's 15 s, no settle).
    pub fn short_deadlines(self) -> World {
        self.edit("stack.yaml", |stack| {
            let mut s = stack;
            for long in ["90s", "120s", "180s", "300s", "600s", "60s"] {
                s = s.replace(&format!("timeout: {long}"), "timeout: 20s");
            }
            s = s.replace("settle: 1s", "settle: 0s");
            s.replace("cluster: kind/cluster.yaml\n", "cluster: kind/cluster.yaml\napi_timeout: 15s\n")
        });
        self
    }

    /// The simulator itself.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The folder of the recording wrappers (first on a run's PATH).
    pub fn wrappers(&self) -> &Path {
        &self.wrap
    }

    /// Everything before this point is the test's setup (its own kubectl calls included): the
    /// audit log and the argv are read from here on.
    pub fn mark(&self) {
        self.mark.set(self.sim.audit().len());
        let _ = std::fs::remove_file(self.wrap.join("argv.log"));
    }

    pub fn infra(&self, rel: &str) -> PathBuf {
        self.sim.dir().join("infra").join(rel)
    }

    /// Rewrite a file of the stack copy the binary reads (`<sim>/infra/...`); the edit must
    /// change it.
    #[track_caller]
    pub fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let path = self.infra(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let changed = f(text.clone());
        assert_ne!(changed, text, "the edit of {rel} changed nothing");
        std::fs::write(path, changed).expect("write stack file");
    }

    /// Replace the first `from` in a file of the stack copy with `to`.
    #[track_caller]
    pub fn rewrite(&self, rel: &str, from: &str, to: &str) {
        self.edit(rel, |text| {
            assert!(text.contains(from), "{rel} has no {from:?}");
            text.replacen(from, to, 1)
        });
    }

    /// Give one workload (the line that starts with `line_start`: ztunnel, Connect …) a
    /// deadline, in a [`World::short_deadlines`] stack.
    pub fn deadline(&self, line_start: &str, timeout: &str) {
        self.edit("stack.yaml", |s| {
            s.lines()
                .map(|l| {
                    if l.trim_start().starts_with(line_start) {
                        l.replace("timeout: 20s", &format!("timeout: {timeout}"))
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        });
    }

    /// The test's own kubectl (setup or a witness), straight to the real client on the kind
    /// context; not recorded.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.client("kubectl", args)
    }

    /// The test's own docker, straight to the real client; not recorded.
    pub fn docker(&self, args: &[&str]) -> Run {
        self.client("docker", args)
    }

    /// The test's own objects (YAML or JSON), through `kubectl apply -f -` (the simulator takes
    /// JSON bodies, which `kubectl create` does not send).
    pub fn apply(&self, objects: &str) -> Run {
        let mut cmd = self.sim.command("kubectl");
        cmd.args(["--context", &self.context, "apply", "-f", "-"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl starts");
        let mut stdin = child.stdin.take().expect("piped");
        std::io::Write::write_all(&mut stdin, objects.as_bytes()).expect("objects written");
        drop(stdin);
        Run::from(child.wait_with_output().expect("kubectl runs"))
    }

    /// A client in this world's environment (kubectl on the kind context; docker; the `kind`
    /// and `istioctl` stand-ins): the test's own, not recorded.
    pub fn client(&self, program: &str, args: &[&str]) -> Run {
        let mut cmd = self.sim.command(program);
        if program == "kubectl" {
            cmd.args(["--context", &self.context]);
        }
        cmd.args(args).stdin(std::process::Stdio::null());
        Run::from(cmd.output().unwrap_or_else(|e| panic!("{program} runs: {e}")))
    }

    /// GET through a kind host port with a Host header, as a browser on `myecom.net` would:
    /// (status, body), or None without an answer.
    pub fn get(&self, container_port: u16, host: Option<&str>, path: &str) -> Option<(u16, String)> {
        let addr = format!("127.0.0.1:{}", self.sim.host_port(container_port));
        let a = crate::client::request(&addr, "GET", path, host, "", Duration::from_secs(3)).ok()?;
        Some((a.status, a.body))
    }

    /// A Docker restart, then every pod Ready again and Connect answering (with no connectors,
    /// since Kafka has no volume): what a user finds after restarting Docker Desktop.
    pub fn restart_docker(&self) {
        self.sim.docker_restart();
        self.sim.wait_healthy(BOUND).expect("pods Ready again");
        self.until("Connect to answer after the restart", || {
            self.get(32300, None, "/connectors").is_some_and(|(s, _)| s == 200)
        });
    }

    /// Wait until `pred` holds (bounded by [`BOUND`]; a wait, not an assertion on time).
    #[track_caller]
    pub fn until(&self, what: &str, mut pred: impl FnMut() -> bool) {
        eventually(BOUND, what, || pred().then_some(()))
    }

    /// The world's audit log since the mark.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.sim.audit().split_off(self.mark.get())
    }

    /// Kube PATCHes since the mark (every restart is one), their paths.
    pub fn patches(&self) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| e.source == Source::Kube && e.verb == "PATCH")
            .map(|e| e.path_only().to_string())
            .collect()
    }

    /// The deployments and daemonsets restarted since the mark, by name, with their counts: a
    /// `rollout restart` (a PATCH) each, and each of their pods deleted (a restart of that pod:
    /// its controller recreates it; ztunnel's, node by node).
    pub fn restarts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.patches() {
            if let Some((_, name)) = p.rsplit_once("/deployments/").or_else(|| p.rsplit_once("/daemonsets/"))
            {
                *out.entry(name.to_string()).or_insert(0) += 1;
            }
        }
        for (_, owner) in self.pods_deleted() {
            let workload = match owner.split_once('/') {
                Some(("DaemonSet" | "StatefulSet", name)) => name.to_string(),
                // A ReplicaSet `<deployment>-<pod-template-hash>`.
                Some((_, rs)) => rs.rsplit_once('-').map(|(d, _)| d).unwrap_or(rs).to_string(),
                None => owner.clone(),
            };
            *out.entry(workload).or_insert(0) += 1;
        }
        out
    }

    /// The pods deleted since the mark (`namespace/name`) and what controlled each (`Kind/name`,
    /// `none`), as the API had it.
    pub fn pods_deleted(&self) -> Vec<(String, String)> {
        self.audit()
            .iter()
            .filter(|e| e.source == Source::Controller && e.verb == "pod-delete")
            .map(|e| (e.path.clone(), e.detail.clone()))
            .collect()
    }

    /// Requests of any kind the world served since the mark (kube, docker, Connect, stand-ins).
    pub fn touched(&self) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| matches!(e.source, Source::Kube | Source::Docker | Source::Connect | Source::Standin))
            .map(|e| format!("{:?} {} {}", e.source, e.verb, e.path))
            .collect()
    }

    /// What changed the world since the mark: requests other than GET, `kind create|load|…`,
    /// `istioctl install`.
    pub fn writes(&self) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| e.is_write())
            .map(|e| format!("{:?} {} {}", e.source, e.verb, e.path))
            .collect()
    }

    /// Every argv a run gave the real kubectl and docker since the mark, one Vec per child.
    pub fn argv(&self) -> Vec<Vec<String>> {
        read_argv_log(&self.wrap.join("argv.log"))
    }

    /// Processes still running with this world's kubeconfig: children (or grandchildren) of
    /// `bookstore` that outlived it.
    pub fn live_clients(&self) -> Vec<String> {
        let needle = format!("KUBECONFIG={}", self.sim.kubeconfig_path().display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!("pid {name}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
            }
        }
        found
    }

    /// The connector configs a recovery must leave: each file's config, its name, and the
    /// secret's credentials; nothing else.
    pub fn expected_connectors(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for c in &crate::config::Infra::load(&self.sim.dir().join("infra"))
            .expect("the stack copy")
            .stack
            .connect
            .connectors
        {
            let mut config = c.config.clone();
            config.insert("name".into(), c.name.clone());
            for (field, key) in [("database.user", &c.user_key), ("database.password", &c.password_key)] {
                config.insert(field.into(), self.secret[key].clone());
            }
            out.insert(c.name.clone(), config);
        }
        out
    }

    /// The stack is back: every pod Ready and registered with the mesh, both connectors stored
    /// exactly as the files plus the credentials. Registration is asynchronous, as in Istio: a
    /// pod whose sandbox started while ztunnel was away is sent to it when it connects (istio-cni's
    /// snapshot), so it is waited for within the bound; a pod left outside the mesh never is.
    #[track_caller]
    pub fn assert_recovered(&self) {
        self.sim.wait_healthy(BOUND).expect("healthy");
        let stale = || -> Vec<String> {
            self.sim
                .pods()
                .iter()
                .filter(|p| !p.ready || (p.ambient && !p.registered))
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect()
        };
        let stale = super::poll(BOUND, std::time::Duration::from_millis(20), || {
            let s = stale();
            if s.is_empty() { Ok(s) } else { Err(s) }
        })
        .unwrap_or_else(|s| s);
        assert!(stale.is_empty(), "pods not Ready or not registered: {stale:?}");
        assert_eq!(self.sim.connectors(), self.expected_connectors(), "connector configs");
    }

    /// Nothing was restarted since the mark.
    #[track_caller]
    pub fn assert_nothing_restarted(&self) {
        assert_eq!(self.patches(), Vec::<String>::new(), "something was restarted");
    }

    /// Only reads since the mark: GETs to the API, Connect and the routes, inspections of Docker.
    #[track_caller]
    pub fn assert_read_only(&self) {
        for e in self.audit() {
            let read = match e.source {
                Source::Kube | Source::Connect | Source::Http => e.verb == "GET",
                Source::Docker => e.verb == "GET" || e.verb == "HEAD",
                // istioctl's read of ztunnel's config dump (a port-forward).
                Source::Standin => e.verb == "istioctl" && e.path.starts_with("ztunnel-config "),
                Source::Controller | Source::Control => true,
            };
            assert!(read, "something was changed: {} {} {}", e.verb, e.path, e.detail);
        }
    }

    /// Every route of the stack answers 200 through its host port (with its Host header); on a
    /// shared cluster, inside it.
    #[track_caller]
    pub fn assert_every_route_answers(&self) {
        for (port, host, path) in [
            (30000, Some("myecom.net"), "/"),
            (30000, Some("myecom.net"), "/ecom/books"),
            (30000, Some("myecom.net"), "/inven/health"),
            (30000, Some("idp.keycloak.net"), "/realms/bookstore"),
            (31111, None, "/misc/ping"),
            (32000, None, "/health"),
            (32100, None, "/kiali/"),
            (32200, None, "/overview"),
        ] {
            // A shared cluster has no host ports: its routes are read inside it.
            let status = match self.context == CONTEXT {
                true => self.get(port, host, path).map(|(s, _)| s),
                false => self.sim.route_answer(port, host, path),
            };
            assert_eq!(status, Some(200), "{port} {host:?} {path}");
        }
    }

    /// A run of `bookstore` in this world, kept for the checks.
    pub(crate) fn keep(&self, run: &Run) {
        self.runs.borrow_mut().push(run.clone());
    }

    /// The runs of `bookstore` in this world so far, in the order they ended.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.borrow().clone()
    }

    /// The checks every run in a world must pass; panics naming every problem.
    #[track_caller]
    pub fn check(&self) {
        let checks = self.checks();
        assert!(checks.problems.is_empty(), "{:#?}", checks.problems);
    }

    /// What was deleted that must not be: no kube DELETE but of a pod its controller recreates (a
    /// restart: a ReplicaSet's, DaemonSet's or StatefulSet's, as the API had it when it was
    /// deleted), so no PVC, namespace, secret, workload or bare pod; no Docker container removed
    /// but the legacy proxies, no connector deleted. Since the mark.
    pub fn deletes(&self) -> Vec<String> {
        let mut found = Vec::new();
        let audit = self.audit();
        for e in audit.iter().filter(|e| e.verb == "DELETE") {
            let legacy_proxy = e.source == Source::Docker
                && ["kiali-proxy", "flink-proxy", "debezium-proxy"]
                    .iter()
                    .any(|p| e.path_only().ends_with(&format!("/containers/{p}")));
            let pod_restart = e.source == Source::Kube && restarted_pod(&audit, e);
            if matches!(e.source, Source::Kube | Source::Connect | Source::Docker)
                && !legacy_proxy
                && !pod_restart
            {
                found.push(format!("DELETE {:?} {}", e.source, e.path));
            }
        }
        found
    }

    /// Deletes, the password in argv, outputs and files, kubectl's context, what reached
    /// Connect, since the mark (the runs: all of them).
    pub fn checks(&self) -> Checks {
        let mut c = Checks::default();
        let runs = self.runs.borrow();
        assert!(!runs.is_empty(), "nothing ran in this world");
        c.runs = runs.len() as u32;

        let audit = self.audit();
        for problem in self.deletes() {
            c.deletes += 1;
            c.problems.push(problem);
        }

        // The password: not in any argv, output, or file; kubectl always names the kind context.
        let argv = self.argv();
        for a in &argv {
            let line = a.join(" ");
            for form in leaks_in(line.as_bytes()) {
                c.leaks += 1;
                c.problems.push(format!("the password ({form}) in argv: {line}"));
            }
            if a[0] == "kubectl" && a.get(1..3) != Some(&["--context".to_string(), self.context.clone()]) {
                c.problems.push(format!("kubectl without --context {} first: {line}", self.context));
            }
        }
        c.argv = argv.len() as u32;
        for e in audit.iter().filter(|e| e.source == Source::Standin) {
            for form in leaks_in(e.body.as_bytes()) {
                c.leaks += 1;
                c.problems.push(format!("the password ({form}) in a {} argv: {}", e.verb, e.path));
            }
        }
        for (i, run) in runs.iter().enumerate() {
            for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                for form in leaks_in(text.as_bytes()) {
                    c.leaks += 1;
                    c.problems.push(format!("the password ({form}) in run {i}'s {stream}"));
                }
            }
        }
        for file in files_under(self.sim.dir()) {
            if file.starts_with(&self.wrap) {
                continue; // the recorded argv, checked above
            }
            let bytes = std::fs::read(&file).unwrap_or_default();
            for form in leaks_in(&bytes) {
                c.leaks += 1;
                c.problems.push(format!("the password ({form}) in {}", file.display()));
            }
        }

        // What reached Connect: every accepted PUT is the flat config with the password
        // byte-exact.
        for e in audit.iter().filter(|e| e.source == Source::Connect && e.verb == "PUT") {
            match serde_json::from_str::<BTreeMap<String, String>>(&e.body) {
                Ok(body) if (200..300).contains(&e.status) => {
                    if body.get("database.password").map(String::as_str) != Some(HOSTILE) {
                        c.problems.push(format!("PUT {} without the password byte-exact", e.path));
                    }
                }
                Ok(_) => {}
                Err(err) => c.problems.push(format!("PUT {} body is not a flat string map: {err}", e.path)),
            }
        }
        c
    }
}

/// A kube DELETE of a pod whose controller (as the API had it: the simulator's `pod-delete`
/// event) recreates it: a restart, the one deletion recovery may make.
pub fn restarted_pod(audit: &[AuditEntry], delete: &AuditEntry) -> bool {
    let path = delete.path_only();
    let Some((ns, name)) = path
        .strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.split_once("/pods/"))
        .filter(|(_, name)| !name.contains('/'))
    else {
        return false;
    };
    audit.iter().any(|e| {
        e.is_event("pod-delete", &format!("{ns}/{name}"))
            && ["ReplicaSet/", "DaemonSet/", "StatefulSet/"].iter().any(|k| e.detail.starts_with(k))
    })
}

/// When ztunnel was fresh again after a recovery: its rollout completed (`recover`), or, when
/// `up` restarted it node by node (its pods there deleted), its last new pod Ready (one a pod
/// deleted).
pub fn ztunnel_restarted(audit: &[AuditEntry]) -> Option<u64> {
    let deletes: Vec<u64> = audit
        .iter()
        .filter(|e| {
            e.source == Source::Kube
                && e.verb == "DELETE"
                && e.path_only().starts_with("/api/v1/namespaces/istio-system/pods/ztunnel")
        })
        .map(|e| e.t_ms)
        .collect();
    match deletes.first() {
        None => audit.iter().find(|e| e.is_event("rollout-complete", "istio-system/ztunnel")).map(|e| e.t_ms),
        // One new pod Ready a pod deleted: the last of them.
        Some(t) => audit
            .iter()
            .filter(|e| e.source == Source::Controller && e.verb == "pod-ready" && e.detail == "ztunnel")
            .filter(|e| e.t_ms >= *t)
            .map(|e| e.t_ms)
            .take(deletes.len())
            .last(),
    }
}

/// A recovery's audit log shows the guide's order: ztunnel fresh again (its rollout completed,
/// or its pods deleted and replaced on every node) before any workload restart, one restart per
/// workload, each database Ready before the apps that need it restarted, and nothing deleted
/// but ztunnel's pods.
#[track_caller]
pub fn assert_recovery_order(audit: &[AuditEntry]) {
    let t_of = |pred: &dyn Fn(&AuditEntry) -> bool| audit.iter().find(|e| pred(e)).map(|e| e.t_ms);
    let ztunnel_done = ztunnel_restarted(audit).expect("ztunnel restarted");
    let patches: Vec<&AuditEntry> = audit
        .iter()
        .filter(|e| e.source == Source::Kube && e.verb == "PATCH" && e.path.contains("/deployments/"))
        .collect();
    assert_eq!(patches.len(), 16, "one restart per workload");
    assert!(patches.iter().all(|p| p.t_ms >= ztunnel_done), "a workload restarted before ztunnel was ready");
    for (app, ns, db) in [
        ("ecom-service", "ecom", "ecom-db"),
        ("inventory-service", "inventory", "inventory-db"),
        ("keycloak", "identity", "keycloak-db"),
        ("superset", "analytics", "analytics-db"),
        ("debezium", "infra", "kafka"),
    ] {
        let db_ready =
            t_of(&|e| e.is_event("rollout-complete", &format!("{ns}/{db}"))).expect("db rolled out");
        let app_patch = t_of(&|e| e.is_kube_patch_of("deployments", app)).expect("app restarted");
        assert!(
            app_patch >= db_ready,
            "{app} restarted at {app_patch} ms, before {db} was Ready at {db_ready} ms"
        );
    }
    let deleted: Vec<&str> = audit
        .iter()
        .filter(|e| e.verb == "DELETE" && !(e.source == Source::Kube && restarted_pod(audit, e)))
        .map(|e| e.path.as_str())
        .collect();
    assert!(deleted.is_empty(), "recovery deleted something: {deleted:?}");
}

/// An argv log as the recording wrappers (and a test's own stand-ins) write it: fields ended by
/// \037, records by \036, each record written at once. One Vec per command.
pub fn read_argv_log(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .split(|b| *b == 0x1e)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let mut fields: Vec<String> =
                r.split(|b| *b == 0x1f).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
            fields.pop(); // the empty field after the last separator
            fields
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}
