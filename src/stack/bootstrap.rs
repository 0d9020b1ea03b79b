//! The bootstrap's part of the stack file: its tiers of manifests as the graph's units, the
//! secrets contract, the Gateway API CRDs, Istio and our images.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::manifests::Doc;

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootstrapFile {
    cluster_wait: String,
    gateway_api: GatewayApiFile,
    istio: IstioFile,
    secrets: String,
    images: Vec<ImageFile>,
    tiers: Vec<TierFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayApiFile {
    version: String,
    /// The Istio minor releases tested with these CRDs (`1.25 - 1.31`).
    istio: String,
    crds: String,
    established: Vec<String>,
    timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IstioFile {
    install: Vec<String>,
    ready: Vec<String>,
    timeout: String,
    /// Gone: Istio's images come from `istioctl manifest generate` (refused with a reason).
    #[serde(default)]
    images: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    gateway_image: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    ready_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFile {
    image: String,
    context_env: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    dir: String,
    #[serde(default)]
    ready: Vec<String>,
    #[serde(default)]
    programmed: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Deserialize)]
struct SecretsContractFile {
    secrets: Vec<SecretContractFile>,
}

#[derive(Deserialize)]
struct SecretContractFile {
    name: String,
    namespace: String,
    keys: Vec<SecretKeyFile>,
}

#[derive(Deserialize)]
struct SecretKeyFile {
    key: String,
    value: String,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

pub(super) fn load_bootstrap(
    source: &Source,
    file: &BootstrapFile,
    workloads: &[Workload],
) -> Result<Bootstrap> {
    let pair = |what: &str, text: &str| -> Result<(String, String)> {
        match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_string(), name.to_string()))
            }
            _ => Err(Error::input("stack file", format!("{what}: `{text}` is not <namespace>/<name>"))),
        }
    };
    let mut tiers = Vec::new();
    for t in &file.tiers {
        let mut docs = Vec::new();
        for (rel, text) in source.list(&t.dir)? {
            let parsed = crate::manifests::parse(&rel, &text)
                .map_err(|p| Error::input(format!("manifest {}", source.describe(&rel)), p))?;
            docs.extend(parsed);
        }
        let programmed: Vec<(String, String)> = t
            .programmed
            .iter()
            .map(|r| pair(&format!("tier {} programmed", t.dir), r))
            .collect::<Result<_>>()?;
        for (ns, name) in &programmed {
            let defined = docs.iter().any(|d| {
                d.kind == "Gateway" && &d.name == name && d.namespace.as_deref() == Some(ns.as_str())
            });
            if !defined {
                return Err(Error::input(
                    "stack file",
                    format!("tier {} programmed: {ns}/{name} is not a Gateway of its manifests", t.dir),
                ));
            }
        }
        tiers.push(Tier {
            dir: t.dir.clone(),
            docs,
            ready: t
                .ready
                .iter()
                .map(|r| pair(&format!("tier {} ready", t.dir), r))
                .collect::<Result<_>>()?,
            programmed,
            timeout: match &t.timeout {
                Some(d) => duration(&format!("tier {} timeout", t.dir), d)?,
                None => Duration::from_secs(180),
            },
        });
    }
    if tiers.is_empty() {
        return Err(Error::input("stack file", "bootstrap.tiers is empty"));
    }
    let (namespaces, units) = units(&tiers, workloads)?;
    let contract_text = source.read(&file.secrets)?;
    let what = format!("secrets contract {}", source.describe(&file.secrets));
    let secrets = parse_secrets_contract(&contract_text).map_err(|p| Error::input(&what, p))?;
    let crds = &file.gateway_api.crds;
    let crds_text = if crds.starts_with("https://") || crds.starts_with("http://") {
        None
    } else {
        let text = source.read(crds)?;
        check_crds(&text, &file.gateway_api.established)
            .map_err(|p| Error::input(format!("Gateway API CRD file {}", source.describe(crds)), p))?;
        Some(text)
    };
    if file.istio.images.is_some() || file.istio.gateway_image.is_some() {
        return Err(Error::input(
            "stack file",
            "bootstrap.istio.images and gateway_image are no longer read: Istio's images are what \
             `istioctl manifest generate` prints for bootstrap.istio.install's flags; remove them",
        ));
    }
    check_istio_flags(&file.istio.install).map_err(|p| Error::input("stack file", p))?;
    let istio_range = IstioRange::parse(&file.gateway_api.istio)
        .map_err(|p| Error::input("stack file", format!("bootstrap.gateway_api.istio: {p}")))?;
    Ok(Bootstrap {
        cluster_wait: duration("bootstrap.cluster_wait", &file.cluster_wait)?,
        crds: file.gateway_api.crds.clone(),
        crds_text,
        crds_established: file.gateway_api.established.clone(),
        crds_timeout: duration("bootstrap.gateway_api.timeout", &file.gateway_api.timeout)?,
        gateway_api_version: file.gateway_api.version.clone(),
        istio_range,
        istio_install: file.istio.install.clone(),
        istio_ready: file.istio.ready.clone(),
        istio_timeout: duration("bootstrap.istio.timeout", &file.istio.timeout)?,
        istio_ready_in: match &file.istio.ready_in {
            Some(d) => duration("bootstrap.istio.ready_in", d)?,
            None => DEFAULT_READY_IN,
        },
        secrets,
        images: file
            .images
            .iter()
            .map(|i| AppImage { image: i.image.clone(), context_env: i.context_env.clone() })
            .collect(),
        namespaces,
        units,
        tiers,
    })
}

/// `bootstrap.istio.install` holds only what `istioctl install` and `istioctl manifest generate`
/// both take (the settings: `--set`, `-f`, `--revision`, `--manifests`, `--force`): bookstore runs
/// both with them, and adds `--context` and `--skip-confirmation` to the install itself.
pub(super) fn check_istio_flags(flags: &[String]) -> std::result::Result<(), String> {
    const WITH_VALUE: [&str; 8] =
        ["--set", "-s", "--filename", "-f", "--revision", "-r", "--manifests", "-d"];
    let mut i = 0;
    while i < flags.len() {
        let flag = flags[i].as_str();
        let name = flag.split_once('=').map_or(flag, |(n, _)| n);
        if WITH_VALUE.contains(&flag) {
            if i + 1 >= flags.len() {
                return Err(format!("bootstrap.istio.install: `{flag}` needs a value"));
            }
            i += 1;
        } else if !(WITH_VALUE.contains(&name) && flag.contains('=') || flag == "--force") {
            return Err(format!(
                "bootstrap.istio.install: `{flag}` is not a setting both `istioctl install` and `istioctl \
                 manifest generate` take (bookstore runs both with these flags, and adds --context and \
                 --skip-confirmation to the install itself)"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// The tiers' documents as the bootstrap graph's units. A file that deploys nothing holds shared
/// objects (its Namespaces go first, with the Secrets); in a file with Deployments, each other
/// document goes with the Deployment it is named after (`<name>` or `<name>-…`), else with the
/// file's first. What a tier waits for that no document deploys (the Deployment Istio creates for
/// a Gateway) and its `programmed` Gateways are the shared unit's.
fn units(tiers: &[Tier], workloads: &[Workload]) -> Result<(Vec<Doc>, Vec<Unit>)> {
    let mut namespaces = Vec::new();
    let mut shared = Unit {
        name: "shared objects".into(),
        workload: None,
        docs: Vec::new(),
        ready: Vec::new(),
        programmed: Vec::new(),
        images: Vec::new(),
        timeout: Duration::ZERO,
    };
    let mut units: Vec<Unit> = Vec::new();
    for tier in tiers {
        let mut files: Vec<&str> = tier.docs.iter().map(|d| d.file.as_str()).collect();
        files.dedup();
        for file in files {
            let docs: Vec<&Doc> = tier.docs.iter().filter(|d| d.file == file).collect();
            let deployments: Vec<&Doc> = docs.iter().copied().filter(|d| d.kind == "Deployment").collect();
            if deployments.is_empty() {
                for d in docs {
                    if d.kind == "Namespace" {
                        namespaces.push(d.clone());
                    } else {
                        shared.docs.push(d.clone());
                        shared.timeout = shared.timeout.max(tier.timeout);
                    }
                }
                continue;
            }
            for d in &deployments {
                let key = (d.namespace.clone().unwrap_or_else(|| "default".into()), d.name.clone());
                if units.iter().any(|u| u.ready.contains(&key)) {
                    return Err(Error::input(
                        format!("manifest {file}"),
                        format!("deployment {}/{} is defined twice", key.0, key.1),
                    ));
                }
                let workload = workloads.iter().position(|w| w.namespace == key.0 && w.name == key.1);
                units.push(Unit {
                    name: d.name.clone(),
                    workload,
                    docs: Vec::new(),
                    ready: vec![key],
                    programmed: Vec::new(),
                    images: Vec::new(),
                    timeout: workload.map_or(tier.timeout, |w| workloads[w].timeout),
                });
            }
            for d in docs {
                let owner = if d.kind == "Deployment" {
                    d
                } else {
                    deployments
                        .iter()
                        .copied()
                        .filter(|dep| d.name == dep.name || d.name.starts_with(&format!("{}-", dep.name)))
                        .max_by_key(|dep| dep.name.len())
                        .unwrap_or(deployments[0])
                };
                let key = (owner.namespace.clone().unwrap_or_else(|| "default".into()), owner.name.clone());
                let unit = units.iter_mut().find(|u| u.ready.contains(&key)).expect("pushed above");
                unit.docs.push(d.clone());
                for image in &d.images {
                    if !unit.images.contains(image) {
                        unit.images.push(image.clone());
                    }
                }
            }
        }
        for target in &tier.ready {
            if !units.iter().any(|u| u.ready.contains(target)) && !shared.ready.contains(target) {
                shared.ready.push(target.clone());
                shared.timeout = shared.timeout.max(tier.timeout);
            }
        }
        for g in &tier.programmed {
            shared.programmed.push(g.clone());
            shared.timeout = shared.timeout.max(tier.timeout);
        }
    }
    if !shared.docs.is_empty() || !shared.ready.is_empty() {
        units.push(shared);
    }
    Ok((namespaces, units))
}

pub fn parse_secrets_contract(text: &str) -> std::result::Result<Vec<SecretSpec>, String> {
    let file: SecretsContractFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in file.secrets {
        let mut keys = Vec::new();
        for k in s.keys {
            let source = match k.value.as_str() {
                "random" => KeySource::Random,
                "fixed" => KeySource::Fixed(k.default.ok_or_else(|| {
                    format!("{}/{} key {}: fixed needs `default`", s.namespace, s.name, k.key)
                })?),
                "copy" => {
                    let from = k.from.ok_or_else(|| {
                        format!("{}/{} key {}: copy needs `from`", s.namespace, s.name, k.key)
                    })?;
                    let parts: Vec<&str> = from.split('/').collect();
                    let [ns, secret, key] = parts.as_slice() else {
                        return Err(format!(
                            "{}/{} key {}: `from: {from}` is not <namespace>/<secret>/<key>",
                            s.namespace, s.name, k.key
                        ));
                    };
                    KeySource::Copy(ns.to_string(), secret.to_string(), key.to_string())
                }
                "properties" => KeySource::Properties(k.keys),
                other => {
                    return Err(format!(
                        "{}/{} key {}: unknown value kind `{other}`",
                        s.namespace, s.name, k.key
                    ));
                }
            };
            keys.push((k.key, source));
        }
        out.push(SecretSpec { name: s.name, namespace: s.namespace, keys });
    }
    check_contract(&out)?;
    Ok(out)
}

/// Every value a key takes from elsewhere exists when the bootstrap makes it: a `copy` names a
/// key of a Secret listed before it, a `properties` key one listed before it in the same Secret.
fn check_contract(specs: &[SecretSpec]) -> std::result::Result<(), String> {
    for (i, spec) in specs.iter().enumerate() {
        let id = format!("{}/{}", spec.namespace, spec.name);
        for (k, (key, source)) in spec.keys.iter().enumerate() {
            match source {
                KeySource::Copy(ns, secret, from) => {
                    let found = specs[..i].iter().any(|s| {
                        &s.namespace == ns && &s.name == secret && s.keys.iter().any(|(k, _)| k == from)
                    });
                    if !found {
                        return Err(format!(
                            "{id} key {key}: `from: {ns}/{secret}/{from}` is not a key of a Secret listed \
                             before it"
                        ));
                    }
                }
                KeySource::Properties(keys) => {
                    if let Some(missing) = keys.iter().find(|p| !spec.keys[..k].iter().any(|(k, _)| k == *p))
                    {
                        return Err(format!(
                            "{id} key {key}: properties key {missing} is not a key listed before it"
                        ));
                    }
                }
                KeySource::Random | KeySource::Fixed(_) => {}
            }
        }
    }
    Ok(())
}

/// A CRD file: CustomResourceDefinitions only, among them every one the bootstrap waits for.
pub(super) fn check_crds(text: &str, established: &[String]) -> std::result::Result<(), String> {
    let docs = crate::manifests::parse("crds", text)?;
    if let Some(other) = docs.iter().find(|d| d.kind != "CustomResourceDefinition") {
        return Err(format!(
            "document at line {} is a {}, not a CustomResourceDefinition",
            other.line, other.kind
        ));
    }
    if let Some(missing) = established.iter().find(|n| !docs.iter().any(|d| &d.name == *n)) {
        return Err(format!("defines no CRD {missing} (bootstrap.gateway_api.established waits for it)"));
    }
    Ok(())
}
