//! `bookstore watch --install | --uninstall | --status` with `launchctl`, `systemctl` and
//! `loginctl` stand-ins first on PATH (each argv recorded; launchctl keeps whether the label is
//! loaded, unloads asynchronously after `bootout` and refuses to `bootstrap` a label that is
//! still loaded or disabled, as launchd does: `Bootstrap failed: 5: Input/output error`), the real
//! docker CLI for the endpoint (`docker context inspect`), and the files they write (the plist
//! read back by Python's plistlib, the unit checked by `systemd-analyze verify` where it is
//! installed): the copy of the binary and the stack the service runs, the commands, and
//! uninstall undoing exactly what install did.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bookstore_sim::kit::{Run, Test, read_argv_log};
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
        let log = dir.path().join("argv.log");
        let state = dir.path().join("launchd");
        let record = format!(
            "printf '%s\\037' \"$(basename \"$0\")\" \"$@\" >> '{log}'; printf '\\036' >> '{log}'",
            log = log.display()
        );
        let scripts = [
            (
                "launchctl",
                format!(
                    "#!/bin/sh\n{record}\n\
                     st='{st}'\n\
                     case \"$1\" in\n\
                     bootout) if [ -f \"$st.loaded\" ]; then rm -f \"$st.loaded\"; echo \"${{UNLOAD_PRINTS:-0}}\" > \"$st.unloading\"; exit 0; fi\n\
                     \x20 echo 'Boot-out failed: 3: No such process' >&2; exit 3 ;;\n\
                     print) n=$(cat \"$st.unloading\" 2>/dev/null || echo 0)\n\
                     \x20 if [ \"$n\" -gt 0 ]; then echo $((n - 1)) > \"$st.unloading\"; echo \"$2 = {{\"; echo '\tstate = not running'; echo '}}'; exit 0; fi\n\
                     \x20 if [ -f \"$st.loaded\" ]; then printf '%s = {{\\n\\tactive count = 1\\n\\tstate = %s\\n\\tlast exit code = %s\\n\\tdomain = {{\\n\\t\\tstate = active\\n\\t}}\\n}}\\n' \"$2\" \"${{LAUNCHD_STATE:-running}}\" \"${{LAUNCHD_EXIT:-(never exited)}}\"; exit 0; fi\n\
                     \x20 echo \"Could not find service in domain for user gui\" >&2; exit 113 ;;\n\
                     enable) rm -f \"$st.disabled\"; exit 0 ;;\n\
                     disable) touch \"$st.disabled\"; exit 0 ;;\n\
                     bootstrap) n=$(cat \"$st.unloading\" 2>/dev/null || echo 0)\n\
                     \x20 if [ -f \"$st.loaded\" ] || [ -f \"$st.disabled\" ] || [ \"$n\" -gt 0 ]; then echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5; fi\n\
                     \x20 [ \"$FAIL_ON\" = bootstrap ] && {{ echo 'launchctl: bootstrap failed' >&2; exit 1; }}\n\
                     \x20 touch \"$st.loaded\"; exit 0 ;;\n\
                     esac\nexit 0\n",
                    st = state.display()
                ),
            ),
            (
                "systemctl",
                format!(
                    "#!/bin/sh\n{record}\n\
                     case \" $* \" in *\" status \"*) echo 'bookstore-watch.service - bookstore watch'; echo '     Active: active (running)';; esac\n\
                     case \" $* \" in *\" $FAIL_ON \"*) [ -n \"$FAIL_ON\" ] && {{ echo \"systemctl: $FAIL_ON failed\" >&2; exit 1; }};; esac\n\
                     exit 0\n"
                ),
            ),
            ("loginctl", format!("#!/bin/sh\n{record}\necho \"${{LINGER:-no}}\"\n")),
        ];
        for (tool, script) in scripts {
            let path = bin.join(tool);
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // A stack folder of its own (what the service copies).
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
        let stack_dir = dir.path().join("checkout/infra");
        copy_tree(&infra, &stack_dir);
        Home { dir, stack: stack_dir.join("stack.yaml") }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn data(&self, launchd: bool) -> PathBuf {
        if launchd {
            self.home().join("Library/Application Support/bookstore")
        } else {
            self.home().join(".local/share/bookstore")
        }
    }

    /// `bookstore watch --stack <the checkout's> <args>` with this HOME, the stand-ins first on
    /// PATH, umask 002 (a plist must come out 0644 all the same), and `env`; the exit code is the
    /// test's to read.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut test = Test::new()
            .args(["watch", "--stack"])
            .arg(&self.stack)
            .args(args)
            .umask(0o002)
            .path_first(self.dir.path().join("bin"))
            .env("HOME", self.home())
            .env("KUBECONFIG", "/tmp/kube $HOME 100%")
            .env("USER", "ann")
            .any_code();
        for var in
            ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "XDG_DATA_HOME", "XDG_STATE_HOME", "FAIL_ON"]
        {
            test = test.env_remove(var);
        }
        for (k, v) in env {
            test = test.env(*k, *v);
        }
        test.run()
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

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The copy stands on its own: it runs, and its `watch --dry-run` reads the copied stack.
fn assert_the_copy_runs(data: &Path) {
    let copy = data.join("bin/bookstore");
    assert_eq!(mode(&copy) & 0o111, 0o111, "the copy is executable");
    Test::new()
        .program(&copy)
        .args(["watch", "--dry-run", "--stack"])
        .arg(data.join("stack/stack.yaml"))
        .env_remove("DOCKER_HOST")
        .run();
}

#[test]
fn systemd_install_runs_a_copy_and_uninstall_undoes_it() {
    let h = Home::new();
    let before = h.files();
    let run = h.run(&["--install", "--manager", "systemd"], &[]);
    run.expect(0);
    let unit = h.home().join(".config/systemd/user/bookstore-watch.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let data = h.data(false);
    assert!(
        text.contains(&format!(
            "\nExecStart={}/bin/bookstore watch --stack {}/stack/stack.yaml\n",
            data.display(),
            data.display()
        )),
        "{text}"
    );
    // `%` doubled, `$` as it is: Environment= expands no variables (systemd.exec).
    assert!(text.contains("\nEnvironment=\"KUBECONFIG=/tmp/kube $HOME 100%%\"\n"), "{text}");
    // The endpoint resolved at install (the real `docker context inspect`: the default context).
    assert!(text.contains("\nEnvironment=DOCKER_HOST=unix:///var/run/docker.sock\n"), "{text}");
    assert!(text.contains("\nWantedBy=default.target\n"), "{text}");
    assert_eq!(mode(&unit), 0o644);
    assert_the_copy_runs(&data);
    assert_eq!(
        h.argv(),
        [
            argv(&["systemctl", "--user", "daemon-reload"]),
            argv(&["systemctl", "--user", "enable", "bookstore-watch.service"]),
            argv(&["systemctl", "--user", "restart", "bookstore-watch.service"]),
            argv(&["loginctl", "show-user", &uid(), "--property=Linger", "--value"]),
        ]
    );
    assert!(run.stderr.contains("journalctl --user -u bookstore-watch"), "{}", run.stderr);
    // Login, not boot, unless lingering: said, with the command.
    assert!(
        run.stderr.contains("runs at login") && run.stderr.contains("loginctl enable-linger ann"),
        "{}",
        run.stderr
    );
    let lingering = h.run(&["--install", "--manager", "systemd"], &[("LINGER", "yes")]);
    lingering.expect(0);
    assert!(lingering.stderr.contains("runs at boot (lingering is on)"), "{}", lingering.stderr);
    h.argv();

    match which::which("systemd-analyze") {
        Ok(analyze) => {
            let out = Command::new(analyze).arg("verify").arg(&unit).output().unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
        }
        Err(_) => eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed here"),
    }

    let status = h.run(&["--status", "--manager", "systemd"], &[]);
    status.expect(0);
    assert!(status.stderr.contains("active (running)"), "{}", status.stderr);
    assert_eq!(h.argv(), [argv(&["systemctl", "--user", "status", "--no-pager", "bookstore-watch.service"])]);

    h.run(&["--uninstall", "--manager", "systemd"], &[]).expect(0);
    assert_eq!(
        h.argv(),
        [
            argv(&["systemctl", "--user", "disable", "--now", "bookstore-watch.service"]),
            argv(&["systemctl", "--user", "daemon-reload"])
        ]
    );
    assert_eq!(h.files(), before, "uninstall left or removed files");
    let status = h.run(&["--status", "--manager", "systemd"], &[]);
    status.expect(3);
    assert!(status.stderr.contains("bookstore watch --install"), "{}", status.stderr);
    assert!(h.argv().is_empty(), "status of an uninstalled service asks nothing of systemctl");
}

#[test]
fn launchd_install_boots_out_waits_enables_and_bootstraps() {
    let h = Home::new();
    let before = h.files();
    h.run(&["--install", "--manager", "launchd", "--interval", "30s"], &[]).expect(0);
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
    let data = h.data(true);
    assert_eq!(
        doc["ProgramArguments"],
        serde_json::json!([
            data.join("bin/bookstore").display().to_string(),
            "watch",
            "--stack",
            data.join("stack/stack.yaml").display().to_string(),
            "--interval",
            "30s"
        ])
    );
    assert_the_copy_runs(&data);
    // launchd skips a group-writable plist: 0644 under umask 002.
    assert_eq!(mode(&plist), 0o644);
    assert_eq!(doc["RunAtLoad"], true);
    assert_eq!(doc["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(doc["EnvironmentVariables"]["KUBECONFIG"], "/tmp/kube $HOME 100%");
    assert_eq!(
        doc["EnvironmentVariables"]["PATH"],
        std::env::var("PATH").map(|p| format!("{}:{p}", h.dir.path().join("bin").display())).unwrap()
    );
    let log = h.home().join("Library/Logs/bookstore/watch.log").display().to_string();
    assert_eq!(doc["StandardOutPath"], log.as_str());
    assert_eq!(doc["StandardErrorPath"], log.as_str());
    let domain = format!("gui/{}", uid());
    let label = format!("{domain}/dev.bookstore.watch");
    let plist_arg = plist.display().to_string();
    assert_eq!(
        h.argv(),
        [
            argv(&["launchctl", "bootout", &label]),
            argv(&["launchctl", "print", &label]),
            argv(&["launchctl", "enable", &label]),
            argv(&["launchctl", "bootstrap", &domain, &plist_arg])
        ]
    );

    // Installing again while it is loaded, switched off in Login Items (disabled), and
    // unloading slowly: bootout, wait until print no longer finds it, enable, bootstrap.
    let off = Command::new(h.dir.path().join("bin/launchctl")).args(["disable", &label]).status().unwrap();
    assert!(off.success());
    h.argv();
    let again = h.run(&["--install", "--manager", "launchd"], &[("UNLOAD_PRINTS", "2")]);
    again.expect(0);
    assert_eq!(
        h.argv(),
        [
            argv(&["launchctl", "bootout", &label]),
            argv(&["launchctl", "print", &label]),
            argv(&["launchctl", "print", &label]),
            argv(&["launchctl", "print", &label]),
            argv(&["launchctl", "enable", &label]),
            argv(&["launchctl", "bootstrap", &domain, &plist_arg])
        ]
    );
    assert!(again.stderr.contains("replacing the installed service and its copy"), "{}", again.stderr);

    // --status reads launchd's own words: loaded is not running.
    h.run(&["--status", "--manager", "launchd"], &[]).expect(0);
    assert_eq!(h.argv(), [argv(&["launchctl", "print", &label])]);
    let spinning = h.run(
        &["--status", "--manager", "launchd"],
        &[("LAUNCHD_STATE", "not running"), ("LAUNCHD_EXIT", "78: EX_CONFIG")],
    );
    spinning.expect(1);
    assert!(
        spinning.stderr.contains("state = not running; last exit code = 78: EX_CONFIG"),
        "{}",
        spinning.stderr
    );
    h.argv();

    h.run(&["--uninstall", "--manager", "launchd"], &[]).expect(0);
    assert_eq!(
        h.argv()[..2],
        [argv(&["launchctl", "bootout", &label]), argv(&["launchctl", "print", &label])]
    );
    assert_eq!(h.files(), before, "uninstall left or removed files");
    let gone = h.run(&["--status", "--manager", "launchd"], &[]);
    gone.expect(3);
}

/// The environment that picks the engine and the cluster is carried, and the engine and the
/// Docker endpoint resolved at install as every run resolves them: `DOCKER_CONTEXT=colima` (the
/// real docker CLI reads the context) becomes the endpoint itself, so a later `docker context
/// use` does not move the watcher; a podman engine is written down as
/// `KIND_EXPERIMENTAL_PROVIDER`, and the shell's Docker settings carried as they are.
#[test]
fn the_docker_endpoint_is_resolved_at_install() {
    let h = Home::new();
    let config = h.dir.path().join("docker-config");
    let made = Command::new("docker")
        .args(["context", "create", "colima", "--docker", "host=unix:///tmp/colima/docker.sock"])
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let env = [
        ("DOCKER_CONFIG", config.to_str().unwrap()),
        ("DOCKER_CONTEXT", "colima"),
        ("BOOKSTORE_UI_SERVICE_CONTEXT", "/src/ui"),
    ];
    let unit = h.home().join(".config/systemd/user/bookstore-watch.service");
    let run = h.run(&["--install", "--manager", "systemd"], &env);
    run.expect(0);
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Environment=DOCKER_HOST=unix:///tmp/colima/docker.sock",
        &format!("Environment=DOCKER_CONFIG={}", config.display()),
        "Environment=BOOKSTORE_UI_SERVICE_CONTEXT=/src/ui",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line} missing:\n{text}");
    }
    assert!(!text.contains("DOCKER_CONTEXT") && !text.contains("KIND_EXPERIMENTAL_PROVIDER"), "{text}");
    assert!(run.stderr.contains("a later `docker context use` does not move the watcher"), "{}", run.stderr);

    // kind's podman users: the engine chosen at install is the service's, whatever its bare PATH finds.
    let podman = [("KIND_EXPERIMENTAL_PROVIDER", "podman"), ("DOCKER_CONTEXT", "colima")];
    h.run(&["--install", "--manager", "systemd"], &podman).expect(0);
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in ["Environment=KIND_EXPERIMENTAL_PROVIDER=podman", "Environment=DOCKER_CONTEXT=colima"] {
        assert!(text.contains(&format!("\n{line}\n")), "{line} missing:\n{text}");
    }
    assert!(!text.contains("DOCKER_HOST"), "{text}");
}

#[test]
fn dry_run_prints_the_files_and_the_commands_and_changes_nothing() {
    let h = Home::new();
    let run = h.run(&["--install", "--manager", "systemd", "--dry-run"], &[]);
    run.expect(0);
    let unit = h.home().join(".config/systemd/user/bookstore-watch.service");
    let data = h.data(false);
    assert!(run.stdout.contains(&format!("cat > {} <<'EOF'\n", unit.display())), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("ExecStart={}/bin/bookstore watch --stack", data.display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("{}/bin/bookstore   # this binary", data.display())),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("systemctl --user restart bookstore-watch.service"), "{}", run.stdout);
    let run = h.run(&["--uninstall", "--manager", "launchd", "--dry-run"], &[]);
    run.expect(0);
    assert!(run.stdout.contains("launchctl bootout gui/"), "{}", run.stdout);
    assert!(run.stdout.contains("rm "), "{}", run.stdout);
    assert!(h.files().is_empty(), "a dry run wrote {:?}", h.files());
    // `id -u` and `docker context inspect` are all a dry run runs; no service manager call.
    assert!(h.argv().is_empty(), "a dry run called the service manager");
}

#[test]
fn an_install_the_service_manager_refuses_leaves_nothing_behind() {
    let h = Home::new();
    let before = h.files();
    let run = h.run(&["--install", "--manager", "systemd"], &[("FAIL_ON", "enable")]);
    run.expect(1);
    assert!(run.stderr.contains("systemctl --user enable bookstore-watch.service"), "{}", run.stderr);
    assert!(run.stderr.contains("enable failed"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing is installed"), "{}", run.stderr);
    assert_eq!(h.files(), before);
}

fn uid() -> String {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap().trim().to_string()
}
