//! The node against the cluster config: which of the config's fixed port mappings its container
//! does not publish (mappings are fixed when a kind cluster is created, so
//! an older cluster lacks the newer ones). Preflight refuses such a node; `doctor` reports it with
//! its evidence. A mapping without a fixed host port is not judged here: the stack load refuses it
//! and `doctor` reports it on its own.

use crate::engine::Node;
use crate::stack::PortMapping;

/// The node publishes this mapping's container port on its fixed host port.
pub fn holds(node: &Node, m: &PortMapping) -> bool {
    node.bindings.iter().any(|(port, _, host)| *port == m.container_port && Some(*host) == m.host_port)
}

/// The mappings with a fixed host port that the node does not publish there.
pub fn missing<'a>(node: &Node, wanted: &'a [PortMapping]) -> Vec<&'a PortMapping> {
    wanted.iter().filter(|m| m.host_port.is_some() && !holds(node, m)).collect()
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
        assert_eq!(missing(&node, &wanted), [&wanted[1]], "published on another host port");
        assert!(missing(&node, &wanted[..1]).is_empty());
        assert!(holds(&node, &wanted[0]) && !holds(&node, &wanted[2]));
    }
}
