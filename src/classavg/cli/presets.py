"""``classavg presets``: list the versioned pipeline presets."""

from __future__ import annotations

from ..pipeline import latest_preset, list_presets


def add_parser(subparsers):
    return subparsers.add_parser("presets", help="list the pipeline presets",
                                 description="List the versioned presets (newest = default).")


def run(args):
    default = latest_preset().name
    for p in list_presets():
        mark = " (default)" if p.name == default else ""
        opts = ", ".join(f"{k}={v}" for k, v in p.averager_options.items())
        print(f"{p.name}{mark}\n    {p.description}\n    classifier: RIRClass2D"
              f"({', '.join(f'{k}={v}' for k, v in p.classifier.items())})\n"
              f"    selector:   {p.selector}"
              f"({', '.join(f'{k}={v}' for k, v in p.selector_options.items())})\n"
              f"    averager:   {p.averager}({opts})")
    return 0
