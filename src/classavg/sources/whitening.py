r"""Noise whitening: estimate the noise power spectrum from the particle-free background and
divide it out (:class:`WhitenedSource`, ``src.whiten()``).

Real micrograph noise is coloured: ice, detector and the thon-ring-free background put 2-4x
more power at low than at high spatial frequencies.  The steerable-PCA denoising, the
bispectrum distances and the alignment correlations all assume white noise; on coloured noise
they weight the noisy low frequencies as if they were clean.  Whitening first restores the
assumption [1]_ [2]_.

Estimate
--------
The background is every pixel at distance ``>= radius`` from the centre (default ``L / 2``,
the corners: :class:`~classavg.sources.transforms.BackgroundNormalizedSource`'s rule).  With
``m`` that mask and ``x_i`` an image minus its background mean, the noise autocorrelation at
lag ``d`` is estimated without bias from the pairs of background pixels ``d`` apart,

.. math::

    \hat R(d) = \frac{\sum_i \sum_p m(p) m(p+d)\, x_i(p)\, x_i(p+d)}
                     {N \sum_p m(p)\, m(p+d)},

both sums computed for every lag at once by zero-padded FFTs.  Assuming isotropic noise,
``R`` is averaged over rings of ``|d|`` up to ``max_lag`` (default ``L / 2``; the corners
still give thousands of pairs per lag ring and image), tapered to zero by a raised cosine,
laid out on the ``L x L`` grid and Fourier transformed: the power spectrum ``P(k)`` (ring
averaged, floored at 1 % of its mean).  Its resolution is about ``2 / max_lag`` cycles per
pixel: enough for the smooth spectra of ice and detectors, not for sharp lines.  The two
lowest rings (``|k| < 1.5 / L``) are not estimable: each image's background mean is removed
first (every image offset is arbitrary), which lowers ``R`` by the variance of that mean, a
near-constant that the transform puts at ``|k| <~ 1 / L``; they get the power of ring 2.

Filter
------
Image ``i`` of group ``g`` is multiplied in Fourier space by ``sqrt(mean(P_g) / P_g(k))``, so
its noise becomes white with the variance it had (the mean of ``P_g``).  Groups (``by=``, a
metadata column such as ``rlnOpticsGroup``) get a spectrum of their own when they hold at
least :data:`MIN_GROUP_IMAGES` images, the pooled spectrum otherwise.  The filter is applied
circularly on the whole box, like the phase flip; it is a Fourier multiplier outside the image
model, so CTF-aware averaging replays the chain without it
(:meth:`classavg.sources.chain.SourceChain.ctf_images`).

References
----------
.. [1] T. Bhamre, T. Zhang, A. Singer, "Denoising and covariance estimation of single particle
   cryo-EM images", J. Struct. Biol. 195, 72-81 (2016) (prewhitening before the covariance).
.. [2] S. H. W. Scheres, "RELION: implementation of a Bayesian approach to cryo-EM structure
   determination", J. Struct. Biol. 180, 519-530 (2012) (the per-group noise spectra ``sigma2``).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .._grid import disk_mask, radial_grid, rfft_rings
from .._validation import check_float, check_int
from .base import ImageSource, transform_method
from .transforms import DerivedSource

__all__ = ["WhitenedSource", "estimate_noise_psd", "MIN_GROUP_IMAGES"]

logger = logging.getLogger(__name__)

#: A group needs this many images for a spectrum of its own (else the pooled one is used).
MIN_GROUP_IMAGES = 200
#: Spectra are floored at this fraction of their mean (no division by a near-zero power).
PSD_FLOOR = 0.01

_AXES = (-2, -1)


def _lag_rings(L):
    """Ring ``round(|d|)`` of every lag of the (2L, 2L) zero-padded correlation grid."""
    d = np.fft.fftfreq(2 * L, 1.0 / (2 * L))
    return np.rint(np.hypot(d[:, None], d[None, :])).astype(np.int64)


def estimate_noise_psd(images, *, radius=None, max_lag=None):
    """Ring-averaged noise power spectrum of images from their background (module docstring).

    Parameters
    ----------
    images : ndarray, shape (k, L, L)
        Noisy images (any float dtype); only pixels at distance ``>= radius`` are used.
    radius : float, optional
        Particle radius in pixels (default ``L / 2``).
    max_lag : int, optional
        Largest autocorrelation lag used, pixels (default ``L // 2``).

    Returns
    -------
    ndarray, float64, shape (n_rings,)
        Power per ring ``round(|k| L)`` of :func:`classavg._grid.rfft_rings` (per pixel:
        white noise of variance s^2 gives s^2 on every ring).
    """
    x = np.asarray(images, dtype=np.float64)
    k, L = x.shape[0], x.shape[-1]
    radius = L / 2 if radius is None else radius
    max_lag = max(2, L // 2) if max_lag is None else max_lag
    m = (~disk_mask(L, float(radius))).astype(np.float64)
    bg = x[:, m > 0]
    x = (x - bg.mean(axis=1)[:, None, None]) * m
    pad = (2 * L, 2 * L)
    num = sfft.irfft2(np.sum(np.abs(sfft.rfft2(x, s=pad, axes=_AXES, workers=-1)) ** 2, 0),
                      s=pad, axes=_AXES)
    den = sfft.irfft2(np.abs(sfft.rfft2(m, s=pad)) ** 2, s=pad)
    rings = _lag_rings(L)
    use = (rings <= max_lag) & (den > 0.5)
    n_lag = max_lag + 1
    num_r = np.bincount(rings[use], weights=num[use], minlength=n_lag)
    den_r = np.bincount(rings[use], weights=den[use] * k, minlength=n_lag)
    R = num_r / np.maximum(den_r, 1e-300)                             # (n_lag,) per ring
    # Isotropic autocorrelation on the L x L grid, tapered to zero at max_lag.
    r = radial_grid(L)
    taper = 0.5 * (1 + np.cos(np.pi * np.clip(r / (max_lag + 0.5), 0, 1)))
    R2 = np.interp(r, np.arange(n_lag), R, right=0.0) * taper
    P = sfft.rfft2(sfft.ifftshift(R2), axes=_AXES).real                 # (L, L//2+1)
    ring, w = rfft_rings(L)
    n_rings = int(ring.max()) + 1
    psd = np.bincount(ring.ravel(), weights=(P * w).ravel(), minlength=n_rings) / \
        np.maximum(np.bincount(ring.ravel(), weights=w.ravel(), minlength=n_rings), 1e-300)
    psd[:2] = psd[2]                        # lowered by the removed means: not estimable
    return np.maximum(psd, PSD_FLOOR * max(psd.mean(), 1e-300))


@transform_method("whiten")
class WhitenedSource(DerivedSource):
    """Images with their noise power spectrum divided out (module docstring).

    The spectra are estimated once, on construction, from up to ``n_estimate`` images (a
    seeded sample per group); the filter is applied lazily to the images asked for.

    Parameters
    ----------
    parent : ImageSource
    radius : float, optional
        Particle radius in pixels: the background is outside it (default ``L / 2``).
    by : str, optional
        Metadata column whose values group the images for separate spectra (e.g.
        ``"rlnOpticsGroup"``; default None: one spectrum for all).  A column that is absent
        means one group.
    n_estimate : int, optional
        Images read per group for the estimate (default 2000).
    max_lag : int, optional
        Largest autocorrelation lag in pixels (default ``L // 2``).
    seed : int, optional
        Seed of the sample of images read for the estimate.

    Attributes
    ----------
    noise_psd : ndarray, shape (n_groups, n_rings)
        Per group, the estimated power per ring ``round(|k| L)``.
    groups : ndarray, shape (n_groups,)
        The group values (``[None]`` without ``by``).
    group_of : ndarray of int, shape (n,)
        Row of :attr:`noise_psd` of every image.
    """

    #: A Fourier filter outside the image model: CTF-aware averaging replays the chain
    #: without it (:meth:`~classavg.sources.chain.SourceChain.ctf_images`).
    model_filter = True

    def __init__(self, parent, radius=None, *, by=None, n_estimate=2000, max_lag=None, seed=0):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        L = parent.L
        self.radius = L / 2 if radius is None else check_float(
            "radius", radius, min=0, min_inclusive=False)
        if (~disk_mask(L, self.radius)).sum() < 8:
            raise ValueError(f"radius must leave at least 8 background pixels in a {L}x{L} "
                             f"box, got {radius!r}")
        self.max_lag = max(2, L // 2) if max_lag is None else check_int("max_lag", max_lag,
                                                                        min=1, max=L)
        self.n_estimate = check_int("n_estimate", n_estimate, min=10)
        self.by = by
        self.seed = seed
        super().__init__(parent)
        md = parent.metadata
        if by is not None and by in md.columns:
            values = md[by].to_numpy()
            groups, group_of = np.unique(values, return_inverse=True)
        else:
            groups, group_of = np.array([None], dtype=object), np.zeros(parent.n, np.int64)
        rng = np.random.default_rng(seed)
        pooled = None
        psd = []
        small = []
        for g in range(groups.size):
            members = np.flatnonzero(group_of == g)
            if members.size < MIN_GROUP_IMAGES and groups.size > 1:
                small.append(g)
                psd.append(None)
                continue
            psd.append(self._estimate(members, rng))
        if small:
            everyone = np.arange(parent.n)
            pooled = self._estimate(everyone, rng)
            logger.info("whitening: %d group(s) of %s with fewer than %d images use the "
                        "pooled spectrum", len(small), by, MIN_GROUP_IMAGES)
            psd = [pooled if p is None else p for p in psd]
        self.noise_psd = np.stack(psd)
        self.groups = groups
        self.group_of = group_of.astype(np.int64)
        ring, w = rfft_rings(L)
        P = self.noise_psd[:, ring]                                    # (G, L, L//2+1)
        # Relative to the mean power over the plane: the noise variance is kept.
        mean = (P * w).sum(axis=(1, 2)) / w.sum()
        self._filters = np.sqrt(mean[:, None, None] / P)
        logger.info("whitening: noise power low/high frequency ratio %s",
                    ", ".join(f"{p[1:L // 8 + 1].mean() / p[L // 4:L // 2].mean():.2f}"
                              for p in self.noise_psd))

    def _estimate(self, members, rng):
        pick = np.sort(rng.choice(members, min(members.size, self.n_estimate), replace=False))
        total = None
        for s in range(0, pick.size, 256):
            idx = pick[s:s + 256]
            part = estimate_noise_psd(self._parent.images[idx], radius=self.radius,
                                      max_lag=self.max_lag) * idx.size
            total = part if total is None else total + part
        return total / pick.size

    def _options(self):
        return {"radius": self.radius, "by": self.by, "n_estimate": self.n_estimate,
                "max_lag": self.max_lag, "seed": self.seed}

    def with_parent(self, parent):
        """The same filters over another parent (no new estimate)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        DerivedSource.__init__(out, parent)
        return out

    def _transform(self, batch, indices):
        f = sfft.rfft2(batch, axes=_AXES, workers=-1)
        f *= self._filters[self.group_of[indices]].astype(f.real.dtype, copy=False)
        return sfft.irfft2(f, s=batch.shape[-2:], axes=_AXES, workers=-1).astype(
            self.dtype, copy=False)

    def record(self):
        """For run records: options, groups and the spectra (power per ring)."""
        return {"radius": self.radius, "by": self.by, "max_lag": self.max_lag,
                "groups": [None if g is None else (g.item() if hasattr(g, "item") else g)
                           for g in self.groups],
                "noise_psd": np.round(self.noise_psd, 6).tolist()}
