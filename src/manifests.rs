//! The stack's Kubernetes manifests as data: every document of every tier folder, read and
//! checked when the stack loads (so a missing folder or a broken document is exit 2 before the
//! first change), with what it deploys and which images its pods run. Pure: `stack` reads the
//! files, this parses them.

use serde_json::Value;

/// One document of a manifest file, as written (so `kubectl apply` gets exactly the file's text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// The file, relative to the stack file (`k8s/10-databases/ecom-db.yaml`).
    pub file: String,
    /// The line of the file the document starts on (1-based).
    pub line: usize,
    pub text: String,
    pub kind: String,
    pub name: String,
    /// `metadata.namespace` (None for cluster-scoped objects).
    pub namespace: Option<String>,
    /// The images of its pod template (containers and init containers), for workload kinds.
    pub images: Vec<String>,
    /// A Service's `(nodePort, port)` pairs: where a kind host port lands in the cluster, and the
    /// Service port a `kubectl port-forward` to it names on a shared cluster.
    pub node_ports: Vec<(u16, u16)>,
}

impl Doc {
    /// A Deployment (namespace, name), the unit the bootstrap waits for.
    pub fn deployment(&self) -> Option<(&str, &str)> {
        (self.kind == "Deployment")
            .then(|| (self.namespace.as_deref().unwrap_or("default"), self.name.as_str()))
    }
}

/// Split a manifest file into its documents (the lines that are exactly `---` separate them, as
/// kubectl's YAML reader does) and check each: a mapping with `apiVersion`, `kind` and
/// `metadata.name`. Documents holding only comments are skipped.
pub fn parse(file: &str, text: &str) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    let mut chunk = String::new();
    let mut start = 1;
    let mut flush = |chunk: &mut String, start: usize| -> Result<(), String> {
        let body = std::mem::take(chunk);
        if body.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            return Ok(());
        }
        let doc = document(file, start, &body).map_err(|p| format!("document at line {start}: {p}"))?;
        docs.push(doc);
        Ok(())
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            flush(&mut chunk, start)?;
            start = i + 2;
        } else {
            chunk.push_str(line);
        }
    }
    flush(&mut chunk, start)?;
    if docs.is_empty() {
        return Err("holds no Kubernetes objects".into());
    }
    Ok(docs)
}

fn document(file: &str, line: usize, text: &str) -> Result<Doc, String> {
    // Parsed after `line - 1` empty lines, so the parser's line numbers are the file's.
    let padded = "\n".repeat(line.saturating_sub(1)) + text;
    let value: Value = serde_saphyr::from_str(&padded).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("is not a mapping (expected a Kubernetes object)".into());
    }
    let field = |path: &str| -> Result<String, String> {
        match value.pointer(path) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => {
                Err(format!("`{}` is not a non-empty string", path.trim_start_matches('/').replace('/', ".")))
            }
            None => Err(format!("has no `{}`", path.trim_start_matches('/').replace('/', "."))),
        }
    };
    field("/apiVersion")?;
    let kind = field("/kind")?;
    let name = field("/metadata/name")?;
    let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from);
    let template = match kind.as_str() {
        "Pod" => Some(&value),
        "CronJob" => value.pointer("/spec/jobTemplate/spec/template"),
        _ => value.pointer("/spec/template"),
    };
    let mut images = Vec::new();
    if let Some(spec) = template.and_then(|t| t.get("spec")) {
        for list in ["initContainers", "containers"] {
            for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                if let Some(image) = c.get("image").and_then(Value::as_str)
                    && !images.iter().any(|i| i == image)
                {
                    images.push(image.to_string());
                }
            }
        }
    }
    let node_ports = match kind.as_str() {
        "Service" => value
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let num = |k: &str| p.get(k).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
                Some((num("nodePort")?, num("port")?))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Doc {
        file: file.to_string(),
        line,
        text: text.to_string(),
        kind,
        name,
        namespace,
        images,
        node_ports,
    })
}

/// The documents as one stream for `kubectl apply -f -`.
pub fn stream<'a>(docs: impl IntoIterator<Item = &'a Doc>) -> String {
    docs.into_iter().map(|d| d.text.trim_end()).collect::<Vec<_>>().join("\n---\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_and_described() {
        let text = "# header\n---\napiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: ns}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\n  namespace: ns\nspec:\n  \
                    template:\n    spec:\n      initContainers: [{name: i, image: busybox:1}]\n      \
                    containers: [{name: c, image: postgres:16}, {name: d, image: busybox:1}]\n--- # end\n";
        let docs = parse("k8s/x.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].kind.as_str(), docs[0].line), ("Service", 3));
        assert_eq!(docs[1].deployment(), Some(("ns", "db")));
        assert_eq!(docs[1].images, ["busybox:1", "postgres:16"]);
        assert_eq!(docs[1].line, 7);
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: infra}\nspec:\n  type: NodePort\n  \
                   ports:\n    - {name: http, port: 80, targetPort: 8080, nodePort: 30000}\n    - {port: 81}\n";
        assert_eq!(parse("f", svc).unwrap()[0].node_ports, [(30000, 80)]);
        assert!(
            stream(&docs)
                .contains("kind: Service\nmetadata: {name: db, namespace: ns}\n---\napiVersion: apps/v1")
        );
    }

    #[test]
    fn broken_documents_are_named_with_their_line() {
        let no_name = parse("f", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert_eq!(no_name, "document at line 1: has no `metadata.name`");
        let bad =
            parse("f", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n").unwrap_err();
        assert!(bad.starts_with("document at line 5: "), "{bad}");
        assert!(parse("f", "- a\n- b\n").unwrap_err().contains("not a mapping"));
        assert_eq!(parse("f", "# nothing\n").unwrap_err(), "holds no Kubernetes objects");
    }
}
