#!/usr/bin/env bash
# A naive bootstrap, as a new user would write it from the kind and Istio quick starts: create the
# cluster, load our images (no registry has them), the Gateway API CRDs, Istio, then apply every
# tier at once and let the kubelet pull what the pods need; wait for every Deployment, the
# Gateway, and register the connectors as the guide does. The benchmark's third contender
# (`bookstore-sim bench --only bootstrap`): test equipment only.
#
# Env (the benchmark sets them from the stack copy): INFRA (the infra/ folder), CLUSTER,
# OUR_IMAGES, CRDS (the Gateway API release file's URL), ESTABLISHED (CRD names), ISTIO_FLAGS
# (bootstrap.istio.install), SECRETS (a manifest of the Secrets, as a user keeps one),
# DEPLOYMENTS (namespace/name …), GATEWAYS (namespace/name …), CONNECT_URL.
set -euo pipefail
ctx=(--context "kind-$CLUSTER")

kind create cluster --name "$CLUSTER" --config "$INFRA/kind/cluster.yaml" --wait 120s
# shellcheck disable=SC2086
kind load docker-image $OUR_IMAGES --name "$CLUSTER"

kubectl "${ctx[@]}" apply --server-side -f "$CRDS"
for crd in $ESTABLISHED; do
  kubectl "${ctx[@]}" wait --for=condition=Established "crd/$crd" --timeout=60s
done

# shellcheck disable=SC2086
istioctl install --context "kind-$CLUSTER" $ISTIO_FLAGS -y
kubectl "${ctx[@]}" rollout status -n istio-system deployment/istiod --timeout=180s
kubectl "${ctx[@]}" rollout status -n istio-system daemonset/istio-cni-node --timeout=180s
kubectl "${ctx[@]}" rollout status -n istio-system daemonset/ztunnel --timeout=180s

# Every tier at once (the namespaces first, then the Secrets they hold).
kubectl "${ctx[@]}" apply --server-side -f "$INFRA/k8s/00-namespaces"
kubectl "${ctx[@]}" apply --server-side -f "$SECRETS"
for tier in "$INFRA"/k8s/*/; do
  case "$tier" in */00-namespaces/) continue ;; esac
  kubectl "${ctx[@]}" apply --server-side -f "$tier"
done

for d in $DEPLOYMENTS; do
  kubectl "${ctx[@]}" rollout status -n "${d%%/*}" "deployment/${d#*/}" --timeout=600s
done
for g in $GATEWAYS; do
  kubectl "${ctx[@]}" wait -n "${g%%/*}" --for=condition=Programmed \
    "gateways.gateway.networking.k8s.io/${g#*/}" --timeout=180s
done

# The connectors, as the restart guide registers them.
until curl -sf "$CONNECT_URL/connectors" > /dev/null 2>&1; do sleep 1; done
secret() {
  kubectl "${ctx[@]}" get secret -n infra debezium-db-credentials -o jsonpath="{.data.$1}" | base64 -d
}
for entry in "ecom-connector:ECOM" "inventory-connector:INVENTORY"; do
  connector=${entry%%:*}; prefix=${entry#*:}
  user=$(secret "${prefix}_DB_USER"); pass=$(secret "${prefix}_DB_PASSWORD")
  config=$(python3 -c "
import json, sys
with open('$INFRA/debezium/connectors/$connector.json') as f:
    c = json.load(f)
c['config']['database.user'] = sys.argv[1]
c['config']['database.password'] = sys.argv[2]
print(json.dumps(c['config']))
" "$user" "$pass")
  # Connect answers 500 while its worker joins the group: try again.
  until curl -sf -X PUT -H "Content-Type: application/json" --data "$config" \
    "$CONNECT_URL/connectors/$connector/config" > /dev/null; do sleep 1; done
  echo "Registered $connector"
done
