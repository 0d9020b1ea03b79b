//! Images on their way: the download link moved on, an image landing in the host's store or the
//! node's containerd, the pods that waited for it started.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::{PodPhase, World};

impl World {
    /// The host's Docker has this image (`postgres:16`, `bookstore/x:dev`, qualified or not).
    pub fn host_has(&self, image: &str) -> bool {
        self.host_images.contains(&crate::troubles::qualified_image(image))
    }

    /// Move the downloads on to `now`: finished ones land in their store, pods waiting for an
    /// image start, the kubelet's puller takes its next request. When the next one finishes.
    pub fn advance_downloads(&mut self, now: Instant) -> Option<Instant> {
        for t in self.link.advance(now, self.scale) {
            match t.store {
                crate::images::Store::Host => {
                    self.event("image-pulled", &t.image, "host");
                    self.host_images.insert(t.image);
                }
                crate::images::Store::Node => {
                    self.event("image-pulled", &t.image, "node");
                    self.image_arrived(&t.image, now);
                }
            }
        }
        self.link.pump();
        self.link.next_done(self.scale)
    }

    /// An image is in the node (pulled or loaded): the pods waiting for it start.
    pub fn image_arrived(&mut self, image: &str, now: Instant) {
        self.node_images.insert(image.to_string());
        let waiting: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| p.pulling.contains(image)).map(|(k, _)| k.clone()).collect();
        for k in waiting {
            let Some(p) = self.pods.get_mut(&k) else { continue };
            p.pulling.remove(image);
            if p.pulling.is_empty() {
                let wl = p.wl.clone();
                let lat = self.workloads.get(&wl).map(|w| w.latency).unwrap_or(3.0);
                let d = self.start_due(&wl, now + self.scaled(lat));
                let p = self.pods.get_mut(&k).expect("listed");
                p.phase = PodPhase::Starting { due: d };
                p.started_wall = SystemTime::now();
                self.container_started(&wl);
            }
            self.write_pod(&k);
        }
    }

    /// Every image of a pod template (containers and init containers), qualified.
    pub(super) fn template_images(template: &Value) -> BTreeSet<String> {
        ["initContainers", "containers"]
            .iter()
            .filter_map(|k| template.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str))
            .map(crate::troubles::qualified_image)
            .collect()
    }
}
