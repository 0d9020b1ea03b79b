//! The nodes against the cluster config: which of the config's fixed port mappings no node
//! container publishes (mappings are fixed when a kind cluster is created, so an older cluster
//! lacks the newer ones; kind documents them on the control plane, and a mapping declared on a
//! worker is published by that worker's container). Preflight refuses such a cluster; `doctor`
//! reports it with its evidence. A mapping without a fixed host port is not judged here: the stack
//! load refuses it and `doctor` reports it on its own.

use crate::engine::Node;
use crate::stack::PortMapping;

/// A node publishes this mapping's container port on its fixed host port.
pub fn holds(nodes: &[Node], m: &PortMapping) -> bool {
    nodes
        .iter()
        .flat_map(|n| &n.bindings)
        .any(|(port, _, host)| *port == m.container_port && Some(*host) == m.host_port)
}

/// The mappings with a fixed host port that no node publishes there.
pub fn missing<'a>(nodes: &[Node], wanted: &'a [PortMapping]) -> Vec<&'a PortMapping> {
    wanted.iter().filter(|m| m.host_port.is_some() && !holds(nodes, m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_mapping_is_held_only_on_its_host_port() {
        let m = |c: u16, h: Option<u16>| PortMapping {
            container_port: c,
            host_port: h,
            host_port_raw: h.map(i32::from),
            listen_address: "127.0.0.1".into(),
            protocol: "TCP".into(),
        };
        let node = Node {
            running: true,
            status: "running".into(),
            bindings: vec![(30000, "127.0.0.1".into(), 30000), (32300, "127.0.0.1".into(), 41234)],
            ..Node::default()
        };
        let wanted = [m(30000, Some(30000)), m(32300, Some(32300)), m(32100, None)];
        let nodes = [node];
        assert_eq!(missing(&nodes, &wanted), [&wanted[1]], "published on another host port");
        assert!(missing(&nodes, &wanted[..1]).is_empty());
        assert!(holds(&nodes, &wanted[0]) && !holds(&nodes, &wanted[2]));
        // A mapping a worker declares is published by the worker's container.
        let worker = Node { bindings: vec![(32300, "127.0.0.1".into(), 32300)], ..Node::default() };
        let both = [nodes[0].clone(), worker];
        assert!(missing(&both, &wanted).is_empty());
    }
}
