"""Image stackers: reduce a stack of aligned class members to one average.

An :class:`ImageStacker` reduces one axis of an array with an element-wise (per pixel, or per
coefficient) statistic:

* ``stacker(stack)`` reduces axis 0 of an image stack ``(m, L, L)`` or a coefficient stack
  ``(m, ncoef)``;
* ``stacker(batch, axis=1)`` or ``stacker.stack(batch)`` reduces the member axis of a batch of
  classes ``(k, m, ...)`` to ``(k, ...)`` in one vectorised call.

Complex stacks (Fourier-Bessel coefficients) are reduced component-wise: the statistic is
applied to the real and the imaginary parts separately.

Pixels or coefficients?
-----------------------
The mean is linear, so the mean of the aligned pixel images equals the image of the mean of
their coefficients; the averagers compute it on coefficients (cheaper, see
:mod:`classavg.averaging._transform`).  The robust stackers (median, sigma rejection,
winsorized) are not linear: a statistic on coefficients is not the statistic on pixels.  They
act on **pixels** by default (``domain="pixels"``), where a planted outlier (a hot pixel, an ice
spot, a wrong member) stays local; pass ``domain="coefficients"`` to run them on the
Fourier-Bessel coefficients instead (much cheaper, since no member has to be synthesised as an
image, and still rejects whole outlier images).  The ``domain`` attribute is only a hint to
the averagers; calling a stacker on any array reduces that array.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np

from .._validation import check_choice, check_float, check_int

__all__ = [
    "ImageStacker",
    "MeanImageStacker",
    "MedianImageStacker",
    "SigmaRejectionImageStacker",
    "WinsorizedImageStacker",
]

logger = logging.getLogger(__name__)

_DOMAINS = ("pixels", "coefficients")


class ImageStacker(ABC):
    """Reduce a stack of aligned images (or coefficient vectors) along one axis.

    Subclasses implement :meth:`_reduce` for real arrays; complex arrays are reduced
    component-wise.

    Attributes
    ----------
    linear : bool
        True when the statistic is linear (the mean): averagers may then stack in any domain.
    domain : {"pixels", "coefficients"}
        Where an averager applies a non-linear stacker (ignored when ``linear``).
    """

    linear = False
    domain = "pixels"

    def __call__(self, stack, axis=0):
        """Reduce ``stack`` along ``axis``.

        Parameters
        ----------
        stack : array_like, shape (..., m, ...)
            Real or complex; ``m = stack.shape[axis] >= 1`` members.
        axis : int, optional
            The member axis (default 0).

        Returns
        -------
        ndarray
            ``stack`` with ``axis`` removed; floating dtype of the input (float64 for
            integer input).
        """
        x = np.asarray(stack)
        if x.ndim < 1:
            raise ValueError(f"stack must have at least one dimension, got shape {x.shape}")
        axis = int(axis)
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis must be in [{-x.ndim}, {x.ndim}), got {axis!r}")
        if x.shape[axis] < 1:
            raise ValueError(f"stack must hold at least one member along axis {axis}, "
                             f"got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.inexact):
            x = x.astype(np.float64)
        x = np.moveaxis(x, axis, 0)
        if np.iscomplexobj(x):
            out = self._reduce(x.real) + 1j * self._reduce(x.imag)
        else:
            out = self._reduce(x)
        return np.asarray(out, dtype=x.dtype)

    def stack(self, batch):
        """Reduce a batch of classes ``(k, m, ...)`` over its member axis -> ``(k, ...)``."""
        return self(batch, axis=1)

    @abstractmethod
    def _reduce(self, x):
        """Reduce axis 0 of the real array ``x`` (m, ...) -> (...)."""

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_domain(domain):
    return check_choice("domain", domain, _DOMAINS)


class MeanImageStacker(ImageStacker):
    """Plain mean of the members (linear: the same on pixels and on coefficients)."""

    linear = True
    domain = "coefficients"

    def _reduce(self, x):
        return x.mean(axis=0)


class MedianImageStacker(ImageStacker):
    """Element-wise median of the members.

    Parameters
    ----------
    domain : {"pixels", "coefficients"}, optional
        Where an averager applies it (default "pixels").
    """

    def __init__(self, *, domain="pixels"):
        self.domain = _check_domain(domain)

    def _reduce(self, x):
        return np.median(x, axis=0)

    def __repr__(self):
        return f"MedianImageStacker(domain={self.domain!r})"


class SigmaRejectionImageStacker(ImageStacker):
    r"""Mean of the members after rejecting, element-wise, values far from the bulk.

    For each pixel (or coefficient component), with :math:`\mu` and :math:`s` the mean and
    the population standard deviation of the values currently kept:

    * ``method="gaussian"``: reject values with :math:`|x - \mu| > \sigma s`;
    * ``method="FWHM"``: model the per-pixel values as a Gaussian :math:`N(\mu, s^2)` and
      reject values where its density is below **half** its maximum, i.e.
      :math:`|x - \mu| > \sqrt{2 \ln 2}\, s \approx 1.177\, s` (outside the full width at half
      maximum);
    * ``method="FWTM"``: the same at a **tenth** of the maximum,
      :math:`|x - \mu| > \sqrt{2 \ln 10}\, s \approx 2.146\, s` (outside the full width at
      tenth maximum).

    ``sigma`` is used by the Gaussian method only.  Rejection is repeated with the statistics
    of the kept values until nothing changes or ``maxiters`` passes are done (as in
    astropy's ``sigma_clip``); the result is the mean of the kept values.  A pixel whose
    values would all be rejected (possible only for small thresholds) falls back to the plain
    mean.  Values at exactly the threshold are kept.

    Parameters
    ----------
    sigma : float, optional
        Rejection threshold in standard deviations, > 0 (default 3).
    method : {"gaussian", "FWHM", "FWTM"}, optional
        Rejection rule (default "gaussian").
    maxiters : int, optional
        Maximum number of rejection passes, >= 1 (default 5).
    domain : {"pixels", "coefficients"}, optional
        Where an averager applies it (default "pixels").
    """

    _THRESHOLDS = {"FWHM": float(np.sqrt(2 * np.log(2))), "FWTM": float(np.sqrt(2 * np.log(10)))}

    def __init__(self, sigma=3.0, *, method="gaussian", maxiters=5, domain="pixels"):
        self.sigma = check_float("sigma", sigma, min=0.0, min_inclusive=False)
        self.method = check_choice("method", method, ("gaussian", "FWHM", "FWTM"))
        self.maxiters = check_int("maxiters", maxiters, min=1)
        self.domain = _check_domain(domain)

    @property
    def threshold(self):
        """Rejection threshold in standard deviations for the chosen method."""
        return self.sigma if self.method == "gaussian" else self._THRESHOLDS[self.method]

    def _reduce(self, x):
        t = self.threshold
        keep = np.ones(x.shape, dtype=bool)
        for _ in range(self.maxiters):
            n = keep.sum(axis=0)
            nz = np.maximum(n, 1)
            mu = np.where(keep, x, 0).sum(axis=0) / nz
            d = x - mu
            var = np.where(keep, d * d, 0).sum(axis=0) / nz
            # A tiny relative slack keeps values that sit on a zero-spread bulk.
            tol = t * np.sqrt(var) + 1e-6 * np.abs(mu) + np.finfo(x.dtype).tiny
            new = np.abs(d) <= tol
            new &= keep
            if np.array_equal(new, keep):
                break
            keep = new
        n = keep.sum(axis=0)
        mean_kept = np.where(keep, x, 0).sum(axis=0) / np.maximum(n, 1)
        return np.where(n > 0, mean_kept, x.mean(axis=0))

    def __repr__(self):
        return (f"SigmaRejectionImageStacker(sigma={self.sigma:g}, method={self.method!r}, "
                f"maxiters={self.maxiters}, domain={self.domain!r})")


class WinsorizedImageStacker(ImageStacker):
    """Winsorized mean: clip the lowest and highest fraction of values, then average.

    For ``m`` members and ``c = floor(percentile * m)``, the per-pixel values are sorted;
    the ``c`` smallest are replaced by the ``(c+1)``-th smallest and the ``c`` largest by the
    ``(c+1)``-th largest, and the mean is taken (as ``scipy.stats.mstats.winsorize`` with
    ``limits=(percentile, percentile)``).

    Parameters
    ----------
    percentile : float, optional
        Fraction clipped at each end, in [0, 0.5) (default 0.1, i.e. 10 % per side; a
        fraction, not a percentage).
    domain : {"pixels", "coefficients"}, optional
        Where an averager applies it (default "pixels").
    """

    def __init__(self, percentile=0.1, *, domain="pixels"):
        p = check_float("percentile", percentile, min=0.0)
        if p >= 0.5:
            raise ValueError(f"percentile must be a fraction in [0, 0.5), got {percentile!r}")
        self.percentile = p
        self.domain = _check_domain(domain)

    def _reduce(self, x):
        m = x.shape[0]
        c = int(np.floor(self.percentile * m + 1e-9))
        if c == 0:
            return x.mean(axis=0)
        s = np.sort(x, axis=0)
        inner = s[c:m - c].sum(axis=0)
        return (inner + c * s[c] + c * s[m - 1 - c]) / m

    def __repr__(self):
        return f"WinsorizedImageStacker(percentile={self.percentile:g}, domain={self.domain!r})"
