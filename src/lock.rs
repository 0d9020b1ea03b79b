//! One run that changes a cluster at a time: an advisory lock on a file in the temp dir
//! (`bookstore-<cluster>.lock`), released by the OS when the process exits (even on a crash or
//! Ctrl-C). Which commands take it is a property of the command ([`crate::config::Effect`]);
//! `watch` takes it for each heal.

use std::io::{Seek, Write};

use crate::error::{Error, Result};

/// The lock of `cluster`, with `holder` as what a second run is told is working on it
/// (`pid 123 running `bookstore up``). Held until dropped; [`Error::Busy`] when another holds it.
pub fn acquire(cluster: &str, holder: &str) -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("bookstore-{cluster}.lock"));
    let lock_error = |e: std::io::Error| {
        Error::step(
            format!("cannot open the lock file {}: {e}", path.display()),
            "check the temp dir's permissions",
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.seek(std::io::SeekFrom::Start(0));
            let _ = write!(file, "{holder}");
            let _ = file.flush();
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = if holder.trim().is_empty() { "unknown process".to_string() } else { holder };
            Err(Error::Busy { holder, lock: path.display().to_string() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
    }
}

/// The holder line of this process running `bookstore <command>`.
pub fn holder(command: &str) -> String {
    format!("pid {} running `bookstore {command}`", std::process::id())
}
