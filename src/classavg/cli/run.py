"""``classavg run PARTICLES -o OUT``: class averages of a RELION, cryoSPARC or MRC data set.

Lengths are in Angstrom where RELION takes Angstrom (``--particle-diameter``, ``--max-shift``,
``--lowpass``); the pixel form stays where pixels are the natural unit (``--downsample``,
``--max-shift-px``).  Both values go into ``run.json`` (``units``).
"""

from __future__ import annotations

import sys

from ..io import PARTICLE_FORMATS, load_particles
from ..io.stack_source import particle_format
from ..pipeline import get_preset, prepare_source, run_classavg
from ..pipeline.units import angstrom_options

__all__ = ["add_parser", "run", "add_pipeline_arguments", "add_length_arguments",
           "dask_arguments", "length_options", "open_particles"]

_FORMATS = ", ".join(PARTICLE_FORMATS)


def add_parser(subparsers):
    """Declare the ``run`` subcommand and its arguments; return its parser."""
    p = subparsers.add_parser(
        "run", help="classify, select and average the particles of a STAR, .cs or MRC file",
        description="Classify, select and average particles; writes class_averages.mrcs, "
                    "class_averages_mirrored.mrcs, class_averages.star, classes.star, "
                    "class_table.npz, particles.star (with selected_particles.star and "
                    "rejected_particles.star when junk is rejected), run.json and report.html. "
                    f"Particle files: {_FORMATS} (by suffix). Class numbers are 1-based.")
    p.add_argument("particles", help="RELION particle STAR file (3.0 or 3.1+), cryoSPARC "
                                     "particle file (.cs) or MRC stack (.mrcs/.mrc)")
    p.add_argument("-o", "--output", required=True, help="output folder (required)")
    add_input_arguments(p)
    add_pipeline_arguments(p)
    add_length_arguments(p)
    p.add_argument("--downsample", type=int, default=None, metavar="L",
                   help="Fourier-crop images to L x L pixels first (default: no cropping)")
    p.add_argument("--phase-flip", action="store_true",
                   help="phase-flip by the CTF first (default: off)")
    p.add_argument("--invert-contrast", action="store_true",
                   help="negate the images: dark particles become bright (default: off)")
    return p


def add_input_arguments(p):
    """Options naming where the particle file's images are and their pixel size."""
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="RELION project folder the stack paths of a .star file are relative "
                        "to, and that every output STAR file names its stacks from (default: "
                        "found from the working and the STAR file's folder; outputs: the "
                        "current folder)")
    p.add_argument("--project-dir", default=None, metavar="DIR",
                   help="cryoSPARC project folder the blob/path of a .cs file is relative to "
                        "(default: found from the working and the .cs file's folder)")
    p.add_argument("--angpix", type=float, default=None, metavar="A",
                   help="pixel size in Angstrom of an MRC stack; a .star or .cs file gives "
                        "its own, which this must match (default: from the file)")


def add_pipeline_arguments(p, *, n_classes=None):
    """Options shared by ``run`` and ``demo`` (``n_classes``: the command's default)."""
    p.add_argument("--preset", default=None,
                   help="preset version (default: the newest; see `classavg presets`)")
    p.add_argument("--n-nbor", type=int, default=None, metavar="K",
                   help="images per class, the reference included (default: the preset's, "
                        "50)")
    p.add_argument("--n-classes", type=int, default=n_classes, metavar="N",
                   help="keep at most this many classes (default: "
                        + ("every class the preset's selector keeps)" if n_classes is None
                           else f"{n_classes})"))
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--j", "--threads", dest="threads", type=int, default=None, metavar="N",
                   help="threads for BLAS, OpenMP (finufft) and FFTs, set through "
                        "threadpoolctl (default: the libraries' own, all cores)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="images per batch of the classifier (default: 1024)")
    p.add_argument("--no-report", action="store_true",
                   help="skip report.html (default: write it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in the output folder (default: refuse)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the classification kernels and the averager's alignment "
                        "search run (cuda: NVIDIA GPU, needs pip install 'classavg[gpu]'; "
                        "default: cpu)")
    p.add_argument("--no-junk-rejection", action="store_true",
                   help="keep every particle and class: no scores, no selected/rejected "
                        "particle files (default: reject junk when the preset does, 1.4.0+)")
    p.add_argument("--min-fit-score", type=float, default=None, metavar="Z",
                   help="reject particles whose fit to their class model is below Z noise "
                        "SDs, instead of the default tests (the class-model and symmetric-"
                        "reference scores, each with the threshold of a two-component mixture "
                        "when it finds two populations)")
    p.add_argument("--max-extra-density", type=float, default=None, metavar="Z",
                   help="reject particles with unexplained density away from the centre "
                        "above Z noise SDs (default: median + 3 robust SDs of the data set)")
    p.add_argument("--max-missing-density", type=float, default=None, metavar="Z",
                   help="reject particles (broken, partial) that lack at least half of their "
                        "class model's density beyond a line, with a significance above Z "
                        "noise SDs (default: median + 3 robust SDs of the data set; preset "
                        "1.5.0+)")
    dask = p.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="run on the Dask cluster of this scheduler (tcp://host:8786); "
                           "the workers must see the input files (default: this process)")
    dask.add_argument("--dask-local", type=int, default=None, metavar="N",
                      help="run on a local Dask cluster of N worker processes (default: "
                           "this process)")


def add_length_arguments(p):
    """The Angstrom options (with the pixel form of the maximum shift)."""
    p.add_argument("--particle-diameter", "--mask-diameter", dest="particle_diameter",
                   type=float, default=None, metavar="A",
                   help="diameter in Angstrom of the circular mask; the background outside "
                        "it sets each image's normalisation, as RELION's --particle_diameter "
                        "(default: the box)")
    shift = p.add_mutually_exclusive_group()
    shift.add_argument("--max-shift", type=float, default=None, metavar="A",
                       help="largest translation in Angstrom the averager searches, rounded "
                            "to whole pixels of the working images (default: the preset's, "
                            "L/32 px)")
    shift.add_argument("--max-shift-px", type=float, default=None, metavar="PX",
                       help="the same in pixels of the working (downsampled) images "
                            "(default: the preset's, L/32 px)")
    p.add_argument("--lowpass", type=float, default=None, metavar="A",
                   help="resolution in Angstrom beyond which the classification ignores the "
                        "images (band limit 2 x pixel size / A; default: the preset's, "
                        "4 working pixels)")


def junk_arguments(args):
    """The ``run_classavg`` keywords of the junk options."""
    import math

    from .main import UserError

    opts = {}
    for flag, key, value in (("--min-fit-score", "min_fit", args.min_fit_score),
                             ("--max-extra-density", "max_extra", args.max_extra_density),
                             ("--max-missing-density", "max_missing",
                              args.max_missing_density)):
        if value is not None:
            if not math.isfinite(value):
                raise UserError(f"{flag} must be a finite number of noise SDs, got {value}")
            if args.no_junk_rejection:
                raise UserError(f"{flag} sets a junk-rejection threshold: it cannot go with "
                                "--no-junk-rejection")
            opts[key] = value
    return {"junk_rejection": False if args.no_junk_rejection else None,
            "junk_options": opts or None}


def dask_arguments(args):
    """The ``run_classavg`` keywords of the execution options (Dask, device, threads)."""
    return {"scheduler": args.scheduler, "dask_local": args.dask_local, "device": args.device,
            "threads": args.threads}


def open_particles(args):
    """The particle source of ``args.particles`` (format checked before any file is read)."""
    particle_format(args.particles)
    return load_particles(args.particles, data_dir=args.data_dir,
                          cs_project_dir=args.project_dir, angpix=args.angpix)


def length_options(args, pixel_size, L, preset):
    """:func:`~classavg.pipeline.units.angstrom_options` of the parsed arguments for images of
    ``pixel_size`` (A) and ``L`` (px)."""
    return angstrom_options(pixel_size, L, downsample=getattr(args, "downsample", None),
                            particle_diameter=args.particle_diameter, max_shift=args.max_shift,
                            max_shift_px=args.max_shift_px, lowpass=args.lowpass,
                            preset=preset)


def check_threads(args):
    """Refuse ``--j`` below 1 before anything is read."""
    from .main import UserError

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--j must be a positive number of threads, got {args.threads}")


def run(args):
    """Run ``classavg run`` with parsed ``args``; return the exit code."""
    from .main import UserError

    check_threads(args)
    junk = junk_arguments(args)                  # its flags checked before anything runs
    try:
        preset = get_preset(args.preset)                   # fail fast on an unknown preset
    except ValueError as exc:
        raise UserError(f"--preset: {exc}") from exc
    src = open_particles(args)
    units = length_options(args, src.pixel_size, src.L, preset)
    src, steps = prepare_source(src, phase_flip=args.phase_flip, downsample=args.downsample,
                                invert_contrast=args.invert_contrast,
                                mask_radius=units["mask_radius"])
    _, paths = run_classavg(
        src, args.output, preset=args.preset, n_nbor=args.n_nbor, n_classes=args.n_classes,
        seed=args.seed, overwrite=args.overwrite, report=not args.no_report,
        batch_size=args.batch_size, **dask_arguments(args), **junk,
        classifier_options=units["classifier_options"],
        averager_options=units["averager_options"],
        record={"input_star": str(args.particles), "input_file": str(args.particles),
                "input_format": PARTICLE_FORMATS[particle_format(args.particles)],
                "preprocessing": steps, "units": units["record"],
                "command": " ".join(sys.argv)})
    for name in ("class_averages.mrcs", "particles.star", "selected_particles.star",
                 "report.html"):
        if name in paths:
            print(f"{name:>20}: {paths[name]}")
    return 0
