#!/usr/bin/env bash
# Runs a real sync end to end on the embedded default, with no AWS at all: starts the seed's
# API (fivetran-api-playground) on 127.0.0.1 and syncs two streams of it from one streams
# file (README, Several streams): its users, and its companies (keyed by company_id). Runs
# `replay-sync invoke` twice (a full sync, then an incremental run that re-reads the buffer
# window), prints a summary line per stream and run, and shows what landed:
#   .replay-sync/demo/streams.toml        the two streams
#   .replay-sync/demo/state.json          each stream's cursor (file state store)
#   .replay-sync/demo/output/user/        JSON Lines objects, _manifests/, _rejected/
#   .replay-sync/demo/output/companies/   the same for the companies
# The playground makes new random users at each start, so every demo starts from a clean
# .replay-sync/demo/ (removed first): two demos' data never mix.
# Extra arguments go to `replay-sync invoke` (e.g. --event events/dry-run.json, or --stream
# companies for one stream). A STREAMS_CONFIG of your own is used instead of the demo's.
# STATE_STORE, OUTPUT, BUFFER_HOURS, ... from the environment are honoured (a STATE_STORE or
# OUTPUT of your own is never removed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup.sh demo

port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
home=$(mktemp -d)
# The playground checks PyPI for updates once a day, keyed by a file in $HOME.
mkdir -p "$home/.ft_api_playground" && date +%s > "$home/.ft_api_playground/_last_version_check"
# setsid: the playground leads its own process group, so its Flask reloader child is
# stopped with it.
( cd "$home" && HOME="$home" exec setsid "$root/.venv/bin/playground" start --port "$port" ) \
  >"$home/playground.log" 2>&1 </dev/null &
pg=$!
trap 'kill -- -"$pg" 2>/dev/null; wait "$pg" 2>/dev/null; rm -rf "$home"' EXIT

ready=
for _ in $(seq 1 150); do
  if .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/incremental/timestamp?since=2999-01-01T00:00:00Z')" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "demo: the playground did not start; its log:" >&2; cat "$home/playground.log" >&2; exit 1; }
echo "== playground API on http://127.0.0.1:$port" >&2

export API_URL="http://127.0.0.1:$port/incremental/timestamp"
if [ -z "${STATE_STORE:-}" ] && [ -z "${OUTPUT:-}" ]; then
  rm -rf .replay-sync/demo
  export STATE_STORE=file://./.replay-sync/demo/state.json OUTPUT=file://./.replay-sync/demo/output
fi
if [ -z "${STREAMS_CONFIG:-}" ]; then
  streams=.replay-sync/demo/streams.toml
  mkdir -p "$(dirname "$streams")"
  cat > "$streams" <<EOF
# Written by scripts/demo.sh: two streams of the playground on port $port.
[streams.user]
API_URL = "http://127.0.0.1:$port/incremental/timestamp"

[streams.companies]
API_URL = "http://127.0.0.1:$port/cursors/companies"
ID_FIELD = "company_id"
API_SINCE_PARAM = "updated_since"
EOF
  export STREAMS_CONFIG=$streams
fi
# Only one of them given: the other is the binary's own default.
export STATE_STORE=${STATE_STORE:-file://./.replay-sync/state.json}
export OUTPUT=${OUTPUT:-file://./.replay-sync/output}
state_file=${STATE_STORE#file://}
if [ -n "${REPLAY_SYNC_BIN:-}" ]; then
  bin=$REPLAY_SYNC_BIN   # a binary already built (the test of this script)
else
  echo "== building replay-sync" >&2
  cargo build --quiet --bin replay-sync
  bin="${CARGO_TARGET_DIR:-target}/debug/replay-sync"
fi

if [[ "$STATE_STORE" == file://* ]] && [ ! -s "$state_file" ]; then
  echo "== run 1 (no state yet: a full sync)" >&2
else
  echo "== run 1 (from the state already in $STATE_STORE)" >&2
fi
# One line per stream of a run, from the summaries on stdout (which are passed on).
lines() {
  .venv/bin/python -c '
import json, sys
out = sys.stdin.read()
sys.stdout.write(out)
v = json.loads(out)
runs = {v["sync_id"]: v} if "sync_id" in v else v
for name, s in runs.items():
    if "error" in s:
        line = "failed ({}): {}".format(s["error_type"], s["error"])
    else:
        line = "{}, {} written of {} read, cursor {}".format(
            s["status"], s["records_written"], s["records_fetched"], s["new_cursor"])
    print("   {}: {}".format(name, line), file=sys.stderr)
'
}
rc=0
"$bin" invoke "$@" | lines || rc=1
echo "== run 2 (incremental: since = cursor - ${BUFFER_HOURS:-2} h)" >&2
"$bin" invoke "$@" | lines || rc=1
[ "$rc" = 0 ] || { echo "demo: a run failed (see above)" >&2; exit 1; }

out=$OUTPUT
if [[ "$out" == file://* ]]; then
  dir="${out#file://}/user"
  echo "== output in $dir (and ${out#file://}/companies)" >&2
  ls -1 "$dir" "$dir/_manifests" >&2 || true
  echo "== deduplicated by id (the README's DuckDB query)" >&2
  .venv/bin/python - "$dir" <<'PY' >&2
import glob, sys, duckdb
# Compressed objects too (OUTPUT_COMPRESSION=gzip|zstd: .jsonl.gz, .jsonl.zst).
path = sys.argv[1] + "/*.jsonl*"
if not glob.glob(path):
    print("no data objects to query (a dry run writes none)")
    sys.exit(0)
rows = duckdb.sql(f"""
  SELECT count(*) AS users, max("updatedAt") AS newest
  FROM (
    SELECT * FROM read_json('{path}', format = 'newline_delimited', union_by_name = true)
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY CAST("updatedAt" AS TIMESTAMPTZ) DESC, "_synced_at" DESC) = 1
  )""").fetchall()
print(f"{rows[0][0]} distinct users, newest updatedAt {rows[0][1]}")
companies = sys.argv[1] + "/../companies/*.jsonl*"
if glob.glob(companies):
    n = duckdb.sql(f"""SELECT count(DISTINCT company_id) FROM read_json('{companies}',
        format = 'newline_delimited', union_by_name = true)""").fetchall()[0][0]
    print(f"{n} distinct companies")
PY
fi
