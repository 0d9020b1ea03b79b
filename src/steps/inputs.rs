//! The cluster-side inputs, checked before the first change: every workload the stack names
//! exists, and the connector secret has every key, decodable. Bad input here changes nothing
//! (not even ztunnel).

use crate::error::{Error, Result};

use super::Ctx;
use super::op::{Op, Part};

pub fn part(ctx: &Ctx) -> Part {
    let c = &ctx.stack.connect;
    Part::new(
        "Checking the cluster against the stack file",
        vec![
            Op::Note("Check the cluster against the stack file before changing anything".into()),
            Op::Workloads(ctx.kube.list_deployments()),
            Op::SecretKeys {
                cmd: ctx.kube.get_secret(&c.secret_namespace, &c.secret_name),
                why: "every key present, decoded in-process, never printed".into(),
            },
        ],
        "",
    )
}

/// Every workload of the stack exists (the run's one listing, [`crate::observe::Ctx::deployments`]).
pub fn workloads(ctx: &Ctx) -> Result<String> {
    let absent = missing_workloads(ctx)?;
    if !absent.is_empty() {
        return Err(absent_error(ctx, &absent));
    }
    Ok(format!("{} workloads present", ctx.stack.workloads.len()))
}

/// The connector secret has every key (read once per run, [`crate::observe::Ctx::credentials`]).
pub fn secret_keys(ctx: &Ctx) -> Result<String> {
    let keys = ctx.credentials()?.len();
    let c = &ctx.stack.connect;
    Ok(format!("secret {}/{} has its {keys} keys", c.secret_namespace, c.secret_name))
}

/// Which stack workloads the cluster lacks.
fn missing_workloads(ctx: &Ctx) -> Result<Vec<String>> {
    let present = ctx.deployments()?;
    Ok(crate::judge::workloads::missing(ctx.stack, |ns, name| {
        present.contains_key(&(ns.to_string(), name.to_string()))
    }))
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
