#!/usr/bin/env bash
# loadgen vs Debian's wrk: req/s and client CPU time per request against the same
# echo-server, same connections, same duration, same pinning (server on one CPU, the
# client on another), 10 B and 10 KiB POST bodies, HTTP and HTTPS, runs interleaved.
#
# Usage: loadgen/bench/vs-wrk.sh            (from anywhere inside the repository)
# Environment:
#   DUR=10        seconds per run          REPEATS=3     runs per cell (median reported)
#   CONNS=100     connections              SERVER_CPU=0  CLIENT_CPU=1
#   BODIES="10 10240"                      PROTOS="http https"
#   OUT=DIR       keep raw results there (default: a temporary directory, removed)
#
# Client CPU is user+sys of the whole client process (wait4 rusage via /usr/bin/time),
# for both clients alike, divided by the requests the client completed. Both clients run
# one thread (pinned to one CPU). wrk needs a Lua script for a POST body; loadgen's echo
# check stays on (it is part of its cost), and it is told --insecure, as wrk does not
# verify certificates either.
set -euo pipefail

DUR=${DUR:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BODIES=${BODIES:-"10 10240"}
PROTOS=${PROTOS:-"http https"}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
for tool in wrk taskset /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "vs-wrk: $tool is required (apt-get install wrk util-linux time)" >&2; exit 2; }
done

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p loadgen -p echo-server
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
loadgen="$target_dir/release/loadgen"
echo_server="$target_dir/release/echo-server"

if [[ -n ${OUT:-} ]]; then
    work=$OUT
    mkdir -p "$work"
else
    work=$(mktemp -d)
fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # echo-server drains for up to 10 s after SIGTERM; our clients are gone already.
    wait "${pids[@]}" 2>/dev/null || true
    [[ -n ${OUT:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# Starts an echo-server pinned to SERVER_CPU and records its address once it is listening
# (the readiness line on its stdout; no sleeping). Not called in a subshell: the cleanup
# trap needs the pid.
declare -A addr
start_server() {
    local mode=$1 fifo="$work/$1.fifo" line fd
    mkfifo "$fifo"
    taskset -c "$SERVER_CPU" "$echo_server" --mode "$mode" --listen 127.0.0.1:0 >"$fifo" 2>"$work/$mode.log" &
    pids+=($!)
    exec {fd}<"$fifo"
    read -r line <&"$fd"
    addr[$mode]=${line#listening on }
}
for proto in $PROTOS; do
    start_server "$proto"
done

for body in $BODIES; do
    printf 'wrk.method = "POST"\nwrk.body = string.rep("a", %d)\n' "$body" >"$work/post-$body.lua"
done

results="$work/results.tsv"
printf 'client\tproto\tbody\trep\trequests\treq_s\tcpu_s\n' >"$results"

run_loadgen() { # proto body rep
    local out="$work/loadgen-$1-$2-$3" tls=()
    [[ $1 == https ]] && tls=(--insecure)
    /usr/bin/time -f "%U %S" -o "$out.time" \
        taskset -c "$CLIENT_CPU" "$loadgen" -c "$CONNS" -d "${DUR}s" -b "$2" "${tls[@]}" --output json \
        "$1://${addr[$1]}/" >"$out.json" 2>"$out.err" || true
    local requests rps cpu
    requests=$(sed -n 's/^  "requests": \([0-9]*\),/\1/p' "$out.json")
    rps=$(sed -n 's/^  "rps": \([0-9.]*\),/\1/p' "$out.json")
    cpu=$(awk 'END { print $1 + $2 }' "$out.time")
    printf 'loadgen\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${requests:-0}" "${rps:-0}" "$cpu" >>"$results"
    if [[ -z $requests ]] || grep -q '"total": [1-9]' "$out.json"; then
        echo "vs-wrk: loadgen $1 $2 had errors; see $out.json $out.err" >&2
    fi
}

run_wrk() { # proto body rep
    local out="$work/wrk-$1-$2-$3"
    /usr/bin/time -f "%U %S" -o "$out.time" \
        taskset -c "$CLIENT_CPU" wrk -t 1 -c "$CONNS" -d "${DUR}s" -s "$work/post-$2.lua" \
        "$1://${addr[$1]}/" >"$out.txt" 2>&1 || true
    local requests rps cpu
    requests=$(awk '/requests in/ { print $1 }' "$out.txt")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out.txt")
    cpu=$(awk 'END { print $1 + $2 }' "$out.time")
    printf 'wrk\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${requests:-0}" "${rps:-0}" "$cpu" >>"$results"
    if [[ -z $requests ]] || grep -q 'Socket errors\|Non-2xx' "$out.txt"; then
        echo "vs-wrk: wrk $1 $2 had errors; see $out.txt" >&2
    fi
}

for rep in $(seq 1 "$REPEATS"); do
    for proto in $PROTOS; do
        for body in $BODIES; do
            # Alternate which client goes first, so neither always meets a warmer server.
            if ((rep % 2)); then
                run_loadgen "$proto" "$body" "$rep"; run_wrk "$proto" "$body" "$rep"
            else
                run_wrk "$proto" "$body" "$rep"; run_loadgen "$proto" "$body" "$rep"
            fi
            echo "vs-wrk: rep $rep $proto $body done" >&2
        done
    done
done

echo
echo "$CONNS connections, ${DUR}s per run, median of $REPEATS; server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
echo
awk -F'\t' '
    function median(list,    n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR > 1 {
        key = $1 "\t" $2 "\t" $3
        if (!(key in rps)) order[++count] = key
        rps[key] = rps[key] " " $6
        cpu[key] = cpu[key] " " ($5 > 0 ? $7 * 1e6 / $5 : 0)
    }
    END {
        print "| client | proto | body | req/s | client CPU-us/request |"
        print "| --- | --- | --- | ---: | ---: |"
        for (i = 1; i <= count; i++) {
            split(order[i], k, "\t")
            printf "| %s | %s | %s B | %.0f | %.2f |\n", k[1], k[2], k[3], median(rps[order[i]]), median(cpu[order[i]])
            m[order[i]] = median(cpu[order[i]])
        }
        print ""
        print "| proto | body | loadgen CPU/request vs wrk |"
        print "| --- | --- | ---: |"
        for (i = 1; i <= count; i++) {
            split(order[i], k, "\t")
            if (k[1] != "loadgen") continue
            w = "wrk\t" k[2] "\t" k[3]
            if (m[w] > 0) printf "| %s | %s B | %.2fx |\n", k[2], k[3], m[order[i]] / m[w]
        }
    }' "$results"
