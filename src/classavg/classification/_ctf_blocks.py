"""Numerical blocks of :mod:`classavg.classification.ctf_correction`: the rings of the DFT
grid, the Hankel transforms of the Fourier-Bessel functions on them (Lommel's integral), the
CTF summed over each ring, the conjugate-gradient solve of the covariance normal equations and
the whitened spiked-covariance shrinkage (the model and references are in that module).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import jv

from .._grid import frequency_grid
from ..sources.ctf import evaluate_ctf

#: CTF parameter sets evaluated at once on the L x L grid (bounds memory).
_CTF_CHUNK = 256
#: The CTF parameters, in the column order of a parameter table.
_PARAM_KEYS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs",
               "amplitude_contrast", "phase_shift", "bfactor")


@lru_cache(maxsize=8)
def _rings(L):
    """Ring index of every point of the centred L x L DFT grid and the ring radii.

    Returns
    -------
    ring : ndarray of int, shape (L * L,)
        Ring of each grid point (raveled like :func:`classavg._grid.frequency_grid`).
    rho : ndarray, shape (U,)
        Radius of each ring in cycles per pixel.
    """
    ky, kx = frequency_grid(L)
    r2 = np.rint((ky * L) ** 2 + (kx * L) ** 2).astype(np.int64).ravel()
    uniq, ring = np.unique(r2, return_inverse=True)
    ring = ring.reshape(-1)
    rho = np.sqrt(uniq) / L
    for a in (ring, rho):
        a.flags.writeable = False
    return ring, rho


def _radial_transforms(basis):
    """Per angular frequency k, ``b_kq(rho_u)`` as an array (U, n_q(k)) (module docstring)."""
    L, R = basis.L, basis.radius
    _, rho = _rings(L)
    w = 2.0 * np.pi * rho[:, None]                 # angular frequency (radians per pixel)
    out = []
    for k, s in enumerate(basis.k_slices):
        lam = np.asarray(basis.zeros[s], dtype=np.float64)
        a = lam / R
        dj = -jv(k + 1, lam)                       # J_k'(lam) at a zero of J_k
        den = w * w - a * a
        # Lommel: int_0^R J_k(a r) J_k(w r) r dr = R a J_k'(aR) J_k(w R) / (w^2 - a^2) when
        # J_k(aR) = 0, and R^2 J_k'(aR)^2 / 2 at w = a.
        close = np.abs(den) <= 1e-10 * a * a
        with np.errstate(divide="ignore", invalid="ignore"):
            integral = np.where(close, 0.5 * R * R * dj * dj,
                                R * a * dj * jv(k, w * R) / np.where(close, 1.0, den))
        out.append((2.0 * np.pi / L) * basis.norms[s] * integral)
    return out


def _ring_sums(L, pixel_size, table, phase_flipped):
    """Sum of the CTF (or |CTF|) over each ring of the DFT grid, (m, U), for m parameter rows."""
    ring, rho = _rings(L)
    out = np.empty((table.shape[0], rho.size))
    for s in range(0, table.shape[0], _CTF_CHUNK):
        t = table[s:s + _CTF_CHUNK]
        c = evaluate_ctf(L, pixel_size, **dict(zip(_PARAM_KEYS, t.T)))
        c = c.reshape(c.shape[0], -1)
        if phase_flipped:
            c = np.abs(c)
        for j in range(c.shape[0]):
            out[s + j] = np.bincount(ring, weights=c[j], minlength=rho.size)
    return out


def _spd_solve_cg(Ms, w, rhs, *, tol=1e-10, max_iter=500):
    """Solve ``sum_g w_g M_g X M_g = rhs`` for symmetric X by preconditioned CG.

    The preconditioner diagonalises the operator in the eigenbasis V of ``sum_g w_g M_g``,
    where it is approximated by ``(V^T X V)_ij * sum_g w_g m_gi m_gj`` with ``m_gi =
    (V^T M_g V)_ii`` (exact when the ``M_g`` commute).

    Returns
    -------
    X : ndarray, shape (n, n)
    n_iter : int
    """
    n = rhs.shape[0]
    bnorm = np.linalg.norm(rhs)
    if bnorm == 0:
        return np.zeros((n, n)), 0
    Mbar = np.einsum("g,gij->ij", w, Ms)
    _, V = np.linalg.eigh(Mbar)
    m = np.einsum("ip,gij,jp->gp", V, Ms, V)                     # (G, n)
    D = np.einsum("g,gp,gq->pq", w, m, m)
    floor = max(D.max(), np.finfo(float).tiny) * 1e-12
    D = np.maximum(D, floor)

    def op(X):
        return np.einsum("g,gij->ij", w, Ms @ X @ Ms)

    def prec(Rm):
        return V @ ((V.T @ Rm @ V) / D) @ V.T

    X = prec(rhs)
    Rm = rhs - op(X)
    Z = prec(Rm)
    P = Z.copy()
    rz = np.vdot(Rm, Z).real
    it = 0
    while it < max_iter and np.linalg.norm(Rm) > tol * bnorm:
        it += 1
        AP = op(P)
        pap = np.vdot(P, AP).real
        if pap <= 0:
            break
        alpha = rz / pap
        X += alpha * P
        Rm -= alpha * AP
        Z = prec(Rm)
        rz_new = np.vdot(Rm, Z).real
        P = Z + (rz_new / rz) * P
        rz = rz_new
    return 0.5 * (X + X.T), it


def _shrink_covariance(X, Ms, w, noise_var, dof, shrink):
    """Positive semi-definite, denoised covariance from the least-squares estimate ``X``.

    ``X`` is whitened with the mean squared CTF ``A = sum_g w_g M_g / sum_g w_g``: for a single
    group ``A^(1/2) X A^(1/2) + sigma^2 I`` is the sample covariance of the observed
    coefficients, whose noise is white, so its eigenvalues are shrunk with the
    spiked-covariance (BBP) rule of :class:`~classavg.classification.fspca.SteerablePCA`
    (components below the noise bulk edge are dropped, the others replaced by the population
    spike) and the result is un-whitened.  With several groups this whitening by the mean CTF
    is an approximation.  ``shrink=False`` only clips negative eigenvalues of ``X``.
    """
    if not shrink:
        lam, V = np.linalg.eigh(X)
        return (V * np.maximum(lam, 0)) @ V.T
    n = X.shape[0]
    A = np.einsum("g,gij->ij", w, Ms) / w.sum()
    d, U = np.linalg.eigh(A)
    d = np.maximum(d, 1e-8 * max(d.max(), np.finfo(float).tiny))
    half = (U * np.sqrt(d)) @ U.T
    ihalf = (U / np.sqrt(d)) @ U.T
    S = half @ X @ half
    lam, V = np.linalg.eigh(0.5 * (S + S.T))
    ell = lam / noise_var + 1                      # sample eigenvalues in noise units
    gamma = n / (dof * w.sum())
    keep = ell > (1 + np.sqrt(gamma)) ** 2
    b = ell[keep] + 1 - gamma
    spike = 0.5 * (b + np.sqrt(np.maximum(b * b - 4 * ell[keep], 0)))
    Vk = ihalf @ V[:, keep]
    return (Vk * (noise_var * (spike - 1))) @ Vk.T
