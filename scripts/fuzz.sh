#!/usr/bin/env bash
# Fuzzes the response parser (fuzz/fuzz_targets/page.rs) for a bounded time:
#   scripts/fuzz.sh [SECONDS]      (default 60)
# Installs cargo-fuzz on first use. libFuzzer prints the executions it ran ("#N ... DONE").
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/page
cp -n fuzz/seeds/page/* fuzz/corpus/page/ 2>/dev/null || true
# cargo-fuzz passes unstable rustc flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
# No sanitizer: the parser is safe Rust, and the properties are assertions.
RUSTC_BOOTSTRAP=1 cargo fuzz run page --sanitizer none fuzz/corpus/page -- \
  -max_total_time="${1:-60}" -print_final_stats=1
