//! `kind` and `istioctl` stand-ins: tiny python3 scripts in `<dir>/bin` that forward argv (and
//! KUBECONFIG) to the control endpoint; the answers (texts of kind-istio.md §1.3) come from here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::Source;
use crate::config::KindCluster;
use crate::store::{Key, Res};
use crate::world::{SharedRef, World, rollout_done};

#[derive(Debug, Clone, Deserialize)]
pub struct StandinReq {
    pub tool: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub stdin: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StandinOut {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

const SCRIPT: &str = r#"#!/usr/bin/env python3
# Stand-in written by bookstore-sim: forwards argv to the simulator's control endpoint.
import json, os, sys, urllib.request
TOOL = "@TOOL@"
URL = "http://127.0.0.1:@PORT@/ctl/standin"
argv = sys.argv[1:]
stdin = None
if "-" in argv or "--config=-" in argv:
    stdin = sys.stdin.read()
elif TOOL == "istioctl" and argv[:1] == ["install"] and not ("-y" in argv or "--skip-confirmation" in argv):
    stdin = sys.stdin.readline()  # the answer to istioctl's "Proceed? (y/N)"
env = {k: v for k, v in os.environ.items() if k in ("KUBECONFIG", "KIND_CLUSTER_NAME", "HOME")}
req = {"tool": TOOL, "argv": argv, "env": env, "cwd": os.getcwd(), "stdin": stdin}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = opener.open(urllib.request.Request(URL, data=json.dumps(req).encode(),
                    headers={"Content-Type": "application/json"}), timeout=900)
    out = json.loads(r.read())
except Exception as e:
    sys.stderr.write("ERROR: %s stand-in cannot reach the simulator at %s: %s\n" % (TOOL, URL, e))
    sys.exit(1)
sys.stdout.buffer.write(out["stdout"].encode())
sys.stdout.flush()
sys.stderr.buffer.write(out["stderr"].encode())
sys.stderr.flush()
sys.exit(out["code"])
"#;

pub fn write_scripts(bin: &Path, control_port: u16) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin)?;
    for tool in ["kind", "istioctl"] {
        let path = bin.join(tool);
        let text = SCRIPT.replace("@TOOL@", tool).replace("@PORT@", &control_port.to_string());
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

pub fn kubeconfig_text(name: &str, port: u16) -> String {
    context_kubeconfig(&format!("kind-{name}"), port)
}

/// A kubeconfig whose one context (and cluster, and user) is `context`, current.
pub fn context_kubeconfig(context: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: http://127.0.0.1:{port}\n  name: {context}\ncontexts:\n- context:\n    cluster: {context}\n    user: {context}\n  name: {context}\ncurrent-context: {context}\npreferences: {{}}\nusers:\n- name: {context}\n  user: {{}}\n"
    )
}

pub const EMPTY_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: \"\"\npreferences: {}\nusers: []\n";

struct Args {
    positional: Vec<String>,
    flags: BTreeMap<String, String>,
}

fn parse(argv: &[String]) -> Args {
    const BOOL: &[&str] =
        &["--retain", "--internal", "-y", "--skip-confirmation", "--quiet", "-q", "--verbose"];
    let mut positional = Vec::new();
    let mut flags = BTreeMap::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if let Some(f) = a.strip_prefix("--").or_else(|| a.strip_prefix('-').filter(|x| !x.is_empty())) {
            let dash = if a.starts_with("--") { "--" } else { "-" };
            if let Some((k, v)) = f.split_once('=') {
                flags.insert(format!("{dash}{k}"), v.to_string());
            } else if BOOL.contains(&a.as_str()) || i + 1 >= argv.len() {
                flags.insert(a.clone(), "true".into());
            } else {
                // `--set` may repeat: keep them all.
                let key = a.clone();
                let v = argv[i + 1].clone();
                flags
                    .entry(key)
                    .and_modify(|old: &mut String| {
                        old.push('\n');
                        old.push_str(&v);
                    })
                    .or_insert(v);
                i += 1;
            }
        } else {
            positional.push(a.clone());
        }
        i += 1;
    }
    Args { positional, flags }
}

fn out(stdout: impl Into<String>, stderr: impl Into<String>, code: i32) -> StandinOut {
    StandinOut { stdout: stdout.into(), stderr: stderr.into(), code }
}

pub async fn run(shared: &SharedRef, req: StandinReq) -> StandinOut {
    {
        let mut w = shared.lock();
        let t_ms = w.t_ms();
        w.audit.push(crate::audit::AuditEntry {
            t_ms,
            source: Source::Standin,
            verb: req.tool.clone(),
            path: req.argv.join(" "),
            content_type: None,
            body: serde_json::to_string(&req.argv).unwrap_or_default(),
            status: 0,
            detail: req.env.get("KUBECONFIG").cloned().unwrap_or_default(),
        });
    }
    let r = match req.tool.as_str() {
        "kind" => kind(shared, &req).await,
        "istioctl" => istioctl(shared, &req).await,
        t => out("", format!("unknown stand-in {t}\n"), 1),
    };
    shared.refresh_ports();
    shared.wake.notify_one();
    r
}

fn kubeconfig_path(w: &World, req: &StandinReq, a: &Args) -> PathBuf {
    if let Some(k) = a.flags.get("--kubeconfig") {
        return resolve(&req.cwd, k);
    }
    match req.env.get("KUBECONFIG") {
        Some(k) if !k.is_empty() => PathBuf::from(k.split(':').next().unwrap_or(k)),
        _ => w.dir.join("kubeconfig"),
    }
}

fn resolve(cwd: &str, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() || cwd.is_empty() { p } else { Path::new(cwd).join(p) }
}

fn docker_down_text(w: &World) -> String {
    format!(
        "ERROR: failed to list clusters: command \"docker ps -a --filter label=io.x-k8s.kind.cluster --format '{{{{.Label \"io.x-k8s.kind.cluster\"}}}}'\" failed with error: exit status 1\nCommand Output: Cannot connect to the Docker daemon at unix://{}. Is the docker daemon running?\n",
        w.dir.join("docker.sock").display()
    )
}

fn clusters(w: &World) -> Vec<String> {
    let mut v: Vec<String> =
        w.containers.iter().filter_map(|c| c.labels.get("io.x-k8s.kind.cluster").cloned()).collect();
    v.sort();
    v.dedup();
    v
}

async fn kind(shared: &SharedRef, req: &StandinReq) -> StandinOut {
    let a = parse(&req.argv);
    let pos: Vec<&str> = a.positional.iter().map(String::as_str).collect();
    let name_flag = a
        .flags
        .get("--name")
        .or_else(|| a.flags.get("-n"))
        .cloned()
        .or_else(|| req.env.get("KIND_CLUSTER_NAME").cloned());
    if pos.first() == Some(&"version") {
        return out("kind v0.27.0 go1.23.6 linux/amd64\n", "", 0);
    }
    let scale = {
        let w = shared.lock();
        if !w.docker_up {
            let text = docker_down_text(&w);
            return match pos.as_slice() {
                ["get", "clusters"] => out("", text, 1),
                ["create", "cluster", ..] => out(
                    "",
                    format!(
                        "ERROR: failed to create cluster: failed to list clusters: {}",
                        text.trim_start_matches("ERROR: failed to list clusters: ")
                    ),
                    1,
                ),
                _ => out("", text, 1),
            };
        }
        w.scale
    };
    match pos.as_slice() {
        ["get", "clusters"] => {
            let w = shared.lock();
            let c = clusters(&w);
            if c.is_empty() {
                out("", "No kind clusters found.\n", 0)
            } else {
                out(format!("{}\n", c.join("\n")), "", 0)
            }
        }
        ["get", "nodes"] => {
            let w = shared.lock();
            let name = name_flag.unwrap_or_else(|| "kind".into());
            let nodes: Vec<String> = w
                .containers
                .iter()
                .filter(|c| c.labels.get("io.x-k8s.kind.cluster") == Some(&name))
                .map(|c| c.name.clone())
                .collect();
            if nodes.is_empty() {
                out("", format!("No kind nodes found for cluster \"{name}\".\n"), 0)
            } else {
                out(format!("{}\n", nodes.join("\n")), "", 0)
            }
        }
        ["get", "kubeconfig"] | ["export", "kubeconfig"] => {
            let mut w = shared.lock();
            let name = name_flag.unwrap_or_else(|| "kind".into());
            if !clusters(&w).contains(&name) {
                return out(
                    "",
                    format!(
                        "ERROR: could not locate any control plane nodes for cluster named '{name}'. Use the --name option to select a different cluster\n"
                    ),
                    1,
                );
            }
            let text = kubeconfig_text(&name, w.kube_port);
            if pos[0] == "get" {
                return out(text, "", 0);
            }
            let path = kubeconfig_path(&w, req, &a);
            if let Err(e) = std::fs::write(&path, text) {
                return out("", format!("ERROR: failed to export kubeconfig: {e}\n"), 1);
            }
            w.event("kubeconfig-exported", &name, "");
            out("", format!("Set kubectl context to \"kind-{name}\"\n"), 0)
        }
        ["delete", "cluster"] | ["delete", "clusters", ..] => {
            let names: Vec<String> = if pos.len() > 2 {
                pos[2..].iter().map(|s| s.to_string()).collect()
            } else {
                vec![name_flag.unwrap_or_else(|| "kind".into())]
            };
            let mut w = shared.lock();
            let mut err = String::new();
            for name in &names {
                err.push_str(&format!("Deleting cluster \"{name}\" ...\n"));
                let node = format!("{name}-control-plane");
                let removed: Vec<_> = w
                    .containers
                    .iter()
                    .filter(|c| c.labels.get("io.x-k8s.kind.cluster") == Some(name))
                    .cloned()
                    .collect();
                w.containers.retain(|c| c.labels.get("io.x-k8s.kind.cluster") != Some(name));
                for c in &removed {
                    crate::docker::remove_node_if(&mut w, c);
                }
                if !removed.is_empty() {
                    err.push_str(&format!("Deleted nodes: [\"{node}\"]\n"));
                    let path = kubeconfig_path(&w, req, &a);
                    let _ = std::fs::write(path, EMPTY_KUBECONFIG);
                }
            }
            drop(w);
            crate::control::bounce_cluster(shared);
            out("", err, 0)
        }
        ["create", "cluster"] => create(shared, req, &a, name_flag, scale).await,
        ["load", "docker-image", images @ ..] => {
            let name = name_flag.unwrap_or_else(|| "kind".into());
            if images.is_empty() {
                return out("", "ERROR: a list of image names is required\n", 1);
            }
            // kind: `docker image inspect` each image, then the nodes, then `docker save` of
            // them all piped into the node's `ctr images import --all-platforms --digests`.
            let (mut err, archive) = {
                let w = shared.lock();
                if let Some(missing) = images.iter().find(|i| !w.host_has(i)) {
                    return out("", format!("ERROR: image: \"{missing}\" not present locally\n"), 1);
                }
                if !clusters(&w).contains(&name) {
                    return out("", format!("ERROR: no nodes found for cluster \"{name}\"\n"), 1);
                }
                let mut err = String::new();
                let mut wanted = false;
                for img in images {
                    let id = crate::images::image_id(img);
                    if w.node_images.contains(&crate::troubles::qualified_image(img)) {
                        err.push_str(&format!(
                            "Image: \"{img}\" with ID \"{id}\" found to be already present on all nodes.\n"
                        ));
                    } else {
                        err.push_str(&format!(
                            "Image: \"{img}\" with ID \"{id}\" not yet present on node \"{name}-control-plane\", loading...\n"
                        ));
                        wanted = true;
                    }
                }
                if !wanted {
                    return out("", err, 0);
                }
                let names: Vec<String> = images.iter().map(|s| s.to_string()).collect();
                match crate::images::save(&w, &names, None) {
                    Ok(a) => (err, a),
                    Err((_, m)) => {
                        err.push_str(&format!(
                            "ERROR: command \"docker save -o /tmp/images-tar/images.tar {}\" failed with error: exit status 1\nCommand Output: Error response from daemon: {m}\n",
                            names.join(" ")
                        ));
                        return out("", err, 1);
                    }
                }
            };
            match import(shared, &name, &[archive], images.len()).await {
                Ok(()) => out("", err, 0),
                Err(e) => {
                    err.push_str(&e);
                    out("", err, 1)
                }
            }
        }
        ["load", "image-archive", files @ ..] => {
            let name = name_flag.unwrap_or_else(|| "kind".into());
            if files.is_empty() {
                return out("", "ERROR: name of image archive is required\n", 1);
            }
            let mut archives = Vec::new();
            for f in files {
                let p = resolve(&req.cwd, f);
                match std::fs::read(&p) {
                    Ok(bytes) => archives.push(bytes),
                    Err(_) => {
                        return out(
                            "",
                            format!("ERROR: stat {}: no such file or directory\n", p.display()),
                            1,
                        );
                    }
                }
            }
            if !clusters(&shared.lock()).contains(&name) {
                return out("", format!("ERROR: no nodes found for cluster \"{name}\"\n"), 1);
            }
            match import(shared, &name, &archives, 0).await {
                Ok(()) => out("", "", 0),
                Err(e) => out("", e, 1),
            }
        }
        _ => {
            out("", format!("ERROR: unknown command {:?} for \"kind\" (simulated)\n", req.argv.join(" ")), 1)
        }
    }
}

/// kind's `nodeutils.LoadImageArchive` for each archive: into the node's containerd, after the
/// load's own start (`checked`: the images `load docker-image` inspected), its bytes through the
/// node's import shared with the loads under way (`images::Importer`); its error as kind prints it.
async fn import(
    shared: &SharedRef,
    cluster: &str,
    archives: &[Vec<u8>],
    checked: usize,
) -> Result<(), String> {
    let mut names = Vec::new();
    for archive in archives {
        match crate::images::import_all_platforms(archive) {
            Ok(n) => names.extend(n),
            Err(e) => {
                return Err(format!(
                    "ERROR: failed to load image: command \"docker exec --privileged -i {cluster}-control-plane ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -\" failed with error: exit status 1\nCommand Output: {e}\n"
                ));
            }
        }
    }
    let scale = shared.lock().scale;
    let start = crate::latency::KIND_LOAD_START_S + crate::latency::KIND_LOAD_PER_IMAGE_S * checked as f64;
    tokio::time::sleep(Duration::from_secs_f64(start * scale)).await;
    let mb: f64 = names.iter().map(|n| crate::latency::image_mb(n)).sum();
    let id = {
        let mut w = shared.lock();
        w.importer.advance(Instant::now(), scale);
        w.importer.start(mb)
    };
    loop {
        let due = {
            let mut w = shared.lock();
            w.importer.advance(Instant::now(), scale);
            match w.importer.done_at(id, scale) {
                Some(due) => due,
                None => break,
            }
        };
        // Others ending or starting change the share: look again at least every 20 ms.
        let wait = due.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
    let mut w = shared.lock();
    let now = Instant::now();
    for n in names {
        w.event("image-loaded", &n, "kind load");
        w.image_arrived(&n, now);
    }
    Ok(())
}

async fn create(
    shared: &SharedRef,
    req: &StandinReq,
    a: &Args,
    name_flag: Option<String>,
    scale: f64,
) -> StandinOut {
    let cfg_text = match a.flags.get("--config").map(String::as_str) {
        Some("-") => Some(req.stdin.clone().unwrap_or_default()),
        Some(p) => match std::fs::read_to_string(resolve(&req.cwd, p)) {
            Ok(t) => Some(t),
            Err(e) => {
                return out(
                    "",
                    format!("ERROR: failed to create cluster: error reading file: open {p}: {e}\n"),
                    1,
                );
            }
        },
        None => None,
    };
    let cfg: Option<KindCluster> = match &cfg_text {
        Some(t) => match serde_saphyr::from_str(t) {
            Ok(c) => Some(c),
            Err(e) => {
                return out("", format!("ERROR: failed to create cluster: {e}\n"), 1);
            }
        },
        None => None,
    };
    let name =
        name_flag.or_else(|| cfg.as_ref().and_then(|c| c.name.clone())).unwrap_or_else(|| "kind".into());
    {
        let w = shared.lock();
        if clusters(&w).contains(&name) {
            return out(
                "",
                format!(
                    "ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"{name}\"\n"
                ),
                1,
            );
        }
    }
    // Creating a node takes a while.
    tokio::time::sleep(Duration::from_secs_f64(20.0 * scale)).await;
    let mut w = shared.lock();
    let mut nodes = match &cfg {
        Some(c) => c.kind_nodes(&name),
        None => vec![(format!("{name}-control-plane"), "control-plane", Vec::new())],
    };
    nodes[0].2.push((6443, w.kube_port));
    let puller = crate::images::Puller::from_patches(&cfg.as_ref().map(|c| c.patches()).unwrap_or_default());
    w.create_cluster(&name, nodes, puller);
    let path = kubeconfig_path(&w, req, a);
    let _ = std::fs::write(&path, kubeconfig_text(&name, w.kube_port));
    w.event("cluster-created", &name, "");
    drop(w);
    crate::control::bounce_cluster(shared);
    let wait = a.flags.get("--wait").cloned().unwrap_or_default();
    let mut err = format!(
        "Creating cluster \"{name}\" ...\n ✓ Ensuring node image (kindest/node:v1.32.2) 🖼\n ✓ Preparing nodes 📦 \n ✓ Writing configuration 📜\n ✓ Starting control-plane 🕹️\n ✓ Installing CNI 🔌\n ✓ Installing StorageClass 💾\n"
    );
    let workers = w_workers(shared);
    if workers > 0 {
        err.push_str(" ✓ Joining worker nodes 🚜\n");
    }
    if !wait.is_empty() && wait != "0s" {
        err.push_str(&format!(
            " ✓ Waiting ≤ {wait} for control-plane = Ready ⏳\n • Ready after {}s 💚\n",
            (15.0 * scale).round() as u64
        ));
    }
    err.push_str(&format!(
        "Set kubectl context to \"kind-{name}\"\nYou can now use your cluster with:\n\nkubectl cluster-info --context kind-{name}\n\nHave a nice day! 👋\n"
    ));
    out("", err, 0)
}

/// The cluster's worker nodes (what `kind create` says it joined).
fn w_workers(shared: &SharedRef) -> usize {
    shared.lock().nodes().len().saturating_sub(1)
}

/// `istioctl ztunnel-config all|workloads [<pod>[.<ns>]] [--node N] -o json|short`: ztunnel's
/// admin config dump, fetched through a port-forward to its pod's port 15000 (istioctl
/// `ztunnelconfig.go`), raw for `all -o json` (so its `workloadState`), or its workload summary
/// (PROTOCOL HBONE for a pod annotated `enabled`: what istiod tells ztunnel, not its capture).
fn ztunnel_config(shared: &SharedRef, a: &Args, pos: &[&str], refused: &str) -> StandinOut {
    let w = shared.lock();
    if !(w.docker_up && w.node_running() && !w.api_refusing) {
        return out("", refused.to_string(), 1);
    }
    let cluster = format!("kind-{}", w.cluster_name());
    if let Some(ctx) = a.flags.get("--context").filter(|c| **c != cluster) {
        return out("", format!("Error: context \"{ctx}\" does not exist\n"), 1);
    }
    let ns = a.flags.get("--istio-namespace").cloned().unwrap_or_else(|| "istio-system".into());
    let ds = w.infra.stack.mesh.daemonset.clone();
    let ztunnel = |p: &&crate::world::PodState| p.wl.0 == Res::DaemonSets && p.wl.2 == ds && p.ns == ns;
    let pod = match (a.flags.get("--node"), pos.get(2)) {
        (Some(node), _) => {
            if ds != "ztunnel" || w.store.get(&Key::new(Res::DaemonSets, &ns, "ztunnel")).is_none() {
                return out("", "Error: daemonsets.apps \"ztunnel\" not found\n", 1);
            }
            match w.pods.values().filter(ztunnel).find(|p| &p.node == node) {
                Some(p) => p.clone(),
                None => return out("", "Error: no pods found\n", 1),
            }
        }
        (None, Some(name)) => {
            let (name, pns) = name.split_once('.').unwrap_or((name, ns.as_str()));
            match w.pods.get(&(pns.to_string(), name.to_string())) {
                Some(p) if ztunnel(&p) => p.clone(),
                Some(p) => {
                    return out(
                        "",
                        format!(
                            "Error: workloads command is only supported by Ztunnel proxies: {}\n",
                            p.name
                        ),
                        1,
                    );
                }
                None => return out("", format!("Error: pods \"{name}\" not found\n"), 1),
            }
        }
        (None, None) => match w.pods.values().filter(ztunnel).max_by_key(|p| p.created_wall) {
            Some(p) => p.clone(),
            None => return out("", format!("Error: no running pods found for daemonset/{ds}\n"), 1),
        },
    };
    if matches!(pod.phase, crate::world::PodPhase::Backoff { .. }) || pod.netns.is_none() {
        return out(
            "",
            format!(
                "Error: failed to execute command on {}.{} Ztunnel: failure running port forward process: error upgrading \
                 connection: unable to upgrade connection: container not found (\"istio-proxy\")\n",
                pod.name, pod.ns
            ),
            1,
        );
    }
    let state: serde_json::Map<String, Value> = w
        .workload_state(&pod.node)
        .into_iter()
        .map(|(uid, (name, namespace, state))| {
            (uid, json!({"info": {"name": name, "namespace": namespace, "serviceAccount": "default"}, "state": state}))
        })
        .collect();
    let workloads: Vec<Value> = w
        .pods
        .values()
        .map(|p| {
            let hbone = p.ambient && p.enrolled == Some("enabled");
            json!({"uid": format!("Kubernetes//Pod/{}/{}", p.ns, p.name), "workloadIps": [p.ip],
                   "protocol": if hbone { "HBONE" } else { "TCP" }, "name": p.name, "namespace": p.ns,
                   "serviceAccount": "default", "workloadName": p.wl.2, "workloadType": "deployment",
                   "canonicalName": p.wl.2, "canonicalRevision": "latest", "clusterId": "Kubernetes",
                   "trustDomain": "cluster.local", "node": p.node,
                   "status": if p.is_ready() { "Healthy" } else { "Unhealthy" }})
        })
        .collect();
    let output = a.flags.get("-o").or(a.flags.get("--output")).map(String::as_str).unwrap_or("short");
    match (pos.get(1).copied(), output) {
        (Some("all"), "json") => {
            let dump = json!({"certificates": [], "policies": [], "services": [], "workloads": workloads,
                "staticConfig": {"policies": [], "services": [], "workloads": []},
                "version": {"version": "1.26.0", "rustVersion": "1.85.0", "buildProfile": "release"},
                "config": {"adminAddr": {"Localhost": [true, 15000]}, "proxyMode": "Shared", "inpodEnabled": true},
                "workloadState": state});
            out(format!("{}\n", serde_json::to_string_pretty(&dump).unwrap_or_default()), "", 0)
        }
        (Some("workload" | "workloads" | "w" | "all"), "short") => {
            let mut text = String::from("NAMESPACE POD NAME ADDRESS NODE WAYPOINT PROTOCOL\n");
            for v in &workloads {
                text.push_str(&format!(
                    "{} {} {} {} None {}\n",
                    v["namespace"].as_str().unwrap_or(""),
                    v["name"].as_str().unwrap_or(""),
                    v["workloadIps"][0].as_str().unwrap_or(""),
                    v["node"].as_str().unwrap_or(""),
                    v["protocol"].as_str().unwrap_or("")
                ));
            }
            out(text, "", 0)
        }
        (_, other) => out(
            "",
            format!("Error: output format \"{other}\" not supported (simulated: all -o json, workloads)\n"),
            1,
        ),
    }
}

async fn istioctl(shared: &SharedRef, req: &StandinReq) -> StandinOut {
    let a = parse(&req.argv);
    let pos: Vec<&str> = a.positional.iter().map(String::as_str).collect();
    let (reachable, port, version) = {
        let w = shared.lock();
        (w.docker_up && w.node_running() && !w.api_refusing, w.kube_port, w.opts.istio_version.clone())
    };
    let refused = format!(
        "Error: failed to get Kubernetes version: Get \"http://127.0.0.1:{port}/version?timeout=5s\": dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    );
    let client = format!("client version: {version}\n");
    match pos.first().copied() {
        Some("version") if a.flags.get("--remote").map(String::as_str) == Some("false") => out(client, "", 0),
        Some("version") => {
            if !reachable {
                return out(client, refused, 1);
            }
            let w = shared.lock();
            let proxies = w.pods.values().filter(|p| p.wl.2 == "ztunnel").count();
            let control = w.istio.as_ref().map_or("none".to_string(), |i| i.version.clone());
            out(
                format!(
                    "{client}control plane version: {control}\ndata plane version: {control} ({proxies} proxies)\n"
                ),
                "",
                0,
            )
        }
        Some("manifest") if pos.get(1) == Some(&"generate") => {
            // Its flags (`addManifestGenerateFlags`) and istioctl's global ones; cobra refuses others.
            const KNOWN: &[&str] = &[
                "--set",
                "-s",
                "--filename",
                "-f",
                "--force",
                "--manifests",
                "-d",
                "--charts",
                "--revision",
                "-r",
                "--cluster-specific",
                "--context",
                "--kubeconfig",
                "-c",
                "--istioNamespace",
                "-i",
                "--namespace",
                "-n",
                "--vklog",
            ];
            if let Some(bad) = a.flags.keys().find(|f| !KNOWN.contains(&f.as_str())) {
                return out("", format!("Error: unknown flag: {bad}\n"), 1);
            }
            if pos.len() > 2 {
                return out(
                    "",
                    format!("Error: generate accepts no positional arguments, got {:?}\n", &pos[2..]),
                    1,
                );
            }
            match crate::istioctl::Install::from_sets(&version, &crate::istioctl::sets(&req.argv)) {
                Ok(install) => out(install.manifest(), "", 0),
                Err(e) => out("", format!("{e}\n"), 1),
            }
        }
        Some("install") => {
            if !reachable {
                return out("", refused, 1);
            }
            // istioctl asks first (operator/cmd/mesh/install.go `Confirm`): without a terminal
            // its read fails, and it cancels with exit 1.
            let skip = a.flags.contains_key("--skip-confirmation") || a.flags.contains_key("-y");
            let answer = req.stdin.as_deref().unwrap_or("").trim().to_uppercase();
            if !skip && !matches!(answer.as_str(), "Y" | "YES") {
                return out(
                    format!(
                        "This will install the Istio {version} profile \"ambient\" into the cluster. Proceed? (y/N) Cancelled.\n"
                    ),
                    "",
                    1,
                );
            }
            let install =
                match crate::istioctl::Install::from_sets(&version, &crate::istioctl::sets(&req.argv)) {
                    Ok(i) => i,
                    Err(e) => return out("", format!("{e}\n"), 1),
                };
            if install.profile != "ambient" {
                return out(
                    "",
                    "Error: the simulator only installs the ambient profile (--set profile=ambient)\n",
                    1,
                );
            }
            {
                let mut w = shared.lock();
                // istio-cni's start-up reconcile, as the install's flags and release set it.
                w.reconcile = install.reconciles_on_startup();
                w.install_istio(&install);
            }
            shared.wake.notify_one();
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let done = {
                    let w = shared.lock();
                    let ns = w.infra.stack.mesh.namespace.clone();
                    let zt = w.infra.stack.mesh.daemonset.clone();
                    [
                        (Res::Deployments, "istiod".to_string()),
                        (Res::DaemonSets, "istio-cni-node".to_string()),
                        (Res::DaemonSets, zt),
                    ]
                    .iter()
                    .all(|(r, n)| {
                        w.store.get(&Key::new(*r, &ns, n)).is_some_and(|o| {
                            rollout_done(o).is_ok() && o.pointer("/status/observedGeneration").is_some()
                        })
                    }) && w.pods.values().filter(|p| p.ns == ns).all(|p| p.is_ready())
                };
                if done {
                    break;
                }
                if Instant::now() > deadline {
                    return out(
                        "✔ Istio core installed ⛵️\n",
                        "✘ Installation incomplete: timed out waiting for resources to be ready\nError: failed to install manifests: context deadline exceeded\n",
                        1,
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out(
                "✔ Istio core installed ⛵️\n✔ Istiod installed 🧠\n✔ CNI installed 🪢\n✔ Ztunnel installed 🔒\n✔ Installation complete\n",
                "",
                0,
            )
        }
        Some("ztunnel-config") | Some("zc") => ztunnel_config(shared, &a, &pos, &refused),
        Some("x") | Some("experimental") if pos.get(1) == Some(&"precheck") => {
            out("✔ No issues found when checking the cluster. Istio is safe to install or upgrade!\n", "", 0)
        }
        _ => out(
            "",
            format!("Error: unknown command \"{}\" for \"istioctl\" (simulated)\n", req.argv.join(" ")),
            1,
        ),
    }
}
