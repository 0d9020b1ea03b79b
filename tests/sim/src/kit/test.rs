//! The one way a test runs `bookstore`: a builder in the manner of casey/just's `tests/test.rs`.
//! `Test::new().world(&w).args(["up"]).json().code(3).stderr_has("…").run()` runs this build's
//! binary with the world's environment (its kubeconfig, Docker socket, stand-ins, the recording
//! wrappers first on PATH, its own temp dir, `--stack` its stack copy), checks every expectation
//! and returns the [`Run`]; the world keeps it for its checks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::run::{Run, Running};
use super::world::World;

pub struct Test<'w> {
    program: PathBuf,
    args: Vec<OsString>,
    world: Option<&'w World>,
    json: bool,
    stack: bool,
    env: Vec<(OsString, Option<OsString>)>,
    path_first: Vec<PathBuf>,
    stdin: Option<Vec<u8>>,
    umask: Option<u32>,
    code: Option<i32>,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
    stderr_lacks: Vec<String>,
}

impl Default for Test<'_> {
    fn default() -> Self {
        Test::new()
    }
}

impl<'w> Test<'w> {
    /// `bookstore` (this build's), expected to exit 0, with `NO_COLOR` and no stdin.
    pub fn new() -> Test<'w> {
        Test {
            program: bookstore(),
            args: Vec::new(),
            world: None,
            json: false,
            stack: true,
            env: vec![("NO_COLOR".into(), Some("1".into()))],
            path_first: Vec::new(),
            stdin: None,
            umask: None,
            code: Some(0),
            stdout_has: Vec::new(),
            stderr_has: Vec::new(),
            stderr_lacks: Vec::new(),
        }
    }

    /// Another copy of `bookstore` (what an installed service runs), not this build's.
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = path.into();
        self
    }

    /// Run it under this umask (what a user's shell may have: files it writes must not take it).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Run in this world: its environment, `--stack` its stack copy.
    pub fn world(mut self, world: &'w World) -> Test<'w> {
        self.world = Some(world);
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--json`, and its protocol checked (one event a line, the summary last with the code).
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    /// No `--stack` (the embedded default, or the test names one).
    pub fn no_stack(mut self) -> Self {
        self.stack = false;
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// A folder first on PATH (stand-ins for tools the world does not model).
    pub fn path_first(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_first.push(dir.into());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The exit code expected (0 unless told).
    pub fn code(mut self, code: i32) -> Self {
        self.code = Some(code);
        self
    }

    /// Any exit code: the test reads the outcome itself.
    pub fn any_code(mut self) -> Self {
        self.code = None;
        self
    }

    pub fn stdout_has(mut self, text: impl Into<String>) -> Self {
        self.stdout_has.push(text.into());
        self
    }

    pub fn stderr_has(mut self, text: impl Into<String>) -> Self {
        self.stderr_has.push(text.into());
        self
    }

    pub fn stderr_lacks(mut self, text: impl Into<String>) -> Self {
        self.stderr_lacks.push(text.into());
        self
    }

    /// The command as it will run.
    pub fn command(&self) -> Command {
        // A umask is set by a shell that then becomes the program (the argv passed as "$@").
        let (program, first): (OsString, Vec<OsString>) = match self.umask {
            None => (self.program.clone().into(), Vec::new()),
            Some(mask) => (
                "sh".into(),
                vec![
                    "-c".into(),
                    format!("umask {mask:03o}; exec \"$@\"").into(),
                    "sh".into(),
                    self.program.clone().into(),
                ],
            ),
        };
        let mut cmd = match self.world {
            Some(w) => w.sim().command(&program.to_string_lossy()),
            None => Command::new(&program),
        };
        cmd.args(first).args(&self.args);
        if let Some(w) = self.world {
            if self.stack {
                cmd.arg("--stack").arg(w.stack_path());
            }
            let path =
                w.sim().env().into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v).unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", w.wrappers().display()));
            cmd.env("TMPDIR", w.dir().join("tmp"));
            cmd.current_dir(w.dir());
        }
        if self.json {
            cmd.arg("--json");
        }
        if !self.path_first.is_empty() {
            let rest = std::env::var_os("PATH").unwrap_or_default();
            let rest = self.world.map_or(rest, |w| {
                OsString::from(format!(
                    "{}:{}",
                    w.wrappers().display(),
                    w.sim().env().into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v).unwrap_or_default()
                ))
            });
            let mut dirs: Vec<PathBuf> = self.path_first.clone();
            dirs.extend(std::env::split_paths(&rest));
            cmd.env("PATH", std::env::join_paths(dirs).expect("a PATH"));
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd
    }

    /// Run to the end; every expectation checked.
    #[track_caller]
    pub fn run(self) -> Run {
        let mut cmd = self.command();
        let run = match &self.stdin {
            None => Run::from(cmd.output().expect("bookstore runs")),
            Some(bytes) => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("bookstore starts");
                let mut input = child.stdin.take().expect("piped");
                std::io::Write::write_all(&mut input, bytes).expect("stdin written");
                drop(input);
                Run::from(child.wait_with_output().expect("bookstore runs"))
            }
        };
        if std::env::var_os("KIT_SHOW").is_some() {
            eprintln!("$ {cmd:?}\nexit {}\n{}", run.code, run.stderr);
        }
        if let Some(w) = self.world {
            w.keep(&run);
        }
        if let Some(code) = self.code {
            run.expect(code);
        }
        if self.json {
            run.assert_events();
        }
        for text in &self.stdout_has {
            assert!(run.stdout.contains(text.as_str()), "stdout lacks {text:?}\n--- stdout\n{}", run.stdout);
        }
        for text in &self.stderr_has {
            assert!(run.stderr.contains(text.as_str()), "stderr lacks {text:?}\n--- stderr\n{}", run.stderr);
        }
        for text in &self.stderr_lacks {
            assert!(!run.stderr.contains(text.as_str()), "stderr has {text:?}\n--- stderr\n{}", run.stderr);
        }
        run
    }

    /// Start it and return at once: its events as they come ([`Running`]); the exit code and
    /// `--json`'s protocol are checked when it is waited for.
    pub fn spawn(self) -> Running<'w> {
        Running::start(self.command(), self.world, self.json, self.code)
    }
}

/// This build's `bookstore`: cargo names it to the integration tests; else the binary beside the
/// test's own folder (`target/<profile>/bookstore`, the test in `target/<profile>/deps`).
fn bookstore() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_bookstore") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    dir.join("bookstore")
}
