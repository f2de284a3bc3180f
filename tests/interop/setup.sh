#!/usr/bin/env bash
# Tooling for tests/interop (test_typescript_clients.py): node >= 22.19, which the MCP Inspector 2.12 needs, and the
# TypeScript MCP SDK + Inspector pinned by package-lock.json. When the machine's node is older, node 22 comes from
# the npm package node-linux-<arch>@22, installed into tests/interop/.node/. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

arch=$(uname -m)
case "$arch" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; esac
NPM_FLAGS=(--no-audit --no-fund --update-notifier=false --loglevel=error)

recent() { [ -x "$1" ] && "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 19) ? 0 : 1)' 2>/dev/null; }

if recent .node/node_modules/.bin/node; then
  node_dir=$PWD/.node/node_modules/.bin
elif command -v node >/dev/null 2>&1 && recent "$(command -v node)"; then
  node_dir=$(dirname "$(command -v node)")
else
  echo "interop: $(node --version 2>/dev/null || echo 'no node') is older than 22.19; installing node-linux-$arch@22 into tests/interop/.node"
  npm install --prefix .node --no-save "${NPM_FLAGS[@]}" "node-linux-$arch@22"
  node_dir=$PWD/.node/node_modules/.bin
  recent "$node_dir/node" || { echo "interop: node-linux-$arch@22 did not give a node >= 22.19" >&2; exit 1; }
fi
export PATH="$node_dir:$PATH"

# npm runs on the node first on PATH, so the install below uses node 22. The stamp skips it while the lock is unchanged.
if ! cmp -s package-lock.json node_modules/.envfleet-lock 2>/dev/null; then
  npm ci "${NPM_FLAGS[@]}"
  cp package-lock.json node_modules/.envfleet-lock
fi
version() { node -p "JSON.parse(require('fs').readFileSync('node_modules/@modelcontextprotocol/$1/package.json')).version"; }
echo "interop: node $(node --version) at $node_dir, TypeScript SDK $(version sdk), Inspector $(version inspector)"
