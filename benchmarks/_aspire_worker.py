"""ASPIRE side of ``benchmarks/compare_aspire.py`` (run with the ASPIRE venv's python).

ASPIRE (GPL-3.0) is used here only as a separate program: this script imports aspire, numpy and
the standard library, never classavg, and classavg never imports it.  The driver
(``compare_aspire.py``) runs it in a subprocess with the thread-count environment variables set.

Modes
-----
classify
    ``RelionSource(star) -> phase_flip() -> normalize_background() -> cache()`` (phase flip
    skipped with ``--no-phase-flip``, normalisation with ``--no-normalize``), then
    ``RIRClass2D(src, n_nbor=..., seed=...)`` with ASPIRE's defaults (fspca_components 400,
    bispectrum_components 300, sample_n 4000, legacy PCA / bispectrum / neighbour search),
    ``classify()`` timed alone.  Writes ``class_indices.npy``, ``class_refl.npy``,
    ``class_distances.npy`` and ``result.json`` to ``--out``.
pipeline
    The same preprocessing, then ASPIRE's ``DefaultClassAvgSource`` (0.14.0 configuration:
    RIRClass2D with the sklearn neighbour search, BFTAverager2D, GlobalVarianceClassSelector).
    ``--selector top`` replaces only the selector by ``TopClassSelector`` (classes in input
    order) so that just ``--classes`` classes are averaged; ``--selector global`` keeps the
    default global selection, which averages every one of the n classes before returning the
    first ``--classes`` averages.  Writes ``averages.npy``, ``selection.npy`` (class ids of the
    averages), the neighbour table and ``result.json``.

Timings are ``time.perf_counter`` wall seconds; ``peak_rss_gb`` is ``ru_maxrss`` of this
process (its children included via RUSAGE_CHILDREN), ``rss_before_gb`` the resident size just
before the timed stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

T_START = time.perf_counter()

# The driver's helper (stdlib + numpy only; after T_START so the import is timed like the
# classavg worker's).
from compare_aspire import _current_rss_gb  # noqa: E402


def _rss_gb(which=resource.RUSAGE_SELF):
    return resource.getrusage(which).ru_maxrss / 2 ** 20       # kB on Linux


def _timed(obj, name, timings, label):
    """Wrap the bound method ``obj.name`` so its wall time accumulates in ``timings[label]``."""
    method = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - t0

    setattr(obj, name, wrapper)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["classify", "pipeline"])
    p.add_argument("--star", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n-nbor", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-phase-flip", action="store_true")
    p.add_argument("--no-normalize", action="store_true")
    p.add_argument("--classes", type=int, default=100, help="pipeline: averages to compute")
    p.add_argument("--selector", choices=["top", "global"], default="top")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.chdir(args.out)            # ASPIRE writes its log files under ./logs

    import numpy as np

    import aspire
    from aspire import config
    from aspire.source import RelionSource

    try:
        config["logging"]["tqdm_disable"] = True
    except Exception:             # noqa: BLE001 - progress bars are cosmetic
        pass
    t_import = time.perf_counter() - T_START

    res = {"implementation": "aspire", "aspire_version": aspire.__version__,
           "numpy_version": np.__version__, "python": sys.version.split()[0],
           "threads_env": {k: os.environ.get(k) for k in
                           ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
           "mode": args.mode, "import_s": t_import}
    try:
        from importlib.metadata import version
        res["scipy_version"] = version("scipy")
        res["finufft_version"] = version("finufft")
    except Exception:             # noqa: BLE001 - versions are informative only
        pass

    # -- read and preprocess (timed separately, excluded from the classification time) -------
    t0 = time.perf_counter()
    src = RelionSource(args.star, n_workers=1)
    if not args.no_phase_flip:
        src = src.phase_flip()
    if not args.no_normalize:
        src = src.normalize_background()
    src = src.cache()
    res["load_preprocess_s"] = time.perf_counter() - t0
    res["n"], res["L"] = int(src.n), int(src.L)
    res["rss_before_gb"] = _current_rss_gb()

    timings = {}
    if args.mode == "classify":
        from aspire.classification import RIRClass2D

        rir = RIRClass2D(src, n_nbor=args.n_nbor, seed=args.seed)
        _timed(rir, "bispectrum", timings, "bispectrum+pca")
        _timed(rir, "nn_classification", timings, "neighbors")
        t0 = time.perf_counter()
        ci, cr, cd = rir.classify()
        total = time.perf_counter() - t0
        timings = {"fspca": total - sum(timings.values()), **timings}
        res.update(classify_s=total, stages_s=timings,
                   options={"fspca_components": rir.fspca_components,
                            "bispectrum_components": rir.bispectrum_components,
                            "sample_n": rir.sample_n, "alpha": rir.alpha,
                            "nn_implementation": rir._nn_implementation,
                            "n_nbor": args.n_nbor, "seed": args.seed})
    else:
        from aspire.classification import TopClassSelector
        from aspire.denoising import DefaultClassAvgSource

        kwargs = {"n_nbor": args.n_nbor}
        if args.selector == "top":
            kwargs["class_selector"] = TopClassSelector()
        t0 = time.perf_counter()
        avgs = DefaultClassAvgSource(src, **kwargs)
        clf = avgs.classifier
        _timed(clf, "bispectrum", timings, "classification/bispectrum+pca")
        _timed(clf, "nn_classification", timings, "classification/neighbors")
        t_setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        ci = np.asarray(avgs.class_indices)          # triggers the (lazy) classification
        t_cls = time.perf_counter() - t0
        cr = np.asarray(avgs.class_refl)
        cd = np.asarray(avgs.class_distances)
        timings["classification/fspca"] = t_cls - sum(timings.values())
        t0 = time.perf_counter()
        sel = np.asarray(avgs.selection_indices)    # global: averages all n classes
        t_sel = time.perf_counter() - t0
        k = min(args.classes, len(sel))
        t0 = time.perf_counter()
        averages = avgs.images[:k].asnumpy()
        t_avg = time.perf_counter() - t0
        np.save("averages.npy", averages.astype(np.float32))
        np.save("selection.npy", sel[:k].astype(np.int64))
        timings.update({"setup": t_setup, "classification": t_cls, "selection": t_sel,
                        "averaging": t_avg})
        res.update(pipeline_s=t_setup + t_cls + t_sel + t_avg, stages_s=timings,
                   n_averages=int(k), n_selected=int(len(sel)),
                   options={"selector": args.selector, "n_nbor": args.n_nbor,
                            "classifier": type(clf).__name__,
                            "nn_implementation": getattr(clf, "_nn_implementation", None),
                            "averager": type(avgs.averager).__name__,
                            "class_selector": type(avgs.class_selector).__name__})
    np.save("class_indices.npy", np.asarray(ci, dtype=np.int64))
    np.save("class_refl.npy", np.asarray(cr, dtype=bool))
    np.save("class_distances.npy", np.asarray(cd, dtype=np.float64))
    res["peak_rss_gb"] = max(_rss_gb(), _rss_gb(resource.RUSAGE_CHILDREN))
    res["total_s"] = time.perf_counter() - T_START
    with open("result.json", "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
