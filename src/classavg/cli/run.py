"""``classavg run PARTICLES.star -o OUT``: class averages of a RELION data set."""

from __future__ import annotations

import sys

from ..io import RelionSource
from ..pipeline import get_preset, prepare_source, run_classavg


def add_parser(subparsers):
    p = subparsers.add_parser(
        "run", help="classify, select and average the particles of a RELION STAR file",
        description="Classify, select and average particles; writes class_averages.mrcs, "
                    "class_averages_mirrored.mrcs, class_averages.star, "
                    "classes.star, class_table.npz, particles.star, run.json and report.html.")
    p.add_argument("particles", help="RELION particle STAR file (3.0 or 3.1+)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    add_pipeline_arguments(p)
    p.add_argument("--data-dir", default=None,
                   help="RELION project folder that stack paths are relative to, in the "
                        "input and in every output STAR file (default: the current folder)")
    p.add_argument("--downsample", type=int, default=None, metavar="L",
                   help="Fourier-crop images to L x L pixels first")
    p.add_argument("--phase-flip", action="store_true", help="phase-flip by the CTF first")
    p.add_argument("--invert-contrast", action="store_true",
                   help="negate the images (dark particles become bright)")
    return p


def add_pipeline_arguments(p):
    """Options shared by ``run`` and ``demo``."""
    p.add_argument("--preset", default=None,
                   help="preset version (default: the newest; see `classavg presets`)")
    p.add_argument("--n-nbor", type=int, default=None, help="images per class (default 50)")
    p.add_argument("--n-classes", type=int, default=None,
                   help="keep at most this many classes")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=1024, help="images per batch")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in the output folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the classification kernels and the averager's alignment "
                        "search run (cuda: NVIDIA GPU, needs pip install 'classavg[gpu]')")
    dask = p.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run on the Dask cluster of this scheduler (tcp://host:8786); "
                           "the workers must see the input files")
    dask.add_argument("--dask-local", type=int, default=None, metavar="N",
                      help="run on a local Dask cluster of N worker processes")


def dask_arguments(args):
    """The ``run_classavg`` keywords of the execution options (Dask, device)."""
    return {"scheduler": args.scheduler, "dask_local": args.dask_local, "device": args.device}


def run(args):
    from .main import UserError

    try:
        get_preset(args.preset)                   # fail fast on an unknown preset
    except ValueError as exc:
        raise UserError(f"--preset: {exc}") from exc
    src = RelionSource(args.particles, data_dir=args.data_dir)
    src, steps = prepare_source(src, phase_flip=args.phase_flip, downsample=args.downsample,
                                invert_contrast=args.invert_contrast)
    _, paths = run_classavg(
        src, args.output, preset=args.preset, n_nbor=args.n_nbor, n_classes=args.n_classes,
        seed=args.seed, overwrite=args.overwrite, report=not args.no_report,
        batch_size=args.batch_size, **dask_arguments(args),
        record={"input_star": str(args.particles), "preprocessing": steps,
                "command": " ".join(sys.argv)})
    for name in ("class_averages.mrcs", "particles.star", "report.html"):
        if name in paths:
            print(f"{name:>20}: {paths[name]}")
    return 0
