//! The Docker endpoint, resolved once: the daemon every docker call of a run (and every kind
//! call, which runs docker itself) talks to.
//!
//! The docker CLI picks its daemon on every invocation: `--host`, `--context`, then
//! `DOCKER_HOST`, then `DOCKER_CONTEXT`, then the `currentContext` of its config file, which
//! `docker context use` rewrites (docker/cli `cli/command/cli.go` `resolveContextName`;
//! `docs/reference/commandline/context_use.md`). So a `docker context use` in another shell
//! during a long heal, or during a watcher's life, would move the next call to another daemon.
//! `bookstore` resolves the endpoint when a run starts and pins it: `DOCKER_HOST` (fixed for
//! the process, inherited by every child) is kept as it is; otherwise the context is named on
//! every docker call (`docker --context <name> …`) and in kind's environment
//! (`DOCKER_CONTEXT=<name> kind …`). `watch --install` writes the same resolution down for the
//! service.

use std::time::Duration;

use serde_json::Value;

use crate::exec::Cmd;

/// The endpoint this run talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The context named on every docker call; `None` when `DOCKER_HOST` decides.
    pub context: Option<String>,
    /// `unix:///…`, `tcp://…`, `ssh://…`, `npipe://…` (empty when it could not be read).
    pub host: String,
    /// The context keeps TLS material (or skips verification): its address alone is not enough.
    pub tls: bool,
    /// Where it came from: `DOCKER_HOST`, `DOCKER_CONTEXT`, or the docker config's current context.
    pub from: String,
}

impl Endpoint {
    /// One line: `context desktop-linux (unix:///…/docker.sock), the current context`.
    pub fn describe(&self) -> String {
        let host = if self.host.is_empty() { String::new() } else { format!(" ({})", self.host) };
        match &self.context {
            Some(name) => format!("context {name}{host}, from {}", self.from),
            None => format!("{}, from {}", self.host, self.from),
        }
    }
}

/// `docker context inspect`: the context the CLI would use here (`DOCKER_CONTEXT`, else the
/// config's current one) with its endpoint; it works without a daemon.
pub fn context_inspect() -> Cmd {
    Cmd::new("docker")
        .args(["context", "inspect", "--format", "{{json .}}"])
        .deadline(Duration::from_secs(20))
}

/// A context as `docker context inspect --format '{{json .}}'` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub name: String,
    /// `unix:///…`, `tcp://…`, `ssh://…`, `npipe://…`.
    pub host: String,
    /// The context keeps TLS material (or skips verification): its address alone is not enough.
    pub tls: bool,
}

pub fn parse_context(stdout: &str) -> Result<Context, String> {
    let v: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("docker context inspect printed invalid JSON: {e}"))?;
    let host = v.pointer("/Endpoints/docker/Host").and_then(Value::as_str).unwrap_or("");
    if host.is_empty() {
        return Err("docker context inspect names no Docker endpoint".into());
    }
    let material = v.get("TLSMaterial").and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    let skip = v.pointer("/Endpoints/docker/SkipTLSVerify").and_then(Value::as_bool).unwrap_or(false);
    Ok(Context {
        name: v.get("Name").and_then(Value::as_str).unwrap_or("").to_string(),
        host: host.to_string(),
        tls: material || skip,
    })
}

/// The endpoint from the environment and, without `DOCKER_HOST`, the context `docker context
/// inspect` names (`inspect`, asked only then). Pure but for that one read.
pub fn resolve(
    docker_host: Option<&str>,
    docker_context: Option<&str>,
    inspect: impl FnOnce() -> Result<Context, String>,
) -> Result<Endpoint, String> {
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return Ok(Endpoint {
            context: None,
            host: host.to_string(),
            tls: false,
            from: "DOCKER_HOST".into(),
        });
    }
    let c = inspect()?;
    if c.name.is_empty() {
        return Err("docker context inspect names no context".into());
    }
    let from = match docker_context.filter(|c| !c.is_empty()) {
        Some(_) => "DOCKER_CONTEXT".to_string(),
        None => "the docker config's current context".to_string(),
    };
    Ok(Endpoint { context: Some(c.name), host: c.host, tls: c.tls, from })
}

/// The socket file of a `unix://` endpoint.
pub fn socket_path(host: &str) -> Option<std::path::PathBuf> {
    host.strip_prefix("unix://").filter(|p| !p.is_empty()).map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_decides_else_the_context_is_named() {
        let never = || -> Result<Context, String> { panic!("not asked when DOCKER_HOST decides") };
        let e = resolve(Some("unix:///tmp/d.sock"), Some("colima"), never).unwrap();
        assert_eq!(
            (e.context, e.host.as_str(), e.from.as_str()),
            (None, "unix:///tmp/d.sock", "DOCKER_HOST")
        );
        let colima = Context { name: "colima".into(), host: "unix:///c/docker.sock".into(), tls: false };
        let e = resolve(None, None, || Ok(colima.clone())).unwrap();
        assert_eq!(e.context.as_deref(), Some("colima"));
        assert!(e.from.contains("current context"), "{}", e.from);
        assert!(e.describe().contains("context colima (unix:///c/docker.sock)"), "{}", e.describe());
        let e = resolve(Some(""), Some("colima"), || Ok(colima.clone())).unwrap();
        assert_eq!(e.from, "DOCKER_CONTEXT");
        assert!(resolve(None, None, || Err("no docker".into())).is_err());
    }

    #[test]
    fn a_context_as_docker_prints_it() {
        let text = r#"{"Name":"desktop-linux","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///Users/u/.docker/run/docker.sock","SkipTLSVerify":false}},"TLSMaterial":{},"Storage":{}}"#;
        let c = parse_context(text).unwrap();
        assert_eq!((c.name.as_str(), c.tls), ("desktop-linux", false));
        assert_eq!(socket_path(&c.host).unwrap().to_str(), Some("/Users/u/.docker/run/docker.sock"));
        assert!(parse_context(r#"{"Name":"x","Endpoints":{}}"#).is_err());
        assert!(parse_context("nope").is_err());
    }
}
