#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (nightly toolchain + cargo-fuzz, AddressSanitizer)
# one after another, each for SECONDS (default 30) with the memory limits every parser
# must respect: -rss_limit_mb=2048 -malloc_limit_mb=1024, and 10 s per input ($FUZZ_TIMEOUT:
# libFuzzer measures it in wall-clock time, so on a machine where processes get paused, give
# it more).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]        (all targets when none is named)
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) plus the working corpus
# in $FUZZ_CORPUS (default: a fresh temporary folder). A crash, leak, OOM or timeout exits
# non-zero; the input is saved under fuzz/artifacts/<target>/ and its one-line summary is
# printed. Per target the last coverage line (cov/ft/corp/exec/s) and the run count are
# printed as `fuzz-summary:` lines.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-30}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(gguf_model safetensors pickle_zip spm_model tokenizer_json c_api)
fi
CORPUS=${FUZZ_CORPUS:-$(mktemp -d)}
NICE=${FUZZ_NICE:-19}
TIMEOUT=${FUZZ_TIMEOUT:-10}

status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$CORPUS/$t" "fuzz/artifacts/$t"
    log=$(mktemp)
    nice -n 15 cargo +nightly fuzz build --fuzz-dir fuzz "$t" 2>&1 | tail -3
    start=$(date +%s)
    # `time` gives the CPU seconds the fuzzer really had (wall time includes any pauses).
    TIMEFORMAT="cpu-seconds: %U user %S sys"
    if { time nice -n "$NICE" cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$CORPUS/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout="$TIMEOUT" \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; } 2>>"$log"; then
        result=ok
    else
        result=FAILED
        status=1
        grep -E "^(==[0-9]+==ERROR|SUMMARY|thread .* panicked|ERROR: libFuzzer)" "$log" | head -5 || true
        ls -1 "fuzz/artifacts/$t/" | tail -3
    fi
    elapsed=$(( $(date +%s) - start ))
    last=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
    runs=$(grep -E "^stat::number_of_executed_units" "$log" | awk '{print $2}' || true)
    cpu=$(grep -E "^cpu-seconds:" "$log" | tail -1 | cut -d' ' -f2- || true)
    echo "fuzz-summary: $t $result ${elapsed}s wall (${cpu:-cpu ?}) runs=${runs:-?} last: ${last:-none}"
    cp "$log" "fuzz/artifacts/$t/last.log"
    rm -f "$log"
done
exit $status
