"""``classavg demo -o OUT``: simulate the built-in molecule and run the default preset."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io import RelionSource
from ..io._outdir import check_output_dir
from ..pipeline import get_preset, prepare_source, run_classavg
from ..pipeline.outputs import OUTPUT_NAMES
from ..sources.simulation import DEFAULT_BOX_SIZE, STACK_NAME, simulate_dataset
from .run import (add_length_arguments, add_pipeline_arguments, check_threads, dask_arguments,
                  length_options)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate the built-in molecule and class-average it",
        description="Simulate a RELION data set of the built-in molecule (CTF, noise), run "
                    "the default pipeline on it and write the usual outputs plus the ground "
                    "truth.")
    p.add_argument("-o", "--output", default="demo_output",
                   help="output folder (default: demo_output)")
    p.add_argument("--n", type=int, default=3000, help="number of particles (default: 3000)")
    p.add_argument("--L", type=int, default=64, help="image size in pixels (default: 64)")
    p.add_argument("--snr", type=float, default=0.5,
                   help="signal-to-noise ratio (default: 0.5)")
    add_pipeline_arguments(p, n_classes=100)
    add_length_arguments(p)
    return p


def run(args):
    from .main import UserError

    check_threads(args)
    try:
        preset = get_preset(args.preset)
    except ValueError as exc:
        raise UserError(f"--preset: {exc}") from exc
    # the simulation's pixel size is DEFAULT_BOX_SIZE / L: the Angstrom options are checked
    # before it runs
    units = length_options(args, DEFAULT_BOX_SIZE / args.L, args.L, preset)
    out = Path(args.output)
    data = out / "data"
    star = data / "particles.star"
    # The folders are checked before the simulation (a demo replaces an earlier demo only).
    check_output_dir(out, OUTPUT_NAMES, overwrite=True, marker="run.json",
                     flag="another --output")
    check_output_dir(data, ("particles.star", STACK_NAME, "ground_truth.npz"), overwrite=True)
    simulate_dataset(data, n=args.n, L=args.L, snr=args.snr, ctf=True, seed=args.seed,
                     overwrite=True)
    src = RelionSource(star)
    src, steps = prepare_source(src, phase_flip=True, mask_radius=units["mask_radius"])
    _, paths = run_classavg(
        src, out, preset=args.preset, n_nbor=args.n_nbor, n_classes=args.n_classes,
        seed=args.seed, overwrite=True, report=not args.no_report, batch_size=args.batch_size,
        **dask_arguments(args), classifier_options=units["classifier_options"],
        averager_options=units["averager_options"],
        record={"input_star": str(star), "input_file": str(star),
                "input_format": "RELION particle STAR file", "preprocessing": steps,
                "units": units["record"], "demo": True,
                "simulation": {"n": args.n, "L": args.L, "snr": args.snr, "ctf": True},
                "command": " ".join(sys.argv)})
    print(f"class averages: {paths['class_averages.mrcs']}")
    if "report.html" in paths:
        print(f"report:         {paths['report.html'].resolve()}")
    return 0
