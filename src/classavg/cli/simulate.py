"""``classavg simulate``: write a simulated RELION particle data set with its ground truth.

The work is done by :func:`classavg.sources.simulation.simulate_dataset`; this module only
parses the arguments.
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Declare the ``simulate`` subcommand and its arguments; return its parser."""
    p = subparsers.add_parser(
        "simulate", help="simulate particle images with known ground truth",
        description="Project a volume (the built-in Gaussian-blob molecule or an MRC map) at "
                    "uniformly random orientations, shift, apply a CTF and add white noise. "
                    "Writes DIR/particles.star, DIR/Particles/particles.mrcs and "
                    "DIR/ground_truth.npz (rotations, viewing directions, in-plane angles, "
                    "offsets, defoci, SNR, noise variance, seed).")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--L", type=int, required=True, help="image size in pixels")
    p.add_argument("--snr", type=float, default=None,
                   help="signal-to-noise ratio var(signal)/var(noise) (default: no noise)")
    p.add_argument("--volume", metavar="MAP", default=None,
                   help="cubic MRC map to project (default: the built-in blob molecule)")
    p.add_argument("--ctf", action="store_true",
                   help="apply CTFs (300 kV, Cs 2.7 mm, Q 0.1) in defocus groups")
    p.add_argument("--defocus-groups", type=int, default=7, metavar="K",
                   help="number of defocus groups with --ctf (default 7)")
    p.add_argument("--defocus-range", type=float, nargs=2, default=(1.0e4, 2.5e4),
                   metavar=("MIN", "MAX"),
                   help="smallest and largest defocus in Angstrom (default 10000 25000)")
    p.add_argument("--max-shift", type=float, default=0.0, metavar="PX",
                   help="random offsets uniform in a disk of this radius in pixels (default 0)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="A",
                   help="pixel size in Angstrom (default: from the map, else 256 / L)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--float64", action="store_true",
                   help="render in double precision (the stack is float32 either way)")
    p.add_argument("--batch-size", type=int, default=1024, metavar="B",
                   help="images rendered and written at a time (default 1024)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def run(args) -> int:
    """Run ``classavg simulate`` with parsed ``args``; return the exit code."""
    from ..io._outdir import check_output_dir, os_errors_name
    from ..sources.simulation import STACK_NAME, simulate_dataset

    # The folder first (seconds), the rendering after; the map given is never replaced.
    check_output_dir(args.output, ("particles.star", STACK_NAME, "ground_truth.npz"),
                     inputs=[args.volume], overwrite=args.overwrite)
    with os_errors_name(args.output):
        sim = simulate_dataset(
            args.output, args.n, args.L, snr=args.snr, volume=args.volume, ctf=args.ctf,
            n_defocus_groups=args.defocus_groups, defocus_range=tuple(args.defocus_range),
            max_shift=args.max_shift, pixel_size=args.pixel_size, seed=args.seed,
            dtype=np.float64 if args.float64 else np.float32, batch_size=args.batch_size,
            overwrite=args.overwrite)
    noise = "no noise" if sim.snr is None else f"SNR {sim.snr:g}"
    print(f"wrote {sim.n} images of {sim.L}x{sim.L} px ({sim.pixel_size:g} A/px, {noise}"
          f"{', CTF' if sim.has_ctf else ''}) to {args.output}")
    return 0
