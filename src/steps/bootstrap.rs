//! The bootstrap: a kind cluster from the config, Gateway API CRDs, Istio ambient, the Secrets,
//! the images, then every workload on the dependency graph (`run_graph`), each applied the moment
//! Istio, what it needs and its images are ready; or, with `up --tiers`, each tier of manifests
//! after the other. Every step is idempotent, so `up` after a bootstrap that stopped halfway
//! converges (on an existing cluster it starts after `kind create`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::plan::{Graph, Prep, Task};
use crate::secret::Secret;
use crate::stack::KeySource;
use crate::ui::human;

use super::{Ctx, images, rollout};

/// Before anything is created: every workload is deployed by a manifest, each app image is
/// present or buildable, and (when the cluster is to be created) every host port of the cluster
/// config is free. (istioctl's release was judged when the bootstrap was planned.)
pub fn checks(ctx: &Ctx, ports: bool) -> Result<()> {
    let step = ctx.ui.start("Checking what the bootstrap needs");
    let units = &ctx.stack.bootstrap.units;
    let orphans: Vec<String> = ctx
        .stack
        .workloads
        .iter()
        .enumerate()
        .filter(|(i, _)| !units.iter().any(|u| u.workload == Some(*i)))
        .map(|(_, w)| format!("{}/{}", w.namespace, w.name))
        .collect();
    if !orphans.is_empty() {
        return Err(Error::input(
            "stack file",
            format!(
                "no manifest of bootstrap.tiers deploys workload(s) {}: the bootstrap could not create them",
                orphans.join(", ")
            ),
        ));
    }
    if ports {
        for m in &ctx.stack.cluster.ports {
            let Some(port) = m.host_port else { continue };
            if !crate::http::port_free(&m.listen_address, port) {
                return Err(Error::prerequisite(
                    format!(
                        "host port {port} ({}), which the cluster config maps to node port {}, is already \
                         in use; nothing was created",
                        m.listen_address, m.container_port
                    ),
                    format!(
                        "free it (`lsof -nP -iTCP:{port} -sTCP:LISTEN` names the process; a leftover \
                         socat proxy: `docker rm -f kiali-proxy flink-proxy debezium-proxy`), or change \
                         hostPort in the cluster config"
                    ),
                ));
            }
        }
    }
    for image in &ctx.stack.bootstrap.images {
        if present(ctx, &image.image)? {
            continue;
        }
        match std::env::var(&image.context_env) {
            Ok(dir) if std::path::Path::new(&dir).is_dir() => {}
            Ok(dir) => {
                return Err(Error::prerequisite(
                    format!(
                        "{} = {dir} is not a folder (the build context for {})",
                        image.context_env, image.image
                    ),
                    format!("point {} at the folder with {}'s Dockerfile", image.context_env, image.image),
                ));
            }
            Err(_) => {
                return Err(Error::prerequisite(
                    format!(
                        "image {} is not present locally and {} (its build context) is not set; nothing \
                         was created",
                        image.image, image.context_env
                    ),
                    format!(
                        "export {}=<folder with its Dockerfile>, or build it yourself (`docker build -t {} <folder>`), then run again",
                        image.context_env, image.image
                    ),
                ));
            }
        }
    }
    step.done("ready");
    Ok(())
}

fn present(ctx: &Ctx, image: &str) -> Result<bool> {
    Ok(ctx.engine().image_present(image).run_unchecked()?.status.success())
}

/// The bootstrap on the graph: the images start on the host at once (built, or pulled in the
/// graph's order), the cluster is created, then every task runs the moment what it waits for
/// is done: the Secrets (with the namespaces, one apply) and the Gateway API CRDs at once, each
/// image into the node as it arrives, Istio once its images are there, each unit once Istio,
/// what it needs and its images are, each connector after its workloads.
pub fn run_graph(ctx: &Ctx, create: bool, graph: &Graph) -> Result<()> {
    let route = images::Route::detect()?;
    let host = images::Host::start(ctx, &graph.images, &route)?;
    if create {
        create_cluster(ctx)?;
    }
    super::mesh::wait_api(ctx)?;
    let step = ctx.ui.start(&format!(
        "Bootstrapping {} workloads on the dependency graph (each the moment Istio, what it needs and its images are ready)",
        ctx.stack.workloads.len()
    ));
    let loader = images::Loader::start(ctx, host, graph, route)?;
    // The preparations run on their own threads, each with a context of its own.
    let (stack, ui) = (Arc::new(ctx.stack.clone()), ctx.ui.clone());
    rollout::run_bootstrap(ctx, graph, &|prep, done| match prep {
        Prep::Image(i) => loader.request(i, done),
        other => {
            let (stack, ui) = (Arc::clone(&stack), ui.clone());
            std::thread::spawn(move || {
                let c = Ctx::new(&stack, &ui);
                done.send(match other {
                    Prep::Secrets => secrets_with_namespaces(&c),
                    Prep::Crds => install_crds(&c).map(|()| "the Gateway API CRDs established".to_string()),
                    Prep::Istio => install_istio(&c)
                        .map(|()| format!("Istio ready: {}", c.stack.bootstrap.istio_ready.join(", "))),
                    Prep::Image(_) => unreachable!("the loader's"),
                });
            });
        }
    })?;
    step.done("all ready");
    Ok(())
}

pub fn create_cluster(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    let name = &ctx.stack.cluster.name;
    let step = ctx.ui.start(&format!(
        "Creating kind cluster {name} (waiting ≤ {} for the control plane)",
        human(b.cluster_wait)
    ));
    let cmd = ctx.engine().write().kind_create_cluster(
        name,
        Secret::unregistered(ctx.stack.cluster.raw.clone()),
        b.cluster_wait,
    );
    cmd.run().map_err(|e| {
        e.with_next(format!(
            "kind leaves nothing behind on failure; check `{} info` (memory ≥ 8 GiB) and run `bookstore up` again",
            ctx.engine().program
        ))
    })?;
    step.done("created");
    Ok(())
}

pub fn gateway_crds(ctx: &Ctx) -> Result<()> {
    let step = ctx.ui.start("Installing the Gateway API CRDs");
    install_crds(ctx)?;
    step.done("established");
    Ok(())
}

fn install_crds(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    crds_cmd(ctx)?.run().map_err(|e| ctx.kube.explain(e))?;
    let crds: Vec<String> = b.crds_established.iter().map(|c| format!("crd/{c}")).collect();
    ctx.kube
        .wait_condition("Established", &crds, None, b.crds_timeout)
        .run()
        .map_err(|e| ctx.kube.explain(e))?;
    Ok(())
}

fn crds_cmd(ctx: &Ctx) -> Result<crate::exec::Cmd> {
    let b = &ctx.stack.bootstrap;
    Ok(match &b.crds_text {
        None => ctx.kube.apply_url(&b.crds),
        Some(text) => ctx.kube.apply(Secret::unregistered(text.clone())),
    })
}

pub fn istio(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    let step = ctx.ui.start(&format!("Installing Istio ambient (waiting ≤ {})", human(b.istio_timeout)));
    install_istio(ctx)?;
    step.done(&b.istio_ready.join(", "));
    Ok(())
}

fn install_istio(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    crate::kube::istioctl_install(ctx.kube.context(), &b.istio_install).run()?;
    for target in &b.istio_ready {
        let (kind, name) = target.split_once('/').unwrap_or(("deployment", target));
        ctx.kube
            .rollout_status(kind, name, &ctx.stack.mesh.namespace, b.istio_timeout)
            .run()
            .map_err(|e| ctx.kube.explain(e))?;
    }
    Ok(())
}

/// The tier's files and its documents as one stream for `kubectl apply -f -`.
fn manifests(ctx: &Ctx, tier: usize) -> (Vec<String>, String) {
    let docs = &ctx.stack.bootstrap.tiers[tier].docs;
    let mut names: Vec<String> = docs.iter().map(|d| d.file.clone()).collect();
    names.dedup();
    (names, crate::manifests::stream(docs))
}

pub fn tier(ctx: &Ctx, index: usize) -> Result<()> {
    let tier = &ctx.stack.bootstrap.tiers[index];
    let step = ctx.ui.start(&format!("Applying {} (waiting ≤ {})", tier.dir, human(tier.timeout)));
    let (_, text) = manifests(ctx, index);
    ctx.kube.apply(Secret::unregistered(text)).run().map_err(|e| ctx.kube.explain(e))?;
    rollout::await_ready(ctx, &tier.ready, tier.timeout)?;
    for (namespace, name) in &tier.programmed {
        ctx.kube
            .wait_condition("Programmed", &[gateway(name)], Some(namespace), tier.timeout)
            .run()
            .map_err(|e| ctx.kube.explain(e))?;
    }
    step.done(&format!("{} ready", tier.ready.len() + tier.programmed.len()));
    Ok(())
}

/// A Gateway API Gateway by its full resource name: Istio serves a `gateway` kind too
/// (networking.istio.io), and `gateway/<name>` leaves kubectl to pick one (istio/istio#44354).
fn gateway(name: &str) -> String {
    format!("gateways.gateway.networking.k8s.io/{name}")
}

/// 32 characters from [A-Za-z0-9], from the OS's randomness (safe in URLs, properties files and
/// shell words, where these values end up).
fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom")
        .map_err(|e| Error::step(format!("cannot read /dev/urandom: {e}"), "run on a Unix-like system"))?;
    let mut out = String::new();
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        urandom
            .read_exact(&mut buf)
            .map_err(|e| Error::step(format!("reading /dev/urandom: {e}"), "run again"))?;
        // Rejection sampling: 248 = 4 × 62, so every character is equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < 32 {
                out.push(ALPHABET[(*b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// The Secrets of the contract that do not exist yet, as manifests (values generated here,
/// registered with the redactor, never printed), and how many exist already.
fn new_secrets(ctx: &Ctx) -> Result<(Vec<(String, Value)>, usize)> {
    let specs = &ctx.stack.bootstrap.secrets;
    let listing = ctx.kube.secret_names().run().map_err(|e| ctx.kube.explain(e))?;
    let existing: BTreeSet<String> = listing
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some(format!("{}/{}", words.next()?, words.next()?))
        })
        .collect();
    // Values of this run, by (namespace/secret, key), for `copy` and `properties`.
    let mut values: BTreeMap<(String, String), Secret> = BTreeMap::new();
    let (mut created, mut kept) = (Vec::new(), 0);
    for spec in specs {
        let id = format!("{}/{}", spec.namespace, spec.name);
        if existing.contains(&id) {
            kept += 1;
            continue;
        }
        let mut data: BTreeMap<String, String> = BTreeMap::new();
        for (key, source) in &spec.keys {
            let value = match source {
                KeySource::Random => Secret::new(random_password()?),
                KeySource::Fixed(v) => Secret::unregistered(v.clone()),
                KeySource::Copy(ns, secret, from_key) => {
                    let from_id = format!("{ns}/{secret}");
                    match values.get(&(from_id.clone(), from_key.clone())) {
                        Some(v) => v.clone(),
                        None => {
                            let read = ctx.kube.read_secret(ns, secret, &[from_key.as_str()])?;
                            read.get(from_key).cloned().ok_or_else(|| {
                                Error::prerequisite(
                                    format!("secret {from_id} has no key {from_key}"),
                                    "check the secrets contract",
                                )
                            })?
                        }
                    }
                }
                KeySource::Properties(keys) => {
                    let mut text = String::new();
                    for k in keys {
                        // The contract lists each key before the properties that use it (load).
                        let v = data.get(k).map(String::as_str).unwrap_or_default();
                        text.push_str(&format!("{k}={v}\n"));
                    }
                    Secret::unregistered(text)
                }
            };
            values.insert((id.clone(), key.clone()), value.clone());
            data.insert(key.clone(), value.expose().to_string());
        }
        let manifest = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "bookstore"}},
            "stringData": data,
        });
        created.push((id, manifest));
    }
    Ok((created, kept))
}

/// `up --tiers`: create every Secret of the contract that does not exist yet, one apply each,
/// on kubectl's stdin.
pub fn secrets(ctx: &Ctx) -> Result<()> {
    let step = ctx.ui.start("Creating the Secrets (existing ones are kept)");
    let (created, kept) = new_secrets(ctx)?;
    for (_, manifest) in &created {
        ctx.kube.apply(Secret::unregistered(manifest.to_string())).run().map_err(|e| ctx.kube.explain(e))?;
    }
    step.done(&format!("{} created, {kept} kept", created.len()));
    Ok(())
}

/// The graph's first apply: the namespaces and every missing Secret, in one `kubectl apply` on
/// stdin (the namespaces first in the stream).
fn secrets_with_namespaces(ctx: &Ctx) -> Result<String> {
    let (created, kept) = new_secrets(ctx)?;
    let b = &ctx.stack.bootstrap;
    let mut stream = crate::manifests::stream(&b.namespaces);
    for (_, manifest) in &created {
        stream.push_str("---\n");
        stream.push_str(&manifest.to_string());
        stream.push('\n');
    }
    if !b.namespaces.is_empty() || !created.is_empty() {
        ctx.kube.apply(Secret::unregistered(stream)).run().map_err(|e| ctx.kube.explain(e))?;
    }
    Ok(format!("{} namespaces and the Secrets: {} created, {kept} kept", b.namespaces.len(), created.len()))
}

pub fn describe_checks(ctx: &Ctx, ports: bool, lines: &mut Vec<String>) {
    lines.push("# Bootstrap checks: istioctl's release and images (read above), our images present or buildable, host ports free".into());
    crate::observe::istio::describe(ctx.stack, lines);
    if ports {
        let list: Vec<String> =
            ctx.stack.cluster.ports.iter().filter_map(|m| m.host_port).map(|p| p.to_string()).collect();
        lines.push(format!("# host ports {} must be free", list.join(", ")));
    }
    for image in &ctx.stack.bootstrap.images {
        lines.push(format!(
            "{}   # else build from ${}",
            ctx.engine().image_present(&image.image),
            image.context_env
        ));
    }
}

pub fn describe(ctx: &Ctx, step: &crate::plan::Step, lines: &mut Vec<String>) -> Result<()> {
    use crate::plan::Step;
    let b = &ctx.stack.bootstrap;
    match step {
        Step::CreateCluster => {
            lines.push("# Create the kind cluster (config on stdin)".into());
            lines.push(
                ctx.engine()
                    .write()
                    .kind_create_cluster(
                        &ctx.stack.cluster.name,
                        Secret::unregistered(String::new()),
                        b.cluster_wait,
                    )
                    .to_string(),
            );
        }
        Step::GatewayCrds => {
            lines.push(format!("# Gateway API CRDs ({})", b.crds));
            lines.push(crds_cmd(ctx)?.to_string());
            let crds: Vec<String> = b.crds_established.iter().map(|c| format!("crd/{c}")).collect();
            lines.push(ctx.kube.wait_condition("Established", &crds, None, b.crds_timeout).to_string());
        }
        Step::InstallIstio => {
            lines.push("# Istio ambient".into());
            lines.push(crate::kube::istioctl_install(ctx.kube.context(), &b.istio_install).to_string());
            for target in &b.istio_ready {
                let (kind, name) = target.split_once('/').unwrap_or(("deployment", target));
                lines.push(
                    ctx.kube
                        .rollout_status(kind, name, &ctx.stack.mesh.namespace, b.istio_timeout)
                        .to_string(),
                );
            }
        }
        Step::Secrets => {
            lines.push("# Secrets: generated here when missing, sent on stdin, never printed".into());
            lines.push(ctx.kube.secret_names().to_string());
            for spec in &b.secrets {
                lines.push(format!(
                    "{}   # {}/{} unless it exists",
                    ctx.kube.apply(Secret::unregistered(String::new())),
                    spec.namespace,
                    spec.name
                ));
            }
        }
        Step::Images => {
            let names: Vec<String> = b.images.iter().map(|i| i.image.clone()).collect();
            lines.push("# Our images into the node (each built first when missing)".into());
            images::Route::describe(ctx.stack, &names, lines);
        }
        Step::Bootstrap { create, graph } => describe_graph(ctx, *create, graph, lines)?,
        Step::Tier(i) => {
            let tier = &b.tiers[*i];
            let (names, _) = manifests(ctx, *i);
            lines.push(format!("# Tier {}: {}", tier.dir, names.join(", ")));
            lines.push(ctx.kube.apply(Secret::unregistered(String::new())).to_string());
            if !tier.ready.is_empty() {
                let list: Vec<String> = tier.ready.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
                lines.push(format!(
                    "{}   # until {} rolled out",
                    ctx.kube.watch_deployments(),
                    list.join(", ")
                ));
            }
            for (ns, name) in &tier.programmed {
                lines.push(
                    ctx.kube
                        .wait_condition("Programmed", &[gateway(name)], Some(ns), tier.timeout)
                        .to_string(),
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// `--dry-run` of the bootstrap graph: the images, `kind create`, then each task with what it
/// waits for and the commands it runs, wave by wave.
fn describe_graph(ctx: &Ctx, create: bool, graph: &Graph, lines: &mut Vec<String>) -> Result<()> {
    let stack = ctx.stack;
    let b = &stack.bootstrap;
    let name = &stack.cluster.name;
    lines.push("# Bootstrap on the dependency graph: each task the moment what it waits for is done".into());
    lines.push(
        "# Images, from the start, one pull at a time in this order (the slowest chains first; Istio's as `istioctl manifest generate` names them):".into(),
    );
    lines.push(format!("{}   # what the host has is not pulled", ctx.engine().image_list()));
    let names: Vec<String> = graph.images.iter().map(|i| i.name.clone()).collect();
    for (image, n) in graph.images.iter().zip(&names) {
        match image.source {
            crate::plan::ImageSource::Ours(k) => lines.push(format!(
                "{}   # ours: used as it is, else built from ${}",
                ctx.engine().image_present(n),
                b.images[k].context_env
            )),
            _ => lines.push(format!("{}   # unless on the host", ctx.engine().write().pull(n))),
        }
    }
    if create {
        lines.push("# Meanwhile, the kind cluster (config on stdin)".into());
        lines.push(
            ctx.engine()
                .write()
                .kind_create_cluster(name, Secret::unregistered(String::new()), b.cluster_wait)
                .to_string(),
        );
    }
    super::mesh::describe_api(ctx, lines);
    lines.push(format!("{}   # one watch for every readiness wait", ctx.kube.watch_deployments()));
    let task = |t: &Task| match t {
        Task::Prep(Prep::Image(i)) => names[*i].clone(),
        other => super::rollout::task_name(ctx, graph, other),
    };
    lines.push(
        "# Into the node one load at a time, in this order, each once its images are on the host (else the next that is):"
            .into(),
    );
    for (n, load) in graph.loads().iter().enumerate() {
        let load: Vec<&str> = load.iter().map(|i| names[*i].as_str()).collect();
        lines.push(format!("#   {}. {}", n + 1, load.join(" ")));
    }
    images::Route::describe(stack, &["<the load's images>".to_string()], lines);
    for (n, wave) in graph.waves().iter().enumerate() {
        lines.push(format!("# wave {}", n + 1));
        for t in wave {
            if matches!(t, Task::Prep(Prep::Image(_))) {
                continue; // above
            }
            let after: Vec<String> = graph
                .after(*t)
                .iter()
                .map(|a| match a {
                    Task::Prep(Prep::Image(i)) => format!("image {}", names[*i]),
                    other => task(other),
                })
                .collect();
            let when = if after.is_empty() {
                "at once".to_string()
            } else {
                format!("once {} done", after.join(", "))
            };
            lines.push(format!("# {}: {when}", task(t)));
            match t {
                Task::Prep(Prep::Image(_)) => {}
                Task::Prep(Prep::Secrets) => {
                    lines.push(ctx.kube.secret_names().to_string());
                    let mut files: Vec<&str> = b.namespaces.iter().map(|d| d.file.as_str()).collect();
                    files.dedup();
                    lines.push(format!(
                        "{}   # the namespaces ({}) and the missing Secrets, generated here, on stdin",
                        ctx.kube.apply(Secret::unregistered(String::new())),
                        files.join(", ")
                    ));
                }
                Task::Prep(Prep::Crds) => {
                    lines.push(crds_cmd(ctx)?.to_string());
                    let crds: Vec<String> = b.crds_established.iter().map(|c| format!("crd/{c}")).collect();
                    lines.push(
                        ctx.kube.wait_condition("Established", &crds, None, b.crds_timeout).to_string(),
                    );
                }
                Task::Prep(Prep::Istio) => {
                    lines.push(
                        crate::kube::istioctl_install(ctx.kube.context(), &b.istio_install).to_string(),
                    );
                    for target in &b.istio_ready {
                        let (kind, n) = target.split_once('/').unwrap_or(("deployment", target));
                        lines.push(
                            ctx.kube
                                .rollout_status(kind, n, &stack.mesh.namespace, b.istio_timeout)
                                .to_string(),
                        );
                    }
                }
                Task::Apply(u) => {
                    let unit = &b.units[*u];
                    let docs: Vec<String> =
                        unit.docs.iter().map(|d| format!("{} {}", d.kind, d.name)).collect();
                    let mut files: Vec<&str> = unit.docs.iter().map(|d| d.file.as_str()).collect();
                    files.dedup();
                    lines.push(format!("#   {}: {}", files.join(", "), docs.join(", ")));
                    let ready: Vec<String> = unit.ready.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
                    lines.push(format!(
                        "{}   # with the units due together; until {} rolled out",
                        ctx.kube.apply_objects(Secret::unregistered(String::new())),
                        ready.join(", ")
                    ));
                    for (ns, g) in &unit.programmed {
                        lines.push(
                            ctx.kube
                                .wait_condition(
                                    "Programmed",
                                    &[format!("gateways.gateway.networking.k8s.io/{g}")],
                                    Some(ns),
                                    unit.timeout,
                                )
                                .to_string(),
                        );
                    }
                }
                Task::Register(i) => super::connectors::describe(ctx, &stack.connect.connectors[*i], lines)?,
                Task::Restart(_) | Task::Await(_) | Task::Replace(_) => {}
            }
        }
    }
    Ok(())
}
