//! The fake kube-apiserver: discovery, LIST/GET/WATCH/PATCH/POST/PUT/DELETE, pod logs,
//! Status errors — the wire behaviour of `shared/reference/kube-api.md`.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::audit::{AuditEntry, Source};
use crate::server::{self, Handler, Resp};
use crate::store::{ALL_RES, FieldSelector, Key, LabelSelector, Res, i64_at, merge_patch, str_at};
use crate::world::SharedRef;

pub const GIT_VERSION: &str = "v1.32.4";

pub fn handler(shared: SharedRef) -> Handler {
    Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move { Ok(handle(shared, req).await) })
    })
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut v = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                       "message": message,"reason": reason,"code": code});
    if let Some(d) = details {
        v["details"] = d;
    }
    server::json(code, &v)
}

/// The apiserver's limit on an object's annotations, keys and values together (apimachinery
/// `api/validation/objectmeta.go` `TotalAnnotationSizeLimitB`): what a client-side `kubectl apply`
/// of a large CRD runs into, its whole manifest copied into the last-applied annotation.
pub const ANNOTATIONS_MAX: usize = 256 * 1024;

/// 422 Invalid when the object's annotations are over [`ANNOTATIONS_MAX`].
fn annotations_too_long(res: Res, obj: &Value) -> Option<Resp> {
    let size: usize = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size <= ANNOTATIONS_MAX {
        return None;
    }
    let name = str_at(obj, "/metadata/name");
    let detail = format!("Too long: must have at most {ANNOTATIONS_MAX} bytes");
    let kind = match res.group() {
        "" => res.kind().to_string(),
        g => format!("{}.{g}", res.kind()),
    };
    Some(status(
        422,
        "Invalid",
        &format!("{kind} \"{name}\" is invalid: metadata.annotations: {detail}"),
        Some(json!({"name": name, "group": res.group(), "kind": res.kind(),
                    "causes": [{"reason": "FieldValueTooLong", "message": detail, "field": "metadata.annotations"}]})),
    ))
}

fn not_found(res: Res, name: &str) -> Resp {
    let group = res.group();
    status(
        404,
        "NotFound",
        &format!("{} \"{}\" not found", res.qualified(), name),
        Some(json!({"name": name, "group": group, "kind": res.plural()})),
    )
}

/// A parsed resource path.
struct Target {
    res: Res,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return None,
    };
    let t = |res: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Res::from_plural(group, res).map(|res| Target {
            res,
            ns: ns.map(String::from),
            name: name.map(String::from),
            sub: sub.map(String::from),
        })
    };
    match rest {
        [res] => t(res, None, None, None),
        ["namespaces", ns, res] => t(res, Some(ns), None, None),
        ["namespaces", ns, res, name] => t(res, Some(ns), Some(name), None),
        ["namespaces", ns, res, name, sub] => t(res, Some(ns), Some(name), Some(sub)),
        [res, name] => t(res, None, Some(name), None),
        [res, name, sub] => t(res, None, Some(name), Some(sub)),
        _ => None,
    }
}

/// `…/namespaces/{ns}/pods/{name}[:port]/proxy/…`: the API server dials the pod's IP on that
/// port. Nothing in the simulated pods listens on their IP for it (ztunnel's admin port 15000
/// listens on localhost only, ztunnel `src/config.rs`): the apiserver's answer for a refused dial.
fn pod_proxy(shared: &SharedRef, path: &str) -> Option<Resp> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["api", "v1", "namespaces", ns, "pods", target, "proxy", ..] = segs.as_slice() else { return None };
    let (name, port) = target.split_once(':').unwrap_or((target, "80"));
    let port = port.rsplit(':').next().unwrap_or(port);
    let w = shared.lock();
    let Some(p) = w.pods.get(&(ns.to_string(), name.to_string())) else {
        return Some(not_found(Res::Pods, name));
    };
    Some(status(
        503,
        "ServiceUnavailable",
        &format!("error trying to reach service: dial tcp {}:{port}: connect: connection refused", p.ip),
        None,
    ))
}

/// The groups served now: a custom resource's group appears once its CRD exists.
fn served_groups(shared: &SharedRef) -> Vec<&'static str> {
    let w = shared.lock();
    crate::store::GROUPS.iter().copied().filter(|g| served_resources(&w, g).next().is_some()).collect()
}

fn served_resources<'a>(w: &'a crate::world::World, group: &'a str) -> impl Iterator<Item = Res> + 'a {
    ALL_RES.iter().copied().filter(move |r| {
        r.group() == group
            && r.crd_name().is_none_or(|crd| w.store.get(&Key::new(Res::Crds, "", &crd)).is_some())
    })
}

async fn handle(shared: SharedRef, req: Request<Incoming>) -> Resp {
    // `kubectl port-forward`: the connection is upgraded and carries the forwarded streams.
    if let ["api", "v1", "namespaces", ns, "pods", pod, "portforward"] =
        req.uri().path().trim_matches('/').split('/').collect::<Vec<_>>().as_slice()
    {
        let (ns, pod) = (ns.to_string(), pod.to_string());
        return crate::portforward::handle(shared, req, ns, pod).await;
    }
    let (parts, body) = server::read(req).await;
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let full_path =
        parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let content_type =
        parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from);
    let accept =
        parts.headers.get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let q = server::query(parts.uri.query());
    let param = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());

    // Faults first: an injected 500/503.
    let injected = {
        let mut w = shared.lock();
        match w.faults.api_errors.as_mut() {
            Some((code, left, toggle)) if *left > 0 => {
                *toggle = !*toggle;
                if *toggle {
                    *left -= 1;
                    Some(*code)
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    let resp = if let Some(code) = injected {
        if code == 503 {
            status(503, "ServiceUnavailable", "the server is currently unable to handle the request", None)
        } else {
            status(code, "InternalError", "Internal error occurred: injected fault", None)
        }
    } else {
        route(&shared, &method, &path, &accept, content_type.as_deref(), &body, &param).await
    };
    let mut w = shared.lock();
    let t_ms = w.t_ms();
    w.audit.push(AuditEntry {
        t_ms,
        source: Source::Kube,
        verb: method,
        path: full_path,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: resp.status().as_u16(),
        detail: String::new(),
    });
    resp
}

async fn route(
    shared: &SharedRef,
    method: &str,
    path: &str,
    accept: &str,
    content_type: Option<&str>,
    body: &Bytes,
    param: &impl Fn(&str) -> Option<String>,
) -> Resp {
    match (method, path) {
        ("GET", "/version") => {
            return server::json(
                200,
                &json!({"major":"1","minor":"32","gitVersion": GIT_VERSION,
                "gitCommit":"9894294ef13a5b32803e3ca2c0d620a088cc84d1","gitTreeState":"clean",
                "buildDate":"2025-04-22T16:00:00Z","goVersion":"go1.23.8","compiler":"gc","platform":"linux/amd64"}),
            );
        }
        ("GET", p) if p.starts_with("/readyz") || p.starts_with("/livez") || p == "/healthz" => {
            return server::resp(200, "text/plain; charset=utf-8", "ok");
        }
        ("GET", "/api") => return discovery(shared, "", accept),
        ("GET", "/apis") => return discovery(shared, "apis", accept),
        ("GET", "/api/v1") => return resource_list(shared, ""),
        ("GET", p) if p.starts_with("/apis/") && p.ends_with("/v1") && p.matches('/').count() == 3 => {
            return resource_list(shared, &p["/apis/".len()..p.len() - "/v1".len()]);
        }
        ("GET", "/openapi/v3") => {
            let mut paths = serde_json::Map::new();
            for g in served_groups(shared) {
                let gv = if g.is_empty() { "api/v1".to_string() } else { format!("apis/{g}/v1") };
                paths.insert(
                    gv.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=0123456789ABCDEF")}),
                );
            }
            return server::json(200, &json!({ "paths": paths }));
        }
        ("GET", p) if p.starts_with("/openapi/v3/") => {
            let gv = &p["/openapi/v3/".len()..];
            let group = if gv == "api/v1" {
                Some("")
            } else {
                gv.strip_prefix("apis/").and_then(|g| g.strip_suffix("/v1"))
            };
            let Some(group) = group else {
                return status(404, "NotFound", "the server could not find the requested resource", None);
            };
            let w = shared.lock();
            let mut paths = serde_json::Map::new();
            for r in served_resources(&w, group) {
                paths.insert(
                    format!("/{gv}/{}/{{name}}", r.plural()),
                    json!({"patch":{"x-kubernetes-group-version-kind":{"group": group,"version":"v1","kind": r.kind()},
                            "parameters":[{"name":"fieldValidation","in":"query"}]}}),
                );
            }
            return server::json(200, &json!({ "paths": paths }));
        }
        _ => {}
    }
    if let Some(resp) = pod_proxy(shared, path) {
        return resp;
    }
    let Some(t) = parse_target(path) else {
        return status(404, "NotFound", "the server could not find the requested resource", None);
    };
    if let Some(crd) = t.res.crd_name()
        && shared.lock().store.get(&Key::new(Res::Crds, "", &crd)).is_none()
    {
        return status(404, "NotFound", "the server could not find the requested resource", None);
    }
    // `/api/v1/namespaces/{name}` is a namespace by name.
    let t = if t.res == Res::Namespaces && t.ns.is_none() {
        t
    } else if t.ns.is_some() && !t.res.namespaced() {
        return status(404, "NotFound", "the server could not find the requested resource", None);
    } else {
        t
    };
    match method {
        "GET" => match (&t.name, &t.sub) {
            (None, _) => {
                if matches!(param("watch").as_deref(), Some("true") | Some("1")) {
                    watch(shared, &t, param)
                } else {
                    list(shared, &t, param)
                }
            }
            (Some(name), None) => get(shared, &t, name),
            (Some(name), Some(sub)) if t.res == Res::Pods && sub == "log" => logs(shared, &t, name, param),
            _ => status(404, "NotFound", "the server could not find the requested resource", None),
        },
        "PATCH" => match &t.name {
            Some(name) => patch(shared, &t, name, content_type.unwrap_or(""), body),
            None => status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        },
        "POST" if t.name.is_none() => create(shared, &t, body),
        "PUT" if t.name.is_some() => replace(shared, &t, body),
        "DELETE" => match &t.name {
            Some(name) => delete(shared, &t, name),
            None => status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        },
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
    }
}

/// `/api` (core) or `/apis` (every other served group), legacy or aggregated as asked.
fn discovery(shared: &SharedRef, which: &str, accept: &str) -> Resp {
    let groups: Vec<&str> =
        served_groups(shared).into_iter().filter(|g| which.is_empty() == g.is_empty()).collect();
    if accept.contains("as=APIGroupDiscoveryList") {
        let w = shared.lock();
        let items: Vec<Value> = groups
            .iter()
            .map(|g| {
                let resources: Vec<Value> = served_resources(&w, g).map(agg_resource).collect();
                json!({"metadata":{"name": g},"versions":[{"version":"v1","resources": resources,"freshness":"Current"}]})
            })
            .collect();
        let v = json!({"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items": items});
        return server::resp(
            200,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            v.to_string(),
        );
    }
    if which.is_empty() {
        return server::json(
            200,
            &json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}),
        );
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({"name": g,"versions":[{"groupVersion": format!("{g}/v1"),"version":"v1"}],
                   "preferredVersion":{"groupVersion": format!("{g}/v1"),"version":"v1"}})
        })
        .collect();
    server::json(200, &json!({"kind":"APIGroupList","apiVersion":"v1","groups": groups}))
}

const VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

fn agg_resource(r: Res) -> Value {
    json!({"resource": r.plural(),
           "responseKind":{"group": r.group(),"version":"v1","kind": r.kind()},
           "scope": if r.namespaced() {"Namespaced"} else {"Cluster"},
           "singularResource": r.kind().to_lowercase(),
           "shortNames": r.short_names(),
           "verbs": VERBS})
}

fn resource_list(shared: &SharedRef, group: &str) -> Resp {
    let w = shared.lock();
    let resources: Vec<Value> = served_resources(&w, group)
        .map(|r| {
            json!({"name": r.plural(),"singularName": r.kind().to_lowercase(),"namespaced": r.namespaced(),
                   "kind": r.kind(),"verbs": VERBS,"shortNames": r.short_names()})
        })
        .collect();
    if resources.is_empty() {
        return status(404, "NotFound", "the server could not find the requested resource", None);
    }
    let gv = if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") };
    server::json(
        200,
        &json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion": gv,"resources": resources}),
    )
}

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

fn filter(param: &impl Fn(&str) -> Option<String>) -> Result<Filter, Resp> {
    let labels = LabelSelector::parse(&param("labelSelector").unwrap_or_default())
        .map_err(|m| status(400, "BadRequest", &m, None))?;
    let fields = FieldSelector::parse(&param("fieldSelector").unwrap_or_default());
    Ok(Filter { labels, fields })
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }
}

fn list(shared: &SharedRef, t: &Target, param: &impl Fn(&str) -> Option<String>) -> Resp {
    let f = match filter(param) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let w = shared.lock();
    let items: Vec<&Value> =
        w.store.list(t.res, t.ns.as_deref()).into_iter().filter(|o| f.matches(o)).collect();
    let v = json!({"kind": format!("{}List", t.res.kind()),"apiVersion": t.res.api_version(),
                   "metadata":{"resourceVersion": w.store.rv().to_string()},"items": items});
    server::json(200, &v)
}

fn get(shared: &SharedRef, t: &Target, name: &str) -> Resp {
    let w = shared.lock();
    let key = Key::new(t.res, t.ns.as_deref().unwrap_or(""), name);
    match w.store.get(&key) {
        Some(o) => server::json(200, o),
        None => not_found(t.res, name),
    }
}

fn logs(shared: &SharedRef, t: &Target, name: &str, param: &impl Fn(&str) -> Option<String>) -> Resp {
    let w = shared.lock();
    let ns = t.ns.clone().unwrap_or_default();
    let Some(p) = w.pods.get(&(ns, name.to_string())) else {
        return not_found(Res::Pods, name);
    };
    if p.image_pull_error {
        // The apiserver's answer for a container that never started (kubelet's 400).
        let container = param("container").unwrap_or_else(|| p.wl.2.clone());
        return status(
            400,
            "BadRequest",
            &format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: trying and failing to pull image"
            ),
            None,
        );
    }
    let since = param("sinceSeconds").and_then(|s| s.parse::<u64>().ok());
    let tail = param("tailLines").and_then(|s| s.parse::<i64>().ok());
    let now = SystemTime::now();
    let mut lines: Vec<&str> = p
        .log
        .iter()
        .filter(|(t, _)| {
            since.is_none_or(|s| now.duration_since(*t).unwrap_or_default() <= Duration::from_secs(s))
        })
        .map(|(_, l)| l.as_str())
        .collect();
    if let Some(n) = tail.filter(|n| *n >= 0) {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    server::resp(200, "text/plain", text)
}

fn watch(shared: &SharedRef, t: &Target, param: &impl Fn(&str) -> Option<String>) -> Resp {
    let f = match filter(param) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let send_initial = param("sendInitialEvents").as_deref() == Some("true");
    let bookmarks = param("allowWatchBookmarks").as_deref() == Some("true");
    let timeout = param("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    let rv_param = param("resourceVersion").and_then(|s| s.parse::<u64>().ok()).filter(|rv| *rv > 0);
    let res = t.res;
    let ns = t.ns.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let shared = shared.clone();
    tokio::spawn(async move {
        let frame = |typ: &str, obj: &Value| -> Bytes {
            let mut s = json!({"type": typ, "object": obj}).to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let bookmark = |rv: u64, end: bool| -> Bytes {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end":"true"});
            }
            let obj = json!({"kind": res.kind(),"apiVersion": res.api_version(),"metadata": meta});
            frame("BOOKMARK", &obj)
        };
        let (mut last, initial, mut changed) = {
            let w = shared.lock();
            let initial: Vec<Value> = if rv_param.is_none() || send_initial {
                w.store.list(res, ns.as_deref()).into_iter().filter(|o| f.matches(o)).cloned().collect()
            } else {
                Vec::new()
            };
            let last = match rv_param {
                Some(rv) if !send_initial => rv,
                _ => w.store.rv(),
            };
            (last, initial, w.store.subscribe())
        };
        for o in &initial {
            if tx.send(frame("ADDED", o)).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(bookmark(last, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            let (events, rv) = {
                let w = shared.lock();
                (w.store.events_after(res, ns.as_deref(), last), w.store.rv())
            };
            for e in events {
                if f.matches(&e.obj) && tx.send(frame(e.typ, &e.obj)).await.is_err() {
                    return;
                }
            }
            last = last.max(rv);
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if tx.is_closed() { return; }
                    if bookmarks && tx.send(bookmark(last, false)).await.is_err() { return; }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, io::Error>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn parse_body(content_type: &str, body: &Bytes) -> Result<Value, Resp> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    if content_type.contains("yaml") {
        let text = String::from_utf8_lossy(body);
        if let Ok(v) = serde_saphyr::from_str::<Value>(&text) {
            return Ok(v);
        }
    }
    if content_type.contains("protobuf") {
        return Err(status(
            415,
            "UnsupportedMediaType",
            "the simulator accepts JSON bodies only (kubectl create sends protobuf: use apply -f - instead)",
            None,
        ));
    }
    Err(status(400, "BadRequest", "the body of the request was in an unknown format", None))
}

fn patch(shared: &SharedRef, t: &Target, name: &str, content_type: &str, body: &Bytes) -> Resp {
    let patch = match parse_body(content_type, body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if content_type.contains("json-patch+json") {
        return status(
            415,
            "UnsupportedMediaType",
            "the simulator does not implement JSON patch (RFC 6902)",
            None,
        );
    }
    let ns = t.ns.clone().unwrap_or_default();
    let apply = content_type.contains("apply-patch");
    let key = Key::new(t.res, &ns, name);
    let mut w = shared.lock();
    let existing = w.store.get(&key).cloned();
    let (mut obj, created) = match existing {
        Some(o) => (o, false),
        None if apply => {
            if t.res.namespaced() && w.store.get(&Key::new(Res::Namespaces, "", &ns)).is_none() {
                return status(
                    404,
                    "NotFound",
                    &format!("namespaces \"{ns}\" not found"),
                    Some(json!({"name": ns,"kind":"namespaces"})),
                );
            }
            (json!({"metadata":{"name": name, "namespace": ns}}), true)
        }
        None => return not_found(t.res, name),
    };
    let old_spec = obj.get("spec").cloned();
    let old_status = obj.get("status").cloned();
    merge_patch(&mut obj, &patch);
    obj["metadata"]["name"] = json!(name);
    if t.res.namespaced() {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if t.res.has_status() {
        // status is a subresource: a patch of the main resource never changes it.
        match old_status {
            Some(s) => obj["status"] = s,
            None => {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if !created && obj.get("spec").cloned() != old_spec {
            let g = i64_at(&obj, "/metadata/generation").max(1) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        if created {
            obj["metadata"]["generation"] = json!(1);
        }
    }
    if let Some(m) = obj.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(invalid) = annotations_too_long(t.res, &obj) {
        return invalid;
    }
    establish_crd(t.res, &mut obj);
    if t.res == Res::Pods {
        // Pods belong to the kubelet model; only metadata changes are kept.
        if let Some(old) = w.store.get(&key).cloned() {
            let mut o = old;
            o["metadata"]["labels"] = obj["metadata"]["labels"].clone();
            o["metadata"]["annotations"] = obj["metadata"]["annotations"].clone();
            obj = o;
        }
    }
    let out = w.store.put(t.res, obj);
    drop(w);
    shared.wake.notify_one();
    server::json(if created { 201 } else { 200 }, &out)
}

/// The apiextensions controller: a CRD is Established (its names accepted) as soon as it is
/// written; its resources then appear in discovery.
fn establish_crd(res: Res, obj: &mut Value) {
    if res == Res::Secrets {
        string_data(obj);
    }
    if res != Res::Crds {
        return;
    }
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    obj["status"] = json!({"acceptedNames": names, "storedVersions": ["v1"], "conditions": [
        {"type":"NamesAccepted","status":"True","reason":"NoConflicts","message":"no conflicts found"},
        {"type":"Established","status":"True","reason":"InitialNamesAccepted","message":"the initial names have been accepted"}]});
}

/// The apiserver folds a Secret's write-only `stringData` into `data` (base64) on every write.
fn string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(plain) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else { return };
    let b64 = base64::engine::general_purpose::STANDARD;
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in plain.as_object().into_iter().flatten() {
        obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or_default().as_bytes()));
    }
}

fn create(shared: &SharedRef, t: &Target, body: &Bytes) -> Resp {
    let mut obj = match parse_body("application/json", body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = str_at(&obj, "/metadata/name").to_string();
    if name.is_empty() {
        return status(
            422,
            "Invalid",
            "metadata.name: Required value: name or generateName is required",
            None,
        );
    }
    let ns = t.ns.clone().unwrap_or_default();
    let key = Key::new(t.res, &ns, &name);
    let mut w = shared.lock();
    if w.store.get(&key).is_some() {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{}\" already exists", t.res.qualified(), name),
            Some(json!({"name": name,"kind": t.res.plural()})),
        );
    }
    if t.res.namespaced() {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if t.res.has_status() {
        obj["metadata"]["generation"] = json!(1);
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if let Some(invalid) = annotations_too_long(t.res, &obj) {
        return invalid;
    }
    establish_crd(t.res, &mut obj);
    let out = w.store.put(t.res, obj);
    drop(w);
    shared.wake.notify_one();
    server::json(201, &out)
}

fn replace(shared: &SharedRef, t: &Target, body: &Bytes) -> Resp {
    let Some(name) = t.name.clone() else {
        return status(405, "MethodNotAllowed", "no name", None);
    };
    let mut obj = match parse_body("application/json", body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ns = t.ns.clone().unwrap_or_default();
    let key = Key::new(t.res, &ns, &name);
    let mut w = shared.lock();
    let Some(old) = w.store.get(&key).cloned() else {
        return not_found(t.res, &name);
    };
    obj["metadata"]["name"] = json!(name);
    if t.res.namespaced() {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if t.res.has_status() {
        obj["status"] = old.get("status").cloned().unwrap_or(json!({}));
        let g = i64_at(&old, "/metadata/generation").max(1);
        let g = if obj.get("spec") != old.get("spec") { g + 1 } else { g };
        obj["metadata"]["generation"] = json!(g);
    }
    if let Some(invalid) = annotations_too_long(t.res, &obj) {
        return invalid;
    }
    let out = w.store.put(t.res, obj);
    drop(w);
    shared.wake.notify_one();
    server::json(200, &out)
}

fn delete(shared: &SharedRef, t: &Target, name: &str) -> Resp {
    let ns = t.ns.clone().unwrap_or_default();
    let key = Key::new(t.res, &ns, name);
    let mut w = shared.lock();
    let Some(obj) = w.store.get(&key).cloned() else {
        return not_found(t.res, name);
    };
    match t.res {
        Res::Pods => {
            // What the deleted pod's controller was (the checks tell a restart from a loss).
            let owner = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| format!("{}/{}", str_at(r, "/kind"), str_at(r, "/name")))
                .unwrap_or_else(|| "none".into());
            w.event("pod-delete", &format!("{ns}/{name}"), &owner);
            w.delete_pod(&(ns.clone(), name.to_string()))
        }
        Res::Namespaces => {
            for res in ALL_RES.iter().filter(|r| r.namespaced()) {
                for k in w.store.keys(*res) {
                    if k.ns == name {
                        if *res == Res::Pods {
                            w.delete_pod(&(k.ns.clone(), k.name.clone()));
                        } else {
                            w.store.delete(&k);
                        }
                    }
                }
            }
            w.store.delete(&key);
        }
        _ => {
            w.store.delete(&key);
        }
    }
    drop(w);
    shared.wake.notify_one();
    server::json(200, &obj)
}
