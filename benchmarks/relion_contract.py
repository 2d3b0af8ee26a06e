"""Benchmark the RELION contract of particles.star (issue 17): are class members related by psi?

Examples
--------
    python benchmarks/relion_contract.py                       # n 2000, L 64, blob molecule
    python benchmarks/relion_contract.py --volume /work/shared/data/emd_3488_64.mrc --n 3000

Data: noise-free, CTF-modulated projections (``classavg.sources.simulate_dataset``: 7
defocus groups, 300 kV; shifts <= ``--max-shift`` px) with ground truth, written as a RELION
project (``PROJECT/sim/particles.star``); ``run_classavg`` (newest preset, phase flip) writes
``PROJECT/Class2D`` with ``project_dir=PROJECT``.

Measure (issue 17 acceptance): for the pairs of particles that ``particles.star`` puts in one
RELION class, among the first 10 classes (ranks 1..10 and their mirror classes K+1..K+10),
and whose true viewing directions agree within 15 degrees up to a mirror (``v_i . v_j`` or
``v_i . -v_j``):

* **related by psi**: the views agree directly (not only through the mirror) and the written
  psi difference ``psi_j - psi_i`` is within 10 degrees of the true relative in-plane angle
  ``b`` (``R_i^T R_j = Rz(b)``, docs/conventions.md; RELION's psi turns the particle onto
  the average, so ``psi_i = b_i`` up to a common constant);
* **mirror-only**: the views agree only through the mirror (``v_j ~ -v_i``): no rotation
  relates them, yet RELION would treat them as one class.

Both are counted twice: with the true rotations as simulated, and up to the map's symmetry
(``classavg.metrics.symmetry``: the half-turn axes of the map with self-correlation >= 0.9;
the rotations ``R`` and ``g R`` give the same image, so for a two-fold axis across the view
a pair of one view looks mirror-related while one rotation relates it).  EMD-3488 (human
haemoglobin, deposited with its exact two-fold) is the case where the two differ.

"before" is the writing of classavg <= issue 17 emulated from the same run: every member in
class ``k`` (mirrored or not), ``psi = -theta`` (theta: the alignment rotation recovered from the
new file: ``psi`` for class ``k``, ``-psi`` for class ``K + k``).  With ``--relion`` the
correlation of ``relion_stack_create --apply_transformation`` output with the average of each
particle's class (from ``class_averages.star``) is reported too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def relion_correlations(project, particles, averages, numbers):
    """Correlation of RELION's aligned particles with their class averages (or None)."""
    import mrcfile
    import starfile

    if shutil.which("relion_stack_create") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["relion_stack_create", "--i", str(particles), "--o", f"{tmp}/aligned",
                        "--apply_transformation"], cwd=project, check=True,
                       capture_output=True)
        aligned = mrcfile.read(f"{tmp}/aligned.mrcs").astype(np.float64)
    table = starfile.read(averages, always_dict=True)["particles"]
    avg = {}
    for name, c in zip(table["rlnImageName"], table["rlnClassNumber"]):
        k, stack = name.split("@")
        avg[int(c)] = mrcfile.read(Path(project) / stack)[int(k) - 1].astype(np.float64)
    r = []
    for img, c in zip(aligned, numbers):
        if c > 0:
            a, b = img - img.mean(), avg[int(c)] - avg[int(c)].mean()
            r.append((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    r = np.asarray(r)
    return {"median": round(float(np.median(r)), 3), "p5": round(float(np.percentile(r, 5)), 3)}


def run(args):
    import starfile

    from classavg import set_progress
    from classavg.io import RelionSource
    from classavg.metrics.symmetry import (same_class_pair_relations, symmetry_group,
                                           twofold_axes)
    from classavg.pipeline import run_classavg
    from classavg.sources.volume import load_volume
    from classavg.sources import simulate_dataset

    set_progress(False)
    project = Path(tempfile.mkdtemp(prefix="relion-contract-"))
    try:
        sim = simulate_dataset(project / "sim", args.n, args.L, snr=None, ctf=True,
                               volume=args.volume, max_shift=args.max_shift, seed=args.seed)
        src = RelionSource(project / "sim" / "particles.star").normalize_background()
        src = src.phase_flip()
        t0 = time.perf_counter()
        cas, paths = run_classavg(src, project / "Class2D", n_nbor=args.n_nbor,
                                  n_classes=args.n_classes, seed=args.seed, report=False,
                                  project_dir=project)
        seconds = time.perf_counter() - t0
        K = cas.n
        parts = starfile.read(paths["particles.star"], always_dict=True)["particles"]
        numbers = parts["rlnClassNumber"].to_numpy()
        psi = parts["rlnAnglePsi"].to_numpy(np.float64)
        first = [k for k in range(1, min(10, K) + 1)]
        axes, corr = (twofold_axes(load_volume(args.volume)) if args.volume
                      else (np.zeros((0, 3)), np.zeros(0)))
        group = symmetry_group(axes)
        theta = np.where(numbers > K, -psi, psi)                   # the alignment rotation
        old_numbers = np.where(numbers > K, numbers - K, numbers)
        out = {"n": args.n, "L": args.L, "volume": args.volume or "blob", "K": K,
               "n_nbor": cas.n_nbor, "assigned": int((numbers > 0).sum()),
               "assigned_mirrored": int((numbers > K).sum()),
               "twofold_axes": np.round(axes, 4).tolist(),
               "twofold_correlations": np.round(corr, 4).tolist(),
               "run_seconds": round(seconds, 1)}
        for key, g in (("", None), ("_up_to_symmetry", group)):
            out["after" + key] = same_class_pair_relations(
                numbers, psi, sim.rotations, first + [K + k for k in first], group=g)
            out["before_emulated" + key] = same_class_pair_relations(
                old_numbers, np.mod(-theta, 360.0), sim.rotations, first, group=g)
        if args.relion:
            out["relion_apply_transformation_corr"] = relion_correlations(
                project, "Class2D/particles.star", paths["class_averages.star"], numbers)
        return out
    finally:
        shutil.rmtree(project, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volume", default=None, help="MRC map (default: the blob molecule)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--n-classes", type=int, default=40)
    p.add_argument("--max-shift", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--relion", action="store_true",
                   help="also align the particles with relion_stack_create")
    print(json.dumps(run(p.parse_args(argv)), default=str), flush=True)


if __name__ == "__main__":
    main()
