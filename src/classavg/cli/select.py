"""``classavg select RUN_DIR --classes 1-20,25 -o selected.star``: particles of chosen classes.

The work is done by :func:`classavg.pipeline.select.select_classes`; this module only parses
the arguments.
"""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Declare the ``select`` subcommand and its arguments; return its parser."""
    p = subparsers.add_parser(
        "select", help="write the particles and averages of chosen classes of a run",
        description="Write a RELION 3.1 particle STAR file (optics block, paths valid from the "
                    "run's project directory) with the particles of the chosen classes, and "
                    "OUTPUT_averages.mrcs/.star with their averages and mirrored averages. "
                    "Classes are the ranks 1..K of classes.star and the report; RELION class "
                    "K+k (the mirror of k) comes with k. The run folder is never modified.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of classavg run")
    p.add_argument("-o", "--output", required=True, metavar="OUT.star",
                   help="particle STAR file to write (outside RUN_DIR)")
    p.add_argument("--classes", default=None, metavar="LIST",
                   help="classes to keep, e.g. 1-20,25 (default: all)")
    p.add_argument("--classes-from", default=None, metavar="FILE",
                   help="text file of classes to keep in the same form, e.g. the report's "
                        "selected_classes.txt (joined with --classes)")
    p.add_argument("--exclude", default=None, metavar="LIST",
                   help="classes to leave out, e.g. 3,7-9 (default: none)")
    p.add_argument("--min-population", type=int, default=None, metavar="N",
                   help="keep classes with at least N assigned particles "
                        "(rlnClassNumber k or K+k; default: no limit)")
    p.add_argument("--max-resolution", type=float, default=None, metavar="A",
                   help="keep classes whose estimated resolution is at most A Angstrom "
                        "(needs _classavgResolutionAngst in classes.star; default: no limit)")
    p.add_argument("--assigned-only", action="store_true",
                   help="write only the particles assigned to the classes (rlnClassNumber k "
                        "or K+k) instead of all the members behind their averages (default)")
    p.add_argument("--kept-only", action="store_true",
                   help="only the classes and particles the run's junk rejection kept "
                        "(_classavgKept; default: all chosen classes and their particles)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def run(args) -> int:
    """Run ``classavg select`` with parsed ``args``; return the exit code."""
    from ..pipeline.select import select_classes

    sel = select_classes(args.run_dir, args.output, classes=args.classes,
                         exclude=args.exclude, classes_from=args.classes_from,
                         min_population=args.min_population,
                         max_resolution=args.max_resolution,
                         assigned_only=args.assigned_only, kept_only=args.kept_only,
                         overwrite=args.overwrite)
    what = "assigned particles" if args.assigned_only else "member particles"
    print(f"{len(sel.classes)} classes ({_ranges(sel.classes)}), {sel.n_particles} {what}: "
          f"{sel.particles}; averages: {sel.averages}")
    return 0


def _ranges(numbers):
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    out, start, prev = [], None, None
    for x in list(numbers) + [None]:
        if start is not None and (x is None or x != prev + 1):
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = None
        if x is not None and start is None:
            start = x
        prev = x
    return ",".join(out)
