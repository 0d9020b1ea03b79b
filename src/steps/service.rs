//! `bookstore watch --install | --uninstall | --status`: the watcher as a user service that
//! starts at login. macOS: a LaunchAgent (`~/Library/LaunchAgents/dev.bookstore.watch.plist`,
//! `launchctl bootstrap gui/<uid>`, its log in `~/Library/Logs/bookstore/`); Linux: a systemd
//! user unit (`~/.config/systemd/user/bookstore-watch.service`, `systemctl --user enable --now`,
//! its log in the journal). The service runs this binary with the stack file it was installed
//! with. `--uninstall` undoes exactly what `--install` did: the service stopped and disabled,
//! the file removed (the log is kept).

use std::path::{Path, PathBuf};

use crate::config::{Config, Manager, ServiceOp as Op};
use crate::error::{Error, Result};
use crate::exec::{Cmd, quote};
use crate::stack::Source;
use crate::ui::Ui;

pub const LABEL: &str = "dev.bookstore.watch";
pub const UNIT: &str = "bookstore-watch.service";

/// Environment the service keeps from the shell it was installed from: launchd and systemd
/// start user services with a bare PATH (no Homebrew, no ~/.local/bin) and none of the others.
const KEPT_ENV: [&str; 4] = ["PATH", "DOCKER_HOST", "KUBECONFIG", "TMPDIR"];

/// What the service runs and where, as read from this process.
pub struct Inputs {
    pub home: PathBuf,
    /// The installed binary, then its arguments (`watch --stack <file> …`).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `id -u` (launchd's `gui/<uid>` domain).
    pub uid: String,
}

/// Everything an install writes and runs (pure: the same inputs give the same plan).
#[derive(Debug)]
pub struct Plan {
    pub manager: Manager,
    pub file: PathBuf,
    pub contents: String,
    /// Folders the service needs (created when missing, kept on uninstall).
    pub dirs: Vec<PathBuf>,
    pub install: Vec<Cmd>,
    pub uninstall: Vec<Cmd>,
    pub status: Cmd,
    /// How to read its log.
    pub log: String,
}

pub fn plan(manager: Manager, i: &Inputs) -> Plan {
    match manager {
        Manager::Launchd => {
            let agents = i.home.join("Library/LaunchAgents");
            let logs = i.home.join("Library/Logs/bookstore");
            let file = agents.join(format!("{LABEL}.plist"));
            let domain = format!("gui/{}", i.uid);
            let log = logs.join("watch.log");
            Plan {
                manager,
                contents: plist(&i.argv, &i.env, &log),
                install: vec![launchctl(&["bootstrap", &domain, &file.display().to_string()])],
                uninstall: vec![launchctl(&["bootout", &format!("{domain}/{LABEL}")])],
                status: launchctl(&["print", &format!("{domain}/{LABEL}")]),
                log: format!("tail -f {}", quote(&log.display().to_string())),
                file,
                dirs: vec![agents, logs],
            }
        }
        Manager::Systemd => {
            let dir = i.home.join(".config/systemd/user");
            Plan {
                manager,
                file: dir.join(UNIT),
                contents: unit(&i.argv, &i.env),
                dirs: vec![dir],
                install: vec![systemctl(&["daemon-reload"]), systemctl(&["enable", "--now", UNIT])],
                uninstall: vec![systemctl(&["disable", "--now", UNIT]), systemctl(&["daemon-reload"])],
                status: systemctl(&["status", "--no-pager", UNIT]),
                log: "journalctl --user -u bookstore-watch -f".to_string(),
            }
        }
    }
}

fn launchctl(args: &[&str]) -> Cmd {
    Cmd::new("launchctl").args(args.iter().copied()).deadline(std::time::Duration::from_secs(30))
}

fn systemctl(args: &[&str]) -> Cmd {
    Cmd::new("systemctl")
        .arg("--user")
        .args(args.iter().copied())
        .deadline(std::time::Duration::from_secs(60))
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
    let log = xml(&log.display().to_string());
    s.push_str(&format!("  <key>StandardOutPath</key>\n  <string>{log}</string>\n"));
    s.push_str(&format!("  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"));
    s.push_str("</dict>\n</plist>\n");
    s
}

/// One word of a unit file's command line or assignment: `%` and `$` are systemd's
/// specifiers and variables; quoted when it has spaces, quotes or backslashes.
fn unit_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && !escaped.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A systemd user unit: started with the user's session, restarted when it fails, logging to
/// the journal.
fn unit(argv: &[String], env: &[(String, String)]) -> String {
    let exec: Vec<String> = argv.iter().map(|a| unit_word(a)).collect();
    let mut s = String::from(
        "# Written by `bookstore watch --install`; removed by `bookstore watch --uninstall`.\n\
         [Unit]\n\
         Description=bookstore watch: heal the BookStore kind stack after Docker restarts\n\n\
         [Service]\n\
         Type=simple\n",
    );
    s.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    for (k, v) in env {
        s.push_str(&format!("Environment={}\n", unit_word(&format!("{k}={v}"))));
    }
    s.push_str("Restart=on-failure\nRestartSec=10s\n\n[Install]\nWantedBy=default.target\n");
    s
}

/// This process's view: the binary, the stack file, the environment to keep, the user id.
fn inputs(config: &Config, interval: Option<&str>, manager: Manager) -> Result<Inputs> {
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        Error::prerequisite("HOME is not set: the user service lives under it", "set HOME and run again")
    })?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::step(format!("cannot tell where this binary is: {e}"), "run it by its path"))?;
    let mut argv = vec![exe.display().to_string(), "watch".to_string()];
    if let Source::File(path) = &config.stack.source {
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        argv.extend(["--stack".to_string(), path.display().to_string()]);
    }
    if let Some(every) = interval {
        argv.extend(["--interval".to_string(), every.to_string()]);
    }
    let env = KEPT_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
        .collect();
    let uid = match manager {
        Manager::Launchd => {
            let id = Cmd::new("id").arg("-u");
            id.run()?.stdout.trim().to_string()
        }
        Manager::Systemd => String::new(),
    };
    Ok(Inputs { home, argv, env, uid })
}

pub fn run(config: &Config, ui: &Ui, op: Op, manager: Manager, interval: Option<&str>) -> Result<()> {
    let plan = plan(manager, &inputs(config, interval, manager)?);
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
        Op::Install => install(ui, &plan),
        Op::Uninstall => uninstall(ui, &plan),
        Op::Status => status(ui, &plan),
    }
}

/// The file and the commands, as pasteable lines (`--dry-run`).
pub fn describe(plan: &Plan, op: Op) -> Vec<String> {
    let file = quote(&plan.file.display().to_string());
    match op {
        Op::Install => {
            let dirs: Vec<String> = plan.dirs.iter().map(|d| quote(&d.display().to_string())).collect();
            let mut lines = vec![format!("mkdir -p {}", dirs.join(" "))];
            lines.push(format!("cat > {file} <<'EOF'\n{}EOF", plan.contents));
            lines.extend(plan.install.iter().map(Cmd::to_string));
            lines.push(format!("# its log: {}", plan.log));
            lines
        }
        Op::Uninstall => {
            let mut lines: Vec<String> = Vec::new();
            let (stop, rest) = plan.uninstall.split_first().expect("a stop command");
            lines.push(stop.to_string());
            lines.push(format!("rm {file}"));
            lines.extend(rest.iter().map(Cmd::to_string));
            lines
        }
        Op::Status => vec![format!("test -f {file}"), plan.status.to_string()],
    }
}

fn install(ui: &Ui, plan: &Plan) -> Result<()> {
    if plan.file.exists() {
        // A reinstall: the old service goes first (bootstrap fails on a loaded label).
        ui.info(&format!("{} exists: replacing the installed service", plan.file.display()));
        for cmd in &plan.uninstall {
            let _ = cmd.run_unchecked();
        }
    }
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::step(format!("cannot create {}: {e}", dir.display()), "check the folder's permissions")
        })?;
    }
    std::fs::write(&plan.file, &plan.contents).map_err(|e| {
        Error::step(format!("cannot write {}: {e}", plan.file.display()), "check the folder's permissions")
    })?;
    ui.ok_line(&format!("wrote {}", plan.file.display()));
    for cmd in &plan.install {
        if let Err(err) = cmd.run() {
            // Leave nothing half-installed.
            let _ = std::fs::remove_file(&plan.file);
            return Err(err.with_next(format!(
                "nothing is installed ({} removed); fix the cause, then `bookstore watch --install` again",
                plan.file.display()
            )));
        }
        ui.ok_line(&cmd.to_string());
    }
    ui.ok_line(&format!("bookstore watch runs at login; its log: {}", plan.log));
    Ok(())
}

fn uninstall(ui: &Ui, plan: &Plan) -> Result<()> {
    if !plan.file.exists() {
        ui.ok_line(&format!("not installed ({} does not exist): nothing to remove", plan.file.display()));
        return Ok(());
    }
    let (stop, rest) = plan.uninstall.split_first().expect("a stop command");
    // Stopping a service that is no longer loaded is not a failure: the file goes all the same.
    let out = stop.run_unchecked()?;
    if out.status.success() {
        ui.ok_line(&stop.to_string());
    } else {
        ui.warn_line(&format!("{stop}: {}", out.stderr.trim()));
    }
    std::fs::remove_file(&plan.file).map_err(|e| {
        Error::step(format!("cannot remove {}: {e}", plan.file.display()), "remove it by hand")
    })?;
    ui.ok_line(&format!("removed {}", plan.file.display()));
    for cmd in rest {
        cmd.run()?;
        ui.ok_line(&cmd.to_string());
    }
    ui.ok_line(&format!("uninstalled (the log stays: {})", plan.log));
    Ok(())
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
    if out.status.success() {
        return Ok(());
    }
    Err(plan.status.failure(&format!("exit {}", out.status.code().unwrap_or(-1)), &out.stderr).with_next(
        match plan.manager {
            Manager::Launchd => "load it again: `bookstore watch --install`",
            Manager::Systemd => {
                "start it: `systemctl --user start bookstore-watch` (or `bookstore watch --install`)"
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            home: PathBuf::from("/home/a b"),
            argv: vec![
                "/opt/book store/bookstore".into(),
                "watch".into(),
                "--stack".into(),
                "/s/100%.yaml".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("KUBECONFIG".into(), "/k/$x".into())],
            uid: "501".into(),
        }
    }

    #[test]
    fn the_unit_quotes_what_systemd_would_expand() {
        let p = plan(Manager::Systemd, &inputs());
        assert_eq!(p.file, PathBuf::from("/home/a b/.config/systemd/user/bookstore-watch.service"));
        assert!(
            p.contents.contains("ExecStart=\"/opt/book store/bookstore\" watch --stack /s/100%%.yaml\n"),
            "{}",
            p.contents
        );
        assert!(p.contents.contains("Environment=KUBECONFIG=/k/$$x\n"), "{}", p.contents);
        // (argv, not the printed lines: those pass the process-wide redactor, which other unit
        // tests feed.)
        let argv = |cmds: &[Cmd]| cmds.iter().map(|c| c.argv().join(" ")).collect::<Vec<_>>();
        assert_eq!(
            argv(&p.install),
            ["systemctl --user daemon-reload", "systemctl --user enable --now bookstore-watch.service"]
        );
        assert_eq!(
            argv(&p.uninstall),
            ["systemctl --user disable --now bookstore-watch.service", "systemctl --user daemon-reload"]
        );
    }

    #[test]
    fn the_plist_escapes_xml_and_names_the_gui_domain() {
        let mut i = inputs();
        i.argv.push("<&>".into());
        let p = plan(Manager::Launchd, &i);
        assert_eq!(p.file, PathBuf::from("/home/a b/Library/LaunchAgents/dev.bookstore.watch.plist"));
        assert!(p.contents.contains("<string>&lt;&amp;&gt;</string>"), "{}", p.contents);
        assert_eq!(
            p.install[0].argv(),
            ["launchctl", "bootstrap", "gui/501", "/home/a b/Library/LaunchAgents/dev.bookstore.watch.plist"]
        );
        assert_eq!(p.uninstall[0].argv(), ["launchctl", "bootout", "gui/501/dev.bookstore.watch"]);
        assert!(p.contents.contains("/home/a b/Library/Logs/bookstore/watch.log"));
    }
}
