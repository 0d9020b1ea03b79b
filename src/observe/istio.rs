//! istioctl, read before a bootstrap is planned (local reads: no cluster needed): its release
//! (`istioctl version --remote=false`) and what its install would apply (`istioctl manifest
//! generate` with the install's own flags), at once. `plan::istio` judges both.

use crate::error::{Error, Result};
use crate::stack::Stack;

/// What istioctl printed.
pub struct Istioctl {
    /// `istioctl version --remote=false`'s stdout.
    pub version: Result<String>,
    /// `istioctl manifest generate <the install's flags>`'s stdout.
    pub manifest: Result<String>,
}

pub fn read(stack: &Stack) -> Result<Istioctl> {
    super::tools(&["istioctl"])?;
    let flags = &stack.bootstrap.istio_install;
    Ok(std::thread::scope(|s| {
        let manifest = s.spawn(|| crate::kube::istioctl_manifest(flags).run().map(|o| o.stdout));
        let version = crate::kube::istioctl_version().run().map(|o| o.stdout);
        let manifest = manifest
            .join()
            .unwrap_or_else(|_| Err(Error::step("reading istioctl's manifest panicked", "run again")));
        Istioctl { version, manifest }
    }))
}

/// The reads, for `--dry-run`.
pub fn describe(stack: &Stack, lines: &mut Vec<String>) {
    lines.push(format!("{}   # in the tested range", crate::kube::istioctl_version()));
    lines.push(format!(
        "{}   # the images its install runs",
        crate::kube::istioctl_manifest(&stack.bootstrap.istio_install)
    ));
}
