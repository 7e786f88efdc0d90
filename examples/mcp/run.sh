#!/usr/bin/env bash
# Runs the MCP example against a running `agentctl dev`: sets up an agent, its
# secret, the tenant's policy, alice's token and her grant with agentctl,
# starts the guarded MCP server, runs the agent (client.py), stops the server.
#
#   examples/mcp/run.sh [AGENTCTL]
#
# AGENTCTL (argument or variable; default `agentctl` on PATH) is the binary;
# MCP_DEV_DIR the directory `agentctl dev` runs in (default: the current
# one, where its .agentsec/ is); PYTHON an interpreter with requirements.txt
# installed (default python3); MCP_PORT the server's port (default 7410).
# exchange-svc must list the server among its targets:
#   agentctl dev --target https://api.example.dev --target http://127.0.0.1:7410/mcp
# Exits non-zero when a step fails, printing the server's log.
# Note: `agentctl policy put` replaces tenant `default`'s whole policy set; the
# set written here keeps the two token:exchange rules CI's interop step uses.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
agentctl="${1:-${AGENTCTL:-agentctl}}"
python="${PYTHON:-python3}"
port="${MCP_PORT:-7410}"
dev_dir="${MCP_DEV_DIR:-$PWD}"
server_url="http://127.0.0.1:$port/mcp"
work="$(mktemp -d)"
server_log="$work/mcp-server.log"
server_pid=""

stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT

json_field() { "$python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
in_dev_dir() { (cd "$dev_dir" && "$@"); }

echo "==> agentctl: an agent for $server_url, its secret, the policy, alice's token and grant"
# A name of its own per run: names are unique in a tenant, and runs may repeat against one stack.
agent_id="$(in_dev_dir "$agentctl" agent register --tenant default --owner alice \
  --name "mcp-agent-$(date +%s)-$$" --audience http://127.0.0.1:7403 --audience "$server_url" \
  --scope read -o json | json_field id)"
client_secret="$(in_dev_dir "$agentctl" agent credential add-secret --agent-id "$agent_id" -o json \
  | json_field client_secret)"
cat >"$work/policy.json" <<JSON
{"rules": [
  {"id": "exchange", "effect": "allow", "agent": "*", "resource": "audience:*",
   "actions": ["token:exchange"], "description": "@match-all: any audience a grant covers"},
  {"id": "scopes", "effect": "allow", "agent": "*", "resource": "scope:*",
   "actions": ["token:exchange"], "description": "@match-all: any scope a grant covers"},
  {"id": "mcp-connect", "effect": "allow", "person": "person:alice", "agent": "*",
   "audience": "$server_url", "resource": "$server_url", "actions": ["initialize", "tools/list"],
   "description": "agents acting for alice may connect to the example MCP server and list its tools"},
  {"id": "alice-reads", "effect": "allow", "person": "person:alice", "agent": "*",
   "audience": "$server_url", "resource": "list_issues", "actions": ["tools/call"],
   "description": "agents acting for alice may read issues"},
  {"id": "no-repo-deletion", "effect": "deny", "agent": "*", "resource": "delete_*",
   "actions": ["tools/call"], "description": "no agent deletes repositories, whoever it acts for"}]}
JSON
in_dev_dir "$agentctl" policy put --tenant default --file "$work/policy.json" >/dev/null
person_token="$(in_dev_dir "$agentctl" token user --sub alice)"
in_dev_dir "$agentctl" grant create --person-token "$person_token" --agent-id "$agent_id" \
  --audience "$server_url" --scope read --purpose "MCP example" >/dev/null

echo "==> the MCP server on $server_url (log: $server_log)"
(cd "$here" && exec "$python" server.py --port "$port") >"$server_log" 2>&1 &
server_pid=$!

echo "==> the agent (client.py)"
# `--name=value`: a secret may begin with `-`, which argparse would take for an option.
if ! (cd "$here" && "$python" client.py --server "$server_url" --identity http://127.0.0.1:7401 \
    --client-id "$agent_id" --client-secret="$client_secret" \
    --person-token="$person_token" --person alice --scope read); then
  echo "==> MCP server log" >&2
  cat "$server_log" >&2
  exit 1
fi
stop_server
echo "==> MCP server log"
cat "$server_log"
