"""Benchmark every pipeline preset on one simulated data set: timing and fidelity.

    python benchmarks/presets.py --n 5000 --snr 0.125 --n-classes 100

The data set is written once with ``classavg simulate``'s library function (64 x 64, CTF with
7 defocus groups, SNR as given), read back as a RELION data set and phase flipped, exactly as
``classavg run --phase-flip`` does.  For each preset the full pipeline runs (classification,
selection, averaging of the kept classes, outputs without the HTML report); the script prints
the wall time per stage, the neighbour accuracy of the classification, and the fidelity of the
first ``--n-classes`` averages: normalised cross-correlation and FRC resolution (0.5 threshold)
against the clean, unshifted, CTF-free projection of each class's reference particle.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, default=0.125)
    p.add_argument("--n-classes", type=int, default=100)
    p.add_argument("--presets", nargs="*", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from classavg import set_progress
    from classavg.io import RelionSource
    from classavg.metrics import class_average_fidelity, neighbor_accuracy
    from classavg.pipeline import list_presets, prepare_source, run_classavg
    from classavg.sources import simulate_dataset

    set_progress(False)
    names = args.presets or [pr.name for pr in list_presets()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = simulate_dataset(tmp / "data", n=args.n, L=args.L, snr=args.snr, ctf=True,
                               seed=args.seed)
        for name in names:
            src, _ = prepare_source(RelionSource(tmp / "data" / "particles.star"),
                                    phase_flip=True)
            t0 = time.perf_counter()
            cas, _ = run_classavg(src, tmp / f"out-{name}", preset=name,
                                  n_classes=args.n_classes, report=False, seed=args.seed)
            wall = time.perf_counter() - t0
            k = min(args.n_classes, cas.n)
            averages = cas.images[:k]
            refs = cas.class_indices[cas.selection_indices[:k], 0]
            clean = sim.clean_images(refs)
            fid = class_average_fidelity(averages, clean, pixel_size=cas.pixel_size)
            acc = neighbor_accuracy(cas.class_indices, sim.viewing_directions)
            row = {"preset": name, "n": args.n, "snr": args.snr, "classes": int(cas.n),
                   "wall_s": round(wall, 1),
                   "stages_s": {s: round(v, 1) for s, v in cas.timings.items()
                                if "/" not in s},
                   "within_10": round(acc.fraction[10.0], 3),
                   "median_corr": round(float(fid["median_correlation"]), 3),
                   "median_frc_A": round(float(fid["median_resolution"]), 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"| preset | classes kept | wall (s) | stages (s) | NN within 10° | "
          f"median corr (first {args.n_classes}) | median FRC 0.5 (Å) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        st = ", ".join(f"{k} {v}" for k, v in r["stages_s"].items())
        print(f"| {r['preset']} | {r['classes']} | {r['wall_s']} | {st} | "
              f"{r['within_10']:.1%} | {r['median_corr']} | {r['median_frc_A']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
