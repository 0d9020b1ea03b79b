//! The stack's cross-checks, after it loads: names unique and known, `needs` without a cycle,
//! ports fixed where the tool needs them.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

use super::*;

pub(super) fn validate(stack: &Stack) -> Result<()> {
    let bad = |problem: String| Err(Error::input("stack file", problem));
    if stack.cluster.control_planes > 1 {
        return bad(format!(
            "the cluster config has {} control-plane nodes; kind clusters with more than one do not \
             survive a Docker restart (kubernetes-sigs/kind#1689): use one",
            stack.cluster.control_planes
        ));
    }
    if let Some(a) = stack.allow_contexts.iter().find(|a| a.bootstrap) {
        return bad(format!(
            "allow_contexts: `{}` has `bootstrap: true`, which bookstore does not do yet: a shared cluster \
             is never bootstrapped (no kind, image loads or istioctl install there); deploy the stack \
             with the cluster's own tooling and write the entry as `- {}`",
            a.context, a.context
        ));
    }
    let mut names = BTreeSet::new();
    for w in &stack.workloads {
        if !names.insert(w.name.as_str()) {
            return bad(format!("workload `{}` is listed twice", w.name));
        }
    }
    for w in &stack.workloads {
        for need in &w.needs {
            if !names.contains(need.as_str()) {
                return bad(format!("workload `{}` needs `{need}`, which is not a workload", w.name));
            }
        }
    }
    if let Some(cycle) = find_cycle(&stack.workloads) {
        return bad(format!("dependency cycle: {}", cycle.join(" → ")));
    }
    if !names.contains(stack.connect.workload.as_str()) {
        return bad(format!("connect.workload `{}` is not a workload", stack.connect.workload));
    }
    let mut connector_names = BTreeSet::new();
    for c in &stack.connect.connectors {
        if !connector_names.insert(c.name.as_str()) {
            return bad(format!("connector `{}` is listed twice", c.name));
        }
        for need in &c.needs {
            if !names.contains(need.as_str()) {
                return bad(format!("connector `{}` needs `{need}`, which is not a workload", c.name));
            }
        }
    }
    let c = &stack.connect;
    if let Some(spec) =
        stack.bootstrap.secrets.iter().find(|s| s.namespace == c.secret_namespace && s.name == c.secret_name)
    {
        for key in c.connectors.iter().flat_map(|k| [&k.user_key, &k.password_key]) {
            if !spec.keys.iter().any(|(k, _)| k == key) {
                return bad(format!(
                    "connect.secret {}/{} lacks key {key} in the secrets contract (a connector reads it)",
                    c.secret_namespace, c.secret_name
                ));
            }
        }
    }
    for check in &stack.smoke.checks {
        if !check.path.starts_with('/') {
            return bad(format!("smoke check `{}`: path must start with /", check.name));
        }
    }
    Ok(())
}

/// Every port the tool connects to has a fixed host port in the cluster config.
pub(super) fn validate_ports(stack: &Stack) -> Result<()> {
    stack.cluster.host_port(stack.connect.port)?;
    for check in &stack.smoke.checks {
        stack.cluster.host_port(check.port)?;
    }
    Ok(())
}

/// A dependency cycle among workloads, if any, as the names along it.
pub(super) fn find_cycle(workloads: &[Workload]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a Workload>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(name) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        if let Some(w) = by_name.get(name) {
            for need in &w.needs {
                if let Some(cycle) = visit(need, by_name, state, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state.insert(name, 2);
        None
    }
    let by_name: BTreeMap<&str, &Workload> = workloads.iter().map(|w| (w.name.as_str(), w)).collect();
    let mut state = BTreeMap::new();
    for w in workloads {
        if let Some(cycle) = visit(&w.name, &by_name, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
