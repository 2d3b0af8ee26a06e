"""``classavg demo -o OUT``: simulate a shipped real molecule (EMD-11007) and run the default
preset."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io import RelionSource
from ..io._outdir import check_output_dir
from ..pipeline import get_preset, prepare_source, run_classavg
from ..pipeline.outputs import OUTPUT_NAMES
from ..sources.molecules import available_molecules
from ..sources.simulation import STACK_NAME, simulate_dataset
from .run import (add_length_arguments, add_pipeline_arguments, check_threads, dask_arguments,
                  junk_arguments, length_options)


#: Pixel size of the demo (Angstrom): the 256 A box of the former blob-model demo at 64 px, with
#: EMD-11007's 200 A map inside.  With the demo's SNR 0.2 the classification costs about what
#: the blob demo did (11.1 s vs 10.1 s CPU; at the map's own 3.1 A and SNR 0.5 the detail needs
#: 191 instead of 50 steerable-PCA components: 22.5 s).
DEMO_PIXEL_SIZE = 4.0


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate a real molecule and class-average it",
        description="Simulate a RELION data set of a shipped EMDB molecule (default EMD-11007, "
                    "a membrane protein in a micelle; CTF, noise), run the default pipeline on "
                    "it and write the usual outputs plus the ground truth.")
    p.add_argument("-o", "--output", default="demo_output",
                   help="output folder (default: demo_output)")
    p.add_argument("--n", type=int, default=3000, help="number of particles (default: 3000)")
    p.add_argument("--L", type=int, default=64, help="image size in pixels (default: 64)")
    p.add_argument("--snr", type=float, default=0.2,
                   help="signal-to-noise ratio (default: 0.2)")
    p.add_argument("--junk", type=float, default=0.2, metavar="FRACTION",
                   help="fraction of junk images, the six kinds in equal parts (default: "
                        "0.2; the ground truth records each image's kind)")
    p.add_argument("--molecule", default="emd-11007", choices=available_molecules(),
                   help="shipped molecule to simulate (default: emd-11007)")
    p.add_argument("--pixel-size", type=float, default=DEMO_PIXEL_SIZE, metavar="A",
                   help=f"pixel size in Angstrom (default: {DEMO_PIXEL_SIZE:g}, EMD-11007's "
                        "200 A box inside the 256 A image at 64 px)")
    add_pipeline_arguments(p, n_classes=100)
    add_length_arguments(p)
    return p


def run(args):
    from .main import UserError

    check_threads(args)
    junk = junk_arguments(args)                  # its flags checked before anything runs
    try:
        preset = get_preset(args.preset)
    except ValueError as exc:
        raise UserError(f"--preset: {exc}") from exc
    # the simulation's pixel size is known: the Angstrom options are checked before it runs
    units = length_options(args, args.pixel_size, args.L, preset)
    out = Path(args.output)
    data = out / "data"
    star = data / "particles.star"
    # The folders are checked before the simulation (a demo replaces an earlier demo only).
    check_output_dir(out, OUTPUT_NAMES, overwrite=True, marker="run.json",
                     flag="another --output")
    check_output_dir(data, ("particles.star", STACK_NAME, "ground_truth.npz"), overwrite=True)
    simulate_dataset(data, n=args.n, L=args.L, snr=args.snr, ctf=True, seed=args.seed,
                     volume=args.molecule, pixel_size=args.pixel_size, junk=args.junk,
                     overwrite=True)
    src = RelionSource(star)
    src, steps = prepare_source(src, phase_flip=True, mask_radius=units["mask_radius"])
    _, paths = run_classavg(
        src, out, preset=args.preset, n_nbor=args.n_nbor, n_classes=args.n_classes,
        seed=args.seed, overwrite=True, report=not args.no_report, batch_size=args.batch_size,
        **dask_arguments(args), **junk,
        classifier_options=units["classifier_options"],
        averager_options=units["averager_options"],
        record={"input_star": str(star), "input_file": str(star),
                "input_format": "RELION particle STAR file", "preprocessing": steps,
                "units": units["record"], "demo": True,
                "simulation": {"n": args.n, "L": args.L, "snr": args.snr, "ctf": True,
                               "molecule": args.molecule, "pixel_size": args.pixel_size,
                               "junk": args.junk},
                "command": " ".join(sys.argv)})
    print(f"class averages: {paths['class_averages.mrcs']}")
    if "selected_particles.star" in paths:
        _print_junk_summary(paths, data / "ground_truth.npz")
    if "report.html" in paths:
        print(f"report:         {paths['report.html'].resolve()}")
    return 0


def _print_junk_summary(paths, truth):
    """How the junk rejection did against the simulation's ground truth."""
    import numpy as np

    from ..pipeline import read_class_table

    kept = read_class_table(paths["class_table.npz"])["particle_kept"]
    with np.load(truth) as z:
        kinds = z["kind"] if "kind" in z.files else np.full(kept.size, "particle")
    junk = kinds != "particle"
    line = (f"junk rejection: {int(kept.sum())} of {kept.size} particles kept "
            f"({paths['selected_particles.star']})")
    if junk.any():
        line += (f"; of the simulated junk {100 * (~kept[junk]).mean():.0f} % rejected, of the "
                 f"particles {100 * kept[~junk].mean():.0f} % kept")
    print(line)
