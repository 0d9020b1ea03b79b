//! What the `istioctl` stand-in knows of a release: the images its install deploys for a profile
//! and its flags, the gateway image istiod gives a Gateway's Deployment, and the text `istioctl
//! manifest generate` prints for them. Read from istio/istio at the tags 1.24.0 to 1.30.0, which
//! agree on all of it:
//!
//! - `profile=ambient` (IstioOperator `manifests/profiles/ambient.yaml`: `values.profile: ambient`)
//!   makes each chart merge its `files/profile-ambient.yaml`, which sets `global.variant:
//!   distroless`; the user's `--set`s win over the profile (`templates/zzz_profile.yaml`).
//! - The images: istiod `<hub>/pilot:<tag>-<variant>` (`istio-discovery/templates/deployment.yaml`),
//!   istio-cni `<hub>/install-cni:<tag>-<variant>` (the `istio-tag` helper), ztunnel
//!   `<hub>/ztunnel:<tag>-<variant>` (its globals flattened); no suffix without a variant. istioctl
//!   sets `hub` to `docker.io/istio` and `tag` to its own version.
//! - A Gateway's Deployment comes from the injection template (`files/kube-gateway.yaml`): its
//!   image is `inject.ProxyImage`, `<hub>/<global.proxy.image or proxyv2>:<tag>` with the variant
//!   (`pkg/kube/inject/inject.go`).
//! - `manifest generate` (`operator/cmd/mesh/manifest-generate.go`) prints every object marshalled
//!   by sigs.k8s.io/yaml (keys sorted, go-yaml v2's style), each followed by `\n---\n`, sorted by
//!   kind (CRDs, then ServiceAccounts and ClusterRoles, bindings, validating webhooks, ConfigMaps,
//!   workloads, Services last), then group, kind and name. The objects here are the ones that
//!   carry images or the injection values (with the injection templates' `image:` lines, which
//!   are template text, not images), and a few of the others (the CRDs stand for the ~15).

use serde_json::{Value, json};

/// The hub istioctl's releases are built with.
pub const HUB: &str = "docker.io/istio";

/// An install as istioctl resolves it from its version and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub version: String,
    pub profile: String,
    pub hub: String,
    pub tag: String,
    /// `global.variant` (`distroless`, `debug`, or empty).
    pub variant: String,
    /// `global.proxy.image`.
    pub proxy_image: String,
    /// `values.cni.ambient.reconcileIptablesOnStartup` as set (None: the chart's default).
    pub reconcile_iptables: Option<bool>,
}

/// The profiles the stand-in knows: (name, its components, its variant).
const PROFILES: &[(&str, &[&str], &str)] = &[
    ("ambient", &["istiod", "cni", "ztunnel"], "distroless"),
    ("default", &["istiod", "ingressgateway"], ""),
    ("minimal", &["istiod"], ""),
    ("empty", &[], ""),
];

impl Install {
    /// `istioctl install`/`manifest generate` with these `--set`s (`path=value`), at `version`.
    /// Whether istio-cni's agent reconciles the in-pod rules of the pods it finds at start-up:
    /// `values.cni.ambient.reconcileIptablesOnStartup` as set, else the chart's default, false
    /// through 1.28 and true from 1.29 (istio/istio#58509).
    pub fn reconciles_on_startup(&self) -> bool {
        let minor = self.version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
        self.reconcile_iptables.unwrap_or(minor >= 29)
    }

    pub fn from_sets(version: &str, sets: &[String]) -> Result<Install, String> {
        let mut install = Install {
            version: version.to_string(),
            profile: "default".into(),
            hub: HUB.into(),
            tag: version.to_string(),
            variant: String::new(),
            proxy_image: "proxyv2".into(),
            reconcile_iptables: None,
        };
        let mut variant: Option<String> = None;
        for set in sets {
            let Some((path, value)) = set.split_once('=') else {
                return Err(format!("Error: --set {set}: want path=value"));
            };
            match path {
                "profile" => install.profile = value.to_string(),
                "hub" | "values.global.hub" => install.hub = value.to_string(),
                "tag" | "values.global.tag" => install.tag = value.to_string(),
                "values.global.variant" => variant = Some(value.to_string()),
                "values.global.proxy.image" => install.proxy_image = value.to_string(),
                "values.cni.ambient.reconcileIptablesOnStartup" => {
                    install.reconcile_iptables = Some(value == "true")
                }
                p if ["values.", "meshConfig.", "components.", "namespace", "revision"]
                    .iter()
                    .any(|k| p.starts_with(k)) => {}
                p => {
                    return Err(format!(
                        "Error: generate config: could not set {p}: unknown field \"{}\" in IstioOperatorSpec",
                        p.split('.').next().unwrap_or(p)
                    ));
                }
            }
        }
        let Some((_, _, profile_variant)) = PROFILES.iter().find(|(n, _, _)| *n == install.profile) else {
            return Err(format!(
                "Error: generate config: failed to read profile \"{}\": profile does not exist",
                install.profile
            ));
        };
        install.variant = variant.unwrap_or_else(|| profile_variant.to_string());
        Ok(install)
    }

    /// The ambient profile at `version`, as the healthy world was installed.
    pub fn ambient(version: &str) -> Install {
        Install::from_sets(version, &["profile=ambient".to_string()]).expect("a known profile")
    }

    fn components(&self) -> &'static [&'static str] {
        PROFILES.iter().find(|(n, _, _)| *n == self.profile).map(|(_, c, _)| *c).unwrap_or(&[])
    }

    fn tagged(&self, tag: &str) -> String {
        if self.variant.is_empty() || self.variant == "default" {
            tag.to_string()
        } else {
            format!("{tag}-{}", self.variant)
        }
    }

    fn image(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.hub, self.tagged(&self.tag))
    }

    /// What the install deploys in istio-system: (Deployment?, name, container, image).
    pub fn workloads(&self) -> Vec<(bool, &'static str, &'static str, String)> {
        let mut out = Vec::new();
        for c in self.components() {
            match *c {
                "istiod" => out.push((true, "istiod", "discovery", self.image("pilot"))),
                "cni" => out.push((false, "istio-cni-node", "install-cni", self.image("install-cni"))),
                "ztunnel" => out.push((false, "ztunnel", "istio-proxy", self.image("ztunnel"))),
                "ingressgateway" => {
                    out.push((true, "istio-ingressgateway", "istio-proxy", self.gateway_image()))
                }
                _ => {}
            }
        }
        out
    }

    /// The image of the Deployment istiod creates for a Gateway (`inject.ProxyImage`).
    pub fn gateway_image(&self) -> String {
        if self.proxy_image.contains('/') {
            return self.proxy_image.clone();
        }
        self.image(&self.proxy_image)
    }

    /// Every image the install and its gateways run.
    pub fn images(&self) -> Vec<String> {
        let mut out: Vec<String> = self.workloads().into_iter().map(|(_, _, _, i)| i).collect();
        out.push(self.gateway_image());
        out.dedup();
        out
    }

    /// `istioctl manifest generate`'s stdout.
    pub fn manifest(&self) -> String {
        let mut objects: Vec<Value> = Vec::new();
        let ns = "istio-system";
        let labels = |component: &str| {
            json!({"app.kubernetes.io/part-of": "istio", "app.kubernetes.io/version": self.version,
                   "install.operator.istio.io/owning-resource": "unknown", "operator.istio.io/component": component})
        };
        if !self.components().is_empty() {
            for (plural, group, kind) in [
                ("authorizationpolicies", "security.istio.io", "AuthorizationPolicy"),
                ("destinationrules", "networking.istio.io", "DestinationRule"),
                ("peerauthentications", "security.istio.io", "PeerAuthentication"),
                ("wasmplugins", "extensions.istio.io", "WasmPlugin"),
            ] {
                objects.push(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"labels": labels("Base"), "name": format!("{plural}.{group}")},
                    "spec": {"group": group, "names": {"kind": kind, "listKind": format!("{kind}List"),
                        "plural": plural, "singular": kind.to_lowercase()}, "scope": "Namespaced",
                        "versions": [{"name": "v1", "served": true, "storage": true,
                            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}));
            }
            objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"labels": labels("Base"), "name": "istio-reader-service-account", "namespace": ns}}));
        }
        let container = |name: &str, image: &str, args: Vec<&str>| {
            json!({"name": name, "image": image, "args": args,
                   "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true}})
        };
        for c in self.components() {
            match *c {
                "istiod" => {
                    objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"labels": labels("Pilot"), "name": "istiod", "namespace": ns}}));
                    objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"labels": labels("Pilot"), "name": "istio", "namespace": ns},
                        "data": {"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  proxyMetadata:\n    ISTIO_META_ENABLE_HBONE: \"true\"\ndefaultProviders:\n  metrics:\n  - prometheus\nenablePrometheusMerge: true\nrootNamespace: istio-system\ntrustDomain: cluster.local",
                                 "meshNetworks": "networks: {}"}}));
                    objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"labels": labels("Pilot"), "name": "istio-sidecar-injector", "namespace": ns},
                        "data": {"config": INJECTION_TEMPLATES, "values": self.injection_values()}}));
                    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"labels": labels("Pilot"), "name": "istiod", "namespace": ns},
                        "spec": {"selector": {"matchLabels": {"istio": "pilot"}},
                            "template": {"metadata": {"labels": {"app": "istiod", "istio": "pilot"}},
                                "spec": {"serviceAccountName": "istiod",
                                    "containers": [container("discovery", &self.image("pilot"),
                                        vec!["discovery", "--monitoringAddr=:15014", "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"])]}}}}));
                    objects.push(json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"labels": labels("Pilot"), "name": "istiod", "namespace": ns},
                        "spec": {"ports": [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                                           {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                                           {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017}],
                                 "selector": {"app": "istiod", "istio": "pilot"}}}));
                }
                "cni" => {
                    objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"labels": labels("Cni"), "name": "istio-cni", "namespace": ns}}));
                    let reconcile = self.reconciles_on_startup();
                    objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"labels": labels("Cni"), "name": "istio-cni-config", "namespace": ns},
                        "data": {"AMBIENT_ENABLED": "true", "AMBIENT_RECONCILE_POD_RULES_ON_STARTUP": reconcile.to_string(),
                                 "CNI_NET_DIR": "/etc/cni/net.d", "CURRENT_AGENT_VERSION": self.version}}));
                    objects.push(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                        "metadata": {"labels": labels("Cni"), "name": "istio-cni-node", "namespace": ns},
                        "spec": {"selector": {"matchLabels": {"k8s-app": "istio-cni-node"}},
                            "template": {"metadata": {"labels": {"k8s-app": "istio-cni-node"}},
                                "spec": {"serviceAccountName": "istio-cni",
                                    "containers": [container("install-cni", &self.image("install-cni"),
                                        vec!["--log_output_level=info"])]}}}}));
                }
                "ztunnel" => {
                    objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"labels": labels("Ztunnel"), "name": "ztunnel", "namespace": ns}}));
                    objects.push(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                        "metadata": {"labels": labels("Ztunnel"), "name": "ztunnel", "namespace": ns},
                        "spec": {"selector": {"matchLabels": {"app": "ztunnel"}},
                            "template": {"metadata": {"labels": {"app": "ztunnel"}},
                                "spec": {"serviceAccountName": "ztunnel",
                                    "containers": [container("istio-proxy", &self.image("ztunnel"), vec!["proxy", "ztunnel"])]}}}}));
                }
                "ingressgateway" => {
                    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"labels": labels("IngressGateways"), "name": "istio-ingressgateway", "namespace": ns},
                        "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                            "template": {"metadata": {"labels": {"istio": "ingressgateway"}},
                                "spec": {"containers": [container("istio-proxy", &self.gateway_image(), vec!["proxy", "router"])]}}}}));
                }
                _ => {}
            }
        }
        let order = |o: &Value| {
            let group = o["apiVersion"].as_str().unwrap_or("").rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = o["kind"].as_str().unwrap_or("");
            let rank = match (group, kind) {
                ("apiextensions.k8s.io", "CustomResourceDefinition") => -1000,
                ("", "ServiceAccount") | ("rbac.authorization.k8s.io", "ClusterRole") => 1,
                ("rbac.authorization.k8s.io", "ClusterRoleBinding") => 2,
                ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => 3,
                ("", "ConfigMap") | ("", "Secrets") => 100,
                ("autoscaling", "HorizontalPodAutoscaler") => 1001,
                ("", "Service") => 10000,
                _ => 1000,
            };
            (
                rank,
                group.to_string(),
                kind.to_string(),
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        objects.sort_by_key(order);
        objects.iter().map(|o| format!("{}\n---\n", to_yaml(o))).collect()
    }

    /// The `values` of the istio-sidecar-injector ConfigMap (pretty JSON, as the chart writes it).
    fn injection_values(&self) -> String {
        let values = json!({
            "gateways": {"seccompProfile": {}, "securityContext": {}},
            "global": {"caAddress": "", "hub": self.hub, "imagePullPolicy": "", "istioNamespace": "istio-system",
                       "proxy": {"image": self.proxy_image, "autoInject": "enabled", "clusterDomain": "cluster.local"},
                       "proxy_init": {"image": "proxyv2"}, "tag": self.tag, "variant": self.variant},
            "pilot": {"cni": {"enabled": self.components().contains(&"cni"), "provider": "default"}},
            "revision": "",
            "sidecarInjectorWebhook": {"alwaysInjectSelector": [], "defaultTemplates": [], "enableNamespacesByDefault": false},
        });
        serde_json::to_string_pretty(&values).expect("json")
    }
}

/// An excerpt of the injection templates (`files/injection-template.yaml`, `kube-gateway.yaml`):
/// their `image:` lines are template text.
const INJECTION_TEMPLATES: &str = r#"# defaultTemplates defines the default template to use for pods that do not explicitly specify a template
defaultTemplates: [sidecar]
policy: enabled
templates:
  sidecar: |
    spec:
      containers:
      - name: istio-proxy
      {{- if contains "/" (annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image) }}
        image: "{{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image }}"
      {{- else }}
        image: "{{ .ProxyImage }}"
      {{- end }}
  kube-gateway: |
    apiVersion: apps/v1
    kind: Deployment
    spec:
      template:
        spec:
          containers:
          - name: istio-proxy
          {{- if contains "/" (annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image) }}
            image: {{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image | quote }}
          {{- else }}
            image: "{{ .ProxyImage }}"
          {{- end }}"#;

/// istioctl's `--set`/`-s` values (`--set a=b`, `--set=a=b`), in order.
pub fn sets(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].as_str();
        if (a == "--set" || a == "-s") && i + 1 < argv.len() {
            out.push(argv[i + 1].clone());
            i += 1;
        } else if let Some(v) = a.strip_prefix("--set=").or_else(|| a.strip_prefix("-s=")) {
            out.push(v.to_string());
        }
        i += 1;
    }
    out
}

/// A JSON value as sigs.k8s.io/yaml prints it (go-yaml v2: keys sorted, sequences at their
/// key's indent, multi-line strings as literal blocks, strings quoted only when they must be).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(m, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        out.push_str(&format!("{pad}{}:", plain_or_quoted(k)));
        value(&m[k], indent, out);
    }
}

/// What follows `key:` (or `- `) for a value of a mapping entry at `indent`.
fn value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            seq(a, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

fn seq(a: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for item in a {
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key on the dash's line, the rest under it.
                let mut inner = String::new();
                map(m, indent + 2, &mut inner);
                out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}-\n"));
                seq(inner, indent + 2, out);
            }
            other => out.push_str(&format!("{pad}- {}\n", scalar(other, indent + 2))),
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) if s.contains('\n') => {
            let pad = " ".repeat(indent);
            let chomp = if s.ends_with('\n') { "|" } else { "|-" };
            let body: Vec<String> = s
                .trim_end_matches('\n')
                .lines()
                .map(|l| if l.is_empty() { String::new() } else { format!("{pad}{l}") })
                .collect();
            format!("{chomp}\n{}", body.join("\n"))
        }
        Value::String(s) => plain_or_quoted(s),
    }
}

fn plain_or_quoted(s: &str) -> String {
    let reserved = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"];
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x");
    let needs = s.is_empty()
        || reserved.contains(&s.to_lowercase().as_str())
        || numeric
        || s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.contains('\t');
    if needs { serde_json::to_string(s).expect("a string") } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambient_runs_the_distroless_images_and_default_does_not() {
        let ambient = Install::from_sets(
            "1.26.0",
            &["profile=ambient".into(), "values.cni.ambient.reconcileIptablesOnStartup=true".into()],
        )
        .unwrap();
        assert_eq!(
            ambient.images(),
            [
                "docker.io/istio/pilot:1.26.0-distroless",
                "docker.io/istio/install-cni:1.26.0-distroless",
                "docker.io/istio/ztunnel:1.26.0-distroless",
                "docker.io/istio/proxyv2:1.26.0-distroless"
            ]
        );
        let plain =
            Install::from_sets("1.27.1", &["profile=ambient".into(), "values.global.variant=".into()])
                .unwrap();
        assert_eq!(plain.gateway_image(), "docker.io/istio/proxyv2:1.27.1");
        let default = Install::from_sets("1.26.0", &[]).unwrap();
        assert_eq!(default.images(), ["docker.io/istio/pilot:1.26.0", "docker.io/istio/proxyv2:1.26.0"]);
        assert!(
            Install::from_sets("1.26.0", &["profile=nope".into()]).unwrap_err().contains("does not exist")
        );
        assert!(Install::from_sets("1.26.0", &["foo=bar".into()]).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn the_manifest_is_yaml_documents_sorted_as_istioctl_sorts_them() {
        let text = Install::ambient("1.26.0").manifest();
        let docs: Vec<&str> = text.split("\n---\n").filter(|d| !d.trim().is_empty()).collect();
        let kinds: Vec<String> = docs
            .iter()
            .map(|d| {
                let v: Value = serde_saphyr::from_str(d).unwrap();
                format!("{}/{}", v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap())
            })
            .collect();
        assert!(kinds[0].starts_with("CustomResourceDefinition/"), "{kinds:?}");
        assert_eq!(kinds.last().map(String::as_str), Some("Service/istiod"));
        let at = |k: &str| kinds.iter().position(|x| x == k).unwrap();
        assert!(at("ConfigMap/istio-sidecar-injector") < at("DaemonSet/istio-cni-node"));
        assert!(at("DaemonSet/ztunnel") < at("Deployment/istiod"));
        // The image lines: three real ones, and the templates' text.
        assert_eq!(text.matches("image: docker.io/istio/").count(), 3, "{text}");
        assert!(text.contains("image: \"{{ .ProxyImage }}\""));
        let injector: Value = serde_saphyr::from_str(
            docs[kinds.iter().position(|k| k == "ConfigMap/istio-sidecar-injector").unwrap()],
        )
        .unwrap();
        let values: Value = serde_json::from_str(injector["data"]["values"].as_str().unwrap()).unwrap();
        assert_eq!(values["global"]["variant"], "distroless");
        assert_eq!(values["global"]["tag"], "1.26.0");
    }

    #[test]
    fn yaml_quotes_only_what_it_must() {
        let v = json!({"b": ["x", {"k": "true", "num": 1}], "a": {"s": "a: b", "m": "l1\nl2"}, "e": {}});
        assert_eq!(
            to_yaml(&v),
            "a:\n  m: |-\n    l1\n    l2\n  s: \"a: b\"\nb:\n- x\n- k: \"true\"\n  num: 1\ne: {}\n"
        );
    }
}
