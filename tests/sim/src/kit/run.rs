//! What a run of `bookstore` left: its exit code and output ([`Run`]), the findings of
//! `doctor --json` ([`Findings`]), and a `bookstore` still running ([`Running`]).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bookstore::event::{Event, Finding, Severity, Stamped};

use super::world::World;
use super::{BOUND, CONTEXT, poll};

#[derive(Clone, Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The exit code is `code` (else panics with both streams).
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// A client's run succeeded: its stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert!(
            self.success(),
            "command failed (exit {})\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self.stdout.clone()
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The `--json` events on stdout, as the product's own type (other lines skipped).
    pub fn events(&self) -> Vec<Event> {
        bookstore::event::parse(&self.stdout).into_iter().map(|e| e.event).collect()
    }

    /// Every line of stdout one event (panics naming the first that is not).
    #[track_caller]
    fn every_line_an_event(&self) -> Vec<Event> {
        let parse = |l: &str| {
            serde_json::from_str::<Stamped>(l)
                .unwrap_or_else(|e| panic!("not one event a line ({e}): {l}"))
                .event
        };
        self.stdout.lines().map(parse).collect()
    }

    /// `--json`'s protocol: one event a line (its `event` and `t_ms`), the last a `summary`
    /// with the exit code; a failed run also has its `error` event.
    #[track_caller]
    pub fn assert_events(&self) {
        let events = self.every_line_an_event();
        let code = |c: u8| i32::from(c) == self.code;
        let last = events.last().unwrap_or_else(|| panic!("no summary event\n{}", self.stderr));
        assert!(matches!(last, Event::Summary { exit_code, .. } if code(*exit_code)), "{}", self.stdout);
        if self.code != 0 {
            let error =
                events.iter().any(|e| matches!(e, Event::Error { exit_code, .. } if code(*exit_code)));
            assert!(error, "{}", self.stdout);
        }
    }

    /// The error the run printed: from its `ERROR:` line to the end of stderr.
    #[track_caller]
    pub fn error_text(&self) -> &str {
        match self.stderr.find("ERROR:") {
            Some(i) => &self.stderr[i..],
            None => panic!("no ERROR: line\n{}", self.stderr),
        }
    }

    /// The next step the error names: after `Next:`, or the input error's own advice (its last
    /// line).
    #[track_caller]
    pub fn next_step(&self) -> &str {
        let text = self.error_text();
        match text.find("Next:") {
            Some(i) => &text[i..],
            None => text.lines().last().unwrap_or(""),
        }
    }

    /// The error names the cause (every fragment) and the next step; advice never points
    /// kubectl at whatever context happens to be current.
    #[track_caller]
    pub fn says(&self, cause: &[&str], next: &str) {
        let text = self.error_text();
        for c in cause {
            assert!(text.contains(c), "the error does not name {c:?}:\n{text}");
        }
        let advice = self.next_step();
        assert!(advice.contains(next), "the next step is not {next:?}:\n{text}");
        for (i, _) in text.match_indices("`kubectl ") {
            assert!(
                text[i + 1..].starts_with(&format!("kubectl --context {CONTEXT} ")),
                "advice without --context {CONTEXT}: {}",
                text[i..].lines().next().unwrap_or("")
            );
        }
    }

    /// The findings of `doctor --json`.
    #[track_caller]
    pub fn findings(&self) -> Findings {
        let findings = self
            .every_line_an_event()
            .into_iter()
            .filter_map(|e| match e {
                Event::Finding(f) => Some(f),
                _ => None,
            })
            .collect();
        Findings { findings, stderr: self.stderr.clone() }
    }
}

/// `bookstore doctor --json`'s findings (the human report is the run's stderr).
pub struct Findings {
    pub findings: Vec<Finding>,
    stderr: String,
}

impl Findings {
    pub fn ids(&self) -> Vec<String> {
        self.findings.iter().map(|f| f.id.clone()).collect()
    }

    /// The finding with this id (panics naming the ids found, and the report).
    #[track_caller]
    pub fn finding(&self, id: &str) -> &Finding {
        self.findings
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no finding {id}; found {:?}\n--- stderr\n{}", self.ids(), self.stderr))
    }

    pub fn has(&self, id: &str) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }

    /// All evidence lines of a finding, joined.
    #[track_caller]
    pub fn evidence(&self, id: &str) -> String {
        self.finding(id).evidence.join("\n")
    }

    #[track_caller]
    pub fn fix(&self, id: &str) -> String {
        self.finding(id).fix.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.id.clone()).collect()
    }
}

/// A `bookstore` still running: its `--json` events as they come, its stderr so far.
pub struct Running<'w> {
    child: Child,
    events: Receiver<String>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    world: Option<&'w World>,
    json: bool,
    code: Option<i32>,
}

impl<'w> Running<'w> {
    pub(crate) fn start(
        mut cmd: Command,
        world: Option<&'w World>,
        json: bool,
        code: Option<i32>,
    ) -> Running<'w> {
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bookstore starts");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped");
        let out2 = Arc::clone(&out);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out2.lock().unwrap_or_else(|p| p.into_inner()).push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
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
        Running { child, events: rx, out, err, readers: vec![reader, err_reader], world, json, code }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Read `--json` events until one satisfies `pred` (bounded).
    #[track_caller]
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
                Err(_) => panic!("no event {what}; stderr so far:\n{}", self.stderr()),
            }
        }
    }

    /// Until a `step_started` event whose step contains `text`.
    #[track_caller]
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
        let status = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} {}", self.pid());
    }

    /// The process has exited (without reaping it).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// It ends by itself within `bound` (a bound, not a goal), then as [`Running::wait`].
    #[track_caller]
    pub fn ends_within(mut self, bound: Duration, what: &str) -> Run {
        let ended = poll(bound, Duration::from_millis(20), || if self.exited() { Ok(()) } else { Err(()) });
        assert!(ended.is_ok(), "bookstore did not end within {bound:?} of {what}");
        self.wait()
    }

    /// Wait for the end: the run with everything it printed, its expectations checked (the exit
    /// code the test gave, `--json`'s protocol), kept by its world for the checks.
    #[track_caller]
    pub fn wait(mut self) -> Run {
        let status = self.child.wait().expect("bookstore waited for");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = self.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let stderr = self.stderr();
        let run = Run { code: status.code().unwrap_or(-1), stdout, stderr };
        if let Some(world) = self.world {
            world.keep(&run);
        }
        if let Some(code) = self.code {
            run.expect(code);
        }
        if self.json {
            run.assert_events();
        }
        run
    }
}

/// A test that fails while `bookstore` runs (a watcher runs until stopped) leaves no process
/// behind.
impl Drop for Running<'_> {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
