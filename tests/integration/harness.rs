//! The fast test world: fake `kind`/`kubectl`/`docker` executables first on PATH (in the manner
//! of just's `tests/test.rs`), a copy of the stack with free host ports, and small loopback HTTP
//! servers standing in for Kafka Connect and the smoke targets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_bookstore");
pub const PORTS: [u16; 6] = [30000, 31111, 32000, 32100, 32200, 32300];
/// A password no shell quoting survives by accident (the kit's one hostile password).
pub use bookstore_sim::kit::HOSTILE;

pub const ENVOY_503: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

#[derive(Clone, Debug)]
pub struct Req {
    pub port: u16,
    pub method: String,
    pub path: String,
    pub host: String,
    pub body: String,
}

/// What the HTTP stand-ins answer, and what they saw.
#[derive(Default)]
pub struct Http {
    pub requests: Vec<Req>,
    /// Stored connector configs (what `PUT /connectors/{n}/config` wrote).
    pub connectors: BTreeMap<String, BTreeMap<String, String>>,
    /// The database password Connect validates against.
    pub db_password: String,
    /// The gateway answers Envoy's 503 (stale ambient registrations).
    pub gateway_503: bool,
    /// Answer 409 to the next N config GETs.
    pub conflicts: usize,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub http: Arc<Mutex<Http>>,
    /// container port → host port of the stand-in server
    pub ports: BTreeMap<u16, u16>,
    pub scenario: Value,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let http = Arc::new(Mutex::new(Http { db_password: HOSTILE.into(), ..Http::default() }));
        let mut ports = BTreeMap::new();
        for container_port in PORTS {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            ports.insert(container_port, listener.local_addr().unwrap().port());
            let http = Arc::clone(&http);
            std::thread::spawn(move || serve(listener, container_port, http));
        }
        // The stack, copied with the stand-ins' ports and short deadlines.
        let infra = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra");
        let copy = dir.path().join("infra");
        copy_tree(&infra, &copy);
        let mut cluster = std::fs::read_to_string(infra.join("kind/cluster.yaml")).unwrap();
        for (c, h) in &ports {
            cluster = cluster.replace(&format!("hostPort: {c}"), &format!("hostPort: {h}"));
        }
        std::fs::write(copy.join("kind/cluster.yaml"), cluster).unwrap();
        let stack = std::fs::read_to_string(infra.join("stack.yaml"))
            .unwrap()
            .replace("timeout: 120s", "timeout: 5s")
            .replace("timeout: 180s", "timeout: 5s")
            .replace("timeout: 90s", "timeout: 5s")
            .replace("settle: 1s", "settle: 0s");
        std::fs::write(copy.join("stack.yaml"), stack).unwrap();

        // The fakes, first on PATH.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake.py");
        for tool in ["kind", "kubectl", "docker"] {
            std::os::unix::fs::symlink(&fake, bin.join(tool)).unwrap();
        }
        let deployments: Vec<Value> = stack_workloads(&copy.join("stack.yaml"))
            .into_iter()
            .map(|(name, namespace)| json!({"name": name, "namespace": namespace}))
            .collect();
        let node_ports: Vec<Value> = ports.iter().map(|(c, h)| json!([c, h])).collect();
        let scenario = json!({
            "deployments": deployments,
            "node": {"running": true, "ports": node_ports},
            "secret": {
                "ECOM_DB_USER": "ecomuser", "ECOM_DB_PASSWORD": HOSTILE,
                "INVENTORY_DB_USER": "invuser", "INVENTORY_DB_PASSWORD": HOSTILE,
            },
            "latency": {"ecom-db": 0.3, "keycloak-db": 0.2, "kafka": 0.2},
            "default_latency": 0.05,
        });
        let world = World { dir, http, ports, scenario };
        world.write_scenario();
        world
    }

    pub fn write_scenario(&self) {
        std::fs::write(self.dir.path().join("scenario.json"), self.scenario.to_string()).unwrap();
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.scenario[key] = value;
        self.write_scenario();
    }

    pub fn stack(&self) -> PathBuf {
        self.dir.path().join("infra/stack.yaml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        let path = format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display());
        cmd.args(args)
            .arg("--stack")
            .arg(self.stack())
            .env_clear()
            .env("PATH", path)
            .env("FAKE_DIR", self.dir.path())
            .env("NO_COLOR", "1")
            .env("TMPDIR", self.dir.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().unwrap();
        Run::from(output)
    }

    /// Every fake invocation, in order.
    pub fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub fn argv_lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| {
                let argv: Vec<&str> =
                    c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                format!("{} {}", c["tool"].as_str().unwrap(), argv.join(" "))
            })
            .collect()
    }

    pub fn restarts(&self) -> Vec<String> {
        self.argv_lines().into_iter().filter(|l| l.contains("rollout restart")).collect()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// (name, namespace) of every workload in a stack file (read with the stack file's own shape).
fn stack_workloads(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| l.trim_start().starts_with("- { name:") && l.contains("namespace:"))
        .map(|l| {
            let field = |k: &str| {
                l.split(&format!("{k}: ")).nth(1).unwrap().split([',', ' ', '}']).next().unwrap().to_string()
            };
            (field("name"), field("namespace"))
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

fn serve(listener: TcpListener, port: u16, http: Arc<Mutex<Http>>) {
    for stream in listener.incoming().flatten() {
        let http = Arc::clone(&http);
        std::thread::spawn(move || {
            let _ = handle(stream, port, &http);
        });
    }
}

fn handle(mut stream: TcpStream, port: u16, http: &Mutex<Http>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut host = String::new();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (k, v) = header.split_once(':').unwrap_or((header, ""));
        match k.to_ascii_lowercase().as_str() {
            "host" => host = v.trim().to_string(),
            "content-length" => length = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let req = Req { port, method, path, host, body: String::from_utf8_lossy(&body).into_owned() };
    let (status, text) = answer(&req, &mut http.lock().unwrap());
    http.lock().unwrap().requests.push(req);
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(reply.as_bytes())
}

fn error(code: u16, message: &str) -> (u16, String) {
    (code, json!({"error_code": code, "message": message}).to_string())
}

/// Kafka Connect's answers (../shared/reference/kafka-connect.md) and the smoke targets'.
fn answer(req: &Req, h: &mut Http) -> (u16, String) {
    if req.port == 30000 && h.gateway_503 {
        return (503, ENVOY_503.to_string());
    }
    if req.port != 32300 {
        return (200, "ok".into());
    }
    let segments: Vec<&str> = req.path.split('?').next().unwrap().trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["connectors"]) if req.path.contains("expand=status") => {
            let running = json!({"state": "RUNNING", "worker_id": "w"});
            let map: serde_json::Map<String, Value> = h
                .connectors
                .keys()
                .map(|n| (n.clone(), json!({"status": {"name": n, "connector": running, "tasks": [running], "type": "source"}})))
                .collect();
            (200, Value::Object(map).to_string())
        }
        ("GET", ["connectors"]) => (200, json!(h.connectors.keys().collect::<Vec<_>>()).to_string()),
        ("GET", ["connectors", name, "config"]) => {
            if h.conflicts > 0 {
                h.conflicts -= 1;
                return error(409, "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)");
            }
            match h.connectors.get(*name) {
                Some(c) => (200, json!(c).to_string()),
                None => error(404, &format!("Connector {name} not found")),
            }
        }
        ("PUT", ["connectors", name, "config"]) => {
            let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(&req.body) else {
                return error(500, "Cannot deserialize value of type `java.lang.String` from Object value (token `JsonToken.START_OBJECT`)");
            };
            if map.get("database.password") != Some(&h.db_password) {
                let user = map.get("database.user").cloned().unwrap_or_default();
                return error(400, &format!("Connector configuration is invalid and contains the following 1 error(s):\nError while validating connector config: FATAL: password authentication failed for user \"{user}\"\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`"));
            }
            let existed = h.connectors.insert(name.to_string(), map.clone()).is_some();
            let info = json!({"name": name, "config": map, "tasks": [], "type": "source"});
            (if existed { 200 } else { 201 }, info.to_string())
        }
        ("GET", ["connectors", name, "status"]) => match h.connectors.contains_key(*name) {
            true => (200, json!({"name": name, "connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}).to_string()),
            false => error(404, &format!("No status found for connector {name}")),
        },
        _ => error(404, "HTTP 404 Not Found"),
    }
}
