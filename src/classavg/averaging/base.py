"""Interfaces of class averaging: :class:`Averager2D`, :class:`AligningAverager2D`.

Alignment convention (see docs/conventions.md)
----------------------------------------------
For member j of class c, the averager reports a ``rotation`` (radians) and a ``shift``
``(x, y)`` (pixels).  Applied to image j in the order

1. mirror (``y -> -y`` about the centre) when ``class_refl[c, j]`` is True,
2. translate by ``shift`` (the particle moves by +shift),
3. rotate counter-clockwise by ``rotation`` about the centre pixel,

they bring image j onto the reference image ``class_indices[c, 0]``.  Column 0 (the reference)
always has rotation 0 and shift (0, 0).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .._validation import check_int

__all__ = ["Averager2D", "AligningAverager2D", "AlignmentResult", "check_class_table"]

logger = logging.getLogger(__name__)


@dataclass
class AlignmentResult:
    """Per-member alignment of a batch of classes.

    Attributes
    ----------
    classes : ndarray of int, shape (k,)
        Class ids (row numbers of the full neighbour table) of the aligned rows.
    rotations : ndarray of float, shape (k, n_nbor)
        Counter-clockwise rotation in radians (applied last).
    shifts : ndarray of float, shape (k, n_nbor, 2)
        Translation (x, y) in pixels (applied after mirroring, before rotating).
    scores : ndarray of float, shape (k, n_nbor)
        Alignment score of each member (higher is better; the meaning depends on the
        averager, e.g. correlation with the reference).
    """

    classes: np.ndarray
    rotations: np.ndarray
    shifts: np.ndarray
    scores: np.ndarray

    @classmethod
    def concatenate(cls, parts):
        parts = list(parts)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("classes", "rotations", "shifts", "scores")))


def check_class_table(class_indices, class_refl, n_images):
    """Validate a neighbour table and return it as (int64 (k, m), bool (k, m)) arrays."""
    ci = np.asarray(class_indices)
    if ci.ndim == 1:
        ci = ci[None]
    if ci.ndim != 2 or ci.shape[1] < 1 or not np.issubdtype(ci.dtype, np.integer):
        raise ValueError(f"class_indices must be an integer array of shape (k, n_nbor), "
                         f"got {ci.dtype} {ci.shape}")
    if ci.size and (ci.min() < 0 or ci.max() >= n_images):
        raise ValueError(f"class_indices must lie in [0, {n_images}), got values in "
                         f"[{ci.min()}, {ci.max()}]")
    cr = np.zeros(ci.shape, bool) if class_refl is None else np.asarray(class_refl)
    if cr.ndim == 1:
        cr = cr[None]
    if cr.shape != ci.shape:
        raise ValueError(f"class_refl must have the shape of class_indices {ci.shape}, "
                         f"got {cr.shape}")
    return ci.astype(np.int64, copy=False), cr.astype(bool, copy=False)


class Averager2D(ABC):
    """Turns rows of a neighbour table into class averages.

    Parameters
    ----------
    src : ImageSource
        The images that the class tables index.
    basis : FourierBesselBasis2D, optional
        Steerable basis; built from ``src.L`` when not given.
    image_stacker : ImageStacker, optional
        How aligned members are combined (default :class:`MeanImageStacker`).
    batch_size : int, optional
        Classes processed at once; bounds memory (default 64).
    """

    def __init__(self, src, *, basis=None, image_stacker=None, batch_size=64):
        from ..basis import FourierBesselBasis2D
        from .stackers import ImageStacker, MeanImageStacker

        self.src = src
        self.basis = basis if basis is not None else FourierBesselBasis2D(src.L, dtype=src.dtype)
        if self.basis.L != src.L:
            raise ValueError(f"basis must be built for L={src.L}, got a basis for L={self.basis.L}")
        if image_stacker is None:
            image_stacker = MeanImageStacker()
        if not isinstance(image_stacker, ImageStacker):
            raise TypeError(f"image_stacker must be an ImageStacker, got {image_stacker!r}")
        self.image_stacker = image_stacker
        self.batch_size = check_int("batch_size", batch_size, min=1)

    @abstractmethod
    def average(self, class_indices, class_refl):
        """Class averages, one per row, each in the frame of its reference (column 0).

        Parameters
        ----------
        class_indices : ndarray of int, shape (k, n_nbor)
        class_refl : ndarray of bool, shape (k, n_nbor)

        Returns
        -------
        ndarray, shape (k, L, L), dtype ``src.dtype``
        """


class AligningAverager2D(Averager2D):
    """An averager that first aligns every member to its reference, then stacks them.

    After :meth:`average`, :attr:`alignment` holds the :class:`AlignmentResult` of the rows
    averaged (in the order given).
    """

    alignment: AlignmentResult | None = None

    @abstractmethod
    def align(self, class_indices, class_refl):
        """Align the members of each row to its reference.

        Returns
        -------
        AlignmentResult
            rotations (k, n_nbor), shifts (k, n_nbor, 2), scores (k, n_nbor).
        """
