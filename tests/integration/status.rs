//! `bookstore status` on the simulator: the table after a Docker restart and after `up`, and the
//! same as one JSON document.

use serde_json::Value;

use bookstore_sim::kit::{Test, World};

/// The row whose first column is `name` in the section (workloads 0, connectors 1, routes 2).
fn row(table: &str, section: usize, name: &str) -> String {
    let part = table.split("\n\n").nth(section).unwrap_or("");
    part.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in section {section} of\n{table}"))
        .to_string()
}

#[test]
fn the_table_tells_a_broken_stack_from_a_healed_one() {
    let sim = World::healthy();
    sim.restart_docker();
    let run = Test::new().world(&sim).args(["status"]).code(0).run();
    let table = &run.stdout;
    for header in
        ["WORKLOAD", "NAMESPACE", "READY", "RESTARTS", "AGE", "CONNECTOR", "STATE", "ROUTE", "ANSWER"]
    {
        assert!(table.contains(header), "{header} in\n{table}");
    }
    let db: Vec<String> = row(table, 0, "ecom-db").split_whitespace().map(String::from).collect();
    assert_eq!(&db[..4], ["ecom-db", "ecom", "1/1", "1"], "restarted once in place by the Docker restart");
    assert!(row(table, 2, "ui").contains("503 upstream reset (connection termination)"), "{table}");
    assert!(row(table, 1, "ecom-connector").contains("missing"), "{table}");
    // Its NodePort's plaintext reaches the pod nothing captured.
    assert!(row(table, 2, "pgadmin").contains("200"), "{table}");
    assert!(row(table, 2, "debezium").contains("200, but connectors: ecom-connector missing"), "{table}");
    // The node engine, as kind would choose it here, and the engine the cluster's Nodes name.
    let engine: Vec<String> = row(table, 3, "docker").split_whitespace().map(String::from).collect();
    assert_eq!(&engine[..3], ["docker", "docker", "`docker"], "{table}");
    assert!(run.stderr.is_empty(), "status writes its table only: {}", run.stderr);

    Test::new().world(&sim).args(["up"]).code(0).run();
    let run = Test::new().world(&sim).args(["status", "--json"]).code(0).run();
    let doc: Value = serde_json::from_str(&run.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(doc["cluster"], "bookstore");
    assert_eq!(doc["engine"]["provider"], "docker");
    assert_eq!(
        (doc["engine"]["built_by"].clone(), doc["engine"]["agrees"].clone()),
        (serde_json::json!(["docker"]), Value::Bool(true))
    );
    let workloads = doc["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 16);
    for w in workloads {
        assert_eq!(w["ready"], w["desired"], "{w}");
        assert!(w["age_seconds"].as_u64().is_some());
    }
    for c in doc["connectors"].as_array().unwrap() {
        assert_eq!(c["state"], "RUNNING", "{c}");
    }
    let routes = doc["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 9);
    for r in routes {
        assert_eq!((r["ok"].as_bool(), r["status"].as_u64()), (Some(true), Some(200)), "{r}");
    }
    // The table and the document agree.
    let table = Test::new().world(&sim).args(["status"]).any_code().run().stdout;
    assert!(row(&table, 1, "ecom-connector").contains("RUNNING (1/1 tasks running)"), "{table}");
    assert!(row(&table, 2, "ui").split_whitespace().nth(1) == Some("200"), "{table}");
}
