#!/usr/bin/env bash
# Download the wheels that the lent GPU machine lacks into .whl/ (git-ignored), for
# scripts/gpu_check.sh.  That machine (Python 3.12, CuPy, numpy, scipy, pandas, scikit-learn,
# pytest, hypothesis already there) cannot reach a package index; the tool carries .whl/.
# cuFINUFFT (115 MB) is left out: at 64 x 64 both the classifier's and the averagers'
# Fourier-Bessel expansions are dense matrix products, which need CuPy alone.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "mrcfile>=1.5" "starfile>=0.5.6" "finufft>=2.2"
ls -la .whl
