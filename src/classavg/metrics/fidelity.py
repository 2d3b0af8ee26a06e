"""Fidelity of class averages: masked correlation and Fourier ring correlation (FRC).

Rings: the pixel at 2D frequency index ``(ky, kx)`` (integers, ``k = L * f`` with ``f`` in
cycles per pixel, as in ``np.fft.fftfreq(L) * L``) belongs to ring ``round(|k|)``; rings
``0 .. L // 2`` are used (the corners beyond ``L // 2`` are dropped).  Ring ``i`` has spatial
frequency ``i / L`` cycles per pixel, i.e. ``i / (L * pixel_size)`` 1/Angstrom, and resolution
``L * pixel_size / i`` Angstrom.

References
----------
.. [1] Saxton, W. O. & Baumeister, W. (1982). The correlation averaging of a regularly arranged
   bacterial cell envelope protein. J. Microsc. 127, 127-138.
.. [2] van Heel, M. & Schatz, M. (2005). Fourier shell correlation threshold criteria.
   J. Struct. Biol. 151, 250-262.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .._grid import disk_mask, rfft_rings
from .._validation import check_float
from ._common import as_image_stack, check_same_shape

__all__ = [
    "masked_correlation",
    "ring_frequencies",
    "fourier_ring_correlation",
    "frc_resolution",
    "class_average_fidelity",
]

#: Pixels (images x L x L) processed per FFT batch, to bound memory.
_BATCH_PIXELS = 1 << 22


def _mask_for(L, radius):
    if radius is None:
        return disk_mask(L)
    radius = check_float("radius", radius, min=0.0, min_inclusive=False)
    return disk_mask(L, radius)


def masked_correlation(a, b, radius=None):
    """Normalised cross-correlation (Pearson) of image pairs inside the particle disk.

    Parameters
    ----------
    a, b : array_like, shape (k, L, L) or (L, L)
        Image stacks compared pairwise.
    radius : float, optional
        Disk radius in pixels about the centre ``(L // 2, L // 2)`` (default ``L / 2``); only
        pixels with radius < ``radius`` count.

    Returns
    -------
    ndarray, shape (k,) (float for 2-D input)
        ``sum(x y) / sqrt(sum(x^2) sum(y^2))`` with ``x, y`` the masked pixels minus their
        means inside the disk; in [-1, 1], NaN where an image is constant on the disk.
    """
    a, single = as_image_stack(a, "a")
    b, _ = as_image_stack(b, "b")
    check_same_shape(a, b, "a", "b")
    mask = _mask_for(a.shape[-1], radius)
    x = a[:, mask]
    y = b[:, mask]
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt(np.sum(x * x, axis=1) * np.sum(y * y, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(den > 0, np.sum(x * y, axis=1) / np.where(den > 0, den, 1.0), np.nan)
    return float(corr[0]) if single else corr


def ring_frequencies(L, pixel_size=1.0):
    """Spatial frequency of each FRC ring.

    Parameters
    ----------
    L : int
        Image size in pixels.
    pixel_size : float
        Pixel size in Angstrom (1 gives cycles per pixel).

    Returns
    -------
    ndarray, shape (L // 2 + 1,)
        ``i / (L * pixel_size)`` for ring ``i``, in 1/Angstrom (or 1/pixel).
    """
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    return np.arange(L // 2 + 1) / (L * pixel_size)


@lru_cache(maxsize=16)
def _ring_layout(L):
    """Ring bookkeeping on the ``rfft2`` half-plane of an L x L image.

    Returns the flat half-plane indices sorted by ring, the ``reduceat`` start of every ring,
    the Hermitian weights (2 for a column that stands for itself and its conjugate, 1 for the
    self-conjugate columns ``kx = 0`` and, for even L, ``kx = L / 2``) in the same order, and
    the full-plane pixel count of every ring.
    """
    ring, weight = rfft_rings(L)
    ring = ring.ravel()
    weight = weight.ravel()
    keep = np.flatnonzero(ring <= L // 2)
    order = keep[np.argsort(ring[keep], kind="stable")]
    counts = np.bincount(ring[order], weights=weight[order], minlength=L // 2 + 1)
    starts = np.concatenate([[0], np.cumsum(np.bincount(ring[order],
                                                        minlength=L // 2 + 1))[:-1]])
    for arr in (order, starts, counts):
        arr.flags.writeable = False
    w = weight[order]
    w.flags.writeable = False
    return order, starts, w, counts


def fourier_ring_correlation(a, b):
    """Fourier ring correlation of image pairs.

    ``FRC_i = Re sum_{k in ring i} A(k) conj(B(k)) / sqrt(sum |A(k)|^2 sum |B(k)|^2)``, over the
    full Fourier plane (computed on the ``rfft2`` half-plane with Hermitian weights).  Rings are
    ``round(|k|) = 0 .. L // 2`` (module docstring).  No mask is applied here.

    Parameters
    ----------
    a, b : array_like, shape (k, L, L) or (L, L)
        Real images compared pairwise.

    Returns
    -------
    ndarray, shape (k, L // 2 + 1) (or (L // 2 + 1,) for 2-D input)
        FRC per ring in [-1, 1]; 0 where a ring carries no power in either image.

    Notes
    -----
    For independent white noise a ring with ``n_i`` pixels has ``FRC_i`` of mean 0 and
    standard deviation close to ``1 / sqrt(n_i)``.
    """
    a, single = as_image_stack(a, "a")
    b, _ = as_image_stack(b, "b")
    check_same_shape(a, b, "a", "b")
    k, L = a.shape[0], a.shape[-1]
    order, starts, w, _ = _ring_layout(L)
    out = np.empty((k, L // 2 + 1))
    step = max(1, _BATCH_PIXELS // (L * L))
    for s in range(0, k, step):
        fa = np.fft.rfft2(a[s:s + step]).reshape(-1, L * (L // 2 + 1))[:, order]
        fb = np.fft.rfft2(b[s:s + step]).reshape(-1, L * (L // 2 + 1))[:, order]
        num = np.add.reduceat(w * (fa.real * fb.real + fa.imag * fb.imag), starts, axis=1)
        pa = np.add.reduceat(w * (fa.real ** 2 + fa.imag ** 2), starts, axis=1)
        pb = np.add.reduceat(w * (fb.real ** 2 + fb.imag ** 2), starts, axis=1)
        den = np.sqrt(pa * pb)
        out[s:s + step] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return out[0] if single else out


def _resolution_from_frc(frc, L, pixel_size, threshold):
    """First crossing below ``threshold`` (rings >= 1), linearly interpolated; Angstrom."""
    frc = np.atleast_2d(frc)
    below = frc[:, 1:] < threshold
    crossed = below.any(axis=1)
    i = np.argmax(below, axis=1) + 1                     # first ring below threshold
    prev = frc[np.arange(frc.shape[0]), i - 1]
    prev = np.where(i == 1, 1.0, prev)                   # the curve starts at 1 at f = 0
    cur = frc[np.arange(frc.shape[0]), i]
    ring = (i - 1) + (prev - threshold) / np.where(crossed, prev - cur, 1.0)
    res_cross = pixel_size * L / np.where(crossed, ring, 1.0)
    return np.where(crossed, res_cross, pixel_size * L / (L // 2))


def frc_resolution(a, b, pixel_size=1.0, threshold=0.5):
    """FRC resolution of image pairs at a fixed threshold.

    The resolution is ``1 / f`` at the first ring ``i >= 1`` where the FRC drops below
    ``threshold``, with ``f`` linearly interpolated between rings ``i - 1`` and ``i`` (ring 0, the
    single mean pixel, is taken as 1).  When the FRC never drops below the threshold the
    highest measured frequency ``(L // 2) / L`` is returned, i.e. Nyquist ``2 * pixel_size``
    for even L.

    Parameters
    ----------
    a, b : array_like, shape (k, L, L) or (L, L)
        Real images compared pairwise (mask them first if needed).
    pixel_size : float
        Pixel size in Angstrom; 1 gives the resolution in pixels.
    threshold : float
        FRC threshold in (0, 1), 0.5 by default (the 1/2-bit or 0.143 criteria are for
        half-map comparisons, not for a map against the truth).

    Returns
    -------
    ndarray, shape (k,) (float for 2-D input)
        Resolution in Angstrom (pixels when ``pixel_size = 1``).
    """
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    threshold = check_float("threshold", threshold, min=0.0, min_inclusive=False, max=1.0)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be a number < 1, got {threshold!r}")
    frc = fourier_ring_correlation(a, b)
    L = np.shape(a)[-1]
    res = _resolution_from_frc(frc, L, pixel_size, threshold)
    return float(res[0]) if frc.ndim == 1 else res


def class_average_fidelity(averages, clean_references, pixel_size=1.0, radius=None, *,
                           threshold=0.5):
    """Fidelity of class averages to the clean projections of their references.

    Both stacks are multiplied by the particle disk (hard mask of ``radius`` pixels), then
    compared with :func:`masked_correlation` and :func:`frc_resolution`.  By the alignment
    convention an average is aligned to its reference *image*, so pass the clean projection
    carrying the same offset, or centre both.

    Parameters
    ----------
    averages : array_like, shape (k, L, L)
        Class averages.
    clean_references : array_like, shape (k, L, L)
        Clean (CTF-free) projections of each class's reference image.
    pixel_size : float
        Pixel size in Angstrom.
    radius : float, optional
        Particle disk radius in pixels (default ``L / 2``).
    threshold : float
        FRC threshold (0.5 by default).

    Returns
    -------
    dict
        ``correlation`` (k,), ``resolution`` (k,) in Angstrom, ``frc`` (k, L // 2 + 1),
        ``frequencies`` (L // 2 + 1,) in 1/Angstrom, and the medians
        ``median_correlation`` and ``median_resolution``.
    """
    a, _ = as_image_stack(averages, "averages")
    b, _ = as_image_stack(clean_references, "clean_references")
    check_same_shape(a, b, "averages", "clean_references")
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    threshold = check_float("threshold", threshold, min=0.0, min_inclusive=False, max=1.0)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be a number < 1, got {threshold!r}")
    L = a.shape[-1]
    mask = _mask_for(L, radius)
    corr = masked_correlation(a, b, radius)
    frc = fourier_ring_correlation(a * mask, b * mask)
    res = _resolution_from_frc(frc, L, pixel_size, threshold)
    return {
        "correlation": corr,
        "resolution": res,
        "frc": frc,
        "frequencies": ring_frequencies(L, pixel_size),
        "median_correlation": float(np.nanmedian(corr)) if np.any(np.isfinite(corr))
        else float("nan"),
        "median_resolution": float(np.median(res)),
    }
