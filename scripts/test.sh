#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the test peers (scripts/setup.sh), checks
# formatting, then `cargo test`: unit tests, the scenario suite on the file backends and on
# DynamoDB + S3 (moto), the real binary with each events/*.json, the Lambda runtime API
# through cargo-lambda, the SAM template linters, and the README's DuckDB query. The tests
# start their own peers on 127.0.0.1 and stop them when they end.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

if ! cargo fmt --all -- --check >/dev/null 2>&1; then
  echo "test: cargo fmt --check failed: run 'cargo fmt' and commit" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# One closing line over every test binary (cargo prints one summary per binary).
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i
         if ($(i+1) ~ /^failed/) f += $i
         if ($(i+1) ~ /^ignored/) s += $i
       }
     }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
