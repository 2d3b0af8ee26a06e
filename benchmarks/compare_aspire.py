"""Side-by-side comparison of classavg with the reference implementation ASPIRE.

Examples
--------
    scripts/setup_aspire_env.sh                     # once: ASPIRE in its own venv
    python benchmarks/compare_aspire.py --n 10000 --snr 0.125 --ctf --threads 2
    python benchmarks/compare_aspire.py --n 10000 --snr 0.125 --ctf --amplitude-contrast 0
    python benchmarks/compare_aspire.py --n 10000 --snr 0 --no-normalize      # noise-free
    python benchmarks/compare_aspire.py --n 10000 --snr 0.125 --ctf --pipeline --out /tmp/cmp

One data set is simulated with classavg's :class:`~classavg.Simulation` (64 x 64, the built-in
molecule, CTF with 7 defocus groups when ``--ctf``, white noise at ``--snr``; 0 = noise-free)
and written to ``DIR/data`` as RELION STAR + MRCS with its ground truth
(``ground_truth.npz``, ``viewing_directions.npy``, ``rotations.npy``).  Both implementations
then read that STAR file in their own process, phase flip (with ``--ctf``), normalise the
background (unless ``--no-normalize``: use it for noise-free data, where the normalisation
divides every image by the spread of its own faint particle tails) and materialise the images
in memory (timed as "load+preprocess"), and classify (timed alone):

* classavg: ``RIRClass2D(src, n_nbor=50, seed=...)`` with its default options, run by this
  script in a subprocess of the current interpreter;
* ASPIRE: ``RIRClass2D(src, n_nbor=50, seed=...)`` with its defaults (fspca 400, bispectrum
  300, legacy neighbour search), run by ``benchmarks/_aspire_worker.py`` with the ASPIRE venv's
  python (``$ASPIRE_VENV``, default ``/tmp/aspire-venv``; created by
  ``scripts/setup_aspire_env.sh``).  ASPIRE is GPL-3.0: it is only executed, never imported.

CTF sign convention: ``Simulation``'s CTF (classavg.sources.ctf) follows RELION's
``CTF::getCTF``; ASPIRE's ``CTFFilter`` has the opposite global sign, so ASPIRE's phase flip of
these (RELION-convention) images inverts their contrast: its class averages come out negated
relative to the clean projections (median NCC about -0.8; compare magnitudes).  Phase flipping
itself depends only on the per-frequency sign, which the driver checks (it warns if the two
conventions disagree beyond the global sign; they agree since the CTF sign fix).

Both subprocesses get the same ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
``MKL_NUM_THREADS`` (and are pinned to ``--threads`` CPUs when the machine has more).  Peak
memory and CPU time come from ``os.wait4`` on each subprocess (``ru_maxrss``, user + system).
The neighbour tables are scored here against the ground truth with :mod:`classavg.metrics`
(metrics.md): fraction of neighbours within 5/10/20 degrees, the ceiling at 10 degrees, the
median angle and the mirror-flag agreement.

``--pipeline`` also runs both default pipelines: classavg's ``DefaultClassAvgSource`` (newest
preset) and ASPIRE's ``DefaultClassAvgSource`` (0.14.0 configuration).  ASPIRE's default global
selection averages all n classes before returning any (hours at n = 10,000 on 2 cores), so by
default (``--aspire-selector top``) only its selector is replaced by ``TopClassSelector``
(classes 0, 1, ...) and ``--pipeline-classes`` averages are computed; the time of the full
default pipeline is then *estimated* as classification + n x (averaging time per class), and
labelled as an estimate.  ``--aspire-selector global`` runs the real thing.  Class averages are
scored with :func:`classavg.metrics.class_average_fidelity` against the clean, unshifted,
CTF-free projections of their reference particles (``Simulation.clean_images``).  classavg's
averages of the same classes 0.. are reported too, so that fidelity can be compared on the same
references.

The script exits 0 with a message when the ASPIRE venv is missing.  It prints Markdown tables
and writes them to ``DIR/summary_classify[_pipeline].md`` (``summary_pipeline.md`` with
``--skip-classify``) with the raw figures in the matching ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ASPIRE_WORKER = HERE / "_aspire_worker.py"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


# =============================================================================================
# classavg worker (runs in a subprocess of this interpreter)
# =============================================================================================
def _current_rss_gb():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def classavg_worker(argv):
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(prog="compare_aspire.py _classavg_worker")
    p.add_argument("mode", choices=["classify", "pipeline"])
    p.add_argument("--star", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-phase-flip", action="store_true")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--no-rerank", action="store_true")
    p.add_argument("--no-normalize", action="store_true")
    p.add_argument("--preset", default=None,
                   help="classify as this preset does (its centring, whitening and "
                        "classifier options) instead of with RIRClass2D defaults")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import classavg
    from classavg import ArrayImageSource, RelionSource, set_progress
    from classavg.classification import RIRClass2D

    set_progress(False)
    res = {"implementation": "classavg", "classavg_version": classavg.__version__,
           "numpy_version": np.__version__, "python": sys.version.split()[0],
           "threads_env": {k: os.environ.get(k) for k in THREAD_VARS[:3]},
           "mode": args.mode, "import_s": time.perf_counter() - t_start}
    import scipy
    res["scipy_version"] = scipy.__version__

    t0 = time.perf_counter()
    src = RelionSource(args.star)
    if not args.no_phase_flip:
        src = src.phase_flip()
    if not args.no_normalize:
        src = src.normalize_background()
    data = ArrayImageSource(src.images[:], pixel_size=src.pixel_size, metadata=src.metadata)
    res["load_preprocess_s"] = time.perf_counter() - t0
    res["n"], res["L"] = int(data.n), int(data.L)
    res["rss_before_gb"] = _current_rss_gb()

    if args.mode == "classify" and args.preset:
        from classavg.pipeline import get_preset

        preset = get_preset(args.preset)
        t0 = time.perf_counter()          # the centring's reference fit counts
        psrc = data
        if preset.whiten is not None:
            psrc = psrc.whiten(**preset.whiten)
        if preset.center is not None:
            psrc = psrc.center(**{"seed": args.seed, **preset.center})
        clf = RIRClass2D(psrc, **{**preset.classifier, "n_nbor": args.n_nbor,
                                  "seed": args.seed})
        ci, cr, cd = clf.classify()
        res["classify_s"] = time.perf_counter() - t0
        res["stages_s"] = dict(clf.timings_)
        res["options"] = {"preset": preset.name, "n_nbor": args.n_nbor, "seed": args.seed,
                          "center": preset.center, "whiten": preset.whiten,
                          **{k: v for k, v in preset.classifier.items() if k != "n_nbor"}}
    elif args.mode == "classify":
        clf = RIRClass2D(data, n_nbor=args.n_nbor, seed=args.seed,
                         **({"rerank": False} if args.no_rerank else {}))
        t0 = time.perf_counter()
        ci, cr, cd = clf.classify()
        res["classify_s"] = time.perf_counter() - t0
        res["stages_s"] = dict(clf.timings_)
        res["options"] = {"n_nbor": args.n_nbor, "seed": args.seed,
                          "fspca_components": clf.fspca_components,
                          "bispectrum_components": clf.bispectrum_components,
                          "sample_n": clf.sample_n, "rerank": clf.rerank,
                          "nn": clf.nn_method_}
    else:
        try:
            from classavg.pipeline import DefaultClassAvgSource
        except ImportError as exc:
            res["skipped"] = f"classavg.pipeline is not importable: {exc}"
            (out / "result.json").write_text(json.dumps(res, indent=1))
            print(json.dumps(res))
            return 0
        t0 = time.perf_counter()
        avgs = DefaultClassAvgSource(data, n_nbor=args.n_nbor, seed=args.seed)
        t_build = time.perf_counter() - t0        # classification + selection
        k = min(args.classes, avgs.n)
        t0 = time.perf_counter()
        averages = avgs.images[:k]
        t_avg = time.perf_counter() - t0
        ci, cr, cd = avgs.class_indices, avgs.class_refl, avgs.class_distances
        np.save(out / "averages.npy", np.asarray(averages, dtype=np.float32))
        np.save(out / "selection.npy", np.asarray(avgs.selection_indices[:k], dtype=np.int64))
        # The same classes as ASPIRE's TopClassSelector (0, 1, ..., k-1), for a like-for-like
        # fidelity comparison (not part of the timed default pipeline).
        t0 = time.perf_counter()
        top = avgs.averager.average(ci, cr, classes=np.arange(k))
        t_top = time.perf_counter() - t0
        np.save(out / "averages_top.npy", np.asarray(top, dtype=np.float32))
        stages = {k_: v for k_, v in avgs.timings.items()}
        stages["averaging"] = t_avg
        res.update(pipeline_s=t_build + t_avg, stages_s=stages, n_averages=int(k),
                   n_selected=int(avgs.n), top_averaging_s=t_top,
                   options={"preset": avgs.preset, "n_nbor": args.n_nbor,
                            "classifier": type(avgs.classifier).__name__,
                            "rerank": getattr(avgs.classifier, "rerank", None),
                            "class_selector": type(avgs.class_selector).__name__,
                            "averager": type(avgs.averager).__name__})
    np.save(out / "class_indices.npy", np.asarray(ci, dtype=np.int64))
    np.save(out / "class_refl.npy", np.asarray(cr, dtype=bool))
    np.save(out / "class_distances.npy", np.asarray(cd, dtype=np.float64))
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    res["total_s"] = time.perf_counter() - t_start
    (out / "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return 0


# =============================================================================================
# driver
# =============================================================================================
def aspire_python(venv):
    py = Path(venv) / "bin" / "python"
    return py if py.is_file() and os.access(py, os.X_OK) else None


def machine_info():
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": None,
            "mem_gb": None}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["mem_gb"] = round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return info


def run_worker(cmd, env, cwd, log_path, threads, timeout):
    """Run ``cmd``; return exit code, wall seconds, CPU seconds, peak RSS (GB), load samples."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = cpus[:threads] if 0 < threads < len(cpus) else None

    def preexec():
        if pin:
            os.sched_setaffinity(0, pin)

    loads = [os.getloadavg()[0]]
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=preexec)
        last_sample = t0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now - last_sample >= 5:
                loads.append(os.getloadavg()[0])
                last_sample = now
            if timeout and now - t0 > timeout:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    loads.append(os.getloadavg()[0])
    return {"rc": proc.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_gb": ru.ru_maxrss / 2 ** 20, "load_mean": float(np.mean(loads)),
            "load_max": float(np.max(loads)), "timed_out": bool(timeout and wall > timeout),
            "log": str(log_path)}


def ctf_argument(args):
    """The ``ctf`` argument of :class:`~classavg.Simulation` for the command-line options."""
    if not args.ctf:
        return None
    if args.amplitude_contrast is None:
        return True
    from classavg import Simulation

    md = Simulation(args.L, args.n, ctf=True, seed=args.seed).metadata
    ctf = {k: md[k].to_numpy() for k in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
                                          "rlnVoltage", "rlnSphericalAberration")}
    ctf["rlnAmplitudeContrast"] = np.full(args.n, float(args.amplitude_contrast))
    return ctf


def ctf_convention_check(sim):
    """Rings (pixels) where classavg's CTF and the RELION/ASPIRE formula differ in sign.

    The RELION CTF of an underfocused (positive defocus ``dz``) image is, up to one global
    sign, ``sin(chi + w)`` with ``chi = pi lam dz k^2 - pi/2 Cs lam^3 k^4`` and
    ``w = atan(Q / sqrt(1 - Q^2))`` (RELION's ``CTF::getCTF``; ASPIRE's ``CTFFilter`` uses
    ``-sin(chi + w)``); phase flipping depends only on the sign per frequency.  Evaluated along
    the x axis for the first image.  Returns a list of ring radii (pixels) whose signs disagree
    after matching the global sign; empty when the conventions agree.
    """
    from classavg.sources.ctf import electron_wavelength, evaluate_ctf

    md = sim.metadata
    if "rlnDefocusU" not in md:
        return []
    row = md.iloc[0]
    L, ps = sim.L, sim.pixel_size
    q = float(row.get("rlnAmplitudeContrast", 0.1))
    ours = evaluate_ctf(L, ps, row["rlnDefocusU"], row["rlnDefocusV"], row["rlnDefocusAngle"],
                        voltage=row["rlnVoltage"], cs=row["rlnSphericalAberration"],
                        amplitude_contrast=q)[0, L // 2, L // 2:]
    r = np.arange(ours.size)
    k = r / (L * ps)
    ang = np.deg2rad(row["rlnDefocusAngle"])
    dz = 0.5 * (row["rlnDefocusU"] + row["rlnDefocusV"]) + \
        0.5 * (row["rlnDefocusU"] - row["rlnDefocusV"]) * np.cos(2 * (0.0 - ang))
    lam = electron_wavelength(row["rlnVoltage"])
    chi = np.pi * lam * dz * k ** 2 - 0.5 * np.pi * row["rlnSphericalAberration"] * 1e7 * \
        lam ** 3 * k ** 4
    ref = np.sin(chi + np.arctan(q / np.sqrt(1 - q * q)))
    ok = (np.abs(ours) > 0.05) & (np.abs(ref) > 0.05)
    agree = np.sign(ours) == np.sign(ref)
    glob = np.sum(agree & ok) >= np.sum(~agree & ok)
    return [int(x) for x in r[ok & (agree != glob)]]


def simulate(args, data_dir):
    """Write (or reuse) the data set; return the Simulation, the time and whether reused."""
    from classavg import Simulation, set_progress
    from classavg.sources import simulate_dataset

    set_progress(False)
    snr = args.snr or None
    config = {"n": args.n, "L": args.L, "snr": snr, "ctf": bool(args.ctf),
              "amplitude_contrast": args.amplitude_contrast if args.ctf else None,
              "seed": args.seed, "volume": args.volume,
              "max_shift": args.max_shift, "amplitude_spread": args.amplitude_spread}
    star, cfg = data_dir / "particles.star", data_dir / "config.json"
    ctf = ctf_argument(args)
    if args.reuse and star.exists() and cfg.exists() and json.loads(cfg.read_text()) == config:
        return Simulation(args.L, args.n, volume=args.volume, snr=snr, ctf=ctf,
                          max_shift=args.max_shift, amplitude_spread=args.amplitude_spread,
                          seed=args.seed), 0.0, True
    t0 = time.perf_counter()
    sim = simulate_dataset(data_dir, args.n, args.L, snr=snr, ctf=ctf if ctf is not None
                           else False, volume=args.volume, max_shift=args.max_shift,
                           amplitude_spread=args.amplitude_spread, seed=args.seed,
                           overwrite=True)
    np.save(data_dir / "viewing_directions.npy", sim.viewing_directions)
    np.save(data_dir / "rotations.npy", sim.rotations)
    cfg.write_text(json.dumps(config))
    return sim, time.perf_counter() - t0, False


def score_classification(ci, cr, vdirs, group=None):
    """The neighbour accuracy (and, for a map with a two-fold, the same up to the map's
    symmetry: ``*_sym``, :mod:`classavg.metrics.symmetry`)."""
    from classavg.metrics import mirror_flag_agreement, neighbor_accuracy

    acc = neighbor_accuracy(ci, vdirs)
    out = {"within_5": acc.fraction[5.0], "within_10": acc.fraction[10.0],
           "within_20": acc.fraction[20.0], "ceiling_10": acc.ceiling[10.0],
           "chance_10": acc.chance[10.0], "median_angle": acc.median_angle,
           "mirror_agreement": float(mirror_flag_agreement(ci, cr, vdirs)),
           "duplicates_per_class": float(np.mean(
               [ci.shape[1] - np.unique(row).size for row in ci]))}
    if group is not None and len(group) > 1:
        sym = neighbor_accuracy(ci, vdirs, group=group, ceiling=False)
        out.update(within_5_sym=sym.fraction[5.0], within_10_sym=sym.fraction[10.0],
                   within_20_sym=sym.fraction[20.0], chance_10_sym=sym.chance[10.0],
                   median_angle_sym=sym.median_angle, symmetry_order=len(group))
    return out


def volume_symmetry(volume):
    """The point group of the half-turn axes of ``volume`` (None: the blob model)."""
    if volume is None:
        return None
    from classavg.metrics.symmetry import symmetry_group, twofold_axes
    from classavg.sources.molecules import is_molecule_name, molecule_path
    from classavg.sources.volume import load_volume

    path = molecule_path(volume) if is_molecule_name(volume) else volume
    axes, corr = twofold_axes(load_volume(path))
    print(f"two-fold axes of {volume}: {np.round(axes, 4).tolist()} "
          f"(self-correlation {np.round(corr, 4).tolist()})", flush=True)
    return symmetry_group(axes)


def score_averages(averages, refs, sim):
    from classavg.metrics import class_average_fidelity

    clean = sim.clean_images(np.asarray(refs))
    fid = class_average_fidelity(averages, clean, pixel_size=sim.pixel_size)
    out = {"median_correlation": float(fid["median_correlation"]),
           "median_resolution_A": float(fid["median_resolution"]),
           "n_averages": int(len(refs))}
    if out["median_correlation"] < 0:
        # Contrast-inverted averages (ASPIRE's CTF sign, see the module docstring): score
        # their negatives too, so that the FRC compares the averages' quality, not the sign.
        neg = class_average_fidelity(-np.asarray(averages), clean, pixel_size=sim.pixel_size)
        out["negated"] = {"median_correlation": float(neg["median_correlation"]),
                          "median_resolution_A": float(neg["median_resolution"])}
    return out


def _fmt_fidelity(f):
    """Median NCC and FRC cells, with the negated averages' figures when inverted."""
    ncc, res = f"{f['median_correlation']:.3f}", f"{f['median_resolution_A']:.1f}"
    if "negated" in f:
        ncc += f" ({f['negated']['median_correlation']:.3f} negated)"
        res += f" ({f['negated']['median_resolution_A']:.1f} negated)"
    return f"{ncc} | {res}"


def _fmt_stages(st):
    return ", ".join(f"{k} {v:.1f}" for k, v in st.items())


def _pct(x):
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f} %"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "_classavg_worker":
        return classavg_worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--snr", type=float, default=0.125, help="0 means noise-free")
    p.add_argument("--ctf", action="store_true", help="CTF with 7 defocus groups; phase flip")
    p.add_argument("--amplitude-contrast", type=float, default=None,
                   help="CTF amplitude contrast Q of the simulation (default: Simulation's, "
                        "0.1); 0 makes every CTF sign convention agree")
    p.add_argument("--no-normalize", action="store_true",
                   help="skip the background normalisation in both implementations (for "
                        "noise-free data, where it rescales each image by the spread of its "
                        "faint particle tails)")
    p.add_argument("--volume", default=None,
                   help="density map (MRC) to project; default the built-in blob model")
    p.add_argument("--max-shift", type=float, default=0.0,
                   help="largest particle offset in pixels (uniform in the disc)")
    p.add_argument("--amplitude-spread", type=float, default=0.0,
                   help="per-image contrast factors uniform in [1 - s, 1 + s] (issue 15's "
                        "acceptance data: 0.2; default 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: a new folder under /tmp)")
    p.add_argument("--reuse", action="store_true",
                   help="reuse DIR/data when it holds the same configuration")
    p.add_argument("--pipeline", action="store_true", help="also compare default pipelines")
    p.add_argument("--skip-classify", action="store_true",
                   help="skip the classification comparison (with --pipeline)")
    p.add_argument("--pipeline-classes", type=int, default=100,
                   help="class averages computed and scored per pipeline (default 100)")
    p.add_argument("--aspire-selector", choices=["top", "global"], default="top",
                   help="ASPIRE pipeline selector: top (default; averages only the classes "
                        "scored) or global (ASPIRE's default: averages all n classes)")
    p.add_argument("--preset", default=None,
                   help="preset classified as the preset does, beside the RIRClass2D defaults "
                        "(default: the newest)")
    p.add_argument("--also-no-rerank", action="store_true",
                   help="also classify with classavg's rerank=False (the plain bispectrum "
                        "neighbours of the reference algorithm)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each classification R times, interleaved; the table shows the "
                        "fastest run (the load of shared machines varies)")
    p.add_argument("--only", choices=["classavg", "aspire"],
                   help="run only one implementation (e.g. to repeat a measurement)")
    p.add_argument("--aspire-venv", default=os.environ.get("ASPIRE_VENV", "/tmp/aspire-venv"))
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds after which a worker is killed (0: none)")
    args = p.parse_args(argv)
    if args.preset is None:
        from classavg.pipeline import latest_preset
        args.preset = latest_preset().name

    py_aspire = aspire_python(args.aspire_venv)
    if py_aspire is None:
        print(f"ASPIRE venv not found at {args.aspire_venv!r} (no bin/python): skipping the "
              "comparison. Create it with scripts/setup_aspire_env.sh or set ASPIRE_VENV.")
        return 0
    probe = subprocess.run([str(py_aspire), "-c", "import aspire; print(aspire.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"ASPIRE is not importable with {py_aspire}: skipping the comparison.\n"
              f"{probe.stderr.strip()[-2000:]}")
        return 0
    aspire_version = probe.stdout.strip()

    import classavg

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="compare_aspire_"))
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sim, t_sim, reused = simulate(args, data_dir)
    star = data_dir / "particles.star"
    vdirs = sim.viewing_directions
    group = volume_symmetry(args.volume)
    print(f"data: {star} ({'reused' if reused else f'simulated in {t_sim:.1f} s'})",
          file=sys.stderr)
    mismatch = ctf_convention_check(sim) if args.ctf else []
    if mismatch:
        print(f"WARNING: classavg's CTF and RELION's / ASPIRE's CTF formula have opposite "
              f"signs (beyond one global sign) at Fourier radii {mismatch} px of image 0: "
              f"ASPIRE's phase flip of these simulated data inverts those frequencies. "
              f"Use --amplitude-contrast 0 for a like-for-like comparison.", file=sys.stderr)

    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(args.threads)
    env["PYTHONUNBUFFERED"] = "1"
    common = ["--star", str(star), "--n-nbor", str(args.n_nbor), "--seed", str(args.seed)]
    if not args.ctf:
        common.append("--no-phase-flip")
    if args.no_normalize:
        common.append("--no-normalize")
    jobs = []
    if not args.skip_classify:
        jobs += [("classify", "classavg", 0), ("classify", "classavg-preset", 0),
                 ("classify", "aspire", 0)]
        if args.also_no_rerank:
            jobs.insert(1, ("classify", "classavg-norerank", 0))
    if args.pipeline:
        jobs += [("pipeline", "classavg", 0), ("pipeline", "aspire", 0)]

    if args.only:
        jobs = [j for j in jobs if j[1].startswith(args.only)]

    summary = {"n": args.n, "L": args.L, "snr": args.snr or None, "ctf": bool(args.ctf),
               "normalize_background": not args.no_normalize,
               "threads": args.threads, "n_nbor": args.n_nbor, "seed": args.seed,
               "classavg_version": classavg.__version__, "aspire_version": aspire_version,
               "machine": machine_info(), "load_before": os.getloadavg(),
               "amplitude_contrast": (args.amplitude_contrast if args.amplitude_contrast
                                      is not None else 0.1) if args.ctf else None,
               "ctf_sign_mismatch_px": mismatch,
               "simulate_s": t_sim, "out": str(out), "results": {}}
    if args.repeat > 1:       # interleaved repeats of the classification runs
        cjobs = [j for j in jobs if j[0] == "classify"]
        jobs = cjobs + [(m, i, r) for r in range(1, args.repeat) for m, i, _ in cjobs] + \
            [j for j in jobs if j[0] != "classify"]
    for mode, impl, rep in jobs:
        if rep:
            wout = out / f"{mode}_{impl}_r{rep}"
        else:
            wout = out / f"{mode}_{impl}"
        if wout.exists():
            shutil.rmtree(wout)
        wout.mkdir(parents=True)
        if impl.startswith("classavg"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "_classavg_worker", mode,
                   "--out", str(wout)] + common
            if impl == "classavg-norerank":
                cmd.append("--no-rerank")
            if impl == "classavg-preset" and mode == "classify":
                cmd += ["--preset", args.preset]
        else:
            cmd = [str(py_aspire), str(ASPIRE_WORKER), mode, "--out", str(wout)] + common
        if mode == "pipeline":
            cmd += ["--classes", str(args.pipeline_classes)]
            if impl == "aspire":
                cmd += ["--selector", args.aspire_selector]
        print(f"running {impl} {mode} ...", file=sys.stderr, flush=True)
        proc = run_worker(cmd, env, str(wout), wout / "worker.log", args.threads, args.timeout)
        rj = wout / "result.json"
        if rep:
            first = summary["results"].get(f"{mode}/{impl}", {})
            if proc["rc"] == 0 and rj.exists() and "worker" in first:
                w = json.loads(rj.read_text())
                same = bool(np.array_equal(np.load(wout / "class_indices.npy"),
                                           np.load(Path(first["process"]["log"]).parent
                                                   / "class_indices.npy")))
                first["repeats"].append({"classify_s": w["classify_s"], "stages_s": w["stages_s"],
                                         "same_table": same, **proc})
            print(f"  repeat {rep} done in {proc['wall_s']:.1f} s (load avg "
                  f"{proc['load_mean']:.2f})", file=sys.stderr, flush=True)
            continue
        entry = {"process": proc}
        if proc["rc"] != 0 or not rj.exists():
            tail = Path(proc["log"]).read_text(errors="replace")[-3000:]
            entry["error"] = (f"exit code {proc['rc']}"
                              f"{' (timed out)' if proc['timed_out'] else ''}; log tail:\n{tail}")
            print(f"{impl} {mode} failed: {entry['error']}", file=sys.stderr)
        else:
            entry["worker"] = json.loads(rj.read_text())
            if mode == "classify":
                entry["repeats"] = [{"classify_s": entry["worker"]["classify_s"],
                                     "stages_s": entry["worker"]["stages_s"],
                                     "same_table": True, **proc}]
            if "skipped" not in entry["worker"]:
                ci = np.load(wout / "class_indices.npy")
                cr = np.load(wout / "class_refl.npy")
                entry["accuracy"] = score_classification(ci, cr, vdirs, group)
                if mode == "pipeline":
                    sel = np.load(wout / "selection.npy")
                    avg = np.load(wout / "averages.npy")
                    entry["fidelity"] = score_averages(avg, ci[sel, 0], sim)
                    entry["selected_accuracy"] = score_classification(ci[sel], cr[sel], vdirs,
                                                                      group)
                    if (wout / "averages_top.npy").exists():
                        k = len(sel)
                        entry["fidelity_top"] = score_averages(
                            np.load(wout / "averages_top.npy"), ci[:k, 0], sim)
        summary["results"][f"{mode}/{impl}"] = entry
        print(f"  done in {proc['wall_s']:.1f} s (load avg {proc['load_mean']:.2f})",
              file=sys.stderr, flush=True)
    summary["load_after"] = os.getloadavg()
    try:
        summary["uptime"] = subprocess.run(["uptime"], capture_output=True,
                                           text=True).stdout.strip()
    except OSError:
        pass

    md = render(summary)
    print(md)
    stem = "summary" + ("_classify" if not args.skip_classify else "") + \
        ("_pipeline" if args.pipeline else "")
    (out / f"{stem}.md").write_text(md + "\n")
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"\n(outputs in {out})", file=sys.stderr)
    return 0


def render(s):
    m = s["machine"]
    snr = "noise-free" if not s["snr"] else f"1/{round(1 / s['snr'])}" \
        if abs(1 / s["snr"] - round(1 / s["snr"])) < 1e-9 else f"{s['snr']:g}"
    loads = [e["process"]["load_mean"] for e in s["results"].values()]
    lines = [
        f"Data: n = {s['n']}, {s['L']} x {s['L']}, SNR {snr}, "
        + (f"CTF (7 defocus groups, amplitude contrast {s['amplitude_contrast']:g}, phase "
           "flipped)" if s["ctf"] else "no CTF")
        + (", background-normalised" if s.get("normalize_background", True)
           else ", not background-normalised")
        + f"; n_nbor = {s['n_nbor']}, seed {s['seed']}, "
        f"{s['threads']} threads.",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['mem_gb']} GB; classavg "
        f"{s['classavg_version']}, ASPIRE {s['aspire_version']}.",
        f"Load average (1 min): {s['load_before'][0]:.2f} before, "
        f"{s['load_after'][0]:.2f} after, mean during the runs "
        f"{np.mean(loads) if loads else float('nan'):.2f}"
        f" (per run: " + ", ".join(f"{k} {e['process']['load_mean']:.2f}"
                                   for k, e in s["results"].items()) + ").",
    ]
    if s.get("ctf_sign_mismatch_px"):
        lines.append(f"**Caveat**: classavg's simulated CTF and the RELION/ASPIRE CTF formula "
                     f"disagree in sign at Fourier radii {s['ctf_sign_mismatch_px']} px "
                     "(amplitude-contrast sign convention), so ASPIRE's phase flip inverts "
                     "those frequencies of these data; rerun with --amplitude-contrast 0.")
    lines.append("")
    cls = {k.split("/")[1]: e for k, e in s["results"].items() if k.startswith("classify/")}
    if cls:
        lines += [
            "| implementation | classify wall (s) | stages (s) | load+preprocess (s) | "
            "process wall (s) | process CPU (s) | peak RSS (GB) | <5° | <10° | <20° | "
            "ceiling 10° | median (°) | mirror |",
            "|" + "---|" * 13,
        ]
        for impl in ("classavg", "classavg-preset", "classavg-norerank", "aspire"):
            e = cls.get(impl)
            if e is None:
                continue
            pr = e["process"]
            if "worker" not in e:
                lines.append(f"| {impl} | failed ({e['error'].splitlines()[0]}) |" +
                             " |" * 12)
                continue
            w, a = e["worker"], e["accuracy"]
            reps = e.get("repeats") or []
            if len(reps) > 1:
                best = min(reps, key=lambda r: r["classify_s"])
                w = dict(w, classify_s=best["classify_s"], stages_s=best["stages_s"])
                pr = best
            name = (f"ASPIRE {w['aspire_version']}" if impl == "aspire" else
                    f"classavg {w['classavg_version']}"
                    + (" (rerank=False)" if impl == "classavg-norerank" else "")
                    + (f" (preset {w['options']['preset']})" if impl == "classavg-preset"
                       else " (RIRClass2D defaults)" if impl == "classavg" else ""))
            lines.append(
                f"| {name} | {w['classify_s']:.1f} | {_fmt_stages(w['stages_s'])} | "
                f"{w['load_preprocess_s']:.1f} | {pr['wall_s']:.1f} | {pr['cpu_s']:.1f} | "
                f"{pr['peak_rss_gb']:.2f} | {_pct(a['within_5'])} | {_pct(a['within_10'])} | "
                f"{_pct(a['within_20'])} | {_pct(a['ceiling_10'])} | {a['median_angle']:.1f} | "
                f"{_pct(a['mirror_agreement'])} |")
        sym = {k: e["accuracy"] for k, e in cls.items()
               if "accuracy" in e and "within_10_sym" in e["accuracy"]}
        if sym:
            lines += ["", "Up to the map's symmetry (order "
                      f"{next(iter(sym.values()))['symmetry_order']}; within 5/10/20 deg, "
                      "median angle, chance at 10 deg): " + "; ".join(
                          f"{k}: {_pct(a['within_5_sym'])} / {_pct(a['within_10_sym'])} / "
                          f"{_pct(a['within_20_sym'])}, {a['median_angle_sym']:.1f}, "
                          f"{_pct(a['chance_10_sym'])}" for k, a in sym.items())]
        if any(len(e.get("repeats") or []) > 1 for e in cls.values()):
            lines += ["", "Times are the fastest of the repeated runs; every run "
                      "(classification wall s / process CPU s / mean load): " + "; ".join(
                          f"{k}: " + ", ".join(f"{r['classify_s']:.1f}/{r['cpu_s']:.1f}/"
                                               f"{r['load_mean']:.1f}" for r in e["repeats"])
                          + ("" if all(r["same_table"] for r in e["repeats"])
                             else " (NOT the same neighbour table every run)")
                          for k, e in cls.items() if e.get("repeats"))]
        if all(k in cls and "worker" in cls[k] for k in ("classavg", "aspire")):
            c, a = cls["classavg"], cls["aspire"]

            def best(e):
                reps = e.get("repeats") or [dict(classify_s=e["worker"]["classify_s"],
                                                 **e["process"])]
                return (min(r["classify_s"] for r in reps), min(r["wall_s"] for r in reps),
                        min(r["cpu_s"] for r in reps), max(r["peak_rss_gb"] for r in reps))
            bc, ba = best(c), best(a)
            lines += ["", f"Wall-time ratio ASPIRE / classavg: classification "
                      f"{ba[0] / bc[0]:.1f}x, whole process {ba[1] / bc[1]:.1f}x, CPU time "
                      f"{ba[2] / bc[2]:.1f}x; peak memory ratio {ba[3] / bc[3]:.1f}x."
                      f" Chance level within 10°: {_pct(c['accuracy']['chance_10'])}."]
            lines.append(f"Options: classavg {c['worker']['options']}; ASPIRE "
                         f"{a['worker']['options']}.")
        lines.append("")
    pip = {k.split("/")[1]: e for k, e in s["results"].items() if k.startswith("pipeline/")}
    if pip:
        lines += [
            "| pipeline | configuration | classification (s) | selection (s) | averaging (s) | "
            "total (s) | peak RSS (GB) | averages scored | median NCC | median FRC 0.5 (Å) | "
            "<10° (all classes) | <10° (scored classes) |",
            "|" + "---|" * 12,
        ]
        est = None
        for impl in ("classavg", "aspire"):
            e = pip.get(impl)
            if e is None:
                continue
            if "worker" not in e:
                lines.append(f"| {impl} | failed ({e['error'].splitlines()[0]}) |" + " |" * 10)
                continue
            w = e["worker"]
            if "skipped" in w:
                lines.append(f"| {impl} | skipped: {w['skipped']} |" + " |" * 10)
                continue
            st, o = w["stages_s"], w["options"]
            if impl == "classavg":
                conf = (f"classavg {w['classavg_version']} DefaultClassAvgSource (preset "
                        f"{o['preset']}: {o['class_selector']}, {o['averager']})")
                t_cls, t_sel = st.get("classification", float("nan")), st.get("selection", 0)
            else:
                conf = (f"ASPIRE {w['aspire_version']} DefaultClassAvgSource ({o['classifier']} "
                        f"nn={o['nn_implementation']}, {o['class_selector']}, {o['averager']})")
                t_cls, t_sel = st["classification"], st["selection"]
                if o["selector"] == "top" and w["n_averages"]:
                    per = st["averaging"] / w["n_averages"]
                    est = t_cls + s["n"] * per
            f, a = e["fidelity"], e["accuracy"]
            lines.append(
                f"| {impl} | {conf} | {t_cls:.1f} | {t_sel:.1f} | {st['averaging']:.1f} | "
                f"{w['pipeline_s']:.1f} | {e['process']['peak_rss_gb']:.2f} | "
                f"{f['n_averages']} (selection order) | {_fmt_fidelity(f)} | "
                f"{_pct(a['within_10'])} | "
                f"{_pct(e['selected_accuracy']['within_10'])} |")
            if "fidelity_top" in e:
                ft = e["fidelity_top"]
                lines.append(
                    f"| {impl} | same pipeline, classes 0..{ft['n_averages'] - 1} (ASPIRE's "
                    f"TopClassSelector order, untimed extra) | | | {w['top_averaging_s']:.1f} | "
                    f"| | {ft['n_averages']} | {_fmt_fidelity(ft)} | | |")
        if est is not None:
            lines += ["", f"ASPIRE's default pipeline uses GlobalVarianceClassSelector, which "
                      f"averages all {s['n']} classes; it was replaced by TopClassSelector "
                      f"here. Estimated full default pipeline: classification + {s['n']} x "
                      f"averaging time per class = {est:.0f} s."]
            c = pip.get("classavg", {}).get("worker", {})
            if "pipeline_s" in c:
                lines.append(f"Estimated default-pipeline ratio ASPIRE / classavg: "
                             f"{est / c['pipeline_s']:.0f}x (classavg: {c['pipeline_s']:.1f} "
                             f"s for its {c['n_averages']} best classes).")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
