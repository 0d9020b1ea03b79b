//! The stack's manifests, with no cluster: read through the product's own loader
//! (`bookstore::stack::load`: every tier folder, every document split and checked as kubectl
//! reads it, the secrets contract with its own rules, the connector files), then
//!
//! 1. against the real schemas with `check-jsonschema` (pinned, from PyPI; `.ci/run` installs it
//!    into its venv): every Kubernetes document against the strict schemas that PyPI
//!    `kubernetes-validate` ships, for the Kubernetes of the oldest and the newest kind node we
//!    support; every Gateway API resource against the openAPIV3Schema of the vendored v1.4.1
//!    standard-install CRDs (`tests/sim/fixtures`), made strict as the API server's field
//!    validation is. The schemas are extracted here, at test time, from those files; nothing
//!    fetched is committed. Without the tools the check is skipped, saying so (not on CI).
//! 2. the cross-checks of the stack file, the kind config and the manifests (every workload
//!    deployed, every host port behind its NodePort, every smoke check reaching the workload it
//!    names, Connect's worker reading the secret its connectors' placeholders resolve from);
//! 3. our rules for the manifests (pinned images, probes, requests, selectors, Recreate for a
//!    RWO claim, no Secret manifests, ambient namespaces, every Secret a pod reads declared in
//!    the contract and every declared one read);
//! 4. Kiali: the keys our config.yaml sets, and the role its ServiceAccount is bound to.
//!
//! Each rule returns its problems as lines; the tests with teeth break a stack copy and see the
//! rule name the break.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bookstore::stack::{KeySource, Stack};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The loaded stack and its documents

/// One document of the tiers, as the product split it, parsed.
struct Doc {
    /// `k8s/20-infra/redis.yaml#2`
    at: String,
    /// The tier folder (`k8s/20-infra`), in the stack's order.
    tier: usize,
    v: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("?")
    }
    fn api(&self) -> &str {
        self.v["apiVersion"].as_str().unwrap_or("?")
    }
    fn group(&self) -> &str {
        self.api().split_once('/').map_or("", |(g, _)| g)
    }
    fn name(&self) -> &str {
        self.v["metadata"]["name"].as_str().unwrap_or("?")
    }
    fn ns(&self) -> Option<&str> {
        self.v["metadata"]["namespace"].as_str()
    }
    fn spec(&self) -> &Value {
        &self.v["spec"]
    }
    fn pod_spec(&self) -> &Value {
        &self.v["spec"]["template"]["spec"]
    }
    fn pod_labels(&self) -> BTreeMap<String, String> {
        strings(&self.v["spec"]["template"]["metadata"]["labels"])
    }
    fn containers(&self, init: bool) -> Vec<&Value> {
        let mut out: Vec<&Value> = list(&self.pod_spec()["containers"]).collect();
        if init {
            out.extend(list(&self.pod_spec()["initContainers"]));
        }
        out
    }
    fn id(&self) -> String {
        match self.ns() {
            Some(ns) => format!("{} {} {ns}/{}", self.at, self.kind(), self.name()),
            None => format!("{} {} {}", self.at, self.kind(), self.name()),
        }
    }
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

struct Manifests {
    stack: Stack,
    docs: Vec<Doc>,
}

impl Manifests {
    /// The stack at `dir/stack.yaml`, through the product's loader (an input error fails here,
    /// with the product's message).
    fn load(dir: &Path) -> Manifests {
        let source = bookstore::stack::Source::File(dir.join("stack.yaml"));
        let stack = bookstore::stack::load(source).unwrap_or_else(|e| panic!("the stack does not load: {e}"));
        let mut docs = Vec::new();
        for (tier, t) in stack.bootstrap.tiers.iter().enumerate() {
            let mut index: BTreeMap<&str, usize> = BTreeMap::new();
            for d in &t.docs {
                let n = index.entry(d.file.as_str()).or_insert(0);
                *n += 1;
                let v: Value = serde_saphyr::from_str(&d.text)
                    .unwrap_or_else(|e| panic!("{} line {}: {e}", d.file, d.line));
                docs.push(Doc { at: format!("{}#{n}", d.file), tier, v });
            }
        }
        Manifests { stack, docs }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Doc> + 'a {
        self.docs.iter().filter(move |d| d.kind() == kind)
    }

    fn find(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<&Doc> {
        self.docs.iter().find(|d| d.kind() == kind && d.ns() == ns && d.name() == name)
    }

    /// The Deployments whose pods a Service's selector matches.
    fn behind(&self, svc: &Doc) -> Vec<&Doc> {
        let sel = strings(&svc.spec()["selector"]);
        self.of_kind("Deployment")
            .filter(|d| {
                d.ns() == svc.ns()
                    && !sel.is_empty()
                    && sel.iter().all(|(k, v)| d.pod_labels().get(k) == Some(v))
            })
            .collect()
    }

    /// The NodePort Service with this nodePort.
    fn node_port(&self, port: u16) -> Option<&Doc> {
        self.of_kind("Service").find(|s| {
            s.spec()["type"] == "NodePort" && list(&s.spec()["ports"]).any(|p| p["nodePort"] == port)
        })
    }
}

fn repository_stack() -> Manifests {
    Manifests::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("infra"))
}

/// A copy of `infra/` to break: (its folder, kept alive by the TempDir).
fn infra_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    bookstore_sim::config::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("infra"), dir.path())
        .expect("infra copied");
    dir
}

#[track_caller]
fn edit(dir: &Path, rel: &str, from: &str, to: &str) {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).expect("a stack file");
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).expect("written");
}

// ---------------------------------------------------------------------------------------------
// 2. The stack file, the kind config and the manifests agree

fn cross_checks(m: &Manifests) -> Vec<String> {
    let mut out = Vec::new();
    let s = &m.stack;
    // Every workload is deployed by a unit of the bootstrap (the product's own mapping of
    // documents to workloads), in its namespace, which the manifests define.
    for (i, w) in s.workloads.iter().enumerate() {
        if !s.bootstrap.units.iter().any(|u| u.workload == Some(i)) {
            out.push(format!("workload {}: no Deployment {}/{} in the tiers", w.name, w.namespace, w.name));
        }
        if m.find("Namespace", None, &w.namespace).is_none() {
            out.push(format!("workload {}: namespace {} is defined in no tier", w.name, w.namespace));
        }
    }
    // Host ports: each containerPort of the kind config has its NodePort Service, and no
    // NodePort is unreachable from the host.
    let mapped: BTreeSet<u16> = s.cluster.ports.iter().map(|p| p.container_port).collect();
    for port in &mapped {
        if m.node_port(*port).is_none() {
            out.push(format!("kind containerPort {port}: no NodePort Service with nodePort {port}"));
        }
    }
    for svc in m.of_kind("Service") {
        for p in list(&svc.spec()["ports"]) {
            if let Some(np) = p["nodePort"].as_u64()
                && !mapped.contains(&(np as u16))
            {
                out.push(format!("{}: nodePort {np} is not a containerPort of the kind config", svc.id()));
            }
        }
    }
    // Each smoke check reaches the workload it names: through the Gateway's routes, or the
    // NodePort Service straight to its pods.
    for c in &s.smoke.checks {
        let Some(svc) = m.node_port(c.port) else {
            out.push(format!("smoke check {}: no NodePort Service with nodePort {}", c.name, c.port));
            continue;
        };
        let gateway = strings(&svc.spec()["selector"]).get("gateway.networking.k8s.io/gateway-name").cloned();
        let targets: Vec<&Doc> = match gateway {
            Some(gw) => match route_backend(m, svc.ns(), &gw, c.host.as_deref(), &c.path) {
                Ok(backend) => m.behind(backend),
                Err(why) => {
                    out.push(format!("smoke check {}: Host {:?} path {}: {why}", c.name, c.host, c.path));
                    continue;
                }
            },
            None => m.behind(svc),
        };
        if let Some(serves) = &c.serves
            && !targets.iter().any(|d| d.name() == serves)
        {
            let got: Vec<&str> = targets.iter().map(|d| d.name()).collect();
            out.push(format!(
                "smoke check {}: serves {serves}, but port {} path {} reaches {got:?}",
                c.name, c.port, c.path
            ));
        }
    }
    out.extend(connect_checks(m));
    out
}

/// The Service a Gateway sends (host, path) to: the longest matching PathPrefix (or Exact) of
/// the HTTPRoutes attached to it whose hostnames admit the host.
fn route_backend<'a>(
    m: &'a Manifests,
    ns: Option<&str>,
    gateway: &str,
    host: Option<&str>,
    path: &str,
) -> Result<&'a Doc, String> {
    let mut best: Option<((u8, usize), &Doc, &Value)> = None;
    for rt in m.of_kind("HTTPRoute") {
        let attached = list(&rt.spec()["parentRefs"])
            .any(|p| p["name"] == gateway && p["namespace"].as_str().or(rt.ns()) == ns);
        let hostnames: Vec<&str> = list(&rt.spec()["hostnames"]).filter_map(Value::as_str).collect();
        if !attached || (!hostnames.is_empty() && !host.is_some_and(|h| hostnames.contains(&h))) {
            continue;
        }
        for rule in list(&rt.spec()["rules"]) {
            for mt in list(&rule["matches"]) {
                let kind = mt["path"]["type"].as_str().unwrap_or("PathPrefix");
                let value = mt["path"]["value"].as_str().unwrap_or("/");
                let prefix = value.trim_end_matches('/');
                let rank = match kind {
                    "Exact" if path == value => Some((2, value.len())),
                    "PathPrefix"
                        if prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/")) =>
                    {
                        Some((1, prefix.len()))
                    }
                    _ => None,
                };
                if let Some(rank) = rank
                    && best.as_ref().is_none_or(|(b, _, _)| rank > *b)
                {
                    best = Some((rank, rt, rule));
                }
            }
        }
    }
    let Some((_, rt, rule)) = best else { return Err("no HTTPRoute matches".into()) };
    let b = &rule["backendRefs"][0];
    let b_ns = b["namespace"].as_str().or(rt.ns());
    m.find("Service", b_ns, b["name"].as_str().unwrap_or("?"))
        .ok_or_else(|| format!("HTTPRoute {} sends it to {b}, which is no Service", rt.id()))
}

/// Connect's worker: its port, the Secret its connectors' credentials come from, their
/// placeholders resolving to a properties file the worker mounts from that Secret, and the
/// database each connector captures.
fn connect_checks(m: &Manifests) -> Vec<String> {
    let mut out = Vec::new();
    let c = &m.stack.connect;
    let Some(w) = m.stack.workloads.iter().find(|w| w.name == c.workload) else { return out };
    let Some(dep) = m.find("Deployment", Some(&w.namespace), &w.name) else { return out };
    if !m.node_port(c.port).is_some_and(|svc| m.behind(svc).iter().any(|d| d.name() == c.workload)) {
        out.push(format!("connect.port {}: no NodePort Service reaching {}", c.port, c.workload));
    }
    if c.secret_namespace != w.namespace {
        out.push(format!(
            "connect.secret is in {}, not in {}'s namespace {}",
            c.secret_namespace, c.workload, w.namespace
        ));
    }
    let read: BTreeSet<String> = secret_refs(dep).into_iter().map(|(name, _, _)| name).collect();
    if !read.contains(&c.secret_name) {
        out.push(format!("Deployment {} reads no Secret {}", c.workload, c.secret_name));
    }
    let contract = m
        .stack
        .bootstrap
        .secrets
        .iter()
        .find(|s| s.namespace == c.secret_namespace && s.name == c.secret_name);
    let worker = dep.containers(false).into_iter().next().cloned().unwrap_or(Value::Null);
    let env = |name: &str| {
        list(&worker["env"]).find(|e| e["name"] == name).and_then(|e| e["value"].as_str()).map(String::from)
    };
    let providers: Vec<String> = env("CONNECT_CONFIG_PROVIDERS")
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    for k in &c.connectors {
        let at = &k.file;
        for (field, key) in [("database.user", &k.user_key), ("database.password", &k.password_key)] {
            let value = k.config.get(field).cloned().unwrap_or_default();
            for (alias, path, prop) in placeholders(&value) {
                if !providers.contains(&alias) {
                    out.push(format!("{at} {field}: provider {alias:?} is not declared by the worker (CONNECT_CONFIG_PROVIDERS={})", providers.join(",")));
                    continue;
                }
                let Some((secret, skey)) = mounted_secret(dep, &worker, &path) else {
                    out.push(format!("{at} {field}: {path} is not a file the worker mounts from a Secret"));
                    continue;
                };
                if secret != c.secret_name {
                    out.push(format!(
                        "{at} {field}: {path} comes from Secret {secret}, the stack names {}",
                        c.secret_name
                    ));
                }
                let props =
                    contract.and_then(|s| s.keys.iter().find(|(k, _)| *k == skey)).map(|(_, src)| src);
                match props {
                    Some(KeySource::Properties(keys)) if keys.contains(&prop) => {}
                    _ => out.push(format!(
                        "{at} {field}: {skey}:{prop} is not a properties key of the secrets contract"
                    )),
                }
                if &prop != key {
                    out.push(format!("{at} {field}: placeholder key {prop} differs from the stack's {key}"));
                }
            }
        }
        // The database it captures: a Service of ours, the database it needs, logical decoding.
        let host = k.config.get("database.hostname").cloned().unwrap_or_default();
        let mut parts = host.split('.');
        let (svc, ns) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(db_svc) = m.find("Service", Some(ns), svc) else {
            out.push(format!("{at}: database.hostname {host} is no Service of the manifests"));
            continue;
        };
        for db in m.behind(db_svc) {
            if !k.needs.iter().any(|n| n == db.name()) {
                out.push(format!(
                    "{at}: database.hostname {host} reaches {}, the stack's needs are {:?}",
                    db.name(),
                    k.needs
                ));
            }
            let pg = db.containers(false).into_iter().next().cloned().unwrap_or(Value::Null);
            let pg_db =
                list(&pg["env"]).find(|e| e["name"] == "POSTGRES_DB").and_then(|e| e["value"].as_str());
            if pg_db != k.config.get("database.dbname").map(String::as_str) {
                out.push(format!(
                    "{at}: database.dbname {:?}, {} creates {pg_db:?}",
                    k.config.get("database.dbname"),
                    db.name()
                ));
            }
            let args: Vec<&str> =
                list(&pg["args"]).chain(list(&pg["command"])).filter_map(Value::as_str).collect();
            if k.config.get("plugin.name").is_some_and(|p| p == "pgoutput")
                && !args.iter().any(|a| a.contains("wal_level=logical"))
            {
                out.push(format!(
                    "{}: Debezium (pgoutput) needs Postgres started with -c wal_level=logical",
                    db.id()
                ));
            }
        }
    }
    out
}

/// `${alias:path:key}` placeholders of a value (Kafka's ConfigTransformer): (alias, path, key).
fn placeholders(value: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let Some(end) = rest[at..].find('}') else { break };
        let inner = &rest[at + 2..at + end];
        let parts: Vec<&str> = inner.split(':').collect();
        if let [alias, path, key] = parts.as_slice() {
            out.push((alias.to_string(), path.to_string(), key.to_string()));
        } else if let [alias, key] = parts.as_slice() {
            out.push((alias.to_string(), String::new(), key.to_string()));
        }
        rest = &rest[at + end + 1..];
    }
    out
}

/// The (Secret, key) whose content the container sees at `path`, if a Secret volume is mounted
/// there.
fn mounted_secret(dep: &Doc, c: &Value, path: &str) -> Option<(String, String)> {
    for mount in list(&c["volumeMounts"]) {
        let base = format!("{}/", mount["mountPath"].as_str()?.trim_end_matches('/'));
        let Some(rel) = path.strip_prefix(&base) else { continue };
        let vol = list(&dep.pod_spec()["volumes"]).find(|v| v["name"] == mount["name"])?;
        let secret = &vol["secret"];
        let name = secret["secretName"].as_str()?.to_string();
        match secret["items"].as_array() {
            Some(items) => {
                if let Some(it) = items.iter().find(|it| it["path"] == rel) {
                    return Some((name, it["key"].as_str()?.to_string()));
                }
            }
            None if !rel.contains('/') => return Some((name, rel.to_string())),
            None => {}
        }
    }
    None
}

/// (Secret name, key or None for all of them, how) for every Secret a pod reads.
fn secret_refs(d: &Doc) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    for c in d.containers(true) {
        let cname = c["name"].as_str().unwrap_or("?");
        for e in list(&c["env"]) {
            let r = &e["valueFrom"]["secretKeyRef"];
            if let Some(name) = r["name"].as_str() {
                out.push((
                    name.to_string(),
                    r["key"].as_str().map(String::from),
                    format!("container {cname} env {}", e["name"]),
                ));
            }
        }
        for e in list(&c["envFrom"]) {
            if let Some(name) = e["secretRef"]["name"].as_str() {
                out.push((name.to_string(), None, format!("container {cname} envFrom")));
            }
        }
    }
    for v in list(&d.pod_spec()["volumes"]) {
        let sources: Vec<(&Value, Option<&str>)> =
            std::iter::once((&v["secret"], v["secret"]["secretName"].as_str()))
                .chain(list(&v["projected"]["sources"]).map(|p| (&p["secret"], p["secret"]["name"].as_str())))
                .collect();
        for (s, name) in sources {
            let Some(name) = name else { continue };
            let how = format!("volume {}", v["name"]);
            match s["items"].as_array() {
                Some(items) => items.iter().for_each(|it| {
                    out.push((name.into(), it["key"].as_str().map(String::from), how.clone()))
                }),
                None => out.push((name.into(), None, how)),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 3. Our rules for the manifests

fn our_rules(m: &Manifests) -> Vec<String> {
    let mut out = Vec::new();
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"];
    let ns_tier: BTreeMap<&str, usize> = m.of_kind("Namespace").map(|n| (n.name(), n.tier)).collect();
    for d in &m.docs {
        if cluster_scoped.contains(&d.kind()) {
            if d.ns().is_some() {
                out.push(format!("{}: cluster-scoped, drop metadata.namespace", d.id()));
            }
        } else {
            match d.ns() {
                None => out.push(format!(
                    "{}: metadata.namespace missing (kubectl would use the context's)",
                    d.id()
                )),
                Some(ns) if ns == m.stack.mesh.namespace => {}
                Some(ns) => match ns_tier.get(ns) {
                    None => out.push(format!("{}: namespace {ns} is defined nowhere", d.id())),
                    Some(t) if *t >= d.tier => {
                        out.push(format!("{}: namespace {ns} is created in the same tier or later", d.id()))
                    }
                    Some(_) => {}
                },
            }
        }
        let twice = m
            .docs
            .iter()
            .filter(|o| {
                o.api() == d.api() && o.kind() == d.kind() && o.ns() == d.ns() && o.name() == d.name()
            })
            .count();
        if twice > 1 {
            out.push(format!("{}: defined {twice} times", d.id()));
        }
        if d.kind() == "Secret" {
            out.push(format!(
                "{}: no Secret manifests: the bootstrap makes them from the secrets contract",
                d.id()
            ));
        }
    }
    for ns in m.of_kind("Namespace") {
        let labels = strings(&ns.v["metadata"]["labels"]);
        if labels.get("istio.io/dataplane-mode").map(String::as_str) != Some("ambient") {
            out.push(format!("{}: label istio.io/dataplane-mode=ambient missing", ns.id()));
        }
        if labels.contains_key("istio-injection") || labels.contains_key("istio.io/rev") {
            out.push(format!("{}: sidecar injection label on an ambient namespace", ns.id()));
        }
    }
    for dep in m.of_kind("Deployment") {
        let id = dep.id();
        if dep.spec()["replicas"] != 1 {
            out.push(format!("{id}: replicas {}, want 1", dep.spec()["replicas"]));
        }
        if strings(&dep.spec()["selector"]["matchLabels"])
            != BTreeMap::from([("app".to_string(), dep.name().to_string())])
        {
            out.push(format!("{id}: selector.matchLabels must be {{app: {}}}", dep.name()));
        }
        if dep.pod_labels().get("app").map(String::as_str) != Some(dep.name()) {
            out.push(format!("{id}: pod template label app={} missing", dep.name()));
        }
        for c in dep.containers(true) {
            let cid = format!("{id} container {}", c["name"]);
            let image = c["image"].as_str().unwrap_or("");
            let last = image.rsplit('/').next().unwrap_or("");
            if !image.contains("@sha256:") && (!last.contains(':') || last.ends_with(":latest")) {
                out.push(format!(
                    "{cid}: image {image:?} is not pinned (a tag other than latest, or a digest)"
                ));
            }
            if image.starts_with("bookstore/")
                && !["IfNotPresent", "Never"].contains(&c["imagePullPolicy"].as_str().unwrap_or(""))
            {
                out.push(format!(
                    "{cid}: our images are `kind load`ed: imagePullPolicy must be IfNotPresent or Never"
                ));
            }
            if c["resources"]["requests"]["cpu"].is_null() || c["resources"]["requests"]["memory"].is_null() {
                out.push(format!("{cid}: resources.requests.cpu and .memory are required"));
            }
        }
        for c in dep.containers(false) {
            if c["readinessProbe"].is_null() {
                out.push(format!(
                    "{id} container {}: no readinessProbe (then 'rolled out' is not 'serving')",
                    c["name"]
                ));
            }
        }
        for v in list(&dep.pod_spec()["volumes"]) {
            let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else { continue };
            match m.find("PersistentVolumeClaim", dep.ns(), claim) {
                None => out.push(format!("{id}: volume {}: no PersistentVolumeClaim {claim}", v["name"])),
                Some(pvc) => {
                    let rwo = list(&pvc.spec()["accessModes"]).any(|a| a == "ReadWriteOnce");
                    if rwo && dep.spec()["strategy"]["type"] != "Recreate" {
                        out.push(format!("{id}: mounts RWO claim {claim}: strategy.type must be Recreate"));
                    }
                    if pvc.tier > dep.tier {
                        out.push(format!("{id}: its claim {claim} comes in a later tier"));
                    }
                }
            }
        }
        if let Some(sa) = dep.pod_spec()["serviceAccountName"].as_str()
            && sa != "default"
            && m.find("ServiceAccount", dep.ns(), sa).is_none()
        {
            out.push(format!("{id}: serviceAccountName {sa}: no such ServiceAccount"));
        }
        for c in dep.containers(true) {
            let refs = list(&c["env"])
                .map(|e| &e["valueFrom"]["configMapKeyRef"])
                .chain(list(&c["envFrom"]).map(|e| &e["configMapRef"]));
            for r in refs.filter(|r| r["name"].is_string()) {
                check_config_map(
                    m,
                    dep,
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str(),
                    r["optional"] == true,
                    &mut out,
                );
            }
        }
        for v in list(&dep.pod_spec()["volumes"]) {
            if let Some(name) = v["configMap"]["name"].as_str() {
                let keys: Vec<Option<&str>> = match v["configMap"]["items"].as_array() {
                    Some(items) => items.iter().map(|it| it["key"].as_str()).collect(),
                    None => vec![None],
                };
                for k in keys {
                    check_config_map(m, dep, name, k, v["configMap"]["optional"] == true, &mut out);
                }
            }
        }
        let served = m.of_kind("Service").any(|s| {
            s.ns() == dep.ns()
                && s.spec()["type"].as_str().unwrap_or("ClusterIP") == "ClusterIP"
                && m.behind(s).iter().any(|d| d.name() == dep.name())
        });
        if !served {
            out.push(format!("{id}: no ClusterIP Service selects this workload"));
        }
    }
    let mut node_ports: BTreeMap<u64, String> = BTreeMap::new();
    for svc in m.of_kind("Service") {
        let sel = strings(&svc.spec()["selector"]);
        let gateways: Vec<&Doc> = m
            .of_kind("Gateway")
            .filter(|g| {
                g.ns() == svc.ns()
                    && sel
                        == BTreeMap::from([(
                            "gateway.networking.k8s.io/gateway-name".to_string(),
                            g.name().to_string(),
                        )])
            })
            .collect();
        let targets = m.behind(svc);
        if targets.is_empty() && gateways.is_empty() {
            out.push(format!("{}: its selector matches no Deployment's pods and no Gateway", svc.id()));
        }
        for p in list(&svc.spec()["ports"]) {
            let tp = if p["targetPort"].is_null() { &p["port"] } else { &p["targetPort"] };
            for dep in &targets {
                let ok =
                    dep.containers(false).iter().flat_map(|c| list(&c["ports"])).any(|cp| {
                        if tp.is_string() { cp["name"] == *tp } else { cp["containerPort"] == *tp }
                    });
                if !ok {
                    out.push(format!(
                        "{}: targetPort {tp} is not a container port of {}",
                        svc.id(),
                        dep.name()
                    ));
                }
            }
            for gw in &gateways {
                if !list(&gw.spec()["listeners"]).any(|l| l["port"] == *tp) {
                    out.push(format!(
                        "{}: targetPort {tp} is not a listener port of Gateway {}",
                        svc.id(),
                        gw.name()
                    ));
                }
            }
            if svc.spec()["type"] == "NodePort" {
                match p["nodePort"].as_u64() {
                    None => out.push(format!("{}: a NodePort without an explicit nodePort is not reachable through kind's mappings", svc.id())),
                    Some(np) => {
                        if let Some(other) = node_ports.insert(np, svc.id()) {
                            out.push(format!("{}: nodePort {np} also used by {other}", svc.id()));
                        }
                    }
                }
            }
        }
    }
    for pvc in m.of_kind("PersistentVolumeClaim") {
        if let Some(sc) = pvc.spec()["storageClassName"].as_str()
            && sc != "standard"
        {
            out.push(format!("{}: storageClassName {sc}: kind provides `standard`", pvc.id()));
        }
    }
    // The secrets contract (its own rules are the product's, checked when it loads): every
    // Secret a pod reads is declared with the key it reads, and every declared one is read.
    let declared = &m.stack.bootstrap.secrets;
    let mut read: BTreeSet<(String, String)> = BTreeSet::new();
    for dep in m.of_kind("Deployment") {
        let ns = dep.ns().unwrap_or("default");
        for (name, key, how) in secret_refs(dep) {
            read.insert((ns.to_string(), name.clone()));
            match declared.iter().find(|s| s.namespace == ns && s.name == name) {
                None => {
                    out.push(format!("{} {how}: Secret {ns}/{name} is not in the secrets contract", dep.id()))
                }
                Some(s) => {
                    if let Some(key) = key
                        && !s.keys.iter().any(|(k, _)| *k == key)
                    {
                        out.push(format!(
                            "{} {how}: Secret {ns}/{name} has no key {key} in the secrets contract",
                            dep.id()
                        ));
                    }
                }
            }
        }
    }
    for s in declared {
        if !read.contains(&(s.namespace.clone(), s.name.clone())) {
            out.push(format!(
                "secrets contract: Secret {}/{} is declared but no manifest reads it",
                s.namespace, s.name
            ));
        }
    }
    out.extend(gateway_rules(m));
    out
}

fn check_config_map(
    m: &Manifests,
    dep: &Doc,
    name: &str,
    key: Option<&str>,
    optional: bool,
    out: &mut Vec<String>,
) {
    match m.find("ConfigMap", dep.ns(), name) {
        None if !optional => out.push(format!("{}: no ConfigMap {name}", dep.id())),
        None => {}
        Some(cm) => {
            if cm.tier > dep.tier {
                out.push(format!("{}: ConfigMap {name} comes in a later tier", dep.id()));
            }
            if let Some(key) = key
                && cm.v["data"][key].is_null()
                && cm.v["binaryData"][key].is_null()
            {
                out.push(format!("{}: ConfigMap {name} has no key {key}", dep.id()));
            }
        }
    }
}

/// What the Gateway API schema does not say: our rules, the CRDs' CEL rules we rely on (a
/// path starts with `/`, a Service backendRef has a port), and references.
fn gateway_rules(m: &Manifests) -> Vec<String> {
    let mut out = Vec::new();
    for d in m.docs.iter().filter(|d| ["Gateway", "HTTPRoute"].contains(&d.kind())) {
        if d.api() != "gateway.networking.k8s.io/v1" {
            out.push(format!(
                "{}: apiVersion {}: use gateway.networking.k8s.io/v1, the standard channel's",
                d.id(),
                d.api()
            ));
        }
    }
    for gw in m.of_kind("Gateway") {
        if gw.spec()["gatewayClassName"] != "istio" {
            out.push(format!("{}: gatewayClassName {}, want istio", gw.id(), gw.spec()["gatewayClassName"]));
        }
        let stype = &gw.v["metadata"]["annotations"]["networking.istio.io/service-type"];
        if !(stype == "ClusterIP" || stype == "NodePort") {
            out.push(format!("{}: networking.istio.io/service-type must be ClusterIP or NodePort on kind (LoadBalancer never gets an address)", gw.id()));
        }
        let names: Vec<String> = list(&gw.spec()["listeners"]).map(|l| l["name"].to_string()).collect();
        if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
            out.push(format!("{}: duplicate listener names", gw.id()));
        }
    }
    for rt in m.of_kind("HTTPRoute") {
        let parents: Vec<&Value> = list(&rt.spec()["parentRefs"]).collect();
        if parents.is_empty() {
            out.push(format!("{}: no parentRefs: it attaches to no Gateway", rt.id()));
        }
        for p in parents {
            let gw_ns = p["namespace"].as_str().or(rt.ns());
            let Some(gw) = m.find("Gateway", gw_ns, p["name"].as_str().unwrap_or("?")) else {
                out.push(format!("{}: parentRef {p}: no such Gateway", rt.id()));
                continue;
            };
            let listeners: Vec<&Value> = list(&gw.spec()["listeners"])
                .filter(|l| p["sectionName"].is_null() || l["name"] == p["sectionName"])
                .collect();
            if !listeners.iter().any(|l| admits(m, gw, l, rt.ns().unwrap_or(""))) {
                out.push(format!(
                    "{}: Gateway {} admits no route from namespace {:?}",
                    rt.id(),
                    gw.name(),
                    rt.ns()
                ));
            }
        }
        for rule in list(&rt.spec()["rules"]) {
            for mt in list(&rule["matches"]) {
                if mt["path"]["value"].as_str().is_some_and(|v| !v.starts_with('/')) {
                    out.push(format!("{}: path {} must start with /", rt.id(), mt["path"]["value"]));
                }
            }
            for b in list(&rule["backendRefs"]) {
                let b_ns = b["namespace"].as_str().or(rt.ns());
                if b_ns != rt.ns() && !granted(m, rt.ns(), b_ns, b["name"].as_str().unwrap_or("")) {
                    out.push(format!(
                        "{}: backendRef {b} is in another namespace and no ReferenceGrant allows it",
                        rt.id()
                    ));
                }
                match m.find("Service", b_ns, b["name"].as_str().unwrap_or("?")) {
                    None => out.push(format!("{}: backendRef {b}: no such Service", rt.id())),
                    Some(svc) => {
                        if !list(&svc.spec()["ports"]).any(|p| p["port"] == b["port"]) {
                            out.push(format!(
                                "{}: backendRef {b}: port is not a port of {}",
                                rt.id(),
                                svc.id()
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn admits(m: &Manifests, gw: &Doc, listener: &Value, route_ns: &str) -> bool {
    let allowed = &listener["allowedRoutes"]["namespaces"];
    match allowed["from"].as_str().unwrap_or("Same") {
        "All" => true,
        "Same" => gw.ns() == Some(route_ns),
        "Selector" => {
            let mut labels = m
                .find("Namespace", None, route_ns)
                .map(|n| strings(&n.v["metadata"]["labels"]))
                .unwrap_or_default();
            labels.insert("kubernetes.io/metadata.name".into(), route_ns.into());
            let sel = &allowed["selector"];
            strings(&sel["matchLabels"]).iter().all(|(k, v)| labels.get(k) == Some(v))
                && list(&sel["matchExpressions"]).all(|e| {
                    let key = e["key"].as_str().unwrap_or("");
                    let values: Vec<&str> = list(&e["values"]).filter_map(Value::as_str).collect();
                    let v = labels.get(key).map(String::as_str);
                    match e["operator"].as_str().unwrap_or("") {
                        "In" => v.is_some_and(|v| values.contains(&v)),
                        "NotIn" => !v.is_some_and(|v| values.contains(&v)),
                        "Exists" => v.is_some(),
                        "DoesNotExist" => v.is_none(),
                        _ => false,
                    }
                })
        }
        _ => false,
    }
}

fn granted(m: &Manifests, from: Option<&str>, to: Option<&str>, name: &str) -> bool {
    m.of_kind("ReferenceGrant").filter(|g| g.ns() == to).any(|g| {
        list(&g.spec()["from"]).any(|f| f["kind"] == "HTTPRoute" && f["namespace"].as_str() == from)
            && list(&g.spec()["to"])
                .any(|t| t["kind"] == "Service" && t["name"].as_str().is_none_or(|n| n == name))
    })
}

// ---------------------------------------------------------------------------------------------
// 4. Kiali

/// The keys our config.yaml sets, each read in Kiali v2.29.0's `config/config.go` (the yaml tag
/// of its struct field). Kiali reads the file leniently (gopkg.in/yaml.v2): a key it does not
/// know is silently ignored, so a misspelt key would change nothing and say nothing. No package
/// registry ships Kiali's config schema (the operator's CRD is not on PyPI, crates.io, npm or
/// Debian), so this is the smallest check that still catches it: only what we set, each a
/// path of that release. A new key fails here until it is read in config.go and added.
const KIALI_KEYS_WE_SET: [&str; 20] = [
    "auth",                                // Config.Auth
    "auth.strategy",                       // AuthConfig.Strategy
    "deployment",                          // Config.Deployment
    "deployment.cluster_wide_access",      // DeploymentConfig.ClusterWideAccess
    "deployment.namespace",                // DeploymentConfig.Namespace
    "deployment.view_only_mode",           // DeploymentConfig.ViewOnlyMode
    "external_services",                   // Config.ExternalServices
    "external_services.custom_dashboards", // ExternalServices.CustomDashboards
    "external_services.custom_dashboards.enabled",
    "external_services.prometheus", // ExternalServices.Prometheus
    "external_services.prometheus.url",
    "external_services.grafana", // ExternalServices.Grafana
    "external_services.grafana.enabled",
    "external_services.tracing", // ExternalServices.Tracing
    "external_services.tracing.enabled",
    "login_token",             // Config.LoginToken
    "login_token.signing_key", // LoginToken.SigningKey
    "server",                  // Config.Server
    "server.port",             // Server.Port
    "server.web_root",         // Server.WebRoot
];
const KIALI_SERVER_OBSERVABILITY: [&str; 4] = [
    "server.observability",                 // Server.Observability
    "server.observability.metrics",         // Observability.Metrics
    "server.observability.metrics.enabled", // MetricsConfig.Enabled
    "server.observability.metrics.port",    // MetricsConfig.Port
];
const KIALI_VERSION: &str = "v2.29.0";

/// kiali/helm-charts `kiali-server/templates/role-viewer.yaml` at the same release (view-only,
/// without OpenShift's groups): (apiGroup, resources, verbs). Kiali polls istiod and reads the
/// proxies' config dumps through port-forwards, hence pods/portforward `create` even view-only.
/// The same reason as above: no package registry ships the chart.
const KIALI_VIEWER_RULES: [(&str, &[&str], &[&str]); 10] = [
    (
        "",
        &["configmaps", "pods/log", "namespaces", "pods", "replicationcontrollers", "services"],
        &["get", "list", "watch"],
    ),
    ("", &["pods/portforward"], &["create"]),
    ("apps", &["daemonsets", "deployments", "replicasets", "statefulsets"], &["get", "list", "watch"]),
    ("batch", &["cronjobs", "jobs"], &["get", "list", "watch"]),
    ("networking.istio.io", &["*"], &["get", "list", "watch"]),
    ("security.istio.io", &["*"], &["get", "list", "watch"]),
    ("extensions.istio.io", &["*"], &["get", "list", "watch"]),
    ("telemetry.istio.io", &["*"], &["get", "list", "watch"]),
    (
        "gateway.networking.k8s.io",
        &[
            "gatewayclasses",
            "gateways",
            "grpcroutes",
            "httproutes",
            "referencegrants",
            "tcproutes",
            "tlsroutes",
        ],
        &["get", "list", "watch"],
    ),
    ("authentication.k8s.io", &["tokenreviews"], &["create"]),
];
/// The two more the chart grants: the inference extension's resources, and listing webhooks.
const KIALI_VIEWER_MORE: [(&str, &[&str], &[&str]); 2] = [
    ("inference.networking.k8s.io", &["*"], &["get", "list", "watch"]),
    ("admissionregistration.k8s.io", &["mutatingwebhookconfigurations"], &["list"]),
];

fn key_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    for (k, sub) in v.as_object().into_iter().flatten() {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        out.push(path.clone());
        if sub.is_object() {
            key_paths(sub, &path, out);
        }
    }
}

fn kiali_checks(m: &Manifests) -> Vec<String> {
    let mut out = Vec::new();
    let known: BTreeSet<&str> =
        KIALI_KEYS_WE_SET.iter().chain(&KIALI_SERVER_OBSERVABILITY).copied().collect();
    for dep in m.of_kind("Deployment") {
        let Some(image) = dep
            .containers(false)
            .iter()
            .find_map(|c| c["image"].as_str().filter(|i| i.starts_with("quay.io/kiali/kiali:")))
        else {
            continue;
        };
        if !image.ends_with(&format!(":{KIALI_VERSION}")) {
            out.push(format!(
                "{}: {image}, but its config keys and role are checked against {KIALI_VERSION}",
                dep.id()
            ));
        }
        for v in list(&dep.pod_spec()["volumes"]) {
            let Some(name) = v["configMap"]["name"].as_str() else { continue };
            let Some(text) = m
                .find("ConfigMap", dep.ns(), name)
                .and_then(|cm| cm.v["data"]["config.yaml"].as_str().map(String::from))
            else {
                continue;
            };
            let config: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("ConfigMap {name} config.yaml: {e}"));
            let mut paths = Vec::new();
            key_paths(&config, "", &mut paths);
            for p in paths.iter().filter(|p| !known.contains(p.as_str())) {
                out.push(format!("ConfigMap {name}: config.yaml key {p} is not one read in Kiali {KIALI_VERSION}'s config/config.go"));
            }
        }
        let sa = dep.pod_spec()["serviceAccountName"].as_str().unwrap_or("default");
        let rules: Vec<&Value> = m
            .of_kind("ClusterRoleBinding")
            .filter(|b| {
                list(&b.v["subjects"]).any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"].as_str() == dep.ns()
                })
            })
            .filter_map(|b| m.find("ClusterRole", None, b.v["roleRef"]["name"].as_str().unwrap_or("?")))
            .flat_map(|r| list(&r.v["rules"]))
            .collect();
        let has = |field: &Value, want: &str| list(field).any(|x| x == want || x == "*");
        for (group, resources, verbs) in KIALI_VIEWER_RULES.iter().chain(&KIALI_VIEWER_MORE) {
            for resource in *resources {
                for verb in *verbs {
                    let granted = rules.iter().any(|r| {
                        has(&r["apiGroups"], group)
                            && has(&r["resources"], resource)
                            && has(&r["verbs"], verb)
                    });
                    if !granted {
                        out.push(format!(
                            "{}: ServiceAccount {sa} cannot {verb} {group}/{resource} (role-viewer.yaml {KIALI_VERSION} grants it)",
                            dep.id()
                        ));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn the_stack_file_the_kind_config_and_the_manifests_agree() {
    let m = repository_stack();
    assert_eq!(cross_checks(&m), Vec::<String>::new());
}

#[test]
fn the_manifests_follow_our_rules() {
    let m = repository_stack();
    assert_eq!(our_rules(&m), Vec::<String>::new());
}

#[test]
fn kialis_config_and_role_are_its_releases() {
    let m = repository_stack();
    assert_eq!(kiali_checks(&m), Vec::<String>::new());
}

/// The rules have teeth: each break of a stack copy is named.
#[test]
fn a_broken_copy_of_the_stack_is_named_by_the_rule_it_breaks() {
    type Rule = fn(&Manifests) -> Vec<String>;
    let cases: [(&str, &str, &str, Rule, &str); 6] = [
        (
            "k8s/30-apps/ui-service.yaml",
            "image: bookstore/ui-service:dev",
            "image: bookstore/ui-service",
            our_rules,
            "is not pinned",
        ),
        (
            "k8s/60-gateway/routes.yaml",
            "value: /inven",
            "value: /inventory",
            cross_checks,
            "smoke check inventory-api",
        ),
        (
            "k8s/40-analytics/flink.yaml",
            "nodePort: 32200",
            "nodePort: 32201",
            cross_checks,
            "kind containerPort 32200: no NodePort Service",
        ),
        (
            "k8s/50-observability/kiali.yaml",
            "  web_root: /kiali",
            "  web_root: /kiali\n      webroot: /x",
            kiali_checks,
            "key server.webroot is not one read",
        ),
        (
            "k8s/10-databases/ecom-db.yaml",
            "\"wal_level=logical\"",
            "\"wal_level=replica\"",
            cross_checks,
            "needs Postgres started with -c wal_level=logical",
        ),
        ("k8s/20-infra/redis.yaml", "readinessProbe:", "livenessProbe:", our_rules, "no readinessProbe"),
    ];
    for (file, from, to, rule, named) in cases {
        let dir = infra_copy();
        edit(dir.path(), file, from, to);
        let problems = rule(&Manifests::load(dir.path()));
        assert!(problems.iter().any(|p| p.contains(named)), "{file}: {from} -> {to}: {problems:#?}");
    }
}

/// A `copy` in the secrets contract takes its value from a Secret listed before it: the
/// bootstrap makes the Secrets in the contract's order, so a later one does not exist yet. The
/// product says so when the stack loads (the validator this replaced let it point forward).
#[test]
fn a_secrets_contract_copy_from_a_later_secret_is_refused_when_the_stack_loads() {
    let dir = infra_copy();
    let contract = std::fs::read_to_string(dir.path().join("k8s/secrets-contract.yaml")).unwrap();
    let first = contract.find("  - name: ecom-db-credentials").expect("ecom-db-credentials");
    let next = contract[first + 1..].find("  - name:").map(|i| i + first + 1).expect("a second Secret");
    // ecom-db-credentials moved last: the debezium Secret's copy of its password now points forward.
    let swapped = format!("{}{}\n{}", &contract[..first], &contract[next..], &contract[first..next]);
    std::fs::write(dir.path().join("k8s/secrets-contract.yaml"), swapped).unwrap();
    let err = bookstore::stack::load(bookstore::stack::Source::File(dir.path().join("stack.yaml")))
        .err()
        .map(|e| e.to_string())
        .expect("the stack must not load");
    assert!(err.contains("is not a key of a Secret listed before it"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 1. The schemas, with check-jsonschema

/// The Kubernetes of the oldest (kind v0.27.0) and the newest kind node image we support.
const KUBERNETES: [&str; 2] = ["1.32", "1.36"];

/// The venv `.ci/run` installs check-jsonschema and kubernetes-validate into
/// (`BOOKSTORE_CI_VENV`, else `target/ci-venv`): its bin folder, or why there is none.
fn schema_tools() -> Result<(PathBuf, PathBuf), String> {
    let venv = std::env::var_os("BOOKSTORE_CI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv"));
    let checker = venv.join("bin/check-jsonschema");
    if !checker.is_file() {
        return Err(format!(
            "no {} (python3 -m venv target/ci-venv && target/ci-venv/bin/pip install check-jsonschema==0.39.0 \
             kubernetes-validate==1.37.0; .ci/run does it)",
            checker.display()
        ));
    }
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", "import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))"])
        .output()
        .map_err(|e| format!("the venv's python: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubernetes-validate is not in {}: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let package = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok((checker, package.join("kubernetes-json-schema")))
}

/// One strict schema for every kind the manifests use, from the package's files: the
/// `_definitions.json` of that Kubernetes (its `$ref`s made local), and for each kind an
/// `if apiVersion/kind then $ref` to its definition. Kinds it has no definition for are named.
fn kubernetes_schema(dir: &Path, docs: &[&Doc]) -> (Value, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("_definitions.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let defs: Value =
        serde_json::from_str(&text.replace("/api/_definitions.json#", "#")).expect("JSON definitions");
    let mut by_gvk: BTreeMap<(String, String), String> = BTreeMap::new();
    for (name, d) in defs["$defs"].as_object().expect("$defs") {
        for gvk in list(&d["x-kubernetes-group-version-kind"]) {
            let group = gvk["group"].as_str().unwrap_or("");
            let version = gvk["version"].as_str().unwrap_or("");
            let api = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
            by_gvk
                .entry((api, gvk["kind"].as_str().unwrap_or("").to_string()))
                .or_insert_with(|| name.clone());
        }
    }
    let (mut branches, mut unknown) = (Vec::new(), Vec::new());
    let kinds: BTreeSet<(String, String)> =
        docs.iter().map(|d| (d.api().to_string(), d.kind().to_string())).collect();
    for (api, kind) in kinds {
        match by_gvk.get(&(api.clone(), kind.clone())) {
            Some(def) => branches.push(json!({
                "if": {"properties": {"apiVersion": {"const": api}, "kind": {"const": kind}}, "required": ["apiVersion", "kind"]},
                "then": {"$ref": format!("#/$defs/{def}")}
            })),
            None => unknown.push(format!("{api} {kind}")),
        }
    }
    (
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs["$defs"], "allOf": branches}),
        unknown,
    )
}

/// The schema with unknown fields rejected, as the API server's strict field validation does
/// with a structural schema: `additionalProperties: false` on every object with `properties`
/// that neither declares additionalProperties nor preserves unknown fields.
fn strict(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(strict).collect()),
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, v) in o {
                let keep = ["default", "enum", "example", "x-kubernetes-validations"].contains(&k.as_str());
                out.insert(k.clone(), if keep { v.clone() } else { strict(v) });
            }
            if o.contains_key("properties")
                && !o.contains_key("additionalProperties")
                && o.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The served versions' openAPIV3Schema of the vendored Gateway API CRDs, strict, one
/// `if apiVersion/kind then` branch each; and the release they are.
fn gateway_schema() -> (Value, BTreeSet<String>) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sim/fixtures/gateway-api-v1.4.1-standard-install.yaml");
    let text = std::fs::read_to_string(&file).expect("the vendored CRDs");
    let (mut branches, mut bundles) = (Vec::new(), BTreeSet::new());
    for d in bookstore::manifests::parse("standard-install.yaml", &text).expect("CRDs") {
        let crd: Value = serde_saphyr::from_str(&d.text).expect("a CRD");
        bundles.insert(
            crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        );
        let spec = &crd["spec"];
        for v in list(&spec["versions"]).filter(|v| v["served"] == true) {
            let api =
                format!("{}/{}", spec["group"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or(""));
            branches.push(json!({
                "if": {"properties": {"apiVersion": {"const": api}, "kind": {"const": spec["names"]["kind"]}}, "required": ["apiVersion", "kind"]},
                "then": strict(&v["schema"]["openAPIV3Schema"])
            }));
        }
    }
    (json!({"$schema": "http://json-schema.org/draft-07/schema#", "allOf": branches}), bundles)
}

/// check-jsonschema with this schema on these documents (each written as JSON, named after
/// where it is): its complaints, one a line.
fn check(checker: &Path, work: &Path, name: &str, schema: &Value, docs: &[&Doc]) -> Vec<String> {
    let schema_file = work.join(format!("{name}.schema.json"));
    std::fs::write(&schema_file, schema.to_string()).expect("schema written");
    let mut files = Vec::new();
    for d in docs {
        let file = work.join(format!("{}.{}", d.at.replace(['/', '#'], "_"), "json"));
        std::fs::write(&file, d.v.to_string()).expect("document written");
        files.push(file);
    }
    let out = Command::new(checker)
        .arg("--schemafile")
        .arg(&schema_file)
        .args(["--disable-formats", "*", "--color", "never"])
        .args(&files)
        .output()
        .expect("check-jsonschema runs");
    if out.status.success() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // One line per error (`<file>::<path>: <message>`), after a header line.
    text.lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "Schema validation errors were encountered.")
        .map(|l| format!("{name}: {}", l.trim()))
        .collect()
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_and_gateway_api_schemas() {
    let (checker, schemas) = match schema_tools() {
        Ok(found) => found,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI must check the schemas (.ci/run installs the tools): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED the schema check: {why}");
            return;
        }
    };
    let m = repository_stack();
    let work = tempfile::tempdir().expect("a temp dir");
    // The check has teeth: a document with an unknown field and a route with a wrong type go
    // along with the stack's, and are refused, each naming its field.
    let mut broken =
        Doc { at: "teeth#1".into(), tier: 0, v: m.of_kind("Deployment").next().unwrap().v.clone() };
    broken.v["spec"]["replica"] = json!(1);
    let mut route =
        Doc { at: "teeth#2".into(), tier: 0, v: m.of_kind("HTTPRoute").next().unwrap().v.clone() };
    route.v["spec"]["hostnames"] = json!("not-a-list");
    let gateway: Vec<&Doc> =
        m.docs.iter().filter(|d| d.group() == "gateway.networking.k8s.io").chain([&route]).collect();
    let kubernetes: Vec<&Doc> =
        m.docs.iter().filter(|d| d.group() != "gateway.networking.k8s.io").chain([&broken]).collect();
    let mut problems = Vec::new();
    for version in KUBERNETES {
        let (schema, unknown) =
            kubernetes_schema(&schemas.join(format!("v{version}.0-local-strict")), &kubernetes);
        problems.extend(unknown.iter().map(|k| format!("Kubernetes {version} has no {k}")));
        problems.extend(check(&checker, work.path(), &format!("kubernetes-{version}"), &schema, &kubernetes));
    }
    let (schema, bundles) = gateway_schema();
    assert_eq!(bundles, BTreeSet::from(["v1.4.1".to_string()]), "the vendored CRDs' release");
    let crds = &m.stack.bootstrap.crds;
    assert!(
        crds.contains("/v1.4.1/"),
        "the stack installs {crds}, the schemas here are v1.4.1's: vendor that release"
    );
    problems.extend(check(&checker, work.path(), "gateway-api-v1.4.1", &schema, &gateway));
    let (teeth, problems): (Vec<String>, Vec<String>) =
        problems.into_iter().partition(|p| p.contains("teeth_"));
    assert_eq!(problems, Vec::<String>::new());
    for (doc, field) in [("teeth_1.json", "replica"), ("teeth_2.json", "hostnames")] {
        assert!(
            teeth.iter().any(|t| t.contains(doc) && t.contains(field)),
            "{doc} not refused for {field}: {teeth:#?}"
        );
    }
}
