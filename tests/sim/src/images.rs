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
//! Downloads (`Link`): one link of `SimOptions::bandwidth_mb_s` shared by every transfer at once,
//! the host's `docker pull`s and the node's kubelet pulls alike; an image's size is in
//! `latency::IMAGE_SIZES_MB`. The kubelet pulls one image at a time (`serializeImagePulls: true`,
//! its default: `pkg/kubelet/images/puller.go`'s serial puller works a queue) unless the kind
//! config's `KubeletConfiguration` patch turns that off, then up to `maxParallelImagePulls` at
//! once. A pulled or `kind load`ed image stays in the node until the cluster is deleted.
//!
//! The node's import (`Importer`): kind runs `ctr --namespace=k8s.io images import --all-platforms
//! --digests --snapshotter=… -` in the node for each `kind load` (kind `pkg/cluster/nodeutils/
//! util.go` `LoadImageArchive`, after `docker save` on the host for `load docker-image`). Nothing
//! serializes two loads: each is its own kind process (one import per node, `errors.
//! UntilErrorConcurrent`), and containerd takes two imports at once (its content store locks a
//! digest being written, not the store). What they share is the machine doing the work: the disk
//! of Docker's VM (the archive written and read back through `docker exec`, the content written,
//! the layers unpacked into the snapshotter) and its cores. So a load first pays its own start,
//! in parallel with any other (kind's `docker` calls: the nodes listed, the snapshotter read from
//! `containerd config dump`, and for `load docker-image` each image inspected on the host and
//! looked up in the node: `latency::KIND_LOAD_START_S`, `KIND_LOAD_PER_IMAGE_S`), then its bytes
//! go through one pipe of `LOAD_MB_S` shared equally by the imports under way (processor
//! sharing, like the download link): two at once end together no sooner than one after the
//! other would, and the first needed of them later.
//!
//! Digests are stable names (`container_id`), not hashes of the content: nothing here checks them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

/// Where a download lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The host's Docker image store (`docker pull`).
    Host,
    /// The node's containerd (the kubelet's pull).
    Node,
}

#[derive(Debug, Clone)]
pub struct Transfer {
    /// Qualified name (`docker.io/library/postgres:16.9-alpine`).
    pub image: String,
    pub store: Store,
    pub remaining_mb: f64,
}

/// The kubelet's image puller, as the kind config's `KubeletConfiguration` sets it.
#[derive(Debug, Clone)]
pub struct Puller {
    pub serialize: bool,
    /// `maxParallelImagePulls` (no limit when unset), only when not serialized.
    pub max_parallel: Option<usize>,
    /// Pull requests waiting for the puller, first come first served.
    pub queue: VecDeque<String>,
}

impl Default for Puller {
    fn default() -> Self {
        Puller { serialize: true, max_parallel: None, queue: VecDeque::new() }
    }
}

impl Puller {
    /// The kubelet's settings from a kind config's `kubeadmConfigPatches` (kind patches the
    /// `KubeletConfiguration` of its kubeadm config with them; unset means the kubelet default).
    pub fn from_patches<'a>(patches: impl IntoIterator<Item = &'a String>) -> Puller {
        let mut p = Puller::default();
        for patch in patches {
            for doc in patch.split("\n---") {
                let Ok(v) = serde_saphyr::from_str::<Value>(doc) else { continue };
                if v.get("kind").and_then(Value::as_str) != Some("KubeletConfiguration") {
                    continue;
                }
                if let Some(b) = v.get("serializeImagePulls").and_then(Value::as_bool) {
                    p.serialize = b;
                }
                if let Some(n) = v.get("maxParallelImagePulls").and_then(Value::as_u64) {
                    p.max_parallel = Some(n as usize);
                }
            }
        }
        p
    }

    fn limit(&self) -> usize {
        if self.serialize { 1 } else { self.max_parallel.unwrap_or(usize::MAX) }
    }
}

/// The machine's download link.
#[derive(Debug)]
pub struct Link {
    pub bandwidth_mb_s: f64,
    pub transfers: Vec<Transfer>,
    pub puller: Puller,
    last: Instant,
}

impl Link {
    pub fn new(bandwidth_mb_s: f64) -> Link {
        Link { bandwidth_mb_s, transfers: Vec::new(), puller: Puller::default(), last: Instant::now() }
    }

    fn share(&self) -> f64 {
        self.bandwidth_mb_s / self.transfers.len().max(1) as f64
    }

    /// Move every transfer on to `now` (simulated seconds are real seconds / `scale`); the ones
    /// that finished.
    pub fn advance(&mut self, now: Instant, scale: f64) -> Vec<Transfer> {
        let secs = now.saturating_duration_since(self.last).as_secs_f64() / scale.max(1e-9);
        self.last = self.last.max(now);
        let share = self.share();
        for t in &mut self.transfers {
            t.remaining_mb -= share * secs;
        }
        let (done, left): (Vec<Transfer>, Vec<Transfer>) =
            std::mem::take(&mut self.transfers).into_iter().partition(|t| t.remaining_mb <= 1e-6);
        self.transfers = left;
        done
    }

    /// When the first running transfer finishes at today's shares.
    pub fn next_done(&self, scale: f64) -> Option<Instant> {
        let share = self.share();
        let mb = self.transfers.iter().map(|t| t.remaining_mb).fold(f64::INFINITY, f64::min);
        mb.is_finite().then(|| self.last + Duration::from_secs_f64((mb / share * scale).max(0.0)))
    }

    pub fn in_flight(&self, image: &str, store: Store) -> bool {
        self.transfers.iter().any(|t| t.image == image && t.store == store)
    }

    /// Start a download (once per image and store). Call `advance` first: shares change.
    pub fn start(&mut self, image: &str, store: Store) {
        if !self.in_flight(image, store) {
            self.transfers.push(Transfer {
                image: image.to_string(),
                store,
                remaining_mb: crate::latency::image_mb(image),
            });
        }
    }

    /// The kubelet asks for an image a pod needs.
    pub fn request(&mut self, image: &str) {
        if !self.in_flight(image, Store::Node) && !self.puller.queue.iter().any(|q| q == image) {
            self.puller.queue.push_back(image.to_string());
        }
    }

    /// Start queued kubelet pulls while the puller allows.
    pub fn pump(&mut self) {
        while self.transfers.iter().filter(|t| t.store == Store::Node).count() < self.puller.limit() {
            let Some(next) = self.puller.queue.pop_front() else { break };
            self.start(&next, Store::Node);
        }
    }
}

/// The node's image import: the bytes of the `kind load`s under way, sharing `rate_mb_s`.
#[derive(Debug)]
pub struct Importer {
    pub rate_mb_s: f64,
    /// (load id, MB left).
    jobs: Vec<(u64, f64)>,
    next_id: u64,
    last: Instant,
}

impl Importer {
    pub fn new(rate_mb_s: f64) -> Importer {
        Importer { rate_mb_s, jobs: Vec::new(), next_id: 0, last: Instant::now() }
    }

    /// Move the imports under way on to `now` (simulated seconds are real ones / `scale`).
    pub fn advance(&mut self, now: Instant, scale: f64) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64() / scale.max(1e-9);
        self.last = self.last.max(now);
        let share = self.rate_mb_s / self.jobs.len().max(1) as f64;
        for (_, left) in &mut self.jobs {
            *left -= share * secs;
        }
        self.jobs.retain(|(_, left)| *left > 1e-6);
    }

    /// A load's bytes join the pipe (call `advance` first: the shares change); its id.
    pub fn start(&mut self, mb: f64) -> u64 {
        self.next_id += 1;
        self.jobs.push((self.next_id, mb));
        self.next_id
    }

    /// Whether load `id` is still importing.
    pub fn busy(&self, id: u64) -> bool {
        self.jobs.iter().any(|(j, _)| *j == id)
    }

    /// When load `id` is done at today's shares.
    pub fn done_at(&self, id: u64, scale: f64) -> Option<Instant> {
        let share = self.rate_mb_s / self.jobs.len().max(1) as f64;
        let (_, left) = self.jobs.iter().find(|(j, _)| *j == id)?;
        Some(self.last + Duration::from_secs_f64((left / share * scale).max(0.0)))
    }

    /// How many loads are importing.
    pub fn under_way(&self) -> usize {
        self.jobs.len()
    }
}

/// What the world's images did during a run (the audit's `pod-pulling`, `image-loaded` and
/// `image-pulled` events, against the pod templates of the cluster now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAudit {
    /// Pods created before every image of theirs was in the node: (namespace/pod, the images
    /// the kubelet then pulled).
    pub pulled_for: Vec<(String, Vec<String>)>,
    /// Images `kind load`ed into the node, in order (a name once per load).
    pub loaded: Vec<String>,
    /// Loaded, but no Deployment's or DaemonSet's pods run them.
    pub loaded_unused: Vec<String>,
    /// Images downloaded by the node's kubelet.
    pub node_pulls: Vec<String>,
}

impl ImageAudit {
    pub fn of(w: &World) -> ImageAudit {
        let controller = |verb: &'static str| {
            w.audit.iter().filter(move |e| e.source == crate::audit::Source::Controller && e.verb == verb)
        };
        let pulled_for = controller("pod-pulling")
            .map(|e| (e.path.clone(), e.detail.split_whitespace().map(String::from).collect()))
            .collect();
        let loaded: Vec<String> = controller("image-loaded").map(|e| e.path.clone()).collect();
        let node_pulls =
            controller("image-pulled").filter(|e| e.detail == "node").map(|e| e.path.clone()).collect();
        let used: std::collections::BTreeSet<String> =
            [crate::store::Res::Deployments, crate::store::Res::DaemonSets]
                .iter()
                .flat_map(|r| w.store.list(*r, None))
                .flat_map(|o| {
                    ["initContainers", "containers"]
                        .iter()
                        .filter_map(|k| {
                            o.pointer(&format!("/spec/template/spec/{k}")).and_then(Value::as_array)
                        })
                        .flatten()
                        .filter_map(|c| c.get("image").and_then(Value::as_str))
                        .map(crate::troubles::qualified_image)
                        .collect::<Vec<_>>()
                })
                .collect();
        let mut loaded_unused: Vec<String> = loaded.iter().filter(|i| !used.contains(*i)).cloned().collect();
        loaded_unused.dedup();
        ImageAudit { pulled_for, loaded, loaded_unused, node_pulls }
    }

    /// Istio's pods (istio-system's, and the Deployments istiod makes for Gateways) created
    /// before their image was in the node.
    pub fn istio_pulled_for(&self) -> Vec<&(String, Vec<String>)> {
        self.pulled_for
            .iter()
            .filter(|(pod, images)| {
                pod.starts_with("istio-system/") || images.iter().any(|i| i.contains("/istio/"))
            })
            .collect()
    }
}

/// `GET /images/get?names=…[&platform=…]`: the archive `docker save` writes, or the daemon's
/// error (status, message).
pub fn save(w: &World, names: &[String], platform: Option<&Platform>) -> Result<Vec<u8>, (u16, String)> {
    if let Some(missing) = names.iter().find(|n| !w.host_has(n)) {
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
            // The whole index, the attestation manifest's blob not among the files (a pulled
            // image's other platforms are missing alike; one child stands for them).
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
    fn the_link_shares_its_bandwidth_and_the_kubelet_pulls_one_at_a_time() {
        let mut link = Link::new(10.0);
        let t0 = link.last;
        link.start("docker.io/library/redis:7", Store::Host); // 17 MB
        link.request("docker.io/library/postgres:16"); // 105 MB
        link.request("docker.io/library/postgres:16");
        link.request("docker.io/apache/kafka:3"); // 125 MB
        link.pump();
        assert_eq!(link.transfers.len(), 2, "serialized: one kubelet pull at a time");
        // Two transfers at 5 MB/s each: redis is done after 3.4 s.
        let done = link.advance(t0 + Duration::from_secs_f64(3.4), 1.0);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].image, "docker.io/library/redis:7");
        link.pump();
        assert_eq!(link.transfers.len(), 1, "kafka waits for postgres");
        let at = link.next_done(1.0).unwrap();
        assert!((at.duration_since(t0).as_secs_f64() - (3.4 + 88.0 / 10.0)).abs() < 1e-6);
        let mut parallel = Link::new(10.0);
        parallel.puller = Puller::from_patches(&[
            "kind: ClusterConfiguration\n---\nkind: KubeletConfiguration\nserializeImagePulls: false\nmaxParallelImagePulls: 2\n".to_string(),
        ]);
        for i in ["a:1", "b:1", "c:1"] {
            parallel.request(i);
        }
        parallel.pump();
        assert_eq!(parallel.transfers.len(), 2);
    }

    #[test]
    fn two_imports_at_once_share_the_pipe() {
        let mut node = Importer::new(200.0);
        let t0 = node.last;
        let a = node.start(200.0);
        node.advance(t0 + Duration::from_millis(500), 1.0);
        let b = node.start(100.0);
        // a: 100 MB left, b: 100 MB, at 100 MB/s each: both done 1 s later.
        let at = |id| node.done_at(id, 1.0).unwrap().duration_since(t0).as_secs_f64();
        assert!((at(a) - 1.5).abs() < 1e-6 && (at(b) - 1.5).abs() < 1e-6, "{} {}", at(a), at(b));
        node.advance(t0 + Duration::from_millis(1500), 1.0);
        assert!(!node.busy(a) && !node.busy(b) && node.under_way() == 0);
    }

    #[test]
    fn tar_round_trips() {
        let files =
            vec![("index.json".to_string(), b"{}".to_vec()), ("blobs/sha256/ab".into(), vec![7; 600])];
        assert_eq!(untar(&tar(&files)).unwrap(), files);
        assert!(untar(b"not a tar").unwrap().is_empty());
    }
}
