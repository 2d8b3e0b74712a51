#!/usr/bin/env bash
# Node.js and npm for the Node baseline of the benchmarks (bench/node), from Debian when missing.
set -euo pipefail
if ! command -v npm >/dev/null; then
  echo "installing Node.js and npm from Debian (once)..."
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
