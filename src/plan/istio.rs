//! Istio as istioctl tells it, judged before the bootstrap changes anything: which release it is
//! (`istioctl version --remote=false`) against the range the stack was tested with, and which
//! images its install and its gateways run (`istioctl manifest generate` with the install's own
//! flags). Pure: `observe::istio` reads, this judges.
//!
//! The images are never a hand-kept list: `profile=ambient` sets `global.variant: distroless`
//! (istio/istio `manifests/helm-profiles/ambient.yaml`, copied into each chart's
//! `files/profile-ambient.yaml`), so istiod, istio-cni and ztunnel run `<hub>/<image>:<tag>-distroless`
//! (the charts' image templates). A Gateway's Deployment is not in the manifest: istiod renders
//! it from the injection template (`kube-gateway.yaml`), with the image of `inject.ProxyImage`:
//! `<hub>/<global.proxy.image>:<tag>` with the variant of the mesh's `defaultConfig.image.imageType`,
//! else `global.variant` (`pkg/kube/inject/inject.go`); both come from the manifest too (the
//! `istio-sidecar-injector` ConfigMap's `values`, the `istio` ConfigMap's `mesh`).

use std::fmt;

use serde_json::Value;

use crate::error::Error;

/// An istioctl release (`1.26.0`, `1.27.0-beta.1`, a dev build's `1.28-dev`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    /// As istioctl printed it.
    pub text: String,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `istioctl version --remote=false`'s client version (`client version: 1.26.0`, or a bare
/// `1.26.0`, as `--short` prints it).
pub fn version(stdout: &str) -> Option<Version> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let text = line.rsplit(':').next()?.trim();
    let (major, minor) = major_minor(text)?;
    Some(Version { major, minor, text: text.to_string() })
}

/// `1.26.0-beta.1` → (1, 26).
fn major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The Istio releases the stack was tested with (the stack's data: `stack::IstioRange`).
pub use crate::stack::IstioRange as Range;

/// The judgement of istioctl's release: inside the tested range, or exit 3 before anything is
/// created, with the range and how to get an istioctl that fits. `printed` is what istioctl
/// printed, `gateway_api` the pinned Gateway API release (the range's reason).
pub fn check(printed: &str, range: &Range, gateway_api: &str) -> Result<Version, Error> {
    let get = format!(
        "install an istioctl from {}.{}.0 to {}.{}.x (the releases are listed at \
         https://github.com/istio/istio/releases): `curl -L https://istio.io/downloadIstio | \
         ISTIO_VERSION=<that release> sh -`, then put `istio-<that release>/bin` first on PATH and run \
         `bookstore up` again (to use another release, test it and widen bootstrap.gateway_api.istio \
         in the stack file)",
        range.from.0, range.from.1, range.to.0, range.to.1
    );
    let Some(v) = version(printed) else {
        let first = printed.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("nothing");
        return Err(Error::prerequisite(
            format!(
                "cannot tell istioctl's release: `istioctl version --remote=false` printed `{first}`; \
                 bookstore is tested with Istio {range}; nothing was created"
            ),
            get,
        ));
    };
    if range.contains(v.major, v.minor) {
        return Ok(v);
    }
    let why = if (v.major, v.minor) < range.from {
        "older: values.cni.ambient.reconcileIptablesOnStartup exists from 1.25 (an older istioctl \
         ignores it silently, and the mesh is not re-applied after a node restart)"
            .to_string()
    } else {
        format!(
            "newer than the releases tested with the Gateway API {gateway_api} CRDs this stack installs \
             (istiod and the Gateway API CRDs must fit: istio/istio#59443)"
        )
    };
    Err(Error::prerequisite(
        format!("istioctl {v} is outside the tested range Istio {range}, {why}; nothing was created"),
        get,
    ))
}

/// What Istio runs, as `istioctl manifest generate` with the install's flags says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Images {
    /// The install's workloads (`deployment/istiod`, …) and their images, in the manifest's order.
    pub install: Vec<(String, String)>,
    /// The image of the Deployment istiod creates for a Gateway.
    pub gateway: Option<String>,
}

impl Images {
    /// Every image, the install's first, each once.
    pub fn all(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for image in self.install.iter().map(|(_, i)| i).chain(&self.gateway) {
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
        out
    }

    /// The install's images, each once.
    pub fn installed(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, image) in &self.install {
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
        out
    }
}

/// The images of `istioctl manifest generate`'s output: every workload's pod template, and the
/// gateway image istiod's injection derives from the same values. Only the documents that can
/// say either are parsed (the CRDs are most of the text).
pub fn images(manifest: &str) -> Result<Images, String> {
    let mut out = Images::default();
    let mut values: Option<Value> = None;
    let mut mesh: Option<Value> = None;
    for chunk in documents(manifest) {
        let kind = chunk.lines().find_map(|l| l.strip_prefix("kind:")).map(str::trim).unwrap_or("");
        let workload = matches!(kind, "Deployment" | "DaemonSet" | "StatefulSet" | "Job");
        if !workload && kind != "ConfigMap" {
            continue;
        }
        let doc: Value = serde_saphyr::from_str(chunk).map_err(|e| format!("a {kind}: {e}"))?;
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if workload {
            let spec = doc.pointer("/spec/template/spec");
            for list in ["initContainers", "containers"] {
                for c in spec.and_then(|s| s.get(list)).and_then(Value::as_array).into_iter().flatten() {
                    if let Some(image) = c.get("image").and_then(Value::as_str) {
                        out.install.push((format!("{}/{name}", kind.to_lowercase()), image.to_string()));
                    }
                }
            }
        } else if name == "istio-sidecar-injector" {
            let text = doc.pointer("/data/values").and_then(Value::as_str).unwrap_or("{}");
            values = Some(
                serde_json::from_str(text).map_err(|e| format!("istio-sidecar-injector's values: {e}"))?,
            );
        } else if name == "istio" {
            let text = doc.pointer("/data/mesh").and_then(Value::as_str).unwrap_or("{}");
            mesh =
                Some(serde_saphyr::from_str(text).map_err(|e| format!("the istio ConfigMap's mesh: {e}"))?);
        }
    }
    if out.install.is_empty() {
        return Err("it deploys no workload (no Deployment or DaemonSet with an image)".into());
    }
    let image_type =
        mesh.as_ref().and_then(|m| m.pointer("/defaultConfig/image/imageType")).and_then(Value::as_str);
    out.gateway = values.as_ref().and_then(|v| proxy_image(v, image_type));
    Ok(out)
}

/// The documents of a multi-document YAML stream (istioctl separates them with `---` lines).
fn documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&text[start..at]);
            start = at + line.len();
        }
        at += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
}

/// istiod's proxy image from the injection values (`inject.ProxyImage`): `global.proxy.image` as
/// is when it names a repository, else `<global.hub>/<it, or proxyv2>:<global.tag>` with the image
/// type (the mesh's `defaultConfig.image.imageType`, else `global.variant`) as the tag's suffix.
fn proxy_image(values: &Value, image_type: Option<&str>) -> Option<String> {
    let global = values.get("global")?;
    let text = |path: &str| global.pointer(path).and_then(Value::as_str).filter(|s| !s.is_empty());
    let name = text("/proxy/image").unwrap_or("proxyv2");
    if name.contains('/') {
        return Some(name.to_string());
    }
    let hub = text("/hub")?;
    let tag = match global.get("tag")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let variant = image_type.filter(|t| !t.is_empty()).or(text("/variant")).unwrap_or("");
    Some(format!("{hub}/{name}:{}", with_variant(&tag, variant)))
}

/// `updateImageTypeIfPresent`: a known variant suffix of the tag replaced by this one (`default`:
/// none).
fn with_variant(tag: &str, variant: &str) -> String {
    if variant.is_empty() {
        return tag.to_string();
    }
    let bare = ["distroless", "debug"].iter().find_map(|k| tag.strip_suffix(&format!("-{k}"))).unwrap_or(tag);
    if variant == "default" { bare.to_string() } else { format!("{bare}-{variant}") }
}

/// What the planner's tests plan with: Istio 1.26.0's ambient images.
#[cfg(test)]
pub(crate) fn sample() -> Images {
    images(AMBIENT).expect("the sample parses")
}

#[cfg(test)]
/// The shape of `istioctl manifest generate --set profile=ambient` (1.26.0): the objects
/// sorted and marshalled as istioctl does, the injection templates a block of text whose
/// `image:` lines are not images.
const AMBIENT: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: wasmplugins.extensions.istio.io
spec:
  group: extensions.istio.io

---
apiVersion: v1
data:
  config: |-
    templates:
      kube-gateway: |
        spec:
          containers:
          - name: istio-proxy
          {{- if contains "/" (annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image) }}
            image: {{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy.image | quote }}
          {{- else }}
            image: "{{ .ProxyImage }}"
          {{- end }}
  values: |-
    {
      "global": {
        "hub": "docker.io/istio",
        "proxy": {
          "image": "proxyv2"
        },
        "tag": "1.26.0",
        "variant": "distroless"
      }
    }
kind: ConfigMap
metadata:
  name: istio-sidecar-injector
  namespace: istio-system

---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: istio-cni-node
  namespace: istio-system
spec:
  template:
    spec:
      containers:
      - image: docker.io/istio/install-cni:1.26.0-distroless
        name: install-cni

---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ztunnel
  namespace: istio-system
spec:
  template:
    spec:
      containers:
      - image: docker.io/istio/ztunnel:1.26.0-distroless
        name: istio-proxy

---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod
  namespace: istio-system
spec:
  template:
    spec:
      containers:
      - image: docker.io/istio/pilot:1.26.0-distroless
        name: discovery

---
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_are_the_manifests_and_the_gateways_from_the_injection_values() {
        let found = images(AMBIENT).unwrap();
        assert_eq!(
            found.install,
            [
                (
                    "daemonset/istio-cni-node".to_string(),
                    "docker.io/istio/install-cni:1.26.0-distroless".to_string()
                ),
                ("daemonset/ztunnel".into(), "docker.io/istio/ztunnel:1.26.0-distroless".into()),
                ("deployment/istiod".into(), "docker.io/istio/pilot:1.26.0-distroless".into()),
            ]
        );
        assert_eq!(found.gateway.as_deref(), Some("docker.io/istio/proxyv2:1.26.0-distroless"));
        assert_eq!(found.all().len(), 4);
        // The mesh's image type wins over the variant; `default` is no suffix.
        let mesh = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\ndata:\n  mesh: |-\n    defaultConfig:\n      image:\n        imageType: default\n";
        let plain = images(&format!("{AMBIENT}{mesh}")).unwrap();
        assert_eq!(plain.gateway.as_deref(), Some("docker.io/istio/proxyv2:1.26.0"));
        assert!(images("kind: ConfigMap\nmetadata: {name: x}\n").unwrap_err().contains("no workload"));
    }

    #[test]
    fn variants_replace_a_known_suffix() {
        assert_eq!(with_variant("1.26.0", "distroless"), "1.26.0-distroless");
        assert_eq!(with_variant("1.26.0-debug", "distroless"), "1.26.0-distroless");
        assert_eq!(with_variant("1.26.0-distroless", "default"), "1.26.0");
        assert_eq!(with_variant("1.26.0", ""), "1.26.0");
        let custom = serde_json::json!({"global": {"proxy": {"image": "my.registry/proxy:v1"}}});
        assert_eq!(proxy_image(&custom, None).as_deref(), Some("my.registry/proxy:v1"));
    }

    #[test]
    fn the_release_is_checked_against_the_tested_range() {
        let range = Range::parse("1.25 - 1.31").unwrap();
        assert_eq!(range.to_string(), "1.25–1.31");
        assert_eq!(check("client version: 1.26.0\n", &range, "v1.4.1").unwrap().minor, 26);
        assert_eq!(check("1.31.2\n", &range, "v1.4.1").unwrap().text, "1.31.2");
        assert!(check("client version: 1.28-dev\n", &range, "v1.4.1").is_ok());
        let old = check("client version: 1.24.3\n", &range, "v1.4.1").unwrap_err();
        assert_eq!(old.code(), 3);
        let text = old.to_string();
        assert!(text.contains("istioctl 1.24.3 is outside the tested range Istio 1.25–1.31"), "{text}");
        assert!(text.contains("reconcileIptablesOnStartup"), "{text}");
        assert!(text.contains("ISTIO_VERSION=<that release>"), "{text}");
        let new = check("client version: 1.32.0\n", &range, "v1.4.1").unwrap_err().to_string();
        assert!(new.contains("Gateway API v1.4.1"), "{new}");
        let unknown = check("client version: unknown\n", &range, "v1.4.1").unwrap_err().to_string();
        assert!(unknown.contains("printed `client version: unknown`"), "{unknown}");
        assert!(Range::parse("1.31 - 1.25").is_err());
        assert!(Range::parse("1.25").is_err());
        assert!(Range::parse("a.b - 1.2").is_err());
    }
}
