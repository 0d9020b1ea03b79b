#!/usr/bin/env bash
# `make demo-watch`: on a machine without Docker, start the simulator with a healthy stack and
# `bookstore watch` beside it, then restart "Docker Desktop" (Docker away a few seconds, the node
# restarted, the mesh stale, Kafka's topics gone) and do nothing: the watcher heals it. Under a
# minute (time scale 0.1).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scale="${DEMO_TIME_SCALE:-0.1}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p bookstore -p bookstore-sim
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
dir="$(mktemp -d /tmp/bookstore-demo.XXXXXX)"
"$bin/bookstore-sim" serve --dir "$dir" --time-scale "$scale" >"$dir/env.sh" 2>"$dir/sim.log" &
sim=$!
watcher=""
cleanup() {
  if [ -n "$watcher" ]; then kill -TERM "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; fi
  kill "$sim" 2>/dev/null || true
  wait "$sim" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 200); do grep -q '^# control' "$dir/env.sh" 2>/dev/null && break; sleep 0.1; done
grep -q '^# control' "$dir/env.sh" || { echo "the simulator did not start:"; cat "$dir/sim.log"; exit 1; }
# shellcheck disable=SC1091
source "$dir/env.sh"
export TMPDIR="$dir"
stack="$(sed -n 's/^# stack: //p' "$dir/env.sh")"
port() { awk -v p="$1" '$2 == "host-port" && $3 == p { print $4 }' "$dir/env.sh"; }
gateway="http://127.0.0.1:$(port 30000)"
connect="http://127.0.0.1:$(port 32300)"
show() {
  printf '$ curl -H "Host: myecom.net" %s/\n' "$gateway"
  curl -s -m 3 -w '   [HTTP %{http_code}]\n' -H 'Host: myecom.net' "$gateway/" || echo "   (no answer)"
  printf '$ curl %s/connectors\n' "$connect"
  curl -s -m 3 -w '   [HTTP %{http_code}]\n' "$connect/connectors" || echo "   (no answer)"
}
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
