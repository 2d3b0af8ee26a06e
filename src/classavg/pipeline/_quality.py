"""Per-class quality figures of a :class:`~classavg.pipeline.source.ClassAvgSource` that the
outputs write (classes.star, report): the half-set FRC resolution
(:mod:`classavg.averaging.half_sets`, :mod:`classavg.metrics.resolution`)."""

from __future__ import annotations

import logging
import time

import numpy as np

from .._tags import get_tags
from ..averaging import AlignmentResult
from ..averaging.half_sets import half_set_class_resolution
from ..metrics.resolution import half_set_resolution

__all__ = ["class_resolution"]

logger = logging.getLogger(__name__)


def class_resolution(cas, alignment=None):
    """Half-set FRC resolution (Angstrom, 0.143 criterion) of every selected class.

    Parameters
    ----------
    cas : ClassAvgSource
    alignment : tuple, optional
        ``cas.alignment()`` (rotations, shifts, scores) when already computed.

    Returns
    -------
    ndarray of float, shape (n_selected,)
        In selection-rank order, at the source's pixel size (of the classified images);
        ``inf`` where the halves do not correlate at any frequency, NaN where undefined (fewer
        than two members, an averager that does not align).  Adds
        ``cas.timings["resolution"]``.
    """
    sel = cas.selection_indices
    if not get_tags(cas.averager).aligns or cas.n_nbor < 2:
        return np.full(sel.size, np.nan)
    t0 = time.perf_counter()
    halves = cas.half_averages()
    if halves is not None:          # stacked in the averaging pass
        res = half_set_resolution(halves[:, 0], halves[:, 1], cas.src.pixel_size)["resolution"]
    else:
        rot, sh, sc = cas.alignment() if alignment is None else alignment
        res = half_set_class_resolution(cas.averager, cas.class_indices, cas.class_refl,
                                        AlignmentResult(sel, rot, sh, sc),
                                        pixel_size=cas.src.pixel_size)["resolution"]
    cas.timings["resolution"] = time.perf_counter() - t0
    return res
