#!/usr/bin/env bash
# `make demo`: on a machine without Docker, start the simulator just after a simulated Docker
# Desktop restart, show the broken stack (the gateway's Envoy 503, the empty connectors), run
# `bookstore up` (with DEMO_ARGS, e.g. `--timings`), and show it healthy. Under a minute (time
# scale 0.1; DEMO_TIME_SCALE=1 for real time).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scale="${DEMO_TIME_SCALE:-0.1}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p bookstore -p bookstore-sim
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
dir="$(mktemp -d /tmp/bookstore-demo.XXXXXX)"
"$bin/bookstore-sim" serve --dir "$dir" --time-scale "$scale" --broken >"$dir/env.sh" 2>"$dir/sim.log" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do grep -q '^# control' "$dir/env.sh" 2>/dev/null && break; sleep 0.1; done
grep -q '^# control' "$dir/env.sh" || { echo "the simulator did not start:"; cat "$dir/sim.log"; exit 1; }
# shellcheck disable=SC1091
source "$dir/env.sh"
stack="$(sed -n 's/^# stack: //p' "$dir/env.sh")"
port() { awk -v p="$1" '$2 == "host-port" && $3 == p { print $4 }' "$dir/env.sh"; }
gateway="http://127.0.0.1:$(port 30000)"
connect="http://127.0.0.1:$(port 32300)"
show() {
  printf '\n$ curl -H "Host: myecom.net" %s/\n' "$gateway"
  curl -s -w '   [HTTP %{http_code}]\n' -H 'Host: myecom.net' "$gateway/" || true
  printf '$ curl %s/connectors\n' "$connect"
  curl -s -w '   [HTTP %{http_code}]\n' "$connect/connectors" || true
}
# After the restart every pod comes back Ready (with a stale mesh registration) and Connect
# answers again: that is what a user meets.
for _ in $(seq 600); do "$bin/bookstore-sim" ctl --dir "$dir" healthy >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$connect/connectors")" = 200 ] && break; sleep 0.1; done
echo "== A simulated kind cluster after Docker Desktop restarted (time scale $scale): every pod Ready again"
show
printf '\n== bookstore up %s\n' "${DEMO_ARGS:-}"
read -ra extra <<<"${DEMO_ARGS:-}"
"$bin/bookstore" up --stack "$stack" "${extra[@]}"
printf '\n== After\n'
show
