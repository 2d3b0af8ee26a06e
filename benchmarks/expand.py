"""Benchmark the Fourier-Bessel expansion: dense (symmetry-folded) against NUFFT.

Example::

    python benchmarks/expand.py --n 10000 --L 64 --bandlimit 0.5 1.0

Prints the best of ``--repeat`` wall times of :meth:`FourierBesselBasis2D.expand` for
float32 white-noise images (the cost does not depend on the content), per method.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--L", type=int, nargs="+", default=[64])
    p.add_argument("--bandlimit", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--methods", nargs="+", default=["dense", "nufft"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    from classavg.basis import FourierBesselBasis2D

    rng = np.random.default_rng(0)
    for L in args.L:
        f = rng.standard_normal((args.n, L, L), dtype=np.float32)
        for bl in args.bandlimit:
            for method in args.methods:
                B = FourierBesselBasis2D(L, bandlimit=bl, method=method)
                B.expand(f[:16], device=args.device)        # build matrices / plans
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    B.expand(f, device=args.device)
                    times.append(time.perf_counter() - t0)
                print(f"L {L} bandlimit {bl:g} count {B.count} {method:5s} {args.device}: "
                      f"{min(times):.3f} s for {args.n} images "
                      f"({args.n / min(times):,.0f} images/s)", flush=True)


if __name__ == "__main__":
    main()
