//! Which docker CLI the clients run. The simulator serves the Docker Engine API, so how a
//! command behaves when the daemon is away is the CLI's own doing: the one installed here is
//! docker 28.2.2. Other releases are modelled by a shim first on PATH (`<dir>/bin/docker`) that
//! runs the installed CLI and reproduces, from their sources, what that release does differently;
//! everything else is the installed CLI's behaviour, byte for byte. (Read in docker/cli @28f75608
//! with its tags v27.5.1, v28.1.0, v29.0.0, and moby/moby @b985e231.)
//!
//! * [`DockerCli::V27_5_1`] (Docker Desktop ≤ 4.40, distributions' docker 26/27): `docker info
//!   --format …` prints a server error on stderr and **exits 0** (v27.5.1
//!   `cli/command/system/info.go:102-123`: with a format the error is `fprintln`ed, not
//!   returned; `formatInfo` then prints the template over an empty `Info`: an empty line). From
//!   v28.1.0 (`addServerInfo`, `info.go:119-137` at HEAD) a connection failure is returned (exit
//!   1), which is what the installed CLI does. `docker version` returns the server's error on
//!   every release (`cli/command/system/version.go:190-193` at v27.5.1, `:222-229` at HEAD).
//! * [`DockerCli::V29`]: when the endpoint's socket file does not exist, the client says
//!   `failed to connect to the docker API at unix://…; check if the path is correct and if the
//!   daemon is running: dial unix …: connect: no such file or directory` (moby
//!   `client/request.go:173-177`) where older ones said `Cannot connect to the Docker daemon at
//!   unix://…. Is the docker daemon running?` (still what a socket that refuses gives:
//!   `client/errors.go:35-41`). The shim answers so for a missing socket, exit 1, before the
//!   installed CLI is asked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DockerCli {
    /// The docker CLI installed here (28.2.2).
    #[default]
    Installed,
    /// docker/cli v27.5.1.
    V27_5_1,
    /// docker/cli v29.
    V29,
}

/// The installed docker CLI: the first `docker` on PATH that is not a shim in `bin`.
fn installed(bin: &Path) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| d.as_path() != bin)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
        .context("no docker CLI on PATH")
}

/// Write `<bin>/docker` for a release other than the installed one (nothing for the installed).
pub fn install(bin: &Path, cli: DockerCli) -> Result<()> {
    let script = match cli {
        DockerCli::Installed => return Ok(()),
        DockerCli::V27_5_1 => V27_5_1,
        DockerCli::V29 => V29,
    };
    let real = installed(bin)?;
    let path = bin.join("docker");
    std::fs::write(&path, script.replace("@REAL@", &real.display().to_string()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `docker info --format …`: the installed CLI's output; a failure to reach the server (its exit
/// 1) becomes exit 0, the error left on stderr, as v27.5.1 does.
const V27_5_1: &str = r#"#!/bin/sh
# bookstore-sim: docker/cli v27.5.1's behaviour over the installed CLI (tests/sim/src/docker_cli.rs).
real='@REAL@'
if [ "$1" = info ]; then
  fmt=
  for a in "$@"; do case "$a" in --format|--format=*|-f|-f?*) fmt=1 ;; esac; done
  if [ -n "$fmt" ]; then
    err=$(mktemp)
    "$real" "$@" 2>"$err"
    rc=$?
    cat "$err" >&2
    rm -f "$err"
    [ "$rc" -eq 1 ] && exit 0
    exit "$rc"
  fi
fi
exec "$real" "$@"
"#;

/// A missing socket file: v29's words, exit 1; anything else: the installed CLI.
const V29: &str = r#"#!/bin/sh
# bookstore-sim: docker/cli v29's behaviour over the installed CLI (tests/sim/src/docker_cli.rs).
real='@REAL@'
case "$1" in
  ''|context|help|completion|--version|-v|--help|-h) exec "$real" "$@" ;;
esac
host=${DOCKER_HOST:-$("$real" context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null)}
case "$host" in
  unix://*)
    sock=${host#unix://}
    if [ ! -e "$sock" ]; then
      case "$1" in info|version) for a in "$@"; do case "$a" in --format|--format=*|-f|-f?*) echo ;; esac; done ;; esac
      echo "failed to connect to the docker API at $host; check if the path is correct and if the daemon is running: dial unix $sock: connect: no such file or directory" >&2
      exit 1
    fi
    ;;
esac
exec "$real" "$@"
"#;
