r"""Half-set resolution of class averages: the FRC of two half averages at 0.143.

Without ground truth, the resolution of an average is estimated by splitting its members into
two halves, averaging each half the same way (same alignment, same stacker) and measuring the
Fourier ring correlation (FRC, Saxton & Baumeister [1]_) between the two half averages; rings,
frequencies and the FRC itself are those of :mod:`classavg.metrics.fidelity`.

Criterion: 0.143
----------------
For two half averages with the same signal and independent noise, the expected FRC of a ring
is ``SNR / (1 + SNR)`` with ``SNR`` the spectral signal-to-noise ratio of one half average in
that ring.  Rosenthal & Henderson [2]_ chose the threshold so that the resolution describes
the *full* average (both halves, ``SNR_full = 2 SNR_half``): the full average's expected
correlation with the noise-free signal, ``C_ref = sqrt(2 FRC / (1 + FRC))``, equals 0.5 -- the
usual criterion for a comparison against a reference -- exactly where the half-set
``FRC = 1/7 ~= 0.143``.  This is the criterion of RELION and cryoSPARC ("gold standard FSC");
the value is :data:`HALF_SET_THRESHOLD`.

How the crossing is read
------------------------
The resolution is ``1 / f`` at the first ring ``i >= 1`` whose FRC is below the threshold,
with ``f`` linearly interpolated between rings ``i - 1`` and ``i``, in Angstrom:
``L * pixel_size / i_interp``.

* FRC never below the threshold up to ring ``L // 2``: the highest measured frequency is
  returned, ``L * pixel_size / (L // 2)`` (Nyquist ``2 * pixel_size`` for even L).  The true
  value is at least this good; :func:`half_set_resolution` also returns a flag ``at_nyquist``.
* FRC below the threshold already at ring 1 (no correlation at any measured frequency; e.g.
  an average of pure noise, or halves that were never aligned): ``inf`` -- no resolution can
  be claimed (ring 0, the mean, carries no structure).
* Undefined -- a class with fewer than two members, or a half average without any power
  (all zeros): ``NaN``.
* Rings without power in a half average (beyond the band limit of the basis the averages are
  synthesised from) have FRC 0 (:func:`~classavg.metrics.fidelity.fourier_ring_correlation`),
  so the resolution never claims frequencies the averages do not carry.

Caveat: in classavg every member of a class is aligned to the same reference image (column 0
of the neighbour table), not refined independently per half as in RELION's gold standard, so
both halves share the reference's noise through the alignment ("Einstein from noise"): the
half-set FRC is optimistic, most of all for classes of pure noise.  Use it to rank and select
classes, not as an absolute resolution claim.

References
----------
.. [1] Saxton, W. O. & Baumeister, W. (1982). J. Microsc. 127, 127-138.
.. [2] Rosenthal, P. B. & Henderson, R. (2003). Optimal determination of particle
   orientation, absolute hand, and contrast loss in single-particle electron cryomicroscopy.
   J. Mol. Biol. 333, 721-745.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_float
from ._common import as_image_stack, check_same_shape
from .fidelity import fourier_ring_correlation

__all__ = ["HALF_SET_THRESHOLD", "expected_frc", "half_set_columns", "resolution_from_frc",
           "half_set_resolution"]

#: The half-set FRC threshold (Rosenthal & Henderson 2003): ``1 / 7``.
HALF_SET_THRESHOLD = 1.0 / 7.0


def expected_frc(snr):
    """Expected FRC of two images with the same signal and independent noise.

    Parameters
    ----------
    snr : array_like
        Spectral signal-to-noise ratio (signal power / noise power) of one image per ring.

    Returns
    -------
    ndarray
        ``snr / (1 + snr)``.
    """
    snr = np.asarray(snr, dtype=np.float64)
    return snr / (1.0 + snr)


def half_set_columns(n_members):
    """Deterministic split of a class's members into two equal halves.

    Members are ordered by their distance to the reference (column 0 is the reference); the
    halves alternate along that order, so both get members of every distance: half A is
    columns ``0, 2, 4, ...``, half B columns ``1, 3, 5, ...``, ``n_members // 2`` each (the
    last member is left out when the count is odd, so both halves have the same noise level).

    Returns
    -------
    a, b : ndarray of int, shape (n_members // 2,)
    """
    h = int(n_members) // 2
    return np.arange(0, 2 * h, 2), np.arange(1, 2 * h, 2)


def resolution_from_frc(frc, L, pixel_size=1.0, threshold=HALF_SET_THRESHOLD):
    """Resolution at a threshold from FRC curves (module docstring: how the crossing is read).

    Parameters
    ----------
    frc : array_like, shape (k, L // 2 + 1) or (L // 2 + 1,)
        FRC per ring (NaN rows give NaN).
    L : int
        Image size in pixels.
    pixel_size : float
        Angstrom per pixel (1 gives pixels).
    threshold : float
        In (0, 1); default 1/7.

    Returns
    -------
    resolution : ndarray, shape (k,)
        Angstrom; ``inf`` when there is no correlation at ring 1, NaN for NaN rows.
    at_nyquist : ndarray of bool, shape (k,)
        True where the FRC never fell below the threshold (the value is a bound).
    """
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    threshold = check_float("threshold", threshold, min=0.0, min_inclusive=False, max=1.0)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be a number < 1, got {threshold!r}")
    frc = np.atleast_2d(np.asarray(frc, dtype=np.float64))
    if frc.shape[1] != L // 2 + 1:
        raise ValueError(f"frc must have L // 2 + 1 = {L // 2 + 1} rings, got shape {frc.shape}")
    k = frc.shape[0]
    bad = ~np.isfinite(frc).all(axis=1)
    f = np.where(bad[:, None], 0.0, frc)
    below = f[:, 1:] < threshold
    crossed = below.any(axis=1)
    i = np.argmax(below, axis=1) + 1                      # first ring below the threshold
    prev = f[np.arange(k), i - 1]
    cur = f[np.arange(k), i]
    drop = prev - cur                                     # > 0 where a crossing is read
    ring = (i - 1) + (prev - threshold) / np.where(drop > 0, drop, 1.0)
    res = np.where(i > 1, pixel_size * L / np.where(i > 1, ring, 1.0), np.inf)
    res = np.where(crossed, res, pixel_size * L / (L // 2))
    res = np.where(bad, np.nan, res)
    return res, ~crossed & ~bad


def half_set_resolution(half_a, half_b, pixel_size=1.0, threshold=HALF_SET_THRESHOLD):
    """FRC and resolution of pairs of half averages, vectorised over classes and rings.

    Parameters
    ----------
    half_a, half_b : array_like, shape (k, L, L)
        The two half averages of every class (same alignment, same stacker).
    pixel_size : float
        Angstrom per pixel of the averages.
    threshold : float
        FRC threshold (default :data:`HALF_SET_THRESHOLD`, 1/7).

    Returns
    -------
    dict
        ``resolution`` (k,) Angstrom (module docstring for ``inf``/NaN), ``at_nyquist`` (k,)
        bool, ``frc`` (k, L // 2 + 1) (NaN rows where a half has no power at all),
        ``frequencies`` (L // 2 + 1,) 1/Angstrom.
    """
    a, _ = as_image_stack(half_a, "half_a")
    b, _ = as_image_stack(half_b, "half_b")
    check_same_shape(a, b, "half_a", "half_b")
    L = a.shape[-1]
    frc = fourier_ring_correlation(a, b) if a.shape[0] else np.zeros((0, L // 2 + 1))
    empty = ~(np.any(a != 0, axis=(1, 2)) & np.any(b != 0, axis=(1, 2)))
    frc[empty] = np.nan
    res, nyq = resolution_from_frc(frc, L, pixel_size, threshold)
    return {"resolution": res, "at_nyquist": nyq, "frc": frc,
            "frequencies": np.arange(L // 2 + 1) / (L * float(pixel_size))}
