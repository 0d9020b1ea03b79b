//! `bookstore-sim bench --only bootstrap` (issues 12 and 23): the bootstrap's contenders on fresh
//! machines with no cluster, with the image model on, in two worlds:
//!
//! - cold: the host has our three images (built) and nothing else: every other image comes over
//!   the link;
//! - warm: the host has every image the stack runs (ours, the manifests', Istio's as the
//!   `istioctl` stand-in's release installs them): a second bootstrap, `down` then `up`.
//!
//! Contenders: `bookstore up --tiers` (cold only: the bootstrap before the graph), `bookstore up`
//! (the graph), and a naive bash bootstrap (`seed/naive-bootstrap.sh`: apply every tier once Istio
//! is Ready, let the kubelet pull), each world against its own critical path.
//!
//! The critical path is a lower bound no bootstrap can beat in its world: the kind node exists
//! after `kind create`; every image not on the host comes over one link, from the first second;
//! an image is in the node no sooner than it is on the host and the node exists plus a `kind
//! load`'s start, then its bytes go through the node's one import pipe (`images::Importer`: two
//! loads at once share it, so one after the other is as good as any sharing); then Istio, each
//! workload once what it needs is Ready (each paying the controller's observe delay and its
//! latency), the gateway, the connectors. With what follows an image as its tail q_i, the best
//! order for max_i(C_i + q_i) is the longest tail first (Jackson's rule): the downloads in that
//! order, and the imports in that order as each image becomes free (preemptive, which no real
//! load can beat). Nothing else (kubectl, the apply, the watch, the smoke test) is counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::bench::schedule::reversed;
use crate::bench::{
    BenchOptions, Cpu, Schedule, Timed, fmt_opt, json_steps, median, recovery_graph, surround, table, target,
    time_contender, write_shim,
};
use crate::config::Infra;
use crate::images::ImageAudit;
use crate::istioctl::Install;
use crate::latency::{BANDWIDTH_MB_S, KIND_LOAD_START_S, LOAD_MB_S, delays, image_mb, latency_secs};
use crate::sim::{Sim, SimOptions};

/// `kind create cluster` in the stand-in, seconds at time scale 1.
pub const KIND_CREATE_SECS: f64 = 20.0;

/// One image of the bound: when its download is done (the best order), when it can be in the
/// node, what remains after it, and along which chain.
#[derive(Debug, Clone)]
pub struct ImageBound {
    pub image: String,
    /// MB to download (0: on the host already).
    pub mb: f64,
    pub downloaded: f64,
    pub in_node: f64,
    pub tail: f64,
    pub chain: String,
}

#[derive(Debug, Clone)]
pub struct Bound {
    /// Seconds, × scale: the bootstrap cannot be done sooner.
    pub total: f64,
    /// The same with every image already in the node (kind create → Istio → the longest chain
    /// of workloads).
    pub present: f64,
    /// Every image, in the best order.
    pub images: Vec<ImageBound>,
    /// The image whose in_node + tail is the total.
    pub binding: usize,
}

/// What remains once a workload's image is in the node: the controller's observe delay, its
/// latency, then the longest of what waits for it (workloads that `need` it, Connect's worker
/// joining, the connectors): the recovery's graph read backwards ([`reversed`]), so the chains
/// and their arithmetic are the bench's one [`Schedule`].
fn tails(infra: &Infra) -> Result<BTreeMap<String, (f64, String)>> {
    let back = Schedule::new(reversed(&recovery_graph(infra, 1.0, true)))?;
    let tail = |name: &str| {
        let chain: Vec<&str> = back.chain(name).iter().rev().map(|n| n.name.as_str()).collect();
        (back.done_at(name).unwrap_or(0.0), chain.join(" → "))
    };
    Ok(infra.stack.workloads.iter().map(|w| (w.name.clone(), tail(&w.name))).collect())
}

/// The bootstrap's lower bound in this world, × `scale`. `install`: what istioctl installs;
/// `on_host`: images the host has.
pub fn bootstrap_bound(
    infra: &Infra,
    install: &Install,
    on_host: &[String],
    bandwidth: f64,
    scale: f64,
) -> Result<Bound> {
    let node = KIND_CREATE_SECS;
    let workload_tails = tails(infra)?;
    let longest =
        workload_tails.values().cloned().fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a });
    let istio_ready = |name: &str| delays::OBSERVE + latency_secs(name);
    // Image → (tail, chain): the most any workload that runs it leaves after it.
    let mut users: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut bump = |image: &str, t: (f64, String)| {
        let q = crate::troubles::qualified_image(image);
        if users.get(&q).is_none_or(|old| t.0 > old.0) {
            users.insert(q, t);
        }
    };
    let istio = install.workloads();
    for (_, workload, _, image) in &istio {
        bump(image, (istio_ready(workload) + longest.0, format!("{workload} → Istio Ready → {}", longest.1)));
    }
    let gateway = delays::OBSERVE + latency_secs("bookstore-gateway-istio");
    bump(&install.gateway_image(), (gateway, "the gateway".into()));
    for (_, name, images) in infra.deployments() {
        let t = workload_tails
            .get(&name)
            .cloned()
            .unwrap_or((delays::OBSERVE + latency_secs(&name), name.clone()));
        for image in images {
            bump(&image, t.clone());
        }
    }
    let host: Vec<String> = on_host.iter().map(|i| crate::troubles::qualified_image(i)).collect();
    // The downloads, longest tail first; the host's images need none.
    let mut order: Vec<(String, (f64, String))> = users.into_iter().collect();
    order.sort_by(|a, b| b.1.0.partial_cmp(&a.1.0).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
    let mut at = 0.0;
    let mut images = Vec::new();
    for (image, (tail, chain)) in order {
        let (mb, downloaded) = if host.contains(&image) {
            (0.0, 0.0)
        } else {
            at += image_mb(&image) / bandwidth;
            (image_mb(&image), at)
        };
        images.push(ImageBound { image, mb, downloaded, in_node: 0.0, tail, chain });
    }
    // The imports: one pipe, the longest tail first among the images free to go (preemptive).
    let release: Vec<f64> = images.iter().map(|b| b.downloaded.max(node + KIND_LOAD_START_S)).collect();
    let mut left: Vec<f64> = images.iter().map(|b| image_mb(&b.image) / LOAD_MB_S).collect();
    let mut t = 0.0;
    loop {
        let pending: Vec<usize> = (0..images.len()).filter(|j| left[*j] > 1e-12).collect();
        let Some(first) = pending.iter().map(|j| release[*j]).reduce(f64::min) else { break };
        // `images` is in tail order: the first free one has the longest tail.
        let Some(j) = pending.iter().copied().find(|j| release[*j] <= t + 1e-12) else {
            t = first; // the pipe idles until the next image is free
            continue;
        };
        let next =
            pending.iter().map(|k| release[*k]).filter(|r| *r > t + 1e-12).fold(f64::INFINITY, f64::min);
        let run = left[j].min(next - t);
        t += run;
        left[j] -= run;
        if left[j] <= 1e-12 {
            images[j].in_node = t;
        }
    }
    let (binding, total) = images
        .iter()
        .enumerate()
        .map(|(i, b)| (i, b.in_node + b.tail))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let present = node + istio.iter().map(|(_, w, _, _)| istio_ready(w)).fold(0.0, f64::max) + longest.0;
    for b in &mut images {
        b.downloaded *= scale;
        b.in_node *= scale;
        b.tail *= scale;
    }
    Ok(Bound { total: total * scale, present: present * scale, images, binding })
}

/// What istioctl installs for the stack's flags (`bootstrap.istio.install`) at `version`.
pub fn stack_install(infra: &Infra, version: &str) -> Result<Install> {
    let sets = crate::istioctl::sets(&infra.stack.bootstrap.istio_install);
    Install::from_sets(version, &sets).map_err(anyhow::Error::msg)
}

/// Every image a bootstrap of this stack runs: ours, the manifests', Istio's.
pub fn every_image(infra: &Infra, install: &Install) -> Result<Vec<String>> {
    let mut all = ours(infra);
    all.extend(infra.deployments().into_iter().flat_map(|(_, _, images)| images));
    all.extend(install.images());
    let mut seen = std::collections::BTreeSet::new();
    all.retain(|i| seen.insert(crate::troubles::qualified_image(i)));
    Ok(all)
}

/// The images our stack builds (present on the empty machine's host).
fn ours(infra: &Infra) -> Vec<String> {
    infra.stack.bootstrap.images.iter().map(|i| i.image.clone()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum World {
    Cold,
    Warm,
}

impl World {
    fn label(self) -> &'static str {
        match self {
            World::Cold => "cold (the host has our images only)",
            World::Warm => "warm (the host has every image)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            World::Cold => "cold",
            World::Warm => "warm",
        }
    }

    /// The host's images on this fresh machine.
    fn images(self, infra: &Infra, install: &Install) -> Result<Vec<String>> {
        match self {
            World::Cold => Ok(ours(infra)),
            World::Warm => every_image(infra, install),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    Tiers,
    Graph,
    Naive,
}

impl Boot {
    fn label(self) -> &'static str {
        match self {
            Boot::Tiers => "bookstore up --tiers",
            Boot::Graph => "bookstore up (the graph)",
            Boot::Naive => "naive-bootstrap.sh",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Boot::Tiers => "tiers",
            Boot::Graph => "graph",
            Boot::Naive => "naive",
        }
    }
}

/// Each world's contenders, in the order they run.
const CONTENDERS: [(World, Boot); 5] = [
    (World::Cold, Boot::Tiers),
    (World::Cold, Boot::Graph),
    (World::Cold, Boot::Naive),
    (World::Warm, Boot::Graph),
    (World::Warm, Boot::Naive),
];

#[derive(Debug, Clone)]
struct BootRun {
    world: World,
    contender: Boot,
    run: usize,
    healthy: Option<f64>,
    exited: f64,
    code: Option<i32>,
    kubectl: usize,
    cpu: Cpu,
    /// Image downloads (host and node).
    pulls: usize,
    images: ImageAudit,
    steps: Vec<(String, f64)>,
    unhealthy: Option<String>,
}

impl BootRun {
    fn ok(&self) -> bool {
        self.code == Some(0) && self.healthy.is_some()
    }
}

/// A fresh empty machine: Docker runs, no cluster, these images on the host (the stack copy's
/// Gateway API URL points at the simulator, which serves the release file).
fn empty_machine(scale: f64, images: Vec<String>) -> Result<Sim> {
    Sim::start(SimOptions { time_scale: scale, no_cluster: true, images, ..SimOptions::default() })
}

/// The Secrets the contract names, as one manifest a user keeps (fixed values for `random`).
fn secrets_manifest(infra: &Infra) -> String {
    use bookstore::stack::KeySource;
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::new();
    for s in &infra.stack.bootstrap.secrets {
        let (name, ns) = (s.name.as_str(), s.namespace.as_str());
        let mut data = serde_json::Map::new();
        for (key, source) in &s.keys {
            let value = match source {
                KeySource::Fixed(v) => v.clone(),
                KeySource::Copy(n, secret, k) => {
                    values.get(&format!("{n}/{secret}/{k}")).cloned().unwrap_or_default()
                }
                KeySource::Properties(keys) => keys
                    .iter()
                    .map(|p| {
                        format!(
                            "{p}={}\n",
                            values.get(&format!("{ns}/{name}/{p}")).cloned().unwrap_or_default()
                        )
                    })
                    .collect(),
                KeySource::Random => {
                    format!("naive{}{}", name.len(), key.replace(|c: char| !c.is_ascii_alphanumeric(), ""))
                }
            };
            values.insert(format!("{ns}/{name}/{key}"), value.clone());
            data.insert(key.clone(), Value::String(value));
        }
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns}, "stringData": data});
        let _ = writeln!(out, "---\n{secret}");
    }
    out
}

/// The naive script's command and its environment, from the stack copy.
fn naive_command(sim: &Sim, infra: &Infra, dir: &Path) -> Result<std::process::Command> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("seed/naive-bootstrap.sh");
    let b = &infra.stack.bootstrap;
    let secrets = dir.join("secrets.yaml");
    std::fs::write(&secrets, secrets_manifest(infra))?;
    let deployments: Vec<String> =
        infra.deployments().into_iter().map(|(ns, name, _)| format!("{ns}/{name}")).collect();
    let gateways: Vec<String> =
        b.tiers.iter().flat_map(|t| t.programmed.iter().map(|(ns, g)| format!("{ns}/{g}"))).collect();
    let mut cmd = sim.command("bash");
    cmd.arg(script)
        .env("INFRA", &infra.dir)
        .env("CLUSTER", infra.cluster.name())
        .env("OUR_IMAGES", ours(infra).join(" "))
        .env("CRDS", &b.crds)
        .env("ESTABLISHED", b.crds_established.join(" "))
        .env("ISTIO_FLAGS", b.istio_install.join(" "))
        .env("SECRETS", &secrets)
        .env("DEPLOYMENTS", deployments.join(" "))
        .env("GATEWAYS", gateways.join(" "))
        .env("CONNECT_URL", format!("http://127.0.0.1:{}", sim.host_port(infra.stack.connect.port)));
    Ok(cmd)
}

/// Run the bootstrap contenders and return the report.
pub fn run(opts: &BenchOptions, real_kubectl: &Path, clk_tck: f64, logs: &Path) -> Result<String> {
    let scale = opts.time_scale;
    let infra = Infra::load(&SimOptions::default().infra_dir)?;
    let install = stack_install(&infra, crate::sim::ISTIO_VERSION)?;
    let mut bounds = BTreeMap::new();
    for world in [World::Cold, World::Warm] {
        let host = world.images(&infra, &install)?;
        bounds.insert(world.slug(), bootstrap_bound(&infra, &install, &host, BANDWIDTH_MB_S, scale)?);
    }
    let mut results = Vec::new();
    for run in 1..=opts.runs {
        for (world, c) in CONTENDERS {
            let bound = &bounds[world.slug()];
            let deadline = std::time::Duration::from_secs_f64((bound.total * 6.0 + 60.0).max(120.0));
            eprintln!(
                "[bootstrap run {run}/{}] {} in the {} world: fresh machine …",
                opts.runs,
                c.label(),
                world.slug()
            );
            let dir = logs.join(format!("run{run}-{}-{}", world.slug(), c.slug()));
            std::fs::create_dir_all(&dir)?;
            let sim = empty_machine(scale, world.images(&infra, &install)?)?;
            let sim_infra = Infra::load(&sim.dir().join("infra"))?;
            let calls = dir.join("kubectl.calls");
            let shim = write_shim(&dir.join("shim"), real_kubectl, &calls)?;
            let mut cmd = match c {
                Boot::Naive => naive_command(&sim, &sim_infra, &dir)?,
                _ => {
                    let mut cmd = sim.command(&opts.bookstore.to_string_lossy());
                    cmd.arg("up").arg("--stack").arg(sim.stack_path()).args(["--json", "--color", "never"]);
                    if c == Boot::Tiers {
                        cmd.arg("--tiers");
                    }
                    cmd
                }
            };
            surround(&mut cmd, &sim, &shim, &dir)?;
            let Timed { exited, status, healthy, unhealthy, cpu } =
                time_contender(&mut cmd, c.label(), &sim, &sim_infra, deadline, clk_tck)?;
            let audit = sim.audit();
            std::fs::write(dir.join("audit.json"), serde_json::to_string(&audit)?)?;
            let images = sim.image_audit();
            drop(sim);
            let r = BootRun {
                world,
                contender: c,
                run,
                healthy,
                exited,
                code: status.and_then(|s| s.code()),
                kubectl: std::fs::read_to_string(&calls).map(|t| t.lines().count()).unwrap_or(0),
                cpu,
                pulls: audit.iter().filter(|e| e.verb == "image-pulled").count(),
                images,
                steps: json_steps(&std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()),
                unhealthy,
            };
            eprintln!(
                "[bootstrap run {run}/{}] {} ({}): exit {} after {:.2}s, healthy at {}, {} kubectl{}",
                opts.runs,
                c.label(),
                world.slug(),
                r.code.map_or("killed".to_string(), |c| c.to_string()),
                r.exited,
                r.healthy.map_or("-".to_string(), |t| format!("{t:.2}s")),
                r.kubectl,
                r.unhealthy.as_ref().map_or(String::new(), |w| format!(" (not healthy: {w})")),
            );
            results.push(r);
        }
    }
    Ok(report(opts, &install, &bounds, &results))
}

fn bound_table(out: &mut String, bound: &Bound) {
    let mut rows = Vec::new();
    for (i, b) in bound.images.iter().enumerate() {
        rows.push(vec![
            format!("{} {}", if i == bound.binding { "*" } else { " " }, b.image),
            format!("{:.0}", b.mb),
            format!("{:.2}", b.downloaded),
            format!("{:.2}", b.in_node),
            format!("{:.2}", b.tail),
            format!("{:.2}", b.in_node + b.tail),
            b.chain.clone(),
        ]);
    }
    out.push_str(&table(
        "lrrrrrl",
        &["  image", "MB", "downloaded", "in node", "tail", "done ≥", "tail's chain"],
        &rows,
    ));
    let b = &bound.images[bound.binding];
    let _ = writeln!(
        out,
        "  = {:.2} s (* {}: in the node at {:.2}, then {}); with every image in the node: {:.2} s\n",
        bound.total, b.image, b.in_node, b.chain, bound.present
    );
}

fn report(
    opts: &BenchOptions,
    install: &Install,
    bounds: &BTreeMap<&str, Bound>,
    results: &[BootRun],
) -> String {
    let scale = opts.time_scale;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bootstrap (issues 12, 23): each contender on a fresh machine with no cluster, {BANDWIDTH_MB_S:.0} MB/s, \
         kind load {LOAD_MB_S:.0} MB/s through one import pipe, istioctl {} (profile {}: {}), time scale {scale}",
        install.version,
        install.profile,
        install.images().join(", ")
    );
    for world in [World::Cold, World::Warm] {
        let _ = writeln!(
            out,
            "\n{}: critical path (a lower bound): kind create {:.2} s; downloads one after the other from \
             the start, the longest tail first; in the node ≥ the node + a load's start ({KIND_LOAD_START_S} s) \
             and its download, its bytes through the one import pipe, the longest tail first:",
            world.label(),
            KIND_CREATE_SECS * scale
        );
        bound_table(&mut out, &bounds[world.slug()]);
        let mut rows = Vec::new();
        for r in results.iter().filter(|r| r.world == world) {
            rows.push(vec![
                r.contender.label().to_string(),
                r.run.to_string(),
                r.code.map_or("killed".into(), |c| c.to_string()),
                format!("{:.2}", r.exited),
                r.healthy.map_or("-".into(), |t| format!("{t:.2}")),
                r.kubectl.to_string(),
                r.pulls.to_string(),
                r.images.node_pulls.len().to_string(),
                r.images.istio_pulled_for().len().to_string(),
                r.images.loaded_unused.len().to_string(),
                format!("{:.2}", r.cpu.own),
                format!("{:.2}", r.cpu.children),
            ]);
        }
        out.push_str(&table(
            "l",
            &[
                "contender",
                "run",
                "exit",
                "exited",
                "healthy",
                "kubectl",
                "downloads",
                "by the node",
                "Istio pods pulling",
                "loaded unused",
                "cpu self",
                "cpu children",
            ],
            &rows,
        ));
    }
    let ok = |w: World, c: Boot| results.iter().filter(move |r| r.world == w && r.contender == c && r.ok());
    let med = |w: World, c: Boot, f: &dyn Fn(&BootRun) -> Option<f64>| {
        median(&ok(w, c).filter_map(f).collect::<Vec<_>>())
    };
    let wall = |w: World, c: Boot| med(w, c, &|r| r.healthy);
    let kubectl = |w: World, c: Boot| med(w, c, &|r| Some(r.kubectl as f64));
    let _ = writeln!(out, "\nmedians (healthy, s; kubectl):");
    for (w, c) in CONTENDERS {
        let _ = writeln!(
            out,
            "  {:<5} {:<26} {:>8} s  {:>4} kubectl",
            w.slug(),
            c.label(),
            fmt_opt(wall(w, c), 2),
            fmt_opt(kubectl(w, c), 0)
        );
    }
    for (w, c) in CONTENDERS {
        if let Some(r) = ok(w, c).next().filter(|_| c != Boot::Naive) {
            let steps: Vec<String> = r.steps.iter().map(|(n, t)| format!("{n} {t:.2}s")).collect();
            let _ =
                writeln!(out, "  {} {} (run {}) steps: {}", w.slug(), c.label(), r.run, steps.join(" · "));
        }
    }
    let at = if scale == 1.0 { String::new() } else { format!(" (stated for time scale 1; here {scale})") };
    let _ = writeln!(out, "\ntargets (issues 12, 23){at}:");
    let (cold, warm) = (&bounds["cold"], &bounds["warm"]);
    let within = |w: World, bound: &Bound| {
        let limit = 1.1 * bound.total;
        target(
            format!("{} graph ≤ 1.1 × its critical path {:.2} = {limit:.2} s", w.slug(), bound.total),
            wall(w, Boot::Graph).map(|g| (format!("median {g:.2} s ({:.3}×)", g / bound.total), g <= limit)),
        )
    };
    let graphs: Vec<&BootRun> = results.iter().filter(|r| r.contender == Boot::Graph && r.ok()).collect();
    let rows = vec![
        within(World::Cold, cold),
        target(
            "cold graph ≥ 1.6× faster than the tiers".to_string(),
            wall(World::Cold, Boot::Tiers)
                .zip(wall(World::Cold, Boot::Graph))
                .map(|(t, g)| (format!("{t:.2} / {g:.2} = {:.3}×", t / g), t / g >= 1.6)),
        ),
        target(
            "cold graph's kubectl spawns ≤ 60% of the tiers'".to_string(),
            kubectl(World::Cold, Boot::Tiers)
                .zip(kubectl(World::Cold, Boot::Graph))
                .map(|(t, g)| (format!("{g:.0} / {t:.0} = {:.0}%", 100.0 * g / t), g <= 0.6 * t)),
        ),
        within(World::Warm, warm),
        target(
            "warm graph ≤ 0.85 × the naive bash bootstrap".to_string(),
            wall(World::Warm, Boot::Naive)
                .zip(wall(World::Warm, Boot::Graph))
                .map(|(n, g)| (format!("{g:.2} / {n:.2} = {:.3}×", g / n), g <= 0.85 * n)),
        ),
        target(
            "graph: every Istio pod's image in the node before the pod (both worlds)".to_string(),
            (!graphs.is_empty()).then(|| {
                let late: usize = graphs.iter().map(|r| r.images.istio_pulled_for().len()).sum();
                (format!("{late} Istio pod(s) pulling in {} run(s)", graphs.len()), late == 0)
            }),
        ),
        target(
            "graph: no image loaded that no pod runs (both worlds)".to_string(),
            (!graphs.is_empty()).then(|| {
                let unused: usize = graphs.iter().map(|r| r.images.loaded_unused.len()).sum();
                (format!("{unused} unused load(s) in {} run(s)", graphs.len()), unused == 0)
            }),
        ),
    ];
    out.push_str(&table("lrl", &[], &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_downloads_and_imports_the_longest_tail_first() {
        let infra = Infra::load(&SimOptions::default().infra_dir).unwrap();
        let install = stack_install(&infra, "1.26.0").unwrap();
        let b = bootstrap_bound(&infra, &install, &ours(&infra), BANDWIDTH_MB_S, 1.0).unwrap();
        // Istio's images first: everything waits for Istio; the distroless ones, as installed.
        assert!(b.images[..3].iter().all(|i| i.image.ends_with("-distroless")), "{:?}", b.images);
        // Every third-party byte comes over the link: the last download ends at total / bandwidth.
        let mb: f64 = b.images.iter().map(|i| i.mb).sum();
        let last = b.images.iter().map(|i| i.downloaded).fold(0.0, f64::max);
        assert!((last - mb / BANDWIDTH_MB_S).abs() < 1e-9);
        assert!(b.total >= last && b.total >= b.present, "{} {} {}", b.total, last, b.present);
        // With the images present: kind create 20 + ztunnel 4.5 + keycloak-db 6.5 + keycloak 40.5.
        assert!((b.present - 71.5).abs() < 1e-9, "{}", b.present);
        let half = bootstrap_bound(&infra, &install, &ours(&infra), BANDWIDTH_MB_S, 0.5).unwrap();
        assert!((half.total - b.total / 2.0).abs() < 1e-9);
        // Warm: nothing to download; the imports one after the other from the node on, Istio's
        // first: in the node after the start and their 200 MB.
        let warm =
            bootstrap_bound(&infra, &install, &every_image(&infra, &install).unwrap(), BANDWIDTH_MB_S, 1.0)
                .unwrap();
        assert!(warm.images.iter().all(|i| i.mb == 0.0));
        let istio = warm.images[..3].iter().map(|i| i.in_node).fold(0.0, f64::max);
        assert!((istio - (KIND_CREATE_SECS + KIND_LOAD_START_S + 200.0 / LOAD_MB_S)).abs() < 1e-9, "{istio}");
        let sum: f64 = warm.images.iter().map(|i| image_mb(&i.image)).sum();
        let end = warm.images.iter().map(|i| i.in_node).fold(0.0, f64::max);
        assert!((end - (KIND_CREATE_SECS + KIND_LOAD_START_S + sum / LOAD_MB_S)).abs() < 1e-9, "{end}");
        assert!(warm.total < b.total && warm.total >= warm.present);
    }

    #[test]
    fn the_warm_machine_has_every_image_and_the_naive_script_its_secrets() {
        let infra = Infra::load(&SimOptions::default().infra_dir).unwrap();
        let install = stack_install(&infra, "1.26.0").unwrap();
        let all = every_image(&infra, &install).unwrap();
        assert!(all.contains(&"docker.io/istio/proxyv2:1.26.0-distroless".to_string()), "{all:?}");
        assert!(all.contains(&"bookstore/ecom-service:dev".to_string()));
        let secrets = secrets_manifest(&infra);
        let debezium = secrets.lines().find(|l| l.contains("debezium-db-credentials")).unwrap();
        let doc: Value = serde_json::from_str(debezium).unwrap();
        assert_eq!(doc["stringData"]["ECOM_DB_USER"], "ecomuser");
        assert!(
            doc["stringData"]["credentials.properties"].as_str().unwrap().contains("ECOM_DB_USER=ecomuser\n")
        );
        assert!(secrets.contains("\"POSTGRES_PASSWORD\":\"naive"));
    }
}
