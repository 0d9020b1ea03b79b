//! Secrets: a value type that never prints, and a process-wide redactor.
//!
//! Every secret read from the cluster is registered here the moment it is decoded. Everything the
//! tool prints (errors, progress, dry-run lines, child stderr) passes through [`redact`], so a
//! secret cannot reach the terminal even when a server echoes it back in an error body.

use std::fmt;
use std::sync::{Mutex, OnceLock};

pub const MASK: &str = "***";

/// A secret string. `Debug` and `Display` print the mask; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value and register it (and its JSON-escaped form) with the redactor.
    pub fn new(value: String) -> Secret {
        register(&value);
        Secret(value)
    }

    /// Wrap text that holds no secret of its own (a body built from values already registered,
    /// or a dry-run placeholder): it prints masked but masks nothing else.
    pub fn unregistered(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

fn known() -> &'static Mutex<Vec<String>> {
    static KNOWN: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(value: &str) {
    // Too short to redact without mangling ordinary text; such a value is not a usable secret.
    if value.chars().count() < 3 {
        return;
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    let json_inner = json.trim_matches('"').to_string();
    let mut known = known().lock().unwrap_or_else(|e| e.into_inner());
    for form in [value.to_string(), json_inner] {
        if !known.contains(&form) {
            known.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Mask every registered secret in `text`.
pub fn redact(text: &str) -> String {
    let known = known().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_are_redacted_in_any_text() {
        let s = Secret::new("p'a\"ss $x \\ ü".to_string());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let echoed = format!("auth failed for {}", serde_json::to_string(s.expose()).unwrap());
        assert_eq!(redact(&echoed), "auth failed for \"***\"");
        assert_eq!(redact(&format!("raw {} end", s.expose())), "raw *** end");
    }
}
