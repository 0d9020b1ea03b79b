//! Everything is checked before the first change: bad input is exit 2 (or 3 for the cluster-side
//! input) and the simulator's audit log shows no write, on an empty machine and on a running
//! stack, for `up` and `up --dry-run` alike.

use bookstore_sim::{AuditEntry, Fault, SimOptions, Source};

use bookstore_sim::kit::{Test, World};

/// What changed the world: requests other than GET, `kind create|load|…`, `istioctl install`.
fn writes(audit: &[AuditEntry]) -> Vec<String> {
    audit.iter().filter(|e| e.is_write()).map(|e| format!("{:?} {} {}", e.source, e.verb, e.path)).collect()
}

fn empty_machine() -> World {
    let opts = SimOptions {
        no_cluster: true,
        images: ["ecom-service", "inventory-service", "ui-service"]
            .iter()
            .map(|n| format!("bookstore/{n}:dev"))
            .collect(),
        ..World::options()
    };
    World::start(opts)
}

#[test]
fn a_stack_naming_a_missing_tier_folder_changes_nothing() {
    for sim in [empty_machine(), World::healthy()] {
        sim.rewrite("stack.yaml", "dir: k8s/25-cdc", "dir: k8s/25-cdcc");
        for args in [&["up"][..], &["up", "--dry-run"]] {
            let run = Test::new().world(&sim).args(args).code(2).run();
            assert!(run.stderr.contains("25-cdcc"), "{}", run.stderr);
            assert!(run.stderr.contains("Nothing was changed"), "{}", run.stderr);
        }
        assert_eq!(writes(&sim.audit()), Vec::<String>::new());
    }
}

#[test]
fn a_broken_manifest_or_crd_file_or_contract_changes_nothing() {
    let sim = empty_machine();
    // The stack copy's CRD line (a URL the simulator serves).
    let stack = std::fs::read_to_string(sim.stack_path()).unwrap();
    let crds =
        stack.lines().find_map(|l| l.trim().strip_prefix("crds: ")).expect("the crds line").to_string();
    let crds = format!("crds: {crds}");
    let cases: [(&str, &str, &str, &str); 3] = [
        ("k8s/20-infra/redis.yaml", "kind: Deployment", "kind: [Deployment", "redis.yaml"),
        ("stack.yaml", &crds, "crds: no-such-crds.yaml", "no-such-crds.yaml"),
        (
            "k8s/secrets-contract.yaml",
            "from: ecom/ecom-db-credentials/POSTGRES_PASSWORD",
            "from: ecom/ecom-db-credentials/POSTGRES_PASSWORDD",
            "POSTGRES_PASSWORDD",
        ),
    ];
    for (file, from, to, named) in cases {
        sim.rewrite(file, from, to);
        let run = Test::new().world(&sim).args(["up"]).code(2).run();
        assert!(run.stderr.contains(named), "{file}: {}", run.stderr);
        sim.rewrite(file, to, from);
    }
    assert_eq!(writes(&sim.audit()), Vec::<String>::new());
}

/// Preflight removes the legacy proxies only once the cluster-side input has passed too.
#[test]
fn legacy_proxies_stay_when_a_cluster_side_check_fails() {
    let sim = World::start(SimOptions { legacy_proxies: true, ..World::options() });
    sim.fault(Fault::RemoveSecretKey { key: "INVENTORY_DB_USER".into() });
    let run = Test::new().world(&sim).args(["up"]).code(3).run();
    assert!(run.stderr.contains("INVENTORY_DB_USER"), "{}", run.stderr);
    assert_eq!(writes(&sim.audit()), Vec::<String>::new());
    assert!(!sim.audit().iter().any(|e| e.source == Source::Docker && e.verb == "DELETE"));
}
