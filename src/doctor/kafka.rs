//! Root causes 2 and 3: Kafka without a volume, Kafka Connect without the connectors the stack
//! has files for, FAILED connectors (the trace's first line), and connector files whose
//! `${provider:…}` placeholders the worker cannot resolve (the key-less `${file:/path}`, or an
//! alias the worker does not declare: `shared/reference/kafka-connect.md` §4–§5).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::Deployment;
use crate::connect::Connect;
use crate::judge::connectors::Connector;
use crate::observe::{Ctx, Observation};
use crate::stack::Stack;

use super::{Finding, Report, Severity};

/// The Kafka workload of the stack.
pub const KAFKA: &str = "kafka";
/// The config keys `bookstore connectors` sets from the secret (a placeholder there never
/// reaches Connect through bookstore).
pub const INJECTED: [&str; 2] = ["database.user", "database.password"];

/// The connectors as `judge::connectors` judges them (what Connect stores, then runs), against
/// the stack's connector files; Connect's own route (`GET /connectors?expand=status`) is the
/// evidence. `port`: Connect's host port (for the pasteable restart line of a FAILED connector).
pub fn connect_findings(stack: &Stack, facts: &Observation, port: u16) -> (Vec<Finding>, Option<String>) {
    let context = stack.cluster.context();
    let worker = &stack.connect.workload;
    let ns = stack.workload(worker).map(|w| w.namespace.clone()).unwrap_or_default();
    let Some(probe) = crate::judge::routes::connect(&facts.routes) else {
        return (Vec::new(), None);
    };
    let listed = match crate::judge::connectors::listing(&probe.answer) {
        Ok(listed) => listed,
        Err(_) => {
            let f = Finding::error(
                "connect-not-answering",
                worker.as_str(),
                "Kafka Connect's REST API does not list connectors",
            )
            .evidence(probe.line())
            .fix("bookstore up")
            .note(format!(
                "restarts the worker if it is stale, then registers the connectors; if it still does not answer, the worker's log says why: `kubectl --context {context} -n {ns} logs deploy/{worker} --tail=50`"
            ));
            return (vec![f], None);
        }
    };
    let judged = crate::judge::connectors::judge(stack, facts);
    let named = |pick: &dyn Fn(&Connector) -> bool| -> Vec<&crate::stack::Connector> {
        stack.connect.connectors.iter().zip(&judged).filter(|(_, j)| pick(j)).map(|(c, _)| c).collect()
    };
    let mut out = Vec::new();
    let wanted = stack.connect.connectors.len();
    let missing = named(&|j| *j == Connector::Absent);
    if !missing.is_empty() {
        let problem = if listed.is_empty() {
            format!(
                "Kafka Connect has no connectors although the stack has {wanted} connector file(s): Kafka lost its \
                 topics, and Connect's config topic with them (root cause 2)"
            )
        } else {
            format!("Kafka Connect lacks {} of the stack's {wanted} connectors", missing.len())
        };
        let files: Vec<String> = missing.iter().map(|c| format!("{} ({})", c.name, c.file)).collect();
        let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
        out.push(
            Finding::error("connectors-missing", names.join(", "), problem)
                .evidence(probe.line())
                .evidence(format!("connector files: {}", files.join(", ")))
                .fix("bookstore connectors")
                .note("registers each with the secret's credentials (PUT the flat config), then waits for RUNNING"),
        );
    }
    // Only for the pasteable restart line of a FAILED connector.
    let api = Connect::new(port, String::new());
    for (c, j) in stack.connect.connectors.iter().zip(&judged) {
        let name = c.name.as_str();
        let finding = match j {
            Connector::Running | Connector::Absent => continue,
            Connector::Failed(s) => Finding::error("connector-failed", name, format!("connector {name} is FAILED"))
                .evidence(format!("{name}: {}", s.summary()))
                .evidence(format!("(GET {})", probe.url))
                .fix(api.restart_failed_line(name))
                .note("fix the cause the trace names first; `bookstore connectors` re-registers it with the secret's credentials"),
            Connector::NotRunning(s) => Finding::error(
                "connector-not-running",
                name,
                format!("connector {name} is not RUNNING"),
            )
            .evidence(format!("{name}: {}", s.summary()))
            .evidence(format!("(GET {})", probe.url))
            .fix("bookstore connectors")
            .note("registers it again (GET, compare, PUT only if different), then waits for RUNNING"),
            Connector::Differs => Finding::error(
                "connector-config-differs",
                name,
                format!(
                    "Kafka Connect stores connector {name} with another config than {} with the secret's credentials",
                    c.file
                ),
            )
            .evidence(format!("GET {} differs from the desired config", api.get_config(name).url))
            .fix("bookstore connectors")
            .note("PUTs the flat config with the credentials read from the secret"),
            Connector::Unknown(why) => Finding::error(
                "connector-state-unknown",
                name,
                format!("the state of connector {name} is not known: {why}"),
            )
            .evidence(probe.line())
            .fix("bookstore connectors"),
        };
        out.push(finding);
    }
    let running = judged.iter().filter(|j| j.running()).count();
    let pass = out.is_empty().then(|| format!("Kafka Connect: {running} of {wanted} connectors RUNNING"));
    (out, pass)
}

/// Kafka's pod template has no PVC-backed volume: its topics live and die with the container.
pub fn kafka_volume_finding(stack: &Stack, kafka: &Deployment) -> Option<Finding> {
    if !kafka.claims.is_empty() {
        return None;
    }
    let context = stack.cluster.context();
    let fix = match manifest_of(stack, &kafka.namespace, &kafka.name) {
        Some((path, doc))
            if !crate::cluster::parse_deployments(&serde_json::json!({"items": [doc]}).to_string())
                .map(|d| d[0].claims.is_empty())
                .unwrap_or(true) =>
        {
            format!(
                "kubectl --context {context} apply --server-side --field-manager=bookstore -f {path} && bookstore connectors"
            )
        }
        _ => format!(
            "give deployment {}/{} a PersistentVolumeClaim for its log dir (KAFKA_LOG_DIRS), then `bookstore connectors`",
            kafka.namespace, kafka.name
        ),
    };
    Some(
        Finding::warning(
            "kafka-no-volume",
            format!("{}/{}", kafka.namespace, kafka.name),
            "Kafka keeps its topics on the container's own disk: every restart of its pod (every Docker \
             restart) loses them, Connect's config topic with them, and so the connectors (root cause 2)",
        )
        .evidence(format!(
            "deployment {}/{}: spec.template.spec.volumes has no persistentVolumeClaim",
            kafka.namespace, kafka.name
        ))
        .fix(fix)
        .note("Kafka restarts onto the empty volume once (topics lost one last time); `bookstore connectors` registers the connectors again"),
    )
}

/// A `${alias:[path:]key}` placeholder (ConfigTransformer's pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    pub text: String,
    pub alias: String,
    pub path: String,
    pub key: String,
}

pub fn placeholders(value: &str) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        if let Some((alias, tail)) = inner.split_once(':') {
            let (path, key) = match tail.split_once(':') {
                Some((p, k)) => (p, k),
                None => ("", tail),
            };
            out.push(Placeholder {
                text: format!("${{{inner}}}"),
                alias: alias.to_string(),
                path: path.to_string(),
                key: key.to_string(),
            });
        }
        rest = &after[end + 1..];
    }
    out
}

/// The provider class an alias maps to, by its worker env (`CONNECT_CONFIG_PROVIDERS_<ALIAS>_CLASS`)
/// or, for the conventional aliases, by convention.
fn provider_class(alias: &str, env: Option<&BTreeMap<String, Option<String>>>) -> Option<String> {
    let declared = env
        .and_then(|e| e.get(&format!("CONNECT_CONFIG_PROVIDERS_{}_CLASS", alias.to_uppercase())))
        .cloned()
        .flatten();
    declared.or_else(|| {
        match alias {
            "file" => Some("org.apache.kafka.common.config.provider.FileConfigProvider"),
            "dir" => Some("org.apache.kafka.common.config.provider.DirectoryConfigProvider"),
            "env" => Some("org.apache.kafka.common.config.provider.EnvVarConfigProvider"),
            _ => None,
        }
        .map(String::from)
    })
}

/// `FileConfigProvider` and `DirectoryConfigProvider` read `${alias:<path>:<key>}`; without a
/// path the whole text is taken as a key of no file and the placeholder stays unresolved.
fn needs_path(class: &str) -> bool {
    class.ends_with("FileConfigProvider") || class.ends_with("DirectoryConfigProvider")
}

/// What the worker declares: `Some(aliases)` when its Deployment says so plainly, `None` when it
/// cannot be known (the value comes from elsewhere).
pub fn declared_providers(worker: &Deployment) -> Option<Vec<String>> {
    match worker.env.get("CONNECT_CONFIG_PROVIDERS") {
        Some(Some(list)) => {
            Some(list.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect())
        }
        Some(None) => None,
        None if worker.env_from.is_empty() => Some(Vec::new()),
        None => None,
    }
}

/// The connector files' placeholders against the worker (`None`: its Deployment is unknown).
pub fn placeholder_findings(stack: &Stack, worker: Option<&Deployment>) -> Vec<Finding> {
    let env = worker.map(|w| &w.env);
    let declared = worker.and_then(declared_providers);
    let mut keyless: Vec<(String, String)> = Vec::new(); // (evidence, fix part)
    let mut keyless_severity = Severity::Warning;
    let mut keyless_subjects = BTreeSet::new();
    let mut undeclared: BTreeMap<String, Vec<String>> = BTreeMap::new(); // alias → evidence
    let mut undeclared_severity = Severity::Warning;
    let mut undeclared_subjects = BTreeSet::new();
    for c in &stack.connect.connectors {
        let file = &c.name;
        for (key, value) in &c.config {
            for p in placeholders(value) {
                let injected = INJECTED.contains(&key.as_str());
                let class = provider_class(&p.alias, env);
                if p.path.is_empty() && class.as_deref().is_some_and(needs_path) {
                    let wanted_key = match key.as_str() {
                        "database.user" => c.user_key.clone(),
                        "database.password" => c.password_key.clone(),
                        _ => "<KEY>".to_string(),
                    };
                    keyless.push((
                        format!("{file}: \"{key}\": \"{}\"", p.text),
                        format!(
                            "set \"{key}\" to \"${{{}:{}:{wanted_key}}}\" in {}",
                            p.alias,
                            p.key,
                            stack.source.describe(&c.file)
                        ),
                    ));
                    keyless_subjects.insert(c.name.clone());
                    if !injected {
                        keyless_severity = Severity::Error;
                    }
                }
                if let Some(declared) = &declared
                    && !declared.contains(&p.alias)
                {
                    undeclared
                        .entry(p.alias.clone())
                        .or_default()
                        .push(format!("{file}: \"{key}\" uses {}", p.text));
                    undeclared_subjects.insert(c.name.clone());
                    if !injected {
                        undeclared_severity = Severity::Error;
                    }
                }
            }
        }
    }
    let inline = "bookstore injects database.user/password from the secret, so `bookstore connectors` works; \
                  registering the file as it is (e.g. `curl -d @file`) would fail";
    let mut out = Vec::new();
    if !keyless.is_empty() {
        let mut f = Finding::new(
            "connector-placeholder-keyless",
            keyless_severity,
            keyless_subjects.into_iter().collect::<Vec<_>>().join(", "),
            "connector files use the key-less `${file:/path}` placeholder: FileConfigProvider reads it as \
             key \"/path\" of no file, so it is never resolved and Connect uses the literal text \
             (kafka-connect.md §5)",
        )
        .evidence_lines(keyless.iter().map(|(e, _)| e.clone()))
        .fix(keyless.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>().join("; "));
        if keyless_severity == Severity::Warning {
            f = f.note(inline);
        }
        out.push(f);
    }
    if let Some(worker) = worker
        && !undeclared.is_empty()
    {
        let declared = declared.clone().unwrap_or_default();
        let shown = if declared.is_empty() {
            "CONNECT_CONFIG_PROVIDERS is not set".to_string()
        } else {
            format!("CONNECT_CONFIG_PROVIDERS={}", declared.join(","))
        };
        let aliases: Vec<String> = undeclared.keys().cloned().collect();
        let mut evidence: Vec<String> = undeclared.values().flatten().cloned().collect();
        evidence.push(format!("deployment {}/{}: {shown}", worker.namespace, worker.name));
        let context = stack.cluster.context();
        let manifest = manifest_of(stack, &worker.namespace, &worker.name).filter(|(_, doc)| {
            let d = crate::cluster::parse_deployments(&serde_json::json!({"items": [doc]}).to_string());
            d.ok()
                .and_then(|d| d.into_iter().next())
                .and_then(|d| declared_providers(&d))
                .is_some_and(|have| aliases.iter().all(|a| have.contains(a)))
        });
        let fix = match manifest {
            Some((path, _)) => {
                format!("kubectl --context {context} apply --server-side --field-manager=bookstore -f {path}")
            }
            None => {
                let mut all = declared.clone();
                all.extend(aliases.iter().cloned());
                let mut vars = vec![format!("CONNECT_CONFIG_PROVIDERS={}", all.join(","))];
                for a in &aliases {
                    let class =
                        provider_class(a, None).unwrap_or_else(|| "<its ConfigProvider class>".into());
                    vars.push(format!("CONNECT_CONFIG_PROVIDERS_{}_CLASS={class}", a.to_uppercase()));
                }
                format!(
                    "kubectl --context {context} -n {} set env deployment/{} {}",
                    worker.namespace,
                    worker.name,
                    vars.join(" ")
                )
            }
        };
        let mut f = Finding::new(
            "connector-provider-undeclared",
            undeclared_severity,
            undeclared_subjects.into_iter().collect::<Vec<_>>().join(", "),
            format!(
                "connector files use the config provider(s) {} that the Connect worker does not declare: \
                 Connect leaves such placeholders as literal text (kafka-connect.md §4)",
                aliases.join(", ")
            ),
        )
        .evidence_lines(evidence)
        .fix(fix);
        f = f.note(if undeclared_severity == Severity::Warning {
            inline.to_string()
        } else {
            "the worker restarts with the new env; the provider's file must be mounted in its pod".to_string()
        });
        out.push(f);
    }
    out
}

/// The stack manifest that defines this Deployment: (a path to pass to `kubectl apply -f`, the
/// Deployment document as JSON).
pub fn manifest_of(stack: &Stack, namespace: &str, name: &str) -> Option<(String, Value)> {
    let doc = stack
        .bootstrap
        .tiers
        .iter()
        .flat_map(|t| &t.docs)
        .find(|d| d.deployment() == Some((namespace, name)))?;
    let value = serde_saphyr::from_str::<Value>(&doc.text).ok()?;
    let path = match &stack.source {
        crate::stack::Source::Embedded => format!("infra/{}", doc.file),
        crate::stack::Source::File(_) => stack.source.describe(&doc.file),
    };
    Some((path, value))
}

pub fn check(ctx: &Ctx, facts: &Observation, report: &mut Report) {
    let stack = ctx.stack;
    match stack
        .workloads
        .iter()
        .find(|w| w.name == KAFKA)
        .and_then(|w| facts.deployment(&w.namespace, &w.name))
    {
        Some(kafka) => match kafka_volume_finding(stack, kafka) {
            Some(f) => report.add(f),
            None => {
                report.pass(&format!("{KAFKA} keeps its topics on a volume ({})", kafka.claims.join(", ")))
            }
        },
        None => {
            report.skip(&format!("Kafka's volume: no deployment named {KAFKA} in the stack or the cluster"))
        }
    }
    check_files(ctx, Some(facts), report);
    let probe = crate::judge::routes::connect(&facts.routes);
    match (probe, stack.cluster.host_port(stack.connect.port)) {
        (Some(_), Ok(port)) => {
            let (findings, pass) = connect_findings(stack, facts, port);
            if let Some(pass) = pass {
                report.pass(&pass);
            }
            report.add_all(findings);
        }
        _ => report.skip("the connectors: the stack has no Connect route with a fixed host port"),
    }
}

/// The connector files (against the worker's Deployment when the cluster was read).
pub fn check_files(ctx: &Ctx, facts: Option<&Observation>, report: &mut Report) {
    let stack = ctx.stack;
    let worker = facts.and_then(|f| {
        let w = stack.workload(&stack.connect.workload)?;
        f.deployment(&w.namespace, &w.name)
    });
    let found = placeholder_findings(stack, worker);
    if found.is_empty() {
        let against = if worker.is_some() { " and the worker's config providers" } else { "" };
        report.pass(&format!("connector files: placeholders agree with their providers{against}"));
    }
    report.add_all(found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;
    use crate::stack::{Source, load};

    fn worker(env: &[(&str, &str)]) -> Deployment {
        Deployment {
            namespace: "infra".into(),
            name: "debezium".into(),
            env: env.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
            ..Deployment::default()
        }
    }

    #[test]
    fn placeholders_follow_connects_pattern() {
        let p = placeholders("${file:/opt/c.properties:ECOM_DB_USER}");
        assert_eq!(
            (p[0].alias.as_str(), p[0].path.as_str(), p[0].key.as_str()),
            ("file", "/opt/c.properties", "ECOM_DB_USER")
        );
        let p = placeholders("x ${file:/opt/secret} and ${env:HOME}");
        assert_eq!((p[0].path.as_str(), p[0].key.as_str()), ("", "/opt/secret"));
        assert_eq!((p[1].alias.as_str(), p[1].key.as_str()), ("env", "HOME"));
        assert!(placeholders("plain, {no} ${placeholder").is_empty());
    }

    #[test]
    fn the_shipped_files_need_a_worker_that_declares_file() {
        let stack = load(Source::Embedded).unwrap();
        assert!(
            placeholder_findings(&stack, None).is_empty(),
            "the shipped files use ${{file:<path>:<key>}}"
        );
        let declared = worker(&[("CONNECT_CONFIG_PROVIDERS", "file")]);
        assert!(placeholder_findings(&stack, Some(&declared)).is_empty());
        let found = placeholder_findings(&stack, Some(&worker(&[])));
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.id, "connector-provider-undeclared");
        assert_eq!(
            f.severity,
            Severity::Warning,
            "only database.user/password use it: bookstore injects those"
        );
        assert!(f.evidence.last().unwrap().contains("CONNECT_CONFIG_PROVIDERS is not set"));
        assert_eq!(
            f.fix,
            "kubectl --context kind-bookstore apply --server-side --field-manager=bookstore -f infra/k8s/25-cdc/debezium.yaml"
        );
    }

    #[test]
    fn a_keyless_placeholder_is_named_with_the_key_it_needs() {
        let mut stack = load(Source::Embedded).unwrap();
        let c = &mut stack.connect.connectors[0];
        c.config.insert("database.password".into(), "${file:/opt/secrets/ecom.properties}".into());
        let found = placeholder_findings(&stack, Some(&worker(&[("CONNECT_CONFIG_PROVIDERS", "file")])));
        assert_eq!(found[0].id, "connector-placeholder-keyless");
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0].fix.contains("\"${file:/opt/secrets/ecom.properties:ECOM_DB_PASSWORD}\""),
            "{}",
            found[0].fix
        );
        let c = &mut stack.connect.connectors[0];
        c.config.insert("database.dbname".into(), "${file:/opt/secrets/db}".into());
        let found = placeholder_findings(&stack, None);
        assert_eq!(found[0].severity, Severity::Error, "a key bookstore does not inject");
        // `env` needs no path.
        let c = &mut stack.connect.connectors[0];
        c.config.insert("database.dbname".into(), "${env:DB}".into());
        c.config.remove("database.password");
        let found = placeholder_findings(&stack, Some(&worker(&[("CONNECT_CONFIG_PROVIDERS", "file,env")])));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn connectors_missing_failed_or_running() {
        use crate::observe::Stored;
        use crate::observe::routes::Probe;
        let stack = load(Source::Embedded).unwrap();
        let ok = |body: &str| Ok(Response { status: 200, body: body.into() });
        let check = stack.smoke.checks.iter().find(|c| c.connectors_running).unwrap().clone();
        let facts = |answer: Result<Response, String>, stored: Stored| {
            let mut obs = Observation::of(Vec::new(), Vec::new());
            obs.routes = vec![Probe {
                check: check.clone(),
                url: "http://127.0.0.1:32300/connectors?expand=status".into(),
                answer,
            }];
            obs.connectors = vec![stored.clone(), stored];
            obs
        };
        let (found, pass) = connect_findings(&stack, &facts(ok("{}"), Stored::Absent), 32300);
        assert!(pass.is_none());
        assert_eq!(found[0].id, "connectors-missing");
        assert_eq!(found[0].evidence[0], "GET http://127.0.0.1:32300/connectors?expand=status → 200 {}");
        assert_eq!(found[0].fix, "bookstore connectors");
        let status = r#"{"ecom-connector":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"id":0,"state":"FAILED","trace":"org.apache.kafka.connect.errors.ConnectException: boom\n\tat x"}]}},
                        "inventory-connector":{"status":{"connector":{"state":"RUNNING"},"tasks":[{"id":0,"state":"RUNNING"}]}}}"#;
        let (found, _) = connect_findings(&stack, &facts(ok(status), Stored::Matches), 32300);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "connector-failed");
        assert_eq!(
            found[0].evidence[0],
            "ecom-connector: task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: boom"
        );
        assert_eq!(
            found[0].fix,
            "curl -sS -X POST 'http://127.0.0.1:32300/connectors/ecom-connector/restart?includeTasks=true&onlyFailed=true'"
        );
        let (found, _) = connect_findings(&stack, &facts(ok(status), Stored::Differs), 32300);
        assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), ["connector-config-differs"; 2]);
        let (found, _) =
            connect_findings(&stack, &facts(Err("connection refused".into()), Stored::Matches), 32300);
        assert_eq!(found[0].id, "connect-not-answering");
        assert!(found[0].evidence[0].ends_with("→ no answer (connection refused)"));
    }

    #[test]
    fn kafka_without_a_claim_points_at_the_manifest_that_has_one() {
        let stack = load(Source::Embedded).unwrap();
        let kafka = Deployment { namespace: "infra".into(), name: "kafka".into(), ..Deployment::default() };
        let f = kafka_volume_finding(&stack, &kafka).unwrap();
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(
            f.fix,
            "kubectl --context kind-bookstore apply --server-side --field-manager=bookstore -f infra/k8s/20-infra/kafka.yaml && bookstore connectors"
        );
        let on_volume = Deployment { claims: vec!["kafka-data".into()], ..kafka };
        assert!(kafka_volume_finding(&stack, &on_volume).is_none());
    }
}
