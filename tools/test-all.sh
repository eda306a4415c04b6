#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#  1. the gguf Python package, used by tests/gguf_python.rs as an independent GGUF reader;
#  2. every Rust test on this machine (x86-64: scalar, AVX2, AVX-512 and VNNI kernels);
#  3. the kernel and Q4_K quantizer tests cross-compiled for aarch64 (without the server
#     feature: they need only the library) and run under qemu-user
#     (NEON), when the target, the cross linker and qemu can be installed here; otherwise says so and skips;
#  4. every fuzz target for 30 s (see below);
#  5. the Python package, built as the README says, and its pytest suite with the Ray test
#     (tools/test-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -r tools/requirements-ci.txt
cargo test --release

arm_ready() {
    command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null &&
        rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu
}
if ! arm_ready; then
    echo "== installing the aarch64 target, cross linker and qemu-user for the NEON tests"
    { rustup target add aarch64-unknown-linux-gnu &&
      { apt-get update -qq || true; } &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; } >/dev/null 2>&1 || true
fi
if arm_ready; then
    echo "== NEON kernels under qemu-aarch64"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
        cargo test --release --no-default-features --target aarch64-unknown-linux-gnu --test kernels --test q4_k_fast
else
    echo "== SKIPPED: NEON kernel tests (could not install the aarch64 target, cross gcc or qemu-user here)"
fi

# 4. every fuzz target on its committed seeds (fuzz/, nightly + cargo-fuzz, ASan), for at most
#    30 s each, when the nightly toolchain and cargo-fuzz can be installed here; otherwise says
#    so and skips. The whole step (install, build, runs) stays within FUZZ_BUDGET seconds
#    (default 600): a slow install or build is skipped with a message, targets get less than
#    30 s when time is short. An install failure never fails CI; a crash, leak, OOM or
#    timeout does.
fuzz_start=$(date +%s)
fuzz_deadline=$(( fuzz_start + ${FUZZ_BUDGET:-600} ))
# Seconds left in the budget minus $1, at least 1 (a `timeout` argument).
fuzz_left() { local n=$(( fuzz_deadline - $(date +%s) - ${1:-0} )); echo $(( n > 1 ? n : 1 )); }
fuzz_ready() { cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; }
if ! fuzz_ready; then
    echo "== installing the nightly toolchain and cargo-fuzz for the fuzz step"
    { timeout "$(fuzz_left)" rustup toolchain install nightly --profile minimal &&
      timeout "$(fuzz_left)" cargo install cargo-fuzz --locked; } >/dev/null 2>&1 || true
fi
if ! fuzz_ready; then
    echo "== SKIPPED: fuzz step (could not install the nightly toolchain or cargo-fuzz here)"
elif ! timeout 120 cargo +nightly fetch --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
    echo "== SKIPPED: fuzz step (could not download the fuzz crate's dependencies)"
else
    echo "== building the fuzz targets"
    build_rc=0
    timeout "$(fuzz_left 60)" cargo +nightly fuzz build --fuzz-dir fuzz >/dev/null 2>&1 || build_rc=$?
    if [ "$build_rc" -eq 124 ]; then
        echo "== SKIPPED: fuzz runs (the fuzz build did not finish within the ${FUZZ_BUDGET:-600} s budget)"
    elif [ "$build_rc" -ne 0 ]; then
        echo "== the fuzz targets do not build:"; cargo +nightly fuzz build --fuzz-dir fuzz 2>&1 | tail -20; exit 1
    else
        per_target=$(( $(fuzz_left 30) / 6 ))
        [ "$per_target" -gt 30 ] && per_target=30
        if [ "$per_target" -lt 5 ]; then
            echo "== SKIPPED: fuzz runs (no time left in the ${FUZZ_BUDGET:-600} s budget after the build)"
        else
            echo "== fuzzing every target for $per_target s on its committed seeds"
            FUZZ_NICE=0 tools/fuzz.sh "$per_target"
        fi
    fi
fi
echo "== fuzz step took $(( $(date +%s) - fuzz_start )) s"

python_start=$(date +%s)
bash tools/test-python.sh
echo "== Python step took $(( $(date +%s) - python_start )) s"
