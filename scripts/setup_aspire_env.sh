#!/usr/bin/env bash
# Create a separate virtual environment with ASPIRE (GPL-3.0), used only as an external
# program by benchmarks/compare_aspire.py.  ASPIRE is never imported by classavg and is not a
# dependency of it.
#
# Usage: scripts/setup_aspire_env.sh            # venv at $ASPIRE_VENV or /tmp/aspire-venv
#        ASPIRE_VERSION=0.14.3 PYTHON=python3.11 scripts/setup_aspire_env.sh
#
# Records the installed versions in $ASPIRE_VENV/versions.txt.
set -euo pipefail

VENV="${ASPIRE_VENV:-/tmp/aspire-venv}"
PY="${PYTHON:-python3.11}"
# Newest 0.14.x on PyPI when this was written (pip index versions aspire): 0.14.3.
ASPIRE_SPEC="aspire==${ASPIRE_VERSION:-0.14.*}"

if ! command -v "$PY" >/dev/null 2>&1; then
    PY=python3
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
echo "installing $ASPIRE_SPEC into $VENV"
"$VENV/bin/python" -m pip install "$ASPIRE_SPEC"

# Smoke test: the classes compare_aspire.py uses must import.
"$VENV/bin/python" - <<'PYEOF'
import aspire, numpy, scipy
from aspire.source import RelionSource  # noqa: F401
from aspire.classification import RIRClass2D  # noqa: F401
print("aspire", aspire.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)
PYEOF

{
    echo "# ASPIRE environment created $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s"
    "$VENV/bin/python" --version
    "$VENV/bin/python" -m pip freeze
} > "$VENV/versions.txt"
echo "done in $(( $(date +%s) - start )) s; versions in $VENV/versions.txt"
