#!/usr/bin/env bash
# Install citywatch with its test dependencies into .venv, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages the real-component tests use: mosquitto (private brokers) and Debian's chromium
# (the console's browser test). Installed when missing and we are root; tests skip without them.
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null \
    || echo "warning: apt-get could not install ${need[*]}; the tests that need them will skip" >&2
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,train]"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
