//! The bootstrap: a kind cluster from the config, Gateway API CRDs, Istio ambient, the Secrets,
//! the images, then every workload on the dependency graph ([`OnGraph`]), each applied the
//! moment Istio, what it needs and its images are ready; or, with `up --tiers`, each tier of
//! manifests after the other. Every step is idempotent, so `up` after a bootstrap that stopped
//! halfway converges (on an existing cluster it starts after `kind create`). The preparations
//! are operations ([`crds_ops`], [`istio_ops`], [`secrets_op`]) that the graph's threads run and
//! its dry run prints: the same values.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::plan::{Graph, Prep, Task};
use crate::secret::Secret;
use crate::stack::KeySource;
use crate::ui::human;

use super::op::{self, OnGraph, Op, Part};
use super::{Ctx, images, rollout};

/// Before anything is created: every workload is deployed by a manifest, each app image is
/// present or buildable, and (when the cluster is to be created) every host port of the cluster
/// config is free. (istioctl's release was judged when the bootstrap was planned.)
pub fn checks_part(ctx: &Ctx, ports: bool) -> Part {
    let mut ops = vec![
        Op::Note("Bootstrap checks: our images present or buildable, host ports free".into()),
        Op::Deployed,
    ];
    if ports {
        ops.push(Op::PortsFree);
    }
    for image in &ctx.stack.bootstrap.images {
        ops.push(Op::ImagePresent {
            cmd: ctx.engine().image_present(&image.image),
            image: image.image.clone(),
            context_env: image.context_env.clone(),
        });
    }
    Part::new("Checking what the bootstrap needs", ops, "ready")
}

/// Every workload is deployed by a manifest of `bootstrap.tiers`.
pub fn deployed(ctx: &Ctx) -> Result<()> {
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
    Ok(())
}

/// Every host port of the cluster config is free (checked before the cluster is created).
pub fn ports_free(ctx: &Ctx) -> Result<()> {
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
    Ok(())
}

/// Our image is on the host (`present`: its `<engine> image inspect`), else its build context is set.
pub fn image_present(present: &Cmd, image: &str, context_env: &str) -> Result<()> {
    if present.run_unchecked()?.status.success() {
        return Ok(());
    }
    match std::env::var(context_env) {
        Ok(dir) if std::path::Path::new(&dir).is_dir() => Ok(()),
        Ok(dir) => Err(Error::prerequisite(
            format!("{context_env} = {dir} is not a folder (the build context for {image})"),
            format!("point {context_env} at the folder with {image}'s Dockerfile"),
        )),
        Err(_) => Err(Error::prerequisite(
            format!(
                "image {image} is not present locally and {context_env} (its build context) is not set; nothing \
                 was created"
            ),
            format!(
                "export {context_env}=<folder with its Dockerfile>, or build it yourself (`docker build -t {image} <folder>`), then run again"
            ),
        )),
    }
}

/// `kind create cluster`, the cluster config on stdin.
/// When the config declares workers, then every node Ready: kind's `--wait` covers the control
/// planes only (kind `pkg/cluster/internal/create/actions/waitforready/waitforready.go`), and a
/// worker's kubelet posts Ready a while after it joined; Istio's DaemonSets and the workloads then
/// start on nodes that run.
pub fn create_part(ctx: &Ctx) -> Part {
    let b = &ctx.stack.bootstrap;
    let name = &ctx.stack.cluster.name;
    let workers = ctx.stack.cluster.workers;
    let mut ops = vec![
        Op::Note("Create the kind cluster (config on stdin)".into()),
        Op::CreateCluster(ctx.engine_write.kind_create_cluster(name, &ctx.stack.cluster.raw, b.cluster_wait)),
    ];
    if workers == 0 {
        return Part::new(
            format!(
                "Creating kind cluster {name} (waiting ≤ {} for the control plane)",
                human(b.cluster_wait)
            ),
            ops,
            "created",
        );
    }
    let every =
        ctx.kube.wait_condition("Ready", &["nodes".to_string(), "--all".to_string()], None, b.cluster_wait);
    ops.push(Op::Run { cmd: every, why: "kind waits for the control plane only".into() });
    Part::new(
        format!(
            "Creating kind cluster {name} (waiting ≤ {} for the control plane, then for its {workers} worker \
             node(s) to be Ready)",
            human(b.cluster_wait)
        ),
        ops,
        "created, every node Ready",
    )
}

pub fn create_cluster(ctx: &Ctx, cmd: &Cmd) -> Result<()> {
    cmd.run().map_err(|e| {
        e.with_next(format!(
            "kind leaves nothing behind on failure; check `{} info` (memory ≥ 8 GiB) and run `bookstore up` again",
            ctx.engine().program
        ))
    })?;
    Ok(())
}

/// The Gateway API CRDs applied (from the stack's file on stdin, or kubectl fetching the URL),
/// then Established.
pub fn crds_ops(ctx: &Ctx) -> Vec<Op> {
    let b = &ctx.stack.bootstrap;
    let apply = match &b.crds_text {
        None => ctx.write.apply_url(&b.crds),
        Some(text) => ctx.write.apply().stdin(text.as_bytes(), &format!("the Gateway API CRDs, {}", b.crds)),
    };
    let crds: Vec<String> = b.crds_established.iter().map(|c| format!("crd/{c}")).collect();
    vec![
        Op::Note(format!("Gateway API CRDs ({})", b.crds)),
        Op::Run { cmd: apply, why: String::new() },
        Op::Run {
            cmd: ctx.kube.wait_condition("Established", &crds, None, b.crds_timeout),
            why: String::new(),
        },
    ]
}

/// `istioctl install`, then istiod, istio-cni-node and ztunnel rolled out.
pub fn istio_ops(ctx: &Ctx) -> Vec<Op> {
    let b = &ctx.stack.bootstrap;
    let mut ops = vec![
        Op::Note("Istio ambient".into()),
        Op::Run { cmd: ctx.write.istioctl_install(&b.istio_install), why: String::new() },
    ];
    for target in &b.istio_ready {
        let (kind, name) = target.split_once('/').unwrap_or(("deployment", target));
        let status = ctx.kube.rollout_status(kind, name, &ctx.stack.mesh.namespace, b.istio_timeout);
        ops.push(Op::Run { cmd: status, why: String::new() });
    }
    ops
}

pub fn istio_part(ctx: &Ctx) -> Part {
    let b = &ctx.stack.bootstrap;
    Part::new(
        format!("Installing Istio ambient (waiting ≤ {})", human(b.istio_timeout)),
        istio_ops(ctx),
        b.istio_ready.join(", "),
    )
}

/// One tier of manifests applied, its deployments rolled out, its Gateways Programmed.
pub fn tier_part(ctx: &Ctx, index: usize) -> Part {
    let tier = &ctx.stack.bootstrap.tiers[index];
    let mut files: Vec<&str> = tier.docs.iter().map(|d| d.file.as_str()).collect();
    files.dedup();
    let text = crate::manifests::stream(&tier.docs);
    let mut ops = vec![
        Op::Note(format!("Tier {}: {}", tier.dir, files.join(", "))),
        Op::Run {
            cmd: ctx.write.apply().stdin(text, &format!("the documents of {}", tier.dir)),
            why: String::new(),
        },
    ];
    if !tier.ready.is_empty() {
        ops.push(Op::RolledOut {
            watch: ctx.kube.watch_deployments(),
            targets: tier.ready.clone(),
            timeout: tier.timeout,
        });
    }
    for (namespace, name) in &tier.programmed {
        let wait = ctx.kube.wait_programmed(namespace, name, tier.timeout);
        ops.push(Op::Run { cmd: wait, why: String::new() });
    }
    Part::new(
        format!("Applying {} (waiting ≤ {})", tier.dir, human(tier.timeout)),
        ops,
        format!("{} ready", tier.ready.len() + tier.programmed.len()),
    )
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
fn new_secrets(ctx: &Ctx, list: &Cmd) -> Result<(Vec<(String, Value)>, usize)> {
    let specs = &ctx.stack.bootstrap.secrets;
    let listing = list.run().map_err(|e| ctx.kube.explain(e))?;
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

/// The Secrets of the contract that do not exist yet, in one `kubectl apply` on stdin (secret,
/// made at run time), the namespaces first when `namespaces` (the graph's first apply).
pub fn secrets_op(ctx: &Ctx, namespaces: bool) -> Op {
    let b = &ctx.stack.bootstrap;
    // An existing Secret whose key another copies is read (only when it exists already).
    let mut reads: Vec<Cmd> = Vec::new();
    for spec in &b.secrets {
        for (_, source) in &spec.keys {
            if let KeySource::Copy(ns, secret, _) = source {
                let cmd = ctx.kube.get_secret(ns, secret);
                if !reads.iter().any(|r| r.same_argv(&cmd)) {
                    reads.push(cmd);
                }
            }
        }
    }
    let what = if namespaces {
        let mut files: Vec<&str> = b.namespaces.iter().map(|d| d.file.as_str()).collect();
        files.dedup();
        format!("the namespaces ({}) and the missing Secrets", files.join(", "))
    } else {
        "the missing Secrets".to_string()
    };
    Op::Secrets {
        list: ctx.kube.secret_names(),
        reads,
        apply: ctx.write.apply().later(&what).secret(),
        namespaces,
    }
}

/// Create the Secrets that do not exist yet (values generated here, never printed): `list`
/// finds the existing ones, `apply` gets the others (and the namespaces) on its stdin.
pub fn secrets(ctx: &Ctx, list: &Cmd, apply: &Cmd, namespaces: bool) -> Result<String> {
    let (created, kept) = new_secrets(ctx, list)?;
    let b = &ctx.stack.bootstrap;
    let mut stream = if namespaces { crate::manifests::stream(&b.namespaces) } else { String::new() };
    for (_, manifest) in &created {
        stream.push_str("---\n");
        stream.push_str(&manifest.to_string());
        stream.push('\n');
    }
    if !stream.is_empty() {
        apply.clone().fill(stream).run().map_err(|e| ctx.kube.explain(e))?;
    }
    let secrets = format!("{} created, {kept} kept", created.len());
    Ok(if namespaces {
        format!("{} namespaces and the Secrets: {secrets}", b.namespaces.len())
    } else {
        secrets
    })
}

/// How the executor runs a part (given, so this module does not import the executor back).
pub type RunPart = fn(&Ctx, &Part) -> Result<String>;
/// How the executor prints parts.
pub type PrintParts = fn(&Ctx, &[Part]) -> Result<Vec<String>>;

pub fn on_graph(ctx: &Ctx, create: bool, graph: &Graph) -> OnGraph {
    let b = &ctx.stack.bootstrap;
    let prep = |ops: Vec<Op>, done: String| Part { title: None, ops, done };
    OnGraph {
        create: create.then(|| create_part(ctx)),
        api: super::mesh::api_part(ctx),
        graph: graph.clone(),
        preps: vec![
            (Prep::Secrets, prep(vec![secrets_op(ctx, true)], String::new())),
            (Prep::Crds, prep(crds_ops(ctx), "the Gateway API CRDs established".into())),
            (Prep::Istio, prep(istio_ops(ctx), format!("Istio ready: {}", b.istio_ready.join(", ")))),
        ],
    }
}

/// The bootstrap on the graph: the images start on the host at once (built, or pulled in the
/// graph's order), the cluster is created, then every task runs the moment what it waits for
/// is done: the Secrets (with the namespaces, one apply) and the Gateway API CRDs at once, each
/// image into the node as it arrives, Istio once its images are there, each unit once Istio,
/// what it needs and its images are, each connector after its workloads.
pub fn run_graph(ctx: &Ctx, on: &OnGraph, run_part: RunPart) -> Result<()> {
    let graph = &on.graph;
    let route = images::Route::detect()?;
    let host = images::Host::start(ctx, &graph.images, &route)?;
    if let Some(create) = &on.create {
        run_part(ctx, create)?;
    }
    run_part(ctx, &on.api)?;
    let step = ctx.ui.start(&format!(
        "Bootstrapping {} workloads on the dependency graph (each the moment Istio, what it needs and its images are ready)",
        ctx.stack.workloads.len()
    ));
    let loader = images::Loader::start(ctx, host, graph, route)?;
    // The preparations run on their own threads, each with a context of its own.
    let (stack, ui) = (Arc::new(ctx.stack.clone()), ctx.ui.clone());
    rollout::run_bootstrap(ctx, graph, &|prep, done| match prep {
        Prep::Image(i) => loader.request(i, done),
        Prep::Secrets | Prep::Crds | Prep::Istio => {
            let (stack, ui) = (Arc::clone(&stack), ui.clone());
            let part = on.preps.iter().find(|(p, _)| *p == prep).map(|(_, part)| part.clone());
            std::thread::spawn(move || {
                let c = Ctx::new(&stack, &ui);
                done.send(match part {
                    Some(part) => run_part(&c, &part),
                    None => Err(Error::step(format!("no operations for {prep:?}"), "report this as a bug")),
                });
            });
        }
    })?;
    step.done("all ready");
    Ok(())
}

/// `--dry-run` of the bootstrap graph: the images, `kind create`, then each task with what it
/// waits for and the operations it runs, wave by wave (the preparations' own values).
pub fn describe_graph(ctx: &Ctx, on: &OnGraph, print: PrintParts, lines: &mut Vec<String>) -> Result<()> {
    let stack = ctx.stack;
    let b = &stack.bootstrap;
    let graph = &on.graph;
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
            crate::plan::ImageSource::Pull | crate::plan::ImageSource::Istio => {
                lines.push(format!("{}   # unless on the host", ctx.engine_write.pull(n)))
            }
        }
    }
    if let Some(create) = &on.create {
        lines.push("# Meanwhile:".into());
        lines.extend(print(ctx, std::slice::from_ref(create))?);
    }
    lines.extend(print(ctx, std::slice::from_ref(&on.api))?);
    rollout::watches(ctx, lines);
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
    images::Route::describe(ctx.engine_write, stack, &["<the load's images>".to_string()], lines);
    if graph.tasks.iter().any(|(t, _)| matches!(t, Task::Register(_))) {
        let c = &stack.connect;
        lines.push(op::line(
            &ctx.kube.get_secret(&c.secret_namespace, &c.secret_name),
            "the connectors' credentials, decoded in-process, never printed",
        ));
    }
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
                Task::Prep(prep @ (Prep::Secrets | Prep::Crds | Prep::Istio)) => {
                    if let Some((_, part)) = on.preps.iter().find(|(p, _)| p == prep) {
                        lines.extend(print(ctx, std::slice::from_ref(part))?);
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
                    lines.push(op::line(
                        &rollout::apply_units(ctx, &[*u]),
                        &format!("with the units due together; until {} rolled out", ready.join(", ")),
                    ));
                    for (ns, g) in &unit.programmed {
                        lines.push(ctx.kube.wait_programmed(ns, g, unit.timeout).to_string());
                    }
                }
                Task::Register(i) => super::connectors::describe(ctx, &stack.connect.connectors[*i], lines)?,
                Task::Restart(_) | Task::Await(_) | Task::Replace(_) => {}
            }
        }
    }
    Ok(())
}
