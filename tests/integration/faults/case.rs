//! The matrix's helper: one simulator per row, `bookstore` run through PATH wrappers that record
//! every argv of the real `kubectl` and `docker`, and the checks every run of every row must pass
//! (nothing deleted, the sentinel password nowhere but in Connect), with the running counts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookstore::event::{Event, Stamped};
use bookstore_sim::{AuditEntry, Sim, SimOptions, Source};
use serde_json::Value;

use crate::harness::{BIN, Run};

pub const SCALE: f64 = 0.05;
pub const CONTEXT: &str = "kind-bookstore";

/// The password of both connectors (the kit's hostile password).
pub use bookstore_sim::kit::{HOSTILE as SENTINEL, leaks_in};

/// How many rows `faults.rs` declares (the summary line is printed when the last one finishes).
pub const ROWS: u32 = 51;

/// Generous bound for anything a row waits on (never reached in a passing run).
pub const BOUND: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Totals {
    rows: u32,
    recovered: u32,
    explained: u32,
    leaks: u32,
    deletes: u32,
    runs: u32,
    argv_checked: u32,
}

static TOTALS: Mutex<Totals> = Mutex::new(Totals {
    rows: 0,
    recovered: 0,
    explained: 0,
    leaks: 0,
    deletes: 0,
    runs: 0,
    argv_checked: 0,
});

/// How a row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// `bookstore` brought the stack back (exit 0), with no help.
    Recovered,
    /// `bookstore` stopped with an exit code and a message naming the cause and the next step.
    Explained,
    /// Explained, then the user did what it said and a rerun converged.
    ExplainedThenRecovered,
}

pub struct Case {
    pub sim: Sim,
    name: &'static str,
    wrap: PathBuf,
    mark: usize,
    runs: RefCell<Vec<Run>>,
}

/// The simulator's stack copy, with deadlines short enough for a fast matrix and long enough for
/// a recovery at `SCALE`.
fn shorten(stack: &str) -> String {
    let mut s = stack.to_string();
    for long in ["90s", "120s", "180s", "300s", "600s", "60s"] {
        s = s.replace(&format!("timeout: {long}"), "timeout: 20s");
    }
    s = s.replace("settle: 1s", "settle: 0s");
    s.replace("cluster: kind/cluster.yaml\n", "cluster: kind/cluster.yaml\napi_timeout: 15s\n")
}

pub fn options() -> SimOptions {
    let mut secret = SimOptions::default().secret;
    secret.insert("ECOM_DB_PASSWORD".into(), SENTINEL.into());
    secret.insert("INVENTORY_DB_PASSWORD".into(), SENTINEL.into());
    SimOptions { time_scale: SCALE, secret, ..SimOptions::default() }
}

impl Case {
    /// A healthy simulated stack.
    pub fn healthy(name: &'static str) -> Case {
        Case::with(name, options())
    }

    /// The usual starting point: Docker has just restarted (stale mesh, connectors lost).
    pub fn broken(name: &'static str) -> Case {
        let case = Case::healthy(name);
        case.sim.docker_restart();
        case
    }

    pub fn with(name: &'static str, opts: SimOptions) -> Case {
        Case::on(name, bookstore_sim::kit::healthy(opts, BOUND))
    }

    /// A row on a simulator already started (an empty machine: no cluster yet).
    pub fn on(name: &'static str, sim: Sim) -> Case {
        let stack = std::fs::read_to_string(sim.stack_path()).unwrap();
        std::fs::write(sim.stack_path(), shorten(&stack)).unwrap();
        for sub in ["tmp", "wrap"] {
            std::fs::create_dir_all(sim.dir().join(sub)).unwrap();
        }
        let wrap = sim.dir().join("wrap");
        for tool in ["kubectl", "docker"] {
            let real = which::which(tool).expect("the real client is installed");
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
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mark = sim.audit().len();
        Case { sim, name, wrap, mark, runs: RefCell::new(Vec::new()) }
    }

    /// Everything before this point is the row's setup (the test's own kubectl calls included);
    /// the checks look at what happened after it.
    pub fn mark(&mut self) {
        self.mark = self.sim.audit().len();
        let _ = std::fs::remove_file(self.wrap.join("argv.log"));
    }

    pub fn infra(&self, rel: &str) -> PathBuf {
        self.sim.dir().join("infra").join(rel)
    }

    /// Rewrite a file of the simulator's stack copy.
    pub fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let path = self.infra(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = f(text.clone());
        assert_ne!(changed, text, "the edit of {rel} changed nothing");
        std::fs::write(path, changed).unwrap();
    }

    /// Give one workload (or ztunnel, or Connect) a short deadline.
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

    /// The environment of a user's shell pointed at this world, with the recording wrappers first
    /// on PATH.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.sim.command(BIN);
        let path = format!("{}:{}", self.wrap.display(), self.sim.env()[3].1);
        assert!(self.sim.env()[3].0 == "PATH");
        cmd.args(args)
            .arg("--stack")
            .arg(self.sim.stack_path())
            .arg("--json")
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("TMPDIR", self.sim.dir().join("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    /// Run `bookstore` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        let run = Run::from(self.command(args).output().expect("bookstore runs"));
        self.keep(&run);
        run.clone()
    }

    fn keep(&self, run: &Run) {
        if std::env::var_os("FAULTS_SHOW").is_some() {
            eprintln!("[{}] exit {}\n{}", self.name, run.code, run.stderr);
        }
        check_json(run);
        self.runs.borrow_mut().push(run.clone());
    }

    /// Start `bookstore` and read its `--json` events as they come.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bookstore starts");
        let (tx, rx) = mpsc::channel();
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let out2 = Arc::clone(&out);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out2.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let err = Arc::new(Mutex::new(String::new()));
        let err2 = Arc::clone(&err);
        // Kept as it comes, so a test can read what a long-running `bookstore` said so far.
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut bytes = Vec::new();
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
                *err2.lock().unwrap_or_else(|p| p.into_inner()) =
                    String::from_utf8_lossy(&bytes).into_owned();
            }
        });
        Running { child, events: rx, out, err, readers: vec![reader, err_reader] }
    }

    pub fn wait_ended(&self, running: Running) -> Run {
        let run = running.wait();
        self.keep(&run);
        run
    }

    /// The test's own kubectl (setup), straight to the real client.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.sim.command("kubectl").arg("--context").arg(CONTEXT).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The world's audit log since the mark.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.sim.audit().split_off(self.mark)
    }

    /// Kube PATCHes since the mark (every restart is one).
    pub fn patches(&self) -> Vec<String> {
        self.audit()
            .iter()
            .filter(|e| e.source == Source::Kube && e.verb == "PATCH")
            .map(|e| e.path_only().to_string())
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

    /// Every recorded argv since the mark, one Vec per child.
    pub fn argv(&self) -> Vec<Vec<String>> {
        let bytes = std::fs::read(self.wrap.join("argv.log")).unwrap_or_default();
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

    /// Processes still running with this world's kubeconfig: children (or grandchildren) of
    /// `bookstore` that outlived it.
    pub fn live_clients(&self) -> Vec<String> {
        let needle = format!("KUBECONFIG={}", self.sim.kubeconfig_path().display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
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
        for (file, user) in [("ecom-connector", "ecomuser"), ("inventory-connector", "inventoryuser")] {
            let text =
                std::fs::read_to_string(self.infra(&format!("debezium/connectors/{file}.json"))).unwrap();
            let doc: Value = serde_json::from_str(&text).unwrap();
            let mut config: BTreeMap<String, String> = doc["config"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            config.insert("name".into(), file.into());
            config.insert("database.user".into(), user.into());
            config.insert("database.password".into(), SENTINEL.into());
            out.insert(file.to_string(), config);
        }
        out
    }

    /// The stack is back: every pod Ready and registered with the mesh, both connectors stored
    /// exactly as the files plus the credentials.
    pub fn assert_recovered(&self) {
        self.sim.wait_healthy(BOUND).expect("healthy");
        let stale: Vec<String> = self
            .sim
            .pods()
            .iter()
            .filter(|p| !p.ready || (p.ambient && !p.registered))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        assert!(stale.is_empty(), "pods not Ready or not registered: {stale:?}");
        assert_eq!(self.sim.connectors(), self.expected_connectors(), "connector configs");
    }

    /// Nothing was restarted since the mark.
    pub fn assert_nothing_restarted(&self) {
        assert_eq!(self.patches(), Vec::<String>::new(), "something was restarted");
    }

    /// The global checks, then the counts. Every row ends here.
    pub fn finish(self, ends: Ends) {
        let (problems, leaks, deletes, argv) = self.global_checks();
        let runs = self.runs.borrow().len() as u32;
        let mut t = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        t.rows += 1;
        t.runs += runs;
        t.argv_checked += argv;
        t.leaks += leaks;
        t.deletes += deletes;
        if matches!(ends, Ends::Recovered | Ends::ExplainedThenRecovered) {
            t.recovered += 1;
        }
        if matches!(ends, Ends::Explained | Ends::ExplainedThenRecovered) {
            t.explained += 1;
        }
        let line = format!(
            "fault matrix: {}/{ROWS} rows: faults tried {}, recovered {}, explained {}, leaks found {}, \
             deletes found {} ({} runs, {} child argv checked)",
            t.rows, t.rows, t.recovered, t.explained, t.leaks, t.deletes, t.runs, t.argv_checked
        );
        eprintln!("[{}] {line}", self.name);
        if t.rows == ROWS {
            eprintln!("FAULT MATRIX SUMMARY: {line}");
            let _ = std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix.txt"), &line);
        }
        drop(t);
        assert!(problems.is_empty(), "{}: {problems:#?}", self.name);
    }

    /// The global checks, for a test that uses this world but is not a row of the matrix.
    pub fn check(self) {
        let (problems, ..) = self.global_checks();
        assert!(problems.is_empty(), "{}: {problems:#?}", self.name);
    }

    /// Deletes, the sentinel in argv, outputs and files, kubectl's context, what reached
    /// Connect: (problems, leaks, deletes, argv checked).
    fn global_checks(&self) -> (Vec<String>, u32, u32, u32) {
        let mut problems = Vec::new();
        let runs = self.runs.borrow();
        assert!(!runs.is_empty(), "{}: the row ran nothing", self.name);

        // Nothing deleted: no kube DELETE at all (PVCs, namespaces, secrets, workloads), no
        // Docker container removed but the legacy proxies, no connector deleted.
        let audit = self.audit();
        let mut deletes = 0;
        for e in audit.iter().filter(|e| e.verb == "DELETE") {
            let legacy_proxy = e.source == Source::Docker
                && ["kiali-proxy", "flink-proxy", "debezium-proxy"]
                    .iter()
                    .any(|p| e.path_only().ends_with(&format!("/containers/{p}")));
            if matches!(e.source, Source::Kube | Source::Connect | Source::Docker) && !legacy_proxy {
                deletes += 1;
                problems.push(format!("DELETE {:?} {}", e.source, e.path));
            }
        }

        // The sentinel: not in any argv, output, or file; kubectl always names the kind context.
        let mut leaks = 0;
        let argv = self.argv();
        for a in &argv {
            let line = a.join(" ");
            for form in leaks_in(line.as_bytes()) {
                leaks += 1;
                problems.push(format!("sentinel ({form}) in argv: {line}"));
            }
            if a[0] == "kubectl" && a.get(1..3) != Some(&["--context".to_string(), CONTEXT.to_string()]) {
                problems.push(format!("kubectl without --context {CONTEXT} first: {line}"));
            }
        }
        for e in audit.iter().filter(|e| e.source == Source::Standin) {
            for form in leaks_in(e.body.as_bytes()) {
                leaks += 1;
                problems.push(format!("sentinel ({form}) in a {} argv: {}", e.verb, e.path));
            }
        }
        for (i, run) in runs.iter().enumerate() {
            for (stream, text) in [("stdout (--json)", &run.stdout), ("stderr", &run.stderr)] {
                for form in leaks_in(text.as_bytes()) {
                    leaks += 1;
                    problems.push(format!("sentinel ({form}) in run {i}'s {stream}"));
                }
            }
        }
        for file in files_under(self.sim.dir()) {
            if file.starts_with(&self.wrap) {
                continue; // the recorded argv, checked above
            }
            let bytes = std::fs::read(&file).unwrap_or_default();
            for form in leaks_in(&bytes) {
                leaks += 1;
                problems.push(format!("sentinel ({form}) in {}", file.display()));
            }
        }

        // What reached Connect: every accepted PUT is the flat config with the password
        // byte-exact.
        for e in audit.iter().filter(|e| e.source == Source::Connect && e.verb == "PUT") {
            match serde_json::from_str::<BTreeMap<String, String>>(&e.body) {
                Ok(body) if (200..300).contains(&e.status) => {
                    if body.get("database.password").map(String::as_str) != Some(SENTINEL) {
                        problems.push(format!("PUT {} without the password byte-exact", e.path));
                    }
                }
                Ok(_) => {}
                Err(err) => problems.push(format!("PUT {} body is not a flat string map: {err}", e.path)),
            }
        }

        (problems, leaks, deletes, argv.len() as u32)
    }
}

/// `--json` output: one event object per line, the last a `summary` with the exit code.
fn check_json(run: &Run) {
    let events: Vec<Stamped> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}")))
        .collect();
    let last = events.last().unwrap_or_else(|| panic!("no summary event\n{}", run.stderr));
    let code = |c: u8| i32::from(c) == run.code;
    assert!(matches!(last.event, Event::Summary { exit_code, .. } if code(exit_code)), "{}", run.stdout);
    if run.code != 0 {
        let error = |e: &Stamped| matches!(e.event, Event::Error { exit_code, .. } if code(exit_code));
        assert!(events.iter().any(error), "{}", run.stdout);
    }
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

/// A `bookstore` still running.
pub struct Running {
    child: Child,
    events: Receiver<String>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Read `--json` events until one satisfies `pred` (bounded).
    pub fn until_event(&self, what: &str, pred: impl Fn(&Event) -> bool) {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(line) => {
                    if serde_json::from_str::<Stamped>(&line).is_ok_and(|e| pred(&e.event)) {
                        return;
                    }
                }
                Err(_) => panic!("no event {what}; stderr so far:\n{}", self.err.lock().unwrap()),
            }
        }
    }

    /// Until a `step_started` event whose step contains `text`.
    pub fn until_step(&self, text: &str) {
        self.until_event(
            &format!("step_started ~ {text}"),
            |e| matches!(e, Event::StepStarted { step } if step.contains(text)),
        );
    }

    /// Ctrl-C: SIGINT to the bookstore process only (not its process group), so stopping the
    /// children is bookstore's own job.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// A service manager's stop: SIGTERM to the bookstore process only.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// The process has exited (without reaping it).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn wait(mut self) -> Run {
        let status = self.child.wait().unwrap();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = self.out.lock().unwrap().clone();
        let stderr = self.err.lock().unwrap().clone();
        Run { code: status.code().unwrap_or(-1), stdout, stderr }
    }
}

/// A test that fails while `bookstore` runs (a watcher runs until stopped) leaves no process
/// behind.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll the world until `pred` holds (bounded; a wait, not an assertion on time).
#[track_caller]
pub fn until(what: &str, mut pred: impl FnMut() -> bool) {
    bookstore_sim::kit::eventually(BOUND, &format!("never happened: {what}"), || pred().then_some(()))
}

/// The error a run printed: from its `ERROR:` line to the end of stderr.
pub fn error_text(run: &Run) -> &str {
    match run.stderr.find("ERROR:") {
        Some(i) => &run.stderr[i..],
        None => panic!("no ERROR: line\n{}", run.stderr),
    }
}

/// The run's error names the cause (every fragment) and the next step (after `Next:`, or the
/// input error's own advice).
#[track_caller]
pub fn says(run: &Run, cause: &[&str], next: &str) {
    let text = error_text(run);
    for c in cause {
        assert!(text.contains(c), "the error does not name {c:?}:\n{text}");
    }
    let advice = match text.find("Next:") {
        Some(i) => &text[i..],
        None => text.lines().last().unwrap_or(""),
    };
    assert!(advice.contains(next), "the next step is not {next:?}:\n{text}");
    // Advice never points kubectl at whatever context happens to be current.
    for (i, _) in text.match_indices("`kubectl ") {
        assert!(
            text[i + 1..].starts_with(&format!("kubectl --context {CONTEXT} ")),
            "advice without --context {CONTEXT}: {}",
            text[i..].lines().next().unwrap_or("")
        );
    }
}
