#!/usr/bin/env bash
# The restart guide's "Manual Step-by-Step Recovery" (../shared/seed/restart-guide.md, steps 1-4),
# transcribed faithfully for the benchmark: the same kubectl calls in the same order, the same
# timeouts, the same sleeps (multiplied by TIME_SCALE, as the simulator's latencies are), the same
# 5 s poll of the Connect API, the same python3 + curl registration. Step 5 (the guide's
# smoke-test.sh, not in the guide) is left to the benchmark, which polls every route until healthy
# for every contender alike.
#
# Test equipment only: it reproduces the guide's flaws on purpose (credentials in python's argv).
#
# Env: TIME_SCALE (default 1), CONNECT_URL (default http://localhost:32300), REPO (the folder whose
# infra/debezium/connectors/ holds the connector files; default .).
set -euo pipefail
scale=${TIME_SCALE:-1}
connect=${CONNECT_URL:-http://localhost:32300}
REPO=${REPO:-.}
# The guide's `sleep N` is one `sleep` process: scale N in bash arithmetic (TIME_SCALE to the
# thousandth) rather than spawning an interpreter for every sleep, which the guide does not pay.
if [[ ! $scale =~ ^([0-9]*)(\.([0-9]*))?$ ]]; then
  echo "TIME_SCALE must be a plain decimal number, not $scale" >&2
  exit 2
fi
frac=${BASH_REMATCH[3]}000
scale_milli=$(( 10#${BASH_REMATCH[1]:-0} * 1000 + 10#${frac:0:3} ))
scaled_sleep() {
  local ms=$(( $1 * scale_milli )) f
  printf -v f '%03d' $(( ms % 1000 ))
  sleep "$(( ms / 1000 )).$f"
}

# Step 1 — Restart ztunnel
kubectl rollout restart daemonset/ztunnel -n istio-system
kubectl rollout status daemonset/ztunnel -n istio-system --timeout=90s
scaled_sleep 10   # allow mesh to stabilize before restarting pods

# Step 2 — Restart DB pods first
kubectl rollout restart deploy/ecom-db -n ecom
kubectl rollout restart deploy/inventory-db -n inventory
kubectl rollout restart deploy/keycloak-db -n identity
kubectl rollout restart deploy/analytics-db -n analytics

kubectl rollout status deploy/ecom-db -n ecom --timeout=120s
kubectl rollout status deploy/inventory-db -n inventory --timeout=120s
kubectl rollout status deploy/keycloak-db -n identity --timeout=120s
kubectl rollout status deploy/analytics-db -n analytics --timeout=120s

# Step 3 — Restart all application pods
kubectl rollout restart deploy/ecom-service -n ecom
kubectl rollout restart deploy/inventory-service -n inventory
kubectl rollout restart deploy/ui-service -n ecom
kubectl rollout restart deploy/keycloak -n identity
kubectl rollout restart deploy/kafka -n infra
kubectl rollout restart deploy/redis -n infra
kubectl rollout restart deploy/debezium -n infra
kubectl rollout restart deploy/pgadmin -n infra
kubectl rollout restart deploy/flink-jobmanager -n analytics
kubectl rollout restart deploy/flink-taskmanager -n analytics
kubectl rollout restart deploy/superset -n analytics
kubectl rollout restart deploy/prometheus -n observability

kubectl rollout status deploy/keycloak -n identity --timeout=180s
kubectl rollout status deploy/kafka -n infra --timeout=120s
kubectl rollout status deploy/debezium -n infra --timeout=180s

# Step 4 — Re-register Debezium connectors
until curl -sf "$connect/connectors" > /dev/null 2>&1; do scaled_sleep 5; done

ECOM_USER=$(kubectl get secret -n infra debezium-db-credentials \
  -o jsonpath='{.data.ECOM_DB_USER}' | base64 -d)
ECOM_PASS=$(kubectl get secret -n infra debezium-db-credentials \
  -o jsonpath='{.data.ECOM_DB_PASSWORD}' | base64 -d)
INV_USER=$(kubectl get secret -n infra debezium-db-credentials \
  -o jsonpath='{.data.INVENTORY_DB_USER}' | base64 -d)
INV_PASS=$(kubectl get secret -n infra debezium-db-credentials \
  -o jsonpath='{.data.INVENTORY_DB_PASSWORD}' | base64 -d)

for entry in "ecom-connector:$ECOM_USER:$ECOM_PASS" "inventory-connector:$INV_USER:$INV_PASS"; do
  connector=${entry%%:*}; rest=${entry#*:}; user=${rest%%:*}; pass=${rest#*:}
  python3 -c "
import json
with open('${REPO}/infra/debezium/connectors/${connector}.json') as f:
    c = json.load(f)
c['config']['database.user'] = '$user'
c['config']['database.password'] = '$pass'
print(json.dumps(c['config']))
" | curl -sf -X PUT -H "Content-Type: application/json" --data @- \
    "$connect/connectors/${connector}/config" > /dev/null
  echo "Registered $connector"
done
