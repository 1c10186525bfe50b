#!/usr/bin/env bash
# Installs everything the project's scripts and tests need that cargo does not: the test
# peers and tools of requirements-dev.txt, into .venv/ (git-ignored). Reuses .venv/ when it
# already matches requirements-dev.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

req=requirements-dev.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: $python not found; install Python 3.9+" >&2; exit 1; }
echo "setup: installing test peers into .venv/ (moto, playground, cargo-lambda, sam, cfn-lint, duckdb)..." >&2
if ! "$python" -m venv .venv 2>/dev/null; then
  # Debian's python3 ships venv separately.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$python" -m venv .venv
  else
    echo "setup: '$python -m venv' failed; install the venv module (e.g. apt-get install python3-venv)" >&2
    exit 1
  fi
fi
.venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
.venv/bin/python -m pip install --disable-pip-version-check -q -r "$req"
echo "$want" > "$stamp"
echo "setup: .venv/ ready" >&2
