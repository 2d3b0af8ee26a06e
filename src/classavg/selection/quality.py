"""Image quality functions: score a class average (higher is better).

An :class:`ImageQualityFunction` is called on one image ``(L, L)`` (-> float) or a stack
``(k, L, L)`` (-> ``(k,)`` float64), vectorised over the stack.  Masks, frequency weights and
pixel weights depend only on ``L`` and the parameters, and are computed once and cached.

Radii are normalised so that ``r = 1`` at the middle of an image edge
(``r = hypot(x, y) / (L // 2)``, :func:`classavg._grid.radial_grid`); corners have
``r ~ sqrt(2)``.

Functions
---------
* :class:`VarianceImageQualityFunction` -- pixel variance;
* :class:`BandedSNRImageQualityFunction` -- ``var(r < inner) / var(lo < r < hi)``: signal in
  the middle over the background at the edge;
* :class:`BandpassImageQualityFunction` -- power in a band of spatial frequencies over the
  power outside it (DC excluded);
* pixel weights: :class:`WeightedImageQualityMixin` and its ramp / bump variants, mixable in
  front of any function above (:class:`RampWeightedVarianceImageQualityFunction`,
  :class:`BumpWeightedVarianceImageQualityFunction`, or your own
  ``class F(BumpWeightedImageQualityMixin, BandpassImageQualityFunction)``).

How weights enter each function: the variance becomes the weighted variance
``sum w (x - m_w)^2 / sum w`` with ``m_w = sum w x / sum w``; BandedSNR takes weighted
variances over each region; Bandpass windows the image (``w * (x - m_w)``) before its
Fourier transform (an apodisation that suppresses the edge discontinuity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
import scipy.fft

from .._grid import radial_grid
from .._validation import check_float

__all__ = [
    "ImageQualityFunction",
    "VarianceImageQualityFunction",
    "BandedSNRImageQualityFunction",
    "BandpassImageQualityFunction",
    "WeightedImageQualityMixin",
    "RampWeightedImageQualityMixin",
    "BumpWeightedImageQualityMixin",
    "RampWeightedVarianceImageQualityFunction",
    "BumpWeightedVarianceImageQualityFunction",
    "ramp_weights",
    "bump_weights",
]


# -- cached grids and weights ---------------------------------------------------------------------
def _readonly(a):
    a.flags.writeable = False
    return a


def ramp_weights(r):
    """Ramp ``max(1 - r, 0)``: 1 at the centre, 0 from the edge on (never negative)."""
    return np.maximum(1.0 - np.asarray(r, dtype=np.float64), 0.0)


def bump_weights(r):
    """Smooth bump ``exp(1 - 1 / (1 - r^2))`` for ``r < 1``, else 0; 1 at the centre."""
    r = np.asarray(r, dtype=np.float64)
    out = np.zeros(r.shape)
    inside = r < 1
    out[inside] = np.exp(1.0 - 1.0 / (1.0 - r[inside] ** 2))
    return out


@lru_cache(maxsize=64)
def _pixel_weights(weight_function, L):
    """``weight_function(r)`` on the normalised radial grid of size L, (L, L), read-only."""
    w = np.asarray(weight_function(radial_grid(L, normalized=True)), dtype=np.float64)
    if w.shape != (L, L) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero on an "
                         f"{L} x {L} grid, got a range [{w.min()}, {w.max()}]")
    return _readonly(w)


@lru_cache(maxsize=64)
def _banded_masks(L, inner, lo, hi):
    r = radial_grid(L, normalized=True)
    return _readonly(r < inner), _readonly((r > lo) & (r < hi))


@lru_cache(maxsize=64)
def _rfft_band_weights(L, lo, hi):
    """Multiplicities of the ``rfft2`` bins in the band / outside it (DC excluded), (L, L//2+1).

    Each half-plane bin of ``scipy.fft.rfft2`` stands for itself and its conjugate twin,
    except the columns ``kx = 0`` and (even L) ``kx = -1/2``, which hold both already.
    """
    ky = np.fft.fftfreq(L)[:, None]
    kx = np.fft.rfftfreq(L)[None, :]
    k = np.hypot(ky, kx)
    mult = np.full(k.shape, 2.0)
    mult[:, 0] = 1.0
    if L % 2 == 0:
        mult[:, -1] = 1.0
    band = (k >= lo) & (k <= hi)
    dc = k == 0
    return _readonly(mult * (band & ~dc)), _readonly(mult * (~band & ~dc))


def _ratio(num, den):
    """``num / den`` elementwise; x / 0 = inf, 0 / 0 = NaN, without warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, np.float64) / np.asarray(den, np.float64)


def _weighted_variance(flat, w):
    """Weighted variance of each row of ``flat`` (k, p) with weights ``w`` (p,) >= 0."""
    sw = w.sum()
    m = (flat @ w) / sw
    d = flat - m[:, None]
    return ((d * d) @ w) / sw


# -- the interface -----------------------------------------------------------------------------------
class ImageQualityFunction(ABC):
    """Scores images; higher is better.

    Call it on one image ``(L, L)`` -> ``float`` or a stack ``(k, L, L)`` -> ``ndarray (k,)``
    of float64.  Subclasses implement :meth:`_function` on a float64 stack and may use
    :meth:`weights` (None here; pixel weights with a :class:`WeightedImageQualityMixin`).
    """

    def __call__(self, images):
        """Score one image (L, L) -> float, or a stack (k, L, L) -> (k,) float64."""
        x = np.asarray(images)
        if x.ndim not in (2, 3) or x.shape[-1] != x.shape[-2] or x.shape[-1] < 2:
            raise ValueError(f"images must be an image (L, L) or a stack (k, L, L) with "
                             f"L >= 2, got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"images must be a real array, got dtype {x.dtype}")
        single = x.ndim == 2
        stack = x[None] if single else x
        if stack.shape[0] == 0:
            return np.zeros(0)
        out = np.asarray(self._function(stack.astype(np.float64, copy=False)), np.float64)
        return float(out[0]) if single else out

    @abstractmethod
    def _function(self, images):
        """Scores of a float64 stack (k, L, L), k >= 1 -> (k,)."""

    def weights(self, L):
        """Pixel weights (L, L) (cached, read-only), or None for an unweighted function."""
        return None

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class VarianceImageQualityFunction(ImageQualityFunction):
    """Pixel variance of the image (weighted variance with a weighting mixin).

    A class average of well aligned, consistent members keeps the contrast of the particle;
    a poor class blurs to a flat image of low variance.  Used by ASPIRE's "0.14.0" preset.
    """

    def _function(self, images):
        k, L = images.shape[0], images.shape[-1]
        w = self.weights(L)
        if w is None:
            return images.reshape(k, -1).var(axis=1)
        return _weighted_variance(images.reshape(k, -1), w.ravel())


class BandedSNRImageQualityFunction(ImageQualityFunction):
    """``var(r < inner) / var(lo < r < hi)``: the particle's contrast over the background's.

    Parameters
    ----------
    inner : float, optional
        Radius (normalised: 1 at the middle of the edge) of the central disk that holds the
        particle (default 0.5).
    outer_band : (float, float), optional
        ``(lo, hi)`` radii of the background annulus (default ``(0.8, 1.0)``).

    Notes
    -----
    A ratio with a zero denominator is ``inf`` (``NaN`` when both are zero), never an
    error; orderings put NaN last.  Used (with repulsion) by ASPIRE's "0.13.2" preset.
    """

    def __init__(self, inner=0.5, outer_band=(0.8, 1.0)):
        self.inner = check_float("inner", inner, min=0, min_inclusive=False)
        try:
            lo, hi = outer_band
        except (TypeError, ValueError):
            raise ValueError(f"outer_band must be a pair (lo, hi) of radii with "
                             f"0 <= lo < hi, got {outer_band!r}") from None
        lo = check_float("outer_band[0]", lo, min=0)
        hi = check_float("outer_band[1]", hi, min=0)
        if not lo < hi:
            raise ValueError(f"outer_band must be a pair (lo, hi) of radii with "
                             f"0 <= lo < hi, got {outer_band!r}")
        self.outer_band = (lo, hi)

    def _function(self, images):
        k, L = images.shape[0], images.shape[-1]
        inner, outer = _banded_masks(L, self.inner, *self.outer_band)
        if inner.sum() < 2 or outer.sum() < 2:
            raise ValueError(f"images of size {L} are too small for inner={self.inner} and "
                             f"outer_band={self.outer_band}: each region needs 2 pixels or "
                             f"more, got {int(inner.sum())} and {int(outer.sum())}")
        w = self.weights(L)
        flat = images.reshape(k, -1)
        if w is None:
            return _ratio(flat[:, inner.ravel()].var(axis=1),
                          flat[:, outer.ravel()].var(axis=1))
        w = w.ravel()
        num = _weighted_variance(flat[:, inner.ravel()], w[inner.ravel()])
        den = _weighted_variance(flat[:, outer.ravel()], w[outer.ravel()])
        return _ratio(num, den)


class BandpassImageQualityFunction(ImageQualityFunction):
    """Power in a band of spatial frequencies over the power outside it (DC excluded).

    With ``F = fft2(x - mean(x))`` (``x`` windowed by the weights of a weighting mixin, if
    any) and ``|k| = hypot(kx, ky)`` in cycles per pixel (0 .. 1/2 on the axes, up to
    ``sqrt(2)/2`` in the corners)::

        score = sum_{lo <= |k| <= hi} |F(k)|^2  /  sum_{|k| outside [lo, hi], k != 0} |F(k)|^2

    A class average whose members agree keeps the particle's low and middle frequencies
    (inside the band) while the residual noise of a poor average, white or
    interpolation-induced, spreads to high frequencies (outside it); a very low band edge
    ``lo`` keeps the slow background ramps and the overall blob shape out of the score.  A
    cosine ``cos(2 pi f . x)`` with ``lo <= |f| <= hi`` scores ``inf`` (no power outside),
    one outside the band scores 0; a sum ``a c_in + b c_out`` of two such cosines (on the
    FFT grid) scores ``(a / b)^2``.  Zero power everywhere gives NaN.

    Parameters
    ----------
    band : (float, float), optional
        ``(lo, hi)`` in cycles per pixel, ``0 <= lo < hi``, inclusive at both ends
        (default ``(0.02, 0.2)``: periods from 50 down to 5 pixels, where the signal of a
        particle filling a 64 to 256 pixel box sits after a typical low-pass).

    Notes
    -----
    Never implemented in ASPIRE; defined here.  The power is summed
    over the half-plane ``scipy.fft.rfft2`` with each bin counted with its conjugate twin,
    which equals the full-plane sum (Parseval).
    """

    def __init__(self, band=(0.02, 0.2)):
        try:
            lo, hi = band
        except (TypeError, ValueError):
            raise ValueError(f"band must be a pair (lo, hi) of spatial frequencies in "
                             f"cycles per pixel with 0 <= lo < hi, got {band!r}") from None
        lo = check_float("band[0]", lo, min=0)
        hi = check_float("band[1]", hi, min=0)
        if not lo < hi:
            raise ValueError(f"band must be a pair (lo, hi) of spatial frequencies in "
                             f"cycles per pixel with 0 <= lo < hi, got {band!r}")
        self.band = (lo, hi)

    def _function(self, images):
        k, L = images.shape[0], images.shape[-1]
        w = self.weights(L)
        if w is None:
            x = images - images.mean(axis=(1, 2), keepdims=True)
        else:
            m = (images.reshape(k, -1) @ w.ravel()) / w.sum()
            x = (images - m[:, None, None]) * w
        power = np.abs(scipy.fft.rfft2(x, workers=-1)) ** 2
        w_band, w_rest = _rfft_band_weights(L, *self.band)
        power = power.reshape(k, -1)
        return _ratio(power @ w_band.ravel(), power @ w_rest.ravel())


# -- pixel weights -----------------------------------------------------------------------------------
class WeightedImageQualityMixin:
    """Pixel weights ``w(r)`` for a quality function; mix it in front of the function.

    Subclasses define ``_weight_function(r)`` (a staticmethod of the normalised radius,
    ``r = 1`` at the middle of the edge) returning non-negative weights; :meth:`weights`
    evaluates it once per image size and caches the read-only (L, L) result.
    """

    @staticmethod
    def _weight_function(r):
        raise NotImplementedError("WeightedImageQualityMixin subclasses define "
                                  "_weight_function(r)")

    def weights(self, L):
        """Pixel weights ``_weight_function(r)``, (L, L), float64, cached per L, read-only."""
        return _pixel_weights(self._weight_function, int(L))


class RampWeightedImageQualityMixin(WeightedImageQualityMixin):
    """Ramp weights ``max(1 - r, 0)``: linear from 1 at the centre to 0 at the edge and 0 in
    the corners (clamped; an unclamped ramp would go negative beyond the edge)."""

    _weight_function = staticmethod(ramp_weights)


class BumpWeightedImageQualityMixin(WeightedImageQualityMixin):
    """Smooth bump weights ``exp(1 - 1 / (1 - r^2))`` for ``r < 1``, else 0 (1 at the centre,
    every derivative 0 at the edge)."""

    _weight_function = staticmethod(bump_weights)


class RampWeightedVarianceImageQualityFunction(RampWeightedImageQualityMixin,
                                               VarianceImageQualityFunction):
    """Weighted variance ``sum w (x - m_w)^2 / sum w`` with ramp weights ``max(1 - r, 0)``."""


class BumpWeightedVarianceImageQualityFunction(BumpWeightedImageQualityMixin,
                                               VarianceImageQualityFunction):
    """Weighted variance ``sum w (x - m_w)^2 / sum w`` with bump weights
    ``exp(1 - 1 / (1 - r^2))``, r < 1."""
