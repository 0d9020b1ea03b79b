//! Property tests of every parser of outside input: kubectl's JSON (secrets, deployments, pods,
//! restart lines, stderr), each node engine's `ps`, `inspect` and `events` (docker's, podman's,
//! nerdctl's: their fixtures mutated) and `kind get clusters`, the stack file, kind's
//! cluster config, connector files and the secrets contract, Kafka Connect's answers and the
//! smoke judge. Whatever they are fed (any text, any JSON, or a real document with one part
//! replaced by anything) they return a value or an error: they never panic.
//!
//! Inputs are drawn three ways: arbitrary text; arbitrary JSON whose keys are biased towards the
//! ones the parsers look for (so nested shapes get reached); and real documents with one value,
//! anywhere in them, replaced by arbitrary JSON (or one line of a YAML file replaced by arbitrary
//! text), which reaches the deepest branches.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::http::Response;
use crate::stack::{self, Source, Stack};

const KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "generation",
    "status",
    "spec",
    "replicas",
    "observedGeneration",
    "updatedReplicas",
    "availableReplicas",
    "conditions",
    "type",
    "reason",
    "items",
    "data",
    "state",
    "connector",
    "tasks",
    "trace",
    "id",
    "State",
    "Running",
    "Status",
    "HostConfig",
    "PortBindings",
    "HostIp",
    "HostPort",
    "containerStatuses",
    "waiting",
    "message",
    "lastState",
    "terminated",
    "exitCode",
    "restartCount",
    "phase",
    "object",
    "config",
    "error_code",
];

const WORDS: &[&str] = &[
    "RUNNING",
    "FAILED",
    "UNASSIGNED",
    "True",
    "False",
    "Ready",
    "Progressing",
    "ProgressDeadlineExceeded",
    "CrashLoopBackOff",
    "30000/tcp",
    "6443/tcp",
    "127.0.0.1",
    "",
    "0",
    "-1",
    "65536",
    "%%%",
    "8J+UkA==",
    "upstream connect error or disconnect/reset before headers.",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(String::from), 1 => any::<String>()]
}

/// Arbitrary JSON, keys biased towards the ones the parsers read.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `doc` (the root included).
fn pointers(doc: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `doc` with the value at one of its pointers (chosen by `at`) replaced by `with`.
fn mutate(mut doc: Value, at: prop::sample::Index, with: Value) -> Value {
    let mut all = Vec::new();
    pointers(&doc, String::new(), &mut all);
    let pointer = &all[at.index(all.len())];
    match doc.pointer_mut(pointer) {
        Some(slot) => *slot = with,
        None => doc = with,
    }
    doc
}

/// A real document, whole or with one part replaced, or anything at all.
fn around(real: Value) -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(real.clone()),
        6 => (any::<prop::sample::Index>(), value()).prop_map(move |(at, with)| mutate(real.clone(), at, with)),
        2 => value(),
    ]
}

/// Text: anything, or a real text with one line replaced, dropped or duplicated.
fn text_around(real: &'static str) -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = real.lines().collect();
    let n = lines.len();
    prop_oneof![
        1 => Just(real.to_string()),
        2 => any::<String>(),
        6 => (0..n, 0..3u8, any::<String>()).prop_map(move |(i, how, with)| {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            match how {
                0 => out[i] = with,
                1 => {
                    out.remove(i);
                }
                _ => out.insert(i, out[i].clone()),
            }
            out.join("\n")
        }),
    ]
}

fn embedded(rel: &str) -> &'static str {
    stack::EMBEDDED.iter().find(|(name, _)| *name == rel).map(|(_, text)| *text).expect("embedded")
}

fn default_stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| stack::load(Source::Embedded).expect("the default stack loads"))
}

fn sample_deployment() -> Value {
    json!({"metadata": {"name": "ecom-db", "namespace": "ecom", "generation": 3},
           "spec": {"replicas": 1},
           "status": {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                      "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}})
}

fn sample_pods() -> Value {
    json!({"items": [{"metadata": {"name": "a-1"}, "status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}}]})
}

fn sample_inspect() -> Value {
    json!([{"State": {"Running": true, "Status": "running"},
            "HostConfig": {"PortBindings": {"30000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30000"}],
                                             "32300/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32300"}]}}}])
}

fn sample_status() -> Value {
    json!({"name": "ecom-connector", "connector": {"state": "RUNNING", "worker_id": "10.244.0.7:8083"},
           "tasks": [{"id": 0, "state": "FAILED", "worker_id": "10.244.0.7:8083", "trace": "boom\n\tat x"}],
           "type": "source"})
}

/// A value that cannot be mistaken for text in another test's output once registered with the
/// process-wide redactor (decoding a secret registers it).
const PREFIX: &str = "\u{1F510}proptest-";

/// A copy of `infra/` on disk, for `--stack FILE`, shared by the stack-file properties.
fn infra_copy() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        for (rel, text) in stack::EMBEDDED {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    })
    .path()
}

fn fresh_stack_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    infra_copy().join(format!("stack-{}.yaml", N.fetch_add(1, Ordering::Relaxed)))
}

proptest! {
    // ---- kubectl ----------------------------------------------------------------------------

    #[test]
    fn decode_secret_never_panics(
        doc in around(json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"ECOM_DB_USER": "8J+UkA==", "ECOM_DB_PASSWORD": "8J+UkHBhc3M="}})),
        text in any::<String>(),
    ) {
        let keys = ["ECOM_DB_USER", "ECOM_DB_PASSWORD"];
        let _ = crate::kube::decode_secret(&doc.to_string(), &keys);
        let _ = crate::kube::decode_secret(&text, &keys);
    }

    /// Whatever a value holds (quotes, `$`, backslashes, non-ASCII), it decodes byte-exact.
    #[test]
    fn decode_secret_round_trips_any_value(values in prop::collection::btree_map("[A-Z_]{1,12}", any::<String>(), 1..5)) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let values: std::collections::BTreeMap<String, String> =
            values.into_iter().map(|(k, v)| (k, format!("{PREFIX}{v}"))).collect();
        let data: serde_json::Map<String, Value> =
            values.iter().map(|(k, v)| (k.clone(), json!(b64.encode(v.as_bytes())))).collect();
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        let decoded = crate::kube::decode_secret(&json!({"data": data}).to_string(), &keys).expect("decodes");
        for (k, v) in &values {
            prop_assert_eq!(decoded[k].expose(), v.as_str());
        }
    }

    #[test]
    fn deployment_rollout_never_panics(doc in around(sample_deployment())) {
        let _ = crate::kube::deployment_rollout(&doc);
    }

    /// kubectl's first rule: a spec change not yet observed is never done.
    #[test]
    fn an_unobserved_generation_is_never_done(generation in 1i64..1000, behind in 1i64..1000, doc in around(sample_deployment())) {
        let mut doc = doc;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("metadata".into(), json!({"name": "x", "generation": generation}));
            obj.insert("status".into(), json!({"observedGeneration": generation - behind}));
            prop_assert!(matches!(crate::kube::deployment_rollout(&doc), crate::kube::Rollout::Waiting(_)));
        }
    }

    #[test]
    fn pod_states_never_panic(doc in around(sample_pods()), text in any::<String>()) {
        let _ = crate::kube::pod_states(&doc.to_string());
        let _ = crate::kube::pod_states(&text);
    }

    #[test]
    fn restart_lines_and_stderr_never_panic(text in any::<String>()) {
        let _ = crate::kube::restarted(&text);
        let _ = crate::kube::transient(&text);
    }

    #[test]
    fn restarted_names_round_trip(names in prop::collection::vec("[a-z][a-z0-9-]{0,20}", 0..6)) {
        let stdout: String = names.iter().map(|n| format!("deployment.apps/{n} restarted\n")).collect();
        prop_assert_eq!(crate::kube::restarted(&stdout), names);
    }

    #[test]
    fn generations_never_panic(deployment in around(sample_deployment()), list in around(json!({"items": [sample_deployment()]})), text in any::<String>()) {
        let _ = crate::cluster::parse_deployments(&list.to_string());
        let _ = crate::cluster::parse_deployments(&json!({"items": [deployment]}).to_string());
        let _ = crate::cluster::parse_deployments(&text);
        let _ = crate::observe::evidence::parse_ztunnel(&text);
        let _ = crate::observe::evidence::parse_cni(&text);
        let _ = crate::observe::evidence::parse_ztunnel_proxies(&text);
        let _ = crate::observe::evidence::parse_workload_state(&text);
    }

    #[test]
    fn mesh_evidence_never_panics(
        dump in around(json!({"workloadState": {"u1": {"info": {"name": "a", "namespace": "b"}, "state": "Up"}}})),
        line in "[ -~\t]{0,80}(uid|ns|name|pod|namespace)=[ -~]{0,20}[ -~\t]{0,40}",
    ) {
        let _ = crate::observe::evidence::parse_workload_state(&dump.to_string());
        for log in [format!("2026-12-01T09:12:04.5Z\tinfo\tcni-agent\tsending pod add to ztunnel\t{line}"), line.clone()] {
            for l in crate::observe::evidence::parse_cni(&log) {
                let _ = (l.what(), l.about("u", "ns", "name"));
            }
            let _ = crate::observe::evidence::parse_ztunnel_proxies(&format!("pod received, starting proxy {log}"));
        }
    }

    // ---- docker and kind --------------------------------------------------------------------

    #[test]
    fn docker_inspect_never_panics(doc in around(sample_inspect()), text in any::<String>()) {
        let wanted = &default_stack().cluster.ports;
        for input in [doc.to_string(), text] {
            for node in crate::engine::docker::parse_inspect_all(&input).unwrap_or_default() {
                let _ = crate::judge::node::missing(std::slice::from_ref(&node), wanted);
            }
        }
    }

    #[test]
    fn kind_output_never_panics(text in any::<String>()) {
        let names = crate::engine::parse_names(&text);
        prop_assert!(names.iter().all(|n| !n.is_empty() && n.trim() == n));
        let _ = crate::engine::docker::uses_containerd_store(&text);
    }

    // ---- the node engines: each one's output, its fixtures mutated ----------------------------

    #[test]
    fn engine_output_never_panics(
        which in 0..crate::engine::fixtures::ALL.len(),
        at in any::<prop::sample::Index>(),
        with in value(),
        line in any::<String>(),
    ) {
        let (kind, _, text) = crate::engine::fixtures::ALL[which];
        // A JSON document with one part replaced, or one line of JSON lines replaced.
        let mutated = match serde_json::from_str::<Value>(text) {
            Ok(doc) => mutate(doc, at, with).to_string(),
            Err(_) => {
                let mut lines: Vec<String> = text.lines().map(String::from).collect();
                let i = at.index(lines.len().max(1)).min(lines.len().saturating_sub(1));
                if let Some(l) = lines.get_mut(i) {
                    *l = serde_json::from_str::<Value>(l).map(|d| mutate(d, at, with.clone()).to_string()).unwrap_or(line.clone());
                }
                lines.join("\n")
            }
        };
        let wanted = &default_stack().cluster.ports;
        for reader in [crate::engine::Kind::Docker, crate::engine::Kind::Podman, crate::engine::Kind::Nerdctl] {
            let engine = crate::engine::Engine::of(reader);
            for input in [mutated.as_str(), line.as_str()] {
                let _ = engine.parse_ps(input);
                for node in engine.parse_inspect_all(input).unwrap_or_default() {
                    let _ = crate::judge::node::missing(std::slice::from_ref(&node), wanted);
                    let _ = crate::judge::engine::stopped_with_engine(&crate::judge::engine::Stop {
                        state: node.status.clone(),
                        ..Default::default()
                    });
                }
                for l in input.lines() {
                    if let Some(e) = engine.parse_event(l) {
                        prop_assert!(reader != crate::engine::Kind::Podman || e.action != "died", "podman's died is read as die");
                    }
                }
            }
        }
        let _ = kind;
    }

    #[test]
    fn engine_times_round_trip(nanos in 0u128..4_102_444_800_000_000_000) {
        // podman's --since and Docker's: the same instant back.
        if nanos >= 1_000_000_000 {
            prop_assert_eq!(crate::utc::nanos(&crate::engine::podman::since(nanos)), Some(nanos));
        }
        let text = crate::engine::docker::unix_time_nanos(nanos);
        let (s, f) = text.split_once('.').unwrap();
        prop_assert_eq!(s.parse::<u128>().unwrap() * 1_000_000_000 + f.parse::<u128>().unwrap(), nanos);
    }

    #[test]
    fn the_engine_choice_is_always_one_kind_would_make(
        provider in prop::option::of(prop_oneof![Just("docker".to_string()), Just("podman".to_string()), Just("finch".to_string()), any::<String>()]),
        docker in prop::option::of(prop_oneof![Just("Docker version 28.2.2".to_string()), Just("podman version 4.3.1".to_string()), any::<String>()]),
        podman in prop::option::of(prop_oneof![Just("podman version 5.2.0".to_string()), any::<String>()]),
    ) {
        let choice = crate::engine::choice::choose(provider.as_deref(), &mut |p: &str| match p {
            "docker" => docker.clone(),
            "podman" => podman.clone(),
            _ => None,
        });
        prop_assert!(["docker", "podman", "nerdctl", "finch", "nerdctl.lima"].contains(&choice.program.as_str()));
        if docker.as_deref().is_some_and(|d| d.starts_with("Docker version")) && provider.as_deref().is_none_or(|p| p.trim().is_empty()) {
            prop_assert_eq!(choice.kind, crate::engine::Kind::Docker);
        }
    }

    // ---- the stack's files --------------------------------------------------------------------

    #[test]
    fn cluster_config_never_panics(text in text_around(embedded("kind/cluster.yaml"))) {
        if let Ok(cluster) = stack::parse_cluster(&text) {
            for m in &cluster.ports {
                let _ = cluster.host_port(m.container_port);
            }
        }
    }

    #[test]
    fn connector_files_never_panic(
        doc in around(serde_json::from_str(embedded("debezium/connectors/ecom-connector.json")).expect("json")),
        text in text_around(embedded("debezium/connectors/ecom-connector.json")),
    ) {
        let _ = stack::parse_connector(&doc.to_string());
        let _ = stack::parse_connector(&text);
    }

    #[test]
    fn the_secrets_contract_never_panics(text in text_around(embedded("k8s/secrets-contract.yaml"))) {
        let _ = stack::parse_secrets_contract(&text);
    }

    #[test]
    fn durations_never_panic(text in any::<String>(), n in any::<u32>()) {
        let _ = stack::parse_duration(&text);
        prop_assert_eq!(stack::parse_duration(&format!("{n}s")), Some(std::time::Duration::from_secs(n.into())));
        prop_assert_eq!(stack::parse_duration(&format!("{n}ms")), Some(std::time::Duration::from_millis(n.into())));
    }

    // ---- Kafka Connect and the smoke judge ----------------------------------------------------

    #[test]
    fn connector_status_never_panics(doc in around(sample_status())) {
        let _ = crate::connect::State::of(&doc).summary();
    }

    #[test]
    fn connect_messages_never_panic(status in any::<u16>(), body in prop_oneof![
        any::<String>(),
        value().prop_map(|v| v.to_string()),
        any::<String>().prop_map(|t| format!("<html><head><title>{t}</title></head></html>")),
        any::<String>().prop_map(|t| format!("<HTML><title>{t}")),
    ]) {
        let _ = Response { status, body }.summary();
    }

    #[test]
    fn the_smoke_judge_never_panics(
        status in any::<u16>(),
        map in around(json!({"ecom-connector": {"status": sample_status()},
                             "inventory-connector": {"status": sample_status()}})),
        text in any::<String>(),
    ) {
        let stack = default_stack();
        for check in &stack.smoke.checks {
            for body in [map.to_string(), text.clone(), format!("upstream connect error or disconnect/reset before headers. reset reason: {text}")] {
                let _ = crate::judge::routes::judge(stack, check, &Ok(Response { status, body }));
            }
            let _ = crate::judge::routes::judge(stack, check, &Err(text.clone()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The stack file, read from disk as `--stack FILE` reads it (the cluster config, connector
    /// files and secrets contract it names come along).
    #[test]
    fn the_stack_file_never_panics(text in text_around(embedded("stack.yaml"))) {
        let path = fresh_stack_path();
        std::fs::write(&path, &text).expect("write");
        let _ = stack::load(Source::File(path.clone()));
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_errors_not_crashes() {
    for depth in [64, 1_000, 100_000] {
        let open = "[".repeat(depth);
        let _ = stack::parse_cluster(&format!(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: {open}"
        ));
        let _ = stack::parse_secrets_contract(&format!("secrets: {open}"));
        let _ = stack::parse_connector(&format!("{{\"name\": \"a\", \"config\": {open}"));
        let _ = crate::kube::decode_secret(&format!("{{\"data\": {open}"), &["A"]);
        let _ = crate::engine::docker::parse_inspect_all(&open);
    }
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 { "a".to_string() } else { format!("b{}", i - 1) };
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let _ = stack::parse_secrets_contract(&bomb);
    let _ = stack::parse_cluster(&format!("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n{bomb}"));
}
