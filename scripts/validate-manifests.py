#!/usr/bin/env python3
"""Validate the BookStore Kubernetes manifests under infra/k8s/, with no cluster.

    python3 scripts/validate-manifests.py [--k8s-version 1.32 ...] [--repo DIR]

What it checks, and how:
  1. Every document in a tier directory (infra/k8s/NN-name/*.yaml|*.yml|*.json) against the real
     Kubernetes JSON schemas, strict (unknown fields rejected), for each Kubernetes version of
     KIND_K8S_VERSIONS: PyPI `kubernetes-validate`, which bundles the schemas (works offline).
  2. Gateway API resources (Gateway, HTTPRoute, ReferenceGrant), which that package has no
     schema for, against the openAPIV3Schema of the real Gateway API standard-install CRDs of
     the pinned release (tests/sim/fixtures/, the file the simulator serves), strict (unknown
     fields rejected, as kubectl's server-side field validation does), with PyPI `jsonschema`.
     The CRDs' CEL rules (x-kubernetes-validations) are not evaluated here: the API server
     checks them at apply; the few we rely on are checked by hand (a path starts with `/`, a
     Service backendRef has a port). Then by reference: every parentRef and backendRef resolves
     to a Gateway / Service (and port) defined here, across namespaces only with a
     ReferenceGrant.
  3. Our own rules: pinned images, readiness probes, requests, replicas 1, app=<name> selectors,
     Recreate for RWO volumes, no Secret with values (the Secrets follow
     infra/k8s/secrets-contract.yaml), ambient namespaces, Services that select something.
  4. Cross-checks with infra/stack.yaml (every workload, every smoke check, the Connect worker
     and its connector files) and infra/kind/cluster.yaml (every host port has its NodePort).
  5. Kiali: its config.yaml uses only keys of the pinned release's config/config.go (Kiali
     ignores any other key silently), and its ServiceAccount is granted what kiali/helm-charts'
     role-viewer.yaml of that release grants (pods/portforward included).

Prints one line per problem and ends with `validated N documents, P problems`; exits 0 when
there is none, 1 when there are problems, 2 when it cannot run (missing package or file).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with kubernetes-validate
    sys.stderr.write("error: PyYAML is missing: pip install kubernetes-validate==1.37.0 jsonschema==4.26.0 "
                     "(PyYAML comes with them)\n")
    sys.exit(2)

# Kubernetes versions the manifests must be valid for: the node image of kind v0.27.0 (1.32,
# the oldest kind release we support) and of kind v0.32.0 (1.36, the newest kind release).
# kubernetes-validate picks the newest bundled schema set that is not newer than the version.
KIND_K8S_VERSIONS = ["1.32", "1.36"]
KUBERNETES_VALIDATE_PIN = "1.37.0"
JSONSCHEMA_PIN = "4.26.0"
PIP_LINE = "pip install kubernetes-validate==1.37.0 jsonschema==4.26.0"

GATEWAY_GROUP = "gateway.networking.k8s.io"
# The Gateway API release the bootstrap installs (infra/stack.yaml) and its standard-install file,
# vendored byte for byte as kubernetes-sigs/gateway-api hack/build-install-yaml.sh builds it.
GATEWAY_API_VERSION = "v1.4.1"
GATEWAY_API_CRDS = Path("tests/sim/fixtures/gateway-api-v1.4.1-standard-install.yaml")
# Namespaces the manifests may use without defining them: Istio's own (created by the install).
EXTERNAL_NAMESPACES = {"istio-system"}
AMBIENT_LABEL = ("istio.io/dataplane-mode", "ambient")
CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
    "CustomResourceDefinition", "PriorityClass", "GatewayClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}
TIER_DIR = re.compile(r"^\d\d-[a-z0-9][a-z0-9-]*$")
MANIFEST_SUFFIXES = {".yaml", ".yml", ".json"}
PLACEHOLDER = re.compile(r"\$\{([^}]*?):(?:([^}]*?):)?([^}]*?)\}")  # ConfigTransformer's pattern


# --------------------------------------------------------------------------------------------
# Loading


class DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (kubectl does; PyYAML keeps the last)."""


def _construct_mapping(loader: DuplicateKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


DuplicateKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class Doc:
    file: Path  # relative to the repo
    index: int  # position in its file
    tier: str
    body: dict

    @property
    def kind(self) -> str:
        return self.body.get("kind", "?")

    @property
    def api_version(self) -> str:
        return self.body.get("apiVersion", "?")

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def meta(self) -> dict:
        m = self.body.get("metadata")
        return m if isinstance(m, dict) else {}

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "?"))

    @property
    def namespace(self) -> str | None:
        ns = self.meta.get("namespace")
        return str(ns) if ns is not None else None

    @property
    def spec(self) -> dict:
        s = self.body.get("spec")
        return s if isinstance(s, dict) else {}

    def ref(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.file}#{self.index + 1}: {self.kind} {where}"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        one_line = " ".join(str(message).split())  # YAML errors come on several lines
        self.problems.append(f"PROBLEM {where}: {one_line}")

    def note(self, message: str) -> None:
        self.notes.append(f"note: {message}")


def load_yaml_file(path: Path, report: Report, rel: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=DuplicateKeyLoader)
    except (OSError, yaml.YAMLError) as e:
        report.problem(str(rel), f"cannot read YAML: {e}")
        return None


def load_docs(k8s_dir: Path, repo: Path, report: Report) -> list[Doc]:
    docs: list[Doc] = []
    if not k8s_dir.is_dir():
        report.problem(str(k8s_dir.relative_to(repo)), "no such directory")
        return docs
    tiers = sorted(p for p in k8s_dir.iterdir() if p.is_dir())
    for tier in tiers:
        if not TIER_DIR.match(tier.name):
            report.problem(str(tier.relative_to(repo)),
                           "not a tier directory (expected NN-name, e.g. 10-databases)")
            continue
        files = sorted(p for p in tier.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if not files:
            report.problem(str(tier.relative_to(repo)), "tier directory without manifests")
        for other in sorted(p for p in tier.iterdir() if p.is_file() and p.suffix not in MANIFEST_SUFFIXES):
            report.note(f"{other.relative_to(repo)}: not a manifest (kubectl apply -f skips it)")
        for f in files:
            rel = f.relative_to(repo)
            try:
                text = f.read_text()
                if f.suffix == ".json":
                    bodies = [json.loads(text)]
                else:
                    bodies = list(yaml.load_all(text, Loader=DuplicateKeyLoader))
            except (OSError, ValueError, yaml.YAMLError) as e:
                report.problem(str(rel), f"cannot parse: {e}")
                continue
            for i, body in enumerate(bodies):
                if body is None:
                    continue  # an empty document (e.g. after a trailing ---)
                if not isinstance(body, dict):
                    report.problem(f"{rel}#{i + 1}", "document is not a mapping")
                    continue
                docs.append(Doc(rel, i, tier.name, body))
    return docs


# --------------------------------------------------------------------------------------------
# Helpers over the documents


class Index:
    def __init__(self, docs: list[Doc]):
        self.docs = docs

    def of_kind(self, kind: str, group: str | None = None) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind and (group is None or d.group == group)]

    def find(self, kind: str, namespace: str | None, name: str, group: str | None = None) -> Doc | None:
        for d in self.of_kind(kind, group):
            if d.name == name and d.namespace == namespace:
                return d
        return None

    def namespaces(self) -> dict[str, Doc]:
        return {d.name: d for d in self.of_kind("Namespace")}


def pod_spec(doc: Doc) -> dict:
    tpl = doc.spec.get("template")
    if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict):
        return tpl["spec"]
    return {}


def pod_labels(doc: Doc) -> dict:
    tpl = doc.spec.get("template") or {}
    meta = tpl.get("metadata") if isinstance(tpl, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def containers(doc: Doc, init: bool = True) -> list[dict]:
    spec = pod_spec(doc)
    out = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    if init:
        out += [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    return out


def container_env(c: dict) -> dict[str, Any]:
    return {e.get("name"): e for e in c.get("env") or [] if isinstance(e, dict)}


def env_value(c: dict, name: str) -> str | None:
    e = container_env(c).get(name)
    if e is None:
        return None
    v = e.get("value")
    return str(v) if v is not None else None


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def match_label_selector(selector: dict, labels: dict) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a label set."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def image_problem(image: str) -> str | None:
    """None when the image reference is pinned (a tag other than latest, or a digest)."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (pulls :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses :latest"
    return None


def secret_refs(doc: Doc) -> list[tuple[str, str | None, str]]:
    """(secret name, key or None for 'every key', how) for every Secret the pod reads."""
    out: list[tuple[str, str | None, str]] = []
    spec = pod_spec(doc)
    for c in containers(doc):
        cname = c.get("name")
        for e in c.get("env") or []:
            ref = ((e or {}).get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                out.append((ref.get("name"), ref.get("key"), f"container {cname} env {e.get('name')}"))
        for ef in c.get("envFrom") or []:
            ref = (ef or {}).get("secretRef")
            if ref:
                out.append((ref.get("name"), None, f"container {cname} envFrom"))
    for v in spec.get("volumes") or []:
        sources = []
        if (v or {}).get("secret"):
            sources.append(v["secret"] | {"name": v["secret"].get("secretName")})
        for p in ((v or {}).get("projected") or {}).get("sources") or []:
            if (p or {}).get("secret"):
                sources.append(p["secret"])
        for s in sources:
            items = s.get("items")
            if items:
                for it in items:
                    out.append((s.get("name"), it.get("key"), f"volume {v.get('name')}"))
            else:
                out.append((s.get("name"), None, f"volume {v.get('name')}"))
    return out


def configmap_refs(doc: Doc) -> list[tuple[str, str | None, bool, str]]:
    out: list[tuple[str, str | None, bool, str]] = []
    spec = pod_spec(doc)
    for c in containers(doc):
        cname = c.get("name")
        for e in c.get("env") or []:
            ref = ((e or {}).get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                out.append((ref.get("name"), ref.get("key"), bool(ref.get("optional")),
                            f"container {cname} env {e.get('name')}"))
        for ef in c.get("envFrom") or []:
            ref = (ef or {}).get("configMapRef")
            if ref:
                out.append((ref.get("name"), None, bool(ref.get("optional")), f"container {cname} envFrom"))
    for v in spec.get("volumes") or []:
        sources = []
        if (v or {}).get("configMap"):
            sources.append(v["configMap"])
        for p in ((v or {}).get("projected") or {}).get("sources") or []:
            if (p or {}).get("configMap"):
                sources.append(p["configMap"])
        for s in sources:
            items = s.get("items")
            keys = [it.get("key") for it in items] if items else [None]
            for k in keys:
                out.append((s.get("name"), k, bool(s.get("optional")), f"volume {v.get('name')}"))
    return out


# --------------------------------------------------------------------------------------------
# 1. Kubernetes schemas


def check_schemas(docs: list[Doc], versions: list[str], report: Report) -> tuple[int, int]:
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils

    # The package re-reads its (large) shared definitions for every document; cache the reads.
    original = kv_utils.schema_contents
    cache: dict[tuple[str, str], Any] = {}

    def cached(filename: str, desired_version: str) -> Any:
        key = (filename, desired_version)
        if key not in cache:
            cache[key] = original(filename, desired_version)
        return cache[key]

    kv_utils.schema_contents = cached

    schema_checked = custom = 0
    for d in docs:
        if d.group == GATEWAY_GROUP:
            custom += 1
            continue
        ok = True
        for v in versions:
            try:
                kubernetes_validate.validate(d.body, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(document)"
                report.problem(d.ref(), f"Kubernetes {e.version} schema: {path}: {e.message}")
                ok = False
            except kubernetes_validate.SchemaNotFoundError as e:
                report.problem(d.ref(), f"no Kubernetes {v} schema for {d.api_version} {d.kind} "
                                        f"(wrong apiVersion/kind, or an API removed by then): {e.message}")
                ok = False
            if not ok:
                break
        schema_checked += 1
    return schema_checked, custom


# --------------------------------------------------------------------------------------------
# 2. Gateway API: the real schema, then references

ISTIO_SERVICE_TYPES = {"ClusterIP", "NodePort"}


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected: `additionalProperties: false` on every object
    with `properties` that neither declares additionalProperties nor preserves unknown fields
    (what the API server's strict field validation does with a structural schema)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (strict(v) if k not in {"default", "enum", "example", "x-kubernetes-validations"} else v)
           for k, v in schema.items()}
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def gateway_api_schemas(repo: Path, stack: dict, report: Report) -> dict[tuple[str, str, str], dict]:
    """(group, kind, version) -> the strict openAPIV3Schema of each served version."""
    where = str(GATEWAY_API_CRDS)
    want = ((stack.get("bootstrap") or {}).get("gateway_api") or {})
    if want.get("version") != GATEWAY_API_VERSION or GATEWAY_API_VERSION not in str(want.get("crds", "")):
        report.problem("infra/stack.yaml", f"bootstrap.gateway_api is {want.get('version')!r} "
                                           f"({want.get('crds')}), but the schemas here are "
                                           f"{GATEWAY_API_VERSION}'s: vendor that release's "
                                           f"standard-install.yaml as {where} and bump GATEWAY_API_VERSION")
    try:
        crds = [d for d in yaml.safe_load_all((repo / GATEWAY_API_CRDS).read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        report.problem(where, f"cannot read the Gateway API CRDs: {e}")
        return {}
    schemas = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        bundle = ((crd.get("metadata") or {}).get("annotations") or {}).get("gateway.networking.k8s.io/bundle-version")
        if bundle != GATEWAY_API_VERSION:
            report.problem(where, f"{(crd.get('metadata') or {}).get('name')}: bundle-version {bundle!r}, "
                                  f"want {GATEWAY_API_VERSION}")
        for v in spec.get("versions") or []:
            if v.get("served"):
                key = (spec.get("group"), (spec.get("names") or {}).get("kind"), v.get("name"))
                schemas[key] = strict(((v.get("schema") or {}).get("openAPIV3Schema")) or {})
    return schemas


def check_gateway_schemas(idx: Index, schemas: dict, report: Report) -> None:
    import jsonschema

    for d in idx.docs:
        if d.group != GATEWAY_GROUP:
            continue
        version = d.api_version.split("/", 1)[-1]
        schema = schemas.get((d.group, d.kind, version))
        if schema is None:
            served = sorted(f"{k}/{v}" for g, k, v in schemas if g == d.group)
            report.problem(d.ref(), f"{d.api_version} {d.kind} is not served by the Gateway API "
                                    f"{GATEWAY_API_VERSION} standard channel ({', '.join(served)})")
            continue
        for e in sorted(jsonschema.Draft7Validator(schema).iter_errors(d.body), key=lambda e: list(e.path)):
            path = ".".join(str(p) for p in e.absolute_path) or "(document)"
            report.problem(d.ref(), f"Gateway API {GATEWAY_API_VERSION} schema: {path}: {e.message}")


def listener_admits(gw: Doc, listener: dict, route_ns: str, namespaces: dict[str, Doc]) -> bool:
    allowed = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
    frm = allowed.get("from", "Same")
    if frm == "All":
        return True
    if frm == "Same":
        return route_ns == gw.namespace
    if frm == "Selector":
        ns_doc = namespaces.get(route_ns)
        labels = {"kubernetes.io/metadata.name": route_ns}
        if ns_doc is not None:
            labels |= ns_doc.meta.get("labels") or {}
        return match_label_selector(allowed.get("selector") or {}, labels)
    return False


def check_gateway_api(idx: Index, report: Report) -> None:
    """What the schema does not say: our rules, the CEL rules we rely on, and references."""
    namespaces = idx.namespaces()
    for d in idx.docs:
        if d.group == GATEWAY_GROUP and d.kind in {"Gateway", "HTTPRoute"} and d.api_version != f"{GATEWAY_GROUP}/v1":
            report.problem(d.ref(), f"apiVersion {d.api_version}: use {GATEWAY_GROUP}/v1 (the "
                                    "standard channel's stable version)")

    for gw in idx.of_kind("Gateway", GATEWAY_GROUP):
        spec = gw.spec
        if spec.get("gatewayClassName") != "istio":
            report.problem(gw.ref(), f"gatewayClassName {spec.get('gatewayClassName')!r}, want 'istio'")
        stype = (gw.meta.get("annotations") or {}).get("networking.istio.io/service-type")
        if stype not in ISTIO_SERVICE_TYPES:
            report.problem(gw.ref(), "annotation networking.istio.io/service-type must be ClusterIP or "
                                     f"NodePort on kind (got {stype!r}; LoadBalancer never gets an "
                                     "address, so the Gateway never becomes Programmed)")
        # A list-map keyed by name: unique names are the API server's rule, not the schema's.
        names = [l.get("name") for l in spec.get("listeners") or [] if isinstance(l, dict)]
        for name in sorted({n for n in names if names.count(n) > 1}):
            report.problem(gw.ref(), f"duplicate listener name {name!r}")
        for i, l in enumerate(spec.get("listeners") or []):
            allowed = ((l or {}).get("allowedRoutes") or {}).get("namespaces") or {}
            if allowed.get("from") == "Selector" and not isinstance(allowed.get("selector"), dict):
                report.problem(f"{gw.ref()} listener {i}", "allowedRoutes.namespaces.from Selector needs "
                                                           "a selector")

    for rt in idx.of_kind("HTTPRoute", GATEWAY_GROUP):
        spec = rt.spec
        parents = [p for p in spec.get("parentRefs") or [] if isinstance(p, dict) and p.get("name")]
        if not parents:
            report.problem(rt.ref(), "no parentRefs: the route attaches to no Gateway")
        for p in parents:
            if p.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or p.get("kind", "Gateway") != "Gateway":
                report.problem(rt.ref(), f"parentRef {p['name']!r}: only Gateways are checked here")
                continue
            gw_ns = p.get("namespace", rt.namespace)
            gw = idx.find("Gateway", gw_ns, p["name"], GATEWAY_GROUP)
            if gw is None:
                report.problem(rt.ref(), f"parentRef: no Gateway {gw_ns}/{p['name']} in the manifests")
                continue
            listeners = [l for l in gw.spec.get("listeners") or [] if isinstance(l, dict)]
            section = p.get("sectionName")
            if section is not None:
                listeners = [l for l in listeners if l.get("name") == section]
                if not listeners:
                    report.problem(rt.ref(), f"parentRef sectionName {section!r}: Gateway "
                                             f"{gw_ns}/{gw.name} has no such listener")
                    continue
            if not any(listener_admits(gw, l, rt.namespace or "", namespaces) for l in listeners):
                report.problem(rt.ref(), f"Gateway {gw_ns}/{gw.name} does not admit routes from "
                                         f"namespace {rt.namespace} (allowedRoutes)")
        for i, rule in enumerate(spec.get("rules") or []):
            where = f"{rt.ref()} rule {i}"
            if not isinstance(rule, dict):
                continue
            for m in rule.get("matches") or []:
                path = (m or {}).get("path") or {}
                val = path.get("value", "/")
                if isinstance(val, str) and not val.startswith("/"):  # a CEL rule of the CRD
                    report.problem(where, f"path value {val!r} must start with /")
            backends = [b for b in rule.get("backendRefs") or [] if isinstance(b, dict) and b.get("name")]
            if not backends:
                report.problem(where, "no backendRefs")
            for b in backends:
                if b.get("group", "") != "" or b.get("kind", "Service") != "Service":
                    report.problem(where, f"backendRef {b['name']!r}: only core Services are checked here")
                    continue
                b_ns = b.get("namespace", rt.namespace)
                if b_ns != rt.namespace and not reference_granted(idx, rt.namespace, b_ns, b["name"]):
                    report.problem(where, f"backendRef {b_ns}/{b['name']} is in another namespace "
                                          "and no ReferenceGrant allows it")
                svc = idx.find("Service", b_ns, b["name"])
                if svc is None:
                    report.problem(where, f"backendRef: no Service {b_ns}/{b['name']} in the manifests")
                    continue
                ports = [p.get("port") for p in svc.spec.get("ports") or []]
                if "port" not in b:  # a CEL rule of the CRD
                    report.problem(where, f"backendRef {b['name']}: port is required for a Service")
                elif b["port"] not in ports:
                    report.problem(where, f"backendRef {b['name']}: port {b['port']} is not a port of "
                                          f"Service {b_ns}/{b['name']} {ports}")


def reference_granted(idx: Index, from_ns: str | None, to_ns: str | None, name: str) -> bool:
    for rg in idx.of_kind("ReferenceGrant", GATEWAY_GROUP):
        if rg.namespace != to_ns:
            continue
        froms = rg.spec.get("from") or []
        tos = rg.spec.get("to") or []
        if any(f.get("kind") == "HTTPRoute" and f.get("namespace") == from_ns for f in froms) and \
                any(t.get("kind") == "Service" and t.get("name", name) == name for t in tos):
            return True
    return False


# --------------------------------------------------------------------------------------------
# 5. Kiali

KIALI_IMAGE = "quay.io/kiali/kiali"
KIALI_VERSION = "v2.29.0"
# The yaml keys of kiali/kiali config/config.go at KIALI_VERSION, for the sections checked key by
# key (a dict is a struct; None is a value taken as it is). Kiali reads the file with
# gopkg.in/yaml.v2, not strictly: a key it does not know is silently ignored. (v2 dropped
# `istio_namespace`, `clustering.autodetect_secrets` and `external_services.istio.root_namespace`:
# it finds istiod and the mesh's root namespace itself, and remote clusters are secrets mounted
# under /kiali-remote-cluster-secrets.)
_LEAVES = lambda *names: {n: None for n in names}  # noqa: E731
_KIALI_PROMETHEUS = _LEAVES("auth", "cache_duration", "cache_enabled", "cache_expiration", "custom_headers",
                            "enabled", "health_check_url", "is_core", "query_scope", "thanos_proxy", "url")
KIALI_CONFIG_KEYS: dict = {
    **_LEAVES("additional_display_details", "chat_ai", "custom_dashboards", "extensions", "health_config",
              "identity", "installation_tag", "istio_labels", "kiali_feature_flags", "kiali_internal",
              "kubernetes_config", "runConfig", "runMode"),
    "auth": _LEAVES("openid", "openshift", "strategy"),
    "clustering": _LEAVES("clusters", "enable_exec_provider", "ignore_home_cluster", "kiali_urls"),
    "deployment": _LEAVES("cluster_wide_access", "cluster_name_overrides", "discovery_selectors",
                          "instance_name", "namespace", "tls_config", "view_only_mode"),
    "external_services": {
        "grafana": _LEAVES("auth", "dashboards", "datasource_uid", "enabled", "external_url",
                           "health_check_url", "internal_url", "is_core", "in_cluster_url", "url"),
        "istio": _LEAVES("component_status", "gateway_api_classes", "gateway_api_classes_label_selector",
                         "istio_api_enabled", "istio_identity_domain", "istiod_polling_interval_seconds",
                         "validation_change_detection_enabled", "validation_reconcile_interval"),
        "perses": None,
        "prometheus": _KIALI_PROMETHEUS,
        "custom_dashboards": {**_LEAVES("discovery_enabled", "discovery_auto_threshold", "enabled", "is_core",
                                        "namespace_label"), "prometheus": _KIALI_PROMETHEUS},
        "tracing": _LEAVES("auth", "custom_headers", "disable_version_check", "enabled", "external_url",
                           "health_check_url", "grpc_port", "internal_url", "is_core", "provider",
                           "tempo_config", "namespace_selector", "query_scope", "query_timeout", "use_grpc",
                           "use_waypoint_name", "whitelist_istio_system", "in_cluster_url", "url"),
    },
    "login_token": _LEAVES("expiration_seconds", "signing_key"),
    "server": {
        **_LEAVES("address", "audit_log", "cors_allow_all", "gzip_enabled", "port", "profiler", "require_auth",
                  "web_fqdn", "web_port", "web_root", "web_history_mode", "web_schema", "write_timeout"),
        "observability": {"metrics": _LEAVES("enabled", "health_status", "port"), "tracing": None},
    },
}
# kiali/helm-charts kiali-server/templates/role-viewer.yaml at KIALI_VERSION (view-only, without
# OpenShift's groups): (apiGroup, resource, verbs). Kiali polls istiod and reads proxies' config
# dumps through port-forwards, hence pods/portforward `create` even view-only.
KIALI_VIEWER_RULES = [
    *[("", r, ("get", "list", "watch")) for r in
      ("configmaps", "pods/log", "namespaces", "pods", "replicationcontrollers", "services")],
    ("", "pods/portforward", ("create",)),
    *[("apps", r, ("get", "list", "watch")) for r in ("daemonsets", "deployments", "replicasets", "statefulsets")],
    *[("batch", r, ("get", "list", "watch")) for r in ("cronjobs", "jobs")],
    *[(g, "*", ("get", "list", "watch")) for g in
      ("networking.istio.io", "security.istio.io", "extensions.istio.io", "telemetry.istio.io",
       "inference.networking.k8s.io")],
    *[(GATEWAY_GROUP, r, ("get", "list", "watch")) for r in
      ("gatewayclasses", "gateways", "grpcroutes", "httproutes", "referencegrants", "tcproutes", "tlsroutes")],
    ("authentication.k8s.io", "tokenreviews", ("create",)),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", ("list",)),
]


def unknown_keys(value: Any, known: dict, path: str) -> list[str]:
    """The keys of `value` (a parsed YAML mapping) that `known` does not have, as dotted paths."""
    out = []
    for key, sub in (value or {}).items() if isinstance(value, dict) else []:
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            out.append(where)
        elif isinstance(known[key], dict):
            out.extend(unknown_keys(sub, known[key], where))
    return out


def grants(rules: list, group: str, resource: str, verb: str) -> bool:
    return any(isinstance(r, dict)
               and any(g in (group, "*") for g in r.get("apiGroups") or [])
               and any(x in (resource, "*") for x in r.get("resources") or [])
               and any(v in (verb, "*") for v in r.get("verbs") or [])
               for r in rules)


def check_kiali(idx: Index, report: Report) -> None:
    for dep in idx.of_kind("Deployment"):
        kiali = [c for c in containers(dep, init=False) if str(c.get("image", "")).startswith(KIALI_IMAGE + ":")]
        if not kiali:
            continue
        where = dep.ref()
        tag = str(kiali[0]["image"]).split(":", 1)[1]
        if tag != KIALI_VERSION:
            report.problem(where, f"{KIALI_IMAGE}:{tag}, but the config keys and the role are checked "
                                  f"against {KIALI_VERSION}: update KIALI_VERSION, KIALI_CONFIG_KEYS and "
                                  f"KIALI_VIEWER_RULES from that release's config/config.go and role-viewer.yaml")
        for name, key, _optional, _how in configmap_refs(dep):
            cm = idx.find("ConfigMap", dep.namespace, name)
            text = ((cm.body.get("data") or {}) if cm else {}).get("config.yaml")
            if cm is None or key not in (None, "config.yaml") or not isinstance(text, str):
                continue
            try:
                config = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                report.problem(cm.ref(), f"config.yaml is not YAML: {e}")
                continue
            for k in unknown_keys(config, KIALI_CONFIG_KEYS, ""):
                report.problem(cm.ref(), f"config.yaml key {k!r} is not in Kiali {KIALI_VERSION}'s "
                                         "config/config.go: Kiali ignores it silently")
        sa = pod_spec(dep).get("serviceAccountName") or "default"
        rules: list = []
        for b in idx.of_kind("ClusterRoleBinding"):
            subjects = b.body.get("subjects") or []
            if any(isinstance(x, dict) and x.get("kind") == "ServiceAccount" and x.get("name") == sa
                   and x.get("namespace") == dep.namespace for x in subjects):
                role = idx.find("ClusterRole", None, str((b.body.get("roleRef") or {}).get("name")))
                rules.extend((role.body.get("rules") or []) if role else [])
        for group, resource, verbs in KIALI_VIEWER_RULES:
            missing = [v for v in verbs if not grants(rules, group, resource, v)]
            if missing:
                report.problem(where, f"ServiceAccount {sa} lacks {'/'.join(missing)} on "
                                      f"{group or 'core'} {resource} (kiali/helm-charts role-viewer.yaml "
                                      f"{KIALI_VERSION} grants it)")


# --------------------------------------------------------------------------------------------
# 3. Our rules


def check_documents(idx: Index, contract: list[dict], report: Report) -> None:
    seen: dict[tuple, Doc] = {}
    namespaces = idx.namespaces()
    ns_tier = {name: d.tier for name, d in namespaces.items()}
    for d in idx.docs:
        if not isinstance(d.body.get("apiVersion"), str) or not isinstance(d.body.get("kind"), str):
            report.problem(d.ref(), "apiVersion and kind must be strings")
        if not d.meta.get("name"):
            report.problem(d.ref(), "metadata.name missing")
        if d.kind in CLUSTER_SCOPED_KINDS:
            if d.namespace is not None:
                report.problem(d.ref(), f"{d.kind} is cluster-scoped: drop metadata.namespace")
        else:
            if d.namespace is None:
                report.problem(d.ref(), "metadata.namespace missing (kubectl would use the "
                                        "current context's namespace)")
            elif d.namespace not in namespaces and d.namespace not in EXTERNAL_NAMESPACES:
                report.problem(d.ref(), f"namespace {d.namespace!r} is defined nowhere")
            elif d.namespace in ns_tier and ns_tier[d.namespace] >= d.tier:
                report.problem(d.ref(), f"namespace {d.namespace} is created in tier "
                                        f"{ns_tier[d.namespace]}, not before {d.tier}")
        key = (d.group, d.kind, d.namespace, d.name)
        if key in seen:
            report.problem(d.ref(), f"defined twice (also {seen[key].ref()})")
        seen[key] = d
        if d.kind == "Secret":
            report.problem(d.ref(), "no Secret manifests: Secrets are generated by the bootstrap "
                                    "(see infra/k8s/secrets-contract.yaml)")

    # Namespaces: every one the stack uses, ambient, never sidecar injection.
    for name, ns in namespaces.items():
        labels = ns.meta.get("labels") or {}
        if labels.get(AMBIENT_LABEL[0]) != AMBIENT_LABEL[1]:
            report.problem(ns.ref(), f"label {AMBIENT_LABEL[0]}={AMBIENT_LABEL[1]} missing")
        if "istio-injection" in labels or "istio.io/rev" in labels:
            report.problem(ns.ref(), "sidecar injection label on an ambient namespace")

    deployments = idx.of_kind("Deployment")
    services = idx.of_kind("Service")
    for dep in deployments:
        where = dep.ref()
        spec = dep.spec
        if spec.get("replicas") != 1:
            report.problem(where, f"replicas {spec.get('replicas')!r}, want 1")
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        if match != {"app": dep.name}:
            report.problem(where, f"selector.matchLabels {match!r}, want {{app: {dep.name}}}")
        if pod_labels(dep).get("app") != dep.name:
            report.problem(where, f"pod template label app={dep.name} missing")
        for c in containers(dep):
            cwhere = f"{where} container {c.get('name')}"
            img = c.get("image")
            if not isinstance(img, str) or not img:
                report.problem(cwhere, "no image")
            else:
                msg = image_problem(img)
                if msg:
                    report.problem(cwhere, msg)
                if img.startswith("bookstore/") and c.get("imagePullPolicy") not in {"IfNotPresent", "Never"}:
                    report.problem(cwhere, "our images are `kind load`ed: imagePullPolicy must be "
                                           "IfNotPresent (or Never)")
            req = (c.get("resources") or {}).get("requests") or {}
            if "cpu" not in req or "memory" not in req:
                report.problem(cwhere, "resources.requests.cpu and .memory are required")
        for c in containers(dep, init=False):
            if not c.get("readinessProbe"):
                report.problem(f"{where} container {c.get('name')}", "no readinessProbe (then "
                                                                      "'rolled out' does not mean 'serving')")
        # Volumes: PVCs exist, and a Deployment holding a RWO claim is replaced, not rolled.
        for v in pod_spec(dep).get("volumes") or []:
            claim = ((v or {}).get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = idx.find("PersistentVolumeClaim", dep.namespace, claim)
            if pvc is None:
                report.problem(where, f"volume {v.get('name')}: no PersistentVolumeClaim "
                                      f"{dep.namespace}/{claim} in the manifests")
                continue
            if pvc.tier > dep.tier:
                report.problem(where, f"PersistentVolumeClaim {claim} comes in a later tier ({pvc.tier})")
            modes = pvc.spec.get("accessModes") or []
            if "ReadWriteOnce" in modes and (spec.get("strategy") or {}).get("type") != "Recreate":
                report.problem(where, f"mounts RWO claim {claim}: strategy.type must be Recreate "
                                      "(a rolling update would wait forever for the volume)")
        sa = pod_spec(dep).get("serviceAccountName")
        if sa and sa != "default" and idx.find("ServiceAccount", dep.namespace, sa) is None:
            report.problem(where, f"serviceAccountName {sa!r}: no such ServiceAccount in {dep.namespace}")
        # ConfigMaps it reads exist, with the keys it reads, no later than its tier.
        for name, key, optional, how in configmap_refs(dep):
            cm = idx.find("ConfigMap", dep.namespace, name)
            if cm is None:
                if not optional:
                    report.problem(where, f"{how}: no ConfigMap {dep.namespace}/{name}")
                continue
            if cm.tier > dep.tier:
                report.problem(where, f"{how}: ConfigMap {name} comes in a later tier ({cm.tier})")
            if key is not None and key not in (cm.body.get("data") or {}) | (cm.body.get("binaryData") or {}):
                report.problem(where, f"{how}: ConfigMap {name} has no key {key!r}")
        # Every workload answers on a ClusterIP Service.
        if not any(s.namespace == dep.namespace and s.spec.get("type", "ClusterIP") == "ClusterIP"
                   and selects(s.spec.get("selector") or {}, pod_labels(dep)) for s in services):
            report.problem(where, "no ClusterIP Service selects this workload")

    for pvc in idx.of_kind("PersistentVolumeClaim"):
        sc = pvc.spec.get("storageClassName")
        if sc not in (None, "standard"):
            report.problem(pvc.ref(), f"storageClassName {sc!r}: kind provides 'standard'")

    gateways = idx.of_kind("Gateway", GATEWAY_GROUP)
    node_ports: dict[int, Doc] = {}
    for svc in services:
        where = svc.ref()
        sel = svc.spec.get("selector") or {}
        if not sel:
            report.problem(where, "no selector")
            continue
        targets = [d for d in deployments if d.namespace == svc.namespace and selects(sel, pod_labels(d))]
        gw_targets = [g for g in gateways if g.namespace == svc.namespace
                      and sel == {"gateway.networking.k8s.io/gateway-name": g.name}]
        if not targets and not gw_targets:
            report.problem(where, f"selector {sel} matches no Deployment's pods and no Gateway in "
                                  f"{svc.namespace}")
        for p in svc.spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            for dep in targets:
                cports = [cp for c in containers(dep, init=False) for cp in c.get("ports") or []]
                if isinstance(tp, str):
                    ok = any(cp.get("name") == tp for cp in cports)
                else:
                    ok = any(cp.get("containerPort") == tp for cp in cports)
                if not ok:
                    report.problem(where, f"targetPort {tp!r} is not a container port of "
                                          f"Deployment {dep.name}")
            for gw in gw_targets:
                lports = [l.get("port") for l in gw.spec.get("listeners") or [] if isinstance(l, dict)]
                if tp not in lports:
                    report.problem(where, f"targetPort {tp!r} is not a listener port of Gateway "
                                          f"{gw.name} {lports}")
            if svc.spec.get("type") == "NodePort":
                np = p.get("nodePort")
                if np is None:
                    report.problem(where, "NodePort without an explicit nodePort (a random one is "
                                          "not reachable through kind's port mappings)")
                elif np in node_ports:
                    report.problem(where, f"nodePort {np} also used by {node_ports[np].ref()}")
                else:
                    node_ports[np] = svc

    check_secret_contract(idx, contract, report)


def check_secret_contract(idx: Index, contract: list[dict], report: Report) -> None:
    where_c = "infra/k8s/secrets-contract.yaml"
    declared: dict[tuple[str, str], dict[str, dict]] = {}
    for s in contract:
        if not isinstance(s, dict) or not s.get("name") or not s.get("namespace"):
            report.problem(where_c, f"entry {s!r} needs name and namespace")
            continue
        keys = {}
        for k in s.get("keys") or []:
            if not isinstance(k, dict) or not k.get("key"):
                report.problem(where_c, f"{s['namespace']}/{s['name']}: key entry {k!r} has no key")
                continue
            if k.get("value") not in {"random", "fixed", "copy", "properties"}:
                report.problem(where_c, f"{s['namespace']}/{s['name']} {k['key']}: value "
                                        f"{k.get('value')!r} (random, fixed, copy or properties)")
            keys[k["key"]] = k
        declared[(s["namespace"], s["name"])] = keys
    for (ns, name), keys in declared.items():
        for k in keys.values():
            if k.get("value") == "copy":
                src = str(k.get("from", "")).split("/")
                if len(src) != 3 or src[2] not in declared.get((src[0], src[1]), {}):
                    report.problem(where_c, f"{ns}/{name} {k['key']}: copy from {k.get('from')!r} "
                                            "names no declared key")
            if k.get("value") == "properties":
                for sub in k.get("keys") or []:
                    if sub not in keys:
                        report.problem(where_c, f"{ns}/{name} {k['key']}: property {sub!r} is not a "
                                                "key of this Secret")

    used: set[tuple[str, str]] = set()
    for dep in idx.of_kind("Deployment") + idx.of_kind("StatefulSet") + idx.of_kind("Job"):
        for name, key, how in secret_refs(dep):
            used.add((dep.namespace, name))
            keys = declared.get((dep.namespace, name))
            if keys is None:
                report.problem(dep.ref(), f"{how}: Secret {dep.namespace}/{name} is not in {where_c}")
            elif key is not None and key not in keys:
                report.problem(dep.ref(), f"{how}: Secret {dep.namespace}/{name} has no key {key!r} "
                                          f"in {where_c}")
    for ns, name in declared:
        if (ns, name) not in used:
            report.problem(where_c, f"Secret {ns}/{name} is declared but no manifest reads it")


# --------------------------------------------------------------------------------------------
# 4. Cross-checks with infra/stack.yaml and the kind cluster config


def deployments_behind_service(idx: Index, svc: Doc) -> list[Doc]:
    sel = svc.spec.get("selector") or {}
    return [d for d in idx.of_kind("Deployment")
            if d.namespace == svc.namespace and selects(sel, pod_labels(d))]


def node_port_service(idx: Index, port: int) -> Doc | None:
    for svc in idx.of_kind("Service"):
        if svc.spec.get("type") == "NodePort" and any(
                p.get("nodePort") == port for p in svc.spec.get("ports") or []):
            return svc
    return None


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host.count(".") > pattern.count(".") - 1
    return pattern == host


def path_matches(match: dict, path: str) -> tuple[int, int] | None:
    """A sortable precedence when the HTTPRoute match takes `path`, else None."""
    p = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = p.get("type", "PathPrefix"), p.get("value", "/")
    path_only = path.split("?", 1)[0]
    if kind == "Exact":
        return (2, len(value)) if path_only == value else None
    if kind == "PathPrefix":
        prefix = value.rstrip("/")
        if prefix == "" or path_only == prefix or path_only.startswith(prefix + "/"):
            return (1, len(prefix))
        return None
    return None  # RegularExpression: not resolved here


def route_backend(idx: Index, gw: Doc, host: str | None, path: str) -> tuple[Doc | None, str]:
    """The Service the gateway sends (host, path) to, with a description of the route taken."""
    best: tuple[tuple[int, int], Doc, dict] | None = None
    for rt in idx.of_kind("HTTPRoute", GATEWAY_GROUP):
        if not any(p.get("name") == gw.name and p.get("namespace", rt.namespace) == gw.namespace
                   for p in rt.spec.get("parentRefs") or [] if isinstance(p, dict)):
            continue
        hostnames = rt.spec.get("hostnames") or []
        if hostnames and (host is None or not any(host_matches(h, host) for h in hostnames)):
            continue
        for rule in rt.spec.get("rules") or []:
            for m in rule.get("matches") or [{}]:
                prec = path_matches(m, path)
                if prec is not None and (best is None or prec > best[0]):
                    best = (prec, rt, rule)
    if best is None:
        return None, "no HTTPRoute matches"
    _, rt, rule = best
    b = (rule.get("backendRefs") or [{}])[0]
    svc = idx.find("Service", b.get("namespace", rt.namespace), b.get("name", "?"))
    return svc, f"HTTPRoute {rt.namespace}/{rt.name} -> Service {b.get('namespace', rt.namespace)}/{b.get('name')}"


def check_stack(idx: Index, stack: dict, cluster: dict, contract: list[dict], repo: Path,
                report: Report) -> None:
    where_s = "infra/stack.yaml"
    workloads = {w.get("name"): w for w in stack.get("workloads") or [] if isinstance(w, dict)}
    deployments = {(d.namespace, d.name): d for d in idx.of_kind("Deployment")}
    namespaces = idx.namespaces()
    for name, w in workloads.items():
        ns = w.get("namespace")
        if ns not in namespaces:
            report.problem(where_s, f"workload {name}: namespace {ns} is not defined in infra/k8s")
        dep = deployments.get((ns, name))
        if dep is None:
            others = [f"{d.namespace or '(no namespace)'}/{d.name}" for d in deployments.values()
                      if d.name == name]
            hint = f" (found {', '.join(others)})" if others else ""
            report.problem(where_s, f"workload {name}: no Deployment {ns}/{name} with label app={name} "
                                    f"in infra/k8s{hint}")
        for need in w.get("needs") or []:
            if need not in workloads:
                report.problem(where_s, f"workload {name}: needs unknown workload {need}")

    # Host ports: each kind containerPort has its NodePort Service, and no NodePort is unreachable.
    mapped: set[int] = set()
    for node in cluster.get("nodes") or []:
        for m in (node or {}).get("extraPortMappings") or []:
            mapped.add(m.get("containerPort"))
    for port in sorted(p for p in mapped if isinstance(p, int)):
        if node_port_service(idx, port) is None:
            report.problem("infra/kind/cluster.yaml", f"containerPort {port}: no NodePort Service "
                                                     f"with nodePort {port} in infra/k8s")
    for svc in idx.of_kind("Service"):
        for p in svc.spec.get("ports") or []:
            np = p.get("nodePort")
            if np is not None and np not in mapped:
                report.problem(svc.ref(), f"nodePort {np} is not a containerPort of "
                                          "infra/kind/cluster.yaml (unreachable from the host)")

    # Smoke checks: each port and route reaches the workload it claims to test.
    for check in (stack.get("smoke") or {}).get("checks") or []:
        where = f"{where_s} smoke check {check.get('name')}"
        port, serves = check.get("port"), check.get("serves")
        svc = node_port_service(idx, port)
        if svc is None:
            report.problem(where, f"no NodePort Service with nodePort {port}")
            continue
        sel = svc.spec.get("selector") or {}
        gw_name = sel.get("gateway.networking.k8s.io/gateway-name")
        if gw_name:
            gw = idx.find("Gateway", svc.namespace, gw_name, GATEWAY_GROUP)
            if gw is None:
                report.problem(where, f"{svc.ref()} selects Gateway {gw_name}, which is not defined")
                continue
            backend, how = route_backend(idx, gw, check.get("host"), check.get("path", "/"))
            if backend is None:
                report.problem(where, f"Host {check.get('host')} path {check.get('path')}: {how} on "
                                      f"Gateway {gw.namespace}/{gw.name}")
                continue
            targets = deployments_behind_service(idx, backend)
        else:
            how = svc.ref()
            targets = deployments_behind_service(idx, svc)
        if serves not in {d.name for d in targets}:
            got = ", ".join(f"{d.namespace}/{d.name}" for d in targets) or "nothing"
            report.problem(where, f"serves {serves}, but port {port} path {check.get('path')} reaches "
                                  f"{got} ({how})")

    check_connect(idx, stack, contract, repo, report)


def check_connect(idx: Index, stack: dict, contract: list[dict], repo: Path, report: Report) -> None:
    where_s = "infra/stack.yaml connect"
    connect = stack.get("connect") or {}
    if not connect:
        return
    wname = connect.get("workload")
    workloads = {w.get("name"): w for w in stack.get("workloads") or [] if isinstance(w, dict)}
    wns = (workloads.get(wname) or {}).get("namespace")
    dep = idx.find("Deployment", wns, wname)
    if dep is None:
        report.problem(where_s, f"workload {wname}: no Deployment {wns}/{wname}")
        return
    svc = node_port_service(idx, connect.get("port"))
    if svc is None or dep not in deployments_behind_service(idx, svc):
        report.problem(where_s, f"port {connect.get('port')}: no NodePort Service reaching {wname}")
    secret = connect.get("secret") or {}
    if secret.get("namespace") != dep.namespace:
        report.problem(where_s, f"secret namespace {secret.get('namespace')} is not {wname}'s "
                                f"namespace {dep.namespace}")
    secret_names = {name for name, _, _ in secret_refs(dep)}
    if secret.get("name") not in secret_names:
        report.problem(where_s, f"Deployment {wname} does not read Secret {secret.get('name')}")
    contract_keys: dict[str, dict] = {}
    for s in contract:
        if s.get("namespace") == secret.get("namespace") and s.get("name") == secret.get("name"):
            contract_keys = {k.get("key"): k for k in s.get("keys") or [] if isinstance(k, dict)}

    worker = next(iter(containers(dep, init=False)), {})
    providers = [p.strip() for p in (env_value(worker, "CONNECT_CONFIG_PROVIDERS") or "").split(",") if p.strip()]
    allowed = env_value(worker, "CONNECT_CONFIG_PROVIDERS_FILE_PARAM_ALLOWED_PATHS")
    mounts = {m.get("name"): m for m in worker.get("volumeMounts") or []}
    volumes = {v.get("name"): v for v in pod_spec(dep).get("volumes") or []}

    def file_source(path: str) -> tuple[str, str] | None:
        """(Secret name, key) whose content the worker sees at `path`, if a Secret is mounted there."""
        for vname, m in mounts.items():
            base = str(m.get("mountPath", "")).rstrip("/") + "/"
            if not path.startswith(base):
                continue
            rel = path[len(base):]
            sec = (volumes.get(vname) or {}).get("secret")
            if not sec:
                continue
            items = sec.get("items")
            if items:
                for it in items:
                    if it.get("path") == rel:
                        return sec.get("secretName"), it.get("key")
            elif "/" not in rel:
                return sec.get("secretName"), rel
        return None

    for c in connect.get("connectors") or []:
        cfile = repo / "infra" / str(c.get("file"))
        where = f"infra/{c.get('file')}"
        try:
            body = json.loads(cfile.read_text())
        except (OSError, ValueError) as e:
            report.problem(where, f"cannot read connector: {e}")
            continue
        config = body.get("config") if isinstance(body, dict) else None
        if not isinstance(config, dict):
            report.problem(where, "no config object (the POST wrapper format is expected)")
            continue
        for field_name, key_name in (("database.user", c.get("user_key")),
                                     ("database.password", c.get("password_key"))):
            value = str(config.get(field_name, ""))
            found = PLACEHOLDER.findall(value)
            if not found:
                continue  # inline value: nothing to resolve
            for alias, path, key in found:
                fwhere = f"{where} {field_name}"
                if alias not in providers:
                    report.problem(fwhere, f"placeholder alias {alias!r} is not declared by the worker "
                                           f"(CONNECT_CONFIG_PROVIDERS={','.join(providers) or 'unset'}); "
                                           "it would stay literal")
                    continue
                cls = env_value(worker, f"CONNECT_CONFIG_PROVIDERS_{alias.upper()}_CLASS")
                if cls != "org.apache.kafka.common.config.provider.FileConfigProvider":
                    report.problem(fwhere, f"provider {alias!r} class is {cls!r}; only the "
                                           "FileConfigProvider form ${file:<path>:<key>} is checked")
                    continue
                if not path:
                    report.problem(fwhere, f"${{{alias}:{key}}} has no path: FileConfigProvider "
                                           "returns nothing and the placeholder stays literal")
                    continue
                if allowed and not any(path.startswith(a.rstrip("/") + "/") for a in allowed.split(",")):
                    report.problem(fwhere, f"{path} is outside the provider's allowed.paths {allowed}")
                src = file_source(path)
                if src is None:
                    report.problem(fwhere, f"{path} is not a file the {wname} worker mounts from a Secret")
                    continue
                sname, skey = src
                if sname != secret.get("name"):
                    report.problem(fwhere, f"{path} comes from Secret {sname}, stack.yaml names "
                                           f"{secret.get('name')}")
                entry = contract_keys.get(skey) or {}
                if entry.get("value") != "properties":
                    report.problem(fwhere, f"Secret key {skey!r} behind {path} is not declared as a "
                                           "properties file in infra/k8s/secrets-contract.yaml")
                elif key not in (entry.get("keys") or []):
                    report.problem(fwhere, f"property {key!r} is not in {skey} "
                                           f"({entry.get('keys')})")
                if key != key_name:
                    report.problem(fwhere, f"placeholder key {key!r} differs from stack.yaml's "
                                           f"{'user_key' if field_name == 'database.user' else 'password_key'} "
                                           f"{key_name!r}")
        for k in (c.get("user_key"), c.get("password_key")):
            if k not in contract_keys:
                report.problem(where_s, f"{c.get('file')}: key {k!r} is not in Secret "
                                        f"{secret.get('namespace')}/{secret.get('name')} of "
                                        "infra/k8s/secrets-contract.yaml")
        # The database it captures: a Service of ours, the right DB, logical decoding on.
        host = str(config.get("database.hostname", ""))
        m = re.match(r"^([a-z0-9-]+)\.([a-z0-9-]+)(\.svc(\.cluster\.local)?)?$", host)
        db_svc = idx.find("Service", m.group(2), m.group(1)) if m else None
        if db_svc is None:
            report.problem(where, f"database.hostname {host!r} is not a Service in infra/k8s")
            continue
        dbs = deployments_behind_service(idx, db_svc)
        if not any(d.name in (c.get("needs") or []) for d in dbs):
            report.problem(where, f"database.hostname {host} reaches "
                                  f"{[d.name for d in dbs]}, stack.yaml needs {c.get('needs')}")
        for d in dbs:
            pg = next(iter(containers(d, init=False)), {})
            if env_value(pg, "POSTGRES_DB") != str(config.get("database.dbname")):
                report.problem(where, f"database.dbname {config.get('database.dbname')!r} but "
                                      f"{d.name} creates POSTGRES_DB={env_value(pg, 'POSTGRES_DB')!r}")
            args = " ".join(str(a) for a in (pg.get("args") or []) + (pg.get("command") or []))
            if config.get("plugin.name") == "pgoutput" and "wal_level=logical" not in args:
                report.problem(d.ref(), "Debezium (pgoutput) needs Postgres started with "
                                        "-c wal_level=logical")


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k8s-version", action="append", dest="versions",
                    help=f"Kubernetes version to validate against, repeatable "
                         f"(default: {', '.join(KIND_K8S_VERSIONS)})")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="repository root (default: this script's parent directory)")
    args = ap.parse_args(argv)
    versions = args.versions or KIND_K8S_VERSIONS
    repo: Path = args.repo.resolve()

    try:
        import jsonschema  # noqa: F401 (used by check_gateway_schemas)
        import kubernetes_validate
    except ImportError as e:
        sys.stderr.write(f"error: the Python package {e.name} is missing: {PIP_LINE}\n")
        return 2
    from importlib.metadata import version as installed
    for package, pin in [("kubernetes-validate", KUBERNETES_VALIDATE_PIN), ("jsonschema", JSONSCHEMA_PIN)]:
        if installed(package) != pin:
            print(f"note: {package} {installed(package)} installed, {pin} pinned ({PIP_LINE})")

    from kubernetes_validate import utils as kv_utils
    bundled = sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()},
                     key=lambda v: tuple(int(x) for x in v.split(".")))
    missing = [v for v in versions if kv_utils.major_minor(v.lstrip("v")) not in bundled]
    if missing:
        sys.stderr.write(f"error: kubernetes-validate {kubernetes_validate.__version__} bundles "
                         f"schemas for Kubernetes {bundled[0]}..{bundled[-1]}, not {', '.join(missing)}\n")
        return 2

    report = Report()
    stack_path = repo / "infra" / "stack.yaml"
    stack = load_yaml_file(stack_path, report, Path("infra/stack.yaml")) or {}
    cluster_rel = str(stack.get("cluster", "kind/cluster.yaml"))
    cluster = load_yaml_file(repo / "infra" / cluster_rel, report, Path("infra") / cluster_rel) or {}
    contract_doc = load_yaml_file(repo / "infra/k8s/secrets-contract.yaml", report,
                                  Path("infra/k8s/secrets-contract.yaml")) or {}
    contract = contract_doc.get("secrets") or []
    if not stack or not cluster:
        for p in report.problems:
            print(p)
        sys.stderr.write("error: cannot read infra/stack.yaml or the kind cluster config\n")
        return 2

    docs = load_docs(repo / "infra" / "k8s", repo, report)
    idx = Index(docs)
    schema_checked, custom = check_schemas(docs, versions, report)
    check_gateway_schemas(idx, gateway_api_schemas(repo, stack, report), report)
    check_gateway_api(idx, report)
    check_documents(idx, contract, report)
    check_stack(idx, stack, cluster, contract, repo, report)
    check_kiali(idx, report)

    for n in report.notes:
        print(n)
    for p in report.problems:
        print(p)
    tiers = sorted({d.tier for d in docs})
    print(f"{schema_checked} documents checked against the Kubernetes {' and '.join(versions)} schemas "
          f"(kubernetes-validate {kubernetes_validate.__version__}, strict); {custom} Gateway API "
          f"resources against the Gateway API {GATEWAY_API_VERSION} standard-install CRDs' openAPIV3Schema "
          f"(jsonschema {installed('jsonschema')}, "
          f"strict; their CEL rules not evaluated) and by reference; tiers: {', '.join(tiers)}")
    print(f"validated {len(docs)} documents, {len(report.problems)} problems")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
