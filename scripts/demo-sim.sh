# Sourced by demo.sh and demo-watch.sh: build, start the simulator in a temp folder with the
# arguments given (`start_sim --broken`), point this shell at it (its KUBECONFIG, DOCKER_HOST,
# PATH, HOME), and define `show` (the gateway's answer and Connect's connectors, as curl shows them).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scale="${DEMO_TIME_SCALE:-0.1}"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
dir="$(mktemp -d /tmp/bookstore-demo.XXXXXX)"
sim=""
start_sim() {
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p bookstore -p bookstore-sim
  "$bin/bookstore-sim" serve --dir "$dir" --time-scale "$scale" "$@" >"$dir/env.sh" 2>"$dir/sim.log" &
  sim=$!
  for _ in $(seq 200); do grep -q '^# control' "$dir/env.sh" 2>/dev/null && break; sleep 0.1; done
  grep -q '^# control' "$dir/env.sh" || { echo "the simulator did not start:"; cat "$dir/sim.log"; exit 1; }
  # shellcheck disable=SC1091
  source "$dir/env.sh"
  export TMPDIR="$dir"
  stack="$(sed -n 's/^# stack: //p' "$dir/env.sh")"
  gateway="http://127.0.0.1:$(port 30000)"
  connect="http://127.0.0.1:$(port 32300)"
}
stop_sim() {
  if [ -n "$sim" ]; then kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; fi
  rm -rf "$dir"
}
port() { awk -v p="$1" '$2 == "host-port" && $3 == p { print $4 }' "$dir/env.sh"; }
get() { local out; out="$(curl -s -m 3 -w '   [HTTP %{http_code}]' "$@")" && echo "$out" || echo "   (no answer)"; }
show() {
  printf '$ curl -H "Host: myecom.net" %s/\n' "$gateway"
  get -H 'Host: myecom.net' "$gateway/"
  printf '$ curl %s/connectors\n' "$connect"
  get "$connect/connectors"
}
