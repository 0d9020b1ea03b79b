//! Issue 23 end to end: Istio's images as istioctl installs them (the `-distroless` variant under
//! `profile=ambient`), in the node before any of Istio's pods exists, loaded one at a time in the
//! critical path's order, on a cold machine and on one whose host has every image; and an
//! istioctl outside the tested range stopping the bootstrap before anything is created.

use bookstore_sim::bench::bootstrap::{every_image, stack_install};
use bookstore_sim::config::Infra;
use bookstore_sim::kit::{Test, World};
use bookstore_sim::{AuditEntry, Sim, SimOptions, Source};

const OURS: [&str; 3] =
    ["bookstore/ecom-service:dev", "bookstore/inventory-service:dev", "bookstore/ui-service:dev"];

fn machine(images: Vec<String>, istio_version: &str) -> World {
    World::start(SimOptions {
        time_scale: 0.05,
        no_cluster: true,
        images,
        istio_version: istio_version.into(),
        ..SimOptions::default()
    })
}

/// Each `kind load`'s images (argv, in order) and when it started; each image's arrival.
fn loads(audit: &[AuditEntry]) -> Vec<(u64, Vec<String>)> {
    audit
        .iter()
        .filter(|e| {
            e.source == Source::Standin && e.verb == "kind" && e.path.starts_with("load docker-image ")
        })
        .map(|e| {
            let images = e.path["load docker-image ".len()..]
                .split_whitespace()
                .take_while(|w| *w != "--name")
                .map(String::from)
                .collect();
            (e.t_ms, images)
        })
        .collect()
}

/// An image as containerd names it (`postgres:16` → `docker.io/library/postgres:16`).
fn qualified(image: &str) -> String {
    match image.split_once('/') {
        Some((host, _)) if host.contains('.') || host.contains(':') => image.to_string(),
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

/// What the images of a bootstrap that succeeded (`stderr`) did on this machine. The cold world's
/// bootstrap is `bootstrap::up_on_an_empty_machine_*`'s.
pub fn the_images_held(sim: &Sim, stderr: &str, world: &str) -> Vec<AuditEntry> {
    assert!(
        stderr.contains("istioctl 1.26.0 (tested: Istio 1.25–1.31); it runs docker.io/istio/"),
        "{world}: {stderr}"
    );
    let images = sim.image_audit();
    assert!(
        images.istio_pulled_for().is_empty(),
        "{world}: Istio pods pulled: {:?}",
        images.istio_pulled_for()
    );
    assert!(images.pulled_for.is_empty(), "{world}: pods waited for the kubelet: {:?}", images.pulled_for);
    assert!(images.node_pulls.is_empty(), "{world}: the kubelet pulled {:?}", images.node_pulls);
    assert!(images.loaded_unused.is_empty(), "{world}: loaded for no pod: {:?}", images.loaded_unused);
    let audit = sim.audit();
    // What runs is what was loaded: Istio's pods on the distroless images.
    let deployed = sim
        .command("kubectl")
        .args(["--context", "kind-bookstore", "get", "daemonsets,deployments", "-A", "-o"])
        .arg("jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}{\"\\n\"}{end}")
        .output()
        .unwrap();
    let deployed = String::from_utf8_lossy(&deployed.stdout).to_string();
    for image in ["pilot", "install-cni", "ztunnel", "proxyv2"] {
        assert!(
            deployed.contains(&format!("docker.io/istio/{image}:1.26.0-distroless")),
            "{world}: {deployed}"
        );
    }
    // Istio's images first and alone, then one load at a time: each after the last one's images
    // were in the node.
    let loads = loads(&audit);
    let mut first = loads[0].1.clone();
    first.sort();
    assert_eq!(
        first,
        [
            "docker.io/istio/install-cni:1.26.0-distroless",
            "docker.io/istio/pilot:1.26.0-distroless",
            "docker.io/istio/ztunnel:1.26.0-distroless"
        ],
        "{world}: {loads:?}"
    );
    for pair in loads.windows(2) {
        let (_, before) = &pair[0];
        let (started, _) = pair[1];
        let done = audit
            .iter()
            .filter(|e| before.iter().any(|b| e.is_event("image-loaded", &qualified(b))))
            .map(|e| e.t_ms)
            .max()
            .unwrap_or_else(|| panic!("{world}: {before:?} never loaded"));
        assert!(
            done <= started,
            "{world}: a load began at {started} ms before {before:?} was in at {done} ms"
        );
    }
    audit
}

/// The warm machine: the host has every image (a second bootstrap): nothing is downloaded. (The
/// cold one is `bootstrap::up_on_an_empty_machine_*`'s, checked with `the_images_held` too.)
#[test]
fn istios_images_are_in_the_node_before_its_pods_on_a_warm_machine() {
    let infra = Infra::load(&SimOptions::default().infra_dir).unwrap();
    let all = every_image(&infra, &stack_install(&infra, "1.26.0").unwrap()).unwrap();
    let warm = machine(all, "1.26.0");
    let run = Test::new().world(&warm).args(["up"]).code(0).run();
    let audit = the_images_held(&warm, &run.stderr, "warm");
    assert!(
        !audit.iter().any(|e| e.verb == "image-pulled" || e.path.contains("/images/create")),
        "the warm machine downloaded an image"
    );
}

#[test]
fn an_istioctl_outside_the_tested_range_stops_the_bootstrap_before_anything_is_created() {
    for (version, why) in [("1.24.3", "reconcileIptablesOnStartup"), ("1.32.0", "Gateway API v1.4.1")] {
        let sim = machine(OURS.iter().map(|s| s.to_string()).collect(), version);
        let run = Test::new().world(&sim).args(["up"]).code(3).run();
        let text = &run.stderr;
        assert!(
            text.contains(&format!("istioctl {version} is outside the tested range Istio 1.25–1.31")),
            "{text}"
        );
        assert!(text.contains(why) && text.contains("ISTIO_VERSION=<that release>"), "{text}");
        let audit = sim.audit();
        let changed: Vec<String> = audit.iter().filter(|e| e.is_write()).map(|e| e.path.clone()).collect();
        assert!(changed.is_empty(), "{version}: changed {changed:?}");
        assert!(!audit.iter().any(|e| e.path.contains("/images/create")), "{version}: pulled an image");
        assert!(!audit.iter().any(|e| e.source == Source::Standin && e.path.starts_with("create")));
    }
}
