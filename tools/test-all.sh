#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#  1. the gguf Python package, used by tests/gguf_python.rs as an independent GGUF reader;
#  2. every Rust test on this machine (x86-64: scalar, AVX2, AVX-512 and VNNI kernels);
#  3. the kernel and Q4_K quantizer tests cross-compiled for aarch64 and run under qemu-user
#     (NEON), when the target, the cross linker and qemu can be installed here; otherwise says so and skips.
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
        cargo test --release --target aarch64-unknown-linux-gnu --test kernels --test q4_k_fast
else
    echo "== SKIPPED: NEON kernel tests (could not install the aarch64 target, cross gcc or qemu-user here)"
fi
