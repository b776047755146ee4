#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (no browser download): install it when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing: install it with 'sudo apt-get install -y chromium' and re-run" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
