"""Benchmark the class averagers: alignment accuracy, average fidelity and speed.

Examples
--------
    python benchmarks/average.py                                  # all averagers, clean + SNR 1/8
    python benchmarks/average.py --averagers BFSR --snr 0.125 --ctf --n-classes 100
    python benchmarks/average.py --averagers BFR,BFSR --no-speed
    python benchmarks/average.py --speed-only --threads 2         # 1,000 classes x 50, BFSR
    python benchmarks/average.py --speed-only --device cuda       # the same on the GPU

Accuracy data (per SNR; one data set for the shift-searching averagers and one without shifts
for BFR, whose search radius is 0): ``--n-classes`` simulated classes (the built-in molecule
at ``--L`` pixels, ``classavg.sources.Simulation``), each a reference image (offset 0) and
``--n-members - 1``
members of exactly the same viewing direction (half of them from the opposite side, i.e.
mirrored) with uniformly random in-plane rotations and offsets uniform in the disk of radius
``--radius`` (default ``L // 32``, the BFSR search radius).  ``--snr`` adds white noise to
every image (``inf`` = clean); ``--ctf`` applies a CTF (7 defocus groups) and phase-flips.
The class tables use the true mirror flags (as a perfect classifier would).

Reported per averager and SNR (``classavg.metrics``): median rotation error (degrees) and
median shift error (pixels) over the members (reference excluded), median masked
correlation and median FRC-0.5 resolution (pixels) of the class averages against the clean,
CTF-free projection of each reference (in its frame), with in parentheses the ceiling of the
correlation: the same measure for the average of the noise-free members under the true
alignment (below 1 with a CTF, whose phase-flipped average is not the CTF-free projection, and
with nearest views, which are not identical), and images aligned per second (wall time of
``average``, which aligns and stacks).

``--classes nearest`` instead takes a pool of ``--pool`` random views (all images with offsets
in the disk of ``--radius``) and forms each class from a reference and its truly nearest views
(the setting of the reference implementation's fidelity figures); the averages are compared
with the clean projection of the reference carrying its offset.

Speed run: ``--speed-classes`` classes (default 1,000) of ``--n-members`` from a pool of
``--pool`` (default 10,000) noisy 64 x 64 images (random class tables), averaged with each
of ``--speed-averagers`` (default BFSR); the images are materialised first so only averaging
is timed.  ``--threads`` limits BLAS / FFT threads (set before numpy is imported).

Add an averager: one entry in ``REGISTRY`` (a factory ``(src, radius) -> averager``).

CTF-aware averages (``--wiener``): a pool of ``--pool`` random views with a CTF (7 defocus
groups, raw images and their phase flips) and offsets in the disk of ``--radius``; each of
``--n-classes`` classes is a reference and its ``--n-members - 1`` truly nearest views.  The
members are aligned by the truth and by BFSR on the phase-flipped images; the averages are
the mean of the phase-flipped images (the current default, ``ctf_correction=None``), the
mean of the phase-flipped members computed like the Wiener average (``"phase_flip"``) and
the Wiener average of the raw images (``"wiener"``), compared with the clean CTF-free
projection of the reference (median correlation, median and mean FRC-0.5 resolution in
pixels, and the paired per-class difference Wiener minus phase-flipped mean)::

    python benchmarks/average.py --wiener --snr 0.25 0.125 0.0625 0.03125 --n-classes 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _factories():
    from classavg.averaging import (
        BFRAverager2D,
        BFSReddyChatterjiAverager2D,
        BFSRAverager2D,
        ReddyChatterjiAverager2D,
    )

    # name -> (factory(src, radius), searches shifts?).  An averager that does not search
    # shifts (BFR) is tested on members without shifts (its search radius is 0).
    registry = {
        "BFR": (lambda src, radius, **kw: BFRAverager2D(src, **kw), False),
        "BFSR": (lambda src, radius, **kw: BFSRAverager2D(src, radius=radius, **kw), True),
        "RC": (lambda src, radius: ReddyChatterjiAverager2D(src), True),
        "BFS-RC": (lambda src, radius: BFSReddyChatterjiAverager2D(src, radius=radius), True),
    }
    # -- FTK / EM: factorized translation kernel; EM over rotations x shifts (soft averages)
    from classavg.averaging import EMAverager2D, FTKAverager2D
    registry["FTK"] = (lambda src, radius: FTKAverager2D(src, radius=radius), True)
    registry["EM"] = (lambda src, radius: EMAverager2D(src, radius=radius), True)
    return registry


REGISTRY_NAMES = ["BFR", "BFSR", "RC", "BFS-RC", "FTK", "EM"]


def simulate_classes(L, n_classes, m, radius, snr, ctf, seed):
    """Simulation of n_classes blocks of m images: the reference first, then its members."""
    import numpy as np

    from classavg.metrics import class_true_alignment
    from classavg.sources import ArrayImageSource
    from classavg.sources.simulation import Simulation, _uniform_rotations

    rng = np.random.default_rng(seed)
    R = _uniform_rotations(n_classes, seed)                        # (k, 3, 3)
    b = rng.uniform(-np.pi, np.pi, (n_classes, m))
    c, s = np.cos(b), np.sin(b)
    Rz = np.zeros((n_classes, m, 3, 3))
    Rz[..., 0, 0], Rz[..., 0, 1], Rz[..., 1, 0], Rz[..., 1, 1] = c, -s, s, c
    Rz[..., 2, 2] = 1
    mirror = rng.random((n_classes, m)) < 0.5
    mirror[:, 0] = False
    Rz[:, 0] = np.eye(3)
    F = np.diag([1.0, -1.0, -1.0])
    rots = np.einsum("kij,kmjl->kmil", R, np.where(mirror[..., None, None], F @ Rz, Rz))
    r = radius * np.sqrt(rng.uniform(0, 1, (n_classes, m)))
    ph = rng.uniform(0, 2 * np.pi, (n_classes, m))
    off = np.stack([r * np.cos(ph), r * np.sin(ph)], -1)
    off[:, 0] = 0.0
    n = n_classes * m
    sim = Simulation(L, n, rotations=rots.reshape(n, 3, 3), offsets=off.reshape(n, 2),
                     snr=None if snr == float("inf") else snr, ctf=bool(ctf), seed=seed)
    src = sim.phase_flip() if ctf else sim
    data = ArrayImageSource(src.images[:], pixel_size=src.pixel_size)
    ci = np.arange(n).reshape(n_classes, m)
    truth = class_true_alignment(sim.rotations, ci, sim.offsets)
    clean_refs = sim.clean_images(ci[:, 0])
    noise_free = _noise_free(sim, ci, ctf)
    return data, ci, truth, clean_refs, noise_free


def _noise_free(sim, ci, ctf):
    """Noise-free (shifted, CTF-applied, phase-flipped) images of the class members:
    (unique indices, images)."""
    import numpy as np

    from classavg.sources.simulation import Simulation

    u = np.unique(ci)
    clean = Simulation(sim.L, sim.n, rotations=sim.rotations, offsets=sim.offsets,
                       ctf=bool(ctf), seed=sim.seed, pixel_size=sim.pixel_size)
    src = clean.phase_flip() if ctf else clean
    return u, src.images[u]


def oracle_fidelity(noise_free, ci, truth, clean_refs, basis):
    """Median masked correlation with the clean references of the averages of the noise-free
    members under the true alignment: the ceiling of the correlation column."""
    import numpy as np

    from classavg.averaging import transform_members
    from classavg.metrics import masked_correlation

    u, imgs = noise_free
    w = np.full(ci.shape, 1.0 / ci.shape[1])
    avg = transform_members(imgs, truth.mirror, truth.shift, truth.rotation, basis,
                            index=np.searchsorted(u, ci), weights=w, output="pixels")
    return float(np.nanmedian(masked_correlation(avg, clean_refs)))


def simulate_nearest(L, n_classes, m, radius, snr, ctf, seed, pool):
    """A pool of random views; class c = reference c and its m - 1 truly nearest views (up to
    mirroring), mirror flags from the truth (a perfect classifier)."""
    import numpy as np

    from classavg.metrics import class_true_alignment
    from classavg.sources import ArrayImageSource
    from classavg.sources.simulation import Simulation

    sim = Simulation(L, pool, snr=None if snr == float("inf") else snr, ctf=bool(ctf),
                     max_shift=radius, seed=seed)
    src = sim.phase_flip() if ctf else sim
    data = ArrayImageSource(src.images[:], pixel_size=src.pixel_size)
    v = sim.viewing_directions
    refs = np.random.default_rng(seed).choice(pool, n_classes, replace=False)
    dots = v[refs] @ v.T                                          # (k, pool)
    dots[np.arange(n_classes), refs] = 2.0                        # self first
    ci = np.argsort(-np.abs(dots), axis=1)[:, :m]
    truth = class_true_alignment(sim.rotations, ci, sim.offsets)
    clean_refs = sim.clean_images(refs, shifted=True)             # the reference's frame
    return data, ci, truth, clean_refs, _noise_free(sim, ci, ctf)


def accuracy_run(names, args, snr):
    import numpy as np

    from classavg.metrics import (
        alignment_mask,
        class_average_fidelity,
        rotation_errors,
        shift_errors,
    )

    registry = _factories()
    sims = {}
    rows = []
    for name in names:
        factory, shifts = registry[name]
        radius = args.radius if shifts else 0
        if radius not in sims:
            if args.classes == "nearest":
                sims[radius] = simulate_nearest(args.L, args.n_classes, args.n_members, radius,
                                                snr, args.ctf, args.seed, args.pool)
            else:
                sims[radius] = simulate_classes(args.L, args.n_classes, args.n_members, radius,
                                                snr, args.ctf, args.seed)
        data, ci, truth, clean, noise_free = sims[radius]
        mask = alignment_mask(truth.view_angle, max_angle=args.max_view_angle)
        avg = factory(data, args.radius)
        t0 = time.perf_counter()
        out = avg.average(ci, truth.mirror)
        wall = time.perf_counter() - t0
        al = avg.alignment
        rot = rotation_errors(al.rotations, truth.rotation, mask)
        sh = shift_errors(al.shifts, truth.shift, mask)
        fid = class_average_fidelity(out, clean, pixel_size=1.0)
        ceiling = oracle_fidelity(noise_free, ci, truth, clean, avg.basis)
        rows.append({
            "averager": name, "snr": snr,
            "rot_med": float(np.median(rot)), "rot_p90": float(np.percentile(rot, 90)),
            "shift_med": float(np.median(sh)), "shift_p90": float(np.percentile(sh, 90)),
            "corr": fid["median_correlation"], "frc_px": fid["median_resolution"],
            "ceiling": ceiling,
            "img_per_s": ci.size / wall, "wall_s": wall,
        })
        print(f"  {name:8s} snr={snr:<6g} done in {wall:.2f} s", file=sys.stderr)
    return rows


def wiener_run(args, snr):
    """Wiener vs phase-flip averages of nearest-view classes with a CTF (``--wiener``)."""
    import numpy as np

    from classavg.averaging import AligningAverager2D, BFSRAverager2D
    from classavg.metrics import class_average_fidelity, class_true_alignment
    from classavg.sources import ArrayImageSource
    from classavg.sources.simulation import Simulation

    class TrueAlignment(AligningAverager2D):
        def __init__(self, src, rotation, shift, **kwargs):
            super().__init__(src, **kwargs)
            self.rotation, self.shift = rotation, shift

        def _align_batch(self, batch):
            r = batch.rows
            return self.rotation[r], self.shift[r], np.ones(batch.indices.shape)

    sim = Simulation(args.L, args.pool, snr=None if snr == float("inf") else snr, ctf=True,
                     max_shift=args.radius, seed=args.seed)
    md, px = sim.metadata, sim.pixel_size
    raw = ArrayImageSource(sim.images[:], pixel_size=px, metadata=md)
    flipped = ArrayImageSource(sim.phase_flip().images[:], pixel_size=px, metadata=md)
    v = sim.viewing_directions
    k, m = args.n_classes, args.n_members
    refs = np.random.default_rng(args.seed).choice(args.pool, k, replace=False)
    dots = v[refs] @ v.T
    dots[np.arange(k), refs] = 2.0
    ci = np.argsort(-np.abs(dots), axis=1)[:, :m]
    truth = class_true_alignment(sim.rotations, ci, sim.offsets)
    clean = sim.clean_images(refs, shifted=True)
    t0 = time.perf_counter()
    al = BFSRAverager2D(flipped, radius=args.radius).align(ci, truth.mirror)
    t_align = time.perf_counter() - t0
    rows = []
    for align, (rot, sh) in (("true", (truth.rotation, truth.shift)),
                             ("BFSR", (al.rotations, al.shifts))):
        res, base = {}, "phase-flipped mean"
        for method, kw in (("phase-flipped mean", {}),
                           ("phase_flip", dict(ctf_correction="phase_flip", image_source=raw)),
                           ("wiener", dict(ctf_correction="wiener", image_source=raw))):
            avg = TrueAlignment(flipped, rot, sh, **kw)
            t0 = time.perf_counter()
            out = avg.average(ci, truth.mirror)
            wall = time.perf_counter() - t0
            fid = class_average_fidelity(out, clean)
            res[method] = r = fid["resolution"]
            d = [r - res[b] if b in res else np.zeros_like(r) for b in (base, "phase_flip")]
            rows.append({"snr": snr, "align": align, "method": method,
                         "corr": fid["median_correlation"], "res_med": fid["median_resolution"],
                         "res_mean": float(np.mean(r)),
                         "diff": [(float(x.mean()), float(x.std() / np.sqrt(x.size)),
                                   float(np.mean(x < 0))) for x in d], "wall_s": wall})
    print(f"  wiener snr={snr:<8g} done (BFSR alignment {t_align:.1f} s)", file=sys.stderr)
    return rows


def speed_run(names, args):
    import numpy as np

    from classavg.sources import ArrayImageSource
    from classavg.sources.simulation import Simulation

    registry = _factories()
    sim = Simulation(64, args.pool, snr=0.125, max_shift=max(1, 64 // 32), seed=args.seed)
    data = ArrayImageSource(sim.images[:], pixel_size=sim.pixel_size)
    rng = np.random.default_rng(args.seed)
    k, m = args.speed_classes, args.n_members
    ci = np.stack([rng.choice(args.pool, m, replace=False) for _ in range(k)])
    cr = rng.random((k, m)) < 0.5
    cr[:, 0] = False
    rows = []
    for name in names:
        kw = {} if args.device == "cpu" else {"device": args.device}
        avg = registry[name][0](data, max(1, 64 // 32), **kw)
        t0, c0 = time.perf_counter(), time.process_time()
        avg.average(ci, cr)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"averager": name, "classes": k, "members": m, "wall_s": wall,
                     "cpu_s": cpu, "img_per_s": k * m / wall})
        print(f"  speed {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--averagers", default=",".join(REGISTRY_NAMES),
                   help="comma-separated names from the registry (default: all)")
    p.add_argument("--n-classes", type=int, default=20)
    p.add_argument("--n-members", type=int, default=50, help="members per class incl. reference")
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--radius", type=int, default=None, help="shift radius (default L // 32)")
    p.add_argument("--snr", type=float, nargs="+", default=[float("inf"), 0.125],
                   help="SNRs to test; inf = clean (default: inf 0.125)")
    p.add_argument("--ctf", action="store_true", help="CTF (7 defocus groups), phase flipped")
    p.add_argument("--classes", choices=["same-view", "nearest"], default="same-view",
                   help="same-view: members share the reference's view exactly; nearest: "
                        "the reference and its truly nearest views in a pool of --pool "
                        "random views (offsets in the disk of --radius for every image)")
    p.add_argument("--max-view-angle", type=float, default=5.0,
                   help="alignment errors over members within this many degrees of the "
                        "reference's view (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-speed", action="store_true", help="skip the speed run")
    p.add_argument("--speed-only", action="store_true", help="only the speed run")
    p.add_argument("--speed-averagers", default="BFSR")
    p.add_argument("--speed-classes", type=int, default=1000)
    p.add_argument("--pool", type=int, default=10000)
    p.add_argument("--threads", type=int, default=None, help="BLAS / FFT threads")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="speed run of BFR / BFSR on this device (cuda needs CuPy)")
    p.add_argument("--wiener", action="store_true",
                   help="only the CTF section: Wiener vs phase-flip averages (see above)")
    args = p.parse_args(argv)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    if args.radius is None:
        args.radius = max(1, args.L // 32)

    from classavg import set_progress
    set_progress(False)
    registry = _factories()
    names = [a.strip() for a in args.averagers.split(",") if a.strip()]
    for nme in names + args.speed_averagers.split(","):
        if nme not in registry:
            p.error(f"unknown averager {nme!r}; known: {', '.join(registry)}")

    if args.wiener:
        rows = [r for snr in args.snr for r in wiener_run(args, snr)]
        print(f"# CTF-aware averages (L={args.L}, pool {args.pool}, {args.n_classes} "
              f"nearest-view classes x {args.n_members}, shifts <= {args.radius} px, 7 defocus "
              f"groups, cpus={os.cpu_count()}, threads={args.threads or 'all'})\n")
        print("| SNR | alignment | average | correlation | FRC-0.5 res. median (px) | mean (px) "
              "| paired diff. vs phase-flipped mean (px, classes better) | vs phase_flip "
              "| wall (s) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            snr = "clean" if r["snr"] == float("inf") else f"1/{1 / r['snr']:g}"
            d = " | ".join(f"{m:+.3f} +- {e:.3f} ({b:.0%})" for m, e, b in r["diff"])
            print(f"| {snr} | {r['align']} | {r['method']} | {r['corr']:.3f} | "
                  f"{r['res_med']:.3f} | {r['res_mean']:.3f} | {d} | {r['wall_s']:.1f} |")
        return
    print(f"# Class averaging benchmark (L={args.L}, {args.n_classes} {args.classes} classes x "
          f"{args.n_members}, shifts <= {args.radius} px, ctf={args.ctf}, "
          f"cpus={os.cpu_count()}, threads={args.threads or 'all'})\n")
    if not args.speed_only:
        rows = []
        for snr in args.snr:
            rows += accuracy_run(names, args, snr)
        print("| averager | SNR | rot. err. median (deg) | rot. err. p90 | shift err. median (px)"
              " | shift err. p90 | avg. correlation (ceiling) | FRC-0.5 res. (px) | images/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            snr = "clean" if r["snr"] == float("inf") else f"{r['snr']:g}"
            print(f"| {r['averager']} | {snr} | {r['rot_med']:.3f} | {r['rot_p90']:.3f} | "
                  f"{r['shift_med']:.3f} | {r['shift_p90']:.3f} | {r['corr']:.3f} "
                  f"({r['ceiling']:.3f}) | "
                  f"{r['frc_px']:.2f} | {r['img_per_s']:.0f} |")
        print()
    if not args.no_speed:
        rows = speed_run([a for a in args.speed_averagers.split(",") if a], args)
        print(f"| averager | classes x members (64 x 64, pool {args.pool}) | wall (s) | CPU (s) "
              "| images/s |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['averager']} | {r['classes']} x {r['members']} | {r['wall_s']:.2f} | "
                  f"{r['cpu_s']:.2f} | {r['img_per_s']:.0f} |")


if __name__ == "__main__":
    main()
