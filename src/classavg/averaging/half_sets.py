"""Half-set averages and resolution of classes, from the alignment the averager computed.

:func:`half_set_averages` splits the members of every class into two halves
(:func:`classavg.metrics.resolution.half_set_columns`: alternating along the distance order,
``n_nbor // 2`` members each) and stacks each half **with the averager's own stacking**
(:meth:`AligningAverager2D._stack_batch`, or its CTF-corrected variant) and the rotations and
shifts of its :class:`~classavg.averaging.base.AlignmentResult`: nothing is aligned again.
The members of a batch of classes are read, expanded and shifted once
(:meth:`ClassBatch.shifted_member_coefficients`) and both halves are cut from them.
:func:`half_set_class_resolution` adds the FRC at 0.143
(:func:`classavg.metrics.resolution.half_set_resolution`; the module docstring there gives the
criterion, its reasoning and the ``inf``/NaN cases).

The EM averager forms its average from soft assignments; its halves are the means of the
members at their MAP poses (the hard-assignment average of the same alignment).
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import check_float
from ..metrics.resolution import HALF_SET_THRESHOLD, half_set_columns, half_set_resolution
from ._batch import _HalfBatch
from .base import AligningAverager2D, AlignmentResult, ClassBatch, check_class_table

__all__ = ["half_set_averages", "half_set_class_resolution"]

logger = logging.getLogger(__name__)


def _stacker_of(averager):
    if averager.ctf_correction is not None:
        return averager._ctf_stack_batch
    return averager._half_stack_batch


def half_set_averages(averager, class_indices, class_refl, alignment):
    """The two half averages of every aligned class.

    Parameters
    ----------
    averager : AligningAverager2D
        The averager that made the averages (its source, basis, stacker and CTF options).
    class_indices : ndarray of int, shape (n, n_nbor)
        The full neighbour table.
    class_refl : ndarray of bool, shape (n, n_nbor), or None
    alignment : AlignmentResult
        Of the classes to split (``alignment.classes`` are rows of the table), e.g.
        ``averager.alignment`` after :meth:`~AligningAverager2D.average`.

    Returns
    -------
    half_a, half_b : ndarray, shape (k, L, L), dtype ``src.dtype``
        In the order of ``alignment.classes``; all zeros when ``n_nbor < 2``.
    """
    if not isinstance(averager, AligningAverager2D):
        raise TypeError(f"averager must be an AligningAverager2D, got {type(averager).__name__}")
    if not isinstance(alignment, AlignmentResult):
        raise TypeError(f"alignment must be an AlignmentResult, got {type(alignment).__name__}")
    ci, cr = check_class_table(class_indices, class_refl, averager.src.n)
    rows = np.asarray(alignment.classes, dtype=np.int64)
    k, m, L = rows.size, ci.shape[1], averager.src.L
    out_a = np.zeros((k, L, L), dtype=averager.src.dtype)
    out_b = np.zeros_like(out_a)
    cols_a, cols_b = half_set_columns(m)
    if k == 0 or cols_a.size == 0:
        return out_a, out_b
    if alignment.rotations.shape != (k, m):
        raise ValueError(f"alignment must have rotations of shape ({k}, {m}), got "
                         f"{alignment.rotations.shape}")
    stack = _stacker_of(averager)
    cache = averager._coefficient_cache()
    for s in range(0, k, averager.batch_size):
        sl = slice(s, min(s + averager.batch_size, k))
        r = rows[sl]
        batch = ClassBatch(r, ci[r], cr[r], averager.src, averager.transformer, cache)
        shifts = np.asarray(alignment.shifts[sl], dtype=np.float64)
        for cols, out in ((cols_a, out_a), (cols_b, out_b)):
            res = AlignmentResult(r, alignment.rotations[sl][:, cols], shifts[:, cols],
                                  alignment.scores[sl][:, cols])
            out[sl] = stack(_HalfBatch(batch, cols, shifts), res)
    return out_a, out_b


def half_set_class_resolution(averager, class_indices, class_refl, alignment, *,
                              pixel_size=None, threshold=HALF_SET_THRESHOLD):
    """Half-set FRC resolution of every aligned class (Angstrom).

    Parameters
    ----------
    averager, class_indices, class_refl, alignment
        As :func:`half_set_averages`.
    pixel_size : float, optional
        Angstrom per pixel of the averaged images (default ``averager.src.pixel_size``).
    threshold : float, optional
        FRC threshold (default 1/7, :mod:`classavg.metrics.resolution`).

    Returns
    -------
    dict
        As :func:`~classavg.metrics.resolution.half_set_resolution`: ``resolution`` (k,)
        Angstrom in the order of ``alignment.classes`` (``inf``: no correlation at any
        frequency; NaN: undefined, e.g. ``n_nbor < 2``), ``at_nyquist``, ``frc``,
        ``frequencies``.
    """
    if pixel_size is None:
        pixel_size = averager.src.pixel_size
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    a, b = half_set_averages(averager, class_indices, class_refl, alignment)
    out = half_set_resolution(a, b, pixel_size, threshold)
    logger.info("half-set resolution of %d classes: median %.3g A", a.shape[0],
                float(np.nanmedian(out["resolution"])) if np.isfinite(out["resolution"]).any()
                else float("nan"))
    return out
