//! `bookstore down`: delete the kind cluster, the only destructive command. It asks on a
//! terminal; `--yes` for scripts.

use std::io::IsTerminal;

use crate::config::Config;
use crate::engine::{self, Engine};
use crate::error::{Error, Result};
use crate::ui::Ui;

pub fn run(config: &Config, ui: &Ui, yes: bool) -> Result<()> {
    let name = &config.stack.cluster.name;
    if config.stack.cluster.shared() {
        return Err(Error::prerequisite(
            format!(
                "`down` deletes the kind cluster {name}; on the shared cluster `{}` bookstore deletes nothing",
                config.stack.cluster.context()
            ),
            "drop --context to delete the kind cluster",
        ));
    }
    let engine = Engine::for_run();
    let delete = engine.write().kind_delete_cluster(name);
    if config.dry_run {
        ui.plan(&[engine.kind_get_clusters().to_string(), delete.to_string()]);
        return Ok(());
    }
    if which::which("kind").is_err() {
        return Err(Error::prerequisite(
            "`kind` was not found on PATH",
            "install kind: https://kind.sigs.k8s.io",
        ));
    }
    let clusters = engine.kind_get_clusters().run()?;
    if !engine::parse_names(&clusters.stdout).contains(name) {
        ui.ok_line(&format!("no kind cluster named {name}: nothing to delete"));
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::input(
                "invocation",
                format!(
                    "`down` deletes the cluster {name} and all its data; pass --yes to confirm when not on a terminal"
                ),
            ));
        }
        let answer =
            ui.ask(&format!("Delete the kind cluster {name} and all its data (databases, Kafka)? [y/N]"));
        if !matches!(answer.as_str(), "y" | "Y" | "yes") {
            ui.info("not deleted");
            return Err(Error::input("confirmation", "not confirmed"));
        }
    }
    let step = ui.start(&format!("Deleting cluster {name}"));
    delete.run()?;
    step.done("deleted");
    Ok(())
}
