//! The cluster-side inputs, checked before the first change: every workload the stack names
//! exists, and the connector secret has every key, decodable. Bad input here changes nothing
//! (not even ztunnel).

use crate::error::{Error, Result};

use super::Ctx;

pub fn run(ctx: &Ctx) -> Result<()> {
    let step = ctx.ui.start("Checking the cluster against the stack file");
    let absent = missing_workloads(ctx)?;
    if !absent.is_empty() {
        return Err(absent_error(ctx, &absent));
    }
    let keys = ctx.credentials()?.len();
    let c = &ctx.stack.connect;
    step.done(&format!(
        "{} workloads present, secret {}/{} has its {keys} keys",
        ctx.stack.workloads.len(),
        c.secret_namespace,
        c.secret_name
    ));
    Ok(())
}

/// Which stack workloads the cluster lacks.
fn missing_workloads(ctx: &Ctx) -> Result<Vec<String>> {
    let present = ctx.deployments()?;
    Ok(ctx
        .stack
        .workloads
        .iter()
        .filter(|w| !present.contains_key(&(w.namespace.clone(), w.name.clone())))
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect())
}

/// The stack names deployments the cluster does not have.
pub fn absent_error(ctx: &Ctx, absent: &[String]) -> Error {
    Error::prerequisite(
        format!(
            "deployment(s) named in the stack file are not in the cluster: {}; nothing was restarted",
            absent.join(", ")
        ),
        format!(
            "check the stack file against `kubectl --context {} get deploy -A`, or rebuild the stack \
             with `bookstore down && bookstore up`",
            ctx.kube.context()
        ),
    )
}

pub fn describe(ctx: &Ctx, lines: &mut Vec<String>) {
    let c = &ctx.stack.connect;
    lines.push("# Check the cluster against the stack file before changing anything".into());
    lines.push(format!("{}   # every workload exists", ctx.kube.list_deployments()));
    lines.push(format!(
        "{}   # every key present, decoded in-process, never printed",
        ctx.kube.get_secret(&c.secret_namespace, &c.secret_name)
    ));
}
