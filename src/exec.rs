//! The only module that spawns processes.
//!
//! A [`Cmd`] is a value: a program and an argv vector (never a shell string), printable as a line
//! that can be pasted into a shell. Running one either returns its output or an [`Error::Command`]
//! that carries the pasteable line and the tail of its stderr. Secrets never go into argv. Its
//! stdin is bytes; whether the line may show them is a separate marker ([`Cmd::secret`]), as in
//! xshell.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::secret;

/// How many child processes this run has started (reported by `--verbose` and the benchmark).
static SPAWNED: AtomicUsize = AtomicUsize::new(0);

pub fn spawned() -> usize {
    SPAWNED.load(Ordering::Relaxed)
}

/// The same count by program (`kubectl`, `docker`, `kind`, …), for the summary and `--timings`.
static BY_PROGRAM: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

pub fn spawned_by_program() -> std::collections::BTreeMap<String, usize> {
    BY_PROGRAM.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn count(program: &str) {
    SPAWNED.fetch_add(1, Ordering::Relaxed);
    let name = std::path::Path::new(program).file_name().map_or(program.into(), |n| n.to_string_lossy());
    *BY_PROGRAM.lock().unwrap_or_else(|e| e.into_inner()).entry(name.into_owned()).or_default() += 1;
}

/// Programs this run must never start: `docker`, `kind` and `istioctl` on a shared cluster (set
/// from the validated config; the rooms skip them, this is the backstop).
static FORBIDDEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Never start these programs in this run (replaces the list).
pub fn forbid(programs: &[&str]) {
    *FORBIDDEN.lock().unwrap_or_else(|e| e.into_inner()) = programs.iter().map(|p| p.to_string()).collect();
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Children started and not yet reaped (each counted by a [`Live`] guard).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Set when the run is over: every child still running is stopped.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Counts one child from its start until it has been reaped.
struct Live;

impl Live {
    fn new() -> Live {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stop_requested(cancellable: bool) -> bool {
    STOPPING.load(Ordering::SeqCst)
        || if cancellable { crate::wait::interrupted() } else { crate::wait::stopping() }
}

/// The run is over (success, error or Ctrl-C): stop every child still running (a restart on
/// another thread, a watch) and wait, at most `bound`, until each one has been reaped, so none
/// outlives `bookstore`.
pub fn stop_all(bound: Duration) {
    STOPPING.store(true, Ordering::SeqCst);
    let end = Instant::now() + bound;
    while LIVE.load(Ordering::SeqCst) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `--verbose`: print each command before it runs and its output after, on stderr.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    /// Set in the child's environment (the node engine kind must use, the Docker context it
    /// must keep): printed before the program, as a shell takes them.
    env: Vec<(String, String)>,
    /// Fed to the child's stdin (manifests, a cluster config, object lists): never in argv.
    stdin: Option<Stdin>,
    /// Its stdin holds a secret: the line never shows it.
    secret: bool,
    /// Upper bound on the child's run time; it is killed after this.
    deadline: Duration,
    /// Stopped when the work in progress is cancelled ([`crate::wait::cancel`]), not only when
    /// the process ends.
    cancellable: bool,
}

/// What a command reads on stdin.
#[derive(Clone, Debug)]
enum Stdin {
    /// Text the line shows as a heredoc (a list of objects), so the line stays pasteable.
    Text(String),
    /// Bytes the line describes (manifests, a cluster config: too long to show).
    Bytes { bytes: Vec<u8>, what: String },
    /// Bytes made at run time ([`Cmd::fill`]), which a dry run can only describe.
    Later(String),
}

/// What a finished child printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
}

impl Cmd {
    pub fn new(program: &str) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            secret: false,
            deadline: Duration::from_secs(60),
            cancellable: true,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set `key=value` in the child's environment (never a secret: it is printed).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Cmd {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The child's environment beyond this process's.
    pub fn envs(&self) -> &[(String, String)] {
        &self.env
    }

    /// Feed these bytes to the child's stdin; the printed line says what they are (`what`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>, what: &str) -> Cmd {
        self.stdin = Some(Stdin::Bytes { bytes: bytes.into(), what: what.to_string() });
        self
    }

    /// Feed short text to the child's stdin; the printed line shows it as a heredoc.
    pub fn stdin_text(mut self, text: String) -> Cmd {
        self.stdin = Some(Stdin::Text(text));
        self
    }

    /// Its stdin is made at run time ([`Cmd::fill`]): the printed line says what it will be.
    /// Run unfilled, it is an error.
    pub fn later(mut self, what: &str) -> Cmd {
        self.stdin = Some(Stdin::Later(what.to_string()));
        self
    }

    /// The bytes of a stdin made at run time ([`Cmd::later`]), described as it was.
    pub fn fill(self, bytes: impl Into<Vec<u8>>) -> Cmd {
        let what = match &self.stdin {
            Some(Stdin::Later(what) | Stdin::Bytes { what, .. }) => what.clone(),
            Some(Stdin::Text(_)) | None => "stdin".to_string(),
        };
        self.stdin(bytes, &what)
    }

    /// Its stdin holds a secret: the line never shows it (nor says more than what it is).
    pub fn secret(mut self) -> Cmd {
        self.secret = true;
        self
    }

    pub fn deadline(mut self, deadline: Duration) -> Cmd {
        self.deadline = deadline;
        self
    }

    /// The watcher's own reads: a cancelled heal does not stop them, only the end of the process.
    pub fn not_cancellable(mut self) -> Cmd {
        self.cancellable = false;
        self
    }

    /// The program it runs.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether `other` runs the same program with the same arguments (stdin aside).
    pub fn same_argv(&self, other: &Cmd) -> bool {
        self.program == other.program && self.args == other.args && self.env == other.env
    }

    /// The program and its arguments as given (the printed line is redacted; tests compare these).
    #[cfg(test)]
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone()).chain(self.args.iter().cloned()).collect()
    }

    /// Run to completion; a non-zero exit is an error carrying the command line and stderr tail.
    pub fn run(&self) -> Result<Output> {
        let output = self.run_unchecked()?;
        if output.status.success() {
            return Ok(Output { stdout: output.stdout });
        }
        Err(self.failure(&status_text(&output.status), &output.stderr))
    }

    /// Run to completion and return the output whatever the exit status.
    pub fn run_unchecked(&self) -> Result<RawOutput> {
        let expr = self.expr().stdout_capture().stderr_capture().unchecked();
        let expr = match &self.stdin {
            Some(Stdin::Text(text)) => expr.stdin_bytes(text.as_bytes().to_vec()),
            Some(Stdin::Bytes { bytes, .. }) => expr.stdin_bytes(bytes.clone()),
            Some(Stdin::Later(what)) => {
                return Err(Error::step(
                    format!("`{self}` was run before its stdin ({what}) was made"),
                    "report this as a bug",
                ));
            }
            None => expr.stdin_null(),
        };
        self.allowed()?;
        count(&self.program);
        if verbose() {
            eprintln!("   $ {self}");
        }
        let handle = expr.start().map_err(|e| self.spawn_error(e))?;
        self.finish(handle, Live::new())
    }

    /// Start the child now, its stdin left open: it gets as far as reading it (kubectl's start-up,
    /// its kubeconfig) while the caller waits for something else; [`Early::feed`] gives it its
    /// input and waits for it. Its line is this command's with the fed text as the heredoc.
    pub fn start_early(&self) -> Result<Early> {
        let (reader, writer) = std::io::pipe().map_err(|e| self.spawn_error(e))?;
        let expr = self.expr().stdin_file(reader).stdout_capture().stderr_capture().unchecked();
        self.allowed()?;
        count(&self.program);
        let handle = expr.start().map_err(|e| self.spawn_error(e))?;
        Ok(Early { cmd: self.clone(), handle: Some(handle), stdin: Some(writer), live: Some(Live::new()) })
    }

    /// Wait for a started child within the deadline (Ctrl-C stops it), then take its output.
    fn finish(&self, handle: duct::Handle, _live: Live) -> Result<RawOutput> {
        let deadline = Instant::now() + self.deadline;
        // Wait in short slices so Ctrl-C stops the child promptly.
        let mut finished = false;
        while !finished && Instant::now() < deadline {
            let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
            finished = handle.wait_deadline(slice).map_err(|e| self.spawn_error(e))?.is_some();
            if !finished && stop_requested(self.cancellable) {
                // Killed and reaped before returning: no child outlives the run.
                let _ = handle.kill();
                let _ = handle.wait_deadline(Instant::now() + Duration::from_secs(5));
                return Err(Error::Interrupted);
            }
        }
        if !finished {
            let _ = handle.kill();
            let partial = handle.wait().ok();
            let stderr = partial.map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            return Err(Error::Timeout {
                what: format!("`{self}` did not finish"),
                after: self.deadline,
                detail: tail(stderr.as_deref().unwrap_or(""), 10),
                next: "check that the cluster and Docker respond, then run the command above by hand".into(),
            });
        }
        let output = handle.into_output().map_err(|e| self.spawn_error(e))?;
        let raw = RawOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if verbose() {
            // stdout can hold a secret's JSON, whose values are registered only once decoded:
            // show its size, and stderr in full (redacted).
            eprintln!("     ({}, {} stdout lines)", status_text(&raw.status), raw.stdout.lines().count());
            for line in raw.stderr.lines() {
                eprintln!("     {}", secret::redact(line));
            }
        }
        Ok(raw)
    }

    /// Start a long-running child and stream its stdout. stderr is kept in a file so a failure can
    /// show its tail.
    pub fn stream(&self) -> Result<Stream> {
        let stderr = tempfile::tempfile().map_err(|e| self.spawn_error(e))?;
        let stderr_read = stderr.try_clone().map_err(|e| self.spawn_error(e))?;
        self.allowed()?;
        count(&self.program);
        if verbose() {
            eprintln!("   $ {self}   (streaming)");
        }
        let reader = self
            .expr()
            .stdin_null()
            .stderr_file(stderr)
            .unchecked()
            .reader()
            .map_err(|e| self.spawn_error(e))?;
        Ok(Stream {
            cmd: self.clone(),
            child: Arc::new(reader),
            taken: false,
            stderr: stderr_read,
            _live: Live::new(),
        })
    }

    /// `Err` when this run may not start the program ([`forbid`]).
    fn allowed(&self) -> Result<()> {
        let name = std::path::Path::new(&self.program).file_name().map(|n| n.to_string_lossy().into_owned());
        let forbidden = FORBIDDEN.lock().unwrap_or_else(|e| e.into_inner());
        match name {
            Some(n) if forbidden.contains(&n) => Err(Error::step(
                format!("refused to run `{self}`: bookstore never runs {n} on a shared cluster"),
                "report this as a bug",
            )),
            _ => Ok(()),
        }
    }

    /// The child as duct runs it: its argv and its environment.
    fn expr(&self) -> duct::Expression {
        self.env.iter().fold(duct::cmd(&self.program, &self.args), |e, (k, v)| e.env(k, v))
    }

    pub fn failure(&self, status: &str, stderr: &str) -> Error {
        Error::Command {
            line: self.to_string(),
            status: status.to_string(),
            stderr_tail: tail(stderr, 12),
            next: "fix the cause shown above, then run again (recovery is safe to rerun)".into(),
        }
    }

    fn spawn_error(&self, e: std::io::Error) -> Error {
        Error::Command {
            line: self.to_string(),
            status: format!("could not run: {e}"),
            stderr_tail: String::new(),
            next: format!("check that `{}` is installed and on PATH", self.program),
        }
    }
}

pub struct RawOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn status_text(status: &std::process::ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".to_string(),
    }
}

/// A child started ahead of need ([`Cmd::start_early`]). Dropped unfed, it is killed and reaped.
pub struct Early {
    cmd: Cmd,
    handle: Option<duct::Handle>,
    stdin: Option<std::io::PipeWriter>,
    live: Option<Live>,
}

impl Early {
    /// The command it runs.
    pub fn cmd(&self) -> &Cmd {
        &self.cmd
    }

    /// Give it its stdin (no secret: the text is shown as the line's heredoc) and wait for it, as
    /// [`Cmd::run_unchecked`] does. A child that exited before reading it answers with its output.
    pub fn feed(mut self, text: String) -> Result<RawOutput> {
        use std::io::Write;
        let cmd = self.cmd.clone().stdin_text(text.clone());
        if verbose() {
            eprintln!("   $ {cmd}");
        }
        if let Some(mut stdin) = self.stdin.take() {
            // A child that is already gone (EPIPE) tells why in its stderr.
            let _ = stdin.write_all(text.as_bytes());
        }
        let (handle, live) = (self.handle.take(), self.live.take());
        match (handle, live) {
            (Some(handle), Some(live)) => cmd.finish(handle, live),
            _ => Err(Error::step(format!("`{cmd}` was fed twice"), "report this as a bug")),
        }
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.kill();
            let _ = handle.wait_deadline(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// A running child whose stdout is read as it arrives. Dropping it kills and reaps the child,
/// even while another thread is reading its stdout.
pub struct Stream {
    cmd: Cmd,
    child: Arc<duct::ReaderHandle>,
    taken: bool,
    stderr: std::fs::File,
    _live: Live,
}

/// The stdout of a [`Stream`], readable on another thread; the `Stream` keeps the right to kill.
struct SharedReader(Arc<duct::ReaderHandle>);

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Stream {
    pub fn cmd(&self) -> &Cmd {
        &self.cmd
    }

    /// The stdout reader (once), for a parser running on another thread.
    pub fn take_reader(&mut self) -> Option<impl BufRead + Send + 'static> {
        if std::mem::replace(&mut self.taken, true) {
            return None;
        }
        Some(BufReader::new(SharedReader(Arc::clone(&self.child))))
    }

    /// The last lines the child wrote to stderr so far.
    pub fn stderr_tail(&mut self) -> String {
        use std::io::Seek;
        let mut text = String::new();
        let _ = self.stderr.seek(std::io::SeekFrom::Start(0));
        let _ = self.stderr.read_to_string(&mut text);
        tail(&text, 12)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Reap it (bounded): a killed child exits at once.
        let end = Instant::now() + Duration::from_secs(5);
        while !matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The last `n` lines of `text`, secrets masked.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    secret::redact(&lines[start..].join("\n"))
}

/// Quote one word for a POSIX shell, only when it needs it.
pub fn quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

impl fmt::Display for Cmd {
    /// A line that can be pasted into a shell, secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for (key, value) in &self.env {
            line.push_str(&format!("{key}={} ", quote(value)));
        }
        line.push_str(&quote(&self.program));
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let secret = if self.secret { "; secret" } else { "" };
        match &self.stdin {
            Some(Stdin::Text(text)) if !self.secret => {
                line.push_str(&format!(" <<'EOF'\n{}\nEOF", text.trim_end()));
            }
            Some(Stdin::Text(_)) => line.push_str(" <<'EOF' (stdin: secret, not shown)"),
            Some(Stdin::Bytes { what, .. } | Stdin::Later(what)) => {
                line.push_str(&format!(" <<'EOF' (stdin: {what}{secret}, not shown)"));
            }
            None => {}
        }
        f.write_str(&secret::redact(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_pasteable() {
        let cmd = Cmd::new("kubectl").args(["get", "secret", "-o", "jsonpath={.data.A}", "it's"]);
        assert_eq!(cmd.to_string(), r"kubectl get secret -o 'jsonpath={.data.A}' 'it'\''s'");
        let kind = Cmd::new("kind").args(["get", "clusters"]).env("KIND_EXPERIMENTAL_PROVIDER", "podman");
        assert_eq!(kind.to_string(), "KIND_EXPERIMENTAL_PROVIDER=podman kind get clusters");
    }

    #[test]
    fn the_child_gets_its_environment() {
        let out = Cmd::new("env").env("BOOKSTORE_T", "a b").run().unwrap();
        assert!(out.stdout.lines().any(|l| l == "BOOKSTORE_T=a b"), "{}", out.stdout);
    }

    #[test]
    fn failure_keeps_the_command_and_stderr_tail() {
        let err = Cmd::new("ls").arg("/definitely/not/here").run().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ls /definitely/not/here"), "{text}");
        assert!(text.contains("No such file"), "{text}");
        assert_eq!(err.code(), crate::error::code::STEP_FAILED);
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let err = Cmd::new("sleep").arg("5").deadline(Duration::from_millis(100)).run().unwrap_err();
        assert_eq!(err.code(), crate::error::code::TIMEOUT);
    }
}
