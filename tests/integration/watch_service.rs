//! `bookstore watch --install | --uninstall | --status` with `launchctl` and `systemctl`
//! stand-ins first on PATH (each argv recorded): the files they write (the plist read back by
//! Python's plistlib, the unit checked by `systemd-analyze verify` where it is installed), the
//! commands they run, and uninstall undoing exactly what install did.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bookstore_sim::kit::{Test, read_argv_log};
use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
    stack: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        for tool in ["launchctl", "systemctl"] {
            // Records argv (fields \037, records \036); prints what `status`/`print` would;
            // fails the commands named in FAIL_ON.
            let script = format!(
                "#!/bin/sh\n\
                 printf '%s\\037' {tool} \"$@\" >> '{log}'; printf '\\036' >> '{log}'\n\
                 case \" $* \" in *\" status \"*|*\" print \"*) echo '{tool}: bookstore-watch active (running)';; esac\n\
                 case \" $* \" in *\" $FAIL_ON \"*) [ -n \"$FAIL_ON\" ] && {{ echo \"{tool}: $FAIL_ON failed\" >&2; exit 1; }};; esac\n\
                 exit 0\n",
                log = dir.path().join("argv.log").display(),
            );
            let path = bin.join(tool);
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/stack.yaml").canonicalize().unwrap();
        Home { dir, stack }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `bookstore watch --stack <the repository's>` in this home, the stand-ins first on PATH, a
    /// kubeconfig path a unit must quote.
    fn watch(&self) -> Test<'static> {
        Test::new()
            .args(["watch", "--stack"])
            .arg(&self.stack)
            .path_first(self.dir.path().join("bin"))
            .env("HOME", self.home())
            .env("FAIL_ON", "")
            .env("KUBECONFIG", "/tmp/kube config 100%")
            .env_remove("DOCKER_HOST")
    }

    /// Every recorded argv since the last call, one Vec per command (the log is then cleared).
    fn argv(&self) -> Vec<Vec<String>> {
        let log = self.dir.path().join("argv.log");
        let argv = read_argv_log(&log);
        let _ = std::fs::remove_file(&log);
        argv
    }

    /// Every file under HOME.
    fn files(&self) -> BTreeSet<PathBuf> {
        fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.insert(e.path());
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.home(), &mut out);
        out
    }
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn bin() -> String {
    Path::new(env!("CARGO_BIN_EXE_bookstore")).canonicalize().unwrap().display().to_string()
}

#[test]
fn systemd_install_writes_a_unit_that_verifies_and_uninstall_undoes_it() {
    let h = Home::new();
    let before = h.files();
    let run = h.watch().args(["--install", "--manager", "systemd"]).any_code().run();
    run.expect(0);
    let unit = h.home().join(".config/systemd/user/bookstore-watch.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(&format!("\nExecStart={} watch --stack {}\n", bin(), h.stack.display())), "{text}");
    assert!(text.contains("\nEnvironment=\"KUBECONFIG=/tmp/kube config 100%%\"\n"), "{text}");
    assert!(text.contains("\nWantedBy=default.target\n"), "{text}");
    assert_eq!(
        h.argv(),
        [
            argv(&["systemctl", "--user", "daemon-reload"]),
            argv(&["systemctl", "--user", "enable", "--now", "bookstore-watch.service"])
        ]
    );
    assert!(run.stderr.contains("journalctl --user -u bookstore-watch"), "{}", run.stderr);

    match which::which("systemd-analyze") {
        Ok(analyze) => {
            let out = Command::new(analyze).arg("verify").arg(&unit).output().unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
        }
        Err(_) => eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed here"),
    }

    let status = h.watch().args(["--status", "--manager", "systemd"]).any_code().run();
    status.expect(0);
    assert!(status.stderr.contains("active (running)"), "{}", status.stderr);
    assert_eq!(h.argv(), [argv(&["systemctl", "--user", "status", "--no-pager", "bookstore-watch.service"])]);

    h.watch().args(["--uninstall", "--manager", "systemd"]).any_code().run().expect(0);
    assert_eq!(
        h.argv(),
        [
            argv(&["systemctl", "--user", "disable", "--now", "bookstore-watch.service"]),
            argv(&["systemctl", "--user", "daemon-reload"])
        ]
    );
    assert_eq!(h.files(), before, "uninstall left or removed files");
    let status = h.watch().args(["--status", "--manager", "systemd"]).any_code().run();
    status.expect(3);
    assert!(status.stderr.contains("bookstore watch --install"), "{}", status.stderr);
    assert!(h.argv().is_empty(), "status of an uninstalled service asks nothing of systemctl");
}

#[test]
fn launchd_install_writes_a_property_list_and_uninstall_undoes_it() {
    let h = Home::new();
    let before = h.files();
    h.watch().args(["--install", "--manager", "launchd", "--interval", "30s"]).any_code().run().expect(0);
    let plist = h.home().join("Library/LaunchAgents/dev.bookstore.watch.plist");
    // Read back as a property list by Python's plistlib (what launchd's format is).
    let out = Command::new("python3")
        .args(["-c", "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))"])
        .arg(&plist)
        .output()
        .unwrap();
    assert!(out.status.success(), "not a property list: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["Label"], "dev.bookstore.watch");
    let stack = h.stack.display().to_string();
    assert_eq!(
        doc["ProgramArguments"],
        serde_json::json!([bin(), "watch", "--stack", stack, "--interval", "30s"])
    );
    assert_eq!(doc["RunAtLoad"], true);
    assert_eq!(doc["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(doc["EnvironmentVariables"]["KUBECONFIG"], "/tmp/kube config 100%");
    assert_eq!(
        doc["EnvironmentVariables"]["PATH"],
        std::env::var("PATH").map(|p| format!("{}:{p}", h.dir.path().join("bin").display())).unwrap()
    );
    let log = h.home().join("Library/Logs/bookstore/watch.log").display().to_string();
    assert_eq!(doc["StandardOutPath"], log.as_str());
    assert_eq!(doc["StandardErrorPath"], log.as_str());
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let domain = format!("gui/{}", uid.trim());
    assert_eq!(h.argv(), [argv(&["launchctl", "bootstrap", &domain, &plist.display().to_string()])]);

    // Installing again replaces it: the old one is booted out first.
    h.watch().args(["--install", "--manager", "launchd"]).any_code().run().expect(0);
    let label = format!("{domain}/dev.bookstore.watch");
    assert_eq!(
        h.argv(),
        [
            argv(&["launchctl", "bootout", &label]),
            argv(&["launchctl", "bootstrap", &domain, &plist.display().to_string()])
        ]
    );

    h.watch().args(["--status", "--manager", "launchd"]).any_code().run().expect(0);
    assert_eq!(h.argv(), [argv(&["launchctl", "print", &label])]);

    h.watch().args(["--uninstall", "--manager", "launchd"]).any_code().run().expect(0);
    assert_eq!(h.argv(), [argv(&["launchctl", "bootout", &label])]);
    assert_eq!(h.files(), before, "uninstall left or removed files");
}

#[test]
fn dry_run_prints_the_file_and_the_commands_and_changes_nothing() {
    let h = Home::new();
    let run = h.watch().args(["--install", "--manager", "systemd", "--dry-run"]).any_code().run();
    run.expect(0);
    let unit = h.home().join(".config/systemd/user/bookstore-watch.service");
    assert!(run.stdout.contains(&format!("cat > {} <<'EOF'\n", unit.display())), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("ExecStart={} watch --stack", bin())), "{}", run.stdout);
    assert!(run.stdout.contains("systemctl --user enable --now bookstore-watch.service"), "{}", run.stdout);
    let run = h.watch().args(["--uninstall", "--manager", "launchd", "--dry-run"]).any_code().run();
    run.expect(0);
    assert!(run.stdout.contains("launchctl bootout gui/"), "{}", run.stdout);
    assert!(run.stdout.contains("rm "), "{}", run.stdout);
    assert!(h.files().is_empty(), "a dry run wrote {:?}", h.files());
    // `id -u` is the only command a dry run runs (launchd's domain); no service manager call.
    assert!(h.argv().is_empty(), "a dry run called the service manager");
}

#[test]
fn an_install_the_service_manager_refuses_leaves_nothing_behind() {
    let h = Home::new();
    let before = h.files();
    let run = h.watch().args(["--install", "--manager", "systemd"]).env("FAIL_ON", "enable").any_code().run();
    run.expect(1);
    assert!(run.stderr.contains("systemctl --user enable --now bookstore-watch.service"), "{}", run.stderr);
    assert!(run.stderr.contains("enable failed"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing is installed"), "{}", run.stderr);
    assert_eq!(h.files(), before);
}
