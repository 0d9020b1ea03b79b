#!/usr/bin/env bash
# `make demo-watch`: on a machine without Docker, start the simulator with a healthy stack and
# `bookstore watch` beside it, then restart "Docker Desktop" (Docker away a few seconds, the node
# restarted, the mesh stale, Kafka's topics gone) and do nothing: the watcher heals it. Under a
# minute (time scale 0.1).
set -euo pipefail
# shellcheck source=scripts/demo-sim.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-sim.sh"
watcher=""
cleanup() {
  if [ -n "$watcher" ]; then kill -TERM "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; fi
  stop_sim
}
trap cleanup EXIT
start_sim
saw() { local n; n="$(grep -c "\"event\":\"$1\"" "$dir/watch.jsonl" 2>/dev/null)" || true; echo "${n:-0}"; }

echo "== A healthy simulated kind cluster (time scale $scale)"
show
printf '\n== bookstore watch (running beside you; its progress below)\n'
"$bin/bookstore" watch --stack "$stack" --json >"$dir/watch.jsonl" &
watcher=$!
for _ in $(seq 300); do [ "$(saw watching)" -ge 1 ] && break; sleep 0.1; done

printf '\n== Docker Desktop restarts (Docker away 3 s); nobody runs anything\n'
"$bin/bookstore-sim" ctl --dir "$dir" docker-restart '{"down_secs":3}' >/dev/null
sleep 1
show
for _ in $(seq 1200); do [ "$(saw heal_finished)" -ge 1 ] && break; sleep 0.1; done

printf '\n== After the watcher healed it\n'
show
printf '\n== Stopping the watcher (SIGTERM, as launchd or systemd would)\n'
kill -TERM "$watcher"
wait "$watcher" && echo "bookstore watch exited 0"
watcher=""
