"""``classavg info``: describe a particle data set (RELION ``.star``, cryoSPARC ``.cs``, MRC
stack).

The work is done by :func:`classavg.io.dataset_summary`; this module only formats it.
"""

from __future__ import annotations

import json

from .run import add_input_arguments

__all__ = ["add_parser", "run", "format_summary"]


def add_parser(subparsers):
    """Declare the ``info`` subcommand and its arguments; return its parser."""
    p = subparsers.add_parser(
        "info", help="describe a particle file (.star, .cs, .mrcs) and its stacks",
        description="Print the number of particles, box and pixel size, RELION layout, stacks, "
                    "optics groups, CTF and origin ranges of a particle file: RELION STAR "
                    "(3.0 or 3.1+), cryoSPARC .cs or MRC stack (.mrcs/.mrc).")
    p.add_argument("star", metavar="PARTICLES",
                   help="RELION particle STAR file, cryoSPARC .cs file or MRC stack")
    add_input_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON (default: text)")
    return p


def _fmt(x, unit=""):
    if x is None:
        return "-"
    return f"{x:g}{unit}"


def format_summary(summary) -> str:
    """Human-readable text of a :func:`~classavg.io.relion.dataset_summary` dict."""
    lines = []
    add = lines.append
    if summary.get("star_file"):
        add(f"STAR file      : {summary['star_file']}")
    elif summary.get("input_file"):
        add(f"input file     : {summary['input_file']} ({summary['input_format']})")
    if summary.get("relion_version"):
        add(f"RELION layout  : {summary['relion_version']}")
    add(f"particles      : {summary['n_particles']}")
    add(f"box size       : {summary['box_size']} px")
    add(f"pixel size     : {_fmt(summary['pixel_size'])} A")
    if summary.get("n_stacks") is not None:
        add(f"stacks         : {summary['n_stacks']}")
    groups = summary["optics_groups"]
    add(f"optics groups  : {len(groups)}")
    header = ("group", "name", "voltage(kV)", "Cs(mm)", "Q", "pixel(A)", "particles")
    rows = [tuple(str(v) for v in (g["group"], g["name"], _fmt(g["voltage"]), _fmt(g["cs"]),
                                   _fmt(g["amplitude_contrast"]), _fmt(g["pixel_size"]),
                                   g["count"])) for g in groups]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        add("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    ctf = summary.get("ctf")
    if ctf is None:
        add("CTF            : none")
    else:
        for key, label in (("defocus_u", "defocus U"), ("defocus_v", "defocus V")):
            s = ctf[key]
            add(f"{label:<15}: min {s['min']:.1f}  median {s['median']:.1f}  "
                f"max {s['max']:.1f} A")
        if "defocus_angle" in ctf:
            s = ctf["defocus_angle"]
            add(f"{'astig. angle':<15}: {s['min']:.1f} .. {s['max']:.1f} deg")
    origin = summary.get("origin")
    if origin is None:
        add("origins        : none")
    else:
        for key, label in (("x_angst", "origin X"), ("y_angst", "origin Y")):
            s = origin[key]
            add(f"{label:<15}: {s['min']:.2f} .. {s['max']:.2f} A")
    return "\n".join(lines)


def run(args) -> int:
    """Read the particle file named by ``args.star`` and print its summary; return 0."""
    from ..io import PARTICLE_FORMATS, dataset_summary, load_particles
    from ..io.stack_source import particle_format

    fmt = particle_format(args.star)
    src = load_particles(args.star, data_dir=args.data_dir, cs_project_dir=args.project_dir,
                         angpix=args.angpix)
    summary = dataset_summary(src)
    summary["input_file"] = str(args.star)
    summary["input_format"] = PARTICLE_FORMATS[fmt].split(" (")[0]
    if summary.get("n_stacks") is None and hasattr(src, "stack_names"):
        summary["n_stacks"] = len(src.stack_names)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0
