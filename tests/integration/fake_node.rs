//! What the real-engine tests (`watch_dockerd.rs`, `podman.rs`) run as kind's node: a
//! busybox-static root filesystem imported as an image, labelled as kind labels a node, running
//! a shell that exits 143 at once on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const NODE: &str = "bookstore-control-plane";
/// kind's labels on the node (`pkg/cluster/internal/providers/docker/constants.go`).
pub const LABELS: [&str; 2] = ["io.x-k8s.kind.cluster=bookstore", "io.x-k8s.kind.role=control-plane"];
/// The node's process: sleeps until SIGTERM, then exits 143.
pub const SCRIPT: &str = "trap 'exit 143' TERM; while :; do sleep 1 & wait $!; done";
/// The cluster config's container ports (kind `extraPortMappings`).
pub const PORTS: [u16; 6] = [30000, 31111, 32000, 32100, 32200, 32300];

/// A tar of a root filesystem with a static busybox as `sh` and `sleep`, under `dir`.
pub fn rootfs_tar(dir: &Path) -> Result<PathBuf, String> {
    let busybox =
        which::which("busybox").map_err(|_| "busybox is not installed (apt-get install busybox-static)")?;
    if !statically_linked(&busybox) {
        return Err(format!(
            "{} is not statically linked (apt-get install busybox-static)",
            busybox.display()
        ));
    }
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    for tool in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).map_err(|e| e.to_string())?;
    }
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").output().unwrap();
    if !out.status.success() {
        return Err(format!("tar: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(tar)
}

/// An ELF executable without a program interpreter (`PT_INTERP`) needs no libc in the rootfs.
fn statically_linked(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else { return false };
    let u16_at = |o: usize| b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]) as usize);
    let u64_at = |o: usize| b.get(o..o + 8).map(|x| u64::from_le_bytes(x.try_into().unwrap()) as usize);
    if b.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).all(|i| b.get(phoff + i * size..phoff + i * size + 4) != Some(&3u32.to_le_bytes()[..]))
}

/// Unmount whatever a daemon left mounted under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let root = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut under: Vec<&str> =
        mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}
