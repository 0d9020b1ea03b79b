//! Kafka Connect REST (Debezium worker) as `shared/reference/kafka-connect.md` §0–§8 describes:
//! flat PUT 201/200, Jackson's 500 for the wrapper, name checks, validation that connects to the
//! database, config providers, 409/404 windows after a create, 500 while the worker joins.

use std::collections::BTreeMap;
use std::io;
use std::time::{Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::audit::{AuditEntry, Source};
use crate::latency::delays;
use crate::server::{self, Resp};
use crate::store::{Key, Res};
use crate::timefmt::rfc3339_millis;
use crate::world::{PodState, StoredConnector, World};

pub const STALE_CONFIG: &str = "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)";
pub const POSTGRES_CLASS: &str = "io.debezium.connector.postgresql.PostgresConnector";
const JACKSON_SOURCE: &str =
    "(org.glassfish.jersey.message.internal.ReaderInterceptorExecutor$UnCloseableInputStream)";

fn err(code: u16, message: &str) -> Resp {
    server::json(code, &json!({"error_code": code, "message": message}))
}

fn timed_out(stage: &str, since: SystemTime) -> Resp {
    err(
        500,
        &format!(
            "Request timed out. The worker is currently {stage}, which began at {}.",
            rfc3339_millis(since)
        ),
    )
}

/// One Connect request on the host port. `Err` = the connection is reset (no ready, reachable
/// endpoint behind the NodePort).
pub fn handle(
    w: &mut World,
    method: &str,
    path_q: &str,
    content_type: Option<&str>,
    body: &Bytes,
    base_url: &str,
) -> Result<Resp, io::Error> {
    let r = serve(w, method, path_q, content_type, body, base_url);
    let t_ms = w.t_ms();
    w.audit.push(AuditEntry {
        t_ms,
        source: Source::Connect,
        verb: method.to_string(),
        path: path_q.to_string(),
        content_type: content_type.map(String::from),
        body: String::from_utf8_lossy(body).into_owned(),
        status: r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0),
        detail: if r.is_err() { "connection reset".into() } else { String::new() },
    });
    r
}

fn serve(
    w: &mut World,
    method: &str,
    path_q: &str,
    content_type: Option<&str>,
    body: &Bytes,
    base_url: &str,
) -> Result<Resp, io::Error> {
    let reset = || io::Error::new(io::ErrorKind::ConnectionReset, "no ready endpoint");
    // Faults in front of everything.
    if w.faults.c_reset > 0 {
        w.faults.c_reset -= 1;
        return Err(reset());
    }
    if w.faults.c502 > 0 {
        w.faults.c502 -= 1;
        return Ok(server::resp(
            502,
            "text/html",
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        ));
    }
    let workload = w.infra.stack.connect.workload.clone();
    // The NodePort reaches the worker whenever a debezium pod is Ready: kube-proxy sends
    // plaintext, which a stale pod still accepts (the seed saw `GET /connectors` → `[]` right
    // after a Docker restart).
    let Some(worker) = w.ready_pod(&workload).cloned() else {
        return Err(reset());
    };
    let now = Instant::now();
    if w.faults.c500 > 0 {
        w.faults.c500 -= 1;
        return Ok(timed_out("reading to the end of the config topic", SystemTime::now()));
    }
    let joined = worker.ready_since.is_none_or(|t| now >= t + w.scaled(delays::CONNECT_JOIN));
    let kafka_ok = w.reachable_pod(&worker, "kafka").is_some();
    if !joined || !kafka_ok {
        let since = worker.ready_wall.unwrap_or(worker.started_wall);
        return Ok(timed_out("ensuring membership in the cluster", since));
    }
    let path = path_q.split('?').next().unwrap_or("");
    let query = server::query(path_q.split_once('?').map(|(_, q)| q));
    let segs: Vec<String> =
        path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(server::pct_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if let ["connectors", _, ..] = segs.as_slice()
        && let Some((m, left)) = w.faults.c409.clone()
        && left > 0
    {
        w.faults.c409 = if left > 1 { Some((m.clone(), left - 1)) } else { None };
        return Ok(err(409, &m));
    }
    let r = match (method, segs.as_slice()) {
        ("GET", []) => server::json(
            200,
            &json!({"version":"3.9.0","commit":"84caaa6e9da06435","kafka_cluster_id":"bookstore-kraft-0001"}),
        ),
        ("GET", ["connectors"]) => list(w, &query, &worker, now),
        ("GET", ["connector-plugins"]) => {
            server::json(200, &json!([{"class": POSTGRES_CLASS,"type":"source","version":"3.0.0.Final"}]))
        }
        ("GET", ["connectors", n]) => match stored(w, n, now) {
            Ok(c) => server::json(200, &info(n, &c.config, true)),
            Err(r) => r,
        },
        ("GET", ["connectors", n, "config"]) => match stored(w, n, now) {
            Ok(c) => server::json(200, &json!(c.config)),
            Err(r) => r,
        },
        ("GET", ["connectors", n, "tasks"]) => match stored(w, n, now) {
            Ok(c) => server::json(200, &json!([{"id":{"connector": n,"task":0},"config": c.config}])),
            Err(r) => r,
        },
        // Read from the status topic: no rebalance check (no 409), a 404 while it lags a create.
        ("GET", ["connectors", n, "status"]) => match w.connectors.get(*n).cloned() {
            Some(_) if w.faults.c_status404 > 0 => {
                w.faults.c_status404 -= 1;
                err(404, &format!("No status found for connector {n}"))
            }
            Some(c) if now < c.created + no_status_window(w) => {
                err(404, &format!("No status found for connector {n}"))
            }
            Some(c) => server::json(200, &status(w, n, &c, &worker)),
            None => err(404, &format!("No status found for connector {n}")),
        },
        ("PUT", ["connectors", n, "config"]) => {
            if !is_json(content_type) {
                err(415, "HTTP 415 Unsupported Media Type")
            } else {
                put_config(w, n, body, base_url, now, &worker)
            }
        }
        ("POST", ["connectors"]) => {
            if !is_json(content_type) {
                err(415, "HTTP 415 Unsupported Media Type")
            } else {
                post(w, body, base_url, now, &worker)
            }
        }
        ("DELETE", ["connectors", n]) => {
            if w.connectors.remove(*n).is_some() {
                w.event("connector-deleted", n, "");
                server::resp(204, "application/json", "")
            } else {
                err(404, &format!("Connector {n} not found"))
            }
        }
        ("POST", ["connectors", n, "restart"]) => {
            if w.connectors.contains_key(*n) {
                server::resp(204, "application/json", "")
            } else {
                err(404, &format!("Connector {n} not found"))
            }
        }
        ("PUT", ["connectors", n, "pause" | "resume"]) => {
            if w.connectors.contains_key(*n) {
                server::resp(202, "application/json", "")
            } else {
                err(404, &format!("Unknown connector {n}"))
            }
        }
        ("PUT", ["connector-plugins", _, "config", "validate"]) => match parse_flat(body) {
            Ok(map) => {
                let errors = validate(w, &map, &worker).err().unwrap_or_default();
                server::json(
                    200,
                    &json!({"name": map.get("connector.class").cloned().flatten().unwrap_or_default(),
                                "error_count": errors.len(),"groups":[],"configs": errors.iter().map(|e| json!({"value":{"errors":[e]}})).collect::<Vec<_>>()}),
                )
            }
            Err(r) => r,
        },
        _ => err(404, "HTTP 404 Not Found"),
    };
    Ok(r)
}

fn stale_window(w: &World) -> std::time::Duration {
    w.scaled(delays::CONNECT_STALE).max(std::time::Duration::from_millis(delays::CONNECT_STALE_MIN_MS))
}

fn no_status_window(w: &World) -> std::time::Duration {
    w.scaled(delays::CONNECT_NO_STATUS)
        .max(std::time::Duration::from_millis(delays::CONNECT_NO_STATUS_MIN_MS))
}

fn is_json(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.to_ascii_lowercase().contains("application/json"))
}

fn list(w: &World, query: &[(String, String)], worker: &PodState, now: Instant) -> Resp {
    let expand: Vec<&str> = query.iter().filter(|(k, _)| k == "expand").map(|(_, v)| v.as_str()).collect();
    if expand.is_empty() {
        let names: Vec<&String> = w.connectors.keys().collect();
        return server::json(200, &json!(names));
    }
    let mut out = serde_json::Map::new();
    for (n, c) in &w.connectors {
        let mut e = json!({});
        if expand.contains(&"status") && now >= c.created + no_status_window(w) {
            e["status"] = status(w, n, c, worker);
        }
        if expand.contains(&"info") {
            e["info"] = info(n, &c.config, true);
        }
        out.insert(n.clone(), e);
    }
    server::json(200, &Value::Object(out))
}

fn stored(w: &World, n: &str, now: Instant) -> Result<StoredConnector, Resp> {
    match w.connectors.get(n) {
        None => Err(err(404, &format!("Connector {n} not found"))),
        Some(c) if now < c.created + stale_window(w) => Err(err(409, STALE_CONFIG)),
        Some(c) => Ok(c.clone()),
    }
}

fn info(n: &str, config: &BTreeMap<String, String>, with_tasks: bool) -> Value {
    let tasks = if with_tasks { json!([{"connector": n, "task": 0}]) } else { json!([]) };
    json!({"name": n, "config": config, "tasks": tasks, "type": "source"})
}

fn status(w: &World, n: &str, c: &StoredConnector, worker: &PodState) -> Value {
    let worker_id = format!("{}:8083", worker.ip);
    let mut task = json!({"id":0,"state":"RUNNING","worker_id": worker_id});
    let failure = if w.faults.task_failed.contains(n) {
        Some("injected fault".to_string())
    } else {
        db_check(w, &resolve(w, &c.config), worker).err()
    };
    if let Some(why) = failure {
        task["state"] = json!("FAILED");
        task["trace"] = json!(format!(
            "org.apache.kafka.connect.errors.ConnectException: {why}\n\tat io.debezium.connector.postgresql.PostgresConnectorTask.start(PostgresConnectorTask.java:145)\n\tat io.debezium.connector.common.BaseSourceTask.start(BaseSourceTask.java:248)\n\tat org.apache.kafka.connect.runtime.AbstractWorkerSourceTask.initializeAndStart(AbstractWorkerSourceTask.java:283)\n"
        ));
    }
    json!({"name": n,"connector":{"state":"RUNNING","worker_id": worker_id},"tasks":[task],"type":"source"})
}

/// 1-based column just after the value of `"key":` in the raw body (Jackson's current location).
fn column_of(raw: &str, key: &str) -> usize {
    let needle = format!("\"{key}\"");
    if let Some(i) = raw.find(&needle) {
        let rest = &raw[i + needle.len()..];
        if let Some(j) = rest.find(['{', '[']) {
            let abs = i + needle.len() + j;
            let line_start = raw[..abs].rfind('\n').map(|p| p + 1).unwrap_or(0);
            return raw[line_start..abs].chars().count() + 2;
        }
    }
    1
}

/// Bind the body as Jackson binds `Map<String,String>`: scalars coerce to String, objects and
/// arrays fail with 500, `null` stays (validation rejects it).
fn parse_flat(body: &Bytes) -> Result<BTreeMap<String, Option<String>>, Resp> {
    let raw = String::from_utf8_lossy(body);
    if raw.trim().is_empty() {
        return Err(err(
            500,
            &format!(
                "No content to map due to end-of-input\n at [Source: {JACKSON_SOURCE}; line: 1, column: 0]"
            ),
        ));
    }
    let v: Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(e) => {
            return Err(err(
                500,
                &format!(
                    "Unexpected character: was expecting a valid JSON value ({e})\n at [Source: {JACKSON_SOURCE}; line: {}, column: {}]",
                    e.line(),
                    e.column()
                ),
            ));
        }
    };
    let Value::Object(m) = v else {
        let tok = if v.is_array() { "Array value (token `JsonToken.START_ARRAY`)" } else { "String value" };
        return Err(err(
            500,
            &format!(
                "Cannot deserialize value of type `java.util.LinkedHashMap<java.lang.String,java.lang.String>` from {tok}\n at [Source: {JACKSON_SOURCE}; line: 1, column: 1]"
            ),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let s = match v {
            Value::String(s) => Some(s),
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(_) | Value::Array(_) => {
                let (what, tok) = if v.is_object() {
                    ("Object value", "START_OBJECT")
                } else {
                    ("Array value", "START_ARRAY")
                };
                return Err(err(
                    500,
                    &format!(
                        "Cannot deserialize value of type `java.lang.String` from {what} (token `JsonToken.{tok}`)\n at [Source: {JACKSON_SOURCE}; line: 1, column: {}] (through reference chain: java.util.LinkedHashMap[\"{k}\"])",
                        column_of(&raw, &k)
                    ),
                ));
            }
        };
        out.insert(k, s);
    }
    Ok(out)
}

fn invalid(errors: &[String]) -> Resp {
    err(
        400,
        &format!(
            "Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`",
            errors.len(),
            errors.join("\n")
        ),
    )
}

/// The mounted secret file the worker could read through `${file:...}`.
fn secret_values(w: &World) -> BTreeMap<String, String> {
    let c = &w.infra.stack.connect;
    let b64 = base64::engine::general_purpose::STANDARD;
    w.store
        .get(&Key::new(Res::Secrets, &c.secret_namespace, &c.secret_name))
        .and_then(|o| o.get("data"))
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| {
                    let bytes = b64.decode(v.as_str()?).ok()?;
                    Some((k.clone(), String::from_utf8_lossy(&bytes).into_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The file path the shipped connector files point their placeholders at.
fn mounted_paths(w: &World) -> Vec<String> {
    let re = placeholder_re();
    let mut out = Vec::new();
    for f in w.infra.connectors() {
        for v in f.config.values() {
            for c in re.captures_iter(v) {
                if let Some(p) = c.get(3) {
                    out.push(p.as_str().to_string());
                }
            }
        }
    }
    out
}

fn placeholder_re() -> regex::Regex {
    regex::Regex::new(r"\$\{([^}]*?):(([^}]*?):)?([^}]*?)\}").expect("static regex")
}

/// The worker's config transformer: `${file:<path>:<key>}` only when the worker declares the
/// `file` provider; unknown aliases and key-less placeholders stay literal.
fn resolve(w: &World, config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    if !w.opts.worker_file_provider {
        return config.clone();
    }
    let secret = secret_values(w);
    let re = placeholder_re();
    config
        .iter()
        .map(|(k, v)| {
            let out = re.replace_all(v, |c: &regex::Captures| {
                let whole = c.get(0).map(|m| m.as_str()).unwrap_or("").to_string();
                let alias = c.get(1).map(|m| m.as_str()).unwrap_or("");
                let path = c.get(3).map(|m| m.as_str()).unwrap_or("");
                let key = c.get(4).map(|m| m.as_str()).unwrap_or("");
                if alias != "file" || path.is_empty() {
                    return whole;
                }
                secret.get(key).cloned().unwrap_or(whole)
            });
            (k.clone(), out.into_owned())
        })
        .collect()
}

/// Connect to the database the config names, as Debezium's `validateConnection` does.
fn db_check(w: &World, cfg: &BTreeMap<String, String>, worker: &PodState) -> Result<(), String> {
    let host = cfg.get("database.hostname").cloned().unwrap_or_default();
    let port = cfg.get("database.port").cloned().unwrap_or_else(|| "5432".into());
    let db = host.split('.').next().unwrap_or("").to_string();
    let Some((user, pass)) = w.db_credentials(&db) else {
        return Err("The connection attempt failed.".into());
    };
    match w.reachable_pod(worker, &db) {
        Some(_) => {}
        None => {
            return Err(format!(
                "Connection to {host}:{port} refused. Check that the hostname and port are correct and that the postmaster is accepting TCP/IP connections."
            ));
        }
    }
    let given_user = cfg.get("database.user").cloned().unwrap_or_default();
    let given_pass = cfg.get("database.password").cloned().unwrap_or_default();
    if given_user != user || given_pass != pass {
        return Err(format!("FATAL: password authentication failed for user \"{given_user}\""));
    }
    Ok(())
}

/// `AbstractHerder.validateConnectorConfig` + Debezium's validation. Err = the error list (400),
/// or a ready 500 response.
fn validate(
    w: &mut World,
    map: &BTreeMap<String, Option<String>>,
    worker: &PodState,
) -> Result<(), Vec<String>> {
    if map.values().any(Option::is_none) {
        return Err(vec!["Null value can not be supplied as the configuration value.".into()]);
    }
    let config: BTreeMap<String, String> =
        map.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_default())).collect();
    let cfg = resolve(w, &config);
    let mut errors = Vec::new();
    for f in ["database.hostname", "database.user", "database.dbname", "topic.prefix"] {
        if cfg.get(f).is_none_or(|v| v.trim().is_empty()) {
            errors.push(format!("The '{f}' value is invalid: A value is required"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // A stale DB pod: the attempt shows in ztunnel's log.
    let db = cfg.get("database.hostname").and_then(|h| h.split('.').next()).unwrap_or("").to_string();
    if w.reachable_pod(worker, &db).is_none()
        && let Some(p) = w.ready_pod(&db).cloned()
        && !p.mesh_ok()
    {
        w.log_hbone_failure("debezium", &p);
    }
    db_check(w, &cfg, worker).map_err(|e| vec![format!("Error while validating connector config: {e}")])
}

fn java_map(m: &BTreeMap<String, Option<String>>) -> String {
    let inner: Vec<String> =
        m.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null"))).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Checks shared by PUT and POST before the DB is contacted. Err is the full response.
fn precheck(w: &World, map: &BTreeMap<String, Option<String>>) -> Result<(), Resp> {
    let Some(Some(class)) = map.get("connector.class") else {
        return Err(err(400, &format!("Connector config {} contains no connector type", java_map(map))));
    };
    if class != POSTGRES_CLASS && class != "PostgresConnector" && class != "Postgres" {
        return Err(err(
            500,
            &format!(
                "Failed to find any class that implements Connector and which name matches {class}, available connectors are: PluginDesc{{klass=class {POSTGRES_CLASS}, name='{POSTGRES_CLASS}', version='3.0.0.Final', encodedVersion=3.0.0.Final, type=source, typeName='source', location='file:/kafka/connect/debezium-connector-postgres/'}}"
            ),
        ));
    }
    // A provider reading a file that is not mounted fails the whole request.
    if w.opts.worker_file_provider {
        let mounted = mounted_paths(w);
        let re = placeholder_re();
        for v in map.values().flatten() {
            for c in re.captures_iter(v) {
                let alias = c.get(1).map(|m| m.as_str()).unwrap_or("");
                if let Some(p) = c.get(3)
                    && alias == "file"
                    && !mounted.iter().any(|m| m == p.as_str())
                {
                    return Err(err(500, &format!("Could not read properties from file {}", p.as_str())));
                }
            }
        }
    }
    Ok(())
}

fn store(
    w: &mut World,
    n: &str,
    map: BTreeMap<String, Option<String>>,
    base_url: &str,
    now: Instant,
) -> Resp {
    let config: BTreeMap<String, String> = map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    let existed = w.connectors.contains_key(n);
    let created = if existed { w.connectors.get(n).map(|c| c.created).unwrap_or(now) } else { now };
    w.connectors.insert(n.to_string(), StoredConnector { config: config.clone(), created });
    w.event("connector-stored", n, if existed { "updated (connector restarted)" } else { "created" });
    if existed {
        server::json(200, &info(n, &config, true))
    } else {
        let mut r = server::json(201, &info(n, &config, false));
        if let Ok(v) = format!("{base_url}/connectors/{n}").parse() {
            r.headers_mut().insert(hyper::header::LOCATION, v);
        }
        r
    }
}

fn put_config(w: &mut World, n: &str, body: &Bytes, base_url: &str, now: Instant, worker: &PodState) -> Resp {
    let mut map = match parse_flat(body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = name_and_validate(w, n, &mut map, worker) {
        return r;
    }
    store(w, n, map, base_url, now)
}

/// What PUT and POST share (`checkAndPutConnectorConfigName`, then `validateConnectorConfig`,
/// kafka-connect.md §1, §4): the body's name must match the URL's (and is inserted when
/// absent), then the config is validated, against the database too.
fn name_and_validate(
    w: &mut World,
    n: &str,
    map: &mut BTreeMap<String, Option<String>>,
    worker: &PodState,
) -> Result<(), Resp> {
    match map.get("name") {
        Some(Some(body_name)) if body_name != n => {
            return Err(err(
                400,
                &format!(
                    "Connector name configuration ({body_name}) doesn't match connector name in the URL ({n})"
                ),
            ));
        }
        _ => {
            map.insert("name".into(), Some(n.to_string()));
        }
    }
    precheck(w, map)?;
    validate(w, map, worker).map_err(|errors| invalid(&errors))
}

fn post(w: &mut World, body: &Bytes, base_url: &str, now: Instant, worker: &PodState) -> Resp {
    let raw = String::from_utf8_lossy(body);
    let v: Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(e) => {
            return err(
                500,
                &format!(
                    "Unexpected character ({e})\n at [Source: {JACKSON_SOURCE}; line: {}, column: {}]",
                    e.line(),
                    e.column()
                ),
            );
        }
    };
    let Some(obj) = v.as_object() else {
        return err(
            500,
            "Cannot construct instance of `org.apache.kafka.connect.runtime.rest.entities.CreateConnectorRequest`",
        );
    };
    for k in obj.keys() {
        if !["name", "config", "initial_state"].contains(&k.as_str()) {
            return err(
                500,
                &format!(
                    "Unrecognized field \"{k}\" (class org.apache.kafka.connect.runtime.rest.entities.CreateConnectorRequest), not marked as ignorable (3 known properties: \"name\", \"config\", \"initial_state\"])\n at [Source: {JACKSON_SOURCE}; line: 1, column: {}] (through reference chain: org.apache.kafka.connect.runtime.rest.entities.CreateConnectorRequest[\"{k}\"])",
                    column_of(&raw, k)
                ),
            );
        }
    }
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("").trim().to_string();
    let Some(config) = obj.get("config") else {
        return err(500, "java.lang.NullPointerException");
    };
    let mut map = match parse_flat(&Bytes::from(config.to_string())) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if name.is_empty() {
        return err(400, "Connector name is null or empty.");
    }
    if let Err(r) = name_and_validate(w, &name, &mut map, worker) {
        return r;
    }
    if w.connectors.contains_key(&name) {
        return err(409, &format!("Connector {name} already exists"));
    }
    store(w, &name, map, base_url, now)
}
