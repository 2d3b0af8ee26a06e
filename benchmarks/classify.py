"""Benchmark RIRClass2D: per-stage wall time, peak memory and neighbour accuracy.

Examples
--------
    python benchmarks/classify.py --n 10000 --snr 0.125 --ctf
    python benchmarks/classify.py --n 10000 --snr 0.25 0.125 0.0625 0.03125 --ctf
    python benchmarks/classify.py --n 1000 10000 100000 --snr 0.125     # scaling curve
    python benchmarks/classify.py --n 10000 --snr 0.0625 --ctf --refine none vdm  # VDM
    python benchmarks/classify.py --n 100000 --snr 0.125 --ctf --dask-local 2 --files /tmp/b  # Dask
    python benchmarks/classify.py --n 100000 --snr 0.125 --ctf --device cuda   # GPU (CuPy)

Data: the built-in molecule simulated at 64 x 64 (Fourier-slice projections, optional CTF with
7 defocus groups, phase flipped), white noise at the given SNR (then background normalised)
(metrics.md definition).  Accuracy: fraction of the n_nbor - 1 neighbours whose viewing
direction is within 5/10/20 degrees of the reference's (up to mirroring), the ceiling, the
median angle and the mirror-flag agreement (``classavg.metrics``).  Peak memory is the process
maximum resident set size (ru_maxrss), so run one configuration per process for clean figures
(``--fresh`` re-runs each configuration in a subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def run_one(n, L, snr, ctf, n_nbor, rerank, seed, nn, threads, ctf_correct="auto",
            refine=None, dask_local=None, files=None, device="cpu", max_shift=0.0,
            center=False):
    from classavg import Simulation, set_progress
    from classavg.classification import RIRClass2D
    from classavg.metrics import mirror_flag_agreement, neighbor_accuracy

    set_progress(False)
    sim = Simulation(L, n, snr=snr, ctf=ctf, seed=seed, max_shift=max_shift)
    src = sim.phase_flip() if ctf else sim
    if snr:
        # Not for noise-free data: there the normalisation divides each image by the spread
        # of its own faint particle tails (86 % instead of 100 % within 10 degrees).
        src = src.normalize_background()
    # Materialise the images first so the classification timing excludes simulation.
    t0 = time.perf_counter()
    from classavg.sources import ArrayImageSource
    # Keep the CTF metadata (flagged as phase flipped) for the CTF correction.
    md = src.metadata.copy()
    if ctf:
        md["rlnCtfDataArePhaseFlipped"] = 1
    # In batches: materialising the whole chain at once would hold several full-size
    # intermediates of the simulation and inflate the peak memory reported below.
    imgs = np.empty((src.n, src.L, src.L), np.float32)
    for idx, batch in src.iter_batches(2048):
        imgs[idx] = batch
    data = ArrayImageSource(imgs, pixel_size=src.pixel_size, metadata=md)
    if files:
        # Classify a RELION STAR file + MRC stack instead (memory-mapped reads): what a Dask
        # cluster shares as file names, where the in-memory array is pickled to every worker.
        from classavg.io.relion import RelionSource, save_source
        star = save_source(data, os.path.join(files, f"bench_{n}.star"), overwrite=True)
        del data, imgs
        data = RelionSource(star)
    t_sim = time.perf_counter() - t0
    from classavg._parallel import dask_client
    with dask_client(n_local=dask_local) as client:
        if client is not None:
            client.run(lambda: None)                     # workers up before the clock starts
        t0 = time.perf_counter()
        if center:
            # as preset 1.3.0+ does: the classifier reads the centred particles (the
            # reference and the translations are computed here, inside the timing)
            data = data.center(seed=seed)
        clf = RIRClass2D(data, n_nbor=n_nbor, rerank=rerank, seed=seed, nn=nn,
                         ctf_correct=ctf_correct, refine=refine, device=device)
        ci, cr, cd = clf.classify(client=client)
        total = time.perf_counter() - t0
    acc = neighbor_accuracy(ci, sim.viewing_directions)
    return {
        "n": n, "L": L, "snr": snr, "ctf": ctf, "n_nbor": n_nbor, "rerank": rerank,
        "refine": refine, "dask_local": dask_local, "device": device,
        "max_shift": max_shift, "center": center,
        "nn": clf.nn_method_, "ctf_correct": clf.ctf_correct_, "threads": threads,
        "simulate_s": round(t_sim, 2), "classify_s": round(total, 2),
        "stages_s": {k: round(v, 2) for k, v in clf.timings_.items()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
        "images_gb": round(n * L * L * 4 / 2 ** 30, 2), "files": bool(files),
        "within_5": round(acc.fraction[5.0], 4), "within_10": round(acc.fraction[10.0], 4),
        "within_20": round(acc.fraction[20.0], 4), "ceiling_10": round(acc.ceiling[10.0], 4),
        "median_angle": round(acc.median_angle, 2),
        "mirror_agreement": round(float(mirror_flag_agreement(ci, cr,
                                                              sim.viewing_directions)), 4),
        "fspca_components": int(clf.fspca.n_components_),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10000])
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, nargs="+", default=[0.125],
                   help="SNR values; 0 means noise-free")
    p.add_argument("--ctf", action="store_true", help="7 defocus groups, phase flipped")
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--no-rerank", action="store_true", help="plain bispectrum neighbours")
    p.add_argument("--both", action="store_true", help="run with and without re-ranking")
    p.add_argument("--nn", default="auto", choices=["auto", "exact", "approximate"])
    p.add_argument("--ctf-correct", default="auto", choices=["auto", "on", "off"],
                   help="CTF-corrected classification input (auto: on with --ctf)")
    p.add_argument("--refine", nargs="+", default=["none"], choices=["none", "vdm"],
                   help="neighbour refinement(s) to run (vdm: vector diffusion maps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-shift", type=float, default=0.0,
                   help="picking offsets uniform in a disc of this radius (px)")
    p.add_argument("--center", action="store_true",
                   help="centre the particles first (src.center(), as preset 1.3.0+)")
    p.add_argument("--dask-local", type=int, default=None, metavar="N",
                   help="classify on a local Dask cluster of N worker processes")
    p.add_argument("--files", metavar="DIR", default=None,
                   help="write the images to DIR as a RELION STAR file + MRC stack and "
                        "classify those (memory-mapped; how a Dask cluster shares data)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the kernels run (cuda: NVIDIA GPU, needs CuPy)")
    p.add_argument("--fresh", action="store_true", help="each configuration in a subprocess")
    p.add_argument("--json", action="store_true", help="print JSON lines only")
    args = p.parse_args(argv)
    threads = os.cpu_count()
    reranks = [False, True] if args.both else [not args.no_rerank]
    rows = []
    for n in args.n:
        for snr in args.snr:
            for rr, rf in [(rr, rf) for rf in args.refine for rr in reranks]:
                if args.fresh:
                    cmd = [sys.executable, __file__, "--n", str(n), "--L", str(args.L),
                           "--snr", str(snr), "--n-nbor", str(args.n_nbor), "--nn", args.nn,
                           "--seed", str(args.seed), "--json"]
                    cmd += ["--ctf"] if args.ctf else []
                    cmd += ["--ctf-correct", args.ctf_correct]
                    cmd += [] if rr else ["--no-rerank"]
                    cmd += ["--refine", rf, "--device", args.device]
                    if args.dask_local:
                        cmd += ["--dask-local", str(args.dask_local)]
                    if args.files:
                        cmd += ["--files", args.files]
                    cmd += ["--max-shift", str(args.max_shift)]
                    cmd += ["--center"] if args.center else []
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                else:
                    row = run_one(n, args.L, snr or None, args.ctf, args.n_nbor, rr,
                                  args.seed, args.nn, threads,
                                  {"auto": "auto", "on": True, "off": False}[args.ctf_correct],
                                  None if rf == "none" else rf, args.dask_local,
                                  args.files, args.device, args.max_shift, args.center)
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(json.dumps(row), file=sys.stderr, flush=True)
    if not args.json:
        print("| n | SNR | CTF | CTF corr. | rerank | nn | classify (s) | stages (s) | "
              "peak RSS (GB) | <5° | <10° | <20° | ceiling 10° | median (°) | mirror |")
        print("|" + "---|" * 15)
        for r in rows:
            st = ", ".join(f"{k} {v}" for k, v in r["stages_s"].items())
            snr = "clean" if not r["snr"] else f"1/{round(1 / r['snr'])}"
            refine = f" + {r['refine']}" if r.get("refine") else ""
            print(f"| {r['n']} | {snr} | {'yes' if r['ctf'] else 'no'} | "
                  f"{'yes' if r.get('ctf_correct') else 'no'} | "
                  f"{'yes' if r['rerank'] else 'no'}{refine} | "
                  f"{r['nn']} | {r['classify_s']} | {st} | "
                  f"{r['peak_rss_gb']} | {r['within_5']:.1%} | {r['within_10']:.1%} | "
                  f"{r['within_20']:.1%} | {r['ceiling_10']:.0%} | {r['median_angle']} | "
                  f"{r['mirror_agreement']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
