"""Writing a simulated data set for :func:`classavg.sources.simulation.simulate_dataset`."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["dataset_paths", "write_dataset", "STACK_NAME"]

logger = logging.getLogger("classavg.sources.simulation")

#: Stack written by :func:`simulate_dataset`, relative to its output folder.
STACK_NAME = "Particles/particles.mrcs"


def dataset_paths(out_dir, overwrite):
    """``(star, stack, truth)`` paths of a data set in ``out_dir``; FileExistsError when one
    exists and not ``overwrite`` (before any work)."""
    out = Path(out_dir)
    paths = (out / "particles.star", out / STACK_NAME, out / "ground_truth.npz")
    if not overwrite:
        for p in paths:
            if p.exists():
                raise FileExistsError(f"output file {str(p)!r} exists; pass overwrite=True "
                                      "(--overwrite on the command line)")
    return paths


def write_dataset(sim, out_dir, *, batch_size, overwrite):
    """Write ``sim`` as ``particles.star``, its stack and ``ground_truth.npz`` in ``out_dir``."""
    star, _, truth = dataset_paths(out_dir, overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    logger.info("simulating %d images of %d px into %s", sim.n, sim.L, out_dir)
    from ..io.relion import save_source     # io reads/writes sources (one layer)

    save_source(sim, star, stack_name=STACK_NAME, batch_size=batch_size, overwrite=overwrite)
    sim.save_ground_truth(truth, overwrite=overwrite)
    return sim
