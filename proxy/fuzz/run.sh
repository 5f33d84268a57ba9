#!/usr/bin/env bash
# Runs every cargo-fuzz target of the proxy for a bounded time; opt-in, not part of CI.
#
#   proxy/fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). For each target it
# fuzzes from proxy/fuzz/corpus/<target>/ (kept between runs, git-ignored) plus the committed
# seeds in proxy/fuzz/seeds/<target>/, for -max_total_time seconds. When a target crashes
# (panic, sanitizer error, timeout, out of memory) the input is copied to
# proxy/fuzz/regressions/<target>/, which proxy/tests/fuzz_regressions.rs replays on stable,
# and the script goes on with the other targets, then exits 1 naming every such file.
# Exit 2: bad usage or missing tools.
set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]   (a positive whole number; default 60)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "$0: needs a nightly toolchain and cargo-fuzz:" \
        "rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

cd "$(dirname "$0")"
fuzz_dir=$(pwd)

# Per-input time limit (seconds): a parser that takes this long on one input has a bug.
# libFuzzer's default is 1200 s, which would let one slow input eat the whole budget.
per_input_timeout=10
# The parsers never look past a few KiB (PROXY headers stop at 2048 bytes).
max_len=8192
# Slack on top of -max_total_time for startup, corpus loading and the final merge; the outer
# `timeout` is only a backstop should libFuzzer itself hang.
slack_secs=120

# Build once, before any clock runs: the first build takes many minutes.
cargo +nightly fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failures=()
summaries=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    if [[ -d seeds/$target ]]; then
        seeds=("seeds/$target")
    fi
    # A fresh artifact folder per target, so every file in it came from this run.
    artifacts="$scratch/$target/"
    mkdir -p "$artifacts"
    log="$scratch/$target.log"
    echo "== $target: ${secs}s (corpus: corpus/$target, seeds: ${seeds[*]:-none})"
    rc=0
    # The first corpus folder receives new inputs; the seeds folder is only read.
    timeout --kill-after=10 $((secs + slack_secs)) \
        cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout="$per_input_timeout" -max_len="$max_len" \
        -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 | tee "$log" || rc=$?
    # libFuzzer's last status line: executions, coverage edges, features, corpus size.
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE[[:space:]]' "$log" | tail -n 1 || true)
    summaries+=("$target: ${done_line:-no DONE line (crashed or stopped early)}")

    found=0
    for artifact in "$artifacts"*; do
        [[ -f $artifact ]] || continue
        name=$(basename "$artifact")
        # slow-unit-* files are reports, not failures (only written with -report_slow_units).
        [[ $name == slow-unit-* ]] && continue
        mkdir -p "regressions/$target"
        cp "$artifact" "regressions/$target/$name"
        failures+=("proxy/fuzz/regressions/$target/$name")
        found=1
    done
    if ((rc != 0 && found == 0)); then
        failures+=("$target: exited $rc without a crash input (see the log above)")
    fi
done

echo "== summary (${secs}s per target)"
printf '  %s\n' "${summaries[@]}"
if ((${#failures[@]} > 0)); then
    echo "FAIL: fuzzing found problems; reproduce with" \
        "cargo +nightly fuzz run <target> <file> (from $fuzz_dir):" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "ok: every target ran ${secs}s without a crash"
