//! Where the watcher keeps what outlives it, under the user's own folders: the last healed start
//! of each node (its state file), and the installed service's copy of this binary and the stack.
//!
//! A login agent starts after Docker has already restarted the node (moby's `restore` starts
//! containers before the daemon serves its API), so the first `start` it could see has passed:
//! the state file tells a start it never healed (a `State.StartedAt` other than the one it
//! last healed) from one it did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `$XDG_STATE_HOME/bookstore`, else `~/.local/state/bookstore`; on macOS
/// `~/Library/Application Support/bookstore` (where user agents keep their state).
pub fn state_dir(home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        return app_support(home);
    }
    xdg("XDG_STATE_HOME", home, ".local/state")
}

/// `$XDG_DATA_HOME/bookstore`, else `~/.local/share/bookstore`; on macOS
/// `~/Library/Application Support/bookstore`: a stable place for the service's copy (not a
/// checkout, not `~/Documents`, `~/Desktop` or `~/Downloads`, which macOS' privacy controls close
/// to launchd's jobs).
pub fn data_dir(home: &Path, macos: bool) -> PathBuf {
    if macos { app_support(home) } else { xdg("XDG_DATA_HOME", home, ".local/share") }
}

fn app_support(home: &Path) -> PathBuf {
    home.join("Library/Application Support/bookstore")
}

fn xdg(var: &str, home: &Path, default: &str) -> PathBuf {
    match std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(dir) => dir.join("bookstore"),
        None => home.join(default).join("bookstore"),
    }
}

/// The watcher's state file for a cluster: `{"nodes": {"<node>": "<State.StartedAt healed>"}}`.
pub struct StateFile {
    path: Option<PathBuf>,
}

impl StateFile {
    /// The cluster's file under [`state_dir`]; none without HOME (nothing is kept then).
    pub fn for_cluster(cluster: &str) -> StateFile {
        let path = std::env::var_os("HOME")
            .map(PathBuf::from)
            .map(|home| state_dir(&home).join(format!("watch-{cluster}.json")));
        StateFile { path }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read(&self) -> BTreeMap<String, String> {
        let Some(text) = self.path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return BTreeMap::new();
        };
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        doc.get("nodes")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    }

    /// The `State.StartedAt` of `node` the watcher last healed.
    pub fn last_healed(&self, node: &str) -> Option<String> {
        self.read().remove(node)
    }

    /// Remember that the start `started` of `node` is healed (written whole, then renamed).
    pub fn healed(&self, node: &str, started: &str) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut nodes = self.read();
        if nodes.get(node).map(String::as_str) == Some(started) {
            return Ok(());
        }
        nodes.insert(node.to_string(), started.to_string());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.new");
        std::fs::write(&tmp, format!("{}\n", json!({ "nodes": nodes })))?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_keeps_each_nodes_last_healed_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile { path: Some(dir.path().join("state/watch-bookstore.json")) };
        assert_eq!(file.last_healed("n"), None);
        file.healed("n", "2026-12-01T08:00:00.1Z").unwrap();
        file.healed("m", "2026-12-01T08:00:00.2Z").unwrap();
        file.healed("n", "2026-12-01T09:00:00.3Z").unwrap();
        assert_eq!(file.last_healed("n").as_deref(), Some("2026-12-01T09:00:00.3Z"));
        assert_eq!(file.last_healed("m").as_deref(), Some("2026-12-01T08:00:00.2Z"));
        std::fs::write(file.path().unwrap(), "not json").unwrap();
        assert_eq!(file.last_healed("n"), None, "a broken file is no record");
        assert!(data_dir(Path::new("/h"), true).ends_with("Library/Application Support/bookstore"));
    }
}
