r"""Particle centring: translate every image so that its particle sits on the box centre
(:class:`CenteredSource`, ``src.center()``).

Rotation-invariant features are not translation invariant: a particle picked 3 px off centre
in a 64 px box changes its steerable coefficients as much as a different view does.  On the
shipped EMD-11007 map (n = 10,000, 64 px, CTF, SNR 1/8) picking offsets of up to 3 px take
the re-ranked neighbours from 88 % to 46 % within 10 degrees; centring first brings them back
to 79 % (BENCHMARKS.md, "Centring").  Picked particles are never exactly centred, so the
classifier should see centred images.

Method
------
Each image is matched against one rotationally symmetric reference ``r``: the ring average of
the CTF-weighted mean of the (currently centred) images.  A rotationally symmetric reference
makes the estimate rotation equivariant: two images of one view, rotated in-plane, get centres
that differ by exactly that rotation, so the centred images of one view agree up to an
in-plane rotation whatever the particle's shape (the centre found is a property of the view,
not necessarily the projected 3D centre).  With ``F_i`` the Fourier transform of image ``i``,
``h_i`` its effective CTF (``|CTF|`` for phase-flipped images, 1 without CTF) and ``t_i`` its
current translation, the reference is

.. math::

    R = \mathcal{R}\Big[\frac{\sum_i h_i F_i e^{-2\pi i k \cdot t_i}}
                            {\sum_i h_i^2 + \epsilon}\Big],

where :math:`\mathcal{R}` averages over rings about the box centre and ``epsilon`` is 5 % of
the mean of the denominator (a Wiener-like floor at the CTF zeros).  The offset of image ``i``
is the peak of the cross-correlation ``c_i(t) = sum_x y_i(x) (h_i * r)(x - t)`` (the matched
filter of the CTF-modulated reference, by FFT) within ``max_shift`` pixels, refined to
sub-pixel by a parabola through the peak and its two neighbours along each axis.  The image
is translated by ``-t`` (a Fourier phase ramp, circular like the other Fourier steps).
The reference is estimated on a random subset of ``fit_size`` images, ``n_iter`` times
(each pass re-centres the subset and averages again); every image is then matched once, a
batch at a time, when its images are first asked for.

Outputs and averaging
---------------------
:attr:`CenteredSource.offsets` adds the translation to the parent's offsets (the particle
then sits ``parent offset + shift`` from where it was picked), and
:meth:`~classavg.sources.chain.SourceChain.translations` gives the translation of the whole
chain, which the outputs add to the averager's shifts.  Centring is part of the image model
(not a filter): CTF-aware averaging replays it on the unflipped images with the *same*
translations.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .._grid import radial_grid
from .._validation import check_float, check_int, check_random_state
from .base import ImageSource, transform_method
from .chain import resolve_chain
from .ctf import evaluate_ctf
from .transforms import DerivedSource

__all__ = ["CenteredSource", "ring_average"]

logger = logging.getLogger(__name__)

_AXES = (-2, -1)
#: Floor of the CTF-weighted mean's denominator, as a fraction of its mean.
WIENER_FLOOR = 0.05


def ring_average(images):
    """Average of each image over rings about the centre pixel ``(L // 2, L // 2)``.

    Linear interpolation between integer radii: each pixel contributes to its two nearest
    rings with weights ``1 - f`` and ``f`` (``f`` the fractional radius), and the profile is
    read back at every pixel's radius the same way.

    Parameters
    ----------
    images : ndarray, shape (..., L, L)

    Returns
    -------
    ndarray, shape (..., L, L), float64
        Rotationally symmetric images with the rings' means.
    """
    images = np.asarray(images, dtype=np.float64)
    L = images.shape[-1]
    r = radial_grid(L).ravel()
    i0 = np.floor(r).astype(np.int64)
    f = r - i0
    nr = int(i0.max()) + 2
    # (L^2, nr) interpolation matrix: a profile p gives pixel values A @ p, a ring sum A.T @ x.
    A = np.zeros((L * L, nr))
    A[np.arange(L * L), i0] = 1 - f
    A[np.arange(L * L), i0 + 1] += f
    flat = images.reshape(-1, L * L)
    prof = (flat @ A) / np.maximum(A.sum(axis=0), 1e-12)
    return (prof @ A.T).reshape(images.shape)


class _ShiftTable:
    """Lazily estimated translations of every image of one source (shared by replays)."""

    def __init__(self, source, reference_ft, max_shift, flipped):
        self.source = source                  # the images matched (the centred source's parent)
        self.reference_ft = reference_ft      # rfft2 of the ring-averaged reference
        self.max_shift = max_shift
        self.flipped = flipped
        self.shifts = np.full((source.n, 2), np.nan)

    def get(self, indices, batch=None):
        """Translations (x, y) in pixels of ``indices``; matches the images not yet done
        (``batch``: their parent images when already loaded, in the order of ``indices``)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        todo = np.isnan(self.shifts[idx, 0])
        if np.any(todo):
            sub = idx[todo]
            imgs = batch[todo] if batch is not None else self.source.images[sub]
            self.shifts[sub] = _match(imgs, _effective_ctf(self.source, sub, self.flipped),
                                      self.reference_ft, self.max_shift)
        return self.shifts[idx]


@transform_method("center")
class CenteredSource(DerivedSource):
    """Images translated so that their particles sit on the box centre.

    See the module documentation for the method.

    Parameters
    ----------
    parent : ImageSource
        Background-normalised images (phase-flipped or not: the CTF is taken into account).
    max_shift : float, optional
        Largest translation searched, in pixels (default ``L / 8``).
    n_iter : int, optional
        Reference refinements on the fit subset (default 2).
    fit_size : int, optional
        Images (a random subset) the reference is estimated from (default 2000).
    seed : int, optional
        Seed of the subset choice (default 0).
    phase_flipped : {"auto", True, False}, optional
        Whether the parent's images are phase flipped (their CTF is then ``|CTF|``); "auto"
        reads the source chain (:func:`~classavg.sources.chain.resolve_chain`).

    Attributes
    ----------
    reference : ndarray, shape (L, L)
        The ring-averaged reference (real space, centred on ``L // 2``).
    """

    def __init__(self, parent, *, max_shift=None, n_iter=2, fit_size=2000, seed=0,
                 phase_flipped="auto", batch_size=1024, _table=None):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        super().__init__(parent)
        L = parent.L
        self.max_shift = L / 8 if max_shift is None else check_float(
            "max_shift", max_shift, min=0.0, max=L / 2)
        self.n_iter = check_int("n_iter", n_iter, min=1)
        self.fit_size = check_int("fit_size", fit_size, min=1)
        check_random_state(seed)
        self.seed = seed
        self.batch_size = check_int("batch_size", batch_size, min=1)
        if phase_flipped == "auto":
            phase_flipped = resolve_chain(parent).phase_flipped
        elif phase_flipped not in (True, False):
            raise ValueError(f"phase_flipped must be 'auto', True or False, got "
                             f"{phase_flipped!r}")
        self.phase_flipped = bool(phase_flipped)
        if _table is None:
            _table = self._fit()
        self._table = _table

    @property
    def reference(self):
        return sfft.irfft2(self._table.reference_ft, s=(self.L, self.L))

    @property
    def shifts(self) -> np.ndarray:
        """Translation (x, y) in pixels applied to every image, shape (n, 2)."""
        return np.concatenate([self._table.get(np.arange(s, min(s + self.batch_size, self.n)))
                               for s in range(0, self.n, self.batch_size)])

    @property
    def offsets(self) -> np.ndarray:
        return self._parent.offsets + self.shifts

    def _fit(self):
        src, L = self._parent, self.L
        rng = np.random.default_rng(self.seed)
        n = src.n
        fit = np.sort(rng.choice(n, self.fit_size, replace=False)) if n > self.fit_size \
            else np.arange(n)
        shifts = np.zeros((fit.size, 2))
        for it in range(self.n_iter + 1):
            num = np.zeros((L, L // 2 + 1), np.complex128)
            den = np.zeros((L, L // 2 + 1))
            for s in range(0, fit.size, self.batch_size):
                idx = fit[s:s + self.batch_size]
                h = _effective_ctf(src, idx, self.phase_flipped)
                f = sfft.rfft2(src.images[idx], axes=_AXES, workers=-1)
                num += (h * f * _phase_ramp(L, shifts[s:s + idx.size])).sum(axis=0)
                den += (h * h).sum(axis=0)
            mean = sfft.irfft2(num / (den + WIENER_FLOOR * den.mean()), s=(L, L))
            ref_ft = sfft.rfft2(ring_average(mean))
            if it == self.n_iter:
                break
            for s in range(0, fit.size, self.batch_size):
                idx = fit[s:s + self.batch_size]
                shifts[s:s + idx.size] = _match(src.images[idx],
                                                _effective_ctf(src, idx, self.phase_flipped),
                                                ref_ft, self.max_shift)
        logger.info("centring: reference from %d images, %d passes; subset translations "
                    "%.2f px rms", fit.size, self.n_iter, float(np.sqrt((shifts ** 2).sum(1)
                                                                        .mean())))
        return _ShiftTable(src, ref_ft, self.max_shift, self.phase_flipped)

    def with_parent(self, parent):
        # The same translations (estimated on this source's parent), e.g. on the unflipped
        # images of CTF-aware averaging.
        return type(self)(parent, **self._options(), _table=self._table)

    def _options(self):
        return {"max_shift": self.max_shift, "n_iter": self.n_iter, "fit_size": self.fit_size,
                "seed": self.seed, "phase_flipped": self.phase_flipped,
                "batch_size": self.batch_size}

    def _images(self, indices):
        batch = np.asarray(self._parent.images[indices], dtype=self.dtype)
        own = self._table.source is self._parent
        t = self._table.get(indices, batch if own else None)
        f = sfft.rfft2(batch, axes=_AXES, workers=-1) * _phase_ramp(self.L, t)
        return sfft.irfft2(f, s=(self.L, self.L), axes=_AXES, workers=-1).astype(
            self.dtype, copy=False)

    def record(self):
        t = self.shifts
        return {"shift_rms_px": float(np.sqrt((t ** 2).sum(axis=1).mean())),
                "shift_max_px": float(np.hypot(t[:, 0], t[:, 1]).max())}

    def __repr__(self):
        return (f"CenteredSource({self._parent!r}, max_shift={self.max_shift:g}, "
                f"n_iter={self.n_iter})")


def _phase_ramp(L, shifts):
    """(k, L, L // 2 + 1) Fourier factors translating images by ``shifts`` (x, y) pixels."""
    ky = np.fft.fftfreq(L)[:, None]
    kx = np.fft.rfftfreq(L)[None, :]
    t = np.asarray(shifts, dtype=np.float64)
    # separable: two 1-D exponentials per image and one outer product, not L^2 exponentials
    return (np.exp(-2j * np.pi * ky[None] * t[:, 1, None, None])
            * np.exp(-2j * np.pi * kx[None] * t[:, 0, None, None]))


def _effective_ctf(src, indices, flipped):
    """(k, L, L // 2 + 1) CTF of the images in rfft2 layout (``|CTF|`` when flipped; ones
    without CTF parameters)."""
    L = src.L
    if not src.has_ctf:
        return np.ones((1, L, L // 2 + 1))
    ctf = evaluate_ctf(L, src.pixel_size, **src.ctf_params(indices))
    h = sfft.ifftshift(ctf, axes=_AXES)[..., :L // 2 + 1]
    return np.abs(h) if flipped else h


def _match(images, h, reference_ft, max_shift):
    """Translations (x, y) that centre ``images`` on the reference (see the module docs)."""
    images = np.asarray(images)
    k, L = images.shape[0], images.shape[-1]
    f = sfft.rfft2(images, axes=_AXES, workers=-1)
    cc = sfft.irfft2(f * np.conj(h * reference_ft), s=(L, L), axes=_AXES, workers=-1)
    lag = np.fft.fftfreq(L, 1.0 / L)
    inside = np.hypot(lag[:, None], lag[None, :]) <= max_shift
    peak = np.where(inside, cc, -np.inf).reshape(k, -1).argmax(axis=1)
    iy, ix = np.unravel_index(peak, (L, L))
    rows = np.arange(k)
    c0 = cc[rows, iy, ix]

    def refine(minus, plus):
        curv = minus - 2 * c0 + plus
        safe = np.where(curv < 0, curv, -1.0)
        return np.where(curv < 0, 0.5 * (minus - plus) / safe, 0.0).clip(-0.5, 0.5)

    dy = refine(cc[rows, (iy - 1) % L, ix], cc[rows, (iy + 1) % L, ix])
    dx = refine(cc[rows, iy, (ix - 1) % L], cc[rows, iy, (ix + 1) % L])
    # The particle sits at lag t from the centre; translating by -t centres it.
    return -np.stack([lag[ix] + dx, lag[iy] + dy], axis=1)
