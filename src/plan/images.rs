//! The bootstrap's images as a schedule, pure: which images (ours, Istio's as `istioctl manifest
//! generate` names them, the manifests'), fetched on the host in which order, and loaded into the
//! node in which groups and order.
//!
//! Both orders are the critical path's (Jackson's rule): the image whose longest remaining chain,
//! once it is in the node, takes longest comes first: Istio's (everything waits for Istio), then
//! each chain's by its `ready_in` (postgres for keycloak-db → keycloak, …), the quick leaves last.
//! A load holds the images the same tasks wait for (Istio's install images together and alone; a
//! unit's images), never an image behind one needed later: a `kind load` of several is done when
//! its last image is (`ctr images import` records the images after all their content). Loads go
//! one at a time (the node's import is one containerd on one disk: two at once share it, so the
//! first needed would be done later), the first group in this order whose images are all on the
//! host going next, so the node never idles while an image waits.

use std::collections::BTreeSet;

use super::istio;
use super::{Graph, Prep, Task, connector_needs, needs};
use crate::stack::{DEFAULT_READY_IN, Stack, Unit};

/// An image the bootstrap puts into the node before the pods that run it exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// As the manifests and istioctl name it.
    pub name: String,
    pub source: ImageSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// Ours (index into `bootstrap.images`): used as it is, or built.
    Ours(usize),
    /// A third-party image: pulled on the host unless it is there.
    Pull,
    /// One of Istio's (the install's or its gateways'), pulled likewise.
    Istio,
}

/// How many `kind load`s run at once: one. The node's import is one containerd on one disk;
/// two at once share it (the first needed ends later) and save only a load's start
/// (`bookstore-sim bench --only bootstrap` measured two: no faster, see the README).
pub const LOADS_AT_ONCE: usize = 1;

/// About how long a connector takes to register once its workloads are Ready (the REST API
/// answering, the PUT, RUNNING): for the order only.
const REGISTER_ESTIMATE: f64 = 5.0;

/// Every image of the bootstrap (ours, Istio's, then every other one a unit runs), in the order
/// of the critical path: the longest chain after it first.
pub(super) fn ranked(stack: &Stack, istio: &istio::Images) -> Vec<Image> {
    let b = &stack.bootstrap;
    let mut images: Vec<Image> = Vec::new();
    let mut add = |name: &str, source: ImageSource| {
        if !images.iter().any(|i| i.name == name) {
            images.push(Image { name: name.to_string(), source });
        }
    };
    for (i, ours) in b.images.iter().enumerate() {
        add(&ours.image, ImageSource::Ours(i));
    }
    for name in istio.all() {
        add(&name, ImageSource::Istio);
    }
    for u in &b.units {
        for name in &u.images {
            add(name, ImageSource::Pull);
        }
    }
    // A unit's chain is its own `ready_in` and then the longest chain of what waits for its
    // workload (connectors included).
    let mut tail: Vec<Option<f64>> = vec![None; stack.workloads.len()];
    fn chain(stack: &Stack, w: usize, tail: &mut Vec<Option<f64>>) -> f64 {
        if let Some(t) = tail[w] {
            return t;
        }
        let after = (0..stack.workloads.len())
            .filter(|d| needs(stack, *d).contains(&w))
            .map(|d| chain(stack, d, tail))
            .fold(0.0, f64::max);
        let registers = (0..stack.connect.connectors.len()).any(|c| connector_needs(stack, c).contains(&w));
        let register = if registers { REGISTER_ESTIMATE } else { 0.0 };
        let t = stack.workloads[w].ready_in.as_secs_f64() + after.max(register);
        tail[w] = Some(t);
        t
    }
    let unit_tail: Vec<f64> = b
        .units
        .iter()
        .map(|u| match u.workload {
            Some(w) => chain(stack, w, &mut tail),
            None => DEFAULT_READY_IN.as_secs_f64(),
        })
        .collect();
    let longest = unit_tail.iter().copied().fold(0.0, f64::max);
    let installed = istio.installed();
    let priority = |img: &Image| -> f64 {
        if installed.contains(&img.name) {
            return b.istio_ready_in.as_secs_f64() + longest;
        }
        let users = b.units.iter().zip(&unit_tail).filter(|(u, _)| runs(u, img, istio));
        users.map(|(_, t)| *t).fold(0.0, f64::max)
    };
    let mut ranked: Vec<(f64, Image)> = images.iter().map(|i| (priority(i), i.clone())).collect();
    ranked.sort_by(|a, c| {
        c.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.name.cmp(&c.1.name))
    });
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// Whether the unit's pods run the image: its own, or (the shared objects, with the Gateway)
/// the gateway Deployment istiod creates.
pub(super) fn runs(unit: &Unit, image: &Image, istio: &istio::Images) -> bool {
    unit.images.contains(&image.name) || (unit.shared() && istio.gateway.as_ref() == Some(&image.name))
}

impl Graph {
    /// The node's loads in order: each the images (indices into `images`) the same tasks wait
    /// for, in the order of `images` (the critical path's). Empty for a recovery.
    pub fn loads(&self) -> Vec<Vec<usize>> {
        let waiting = |i: usize| -> BTreeSet<Task> {
            let image = Task::Prep(Prep::Image(i));
            self.tasks.iter().filter(|(_, after)| after.contains(&image)).map(|(t, _)| *t).collect()
        };
        let mut loads: Vec<(BTreeSet<Task>, Vec<usize>)> = Vec::new();
        for i in 0..self.images.len() {
            let by = waiting(i);
            match loads.iter_mut().find(|(tasks, _)| *tasks == by) {
                Some((_, group)) => group.push(i),
                None => loads.push((by, vec![i])),
            }
        }
        loads.into_iter().map(|(_, group)| group).collect()
    }
}

/// Which load goes next, one at a time: the first in order, not yet begun, whose images are all
/// settled on the host (there, or given up on: the kubelet pulls those).
pub fn next_load(loads: &[Vec<usize>], begun: &[bool], settled: impl Fn(usize) -> bool) -> Option<usize> {
    (0..loads.len())
        .find(|l| !begun.get(*l).copied().unwrap_or(false) && loads[*l].iter().all(|i| settled(*i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

    #[test]
    fn istios_images_load_first_and_alone_then_each_chain_by_its_ready_in() {
        let stack = load(Source::Embedded).unwrap();
        let graph = super::super::bootstrap_graph(&stack, &istio::sample());
        let loads: Vec<Vec<&str>> = graph
            .loads()
            .iter()
            .map(|l| l.iter().map(|i| graph.images[*i].name.as_str()).collect())
            .collect();
        assert_eq!(
            loads[0],
            [
                "docker.io/istio/install-cni:1.26.0-distroless",
                "docker.io/istio/pilot:1.26.0-distroless",
                "docker.io/istio/ztunnel:1.26.0-distroless"
            ]
        );
        // Then the slowest chain's (keycloak-db → keycloak: 46 s), then kafka → debezium → the
        // connectors and keycloak (40 s each), each load one image (no unit runs two).
        assert_eq!(loads[1], ["postgres:16.9-alpine"]);
        assert_eq!(loads[2..4], [["apache/kafka:3.9.1"], ["quay.io/keycloak/keycloak:26.0.7"]]);
        assert!(loads[1..].iter().all(|l| l.len() == 1), "{loads:?}");
        assert_eq!(loads.iter().map(Vec::len).sum::<usize>(), graph.images.len());
        // The gateway's image: after every chain longer than the gateway's own.
        let gateway = loads.iter().position(|l| l[0].contains("proxyv2")).unwrap();
        assert!(gateway > 3, "{loads:?}");
        // A recovery loads nothing.
        assert!(super::super::graph(&stack, super::super::Order::Graph).loads().is_empty());
    }

    #[test]
    fn the_next_load_is_the_first_whose_images_are_all_on_the_host() {
        let loads = vec![vec![0, 1], vec![2], vec![3]];
        let on_host = |ready: &'static [usize]| move |i: usize| ready.contains(&i);
        assert_eq!(
            next_load(&loads, &[false; 3], on_host(&[1, 2, 3])),
            Some(1),
            "Istio waits for its last image"
        );
        assert_eq!(next_load(&loads, &[false; 3], on_host(&[0, 1, 3])), Some(0));
        assert_eq!(next_load(&loads, &[true, false, false], on_host(&[0, 1])), None);
        assert_eq!(next_load(&loads, &[true, true, false], on_host(&[0, 1, 2, 3])), Some(2));
    }
}
