#!/usr/bin/env bash
# TLS configuration audit of the proxy's defaults with testssl.sh, once per TLS backend.
#
#   proxy/bench/testssl-audit.sh [--quick] [--out DIR] [--accept ID[,ID...]]
#
# For each backend (rustls-aws-lc, rustls-ring, rustls-mixed, openssl) it starts
#   echo-server --mode unix   <-   proxy --tls-backend B (every other setting at its default)
# on 127.0.0.1 with a fresh self-signed ECDSA P-256 certificate, runs testssl against it with
# JSON output, and fails (exit 1, printing the offending findings) when
#   - a protocol below TLS 1.2 is offered (anything but "not offered" for SSLv2..TLS 1.1,
#     or no finding for one of them),
#   - a cipher suite that is not AEAD (GCM, CCM, ChaCha20-Poly1305) is offered, or a
#     non-AEAD cipher category (NULL, aNULL, EXPORT, LOW, 3DES/IDEA, CBC) is,
#   - any finding is rated HIGH or CRITICAL,
#   - or the scan itself failed (testssl error, timeout, no protocol findings).
# It prints one verdict line per backend (with testssl's WARN findings: checks it could not
# finish); exit 0 only when every backend passed.
#
# Excluded from the HIGH/CRITICAL rule, because they rate the throw-away test certificate
# and not the proxy: the certificate's chain of trust (self-signed, so testssl rates it
# CRITICAL), hostname/trust, OCSP, CRL, CT, must-staple and CAA findings (the IDs are in
# CERT_ONLY_IDS below). Nothing about protocols, cipher suites, key exchange or
# vulnerabilities is excluded; the excluded findings still appear in the JSON and the log.
#
# --quick   protocols, cipher categories, every cipher suite and the server defaults
#           (testssl -p -s -e -S): tens of seconds per backend, for CI.
# default   testssl's full run (adds forward secrecy, server preference, HTTP headers,
#           vulnerabilities, client simulation): a few minutes per backend.
# --out DIR where testssl's JSON (<backend>.json), its log (<backend>.log) and the servers'
#           stderr go; default a new temporary folder, printed at the end.
# --accept ID[,ID...]  finding IDs whose HIGH/CRITICAL rating a person has reviewed and
#           accepts (e.g. cipher_order, which testssl 3.0 rates HIGH whenever the client's
#           suite order wins, even when every suite offered is AEAD). They are printed as
#           accepted instead of failing. Nothing is accepted by default, and the protocol and
#           AEAD rules above cannot be accepted away.
#
# Bounds: every testssl run is under `timeout` (TESTSSL_TIMEOUT_SECS) plus testssl's own
# connect and openssl timeouts; servers must be ready within READY_TIMEOUT_SECS. Only
# 127.0.0.1 is contacted (no DNS, no OCSP/CRL fetches). Every process it starts is stopped
# on every exit path (trap). Needs: testssl (Debian package testssl.sh), jq, openssl; builds
# target/release/{proxy,echo-server} with cargo only when one of them is missing.
set -euo pipefail

BACKENDS=(rustls-aws-lc rustls-ring rustls-mixed openssl)
# Seconds a server may take to print its `listening on` line.
READY_TIMEOUT_SECS=30
# Whole testssl run per backend, in seconds: the full audit takes minutes on a busy
# 2-CPU machine; the quick one well under one.
TESTSSL_TIMEOUT_SECS=600
# testssl's own per-connection limits, in seconds, so a stuck handshake cannot hang it.
CONNECT_TIMEOUT_SECS=5
OPENSSL_TIMEOUT_SECS=10
# Findings about the self-signed test certificate's trust, not about the proxy (see above).
CERT_ONLY_IDS='^(cert_chain_of_trust|cert_trust|cert_caIssuers|cert_ocspURL|cert_ocspRevoked|OCSP_stapling|cert_crlDistributionPoints|cert_revocation|cert_mustStapleExtension|cert_certificateTransparency|certificate_transparency|DNS_CAArecord)( <[^>]*>)?$'

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

quick=0
out=""
accept=""
while (($# > 0)); do
    case $1 in
    --quick) quick=1 ;;
    --out)
        [[ $# -ge 2 ]] || { echo "--out needs a folder" >&2; exit 2; }
        out=$2
        shift
        ;;
    --out=*) out=${1#--out=} ;;
    --accept)
        [[ $# -ge 2 ]] || { echo "--accept needs finding IDs" >&2; exit 2; }
        accept=$2
        shift
        ;;
    --accept=*) accept=${1#--accept=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

testssl_bin=$(command -v testssl || command -v testssl.sh || true)
if [[ -z $testssl_bin ]]; then
    echo "testssl not found: apt-get install -y testssl.sh" >&2
    exit 2
fi
for tool_package in jq:jq openssl:openssl timeout:coreutils setsid:util-linux; do
    tool=${tool_package%%:*}
    command -v "$tool" >/dev/null ||
        { echo "$tool not found: apt-get install -y ${tool_package#*:}" >&2; exit 2; }
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
if [[ ! -x $bin_dir/proxy || ! -x $bin_dir/echo-server ]]; then
    (cd "$repo" && cargo build --release -p proxy -p echo-server)
fi

if [[ -z $out ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/testssl-audit.XXXXXX")
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Certificate, key, FIFOs and the Unix socket: private, removed on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/testssl-work.XXXXXX")

# Every process this script started and has not stopped yet.
pids=()

# reap PID: waits up to 5 s for a process sent SIGTERM (servers drain gracefully, and have
# no open connections by then), then SIGKILLs it.
reap() {
    for _ in {1..50}; do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        # testssl runs in its own process group (setsid) so its openssl children stop too;
        # a server is not a group leader, so the first kill fails and the second one runs.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        reap "$pid"
    done
    pids=()
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME CMD...: starts CMD with stdout on a FIFO, waits for its
# `listening on ADDR` line and sets $ready_addr; stderr goes to $out/NAME.stderr.log.
start_server() {
    local name=$1 fifo="$work/$1.stdout" fd line=""
    shift
    mkfifo "$fifo"
    "$@" >"$fifo" 2>"$out/$name.stderr.log" &
    pids+=("$!")
    # The FIFO stays open for reading until exit, so a later stdout line never blocks it.
    exec {fd}<"$fifo"
    if ! IFS= read -r -t "$READY_TIMEOUT_SECS" -u "$fd" line ||
        [[ $line != "listening on "* ]]; then
        echo "$name: no 'listening on' line within ${READY_TIMEOUT_SECS}s (got: ${line:-nothing})" >&2
        sed 's/^/  /' "$out/$name.stderr.log" >&2
        return 1
    fi
    ready_addr=${line#listening on }
}

stop_last_server() {
    local pid=${pids[-1]}
    kill -TERM "$pid" 2>/dev/null || true
    reap "$pid"
    unset 'pids[-1]'
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 90 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

start_server echo-server "$bin_dir/echo-server" --mode unix --listen "$work/echo.sock"

if ((quick)); then
    checks=(--protocols --std --each-cipher --server-defaults)
    mode=quick
else
    checks=()
    mode=full
fi

# --accept's IDs as a JSON array.
accepted_json=$(jq -cn --arg a "$accept" '$a | split(",") | map(select(. != ""))')

# The jq program that prints one line per offending finding (empty output: pass).
read -r -d '' VERDICT_JQ <<'JQ' || true
def offered: (.finding | test("^not offered") | not);
def aead: test("GCM|CCM|CHACHA20.POLY1305|ChaCha20"; "i");
def excused: (.id | test($cert_only)) or (.id as $id | $accepted | index([$id]));
(["SSLv2", "SSLv3", "TLS1", "TLS1_1"] - [.[].id] | .[] | "no finding for protocol \(.)"),
(.[] |
  if (.id | test("^(SSLv2|SSLv3|TLS1|TLS1_1)$")) and offered then
    "protocol below TLS 1.2 offered: \(.id): \(.finding)"
  elif (.id | test("^cipherlist_(NULL|aNULL|EXPORT|LOW|3DES_IDEA|AVERAGE)$")) and offered then
    "non-AEAD cipher category offered: \(.id): \(.finding)"
  elif (.id | test("^cipher_x")) and (.finding | test("not a/v") | not)
       and (.finding | aead | not) then
    "non-AEAD cipher suite offered: \(.id): \(.finding)"
  elif (.severity == "HIGH" or .severity == "CRITICAL") and (excused | not) then
    "\(.severity): \(.id): \(.finding)"
  elif .id == "scanProblem" or .severity == "FATAL" then
    "scan problem: \(.id) (\(.severity)): \(.finding)"
  else empty end)
JQ

failed=()
for backend in "${BACKENDS[@]}"; do
    json="$out/$backend.json"
    log="$out/$backend.log"
    rm -f "$json" "$log"
    start_server "proxy-$backend" "$bin_dir/proxy" --listen 127.0.0.1:0 \
        --upstream "unix:$work/echo.sock" --cert "$work/cert.pem" --key "$work/key.pem" \
        --tls-backend "$backend"
    addr=$ready_addr
    if [[ $addr != 127.0.0.1:* ]]; then
        echo "proxy-$backend listens on $addr, not 127.0.0.1" >&2
        exit 1
    fi

    rc=0
    setsid timeout --kill-after=10 "$TESTSSL_TIMEOUT_SECS" "$testssl_bin" \
        --quiet --color 0 --warnings off --nodns none --ip 127.0.0.1 \
        --connect-timeout "$CONNECT_TIMEOUT_SECS" --openssl-timeout "$OPENSSL_TIMEOUT_SECS" \
        --jsonfile "$json" --logfile "$log" "${checks[@]}" "$addr" \
        >"$out/$backend.stdout.txt" 2>&1 &
    pids+=("$!")
    wait "$!" || rc=$?
    unset 'pids[-1]'
    stop_last_server

    problems=()
    if ((rc == 124 || rc == 137)); then
        problems+=("testssl did not finish within ${TESTSSL_TIMEOUT_SECS}s")
    elif ((rc >= 240)); then
        problems+=("testssl failed with exit code $rc (see $out/$backend.stdout.txt)")
    fi
    if [[ ! -s $json ]] || ! jq -e 'any(.[]; .id == "TLS1_2")' "$json" >/dev/null; then
        problems+=("no protocol findings in $json: the scan did not run")
    else
        mapfile -t found < <(jq -r --arg cert_only "$CERT_ONLY_IDS" \
            --argjson accepted "$accepted_json" "$VERDICT_JQ" "$json")
        problems+=("${found[@]}")
    fi

    warnings=$(jq -r '[.[] | select(.severity == "WARN") | .id] | join(", ")' "$json" 2>/dev/null || true)
    if ((${#problems[@]} == 0)); then
        protocols=$(jq -r '[.[] | select((.id | test("^TLS1_[23]$")) and (.finding | test("^offered")))
            | .id | sub("TLS1_"; "TLSv1.")] | join("+")' "$json")
        suites=$(jq '[.[] | select(.id | test("^cipher_x"))] | length' "$json")
        rated=$(jq -r --arg c "$CERT_ONLY_IDS" '[.[]
            | select((.severity == "MEDIUM" or .severity == "LOW") and (.id | test($c) | not))
            | "\(.id)=\(.severity)"] | join(", ")' "$json")
        ignored=$(jq -r --arg c "$CERT_ONLY_IDS" '[.[]
            | select((.severity == "HIGH" or .severity == "CRITICAL") and (.id | test($c)))
            | "\(.id)=\(.severity)"] | join(", ")' "$json")
        accepted=$(jq -r --arg c "$CERT_ONLY_IDS" --argjson a "$accepted_json" '[.[]
            | select((.severity == "HIGH" or .severity == "CRITICAL") and (.id | test($c) | not))
            | select(.id as $id | $a | index([$id])) | "\(.id)=\(.severity)"] | join(", ")' "$json")
        echo "PASS $backend ($mode): $protocols only, $suites suites all AEAD," \
            "MEDIUM/LOW: ${rated:-none}; accepted: ${accepted:-none};" \
            "test-certificate findings ignored: ${ignored:-none}; WARN: ${warnings:-none}"
    else
        echo "FAIL $backend ($mode): ${#problems[@]} problem(s):"
        printf '    %s\n' "${problems[@]}"
        echo "    (WARN, checks testssl could not finish: ${warnings:-none})"
        failed+=("$backend")
    fi
done

echo "testssl JSON and logs: $out"
if ((${#failed[@]} > 0)); then
    echo "audit failed for: ${failed[*]}" >&2
    exit 1
fi
