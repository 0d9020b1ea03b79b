#!/usr/bin/env python3
"""Fake `kind`, `kubectl` and `docker` for the fast integration tests (installed under each name).

Every invocation is appended to $FAKE_DIR/calls.jsonl with its argv and a timestamp. Behaviour comes
from $FAKE_DIR/scenario.json; cluster state (deployment generations, restart times) lives in
$FAKE_DIR/state.json. Deployments become Ready `latency` seconds after their restart, so the order
in which the tool restarts and waits is observable in the log.
"""
import base64
import fcntl
import json
import os
import sys
import time

DIR = os.environ["FAKE_DIR"]
TOOL = os.path.basename(sys.argv[0])
ARGS = sys.argv[1:]


def load(name, default):
    try:
        with open(os.path.join(DIR, name)) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


SCENARIO = load("scenario.json", {})


def log(**extra):
    entry = {"tool": TOOL, "argv": ARGS, "t": time.time()}
    entry.update(extra)
    with open(os.path.join(DIR, "calls.jsonl"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(entry) + "\n")


def with_state(update):
    path = os.path.join(DIR, "state.json")
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load("state.json", {})
        result = update(state)
        with open(path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(path + ".tmp", path)
        return result


def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def deployments():
    return SCENARIO.get("deployments", [])


def latency(name):
    return SCENARIO.get("latency", {}).get(name, SCENARIO.get("default_latency", 0.05))


def deployment_object(d, state, now):
    key = d["namespace"] + "/" + d["name"]
    s = state.get(key, {"generation": 1, "restarted_at": 0})
    gen = s["generation"]
    ready = now >= s["restarted_at"] + latency(d["name"]) and d["name"] not in SCENARIO.get("never_ready", [])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": d["name"], "namespace": d["namespace"], "generation": gen},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": gen if ready else gen - 1,
            "replicas": 1,
            "updatedReplicas": 1 if ready else 0,
            "readyReplicas": 1 if ready else 0,
            "availableReplicas": 1 if ready else 0,
        },
    }


def kubectl():
    if ARGS[:2] != ["--context", SCENARIO.get("context", "kind-bookstore")]:
        if ARGS[:1] == ["--context"]:
            fail('error: context "%s" does not exist' % ARGS[1])
    rest = ARGS[2:] if ARGS[:1] == ["--context"] else ARGS
    if rest[:3] == ["get", "--raw", "/readyz"]:
        refuse = SCENARIO.get("api_refuse_until", 0)
        if time.time() < refuse:
            fail("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?")
        print("ok")
        return
    if rest[:2] == ["rollout", "restart"]:
        if "-f" in rest:  # objects named on stdin, each with its namespace
            items = json.load(sys.stdin)["items"]
            kinds = {"Deployment": "deployment", "DaemonSet": "daemonset"}
            pairs = [(i["metadata"]["namespace"], kinds[i["kind"]] + "/" + i["metadata"]["name"]) for i in items]
        else:
            ns = rest[rest.index("-n") + 1]
            pairs = [(ns, a) for a in rest[2:] if "/" in a]
        targets = [t for _, t in pairs]
        log(event="restart", targets=[ns + "/" + t for ns, t in pairs])
        now = time.time()

        def bump(state):
            for ns, t in pairs:
                kind, name = t.split("/", 1)
                key = ns + "/" + name
                s = state.get(key, {"generation": 1, "restarted_at": 0})
                state[key] = {"generation": s["generation"] + 1, "restarted_at": now}

        with_state(bump)
        for t in targets:
            kind = "daemonset.apps" if t.startswith("daemonset") else "deployment.apps"
            print("%s/%s restarted" % (kind, t.split("/", 1)[1]))
        return
    if rest[:2] == ["rollout", "status"]:
        target = rest[2]
        if target.split("/", 1)[1] in SCENARIO.get("never_ready", []):
            time.sleep(1)
            fail("error: timed out waiting for the condition")
        time.sleep(latency(target.split("/", 1)[1]))
        log(event="rolled-out")
        print('daemon set "%s" successfully rolled out' % target.split("/", 1)[1])
        return
    if rest[:2] == ["get", "deployments"] and "--watch" in rest:
        sent = {}
        deadline = time.time() + 30
        while time.time() < deadline:
            state = load("state.json", {})
            now = time.time()
            for d in deployments():
                obj = deployment_object(d, state, now)
                key = (d["namespace"], d["name"])
                snapshot = json.dumps(obj, sort_keys=True)
                if sent.get(key) != snapshot:
                    kind = "ADDED" if key not in sent else "MODIFIED"
                    sent[key] = snapshot
                    print(json.dumps({"type": kind, "object": obj}, indent=4), flush=True)
            time.sleep(0.01)
        return
    if rest[:2] == ["get", "deployments"]:
        state = load("state.json", {})
        items = [deployment_object(d, state, time.time()) for d in deployments()]
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=4))
        return
    if rest[:2] == ["get", "secret"]:
        secret = SCENARIO.get("secret")
        if secret is None:
            fail('Error from server (NotFound): secrets "%s" not found' % rest[2])
        data = {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()}
        print(json.dumps({"apiVersion": "v1", "kind": "Secret", "data": data}, indent=4))
        return
    fail("fake kubectl: unsupported: %s" % " ".join(ARGS))


def docker():
    if SCENARIO.get("docker_down"):
        fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
    if ARGS[:1] == ["version"]:
        print("28.2.2")
        return
    if ARGS[:1] == ["inspect"]:
        node = SCENARIO.get("node", {"running": True, "ports": []})
        bindings = {"%d/tcp" % c: [{"HostIp": "127.0.0.1", "HostPort": str(h)}] for c, h in node["ports"]}
        status = "running" if node["running"] else "exited"
        print(json.dumps([{"State": {"Running": node["running"], "Status": status},
                           "HostConfig": {"PortBindings": bindings}}]))
        return
    if ARGS[:1] == ["ps"]:
        for name in SCENARIO.get("proxies", []):
            print(name)
        return
    if ARGS[:2] == ["rm", "-f"]:
        for name in ARGS[2:]:
            print(name)
        return
    fail("fake docker: unsupported: %s" % " ".join(ARGS))


def kind():
    if ARGS[:2] == ["get", "clusters"]:
        clusters = SCENARIO.get("clusters", ["bookstore"])
        if not clusters:
            sys.stderr.write("No kind clusters found.\n")
        for c in clusters:
            print(c)
        return
    if ARGS[:2] == ["delete", "cluster"]:
        sys.stderr.write('Deleting cluster "%s" ...\n' % ARGS[ARGS.index("--name") + 1])
        return
    fail("fake kind: unsupported: %s" % " ".join(ARGS))


log()
{"kubectl": kubectl, "docker": docker, "kind": kind}[TOOL]()
