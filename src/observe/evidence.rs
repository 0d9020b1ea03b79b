//! Evidence in the mesh's logs: the HBONE connections ztunnel says failed (`deadline has elapsed`,
//! `Connection refused` to `<pod-ip>:15008`) and the pods istio-cni says it could not reconcile.
//! Parsers of outside text: pure, and they never panic (`proptests`).

/// A failed HBONE connection in ztunnel's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HboneFailure {
    /// When ztunnel logged it (seconds since the epoch), from the line's leading timestamp.
    pub at: Option<u64>,
    pub ip: String,
    /// `connection failed: deadline has elapsed`, `io error: Connection refused (os error 111)`, …
    pub error: String,
    pub line: String,
}

/// ztunnel's lines with `deadline has elapsed` / `Connection refused` to `<ip>:15008`.
pub fn parse_ztunnel(log: &str) -> Vec<HboneFailure> {
    let mut out = Vec::new();
    for line in log.lines() {
        if !(line.contains("deadline has elapsed") || line.contains("Connection refused")) {
            continue;
        }
        let Some(at) = line.find("dst.addr=") else { continue };
        let addr = line[at + "dst.addr=".len()..].split_whitespace().next().unwrap_or("").trim_matches('"');
        let Some(ip) = addr.strip_suffix(":15008") else { continue };
        let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
        let error = match line.find("error=\"") {
            Some(e) => line[e + 7..].split('"').next().unwrap_or("").to_string(),
            None if line.contains("deadline has elapsed") => "deadline has elapsed".to_string(),
            None => "Connection refused".to_string(),
        };
        let at = line.split_whitespace().next().and_then(crate::utc::parse);
        out.push(HboneFailure { at, ip, error, line: line.trim().to_string() });
    }
    out
}

/// istio-cni's `failed to reconcile inpod rules for pod …`: (namespace, pod, line).
pub fn parse_cni(log: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in log.lines().filter(|l| l.contains("failed to reconcile inpod rules")) {
        let field = |key: &str| -> Option<String> {
            // Text format: `… ns=ecom name=ecom-db-x`; JSON format: `"ns":"ecom","name":"…"`.
            let text = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches(|c| c == '"' || c == ',').to_string());
            text.or_else(|| {
                let json = format!("\"{key}\":\"");
                let at = line.find(&json)? + json.len();
                Some(line[at..].split('"').next()?.to_string())
            })
        };
        if let (Some(ns), Some(name)) = (field("ns"), field("name")) {
            out.push((ns, name, line.trim().to_string()));
        }
    }
    out
}
