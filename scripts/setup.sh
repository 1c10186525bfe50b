#!/usr/bin/env bash
# Installs what the project's scripts and tests need that cargo does not, into .venv/
# (git-ignored). Reuses .venv/ when it already holds what is asked for. Safe to run again.
#
#   scripts/setup.sh        everything the tests need (requirements-dev.txt: moto, the
#                           playground, cargo-lambda, the SAM CLI, cfn-lint, DuckDB; ~940 MB,
#                           ~400 MB of it the Zig that cargo-lambda cross-links with)
#   scripts/setup.sh demo   only what scripts/demo.sh needs (requirements-demo.txt: the
#                           playground and DuckDB)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

what=${1:-dev}
case "$what" in
  dev) req=requirements-dev.txt ;;
  demo) req=requirements-demo.txt ;;
  *) echo "usage: scripts/setup.sh [dev|demo]" >&2; exit 2 ;;
esac
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
dev_hash=$(hash_of requirements-dev.txt requirements-demo.txt)
demo_hash=$(hash_of requirements-demo.txt)
want=$([ "$what" = dev ] && echo "$dev_hash" || echo "$demo_hash")
if [ -x .venv/bin/python ]; then
  # The full set contains the demo's.
  if [ "$(cat .venv/.requirements-dev.sha256 2>/dev/null)" = "$dev_hash" ] ||
     { [ "$what" = demo ] && [ "$(cat .venv/.requirements-demo.sha256 2>/dev/null)" = "$demo_hash" ]; }; then
    exit 0
  fi
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: $python not found; install Python 3.9+" >&2; exit 1; }
echo "setup: installing $req into .venv/ ..." >&2
if [ ! -x .venv/bin/python ] && ! "$python" -m venv .venv 2>/dev/null; then
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
echo "$want" > ".venv/.requirements-$what.sha256"
echo "setup: .venv/ ready ($what)" >&2
