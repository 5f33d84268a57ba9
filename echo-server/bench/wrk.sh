#!/usr/bin/env bash
# Quick throughput/latency check of the echo-server alone, with wrk: plain HTTP and HTTPS
# with every TLS backend, POST bodies of 10 B and 10 KB. The server is pinned to CPU 0 and
# wrk to CPU 1 (one thread, CONNS connections), so the server runs one worker.
#
#   echo-server/bench/wrk.sh            # 10 s per run, 100 connections
#   DUR=3 CONNS=50 echo-server/bench/wrk.sh
#
# Prints a markdown table on stdout (progress and logs on stderr). A row with errors says
# so in its last column. This is a smoke benchmark: the harness is the measuring tool.
set -euo pipefail
shopt -s inherit_errexit

DUR=${DUR:-10}
CONNS=${CONNS:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BODIES=(10 10240)

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v wrk >/dev/null || { echo "wrk.sh: wrk is not installed" >&2; exit 2; }
command -v taskset >/dev/null || { echo "wrk.sh: taskset is not installed" >&2; exit 2; }

echo "== cargo build --release -p echo-server" >&2
cargo build --release -p echo-server >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/echo-server"
lua="$root/echo-server/bench/post.lua"

work=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  exec 3<&- 2>/dev/null || true
}
trap 'stop_server; rm -rf "$work"' EXIT

# Starts the server pinned to SERVER_CPU on a free port; sets server_pid and port. The
# readiness line comes through a FIFO, so there is no polling and no fixed port.
start_server() {
  local fifo="$work/ready"
  rm -f "$fifo"
  mkfifo "$fifo"
  taskset -c "$SERVER_CPU" "$bin" --listen 127.0.0.1:0 "$@" >"$fifo" 2>>"$work/server.log" &
  server_pid=$!
  exec 3<"$fifo"
  local line=""
  if ! read -r -t 60 -u 3 line || [[ "$line" != "listening on "* ]]; then
    echo "wrk.sh: echo-server $* did not start; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  port=${line##*:}
}

# Runs wrk once; prints "req/s|p99|errors" from its --latency summary.
run_wrk() {
  local url=$1 body=$2 out="$work/wrk.out"
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$lua" "$url" -- "$body" >"$out"
  cat "$out" >&2
  local rps p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
                /Socket errors:/ {for (i = 3; i <= NF; i += 2) {v = $(i + 1); gsub(",", "", v); n += v}}
                END {print n + 0}' "$out")
  echo "${rps:-?}|${p99:-?}|${errors}"
}

echo "| mode | backend | body | req/s | p99 | errors |"
echo "| --- | --- | --- | ---: | ---: | ---: |"
for config in http https:rustls-aws-lc https:rustls-ring https:openssl; do
  mode=${config%%:*}
  backend=-
  args=(--mode "$mode")
  if [ "$mode" = https ]; then
    backend=${config#*:}
    args+=(--tls-backend "$backend")
  fi
  start_server "${args[@]}"
  for body in "${BODIES[@]}"; do
    echo "== $mode $backend, body $body B, ${DUR}s, $CONNS connections" >&2
    result=$(run_wrk "$mode://127.0.0.1:$port/" "$body")
    IFS='|' read -r rps p99 errors <<<"$result"
    echo "| $mode | $backend | $body B | $rps | $p99 | $errors |"
  done
  stop_server
done
echo >&2
echo "server CPU $SERVER_CPU, wrk CPU $CLIENT_CPU, $(nproc) CPUs online, $(uname -r)" >&2
