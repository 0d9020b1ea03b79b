//! The stack file's loading and cross-checks, as data.

use super::bootstrap::{check_crds, check_istio_flags};
use super::load::check_connector_name;
use super::validate::find_cycle;
use super::*;

#[test]
fn the_embedded_default_loads() {
    let stack = load(Source::Embedded).unwrap();
    assert_eq!(stack.cluster.name, "bookstore");
    assert_eq!(stack.cluster.context(), "kind-bookstore");
    for port in [30000, 31111, 32000, 32100, 32200, 32300] {
        assert_eq!(stack.cluster.host_port(port).unwrap(), port);
    }
    assert_eq!(stack.workloads.len(), 16);
    assert_eq!(stack.connect.connectors.len(), 2);
    assert_eq!(stack.mesh.timeout, Duration::from_secs(90));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    for bad in ["", "s", "10", "10h", "-1s", "1e999s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn connector_files_must_be_the_wrapper_form() {
    assert!(parse_connector(r#"{"connector.class":"x"}"#).unwrap_err().contains("POST /connectors"));
    assert!(parse_connector(r#"{"name":"a","config":{"connector.class":"x","n":{"a":1}}}"#).is_err());
    assert!(
        parse_connector(r#"{"name":"a","config":{"connector.class":"x","name":"b"}}"#)
            .unwrap_err()
            .contains("does not match")
    );
    let (name, config) =
        parse_connector(r#"{"name":"a","config":{"connector.class":"x","tasks.max":1}}"#).unwrap();
    assert_eq!(name, "a");
    assert_eq!(config["tasks.max"], "1");
}

#[test]
fn a_connector_is_named_after_its_file() {
    assert!(check_connector_name("debezium/connectors/ecom-connector.json", "ecom-connector").is_ok());
    let why = check_connector_name("debezium/connectors/ecom-connector.json", "ecom-v2").unwrap_err();
    assert!(why.contains("ecom-v2") && why.contains("ecom-connector"), "{why}");
}

#[test]
fn cluster_configs_are_checked() {
    assert!(parse_cluster("kind: Pod\napiVersion: v1\n").unwrap_err().contains("not a kind cluster"));
    assert!(parse_cluster(": : :").is_err());
    let c = parse_cluster(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  \
         extraPortMappings:\n  - containerPort: 80\n    hostPort: -1\n",
    )
    .unwrap();
    assert_eq!(c.name, "kind");
    assert_eq!(c.ports[0].host_port, None);
    assert!(c.host_port(80).is_err());
}

#[test]
fn the_secrets_contract_takes_values_only_from_keys_listed_before() {
    let contract = |keys: &str| {
        format!(
            "secrets:\n  - {{name: a, namespace: n, keys: [{{key: U, value: fixed, default: u}}]}}\n  \
             - {{name: b, namespace: n, keys: [{keys}]}}\n"
        )
    };
    let ok = contract("{key: U, value: copy, from: n/a/U}, {key: p, value: properties, keys: [U]}");
    assert_eq!(parse_secrets_contract(&ok).unwrap().len(), 2);
    let unknown = parse_secrets_contract(&contract("{key: U, value: copy, from: n/a/X}")).unwrap_err();
    assert_eq!(unknown, "n/b key U: `from: n/a/X` is not a key of a Secret listed before it");
    let later =
        parse_secrets_contract(&contract("{key: p, value: properties, keys: [U]}, {key: U, value: random}"))
            .unwrap_err();
    assert_eq!(later, "n/b key p: properties key U is not a key listed before it");
}

#[test]
fn a_crd_file_defines_what_the_bootstrap_waits_for() {
    let crd =
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gateways.x}\n";
    assert!(check_crds(crd, &["gateways.x".into()]).is_ok());
    assert!(check_crds(crd, &["httproutes.x".into()]).unwrap_err().contains("defines no CRD httproutes.x"));
    let other = format!("{crd}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n");
    assert!(check_crds(&other, &[]).unwrap_err().contains("is a ConfigMap"));
}

#[test]
fn cycles_are_named() {
    let w = |name: &str, needs: &[&str]| Workload {
        name: name.into(),
        namespace: "ns".into(),
        role: Role::App,
        needs: needs.iter().map(|s| s.to_string()).collect(),
        timeout: Duration::from_secs(1),
        ready_in: DEFAULT_READY_IN,
    };
    let cycle = find_cycle(&[w("a", &["b"]), w("b", &["c"]), w("c", &["a"])]).unwrap();
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert!(find_cycle(&[w("a", &[]), w("b", &["a"])]).is_none());
}

#[test]
fn istios_flags_are_those_install_and_manifest_generate_both_take() {
    let flags = |f: &[&str]| check_istio_flags(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(
        flags(&["--set", "profile=ambient", "-s", "a=b", "--set=c=d", "-f", "x.yaml", "--force"]).is_ok()
    );
    let confirm = flags(&["--set", "profile=ambient", "--skip-confirmation"]).unwrap_err();
    assert!(confirm.contains("`--skip-confirmation` is not a setting both"), "{confirm}");
    assert!(flags(&["--context", "kind-x"]).is_err());
    assert!(flags(&["--set"]).unwrap_err().contains("needs a value"));
    assert!(flags(&["profile=ambient"]).is_err());
    let stack = load(Source::Embedded).unwrap();
    assert_eq!(stack.bootstrap.istio_range.to_string(), "1.25–1.31");
    assert_eq!(stack.bootstrap.gateway_api_version, "v1.4.1");
}

#[test]
fn a_context_other_than_kind_is_refused_unless_the_stack_file_allows_it() {
    let mut stack = load(Source::Embedded).unwrap();
    assert_eq!(stack.target(None).unwrap(), Target::Kind);
    assert_eq!(stack.target(Some("kind-bookstore")).unwrap(), Target::Kind);
    let refused = stack.target(Some("gke_team_dev")).unwrap_err();
    assert_eq!(refused.code(), crate::error::code::PREREQUISITE);
    let text = refused.to_string();
    assert!(text.contains("kube context `gke_team_dev`"), "{text}");
    assert!(text.contains("allow_contexts: [gke_team_dev]"), "{text}");

    let file = "allow_contexts:\n  - k3s-dev\n  - { name: gke_team_dev, bootstrap: true }\n";
    let parsed: super::load::StackFile = serde_saphyr::from_str(
        &Source::Embedded.read("stack.yaml").unwrap().replace("allow_contexts: []\n", file),
    )
    .unwrap();
    assert_eq!(parsed.allow_contexts.len(), 2);
    stack.allow_contexts = vec![
        Allowed { context: "k3s-dev".into(), bootstrap: false },
        Allowed { context: "gke_team_dev".into(), bootstrap: true },
    ];
    let err = super::validate::validate(&stack).unwrap_err().to_string();
    assert!(err.contains("`gke_team_dev` has `bootstrap: true`") && err.contains("- gke_team_dev"), "{err}");
    let Target::Shared(k3s) = stack.target(Some("k3s-dev")).unwrap() else { panic!("shared") };
    assert!(!k3s.bootstrap);
    stack.cluster.target = Target::Shared(k3s);
    assert_eq!(stack.cluster.context(), "k3s-dev");
    assert!(stack.target(Some("k3s-dev2")).is_err(), "exact names only");
    // Every route is reached through the Service holding its node port.
    assert_eq!(
        stack.node_port_service(30000),
        Some(("infra".into(), "bookstore-gateway-nodeport".into(), 80))
    );
    stack.smoke.checks[0].port = 30999;
    let err = stack.target(Some("k3s-dev")).unwrap_err().to_string();
    assert!(err.contains("no Service of the manifests has nodePort 30999"), "{err}");
}
