#!/usr/bin/env bash
# The Python package's tests, as CI runs them (tools/test-all.sh calls this after the Rust
# tests, so target/release/xlmr, which the tests compare against, is built):
#  1. a fresh venv under target/ (PYTHON_VENV to reuse one), the package built and installed
#     with the README's command, `pip install ./python`; maturin reuses the cargo target dir,
#     so only the binding itself compiles;
#  2. Ray Data (and pyarrow) for the Ray test, and pyspark for the Spark test when a Java
#     runtime is installed; a failed install skips those tests with a message, never fails;
#  3. the pytest suite in python/tests.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PYTHON_VENV:-target/python-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
echo "== building and installing the xlmr Python package: pip install ./python"
"$venv/bin/python" -m pip install -q ./python pytest
if ! "$venv/bin/python" -m pip install -q "ray[data]>=2.9" pyarrow >/dev/null 2>&1; then
    echo "== could not install Ray Data here: the Ray test will be SKIPPED"
fi
if command -v java >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install -q pyspark >/dev/null 2>&1 || echo "== could not install pyspark here: the Spark test will be SKIPPED"
else
    echo "== no Java runtime (java) here: the Spark test will be SKIPPED (apt-get install default-jre-headless to run it)"
fi
XLMR_CLI="${XLMR_CLI:-$PWD/target/release/xlmr}" "$venv/bin/python" -m pytest -q -rs python/tests
