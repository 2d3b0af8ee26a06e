"""Bessel-function helpers for the Fourier-Bessel basis: zeros, norms, radial interpolation."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import jn_zeros, jv

__all__ = ["bessel_zeros_below", "chebyshev_nodes", "barycentric_matrix"]


@lru_cache(maxsize=16)
def bessel_zeros_below(lam_max: float):
    """All positive zeros ``lam`` of ``J_k`` with ``lam < lam_max``, for k = 0, 1, ...

    Returns
    -------
    ks : ndarray of int, shape (m,)
        Angular frequency of each zero (sorted by k, then by zero).
    qs : ndarray of int, shape (m,)
        Radial index (0-based count of the zero for that k).
    zeros : ndarray of float, shape (m,)
        The zeros.
    """
    ks, qs, zs = [], [], []
    k = 0
    while True:
        # J_k has fewer than lam_max / pi + 1 zeros below lam_max (zeros are > pi apart).
        nt = int(lam_max / np.pi) + 2
        z = jn_zeros(k, nt)
        z = z[z < lam_max]
        if z.size == 0:
            break
        ks.append(np.full(z.size, k))
        qs.append(np.arange(z.size))
        zs.append(z)
        k += 1
    out = (np.concatenate(ks), np.concatenate(qs), np.concatenate(zs))
    for a in out:
        a.flags.writeable = False
    return out


def chebyshev_nodes(n: int, a: float, b: float):
    """``n`` Chebyshev points of the second kind on ``[a, b]`` (ascending) and their
    barycentric weights."""
    j = np.arange(n)
    x = -np.cos(np.pi * j / (n - 1))
    w = (-1.0) ** j
    w[0] *= 0.5
    w[-1] *= 0.5
    return a + (b - a) * (x + 1) / 2, w


def barycentric_matrix(nodes, weights, targets):
    """Matrix ``B`` (len(targets), len(nodes)) with ``B @ f(nodes) ~= f(targets)``.

    Barycentric Lagrange interpolation (Berrut & Trefethen, SIAM Review 46, 2004), stable for
    Chebyshev nodes; exact hits of a node give a unit row.
    """
    d = targets[:, None] - nodes[None, :]
    hit = d == 0
    d[hit] = 1.0
    c = weights[None, :] / d
    B = c / c.sum(axis=1, keepdims=True)
    rows = hit.any(axis=1)
    B[rows] = hit[rows].astype(float)
    return B


def fb_norms(ks, zeros, radius):
    """Normalisation ``1 / (sqrt(pi) R |J_{k+1}(lam)|)`` making each
    ``J_k(lam r / R) exp(i k theta)`` unit-norm on the disk of radius R."""
    return 1.0 / (np.sqrt(np.pi) * radius * np.abs(jv(ks + 1, zeros)))
