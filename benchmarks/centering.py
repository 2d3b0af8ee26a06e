"""Benchmark particle centring: neighbour accuracy with and without ``src.center()``.

Examples
--------
    python benchmarks/centering.py --volume /work/shared/data/emd_11007_64.mrc --max-shift 3
    python benchmarks/centering.py --volume blob --max-shift 0 --refine none vdm

Data: ``Simulation`` of the map (or the built-in blob model, ``--volume blob``) with CTF
(7 defocus groups), picking offsets uniform in a disc of ``--max-shift`` pixels and white
noise at the given SNR; background normalisation and a phase flip (``--no-flip``: none).
Each line is one classification with ``RIRClass2D(n_nbor=50, rerank=True, refine=...)``,
on the images as picked or centred (the centring's reference fit and matching are included
in ``seconds``).  Accuracy: fraction of neighbours within 10 (and 20) degrees of the
reference's viewing direction, up to mirroring (``classavg.metrics.neighbor_accuracy``).
``--oracle`` adds a run centred with the translations estimated on the noise-free images
(what the centring would give without noise-induced jitter).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volume", required=True, help="an MRC map, or 'blob'")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, nargs="+", default=[0.125])
    p.add_argument("--max-shift", type=float, default=3.0)
    p.add_argument("--refine", nargs="+", default=["none", "vdm"])
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from classavg import Simulation, set_progress
    from classavg.classification import RIRClass2D
    from classavg.metrics import neighbor_accuracy
    from classavg.sources import ArrayImageSource

    set_progress(False)
    vol = None if a.volume == "blob" else a.volume

    def prepared(sim):
        imgs = np.empty((sim.n, a.L, a.L), np.float32)
        for idx, b in sim.iter_batches(2048):
            imgs[idx] = b
        src = ArrayImageSource(imgs, pixel_size=sim.pixel_size,
                               metadata=sim.metadata).normalize_background()
        return src if a.no_flip else src.phase_flip()

    for snr in a.snr:
        sim = Simulation(a.L, a.n, volume=vol, snr=snr, ctf=True, max_shift=a.max_shift,
                         seed=a.seed)
        base = prepared(sim)
        modes = ["picked", "centred"]
        if a.oracle:
            clean = prepared(Simulation(a.L, a.n, volume=vol, snr=None, ctf=True,
                                        max_shift=a.max_shift, seed=a.seed))
            oracle = clean.center(seed=a.seed)
            modes.append("oracle")
        for refine in a.refine:
            for mode in modes:
                t0 = time.perf_counter()
                if mode == "picked":
                    src = base
                elif mode == "centred":
                    src = base.center(seed=a.seed)
                else:
                    src = oracle.with_parent(base)    # the noise-free translations
                ci = RIRClass2D(src, n_nbor=50, rerank=True, seed=a.seed,
                                refine=None if refine == "none" else refine).classify()[0]
                t = time.perf_counter() - t0
                acc = neighbor_accuracy(ci, sim.viewing_directions, thresholds=(10.0, 20.0))
                print(json.dumps({"volume": a.volume, "n": a.n, "snr": snr,
                                  "max_shift": a.max_shift, "flip": not a.no_flip,
                                  "refine": refine, "images": mode,
                                  "within_10deg": round(100 * acc.fraction[10.0], 1),
                                  "within_20deg": round(100 * acc.fraction[20.0], 1),
                                  "seconds": round(t, 1)}), flush=True)


if __name__ == "__main__":
    main()
