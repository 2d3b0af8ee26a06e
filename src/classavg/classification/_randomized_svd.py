"""Truncated SVD by randomized subspace iteration (the bispectrum PCA's only SVD).

Algorithm 4.4 of Halko, Martinsson & Tropp [1]_ with LU normalisation between the power
iterations, as proposed by Szlam, Kluger & Tygert [2]_ (cheaper than QR, and it keeps float32
in range at any image scale).  numpy/scipy only, so that the classifier does not depend on
scikit-learn for one function.

References
----------
.. [1] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness:
   probabilistic algorithms for constructing approximate matrix decompositions", SIAM Review
   53, 217-288 (2011).
.. [2] A. Szlam, Y. Kluger, M. Tygert, "An implementation of a randomized algorithm for
   principal component analysis", arXiv:1412.3510 (2014).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["randomized_svd"]


def randomized_svd(A, k, *, n_oversamples=20, n_iter=1, seed=0):
    """The ``k`` leading singular triplets of a real matrix.

    Parameters
    ----------
    A : ndarray, shape (m, n), real
    k : int
        Singular triplets returned, ``1 <= k <= min(m, n)``.
    n_oversamples : int, optional
        Extra random directions (default 20): the error of the range falls geometrically
        with them [1]_.
    n_iter : int, optional
        Power iterations (default 1): each sharpens the spectrum decay by one power.
    seed : int, optional
        Seed of the Gaussian test matrix.

    Returns
    -------
    u : ndarray, shape (m, k)
    s : ndarray, shape (k,)
        Non-increasing.
    vt : ndarray, shape (k, n)
        Each row's largest-magnitude entry is positive (a deterministic sign).
    """
    A = np.asarray(A)
    m, n = A.shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k must lie in [1, {min(m, n)}], got {k!r}")
    width = min(k + n_oversamples, m, n)
    rng = np.random.default_rng(seed)
    Y = A @ rng.standard_normal((n, width)).astype(A.dtype, copy=False)     # (m, width)
    for _ in range(n_iter):
        Y = scipy.linalg.lu(Y, permute_l=True, check_finite=False)[0]
        Y = scipy.linalg.lu(A.T @ Y, permute_l=True, check_finite=False)[0]
        Y = A @ Y
    Q = scipy.linalg.qr(Y, mode="economic", check_finite=False)[0]        # range of A
    B = (Q.T @ A).astype(np.float64)                                         # (width, n)
    ub, s, vt = scipy.linalg.svd(B, full_matrices=False, check_finite=False)
    u = Q.astype(np.float64) @ ub[:, :k]
    vt = vt[:k]
    sign = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    sign[sign == 0] = 1.0
    return u * sign, s[:k], vt * sign[:, None]
