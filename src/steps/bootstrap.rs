//! The bootstrap: a kind cluster from the config, Gateway API CRDs, Istio ambient, the Secrets,
//! our images, then each tier of manifests. Every step is idempotent, so `up` after a bootstrap
//! that stopped halfway converges (on an existing cluster it starts after `kind create`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde_json::json;

use crate::docker;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::stack::KeySource;
use crate::ui::human;

use super::{Ctx, rollout};

/// Before anything is created: istioctl answers, each app image is present or buildable, and
/// (when the cluster is to be created) every host port of the cluster config is free.
pub fn checks(ctx: &Ctx, ports: bool) -> Result<()> {
    let step = ctx.ui.start("Checking what the bootstrap needs");
    let version = docker::istioctl_version()
        .run()
        .map_err(|e| e.with_next("check the istioctl install (`istioctl version --remote=false`)"))?;
    let version = version.stdout.lines().next().unwrap_or("").trim().to_string();
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
        if present(&image.image)? {
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
    step.done(&format!("istioctl {version}"));
    Ok(())
}

fn present(image: &str) -> Result<bool> {
    Ok(docker::image_present(image).run_unchecked()?.status.success())
}

pub fn create_cluster(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    let name = &ctx.stack.cluster.name;
    let step = ctx.ui.start(&format!(
        "Creating kind cluster {name} (waiting ≤ {} for the control plane)",
        human(b.cluster_wait)
    ));
    let cmd = docker::kind_create_cluster(
        name,
        Secret::unregistered(ctx.stack.cluster.raw.clone()),
        b.cluster_wait,
    );
    cmd.run().map_err(|e| {
        e.with_next("kind leaves nothing behind on failure; check `docker info` (memory ≥ 8 GiB) and run `bookstore up` again")
    })?;
    step.done("created");
    Ok(())
}

pub fn gateway_crds(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    let step = ctx.ui.start("Installing the Gateway API CRDs");
    crds_cmd(ctx)?.run().map_err(|e| ctx.kube.explain(e))?;
    let crds: Vec<String> = b.crds_established.iter().map(|c| format!("crd/{c}")).collect();
    ctx.kube
        .wait_condition("Established", &crds, None, b.crds_timeout)
        .run()
        .map_err(|e| ctx.kube.explain(e))?;
    step.done("established");
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
    docker::istioctl_install(ctx.kube.context(), &b.istio_install).run()?;
    for target in &b.istio_ready {
        let (kind, name) = target.split_once('/').unwrap_or(("deployment", target));
        ctx.kube
            .rollout_status(kind, name, &ctx.stack.mesh.namespace, b.istio_timeout)
            .run()
            .map_err(|e| ctx.kube.explain(e))?;
    }
    step.done(&b.istio_ready.join(", "));
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

/// Create every Secret of the contract that does not exist yet. Values are generated here, sent
/// on kubectl's stdin, registered with the redactor, and never printed.
pub fn secrets(ctx: &Ctx) -> Result<()> {
    let specs = &ctx.stack.bootstrap.secrets;
    let step = ctx.ui.start("Creating the Secrets (existing ones are kept)");
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
                        let v = data.get(k).ok_or_else(|| {
                            Error::input(
                                "secrets contract",
                                format!("{id}: properties key {k} comes before its value"),
                            )
                        })?;
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
        ctx.kube.apply(Secret::unregistered(manifest.to_string())).run().map_err(|e| ctx.kube.explain(e))?;
        created.push(id);
    }
    step.done(&format!("{} created, {kept} kept", created.len()));
    Ok(())
}

/// Build our images when they are missing, then load them into the node. The classic image
/// store: `kind load docker-image` (it skips what the node already has). Docker's containerd
/// image store: a locally built image is an index with a provenance attestation that a plain
/// `docker save` (kind's own) leaves out, so the node's all-platforms import fails (kind#3795,
/// containerd#11344); `docker image save --platform <the node's>` writes one platform's manifest,
/// which imports, and `kind load image-archive` loads it (the route kind's docs give, kind#4247).
pub fn images(ctx: &Ctx) -> Result<()> {
    let b = &ctx.stack.bootstrap;
    let name = &ctx.stack.cluster.name;
    let step = ctx.ui.start(&format!("Loading {} images into the cluster", b.images.len()));
    for image in &b.images {
        if !present(&image.image)? {
            let dir = std::env::var(&image.context_env).unwrap_or_default();
            ctx.ui.info(&format!("building {} from {dir}", image.image));
            docker::build(&image.image, &dir).run()?;
        }
    }
    let names: Vec<String> = b.images.iter().map(|i| i.image.clone()).collect();
    if !docker::uses_containerd_store(&docker::driver_status().run()?.stdout) {
        docker::kind_load_images(&names, name).run()?;
        step.done("loaded (kind load docker-image)");
        return Ok(());
    }
    let platform = docker::server_platform().run()?.stdout.trim().to_string();
    let dir = tempfile::tempdir()
        .map_err(|e| Error::step(format!("cannot create a temp dir: {e}"), "check the temp dir (TMPDIR)"))?;
    let archive = dir.path().join("images.tar").display().to_string();
    match docker::save_platform(&names, &platform, &archive).run() {
        Ok(_) => {
            docker::kind_load_archive(&archive, name).run()?;
            step.done(&format!("loaded as one {platform} archive (containerd image store)"));
            Ok(())
        }
        // Docker 27 and older cannot save one platform: kind's own load works for images
        // without an attestation (built with --provenance=false).
        Err(Error::Command { stderr_tail, .. }) if docker::lacks_platform_save(&stderr_tail) => {
            let load = docker::kind_load_images(&names, name);
            match load.run() {
                Ok(_) => {
                    step.done("loaded (kind load docker-image)");
                    Ok(())
                }
                Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("content digest") => {
                    let rebuild: Vec<String> = b
                        .images
                        .iter()
                        .map(|i| format!("docker build --provenance=false -t {} ${}", i.image, i.context_env))
                        .collect();
                    Err(load.failure("failed", &stderr_tail).with_next(format!(
                        "this Docker (API below 1.48) cannot `docker image save --platform`, and kind \
                         cannot import an image with a provenance attestation from the containerd \
                         image store (kind#3795). Upgrade Docker to 28 or later, or rebuild the \
                         images without the attestation (`{}`), or turn off \"Use containerd for \
                         pulling and storing images\" in Docker Desktop; then run `bookstore up` again",
                        rebuild.join(" && ")
                    )))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

pub fn describe_checks(ctx: &Ctx, ports: bool, lines: &mut Vec<String>) {
    lines.push("# Bootstrap checks: istioctl, our images present or buildable, host ports free".into());
    lines.push(docker::istioctl_version().to_string());
    if ports {
        let list: Vec<String> =
            ctx.stack.cluster.ports.iter().filter_map(|m| m.host_port).map(|p| p.to_string()).collect();
        lines.push(format!("# host ports {} must be free", list.join(", ")));
    }
    for image in &ctx.stack.bootstrap.images {
        lines.push(format!(
            "{}   # else build from ${}",
            docker::image_present(&image.image),
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
                docker::kind_create_cluster(
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
            lines.push(docker::istioctl_install(ctx.kube.context(), &b.istio_install).to_string());
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
            let name = &ctx.stack.cluster.name;
            lines.push("# Our images into the node (each built first when missing)".into());
            lines.push(format!("{}   # the image store", docker::driver_status()));
            lines.push(format!("{}   # the classic store", docker::kind_load_images(&names, name)));
            lines.push(format!("{}   # the containerd store (kind#3795):", docker::server_platform()));
            lines.push(docker::save_platform(&names, "<os/arch>", "<tmp>/images.tar").to_string());
            lines.push(docker::kind_load_archive("<tmp>/images.tar", name).to_string());
        }
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
