"""Benchmark noise whitening: neighbour accuracy on a real map with white and coloured noise.

Examples
--------
    python benchmarks/whitening.py --volume /work/shared/data/emd_11007_64.mrc --n 5000
    python benchmarks/whitening.py --volume MAP.mrc --n 10000 --snr 0.125 0.0625 --refine vdm

Data: noise-free CTF-modulated projections of the map (``Simulation(snr=None)``, 7 defocus
groups, shifts <= ``--max-shift`` px), plus Gaussian noise at the given SNR (metrics.md:
signal variance over noise variance, over whole images), either white or coloured with the
ice/detector-like spectrum ``P(k) = 1 + a exp(-(k / k0)^2)`` (``k`` in cycles per pixel;
``a = 2.5``, ``k0 = 0.08``: the lowest frequencies about 3.5x noisier than the high ones),
normalised so that the total noise variance gives the SNR.  Pipeline: background
normalisation -> phase flip (-> whitening), then ``RIRClass2D`` with the newest preset's
classifier options.  Accuracy: fraction of neighbours within 10 degrees of the reference's
viewing direction, up to mirroring (``classavg.metrics.neighbor_accuracy``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def coloured_noise(n, L, variance, *, amplitude, k0, seed, batch=1024):
    """(n, L, L) float32 Gaussian noise with spectrum 1 + amplitude exp(-(k/k0)^2), scaled to
    the given total variance."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(L)[:, None]
    kx = np.fft.rfftfreq(L)[None, :]
    P = 1.0 + amplitude * np.exp(-(np.hypot(ky, kx) / k0) ** 2)
    ring_w = np.full(P.shape, 2.0)
    ring_w[:, 0] = 1.0
    if L % 2 == 0:
        ring_w[:, -1] = 1.0
    P /= (P * ring_w).sum() / L ** 2                       # mean power 1 over the full plane
    out = np.empty((n, L, L), np.float32)
    for s in range(0, n, batch):
        w = rng.standard_normal((min(batch, n - s), L, L))
        out[s:s + batch] = np.fft.irfft2(np.fft.rfft2(w) * np.sqrt(P * variance), s=(L, L))
    return out


def run(volume, n, L, snr, noise, whiten, refine, seed, max_shift):
    from classavg import Simulation, set_progress
    from classavg.classification import RIRClass2D
    from classavg.metrics import neighbor_accuracy
    from classavg.pipeline import latest_preset
    from classavg.sources import ArrayImageSource

    set_progress(False)
    sim = Simulation(L, n, volume=volume, snr=None, ctf=True, max_shift=max_shift, seed=seed)
    clean = np.empty((n, L, L), np.float32)
    for idx, b in sim.iter_batches(2048):
        clean[idx] = b
    var = float(clean.reshape(n, -1).var(axis=1).mean()) / snr
    if noise == "white":
        imgs = clean + np.random.default_rng(seed + 1).standard_normal(clean.shape).astype(
            np.float32) * np.float32(np.sqrt(var))
    else:
        imgs = clean + coloured_noise(n, L, var, amplitude=2.5, k0=0.08, seed=seed + 1)
    src = ArrayImageSource(imgs, pixel_size=sim.pixel_size, metadata=sim.metadata)
    src = src.normalize_background().phase_flip()
    if whiten:
        src = src.whiten()
    opts = dict(latest_preset().classifier)
    opts["refine"] = None if refine == "none" else refine
    t0 = time.perf_counter()
    ci, _, _ = RIRClass2D(src, seed=seed, **opts).classify()
    t = time.perf_counter() - t0
    acc = neighbor_accuracy(ci, sim.viewing_directions, thresholds=(10.0,))
    return {"volume": volume, "n": n, "snr": snr, "noise": noise, "whiten": whiten,
            "refine": refine, "within_10deg": round(100 * acc.fraction[10.0], 1),
            "seconds": round(t, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volume", required=True)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, nargs="+", default=[0.125])
    p.add_argument("--noise", nargs="+", default=["white", "coloured"])
    p.add_argument("--refine", nargs="+", default=["none"])
    p.add_argument("--max-shift", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for snr in a.snr:
        for noise in a.noise:
            for refine in a.refine:
                for whiten in (False, True):
                    print(json.dumps(run(a.volume, a.n, a.L, snr, noise, whiten, refine,
                                         a.seed, a.max_shift), default=str), flush=True)


if __name__ == "__main__":
    main()
