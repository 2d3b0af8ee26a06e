"""Benchmark: automatic junk rejection of the default ``classavg run`` (issue 16).

Examples
--------
    python benchmarks/junk.py --molecule emd-11007 emd-3488 --n 10000 --snr 0.125
    python benchmarks/junk.py --molecule emd-11007 --junk 0 --noise white ice
    python benchmarks/junk.py --molecule emd-11007 --timing      # with and without scoring

Each set is simulated and written as a RELION data set (``simulate_dataset``: 64 px, CTF in 7
defocus groups, picking offsets <= 3 px, amplitudes in [0.8, 1.2]; ``--noise ice`` adds the
ice/detector spectrum and per-image background offsets and gradients), ``--junk`` of it junk
in equal parts of the six kinds of :mod:`classavg.sources.junk`.  It is read back and run as
``classavg run`` does (background normalisation, the newest preset, every output written).
Printed per set (one JSON line): the fraction of each kind rejected, of the junk rejected and
of the good particles kept, the number of majority-junk classes among the first 50 averages,
the thresholds, and the run time; with ``--timing`` also the same run without the scoring
(``junk_rejection=False``) and the ratio (target <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def evaluate(kinds, paths):
    from classavg.pipeline import read_class_table

    t = read_class_table(paths["class_table.npz"])
    kept = t["particle_kept"]
    junk = kinds != "particle"
    per_kind = {str(k): round(float((~kept[kinds == k]).mean()), 3) for k in np.unique(kinds)}
    rank = t["particle_class_rank"]
    majority = sum(1 for r in range(1, 51) if (rank == r).any() and junk[rank == r].mean() > 0.5)
    return {"rejected_per_kind": per_kind,
            "junk_rejected": round(float((~kept[junk]).mean()), 3) if junk.any() else None,
            "good_kept": round(float(kept[~junk].mean()), 3),
            "majority_junk_in_first_50": majority,
            "kept_classes": int(t["class_kept"].sum()), "classes": int(t["class_kept"].size)}


def run_set(folder, junk_rejection, seed):
    from classavg.io import RelionSource
    from classavg.pipeline import run_classavg

    src = RelionSource(folder / "data" / "particles.star", data_dir=folder)
    src = src.normalize_background()
    out = folder / ("Class2D" if junk_rejection is None else "Class2D_nojunk")
    t0 = time.perf_counter()
    cas, paths = run_classavg(src, out, seed=seed, report=True, project_dir=folder,
                              junk_rejection=junk_rejection)
    return paths, time.perf_counter() - t0, cas


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecule", nargs="+", default=["emd-11007"],
                   help="shipped molecule names, map files, or 'blob' (the built-in model)")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, default=0.125)
    p.add_argument("--junk", type=float, default=0.3)
    p.add_argument("--noise", nargs="+", default=["ice"], choices=["white", "ice"])
    p.add_argument("--timing", action="store_true",
                   help="also run without the scoring and give the time ratio")
    p.add_argument("--ctf-boundary", choices=["periodic", "crop"], default="periodic",
                   help="how the particles get their CTF (Simulation ctf_boundary; the junk "
                        "always on a canvas twice the box, as 'crop')")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None, help="keep the data sets and runs here")
    a = p.parse_args(argv)

    from classavg import set_progress
    from classavg.sources import simulate_dataset

    set_progress(False)
    root = Path(a.workdir or tempfile.mkdtemp(prefix="classavg-junk-"))
    for mol in a.molecule:
        for noise in a.noise:
            folder = root / (f"{Path(mol).stem}-{noise}-junk{a.junk:g}-snr{a.snr:g}"
                             + ("-crop" if a.ctf_boundary == "crop" else ""))
            if folder.exists():
                shutil.rmtree(folder)
            extra = (dict(background_offset=0.5, background_gradient=0.5) if noise == "ice"
                     else {})
            vol = {} if mol == "blob" else {"volume": mol}
            sim = simulate_dataset(folder / "data", n=a.n, L=a.L, **vol, snr=a.snr,
                                   ctf=True, max_shift=3, amplitude_spread=0.2, noise=noise,
                                   junk=a.junk, seed=a.seed, ctf_boundary=a.ctf_boundary,
                                   **extra)
            paths, seconds, cas = run_set(folder, None, a.seed)
            res = {"molecule": mol, "noise": noise, "junk": a.junk, "n": a.n, "snr": a.snr,
                   "ctf_boundary": a.ctf_boundary,
                   **evaluate(sim.kinds, paths), "seconds": round(seconds, 1),
                   "scoring_seconds": round(cas.timings.get("junk_scoring", 0.0), 1)}
            rec = json.loads(paths["run.json"].read_text())["junk_rejection"]["thresholds"]
            res["thresholds"] = {k: rec[k] for k in ("fit_tests", "min_fit", "min_blob",
                                                     "max_extra")}
            if a.timing:
                _, base, _ = run_set(folder, False, a.seed)
                res["seconds_without_scoring"] = round(base, 1)
                res["time_ratio"] = round(seconds / base, 3)
            print(json.dumps(res), flush=True)
            if a.workdir is None:
                shutil.rmtree(folder)


if __name__ == "__main__":
    main()
