//! `bookstore watch --install | --uninstall | --status`: the watcher as a user service that
//! starts at login. macOS: a LaunchAgent (`~/Library/LaunchAgents/dev.bookstore.watch.plist` in
//! `gui/<uid>`, its log in `~/Library/Logs/bookstore/`); Linux: a systemd user unit
//! (`~/.config/systemd/user/bookstore-watch.service`, its log in the journal).
//!
//! The service runs a copy of this binary and of the stack's folder in a stable place
//! ([`crate::state::data_dir`]: `~/Library/Application Support/bookstore` on macOS,
//! `~/.local/share/bookstore` elsewhere), as Homebrew points launchd at its stable `opt` paths
//! and ollama installs its binary before writing its unit: a checkout in `~/Documents`,
//! `~/Desktop` or `~/Downloads` is closed to launchd's jobs by macOS' privacy controls, and
//! `cargo clean` or a moved checkout would leave a job respawning forever. A reinstall replaces
//! the copy. launchd is driven as Homebrew (`services_cli.rb` `launchctl_load`, `stop`) and lima
//! (`pkg/autostart/launchd/launchd.go` `RequestStart`) drive it: `bootout` whatever is loaded
//! (an error is fine), wait until `launchctl print` no longer finds the label (bootout is
//! asynchronous), `enable` (a disabled label fails `bootstrap`), then `bootstrap`; the plist is
//! 0644 (launchd skips group-writable ones). The environment that selects the engine and the
//! cluster is carried, and the node engine and the Docker endpoint are resolved at install as
//! every run resolves them ([`crate::engine::Engine::for_run`]) and written down, so a later
//! `docker context use` in a shell does not move the watcher, and the service (whose PATH may
//! lack a shim the shell has) uses the engine the install chose.
//! `--uninstall` undoes exactly what `--install` did (the log and the state file are kept). It
//! lives with the other writers (`steps/`); its `--dry-run` prints through `Ui::plan`.
//!
//! Size: two service managers side by side (launchd's and systemd's install, uninstall and status,
//! as data and commands), so each step of one reads against the other's; its last ~130 lines are
//! its tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, Manager, ServiceOp as Op};
use crate::engine::{Engine, Kind};
use crate::error::{Error, Result};
use crate::exec::{Cmd, quote};
use crate::stack::Source;
use crate::ui::Ui;
use crate::wait::{Attempt, Poll};

pub const LABEL: &str = "dev.bookstore.watch";
pub const UNIT: &str = "bookstore-watch.service";

/// How long a `bootout` may take to unload the label (it returns before it is done).
const UNLOAD_BOUND: Duration = Duration::from_secs(10);

/// Environment the service keeps from the shell it was installed from: launchd and systemd
/// start user services with a bare environment (no Homebrew PATH, no ~/.local/bin), and these
/// pick the docker CLI's config and TLS, the kubeconfig and kind's engine. (`DOCKER_HOST` and
/// `DOCKER_CONTEXT` are decided by [`carried_env`] from the endpoint resolved at install;
/// `BOOKSTORE_*` are carried too, but the stack, which the service is given as a copy.)
const CARRIED: [&str; 9] = [
    "PATH",
    "TMPDIR",
    "KUBECONFIG",
    "KIND_EXPERIMENTAL_PROVIDER",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_TLS",
    "DOCKER_API_VERSION",
];

/// What the service runs and where, as read from this process.
pub struct Inputs {
    pub home: PathBuf,
    /// Where the copy goes ([`crate::state::data_dir`]).
    pub data: PathBuf,
    /// This binary (copied for the service).
    pub exe: PathBuf,
    /// The stack file given (its folder is copied for the service); `None`: the embedded one.
    pub stack: Option<PathBuf>,
    /// `--interval` when not the default.
    pub interval: Option<String>,
    pub env: Vec<(String, String)>,
    /// What the environment's choices were (the Docker endpoint, …), said at install.
    pub notes: Vec<String>,
    /// `id -u` (launchd's `gui/<uid>` domain, `loginctl show-user`).
    pub uid: String,
}

/// One thing an install or uninstall does, in order.
#[derive(Debug)]
pub enum Do {
    /// Run it; a failure stops the install.
    Run(Cmd),
    /// Run it; a failure is fine (`bootout` of a label that is not loaded).
    Tolerate(Cmd),
    /// Run it until it fails (the label is gone), within [`UNLOAD_BOUND`].
    UntilGone(Cmd),
    /// Copy the binary and the stack's folder, write the service file (mode 0644).
    WriteFiles,
    /// Remove the service file and the copy.
    RemoveFiles,
}

/// Everything an install writes and runs (pure: the same inputs give the same plan).
#[derive(Debug)]
pub struct Plan {
    pub manager: Manager,
    pub file: PathBuf,
    pub contents: String,
    /// Folders the service needs (created when missing, kept on uninstall).
    pub dirs: Vec<PathBuf>,
    /// Where the copy lives; `bin/bookstore` and `stack/` under it.
    pub data: PathBuf,
    pub exe: PathBuf,
    /// The stack's folder, and the stack file's name in it.
    pub stack: Option<(PathBuf, String)>,
    pub install: Vec<Do>,
    pub uninstall: Vec<Do>,
    pub status: Cmd,
    /// systemd: is lingering on (the user manager starts at boot)?
    pub linger: Option<Cmd>,
    /// How to read its log.
    pub log: String,
}

impl Plan {
    pub fn binary(&self) -> PathBuf {
        self.data.join("bin").join("bookstore")
    }

    pub fn stack_copy(&self) -> PathBuf {
        self.data.join("stack")
    }

    /// The service's command line: the copy, with the copied stack.
    fn argv(data: &Path, stack: Option<&(PathBuf, String)>, interval: Option<&str>) -> Vec<String> {
        let mut argv = vec![data.join("bin/bookstore").display().to_string(), "watch".to_string()];
        if let Some((_, name)) = stack {
            argv.extend(["--stack".to_string(), data.join("stack").join(name).display().to_string()]);
        }
        if let Some(every) = interval {
            argv.extend(["--interval".to_string(), every.to_string()]);
        }
        argv
    }
}

pub fn plan(manager: Manager, i: &Inputs) -> Plan {
    let data = i.data.clone();
    let stack = i.stack.as_ref().map(|file| {
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (dir, name)
    });
    let argv = Plan::argv(&data, stack.as_ref(), i.interval.as_deref());
    match manager {
        Manager::Launchd => {
            let agents = i.home.join("Library/LaunchAgents");
            let logs = i.home.join("Library/Logs/bookstore");
            let file = agents.join(format!("{LABEL}.plist"));
            let domain = format!("gui/{}", i.uid);
            let target = format!("{domain}/{LABEL}");
            let log = logs.join("watch.log");
            Plan {
                manager,
                contents: plist(&argv, &i.env, &log),
                install: vec![
                    Do::Tolerate(launchctl(&["bootout", &target])),
                    Do::UntilGone(launchctl(&["print", &target])),
                    Do::WriteFiles,
                    Do::Run(launchctl(&["enable", &target])),
                    Do::Run(launchctl(&["bootstrap", &domain, &file.display().to_string()])),
                ],
                uninstall: vec![
                    Do::Tolerate(launchctl(&["bootout", &target])),
                    Do::UntilGone(launchctl(&["print", &target])),
                    Do::RemoveFiles,
                ],
                status: launchctl(&["print", &target]),
                linger: None,
                log: format!("tail -f {}", quote(&log.display().to_string())),
                file,
                dirs: vec![agents, logs],
                data,
                exe: i.exe.clone(),
                stack,
            }
        }
        Manager::Systemd => {
            let dir = i.home.join(".config/systemd/user");
            Plan {
                manager,
                file: dir.join(UNIT),
                contents: unit(&argv, &i.env),
                dirs: vec![dir],
                // `restart`, not `enable --now`: a reinstall runs the new copy.
                install: vec![
                    Do::WriteFiles,
                    Do::Run(systemctl(&["daemon-reload"])),
                    Do::Run(systemctl(&["enable", UNIT])),
                    Do::Run(systemctl(&["restart", UNIT])),
                ],
                uninstall: vec![
                    Do::Tolerate(systemctl(&["disable", "--now", UNIT])),
                    Do::RemoveFiles,
                    Do::Run(systemctl(&["daemon-reload"])),
                ],
                status: systemctl(&["status", "--no-pager", UNIT]),
                linger: Some(
                    Cmd::new("loginctl")
                        .args(["show-user", &i.uid, "--property=Linger", "--value"])
                        .deadline(Duration::from_secs(10)),
                ),
                log: "journalctl --user -u bookstore-watch -f".to_string(),
                data,
                exe: i.exe.clone(),
                stack,
            }
        }
    }
}

fn launchctl(args: &[&str]) -> Cmd {
    Cmd::new("launchctl").args(args.iter().copied()).deadline(Duration::from_secs(30))
}

fn systemctl(args: &[&str]) -> Cmd {
    Cmd::new("systemctl").arg("--user").args(args.iter().copied()).deadline(Duration::from_secs(60))
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A LaunchAgent property list: run at load, restarted when it fails, stdout and stderr to the
/// log file. (Its comment names no flag: `--` is not allowed inside an XML comment.)
fn plist(argv: &[String], env: &[(String, String)], log: &Path) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by bookstore watch at install; removed at uninstall. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    s.push_str(&format!("  <key>Label</key>\n  <string>{LABEL}</string>\n"));
    s.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for a in argv {
        s.push_str(&format!("    <string>{}</string>\n", xml(a)));
    }
    s.push_str("  </array>\n  <key>EnvironmentVariables</key>\n  <dict>\n");
    for (k, v) in env {
        s.push_str(&format!("    <key>{}</key>\n    <string>{}</string>\n", xml(k), xml(v)));
    }
    s.push_str("  </dict>\n  <key>RunAtLoad</key>\n  <true/>\n");
    s.push_str("  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n");
    s.push_str("  <key>ThrottleInterval</key>\n  <integer>10</integer>\n");
    s.push_str("  <key>ProcessType</key>\n  <string>Background</string>\n");
    let log = xml(&log.display().to_string());
    s.push_str(&format!("  <key>StandardOutPath</key>\n  <string>{log}</string>\n"));
    s.push_str(&format!("  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"));
    s.push_str("</dict>\n</plist>\n");
    s
}

/// One word of a unit's `ExecStart=` line: `%` is a specifier and `$` a variable there
/// (systemd.service "Command lines": `$$` is a literal `$`); quoted when it has spaces, quotes
/// or backslashes.
fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    quote_unit(&escaped)
}

/// One `Environment=` assignment. systemd.exec: "Variable expansion is not performed inside the
/// strings, however, specifier expansion is possible. The `$` character has no special
/// meaning": only `%` is doubled; C escapes are processed (backslashes doubled, a newline as
/// `\n`), and it is quoted when it has spaces or quotes.
fn env_assignment(key: &str, value: &str) -> String {
    let text = format!("{key}={value}").replace('%', "%%").replace('\\', "\\\\").replace('\n', "\\n");
    if !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || "\"'".contains(c)) {
        return text;
    }
    format!("\"{}\"", text.replace('"', "\\\""))
}

fn quote_unit(escaped: &str) -> String {
    if !escaped.is_empty() && !escaped.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        return escaped.to_string();
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A systemd user unit: started with the user's manager (at login; at boot with lingering),
/// restarted when it fails, logging to the journal.
fn unit(argv: &[String], env: &[(String, String)]) -> String {
    let exec: Vec<String> = argv.iter().map(|a| exec_word(a)).collect();
    let mut s = String::from(
        "# Written by `bookstore watch --install`; removed by `bookstore watch --uninstall`.\n\
         [Unit]\n\
         Description=bookstore watch: heal the BookStore kind stack after Docker restarts\n\n\
         [Service]\n\
         Type=simple\n",
    );
    s.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    for (k, v) in env {
        s.push_str(&format!("Environment={}\n", env_assignment(k, v)));
    }
    s.push_str("Restart=on-failure\nRestartSec=10s\n\n[Install]\nWantedBy=default.target\n");
    s
}

/// The service's environment from the shell's (`vars`) and the engine resolved at install (as
/// every run resolves it): a podman or nerdctl engine written down as
/// `KIND_EXPERIMENTAL_PROVIDER`; Docker's endpoint written down as `DOCKER_HOST` (so a later
/// `docker context use` does not move the watcher to another daemon), or, for a context whose
/// TLS material lives in the context store, the context's name. Pure; the notes say what was
/// decided.
pub fn carried_env(vars: &[(String, String)], engine: &Engine) -> (Vec<(String, String)>, Vec<String>) {
    let get = |k: &str| vars.iter().find(|(key, v)| key == k && !v.is_empty()).map(|(_, v)| v.clone());
    let mut env: Vec<(String, String)> = CARRIED
        .iter()
        .filter(|k| **k != "KIND_EXPERIMENTAL_PROVIDER")
        .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
        .collect();
    let mut notes = Vec::new();
    if engine.kind != Kind::Docker || get("KIND_EXPERIMENTAL_PROVIDER").is_some() {
        notes.push(format!(
            "the node engine is fixed at install: KIND_EXPERIMENTAL_PROVIDER={} ({})",
            engine.program, engine.why
        ));
        env.push(("KIND_EXPERIMENTAL_PROVIDER".into(), engine.program.clone()));
    }
    let carried = |env: &mut Vec<(String, String)>| {
        env.extend(
            ["DOCKER_HOST", "DOCKER_CONTEXT"].iter().filter_map(|k| get(k).map(|v| (k.to_string(), v))),
        )
    };
    let Some(endpoint) = engine.endpoint.clone() else {
        // Not Docker: whatever the shell set is the user's, for other tools.
        carried(&mut env);
        return (with_own(env, vars), notes);
    };
    match endpoint {
        Ok(e) if !e.tls => {
            let name = e.context.as_deref().unwrap_or("DOCKER_HOST");
            notes.push(format!(
                "the Docker endpoint is fixed at install: DOCKER_HOST={} ({name}); a later `docker context use` does not move the watcher",
                e.host
            ));
            env.push(("DOCKER_HOST".into(), e.host));
        }
        Ok(e) => {
            let name = e.context.clone().unwrap_or_default();
            notes.push(format!(
                "the Docker context {name} ({}) keeps its TLS material in the context store: the service uses it by name",
                e.host
            ));
            env.push(("DOCKER_CONTEXT".into(), name));
        }
        Err(why) => {
            notes.push(format!(
                "the Docker endpoint could not be resolved ({why}): DOCKER_HOST and DOCKER_CONTEXT carried as set"
            ));
            carried(&mut env);
        }
    }
    (with_own(env, vars), notes)
}

/// `BOOKSTORE_*` but the stack (which the service is given as a copy), sorted, after `env`.
fn with_own(mut env: Vec<(String, String)>, vars: &[(String, String)]) -> Vec<(String, String)> {
    let mut own: Vec<(String, String)> = vars
        .iter()
        .filter(|(k, v)| k.starts_with("BOOKSTORE_") && k != "BOOKSTORE_STACK" && !v.is_empty())
        .cloned()
        .collect();
    own.sort();
    env.extend(own);
    env
}

/// This process's view: the binary, the stack file, the environment to keep, the user id.
fn inputs(config: &Config, interval: Option<&str>, manager: Manager) -> Result<Inputs> {
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        Error::prerequisite("HOME is not set: the user service lives under it", "set HOME and run again")
    })?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::step(format!("cannot tell where this binary is: {e}"), "run it by its path"))?;
    let stack = match &config.stack.source {
        Source::File(path) => Some(path.canonicalize().unwrap_or_else(|_| path.clone())),
        Source::Embedded => None,
    };
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let (env, notes) = carried_env(&vars, Engine::for_run());
    let uid = Cmd::new("id").arg("-u").run()?.stdout.trim().to_string();
    let data = crate::state::data_dir(&home, manager == Manager::Launchd);
    Ok(Inputs { home, data, exe, stack, interval: interval.map(String::from), env, notes, uid })
}

pub fn run(config: &Config, ui: &Ui, op: Op, manager: Manager, interval: Option<&str>) -> Result<()> {
    let inputs = inputs(config, interval, manager)?;
    let plan = plan(manager, &inputs);
    let tool = match manager {
        Manager::Launchd => "launchctl",
        Manager::Systemd => "systemctl",
    };
    if config.dry_run {
        ui.plan(&describe(&plan, op));
        return Ok(());
    }
    crate::observe::tools(&[tool])?;
    match op {
        Op::Install => install(ui, &plan, &inputs.notes),
        Op::Uninstall => uninstall(ui, &plan),
        Op::Status => status(ui, &plan),
    }
}

/// The files and the commands, as pasteable lines (`--dry-run`).
pub fn describe(plan: &Plan, op: Op) -> Vec<String> {
    let q = |p: &Path| quote(&p.display().to_string());
    let file = q(&plan.file);
    let mut lines = Vec::new();
    let steps = match op {
        Op::Install => &plan.install,
        Op::Uninstall => &plan.uninstall,
        Op::Status => {
            return vec![format!("test -f {file}"), plan.status.to_string()];
        }
    };
    for step in steps {
        match step {
            Do::Run(cmd) => lines.push(cmd.to_string()),
            Do::Tolerate(cmd) => lines.push(format!("{cmd} || true")),
            Do::UntilGone(cmd) => lines.push(format!(
                "while {cmd} >/dev/null 2>&1; do sleep 1; done   # unloaded (≤ {}s)",
                UNLOAD_BOUND.as_secs()
            )),
            Do::WriteFiles => {
                let mut dirs: Vec<String> = plan.dirs.iter().map(|d| q(d)).collect();
                dirs.push(q(&plan.data.join("bin")));
                lines.push(format!("mkdir -p {}", dirs.join(" ")));
                lines.push(format!(
                    "cp {} {}   # this binary, for the service",
                    q(&plan.exe),
                    q(&plan.binary())
                ));
                if let Some((dir, _)) = &plan.stack {
                    lines.push(format!(
                        "rm -rf {copy} && cp -R {} {copy}   # the stack's folder",
                        q(dir),
                        copy = q(&plan.stack_copy())
                    ));
                }
                lines.push(format!("cat > {file} <<'EOF'\n{}EOF", plan.contents));
                lines.push(format!("chmod 0644 {file}"));
            }
            Do::RemoveFiles => {
                lines.push(format!("rm {file}"));
                lines.push(format!("rm -rf {} {}", q(&plan.data.join("bin")), q(&plan.stack_copy())));
            }
        }
    }
    if op == Op::Install {
        if let Some(linger) = &plan.linger {
            lines.push(format!("{linger}   # yes: it starts at boot; no: at your login"));
        }
        lines.push(format!("# its log: {}", plan.log));
    }
    lines
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::step(format!("cannot {what} {}: {e}", path.display()), "check the folder's permissions")
}

/// Run `cmd` until it fails (the label is no longer loaded), within the bound (the one retry
/// loop, [`Poll`]).
fn until_gone(ui: &Ui, cmd: &Cmd) -> Result<()> {
    let what = format!("{LABEL} to be unloaded after `launchctl bootout`");
    let next = format!("see `{cmd}`; then `bookstore watch --install` again");
    let poll = Poll {
        first: Duration::from_millis(500),
        ceiling: Duration::from_millis(500),
        ..Poll::new(&what, UNLOAD_BOUND, &next)
    };
    poll.run(|| match cmd.run_unchecked() {
        Err(e) => Attempt::Fail(e),
        Ok(out) if !out.status.success() => Attempt::Done(()),
        Ok(_) => {
            ui.detail("", "waiting for launchd to unload it");
            Attempt::Retry("still loaded".into())
        }
    })
    .map_err(|e| match e {
        Error::Timeout { .. } => Error::step(
            format!("{LABEL} is still loaded {}s after `launchctl bootout`", UNLOAD_BOUND.as_secs()),
            next.clone(),
        ),
        other => other,
    })
}

/// Copy a folder (the stack's), leaving out what is never the stack's (`.git`, `target`,
/// `node_modules`); at most `budget` bytes.
fn copy_dir(from: &Path, to: &Path, budget: &mut u64) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if [".git", "target", "node_modules"].iter().any(|skip| name == *skip) {
                continue;
            }
            copy_dir(&entry.path(), &to.join(&name), budget)?;
        } else if kind.is_file() || kind.is_symlink() {
            let size = std::fs::metadata(entry.path())?.len();
            if size > *budget {
                return Err(std::io::Error::other(format!(
                    "{} is bigger than a stack's folder should be: give --stack a file in a folder of its own",
                    from.display()
                )));
            }
            *budget -= size;
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// The copy (binary and stack folder, each written beside and renamed into place, so a
/// reinstall replaces it whole), then the service file, mode 0644 whatever the umask.
fn write_files(ui: &Ui, plan: &Plan) -> Result<()> {
    for dir in plan.dirs.iter().chain([&plan.data.join("bin")]) {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    }
    let binary = plan.binary();
    let fresh = binary.with_extension("new");
    std::fs::copy(&plan.exe, &fresh).map_err(|e| io_error("copy this binary to", &fresh, e))?;
    set_mode(&fresh, 0o755)?;
    std::fs::rename(&fresh, &binary).map_err(|e| io_error("replace", &binary, e))?;
    ui.ok_line(&format!("copied this binary to {}", binary.display()));
    if let Some((dir, name)) = &plan.stack {
        let copy = plan.stack_copy();
        let fresh = plan.data.join("stack.new");
        let _ = std::fs::remove_dir_all(&fresh);
        copy_dir(dir, &fresh, &mut 100_000_000)
            .map_err(|e| io_error("copy the stack's folder to", &fresh, e))?;
        // The copy must stand on its own (a stack that reaches outside its folder does not).
        if let Err(e) = crate::stack::load(Source::File(fresh.join(name))) {
            let _ = std::fs::remove_dir_all(&fresh);
            return Err(Error::input(
                "stack file",
                format!(
                    "the service runs a copy of {}, and the copy does not load: {e}; keep what the stack file names inside its folder",
                    dir.display()
                ),
            ));
        }
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::rename(&fresh, &copy).map_err(|e| io_error("replace", &copy, e))?;
        ui.ok_line(&format!("copied the stack's folder {} to {}", dir.display(), copy.display()));
    }
    std::fs::write(&plan.file, &plan.contents).map_err(|e| io_error("write", &plan.file, e))?;
    set_mode(&plan.file, 0o644)?;
    ui.ok_line(&format!("wrote {}", plan.file.display()));
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("chmod", path, e))
}

fn remove_files(ui: &Ui, plan: &Plan) -> Result<()> {
    if plan.file.exists() {
        std::fs::remove_file(&plan.file).map_err(|e| io_error("remove", &plan.file, e))?;
        ui.ok_line(&format!("removed {}", plan.file.display()));
    }
    for copy in [plan.binary(), plan.stack_copy()] {
        let gone = if copy.is_dir() { std::fs::remove_dir_all(&copy) } else { std::fs::remove_file(&copy) };
        match gone {
            Ok(()) => ui.ok_line(&format!("removed {}", copy.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &copy, e)),
        }
    }
    let _ = std::fs::remove_dir(plan.data.join("bin"));
    Ok(())
}

fn install(ui: &Ui, plan: &Plan, notes: &[String]) -> Result<()> {
    if plan.file.exists() {
        ui.info(&format!("{} exists: replacing the installed service and its copy", plan.file.display()));
    }
    for note in notes {
        ui.info(note);
    }
    for step in &plan.install {
        let done = match step {
            Do::Run(cmd) => cmd.run().map(|_| ui.ok_line(&cmd.to_string())),
            Do::Tolerate(cmd) => cmd.run_unchecked().map(|_| ()),
            Do::UntilGone(cmd) => until_gone(ui, cmd),
            Do::WriteFiles => write_files(ui, plan),
            Do::RemoveFiles => remove_files(ui, plan),
        };
        if let Err(err) = done {
            // Leave nothing half-installed.
            let _ = remove_files(ui, plan);
            return Err(err.with_next(format!(
                "nothing is installed ({} and the copy removed); fix the cause, then `bookstore watch --install` again",
                plan.file.display()
            )));
        }
    }
    match plan.manager {
        Manager::Launchd => ui.ok_line(&format!("bookstore watch runs at login; its log: {}", plan.log)),
        Manager::Systemd => {
            let linger = plan.linger.as_ref().and_then(|c| c.run().ok()).map(|o| o.stdout.trim().to_string());
            if linger.as_deref() == Some("yes") {
                ui.ok_line(&format!("bookstore watch runs at boot (lingering is on); its log: {}", plan.log));
            } else {
                ui.ok_line(&format!("bookstore watch runs at login; its log: {}", plan.log));
                ui.warn(&format!(
                    "a user service starts with your login, not at boot: to heal after a reboot before you log in, \
                     run `loginctl enable-linger {}` (your user manager then starts at boot)",
                    std::env::var("USER").unwrap_or_else(|_| "$USER".into())
                ));
            }
        }
    }
    Ok(())
}

fn uninstall(ui: &Ui, plan: &Plan) -> Result<()> {
    if !plan.file.exists() && !plan.binary().exists() {
        ui.ok_line(&format!("not installed ({} does not exist): nothing to remove", plan.file.display()));
        return Ok(());
    }
    for step in &plan.uninstall {
        match step {
            Do::Run(cmd) => {
                cmd.run()?;
                ui.ok_line(&cmd.to_string());
            }
            // Stopping a service that is no longer loaded is not a failure: the files go all the same.
            Do::Tolerate(cmd) => {
                let out = cmd.run_unchecked()?;
                if out.status.success() {
                    ui.ok_line(&cmd.to_string());
                }
            }
            Do::UntilGone(cmd) => until_gone(ui, cmd)?,
            Do::RemoveFiles => remove_files(ui, plan)?,
            Do::WriteFiles => unreachable!("an uninstall writes nothing"),
        }
    }
    ui.ok_line(&format!("uninstalled (the log stays: {})", plan.log));
    Ok(())
}

/// What `launchctl print <service>` says of a loaded job: its `state` (`running`, `not running`,
/// `spawn scheduled`, …) and `last exit code` (a number, or `(never exited)`), the first of each
/// (nested blocks have states of their own).
pub fn launchd_state(print: &str) -> (Option<String>, Option<String>) {
    let field =
        |name: &str| print.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()));
    (field("state = "), field("last exit code = "))
}

fn status(ui: &Ui, plan: &Plan) -> Result<()> {
    if !plan.file.exists() {
        return Err(Error::prerequisite(
            format!(
                "bookstore watch is not installed as a user service ({} does not exist)",
                plan.file.display()
            ),
            "install it with `bookstore watch --install`",
        ));
    }
    ui.ok_line(&format!("installed: {}", plan.file.display()));
    let out = plan.status.run_unchecked()?;
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        ui.detail("", line);
    }
    ui.info(&format!("its log: {}", plan.log));
    let failure = |why: &str| plan.status.failure(why, &out.stderr);
    match plan.manager {
        // `print` succeeds for any loaded job, running or not (throttled, respawning).
        Manager::Launchd if out.status.success() => match launchd_state(&out.stdout) {
            (Some(state), _) if state == "running" => Ok(()),
            (state, exit) => Err(Error::step(
                format!(
                    "{LABEL} is loaded but not running (state = {}; last exit code = {})",
                    state.as_deref().unwrap_or("unknown"),
                    exit.as_deref().unwrap_or("unknown")
                ),
                format!(
                    "read its log (`{}`), fix the cause, then `bookstore watch --install` again",
                    plan.log
                ),
            )),
        },
        Manager::Launchd => Err(failure(&format!("exit {}", out.status.code().unwrap_or(-1)))
            .with_next("it is not loaded: `bookstore watch --install`")),
        Manager::Systemd if out.status.success() => Ok(()),
        Manager::Systemd => Err(failure(&format!("exit {}", out.status.code().unwrap_or(-1))).with_next(
            "start it: `systemctl --user start bookstore-watch` (or `bookstore watch --install`)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            home: PathBuf::from("/home/a b"),
            data: PathBuf::from("/home/a b/.local/share/bookstore"),
            exe: PathBuf::from("/src/book store/target/debug/bookstore"),
            stack: Some(PathBuf::from("/src/book store/infra/100%.yaml")),
            interval: None,
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("KUBECONFIG".into(), "/k/$x \"q\" \\ 5%".into()),
            ],
            notes: vec![],
            uid: "501".into(),
        }
    }

    #[test]
    fn the_unit_escapes_what_systemd_would_expand_and_nothing_else() {
        let p = plan(Manager::Systemd, &inputs());
        assert_eq!(p.file, PathBuf::from("/home/a b/.config/systemd/user/bookstore-watch.service"));
        // The copy, not the checkout; `%` doubled, `$$` on ExecStart only.
        assert!(
            p.contents.contains(
                "ExecStart=\"/home/a b/.local/share/bookstore/bin/bookstore\" watch --stack \"/home/a b/.local/share/bookstore/stack/100%%.yaml\"\n"
            ),
            "{}",
            p.contents
        );
        assert!(
            p.contents.contains("Environment=\"KUBECONFIG=/k/$x \\\"q\\\" \\\\ 5%%\"\n"),
            "{}",
            p.contents
        );
        assert_eq!(exec_word("a$b"), "a$$b");
        assert_eq!(env_assignment("K", "a$b"), "K=a$b");
        assert_eq!(env_assignment("K", "a\nb"), "K=a\\nb");
        let argv = |steps: &[Do]| {
            steps
                .iter()
                .map(|d| match d {
                    Do::Run(c) => c.argv().join(" "),
                    Do::Tolerate(c) => format!("{} || true", c.argv().join(" ")),
                    Do::UntilGone(c) => format!("until gone: {}", c.argv().join(" ")),
                    Do::WriteFiles => "write".into(),
                    Do::RemoveFiles => "remove".into(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            argv(&p.install),
            [
                "write",
                "systemctl --user daemon-reload",
                "systemctl --user enable bookstore-watch.service",
                "systemctl --user restart bookstore-watch.service"
            ]
        );
        let mut i = inputs();
        i.data = PathBuf::from("/home/a b/Library/Application Support/bookstore");
        let l = plan(Manager::Launchd, &i);
        assert_eq!(
            argv(&l.install),
            [
                "launchctl bootout gui/501/dev.bookstore.watch || true",
                "until gone: launchctl print gui/501/dev.bookstore.watch",
                "write",
                "launchctl enable gui/501/dev.bookstore.watch",
                "launchctl bootstrap gui/501 /home/a b/Library/LaunchAgents/dev.bookstore.watch.plist"
            ]
        );
        assert_eq!(
            l.binary(),
            PathBuf::from("/home/a b/Library/Application Support/bookstore/bin/bookstore")
        );
        assert!(l.contents.contains("<string>/home/a b/Library/Logs/bookstore/watch.log</string>"));
    }

    #[test]
    fn launchctl_print_tells_running_from_loaded() {
        let running = "gui/501/dev.bookstore.watch = {\n\tactive count = 1\n\tstate = running\n\tpid = 4242\n\tlast exit code = (never exited)\n\tdomain = {\n\t\tstate = active\n\t}\n}\n";
        assert_eq!(launchd_state(running), (Some("running".into()), Some("(never exited)".into())));
        let spinning = "gui/501/dev.bookstore.watch = {\n\tstate = not running\n\truns = 7\n\tlast exit code = 78: EX_CONFIG\n}\n";
        assert_eq!(launchd_state(spinning), (Some("not running".into()), Some("78: EX_CONFIG".into())));
    }

    #[test]
    fn the_endpoint_is_written_down_and_the_engines_choices_carried() {
        let vars: Vec<(String, String)> = [
            ("PATH", "/opt/homebrew/bin:/usr/bin"),
            ("DOCKER_CONTEXT", "colima"),
            ("DOCKER_CONFIG", "/c"),
            ("KIND_EXPERIMENTAL_PROVIDER", "podman"),
            ("BOOKSTORE_UI_SERVICE_CONTEXT", "/src/ui"),
            ("BOOKSTORE_STACK", "/src/infra/stack.yaml"),
            ("HOME", "/h"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let pinned = |tls: bool| Engine {
            endpoint: Some(Ok(crate::engine::endpoint::Endpoint {
                context: Some("colima".into()),
                host: "unix:///c/colima.sock".into(),
                tls,
                from: "DOCKER_CONTEXT".into(),
            })),
            ..Engine::of(Kind::Docker)
        };
        let docker_vars: Vec<(String, String)> =
            vars.iter().filter(|(k, _)| k != "KIND_EXPERIMENTAL_PROVIDER").cloned().collect();
        let (env, notes) = carried_env(&docker_vars, &pinned(false));
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["PATH", "DOCKER_CONFIG", "DOCKER_HOST", "BOOKSTORE_UI_SERVICE_CONTEXT"]);
        assert!(env.contains(&("DOCKER_HOST".into(), "unix:///c/colima.sock".into())));
        assert!(notes[0].contains("docker context use"), "{notes:?}");
        let (env, _) = carried_env(&docker_vars, &pinned(true));
        assert!(
            env.contains(&("DOCKER_CONTEXT".into(), "colima".into()))
                && !env.iter().any(|(k, _)| k == "DOCKER_HOST")
        );
        let unresolved = Engine { endpoint: Some(Err("no docker".into())), ..Engine::of(Kind::Docker) };
        let (env, _) = carried_env(&docker_vars, &unresolved);
        assert!(env.contains(&("DOCKER_CONTEXT".into(), "colima".into())));
        // podman, chosen by the shell's KIND_EXPERIMENTAL_PROVIDER (or found where docker is not):
        // written down for the service, whose PATH and environment are bare.
        let (env, notes) = carried_env(&vars, &Engine::of(Kind::Podman));
        assert!(env.contains(&("KIND_EXPERIMENTAL_PROVIDER".into(), "podman".into())));
        assert!(notes[0].contains("node engine is fixed at install"), "{notes:?}");
        assert!(env.contains(&("DOCKER_CONTEXT".into(), "colima".into())));
    }
}
