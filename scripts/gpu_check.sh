#!/usr/bin/env bash
# GPU verification of the device="cuda" paths, for a session that is lent a GPU machine:
#
#   bash scripts/fetch_gpu_wheels.sh                        # here, once
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Installs the carried wheels, runs the CuPy tests (real GPU, not the numpy stand-in), then the
# classification and BFSR averaging benchmarks on the CPU and on the GPU of the same machine
# (same data, same seed).  Everything lands in $OUT (logs and JSON lines); about 5 minutes
# on an H100 machine with 16 cores.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
PY=${PYTHON:-python3}
NS=${NS:-10000 100000}
mkdir -p "$OUT"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  "$PY" -c "import cupy, numpy, scipy; print('cupy', cupy.__version__, 'numpy',
numpy.__version__, 'scipy', scipy.__version__)"; } 2>&1 | tee "$OUT/machine.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_backend.py \
    tests/averaging/test_device.py 2>&1 | tee "$OUT/pytest.log"
for dev in cpu cuda; do
  for n in $NS; do
    timeout 150 "$PY" benchmarks/classify.py --n $n --snr 0.125 --ctf --nn exact \
        --device $dev --json 2>>"$OUT/classify.err" | tee -a "$OUT/classify.jsonl"
  done
  timeout 120 "$PY" benchmarks/average.py --speed-only --speed-classes ${SPEED_CLASSES:-1000} --device $dev 2>&1 \
      | tee -a "$OUT/average.log"
done
