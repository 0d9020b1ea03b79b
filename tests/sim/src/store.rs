//! The apiserver's object store: objects as JSON, one global resourceVersion counter, an event
//! log for watches, label and field selectors.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::timefmt::rfc3339;

/// The resources the fake apiserver serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    Namespaces,
    Nodes,
    Pods,
    Secrets,
    Services,
    ConfigMaps,
    Pvcs,
    Deployments,
    DaemonSets,
    ServiceAccounts,
    ClusterRoles,
    ClusterRoleBindings,
    Crds,
    Gateways,
    HttpRoutes,
    /// Core v1 Events (what `kubectl get events` lists): the kubelet's and the scheduler's.
    Events,
}

/// API groups, each served at `/apis/<group>/v1` (the core group at `/api/v1`).
pub const GROUPS: &[&str] = &["", "apps", "rbac.authorization.k8s.io", "apiextensions.k8s.io", GATEWAY_GROUP];
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

pub const ALL_RES: &[Res] = &[
    Res::Namespaces,
    Res::Nodes,
    Res::Pods,
    Res::Secrets,
    Res::Services,
    Res::ConfigMaps,
    Res::Pvcs,
    Res::Deployments,
    Res::DaemonSets,
    Res::ServiceAccounts,
    Res::ClusterRoles,
    Res::ClusterRoleBindings,
    Res::Crds,
    Res::Gateways,
    Res::HttpRoutes,
    Res::Events,
];

impl Res {
    pub fn plural(self) -> &'static str {
        match self {
            Res::Namespaces => "namespaces",
            Res::Nodes => "nodes",
            Res::Pods => "pods",
            Res::Secrets => "secrets",
            Res::Services => "services",
            Res::ConfigMaps => "configmaps",
            Res::Pvcs => "persistentvolumeclaims",
            Res::Deployments => "deployments",
            Res::DaemonSets => "daemonsets",
            Res::ServiceAccounts => "serviceaccounts",
            Res::ClusterRoles => "clusterroles",
            Res::ClusterRoleBindings => "clusterrolebindings",
            Res::Crds => "customresourcedefinitions",
            Res::Gateways => "gateways",
            Res::HttpRoutes => "httproutes",
            Res::Events => "events",
        }
    }
    pub fn kind(self) -> &'static str {
        match self {
            Res::Namespaces => "Namespace",
            Res::Nodes => "Node",
            Res::Pods => "Pod",
            Res::Secrets => "Secret",
            Res::Services => "Service",
            Res::ConfigMaps => "ConfigMap",
            Res::Pvcs => "PersistentVolumeClaim",
            Res::Deployments => "Deployment",
            Res::DaemonSets => "DaemonSet",
            Res::ServiceAccounts => "ServiceAccount",
            Res::ClusterRoles => "ClusterRole",
            Res::ClusterRoleBindings => "ClusterRoleBinding",
            Res::Crds => "CustomResourceDefinition",
            Res::Gateways => "Gateway",
            Res::HttpRoutes => "HTTPRoute",
            Res::Events => "Event",
        }
    }
    pub fn group(self) -> &'static str {
        match self {
            Res::Deployments | Res::DaemonSets => "apps",
            Res::ClusterRoles | Res::ClusterRoleBindings => "rbac.authorization.k8s.io",
            Res::Crds => "apiextensions.k8s.io",
            Res::Gateways | Res::HttpRoutes => GATEWAY_GROUP,
            _ => "",
        }
    }
    /// Served only once its CustomResourceDefinition exists (as a real apiserver does).
    pub fn crd_name(self) -> Option<String> {
        (self.group() == GATEWAY_GROUP).then(|| format!("{}.{}", self.plural(), self.group()))
    }
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Res::Namespaces => &["ns"],
            Res::Nodes => &["no"],
            Res::Pods => &["po"],
            Res::Secrets => &[],
            Res::Services => &["svc"],
            Res::ConfigMaps => &["cm"],
            Res::Pvcs => &["pvc"],
            Res::Deployments => &["deploy"],
            Res::DaemonSets => &["ds"],
            Res::ServiceAccounts => &["sa"],
            Res::ClusterRoles | Res::ClusterRoleBindings | Res::HttpRoutes => &[],
            Res::Crds => &["crd", "crds"],
            Res::Gateways => &["gtw"],
            Res::Events => &["ev"],
        }
    }
    /// A workload the controllers roll out (spec/status/generation semantics).
    pub fn is_apps(self) -> bool {
        matches!(self, Res::Deployments | Res::DaemonSets)
    }
    /// Objects with a status subresource and a generation.
    pub fn has_status(self) -> bool {
        matches!(self, Res::Deployments | Res::DaemonSets | Res::Crds | Res::Gateways | Res::HttpRoutes)
    }
    pub fn api_version(self) -> String {
        match self.group() {
            "" => "v1".to_string(),
            g => format!("{g}/v1"),
        }
    }
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Res::Namespaces | Res::Nodes | Res::ClusterRoles | Res::ClusterRoleBindings | Res::Crds
        )
    }
    /// `deployments.apps` / `pods`, as in NotFound messages.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            g => format!("{}.{g}", self.plural()),
        }
    }
    pub fn from_plural(group: &str, plural: &str) -> Option<Res> {
        ALL_RES.iter().copied().find(|r| r.group() == group && r.plural() == plural)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub res: Res,
    pub ns: String,
    pub name: String,
}

impl Key {
    pub fn new(res: Res, ns: &str, name: &str) -> Key {
        Key { res, ns: if res.namespaced() { ns.to_string() } else { String::new() }, name: name.to_string() }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub typ: &'static str,
    pub res: Res,
    pub ns: String,
    pub obj: Arc<Value>,
}

const EVENT_LOG: usize = 20_000;

pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    events: VecDeque<Event>,
    notify: watch::Sender<u64>,
}

impl Store {
    pub fn new() -> Store {
        let (notify, _) = watch::channel(0);
        Store { objects: BTreeMap::new(), rv: 1000, uid: 0, events: VecDeque::new(), notify }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn list(&self, res: Res, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.res == res && ns.is_none_or(|n| k.ns == n))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn keys(&self, res: Res) -> Vec<Key> {
        self.objects.keys().filter(|k| k.res == res).cloned().collect()
    }

    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("5a1e0000-0000-4000-8000-{:012x}", self.uid)
    }

    fn push(&mut self, typ: &'static str, key: &Key, obj: &Value) {
        self.events.push_back(Event {
            rv: self.rv,
            typ,
            res: key.res,
            ns: key.ns.clone(),
            obj: Arc::new(obj.clone()),
        });
        while self.events.len() > EVENT_LOG {
            self.events.pop_front();
        }
        self.notify.send_replace(self.rv);
    }

    /// Create or replace. Fills apiVersion, kind, uid, creationTimestamp, generation; bumps RV.
    pub fn put(&mut self, res: Res, mut obj: Value) -> Value {
        let name = str_at(&obj, "/metadata/name").to_string();
        let ns = str_at(&obj, "/metadata/namespace").to_string();
        let key = Key::new(res, &ns, &name);
        let old = self.objects.get(&key);
        let exists = old.is_some();
        let old_uid = old.map(|o| str_at(o, "/metadata/uid").to_string());
        let old_created = old.map(|o| str_at(o, "/metadata/creationTimestamp").to_string());
        self.rv += 1;
        let uid = match old_uid {
            Some(u) if !u.is_empty() => u,
            _ => self.next_uid(),
        };
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!(res.api_version()));
            o.insert("kind".into(), json!(res.kind()));
            let meta = o.entry("metadata").or_insert_with(|| json!({})).as_object_mut();
            if let Some(m) = meta {
                m.insert("resourceVersion".into(), json!(self.rv.to_string()));
                if !m.contains_key("uid") {
                    m.insert("uid".into(), json!(uid));
                }
                if !m.contains_key("creationTimestamp") {
                    let created =
                        old_created.filter(|c| !c.is_empty()).unwrap_or_else(|| rfc3339(SystemTime::now()));
                    m.insert("creationTimestamp".into(), json!(created));
                }
                if res.is_apps() && !m.contains_key("generation") {
                    m.insert("generation".into(), json!(1));
                }
                if !res.namespaced() {
                    m.remove("namespace");
                }
            }
        }
        self.objects.insert(key.clone(), obj.clone());
        self.push(if exists { "MODIFIED" } else { "ADDED" }, &key, &obj);
        obj
    }

    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(self.rv.to_string()));
        }
        self.push("DELETED", key, &obj);
        Some(obj)
    }

    /// Events with rv > `after` for `res` (and namespace), oldest first.
    pub fn events_after(&self, res: Res, ns: Option<&str>, after: u64) -> Vec<Event> {
        let start = self.events.partition_point(|e| e.rv <= after);
        self.events
            .iter()
            .skip(start)
            .filter(|e| e.res == res && ns.is_none_or(|n| e.ns == n))
            .cloned()
            .collect()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

pub fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn i64_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// RFC 7386 merge patch (also used for strategic-merge patches, which kubectl computes as a
/// two-way diff of the object it read: for the patches kubectl sends, a recursive merge is exact).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if k.starts_with("$") {
                        continue;
                    }
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A parsed label selector.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    reqs: Vec<LabelReq>,
}

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                LabelReq::NotIn(k.trim().into(), set_values(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                LabelReq::In(k.trim().into(), set_values(v)?)
            } else {
                LabelReq::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => get(k) != Some(v.as_str()),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn set_values(v: &str) -> Result<Vec<String>, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: found '{v}', expected: '('"))?;
    Ok(inner.split(',').map(|x| x.trim().to_string()).collect())
}

/// A parsed field selector (`metadata.name=x,metadata.namespace!=y`, any dotted path).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> FieldSelector {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = part.split_once("!=") {
                reqs.push((k.trim().to_string(), false, v.trim().to_string()));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                reqs.push((k.trim().to_string(), true, v.trim().to_string()));
            }
        }
        FieldSelector { reqs }
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(path, eq, want)| {
            let ptr = format!("/{}", path.replace('.', "/"));
            let got = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let o = json!({"metadata":{"name":"a","labels":{"app":"ztunnel","tier":"x"}}});
        assert!(LabelSelector::parse("app=ztunnel").unwrap().matches(&o));
        assert!(LabelSelector::parse("app in (a,ztunnel),tier").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app!=ztunnel").unwrap().matches(&o));
        assert!(!LabelSelector::parse("!tier").unwrap().matches(&o));
        assert!(FieldSelector::parse("metadata.name=a").matches(&o));
        assert!(!FieldSelector::parse("metadata.name=b").matches(&o));
    }

    #[test]
    fn merge() {
        let mut t = json!({"spec":{"a":1,"b":{"c":2}}});
        merge_patch(&mut t, &json!({"spec":{"b":{"d":3},"a":null}}));
        assert_eq!(t, json!({"spec":{"b":{"c":2,"d":3}}}));
    }
}
