#!/usr/bin/env bash
# The Python package's tests, as CI runs them (tools/test-all.sh calls this after the Rust
# tests, so target/release/xlmr, which the tests compare against, is built):
#  1. a fresh venv under target/ (PYTHON_VENV to reuse one), the package built and installed
#     with the README's command, `pip install ./python`; maturin builds in the cargo target
#     dir, so the dependencies are reused (xlmr and the binding compile: ~3 min on 2 busy cores);
#  2. Ray Data (and pyarrow) for the Ray test; pyspark for the Spark test only when asked
#     (XLMR_TEST_SPARK=1: a 300 MB download, minutes here) and a Java runtime is installed; a
#     failed install skips those tests with a message, never fails;
#  3. the pytest suite in python/tests.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PYTHON_VENV:-target/python-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
echo "== building and installing the xlmr Python package: pip install ./python"
"$venv/bin/python" -m pip install -q ./python pytest==9.2.0
if ! "$venv/bin/python" -m pip install -q "ray[data]==2.60.0" pyarrow==26.0.1 >/dev/null 2>&1; then
    echo "== could not install Ray Data here: the Ray test will be SKIPPED"
fi
if [ "${XLMR_TEST_SPARK:-0}" != 1 ]; then
    echo "== the Spark test runs only with XLMR_TEST_SPARK=1 (installs pyspark); it will be SKIPPED unless pyspark is already here"
elif ! command -v java >/dev/null 2>&1; then
    echo "== no Java runtime (java) here: the Spark test will be SKIPPED (apt-get install default-jre-headless to run it)"
else
    "$venv/bin/python" -m pip install -q pyspark >/dev/null 2>&1 || echo "== could not install pyspark here: the Spark test will be SKIPPED"
fi
XLMR_CLI="${XLMR_CLI:-$PWD/target/release/xlmr}" "$venv/bin/python" -m pytest -q -rs python/tests
