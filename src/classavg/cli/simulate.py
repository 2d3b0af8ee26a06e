"""``classavg simulate``: write a simulated RELION particle data set with its ground truth.

The work is done by :func:`classavg.sources.simulation.simulate_dataset`; this module only
parses the arguments.
"""

from __future__ import annotations

import functools

import numpy as np

from .._errors import ParameterError
from ..sources.junk import JUNK_KINDS
from ..sources.molecules import available_molecules, get_molecule
from ..sources.noise import ICE_AMPLITUDE, ICE_K0, ice_psd, load_psd

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Declare the ``simulate`` subcommand and its arguments; return its parser."""
    p = subparsers.add_parser(
        "simulate", help="simulate particle images with known ground truth",
        description="Project a volume (the built-in Gaussian-blob molecule, a shipped EMDB "
                    "molecule or an MRC map) at uniformly random orientations, shift, apply a "
                    "CTF, vary amplitudes and backgrounds, add white or coloured noise and "
                    "optionally junk images. "
                    "Writes DIR/particles.star, DIR/Particles/particles.mrcs and "
                    "DIR/ground_truth.npz (rotations, viewing directions, in-plane angles, "
                    "offsets, defoci, kind of each image, SNR, noise variance, seed).")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--L", type=int, required=True, help="image size in pixels")
    p.add_argument("--snr", type=float, default=None,
                   help="signal-to-noise ratio var(signal)/var(noise) (default: no noise)")
    vol = p.add_mutually_exclusive_group()
    vol.add_argument("--volume", metavar="MAP", default=None,
                     help="cubic MRC map to project, voxel size from its header (default: the "
                          "built-in blob molecule)")
    vol.add_argument("--molecule", metavar="NAME", default=None,
                     help=f"a shipped molecule: {', '.join(available_molecules())} (default: "
                          "the built-in blob molecule, or --volume)")
    p.add_argument("--noise", default="white", metavar="white|ice|FILE",
                   help="noise spectrum: white (default), ice (1 + A exp(-(k/k0)^2), low "
                        "frequencies 3x noisier) or a radial PSD file (.npy or text: one "
                        "column per ring k = j/L, or two columns k [cycles/px], P)")
    p.add_argument("--ice-psd", type=float, nargs=2, default=None, metavar=("A", "K0"),
                   help=f"parameters of --noise ice (default {ICE_AMPLITUDE:g} {ICE_K0:g})")
    p.add_argument("--amplitude-spread", type=float, default=0.0, metavar="S",
                   help="per-image amplitudes uniform in [1-S, 1+S] (default 0)")
    p.add_argument("--background-offset", type=float, default=0.0, metavar="SD",
                   help="per-image background offset sd, in signal sd (default 0)")
    p.add_argument("--background-gradient", type=float, default=0.0, metavar="G",
                   help="largest per-image linear background gradient (ice thickness), "
                        "centre to edge, in signal sd (default 0)")
    p.add_argument("--contrast", choices=("bright", "dark"), default="bright",
                   help="bright particles as RELION expects (default) or dark as in "
                        "micrographs")
    p.add_argument("--junk", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of junk images (default 0)")
    p.add_argument("--junk-kinds", default=None, metavar="KIND=W,...",
                   help="relative weights of the junk kinds among "
                        f"{', '.join(JUNK_KINDS)} (default: equal parts)")
    p.add_argument("--ctf", action="store_true",
                   help="apply CTFs (300 kV, Cs 2.7 mm, Q 0.1) in defocus groups")
    p.add_argument("--defocus-groups", type=int, default=7, metavar="K",
                   help="number of defocus groups with --ctf (default 7)")
    p.add_argument("--defocus-range", type=float, nargs=2, default=(1.0e4, 2.5e4),
                   metavar=("MIN", "MAX"),
                   help="smallest and largest defocus in Angstrom (default 10000 25000)")
    p.add_argument("--ctf-boundary", choices=("periodic", "crop"), default="periodic",
                   help="periodic (default): the CTF in the box's own Fourier transform, "
                        "delocalised signal wraps round; crop: on a canvas twice the box, "
                        "then cropped, as in extraction from a micrograph")
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
    if args.molecule is not None:
        get_molecule(args.molecule)           # a known name, before any output
    noise = args.noise
    if noise not in ("white", "ice"):
        load_psd(noise)                       # a readable PSD file, before any output
    if args.ice_psd is not None:
        if noise != "ice":
            raise ParameterError(f"--ice-psd needs --noise ice, got --noise {noise!r}")
        noise = functools.partial(ice_psd, amplitude=args.ice_psd[0], k0=args.ice_psd[1])
    with os_errors_name(args.output):
        sim = simulate_dataset(
            args.output, args.n, args.L, snr=args.snr, volume=args.molecule or args.volume,
            ctf=args.ctf, n_defocus_groups=args.defocus_groups,
            defocus_range=tuple(args.defocus_range), max_shift=args.max_shift,
            ctf_boundary=args.ctf_boundary,
            pixel_size=args.pixel_size, seed=args.seed, noise=noise,
            amplitude_spread=args.amplitude_spread, background_offset=args.background_offset,
            background_gradient=args.background_gradient, contrast=args.contrast,
            junk=args.junk, junk_kinds=parse_junk_kinds(args.junk_kinds),
            dtype=np.float64 if args.float64 else np.float32, batch_size=args.batch_size,
            overwrite=args.overwrite)
    noise = "no noise" if sim.snr is None else f"SNR {sim.snr:g}, {sim.noise} noise"
    n_junk = int(np.sum(sim.kinds != "particle"))
    print(f"wrote {sim.n} images of {sim.L}x{sim.L} px ({sim.pixel_size:g} A/px, {noise}"
          f"{', CTF' if sim.has_ctf else ''}{f', {n_junk} junk' if n_junk else ''}) to "
          f"{args.output}")
    return 0


def parse_junk_kinds(text):
    """``{kind: weight}`` of a ``--junk-kinds`` value such as ``"empty_ice=1,aggregate=2"``."""
    if text is None:
        return None
    out = {}
    for item in text.split(","):
        name, sep, weight = item.partition("=")
        try:
            out[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ParameterError(f"--junk-kinds must be KIND=WEIGHT,..., got {item!r}") \
                from None
    return out
