//! The one error type, and the stable exit code each failure maps to.

use std::fmt;
use std::time::Duration;

use crate::secret;

/// Exit codes. Stable: scripts depend on them. Documented in `--help` and the README.
pub mod code {
    pub const OK: u8 = 0;
    /// A step failed: a command or a request returned an error.
    pub const STEP_FAILED: u8 = 1;
    /// Usage error or invalid input (flags, stack file, cluster config, connector files).
    pub const USAGE: u8 = 2;
    /// A prerequisite is missing: a tool, Docker, the cluster, its kube context or port mappings.
    pub const PREREQUISITE: u8 = 3;
    /// The smoke test failed: at least one route does not answer.
    pub const SMOKE_FAILED: u8 = 4;
    /// Another bookstore run holds the lock for this cluster.
    pub const BUSY: u8 = 5;
    /// `doctor` found at least one problem of severity error.
    pub const FINDINGS: u8 = 6;
    /// A wait ran past its deadline.
    pub const TIMEOUT: u8 = 124;
    /// Interrupted (Ctrl-C).
    pub const INTERRUPTED: u8 = 130;
}

/// The exit-code table as printed by `--help` and the README (a macro so `--help` can `concat!`).
#[macro_export]
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0    success
  1    a step failed (a command or request returned an error)
  2    usage error or invalid input (flags, stack file, cluster config, connector files)
  3    prerequisite missing (tool, Docker, kind cluster, kube context, port mappings)
  4    smoke test failed (at least one route does not answer)
  5    another bookstore run is working on this cluster (lock held)
  6    doctor found problems (at least one finding of severity error)
  124  a wait ran past its deadline
  130  interrupted"
    };
}

pub const EXIT_CODES: &str = exit_codes!();

#[derive(Debug)]
pub enum Error {
    /// Bad flags or bad input files. Nothing was changed.
    Input {
        what: String,
        problem: String,
    },
    /// Something the run needs is not there.
    Prerequisite {
        problem: String,
        next: String,
    },
    /// A child command failed.
    Command {
        line: String,
        status: String,
        stderr_tail: String,
        next: String,
    },
    /// An HTTP request failed or was answered with an error.
    Http {
        request: String,
        problem: String,
        next: String,
    },
    /// A wait passed its deadline.
    Timeout {
        what: String,
        after: Duration,
        detail: String,
        next: String,
    },
    /// Another run holds the cluster's lock.
    Busy {
        holder: String,
        lock: String,
    },
    /// Routes that do not answer.
    Smoke {
        failures: Vec<String>,
        next: String,
    },
    /// `doctor` found problems (each already printed with its evidence and fix).
    Findings {
        errors: usize,
        warnings: usize,
    },
    /// A step failed for a reason that is not a command or a request.
    Step {
        problem: String,
        next: String,
    },
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn code(&self) -> u8 {
        match self {
            Error::Input { .. } => code::USAGE,
            Error::Prerequisite { .. } => code::PREREQUISITE,
            Error::Command { .. } | Error::Http { .. } | Error::Step { .. } => code::STEP_FAILED,
            Error::Timeout { .. } => code::TIMEOUT,
            Error::Smoke { .. } => code::SMOKE_FAILED,
            Error::Busy { .. } => code::BUSY,
            Error::Findings { .. } => code::FINDINGS,
            Error::Interrupted => code::INTERRUPTED,
        }
    }

    pub fn input(what: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Input { what: what.into(), problem: problem.into() }
    }

    pub fn prerequisite(problem: impl Into<String>, next: impl Into<String>) -> Error {
        Error::Prerequisite { problem: problem.into(), next: next.into() }
    }

    pub fn step(problem: impl Into<String>, next: impl Into<String>) -> Error {
        Error::Step { problem: problem.into(), next: next.into() }
    }

    /// One line for evidence and skipped checks: a failed command as its line and the last line
    /// of its stderr, anything else as its first line.
    pub fn headline(&self) -> String {
        match self {
            Error::Command { line, stderr_tail, status, .. } => {
                let last = stderr_tail.lines().rev().find(|l| !l.trim().is_empty());
                format!("`{line}`: {}", last.map(str::trim).unwrap_or(status))
            }
            other => other.to_string().lines().next().unwrap_or("").to_string(),
        }
    }

    /// Replace the advice of a command failure with advice specific to the caller.
    pub fn with_next(mut self, advice: impl Into<String>) -> Error {
        match &mut self {
            Error::Prerequisite { next, .. }
            | Error::Command { next, .. }
            | Error::Http { next, .. }
            | Error::Timeout { next, .. }
            | Error::Smoke { next, .. }
            | Error::Step { next, .. } => *next = advice.into(),
            Error::Input { .. } | Error::Busy { .. } | Error::Findings { .. } | Error::Interrupted => {}
        }
        self
    }
}

impl fmt::Display for Error {
    /// Every message is passed through the secret redactor: a secret read during the run never
    /// reaches the terminal, even inside a child's stderr or a server's error body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::Input { what, problem } => {
                format!("invalid {what}: {problem}\nNothing was changed. Fix the input and run again.")
            }
            Error::Prerequisite { problem, next } => format!("{problem}\nNext: {next}"),
            Error::Command { line, status, stderr_tail, next } => {
                let mut s = format!("command failed ({status}): {line}");
                if !stderr_tail.trim().is_empty() {
                    s.push_str("\nCommand Output (stderr, last lines):\n");
                    s.push_str(&format!("{:-<72}\n{}\n{:-<72}", "", stderr_tail.trim_end(), ""));
                }
                s.push_str(&format!("\nNext: {next}"));
                s
            }
            Error::Http { request, problem, next } => {
                format!("request failed: {request}\n{problem}\nNext: {next}")
            }
            Error::Timeout { what, after, detail, next } => {
                let mut s = format!("timed out after {}: {what}", crate::ui::human(*after));
                if !detail.trim().is_empty() {
                    s.push('\n');
                    s.push_str(detail.trim_end());
                }
                s.push_str(&format!("\nNext: {next}"));
                s
            }
            Error::Smoke { failures, next } => {
                let mut s = format!("smoke test failed: {} check(s) do not pass", failures.len());
                for failure in failures {
                    s.push_str(&format!("\n  ✗ {failure}"));
                }
                s.push_str(&format!("\nNext: {next}"));
                s
            }
            Error::Step { problem, next } => format!("{problem}\nNext: {next}"),
            Error::Busy { holder, lock } => format!(
                "another bookstore run is working on this cluster: {holder}\nNext: wait for it to \
                 finish (the lock {lock} is released when that process exits), then run again"
            ),
            Error::Findings { errors, warnings } => format!(
                "doctor found {errors} problem(s) of severity error and {warnings} warning(s), each above \
                 with its evidence\nNext: run each `fix:` command (or `bookstore up`, which restarts and registers what \
                 these call broken), then `bookstore doctor` again"
            ),
            Error::Interrupted => "interrupted (Ctrl-C): the running commands were stopped\nNext: run it \
                                   again when ready (recovery is safe to rerun: it converges from \
                                   wherever it stopped)"
                .to_string(),
        };
        f.write_str(&secret::redact(&text))
    }
}

impl std::error::Error for Error {}
