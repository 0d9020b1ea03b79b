#!/usr/bin/env bash
# `make demo`: on a machine without Docker, start the simulator just after a simulated Docker
# Desktop restart, show the broken stack (the gateway's Envoy 503, the empty connectors), run
# `bookstore up` (with DEMO_ARGS, e.g. `--timings`), and show it healthy. Under a minute (time
# scale 0.1; DEMO_TIME_SCALE=1 for real time).
set -euo pipefail
# shellcheck source=scripts/demo-sim.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-sim.sh"
trap stop_sim EXIT
start_sim --broken
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
