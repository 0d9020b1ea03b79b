//! Where a cluster port answers on this machine. On kind: the host port the cluster config maps
//! to it (`extraPortMappings`). On a shared cluster there are no host ports: a `kubectl
//! port-forward` to the Service that holds that node port in the manifests, a supervised child
//! (started through `exec` with a deadline, its local port chosen by kubectl on 127.0.0.1, killed
//! and reaped when the [`Port`] is dropped, Ctrl-C included), started for the requests that need
//! it and stopped after them: kubectl forwards to one pod it picks at start, and a rollout
//! replaces that pod.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::exec::Stream;
use crate::kube::Kubectl;
use crate::stack::Stack;

/// How long kubectl may take to resolve the Service, pick its pod and listen.
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(20);

/// A cluster port reachable at `127.0.0.1:<local>` while this value lives.
pub struct Port {
    pub local: u16,
    /// The `kubectl port-forward` child (shared clusters); dropping it kills and reaps it.
    _forward: Option<Stream>,
}

/// The base URL of a cluster port as a printed line shows it: the host port, or on a shared
/// cluster where the port-forward's local port goes (kubectl picks it when it runs).
pub fn shown(stack: &Stack, container_port: u16) -> Result<String> {
    if stack.cluster.shared() {
        return Ok("http://127.0.0.1:<local port of the port-forward>".to_string());
    }
    Ok(format!("http://127.0.0.1:{}", stack.cluster.host_port(container_port)?))
}

/// The `kubectl port-forward` line for a node port of a shared cluster.
pub fn forward_cmd(stack: &Stack, container_port: u16) -> Result<crate::exec::Cmd> {
    let (namespace, service, port) = stack.node_port_service(container_port).ok_or_else(|| {
        Error::input("stack file", format!("no Service of the manifests has nodePort {container_port}"))
    })?;
    let kube = Kubectl::new(stack.cluster.context(), Duration::ZERO);
    Ok(kube.port_forward(&namespace, &service, port))
}

/// Make `container_port` reachable: kind's host port, or a port-forward that is listening.
pub fn open(stack: &Stack, container_port: u16) -> Result<Port> {
    if !stack.cluster.shared() {
        return Ok(Port { local: stack.cluster.host_port(container_port)?, _forward: None });
    }
    let cmd = forward_cmd(stack, container_port)?;
    let mut stream = cmd.stream()?;
    let reader =
        stream.take_reader().ok_or_else(|| Error::step(format!("`{cmd}` has no output"), "run again"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(port) = listening(&line) {
                let _ = tx.send(port);
            }
        }
    });
    let end = Instant::now() + FORWARD_DEADLINE;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(local) => return Ok(Port { local, _forward: Some(stream) }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Command {
                    line: cmd.to_string(),
                    status: "exited before it listened".into(),
                    stderr_tail: stream.stderr_tail(),
                    next: "check the Service and its pods (`kubectl get svc,pods -n <namespace>`), then run again"
                        .into(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) if crate::wait::interrupted() => {
                return Err(Error::Interrupted);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= end => {
                return Err(Error::Timeout {
                    what: format!("`{cmd}` to listen"),
                    after: FORWARD_DEADLINE,
                    detail: stream.stderr_tail(),
                    next: "check that the Service has a Ready pod, then run again".into(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// `Forwarding from 127.0.0.1:41234 -> 8080`: the local port.
fn listening(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectls_listening_line_names_the_local_port() {
        assert_eq!(listening("Forwarding from 127.0.0.1:41234 -> 8080"), Some(41234));
        assert_eq!(listening("Forwarding from [::1]:41234 -> 8080"), None);
        assert_eq!(listening("Handling connection for 41234"), None);
    }
}
