//! kubectl's rules and parsers, as data.

use super::*;
use serde_json::json;

#[test]
fn rollout_rules_match_kubectls() {
    let d = |generation: i64, observed: i64, updated: i64, total: i64, available: i64| {
        json!({"metadata": {"name": "x", "generation": generation}, "spec": {"replicas": 1},
               "status": {"observedGeneration": observed, "updatedReplicas": updated,
                          "replicas": total, "availableReplicas": available}})
    };
    assert!(matches!(deployment_rollout(&d(3, 2, 1, 1, 1)), Rollout::Waiting(_)));
    assert!(matches!(deployment_rollout(&d(3, 3, 0, 1, 1)), Rollout::Waiting(_)));
    assert!(matches!(deployment_rollout(&d(3, 3, 1, 2, 1)), Rollout::Waiting(_)));
    assert!(matches!(deployment_rollout(&d(3, 3, 1, 1, 0)), Rollout::Waiting(_)));
    assert_eq!(deployment_rollout(&d(3, 3, 1, 1, 1)), Rollout::Done);
    let stuck = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}});
    assert!(matches!(deployment_rollout(&stuck), Rollout::Failed(_)));
}

#[test]
fn pod_states_name_why_a_pod_is_not_ready() {
    let list = json!({"items": [
        {"metadata": {"name": "a-1"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}},
        {"metadata": {"name": "b-2"}, "status": {"phase": "Pending",
            "containerStatuses": [{"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"x:1\""}}}]}},
        {"metadata": {"name": "c-3"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}}
    ]});
    let states = pod_states(&list.to_string()).unwrap();
    assert_eq!(
        states,
        [
            "a-1: Running, not Ready, waiting: CrashLoopBackOff (back-off 40s), last exit: Error (exit code 1), restarted 3 times",
            "b-2: Pending, not Ready, waiting: ImagePullBackOff (Back-off pulling image \"x:1\")",
            "c-3: Running, Ready",
        ]
    );
    assert!(pod_states("[]").is_err());
}

#[test]
fn transient_api_failures_are_told_apart() {
    assert!(transient(
        "Error from server (ServiceUnavailable): the server is currently unable to handle the request"
    ));
    assert!(transient(
        "Error from server (InternalError): an error on the server (\"unknown\") has prevented the request from succeeding"
    ));
    assert!(transient(
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
    ));
    assert!(transient("error: failed to patch: Internal error occurred: etcdserver: request timed out"));
    assert!(!transient("Error from server (NotFound): deployments.apps \"x\" not found"));
    assert!(!transient("error: context \"kind-x\" does not exist"));
}

#[test]
fn restarted_objects_are_read_from_stdout() {
    let out = "deployment.apps/ecom-db restarted\ndeployment.apps/ecom-service restarted\n";
    assert_eq!(restarted(out), ["ecom-db", "ecom-service"]);
    assert_eq!(restarted("daemonset.apps/ztunnel restarted"), ["ztunnel"]);
    assert!(restarted("Error from server").is_empty());
}

#[test]
fn secrets_decode_in_process_and_name_missing_keys() {
    let doc = r#"{"data": {"U": "dXNlcg==", "P": "cCdhIiQgXCDDvA==", "BAD": "%%%"}}"#;
    let got = decode_secret(doc, &["U", "P"]).unwrap();
    assert_eq!(got["U"].expose(), "user");
    assert_eq!(got["P"].expose(), "p'a\"$ \\ ü");
    assert!(decode_secret(doc, &["U", "NOPE"]).unwrap_err().contains("NOPE"));
    assert!(decode_secret(doc, &["BAD"]).unwrap_err().contains("base64"));
    assert!(decode_secret("not json", &["U"]).is_err());
}
