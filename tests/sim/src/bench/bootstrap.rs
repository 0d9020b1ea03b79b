//! `bookstore-sim bench --only bootstrap` (issue 12): `bookstore up --tiers` (the bootstrap before
//! the graph) and `bookstore up` (the graph), each on a fresh empty world (no cluster; our three
//! images built on the host, nothing else), with the image model on, against the bootstrap's
//! critical path under the same model.
//!
//! The critical path here is a lower bound no bootstrap can beat in this world: the kind node
//! exists after `kind create`; every image not on the host comes over one link (one image after
//! the other is as good as any sharing, for what finishes last), from the first second; an image
//! is in the node no sooner than its download is done and the node exists plus its own `kind load`
//! (a pull by the node is slower); then Istio, each workload once what it needs is Ready (each
//! paying the controller's observe delay and its latency), the gateway, the connectors. With the
//! others' images free, what remains after image i is its tail q_i; the best order of the
//! downloads for max_i(C_i + q_i) is the longest tail first (Jackson's rule), which this bound
//! uses. Nothing else (kubectl, the apply, the watch, the smoke test) is counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::bench::schedule::reversed;
use crate::bench::{
    BenchOptions, Cpu, Schedule, Timed, fmt_opt, json_steps, median, recovery_graph, surround, table, target,
    time_contender, write_shim,
};
use crate::config::Infra;
use crate::latency::{BANDWIDTH_MB_S, LOAD_MB_S, delays, image_mb, latency_secs};
use crate::sim::{Sim, SimOptions};
use crate::world::{GATEWAY_IMAGE, ISTIO_IMAGES};

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
    /// The same with every image already in the node (the arithmetic: kind create →
    /// Istio → the longest chain of workloads).
    pub present: f64,
    /// Every image, in the best order of the downloads.
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

/// The bootstrap's lower bound in this world, × `scale`. `on_host`: images the host has.
pub fn bootstrap_bound(infra: &Infra, on_host: &[String], bandwidth: f64, scale: f64) -> Result<Bound> {
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
    for (workload, image) in ISTIO_IMAGES {
        bump(image, (istio_ready(workload) + longest.0, format!("{workload} → Istio Ready → {}", longest.1)));
    }
    let gateway = delays::OBSERVE + latency_secs("bookstore-gateway-istio");
    bump(GATEWAY_IMAGE, (gateway, "the gateway".into()));
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
    let load = |image: &str| image_mb(image) / LOAD_MB_S;
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
        let in_node = downloaded.max(node + load(&image));
        images.push(ImageBound { image, mb, downloaded, in_node, tail, chain });
    }
    let (binding, total) = images
        .iter()
        .enumerate()
        .map(|(i, b)| (i, b.in_node + b.tail))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let present = node + ISTIO_IMAGES.iter().map(|(w, _)| istio_ready(w)).fold(0.0, f64::max) + longest.0;
    for b in &mut images {
        b.downloaded *= scale;
        b.in_node *= scale;
        b.tail *= scale;
    }
    Ok(Bound { total: total * scale, present: present * scale, images, binding })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    Tiers,
    Graph,
}

impl Boot {
    const ALL: [Boot; 2] = [Boot::Tiers, Boot::Graph];

    fn label(self) -> &'static str {
        match self {
            Boot::Tiers => "bookstore up --tiers",
            Boot::Graph => "bookstore up (the graph)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Boot::Tiers => "boot-tiers",
            Boot::Graph => "boot-graph",
        }
    }
}

#[derive(Debug, Clone)]
struct BootRun {
    contender: Boot,
    run: usize,
    healthy: Option<f64>,
    exited: f64,
    code: Option<i32>,
    kubectl: usize,
    cpu: Cpu,
    /// Image downloads (host and node) and MB.
    pulls: usize,
    steps: Vec<(String, f64)>,
    unhealthy: Option<String>,
}

impl BootRun {
    fn ok(&self) -> bool {
        self.code == Some(0) && self.healthy.is_some()
    }
}

/// The images our stack builds (present on the empty machine's host).
fn ours(infra: &Infra) -> Vec<String> {
    infra.stack.bootstrap.images.iter().map(|i| i.image.clone()).collect()
}

/// A fresh empty machine: Docker runs, no cluster, our images built (the stack copy's Gateway
/// API URL points at the simulator, which serves the release file).
fn empty_machine(scale: f64, images: Vec<String>) -> Result<Sim> {
    Sim::start(SimOptions { time_scale: scale, no_cluster: true, images, ..SimOptions::default() })
}

/// Run the bootstrap contenders and return the report.
pub fn run(opts: &BenchOptions, real_kubectl: &Path, clk_tck: f64, logs: &Path) -> Result<String> {
    let scale = opts.time_scale;
    let infra = Infra::load(&SimOptions::default().infra_dir)?;
    let bound = bootstrap_bound(&infra, &ours(&infra), BANDWIDTH_MB_S, scale)?;
    let deadline = std::time::Duration::from_secs_f64((bound.total * 6.0 + 60.0).max(120.0));
    let mut results = Vec::new();
    for run in 1..=opts.runs {
        for c in Boot::ALL {
            eprintln!("[bootstrap run {run}/{}] {}: fresh empty machine …", opts.runs, c.label());
            let dir = logs.join(format!("run{run}-{}", c.slug()));
            std::fs::create_dir_all(&dir)?;
            let sim = empty_machine(scale, ours(&infra))?;
            let sim_infra = Infra::load(&sim.dir().join("infra"))?;
            let calls = dir.join("kubectl.calls");
            let shim = write_shim(&dir.join("shim"), real_kubectl, &calls)?;
            let mut cmd = sim.command(&opts.bookstore.to_string_lossy());
            cmd.arg("up").arg("--stack").arg(sim.stack_path()).args(["--json", "--color", "never"]);
            if c == Boot::Tiers {
                cmd.arg("--tiers");
            }
            surround(&mut cmd, &sim, &shim, &dir)?;
            let Timed { exited, status, healthy, unhealthy, cpu } =
                time_contender(&mut cmd, c.label(), &sim, &sim_infra, deadline, clk_tck)?;
            let audit = sim.audit();
            std::fs::write(dir.join("audit.json"), serde_json::to_string(&audit)?)?;
            drop(sim);
            let r = BootRun {
                contender: c,
                run,
                healthy,
                exited,
                code: status.and_then(|s| s.code()),
                kubectl: std::fs::read_to_string(&calls).map(|t| t.lines().count()).unwrap_or(0),
                cpu,
                pulls: audit.iter().filter(|e| e.verb == "image-pulled").count(),
                steps: json_steps(&std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()),
                unhealthy,
            };
            eprintln!(
                "[bootstrap run {run}/{}] {}: exit {} after {:.2}s, healthy at {}, {} kubectl{}",
                opts.runs,
                c.label(),
                r.code.map_or("killed".to_string(), |c| c.to_string()),
                r.exited,
                r.healthy.map_or("-".to_string(), |t| format!("{t:.2}s")),
                r.kubectl,
                r.unhealthy.as_ref().map_or(String::new(), |w| format!(" (not healthy: {w})")),
            );
            results.push(r);
        }
    }
    Ok(report(opts, &bound, &results))
}

fn report(opts: &BenchOptions, bound: &Bound, results: &[BootRun]) -> String {
    let scale = opts.time_scale;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bootstrap (issue 12): each contender on a fresh empty machine (no cluster; our images on the host, \
         nothing else), {BANDWIDTH_MB_S:.0} MB/s, time scale {scale}"
    );
    let _ = writeln!(
        out,
        "critical path with the downloads (a lower bound): kind create {:.2} s; downloads one after the \
         other from the start, the longest tail first; in the node ≥ max(downloaded, node + its kind load):",
        KIND_CREATE_SECS * scale
    );
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
    let mut rows = Vec::new();
    for r in results {
        rows.push(vec![
            r.contender.label().to_string(),
            r.run.to_string(),
            r.code.map_or("killed".into(), |c| c.to_string()),
            format!("{:.2}", r.exited),
            r.healthy.map_or("-".into(), |t| format!("{t:.2}")),
            r.kubectl.to_string(),
            r.pulls.to_string(),
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
            "cpu self",
            "cpu children",
        ],
        &rows,
    ));
    let med = |c: Boot, f: &dyn Fn(&BootRun) -> Option<f64>| {
        median(&results.iter().filter(|r| r.contender == c && r.ok()).filter_map(f).collect::<Vec<_>>())
    };
    let wall = |c: Boot| med(c, &|r| r.healthy);
    let kubectl = |c: Boot| med(c, &|r| Some(r.kubectl as f64));
    let _ = writeln!(
        out,
        "\nmedians: tiers {} s, {} kubectl; graph {} s, {} kubectl",
        fmt_opt(wall(Boot::Tiers), 2),
        fmt_opt(kubectl(Boot::Tiers), 0),
        fmt_opt(wall(Boot::Graph), 2),
        fmt_opt(kubectl(Boot::Graph), 0)
    );
    for c in Boot::ALL {
        if let Some(r) = results.iter().find(|r| r.contender == c && r.ok()) {
            let steps: Vec<String> = r.steps.iter().map(|(n, t)| format!("{n} {t:.2}s")).collect();
            let _ = writeln!(out, "  {} (run {}) steps: {}", c.label(), r.run, steps.join(" · "));
        }
    }
    let at = if scale == 1.0 { String::new() } else { format!(" (stated for time scale 1; here {scale})") };
    let _ = writeln!(out, "\ntargets (issue 12){at}:");
    let limit = 1.1 * bound.total;
    let rows = vec![
        target(
            format!("graph ≤ 1.1 × critical path {:.2} = {limit:.2} s", bound.total),
            wall(Boot::Graph).map(|w| (format!("median {w:.2} s ({:.3}×)", w / bound.total), w <= limit)),
        ),
        target(
            "graph ≥ 1.6× faster than the tiers".to_string(),
            wall(Boot::Tiers)
                .zip(wall(Boot::Graph))
                .map(|(t, g)| (format!("{t:.2} / {g:.2} = {:.3}×", t / g), t / g >= 1.6)),
        ),
        target(
            "graph's kubectl spawns ≤ 60% of the tiers'".to_string(),
            kubectl(Boot::Tiers)
                .zip(kubectl(Boot::Graph))
                .map(|(t, g)| (format!("{g:.0} / {t:.0} = {:.0}%", 100.0 * g / t), g <= 0.6 * t)),
        ),
    ];
    out.push_str(&table("lrl", &[], &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_downloads_the_longest_tail_first_and_is_at_least_the_chain() {
        let infra = Infra::load(&SimOptions::default().infra_dir).unwrap();
        let b = bootstrap_bound(&infra, &ours(&infra), BANDWIDTH_MB_S, 1.0).unwrap();
        // Istio's images first: everything waits for Istio.
        assert!(b.images[..3].iter().all(|i| i.image.contains("istio/")), "{:?}", b.images);
        // Every third-party byte comes over the link: the last download ends at total / bandwidth.
        let mb: f64 = b.images.iter().map(|i| i.mb).sum();
        let last = b.images.iter().map(|i| i.downloaded).fold(0.0, f64::max);
        assert!((last - mb / BANDWIDTH_MB_S).abs() < 1e-9);
        assert!(b.total >= last && b.total >= b.present, "{} {} {}", b.total, last, b.present);
        // With the images present: kind create 20 + ztunnel 4.5 + keycloak-db 6.5 + keycloak 40.5.
        assert!((b.present - 71.5).abs() < 1e-9, "{}", b.present);
        let half = bootstrap_bound(&infra, &ours(&infra), BANDWIDTH_MB_S, 0.5).unwrap();
        assert!((half.total - b.total / 2.0).abs() < 1e-9);
    }
}
