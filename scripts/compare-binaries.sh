#!/usr/bin/env bash
# Compares two replay-sync binaries on the throughput bench's fixture API (N records of
# ~341 bytes, 1,000 a page, served from memory on 127.0.0.1), alternating runs of each in the
# same session, directory output, no API latency:
#   scripts/compare-binaries.sh OLD_BIN NEW_BIN [RECORDS] [RUNS]    (defaults 1000000, 5)
# Prints each run's wall and user CPU seconds, then the medians and their ratio (new/old).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 n=${3:-1000000} runs=${4:-5}
log=$(mktemp)
BENCH_SERVE_ONLY=3600 setsid cargo bench --bench throughput -- "$n" >"$log" 2>&1 &
server=$!
trap 'kill -- -"$server" 2>/dev/null || true; rm -f "$log"' EXIT
url=
for _ in $(seq 1 600); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*/records?page=0' "$log" || true)
  [ -n "$url" ] && break
  sleep 1
done
[ -n "$url" ] || { echo "the fixture did not start:"; cat "$log"; exit 1; }
one() {
  local bin=$1 dir
  dir=$(mktemp -d)
  /usr/bin/time -f "%e %U" -o "$dir/time" env -i PATH="$PATH" RUST_LOG=warn \
    API_URL="$url" API_NEXT_PAGE_FIELD=next \
    STATE_STORE="file://$dir/state.json" OUTPUT="file://$dir/out" \
    "$bin" invoke >"$dir/summary.json" 2>/dev/null
  if ! grep -Eq "\"records_written\": ?$n[,}]?" "$dir/summary.json"; then
    echo "not every record landed: $(head -c 300 "$dir/summary.json")" >&2
    kill -- -"$server" 2>/dev/null
    exit 1
  fi
  cat "$dir/time"
  rm -rf "$dir"
}
declare -a ow ou nw nu
for i in $(seq 1 "$runs"); do
  read -r w u < <(one "$old"); ow+=("$w"); ou+=("$u"); echo "old run $i: ${w} s wall, ${u} s user"
  read -r w u < <(one "$new"); nw+=("$w"); nu+=("$u"); echo "new run $i: ${w} s wall, ${u} s user"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mow=$(median "${ow[@]}"); mou=$(median "${ou[@]}"); mnw=$(median "${nw[@]}"); mnu=$(median "${nu[@]}")
echo "medians over $runs alternating runs of $n records: old ${mow} s wall, ${mou} s user; new ${mnw} s wall, ${mnu} s user"
awk -v a="$mow" -v b="$mnw" -v c="$mou" -v d="$mnu" 'BEGIN {printf "new/old: wall %.2f, user CPU %.2f\n", b/a, d/c}'
