"""Cached pixel and frequency grids.

Convention (used everywhere in classavg): an image is indexed ``[y, x]``; the centre is pixel
``(L // 2, L // 2)``; ``x = column - L // 2``, ``y = row - L // 2``; the polar angle
``theta = atan2(y, x)`` grows counter-clockwise when the image is displayed with row 0 at the
bottom (the MRC / RELION display convention).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["centered_grid", "radial_grid", "frequency_grid", "disk_mask", "rfft_rings"]


@lru_cache(maxsize=32)
def centered_grid(L: int):
    """Return read-only ``(y, x)`` pixel coordinates, each (L, L), centred on ``L // 2``."""
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    y = y.astype(np.float64)
    x = x.astype(np.float64)
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


@lru_cache(maxsize=32)
def radial_grid(L: int, normalized: bool = False):
    """Radius of every pixel from the centre, (L, L); ``normalized`` divides by ``L // 2``
    so that r = 1 at the middle of the image edge."""
    y, x = centered_grid(L)
    r = np.hypot(x, y)
    if normalized:
        r = r / (L // 2)
    r.flags.writeable = False
    return r


@lru_cache(maxsize=32)
def frequency_grid(L: int):
    """Spatial frequencies ``(ky, kx)`` in cycles per pixel, each (L, L), laid out to match
    ``np.fft.fftshift(np.fft.fft2(image))`` (zero frequency at ``(L // 2, L // 2)``)."""
    f = np.fft.fftshift(np.fft.fftfreq(L))
    ky, kx = np.meshgrid(f, f, indexing="ij")
    ky.flags.writeable = False
    kx.flags.writeable = False
    return ky, kx


@lru_cache(maxsize=32)
def disk_mask(L: int, radius: float | None = None):
    """Boolean (L, L) mask of pixels with radius < ``radius`` (default ``L / 2``)."""
    if radius is None:
        radius = L / 2
    m = radial_grid(L) < radius
    m.flags.writeable = False
    return m


@lru_cache(maxsize=16)
def rfft_rings(L: int):
    """Rings of the ``rfft2`` half plane of an L x L image and their Hermitian weights.

    Returns
    -------
    ring : ndarray of int, shape (L, L // 2 + 1), read-only
        ``round(|k| L)`` of every frequency (``0 .. round(L / sqrt(2))``, corners included).
    weight : ndarray, shape (L, L // 2 + 1), read-only
        2 for a column standing for itself and its conjugate, 1 for the self-conjugate
        columns ``kx = 0`` and, for even L, ``kx = L / 2``.
    """
    ky = np.fft.fftfreq(L) * L
    kx = np.arange(L // 2 + 1, dtype=np.float64)
    ring = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)
    weight = np.full(ring.shape, 2.0)
    weight[:, 0] = 1.0
    if L % 2 == 0:
        weight[:, -1] = 1.0
    ring.flags.writeable = False
    weight.flags.writeable = False
    return ring, weight
