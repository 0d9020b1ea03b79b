//! Debezium connectors (root causes 2 and 3): the flat config with the secret's credentials
//! injected, `PUT /connectors/{name}/config` only when it differs, then wait for RUNNING.

use crate::connect::{Connect, Desired, Outcome};
use crate::error::Result;
use crate::stack::Connector;
use crate::ui::human;
use crate::wait::Deadline;
use std::time::Duration;

use super::Ctx;
use super::op::{Op, Part};

pub fn connect(ctx: &Ctx) -> Result<Connect> {
    Connect::for_stack(ctx.stack)
}

/// Register one connector: wait for the REST API, PUT if needed, wait for RUNNING, all within
/// one `deadline` from now (the one printed; a timeout in any part names it). Owns all it needs,
/// so it can run on its own thread. Returns a note for the progress report.
pub fn register(api: &Connect, desired: &Desired, deadline: Duration) -> Result<String> {
    let deadline = Deadline::start(deadline);
    api.wait_ready(deadline)?;
    let outcome = api.register(desired, deadline)?;
    api.wait_running(&desired.name, deadline)?;
    Ok(match outcome {
        Outcome::Created => "registered, RUNNING",
        Outcome::Updated => "config updated, RUNNING",
        Outcome::Unchanged => "unchanged, RUNNING",
    }
    .to_string())
}

/// `bookstore connectors`: the credentials read once, then each connector registered in turn.
pub fn parts(ctx: &Ctx) -> Vec<Part> {
    let c = &ctx.stack.connect;
    let mut parts = vec![Part::quiet(vec![
        Op::Note("Register the Debezium connectors".into()),
        Op::SecretKeys {
            cmd: ctx.kube.get_secret(&c.secret_namespace, &c.secret_name),
            why: "decoded in-process, never printed".into(),
        },
    ])];
    for (i, connector) in c.connectors.iter().enumerate() {
        let title = format!("Registering connector {} (≤ {})", connector.name, human(c.timeout));
        parts.push(Part::new(title, vec![Op::Register(i)], ""));
    }
    parts
}

/// Register connector `i` of the stack; the note says how it went.
pub fn register_one(ctx: &Ctx, i: usize) -> Result<String> {
    let api = connect(ctx)?;
    let desired = ctx.desired(&ctx.stack.connect.connectors[i])?;
    register(&api, &desired, ctx.stack.connect.timeout)
}

/// The requests one registration makes, with the credentials shown as where they come from.
pub fn describe(ctx: &Ctx, connector: &Connector, lines: &mut Vec<String>) -> Result<()> {
    let api = Connect::shown(ctx.stack)?;
    let connect_cfg = &ctx.stack.connect;
    let mut config = connector.config.clone();
    config.insert("name".into(), connector.name.clone());
    config.insert(
        "database.user".into(),
        format!(
            "<{} from secret {}/{}>",
            connector.user_key, connect_cfg.secret_namespace, connect_cfg.secret_name
        ),
    );
    config.insert("database.password".into(), format!("<{} from secret, masked>", connector.password_key));
    let body = crate::secret::Secret::unregistered(serde_json::to_string(&config).unwrap_or_default());
    lines.push(format!("{}   # until it answers", api.list()));
    lines.push(format!("{}   # compare with the desired config", api.get_config(&connector.name)));
    lines.push(format!("{}   # only if absent or different", api.put_config(&connector.name, body)));
    lines.push(format!("{}   # until connector and tasks are RUNNING", api.status(&connector.name)));
    Ok(())
}
