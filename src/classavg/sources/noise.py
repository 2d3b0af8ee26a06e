r"""Noise models of :class:`~classavg.sources.simulation.Simulation`: white or coloured by a
radial power spectrum.

Model
-----
The noise of image ``i`` is ``n_i = F^{-1}[ H(k) F[w_i] ]`` with ``w_i`` white Gaussian noise of
variance ``sigma^2`` (one independent stream per image, so image ``i`` is the same in any batch)
and the filter

.. math::

    H(k) = \sqrt{P(|k|) / \overline{P}}, \qquad
    \overline{P} = \frac{1}{L^2} \sum_{k \in \text{DFT grid}} P(|k|),

``k`` in cycles per pixel.  The normalisation keeps the pixel variance of ``n_i`` at ``sigma^2``
whatever the shape of ``P``, so the SNR keeps its meaning: ``snr = signal variance / sigma^2``
(total noise variance per pixel).  The expected periodogram ``|F[n_i](k)|^2 / L^2`` of the noise
is ``sigma^2 P(|k|) / mean(P)`` (:func:`requested_psd`).

Spectra (the ``noise`` argument)
--------------------------------
``"white"``
    ``P = 1``.
``"ice"``
    :func:`ice_psd` with its defaults: ``P(k) = 1 + a exp(-(k / k0)^2)``, ``a = 2``,
    ``k0 = 0.08`` cycles/pixel: low frequencies ``1 + a = 3`` times noisier than high ones, as
    ice (thickness variations, low-resolution structure) and detectors (counting, MTF) give in
    real micrographs.  Other parameters: ``functools.partial(ice_psd, amplitude=..., k0=...)``.
a callable
    ``P(k)`` of an array of frequencies (cycles/pixel), positive.
an array
    shape ``(m,)``: ``P`` at ``k_j = j / L`` (the rings ``round(|k| L)`` of
    :func:`classavg._grid.rfft_rings`, the layout of
    :func:`~classavg.sources.whitening.estimate_noise_psd`); shape ``(m, 2)``: columns ``k``
    (cycles/pixel, increasing) and ``P``.  Linear interpolation in between, the end values
    beyond.
a path
    A ``.npy`` file or a text file (whitespace or comma separated, ``#`` comments) holding such
    an array.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import scipy.fft as sfft

from .._errors import ParameterError

from .._grid import rfft_rings

__all__ = ["ICE_AMPLITUDE", "ICE_K0", "ice_psd", "radial_psd", "load_psd", "resolve_noise",
           "noise_filter", "requested_psd", "noise_images"]

#: Default excess low-frequency power ``a`` of :func:`ice_psd` (``P(0) = 1 + a``).
ICE_AMPLITUDE = 2.0
#: Default width ``k0`` (cycles/pixel) of the low-frequency excess of :func:`ice_psd`.
ICE_K0 = 0.08


def ice_psd(k, *, amplitude=ICE_AMPLITUDE, k0=ICE_K0):
    """Ice/detector-like spectrum ``1 + amplitude * exp(-(k / k0)^2)`` (``k`` cycles/pixel)."""
    k = np.asarray(k, dtype=np.float64)
    return 1.0 + amplitude * np.exp(-(k / k0) ** 2)


def radial_psd(values):
    """A callable ``P(k)`` from a radial spectrum array (module docstring: ``(m,)`` or ``(m, 2)``).

    The ``(m,)`` form is sampled at ``k_j = j / L``; since ``L`` is only known when the filter
    is built, it returns a callable with an ``L`` keyword.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 2 and a.shape[0] >= 2:
        k, p = a[:, 0], a[:, 1]
        if np.any(np.diff(k) <= 0):
            raise ParameterError("noise PSD frequencies (column 0) must increase, got "
                             f"{k[:5]!r}...")
    elif a.ndim == 1 and a.size >= 2:
        k, p = None, a
    else:
        raise ParameterError("noise PSD must have shape (m,) or (m, 2) with m >= 2, got shape "
                         f"{a.shape}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ParameterError("noise PSD values must be finite and positive")

    def psd(freq, L):
        kk = np.arange(p.size) / L if k is None else k
        return np.interp(freq, kk, p)

    psd.needs_L = True
    return psd


def load_psd(path):
    """Read a radial spectrum (``.npy`` or text, module docstring) as for :func:`radial_psd`."""
    fname = os.fspath(path)
    if not os.path.isfile(fname):
        raise ParameterError(f"noise PSD file {fname!r} does not exist")
    try:
        if fname.endswith(".npy"):
            a = np.load(fname, allow_pickle=False)
        else:
            a = np.loadtxt(fname, delimiter="," if fname.endswith(".csv") else None, ndmin=1)
    except (ValueError, OSError) as exc:
        raise ParameterError(f"noise PSD file {fname!r} is not a readable array of numbers: "
                         f"{exc}") from exc
    try:
        return radial_psd(a)
    except ValueError as exc:
        raise ParameterError(f"noise PSD file {fname!r}: {exc}") from None


def resolve_noise(noise):
    """``(psd, description)`` of a ``noise`` argument: ``psd`` None for white noise."""
    if isinstance(noise, str) and noise in ("white", "ice"):
        return (None, "white") if noise == "white" else (ice_psd, "ice")
    if isinstance(noise, (str, os.PathLike)):
        return load_psd(noise), f"psd file {os.fspath(noise)}"
    if isinstance(noise, functools.partial) and noise.func is ice_psd:
        kw = {"amplitude": ICE_AMPLITUDE, "k0": ICE_K0, **noise.keywords}
        return noise, f"ice(amplitude={kw['amplitude']:g}, k0={kw['k0']:g})"
    if callable(noise):
        return noise, getattr(noise, "__name__", type(noise).__name__)
    if isinstance(noise, (list, tuple, np.ndarray)):
        return radial_psd(noise), "radial psd array"
    raise TypeError("noise must be 'white', 'ice', a callable P(k), a radial PSD array or a "
                    f"file path, got {type(noise).__name__}")


def _full_grid_k(L):
    f = np.fft.fftfreq(L)
    return np.hypot(f[:, None], f[None, :])


def _evaluate(psd, k, L):
    p = psd(k, L=L) if getattr(psd, "needs_L", False) else psd(k)
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), k.shape)
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ParameterError("noise PSD must be finite and positive at every frequency")
    return p


def noise_filter(psd, L):
    """Amplitude filter ``H = sqrt(P / mean P)`` in the rfft layout, (L, L // 2 + 1); None for
    white noise (``psd`` None)."""
    if psd is None:
        return None
    full = _evaluate(psd, _full_grid_k(L), L)
    return np.sqrt(full / full.mean())[:, :L // 2 + 1]


def requested_psd(psd, L, variance):
    """Expected ring-averaged periodogram ``|F[n](k)|^2 / L^2`` of the noise, per ring
    ``round(|k| L)`` of :func:`classavg._grid.rfft_rings`, (n_rings,), for a total variance
    ``variance``."""
    ring, w = rfft_rings(L)
    h = np.ones(ring.shape) if psd is None else noise_filter(psd, L) ** 2
    n_rings = int(ring.max()) + 1
    num = np.bincount(ring.ravel(), weights=(h * w).ravel(), minlength=n_rings)
    den = np.bincount(ring.ravel(), weights=w.ravel(), minlength=n_rings)
    return variance * num / np.maximum(den, 1e-300)


def noise_images(seed, stream, indices, L, sd, filt, dtype):
    """Noise of images ``indices``, (k, L, L) of ``dtype``: standard normal draws of the stream
    ``SeedSequence(seed, spawn_key=(stream, i))`` per image, filtered by ``filt`` (None: white),
    times ``sd``."""
    out = np.empty((len(indices), L, L), dtype=dtype)
    for j, i in enumerate(indices):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, int(i))))
        rng.standard_normal(out=out[j], dtype=dtype)
    if filt is not None and len(indices):
        f = sfft.rfft2(out, axes=(-2, -1), workers=-1)
        f *= filt.astype(out.dtype)
        out = sfft.irfft2(f, s=(L, L), axes=(-2, -1), workers=-1).astype(dtype, copy=False)
    out *= np.asarray(sd, dtype=out.dtype)
    return out
