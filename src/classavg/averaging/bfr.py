r"""Brute-force rotational alignment in the steerable Fourier-Bessel basis (BFR).

Correlation over all rotations at once
--------------------------------------
Let ``a`` be the Fourier-Bessel coefficients of the reference and ``b`` those of a member
(conjugated when the member is mirrored).  Rotating the member counter-clockwise by ``alpha``
multiplies ``b_kq`` by ``exp(-i k alpha)``, and the pixel inner product of two real images is
``Re sum_kq w_k conj(a_kq) b_kq`` (``w_0 = 1``, ``w_k = 2`` for k > 0; negative ``k`` folded
in).  Hence the correlation of the rotated member with the reference is the trigonometric
polynomial

.. math::

    c(\alpha) = \mathrm{Re} \sum_{k=0}^{k_{max}} h_k e^{-i k \alpha},
    \qquad h_k = w_k \sum_q \overline{a_{kq}}\, b_{kq},

and its values on the grid ``alpha_n = 2 pi n / N`` are one inverse real FFT of ``conj(h)``
(length ``N = n_angles``, ``h`` folded modulo ``N`` when ``N <= 2 kmax``).  The best grid angle
is refined to sub-step accuracy by Newton steps on ``c`` (exact derivatives
``c' = Re sum -i k h_k e^{-i k alpha}``, ``c'' = Re sum -k^2 h_k e^{-i k alpha}``), each step
kept within one grid step.  Everything is vectorised over all members of a batch of classes.

The score of a member is the normalised correlation ``c(alpha) / (||a|| ||b||)`` (pixel inner
product over the disk, without mean subtraction), in [-1, 1].

Noisy data: with ``snr_weighting`` the reference coefficients are first multiplied by the
spectral SNR weights ``S / (S + N)`` of the batch (a Wiener filter estimated from the class
members' coefficient power per radial frequency and the noise variance in the image corners),
so that frequencies without signal do not dominate the correlation.

References
----------
.. [1] Z. Zhao, A. Singer, "Rotationally invariant image representation for viewing direction
   classification in cryo-EM", J. Struct. Biol. 186, 153-166 (2014) (rotational alignment of
   class members in a steerable basis).
.. [2] P. A. Penczek, M. Radermacher, J. Frank, "Three-dimensional reconstruction of single
   particles embedded in ice", Ultramicroscopy 40, 33-53 (1992) (brute-force alignment).
"""

from __future__ import annotations

import logging

import numpy as np

from .._backend import array_module, fft, namespace_of, to_device, to_host
from .._validation import check_bool, check_int
from .base import AligningAverager2D

__all__ = ["BFRAverager2D"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Rotational correlation helpers (shared with BFSR)
# ---------------------------------------------------------------------------------------------
def correlation_spectrum(a, b, basis):
    """``h_k = w_k sum_q conj(a_kq) b_kq``, broadcasting over leading axes.

    Parameters
    ----------
    a, b : ndarray, complex, shape (..., count)
        Fourier-Bessel coefficients (reference, member): numpy arrays, or CuPy arrays on the
        GPU (the result is then one too).
    basis : FourierBesselBasis2D

    Returns
    -------
    ndarray, complex, shape (..., kmax + 1)
    """
    xp = namespace_of(a)
    prod = xp.conj(a) * b
    if xp is np:
        starts = np.array([s.start for s in basis.k_slices])
        h = np.add.reduceat(prod, starts, axis=-1)
    else:
        # One reduction per angular frequency (ufunc.reduceat is numpy-only).
        h = xp.stack([prod[..., s].sum(axis=-1) for s in basis.k_slices], axis=-1)
    h[..., 1:] *= 2
    return h


def grid_correlation(h, n_angles):
    """``c(2 pi n / N)`` for n = 0..N-1 from the spectrum ``h`` (..., K) -> real (..., N).

    ``h`` may be a CuPy array (the FFT then runs on the GPU and the result stays there).
    """
    xp = namespace_of(h)
    K = h.shape[-1]
    N = n_angles
    if K - 1 < (N + 1) // 2 and N >= 2:
        # Re sum_k h_k e^{-2 pi i k n / N} = (N/2) irfft(X), X_0 = 2 Re h_0, X_k = conj(h_k).
        X = xp.zeros(h.shape[:-1] + (N // 2 + 1,), dtype=h.dtype)
        X[..., :K] = xp.conj(h)
        X[..., 0] = 2 * h[..., 0].real
        X *= N / 2
        return fft("irfft", X, n=N, axis=-1)
    pad = -K % N
    hf = xp.concatenate([h, xp.zeros(h.shape[:-1] + (pad,), h.dtype)], axis=-1)
    hf = hf.reshape(h.shape[:-1] + (-1, N)).sum(axis=-2)        # fold k modulo N
    return fft("fft", hf, axis=-1).real


def _exp_table(alpha, K, dtype=np.complex128):
    """``exp(-i k alpha)`` for k = 0..K-1, shape alpha.shape + (K,), by repeated products
    (one complex exponential per angle; rounding error ~ K * eps)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    e1 = np.exp(-1j * alpha)
    E = np.empty(alpha.shape + (K,), dtype=np.complex128)
    E[..., 0] = 1.0
    if K > 1:
        E[..., 1:] = e1[..., None]
        np.cumprod(E[..., 1:], axis=-1, out=E[..., 1:])
    return E.astype(dtype, copy=False)


def trig_eval(h, alpha, derivatives=0):
    """``c(alpha) = Re sum_k h_k exp(-i k alpha)`` and its first ``derivatives`` derivatives.

    Parameters
    ----------
    h : ndarray, complex, shape (..., K)
    alpha : ndarray, shape (...)
    derivatives : int

    Returns
    -------
    tuple of ndarray, shape (...)
    """
    K = h.shape[-1]
    he = h * _exp_table(alpha, K, h.dtype)
    out = [he.real.sum(-1)]
    if derivatives:
        k = np.arange(K, dtype=np.float64)
        # d/dalpha: factor (-i k); Re((-i k) z) = k Im z ; second: -k^2 Re z
        if derivatives >= 1:
            out.append(he.imag @ k)
        if derivatives >= 2:
            out.append(-(he.real @ (k * k)))
        for d in range(3, derivatives + 1):
            out.append(((-1j * k) ** d * he).real.sum(-1))
    return tuple(out)


def refine_angle(h, alpha0, step, n_iter=3):
    """Newton-refine the maxima of ``c(alpha)`` near ``alpha0``.

    Parameters
    ----------
    h : ndarray, complex, shape (..., K)
    alpha0 : ndarray, shape (...)
        Starting angles (the best grid angles), radians.
    step : float
        Grid spacing; the total move is kept within ``[-step, step]``.
    n_iter : int
        Newton iterations.

    Returns
    -------
    alpha : ndarray, shape (...)
    value : ndarray, shape (...)
        ``c(alpha)``.
    """
    h = h.astype(np.complex128, copy=False)
    alpha = np.asarray(alpha0, dtype=np.float64).copy()
    for _ in range(n_iter):
        _, d1, d2 = trig_eval(h, alpha, 2)
        ok = d2 < 0
        delta = np.where(ok, -d1 / np.where(ok, d2, -1.0), 0.0)
        alpha = np.clip(alpha + delta, alpha0 - step, alpha0 + step)
    (value,) = trig_eval(h, alpha)
    # Never return a worse point than the grid maximum.
    (v0,) = trig_eval(h, alpha0)
    worse = value < v0
    alpha = np.where(worse, alpha0, alpha)
    value = np.where(worse, v0, value)
    return alpha, value


def coefficient_norms(coef, basis):
    """Pixel-space norm ``sqrt(sum w |a|^2)`` of coefficient vectors (..., count) -> (...)."""
    return np.sqrt(np.einsum("...c,c->...", np.abs(coef) ** 2, basis.weights))


def check_n_angles(n_angles):
    return check_int("n_angles", n_angles, min=1)


# ---------------------------------------------------------------------------------------------
class BFRAverager2D(AligningAverager2D):
    """Brute-force rotational alignment, then stacking (rotation only, mirror from the table).

    For every member the correlation with the reference at ``n_angles`` equispaced rotations
    is computed at once with one FFT over the angular frequency of the Fourier-Bessel
    coefficients, and the best angle is refined by Newton steps on the trigonometric
    polynomial (see the module docstring).  Shifts are all zero.

    Parameters
    ----------
    src : ImageSource
        Images indexed by the class tables.
    basis : FourierBesselBasis2D, optional
        Steerable basis (default: built for ``src.L`` and ``src.dtype``).
    image_stacker : ImageStacker, optional
        Default :class:`~classavg.averaging.stackers.MeanImageStacker`.
    n_angles : int, optional
        Rotation grid size, >= 1 (default 360: 1 degree steps before refinement).
    snr_weighting : bool, optional
        Weight the correlation by the spectral SNR of the batch,
        :meth:`~classavg.averaging.base.ClassBatch.snr_weights` (default True; ~no effect on
        clean images, much better alignment of noisy ones).
    batch_size : int, optional
        Classes per batch (default 64); memory is about ``batch_size * n_nbor`` coefficient
        vectors (10 kB each at L = 64).
    device : {"cpu", "cuda"}, optional
        Where the expansions and the correlation over all angles run (default "cpu";
        "cuda" needs CuPy, :mod:`classavg._backend`).  The Newton refinement and the stacking
        stay on the CPU.
    ctf_correction, image_source, wiener_snr : optional
        CTF-aware averages of the raw members (default None: the images of ``src`` as they
        are); see :meth:`~classavg.averaging.base.AligningAverager2D.set_ctf_correction`.

    Notes
    -----
    Cost per batch: one NUFFT per distinct image, one inner product per member and one FFT of
    length ``n_angles`` per member.
    """

    tags = AligningAverager2D.tags.extend(device=True)

    def __init__(self, src, *, basis=None, image_stacker=None, n_angles=360, snr_weighting=True,
                 batch_size=64, device="cpu",
                 ctf_correction=None, image_source=None, wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size,
                         device=device, ctf_correction=ctf_correction,
                         image_source=image_source, wiener_snr=wiener_snr)
        self.n_angles = check_n_angles(n_angles)
        self.snr_weighting = check_bool("snr_weighting", snr_weighting)

    def _repr_fields(self):
        return [f"n_angles={self.n_angles}"]

    def _align_batch(self, batch):
        b, m = batch.indices.shape
        coef = batch.coefficients()
        bm = batch.member_coefficients()                       # (b, m, count), mirrored
        a = coef[batch.inverse[:, 0]]                          # reference, (b, count)
        if self.snr_weighting:
            a = a * batch.snr_weights().astype(a.real.dtype)
        xp = array_module(self.device)
        h = correlation_spectrum(to_device(a[:, None, :], xp), to_device(bm, xp),
                                 self.basis)                   # (b, m, K)
        n_best = to_host(xp.argmax(grid_correlation(h, self.n_angles), axis=-1))
        h = to_host(h)
        step = 2 * np.pi / self.n_angles
        alpha, value = refine_angle(h, n_best * step, step)
        norm = coefficient_norms(a, self.basis)[:, None] * coefficient_norms(bm, self.basis)
        scores = value / np.maximum(norm, np.finfo(np.float64).tiny)
        return alpha, np.zeros((b, m, 2)), scores
