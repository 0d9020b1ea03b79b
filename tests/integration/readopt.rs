//! Issue 22 end to end, through the real clients: after a Docker restart `up` keeps what the mesh
//! re-adopted (proven per pod: ztunnel's workloadState through `istioctl ztunnel-config`, and
//! istio-cni's capture lines), restarts what it did not, and ends a crash-looping app's kubelet
//! back-off by deleting its pod once its database is Ready. The guide's world (nothing
//! re-adopted) gets the whole remedy as before: `sim_e2e` and `doctor` hold that.

use bookstore::event::{Decided, Event};
use bookstore::stack::{Role, Source};
use bookstore_sim::kit::{BOUND, Test, World};
use bookstore_sim::{AuditEntry, Fault, MeshReturn, SimOptions, Source as From};

/// The mesh re-adopts every pod but one database's, drawn with the seed, after a Docker restart.
pub fn readopted_options() -> SimOptions {
    let stack = bookstore::stack::load(Source::Embedded).unwrap();
    let among = stack.workloads.iter().filter(|w| w.role == Role::Database).map(|w| w.name.clone()).collect();
    SimOptions { mesh_return: MeshReturn::Readopted { seed: 22, outside: 1, among }, ..World::options() }
}

/// Docker restarts; settled: every pod back, the app that needs the database left outside the
/// mesh crash-looping (refused at 15008: it is in the mesh, the database is not), four crashes
/// deep (its back-off 80 s × the scale: it is still in it when `up` looks). The database and
/// the app.
pub fn restart_readopted(world: &World) -> (String, String) {
    let stack = bookstore::stack::load(Source::Embedded).unwrap();
    world.docker_restart();
    world.wait_settled(BOUND).unwrap();
    let outside: Vec<String> =
        world.pods().into_iter().filter(|p| p.ambient && !p.registered).map(|p| p.workload).collect();
    assert_eq!(outside.len(), 1, "{outside:?}");
    let db = outside[0].clone();
    let app = stack.workloads.iter().find(|w| w.needs.contains(&db)).expect("an app needs it").name.clone();
    world
        .wait_for(BOUND, "the app's crash loop", |w| {
            // One restart in place with the node, then four crashes.
            w.pod_views().iter().any(|p| p.workload == app && p.crash_loop && p.restart_count >= 5)
        })
        .unwrap();
    (db, app)
}

/// inventory-service's new pod crash-loops (a fault, gone once it is four crashes deep: its
/// back-off is then 80 s × the scale) while inventory-db is Ready; its old pod still serves.
pub fn crash_looping_app(world: &World) {
    world.fault(Fault::CrashLoop { workload: "inventory-service".into() });
    world.kubectl(&["rollout", "restart", "deployment/inventory-service", "-n", "inventory"]).ok();
    world
        .wait_for(BOUND, "inventory-service's back-off", |w| {
            w.pod_views()
                .iter()
                .any(|p| p.workload == "inventory-service" && p.crash_loop && p.restart_count >= 4)
        })
        .unwrap();
    world.fault(Fault::Clear);
}

/// The `decision` events of a `--json` run, by workload: (workload, action, reason).
fn decisions(run: &bookstore_sim::kit::Run) -> Vec<(String, String, String)> {
    run.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Decision { subject: Decided::Workload { workload, .. }, action, reason } => {
                let action = serde_json::to_value(action).ok()?.as_str()?.to_string();
                Some((workload, action, reason))
            }
            _ => None,
        })
        .collect()
}

fn deleted_pods(audit: &[AuditEntry]) -> Vec<String> {
    audit
        .iter()
        .filter(|e| e.source == From::Kube && e.verb == "DELETE" && e.path.contains("/pods/"))
        .filter_map(|e| e.path_only().rsplit('/').next().map(String::from))
        .collect()
}

#[test]
fn the_mesh_readopted_all_but_one_database_up_restarts_it_alone_and_replaces_its_app() {
    let world = World::start(readopted_options());
    let (db, app) = restart_readopted(&world);
    let looping = world.pods().into_iter().find(|p| p.workload == app && p.crash_loop).unwrap().name;
    world.mark();
    let run = Test::new().world(&world).args(["up"]).json().run();
    let audit = world.audit();

    // The database alone restarted; ztunnel kept; the app's crash-looping pod deleted (its
    // ReplicaSet recreates it: a restart without the back-off), once the database was Ready.
    // (`restarts` counts the rollout and the pod deleted: each a restart.)
    let mut restarted = vec![db.clone(), app.clone()];
    restarted.sort();
    assert_eq!(world.restarts().into_keys().collect::<Vec<_>>(), restarted, "{}", run.stderr);
    assert_eq!(world.patches().len(), 1, "one rollout: the database's");
    assert_eq!(deleted_pods(&audit), std::slice::from_ref(&looping));
    let db_ready =
        audit.iter().position(|e| e.verb == "pod-ready" && e.detail == db).expect("the database Ready");
    let delete = audit.iter().position(|e| e.verb == "DELETE").unwrap();
    assert!(db_ready < delete, "the app's pod is deleted once its database is Ready");
    world.assert_recovered();
    world.assert_every_route_answers();
    world.check();

    // Each decision with its evidence: ztunnel shown to work, the database not adopted, the app
    // in its back-off, every other workload kept on both sides' evidence.
    let decided = decisions(&run);
    let of = |w: &str| decided.iter().find(|(n, _, _)| n == w).cloned().unwrap();
    let (_, act, why) = of("ztunnel");
    assert_eq!(act, "keep");
    assert!(
        why.contains("came back with the node") && why.contains("it adopted 15 of the 16 meshed pod(s)"),
        "{why}"
    );
    let (_, act, why) = of(&db);
    assert_eq!(act, "restart");
    assert!(why.contains("ztunnel runs no proxy for its UID"), "{why}");
    let (_, act, why) = of(&app);
    assert_eq!(act, "restart");
    assert!(why.contains(&format!("its pod {looping} is in the kubelet's crash-loop back-off")), "{why}");
    let kept: Vec<&(String, String, String)> =
        decided.iter().filter(|(n, a, _)| a == "keep" && n != "ztunnel").collect();
    assert_eq!(kept.len(), 14, "{decided:#?}");
    for (name, _, why) in kept {
        assert!(
            why.starts_with(&format!("ztunnel adopted {name}-"))
                && why.contains("Up in its workloadState; istio-cni: "),
            "{why}"
        );
        assert!(
            why.contains("sent in the start-up snapshot at")
                || why.contains("added by the CNI plugin's ADD at"),
            "{why}"
        );
    }
    // Read-only and from the outside: ztunnel's config dump through istioctl's port-forward.
    assert!(
        audit.iter().any(|e| e.source == From::Standin && e.path.starts_with("ztunnel-config all --node "))
    );

    // Healed: a second look finds nothing to do.
    Test::new()
        .world(&world)
        .args(["up", "--dry-run"])
        .stdout_has("# Stack healthy: nothing to restart")
        .run();
}

/// A crash-looping app whose database is Ready: `up` deletes its pod at once (its ReplicaSet
/// recreates it, without the kubelet's back-off, kept per pod UID), rather than wait it out.
#[test]
fn a_crash_looping_app_whose_database_is_ready_is_replaced_at_once() {
    let world = World::healthy();
    crash_looping_app(&world);
    let looping =
        world.pods().into_iter().find(|p| p.workload == "inventory-service" && p.crash_loop).unwrap().name;
    world.mark();
    let delete = format!("kubectl --context kind-bookstore delete pod {looping} -n inventory --wait=false");
    Test::new().world(&world).args(["up", "--dry-run"]).stdout_has(delete).run();
    let run =
        Test::new().world(&world).args(["up"]).stderr_has(format!("delete {looping} (inventory)")).run();
    assert_eq!(deleted_pods(&world.audit()), std::slice::from_ref(&looping));
    world.assert_nothing_restarted();
    let pods = world.pods().into_iter().filter(|p| p.workload == "inventory-service").collect::<Vec<_>>();
    assert!(pods.iter().all(|p| p.ready && p.name != looping), "{pods:?}\n{}", run.stderr);
    world.assert_every_route_answers();
    world.check();
}
