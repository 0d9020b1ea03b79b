//! Images on the host and in the node: the local Docker image store (what `docker build` left),
//! the archive `docker save` writes (`GET /images/get`), and the node's containerd importing one
//! the way kind does (`ctr --namespace=k8s.io images import --all-platforms --digests`,
//! kubernetes-sigs/kind `pkg/cluster/nodeutils/util.go`).
//!
//! Under Docker's containerd image store a locally built image is an OCI index: the platform's
//! manifest and the provenance attestation BuildKit adds by default (`unknown/unknown`,
//! `vnd.docker.reference.type: attestation-manifest`). A plain `docker save` writes that index,
//! but not the attestation manifest it references (containerd/containerd#11344), so an
//! all-platforms import stops at `ctr: content digest sha256:…: not found` (kind#3795).
//! `docker image save --platform` (API ≥ 1.48) writes only that platform's manifest, which
//! imports. The classic store keeps one manifest per image and saves it whole.
//!
//! Digests are stable names (`container_id`), not hashes of the content: nothing here checks them.

use serde_json::{Value, json};

use crate::world::{World, container_id};

/// The platform of the Docker daemon, and so of the kind node (its container runs natively).
pub const NODE_OS: &str = "linux";
pub const NODE_ARCH: &str = "amd64";

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The image's ID as `docker image inspect` shows it: under the containerd store the digest of
/// its index, under the classic store the digest of its config.
pub fn image_id(name: &str) -> String {
    format!("sha256:{}", container_id(name, 7))
}

fn digest(name: &str, part: u64) -> String {
    format!("sha256:{}", container_id(name, 100 + part))
}

/// A requested platform (`platform` query parameter: the JSON of an OCI platform).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    pub fn parse(text: &str) -> Option<Platform> {
        let v: Value = serde_json::from_str(text).ok()?;
        Some(Platform {
            os: v.get("os")?.as_str()?.to_string(),
            architecture: v.get("architecture").and_then(Value::as_str).unwrap_or(NODE_ARCH).to_string(),
        })
    }

    fn is_node(&self) -> bool {
        self.os == NODE_OS && self.architecture == NODE_ARCH
    }
}

/// `GET /images/get?names=…[&platform=…]`: the archive `docker save` writes, or the daemon's
/// error (status, message).
pub fn save(w: &World, names: &[String], platform: Option<&Platform>) -> Result<Vec<u8>, (u16, String)> {
    if let Some(missing) = names.iter().find(|n| !w.opts.images.contains(n)) {
        return Err((404, format!("reference does not exist: {missing}")));
    }
    if let Some(p) = platform
        && !p.is_node()
    {
        return Err((
            404,
            format!(
                "no suitable export target found: image {} has no content for platform {}/{}",
                names.first().map(String::as_str).unwrap_or(""),
                p.os,
                p.architecture
            ),
        ));
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut top = Vec::new();
    let mut compat = Vec::new();
    for name in names {
        let (config, layer, manifest) = (digest(name, 4), digest(name, 5), digest(name, 2));
        let manifest_doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 1024}]});
        files.push((blob(&manifest), manifest_doc.to_string().into_bytes()));
        files.push((blob(&config), b"{}".to_vec()));
        files.push((blob(&layer), vec![0u8; 1024]));
        let names_annotations = json!({"io.containerd.image.name": crate::troubles::qualified_image(name),
            "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")});
        if w.opts.containerd_store && platform.is_none() {
            // The whole index, the attestation manifest's blob not among the files.
            let index = image_id(name);
            let attestation = digest(name, 3);
            let index_doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": manifest, "size": manifest_doc.to_string().len(),
                 "platform": {"architecture": NODE_ARCH, "os": NODE_OS}},
                {"mediaType": OCI_MANIFEST, "digest": attestation, "size": 566,
                 "annotations": {"vnd.docker.reference.digest": manifest,
                                 "vnd.docker.reference.type": "attestation-manifest"},
                 "platform": {"architecture": "unknown", "os": "unknown"}}]});
            files.push((blob(&index), index_doc.to_string().into_bytes()));
            top.push(json!({"mediaType": OCI_INDEX, "digest": index, "size": index_doc.to_string().len(),
                            "annotations": names_annotations}));
        } else {
            top.push(json!({"mediaType": OCI_MANIFEST, "digest": manifest,
                            "size": manifest_doc.to_string().len(), "annotations": names_annotations}));
        }
        compat.push(json!({"Config": blob(&config), "RepoTags": [name], "Layers": [blob(&layer)]}));
    }
    files.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    files.push((
        "index.json".into(),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": top}).to_string().into_bytes(),
    ));
    files.push(("manifest.json".into(), Value::Array(compat).to_string().into_bytes()));
    Ok(tar(&files))
}

fn blob(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// `ctr images import --all-platforms --digests`: every manifest of every index, with its config
/// and layers, must be in the archive. The names imported, or the first digest not found.
pub fn import_all_platforms(archive: &[u8]) -> Result<Vec<String>, String> {
    let files = untar(archive).map_err(|e| format!("ctr: {e}"))?;
    let get = |path: &str| files.iter().find(|(n, _)| n == path).map(|(_, b)| b.as_slice());
    let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null);
    let need = |d: &str| -> Result<Value, String> {
        get(&blob(d)).map(parse).ok_or_else(|| format!("ctr: content digest {d}: not found"))
    };
    let Some(index) = get("index.json").map(parse) else {
        return Err("ctr: unrecognized image format".into());
    };
    let mut names = Vec::new();
    for top in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let d = top.get("digest").and_then(Value::as_str).unwrap_or("");
        let doc = need(d)?;
        let manifests: Vec<Value> = match doc.get("manifests").and_then(Value::as_array) {
            Some(children) => children.clone(),
            None => vec![top.clone()],
        };
        for m in manifests {
            let md = m.get("digest").and_then(Value::as_str).unwrap_or("");
            let manifest = need(md)?;
            let config = manifest.pointer("/config/digest").and_then(Value::as_str).unwrap_or("");
            get(&blob(config)).ok_or_else(|| format!("ctr: content digest {config}: not found"))?;
            for layer in manifest.get("layers").and_then(Value::as_array).into_iter().flatten() {
                let ld = layer.get("digest").and_then(Value::as_str).unwrap_or("");
                get(&blob(ld)).ok_or_else(|| format!("ctr: content digest {ld}: not found"))?;
            }
        }
        if let Some(n) = top.pointer("/annotations/io.containerd.image.name").and_then(Value::as_str) {
            names.push(n.to_string());
        }
    }
    Ok(names)
}

/// A ustar archive of these files.
fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn untar(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let h = &bytes[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).to_string();
        let size_text = String::from_utf8_lossy(&h[124..136]);
        let size = usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| "archive/tar: invalid tar header".to_string())?;
        let start = at + 512;
        let end = start + size;
        if end > bytes.len() {
            return Err("unexpected EOF".into());
        }
        files.push((name, bytes[start..end].to_vec()));
        at = start + size.div_ceil(512) * 512;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_round_trips() {
        let files =
            vec![("index.json".to_string(), b"{}".to_vec()), ("blobs/sha256/ab".into(), vec![7; 600])];
        assert_eq!(untar(&tar(&files)).unwrap(), files);
        assert!(untar(b"not a tar").unwrap().is_empty());
    }
}
