"""Re-rank neighbour candidates by their rotationally aligned correlation.

The bispectrum distance is a fast but lossy proxy for "same view": it multiplies three noisy
coefficients.  For each image we therefore take a few times more candidates than needed from
the bispectrum search and re-rank them by the best normalised correlation over all in-plane
rotations (and the mirror) of their denoised steerable-PCA coefficients, which is the matched
filter for the question "are these the same view?".  For steerable coefficients ``a`` (image i)
and ``b`` (image j) with angular frequencies ``k_m`` and weights ``w_m`` (1 for k = 0, 2 for
k > 0), the correlation after rotating image j by ``alpha`` is::

    c(alpha) = Re sum_k s_k exp(-i k alpha),   s_k = sum_{m: k_m = k} w_m conj(a_m) b_m,

a trigonometric polynomial evaluated at all angles with one real inverse FFT; the mirrored
image uses ``conj(b)``.  The cost is O(n K (M + N log N)) for K candidates, M components and N
angles, vectorised over blocks of rows.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .._progress import progress

__all__ = ["rotational_similarity", "rerank_neighbors"]


def _angle_count(kmax):
    # Four samples per period of the highest frequency: the grid maximum is within
    # 1 - cos(pi / 4 / 2) ~ 2 % of the peak height of that frequency, enough for ranking.
    return scipy.fft.next_fast_len(max(8, 4 * (kmax + 1)))


def rotational_similarity(coef, k, rows, candidates):
    """Best normalised correlation over rotations, plain and mirrored.

    Parameters
    ----------
    coef : ndarray, complex, shape (n, M)
        Steerable coefficients (rotation multiplies component m by exp(-i k_m alpha)).
    k : ndarray of int, shape (M,)
        Angular frequency of each component, sorted ascending.
    rows : ndarray of int, shape (b,)
        Query images.
    candidates : ndarray of int, shape (b, K)
        Candidate neighbours of each query.

    Returns
    -------
    sim : ndarray, float32, shape (b, K)
        max over alpha of c(alpha) / (|a| |b|), over the plain and mirrored candidate.
    refl : ndarray of bool, shape (b, K)
        True where the mirrored candidate correlates better.
    """
    k = np.asarray(k)
    w = np.where(k == 0, 1.0, 2.0).astype(np.float32)
    present, starts = np.unique(k, return_index=True)
    kmax = int(k.max())
    N = _angle_count(kmax)
    norms = np.sqrt(np.einsum("nm,nm,m->n", coef.real, coef.real, w)
                    + np.einsum("nm,nm,m->n", coef.imag, coef.imag, w))
    a = (np.conj(coef[rows]) * w)[:, None, :]
    b = coef[candidates]
    out = []
    for prod in (a * b, a * np.conj(b)):
        s = np.zeros(prod.shape[:2] + (N // 2 + 1,), np.complex64)
        s[..., present] = np.add.reduceat(prod, starts, axis=-1)
        # c(alpha_m) = Re sum_k s_k e^{-i k alpha_m} = (N / 2) irfft(Y) with Y_0 = 2 s_0 and
        # Y_k = conj(s_k): one real inverse FFT gives all N angles.
        s = np.conj(s)
        s[..., 0] *= 2
        out.append(scipy.fft.irfft(s, n=N, axis=-1, workers=-1).max(axis=-1) * (N / 2))
    plain, mirr = out
    denom = norms[rows][:, None] * norms[candidates]
    denom = np.where(denom > 0, denom, 1)
    refl = mirr > plain
    return (np.where(refl, mirr, plain) / denom).astype(np.float32), refl


def rerank_neighbors(coef, k, candidates, n_nbor, *, block_size=256):
    """Keep the ``n_nbor`` best of each row's candidates by :func:`rotational_similarity`.

    Parameters
    ----------
    coef, k : see :func:`rotational_similarity`.
    candidates : ndarray of int, shape (n, K)
        Candidate table whose column 0 is the row's own image.
    n_nbor : int
        Columns to return (<= K).

    Returns
    -------
    class_indices, class_refl, class_distances
        The re-ranked table; distances are ``sqrt(2 - 2 sim)`` (0 for column 0).
    """
    n, K = candidates.shape
    ci = np.empty((n, n_nbor), np.int64)
    cr = np.empty((n, n_nbor), bool)
    cd = np.empty((n, n_nbor), np.float32)
    for s in progress(range(0, n, block_size), total=-(-n // block_size), desc="re-rank"):
        rows = np.arange(s, min(s + block_size, n))
        cand = candidates[rows]
        sim, refl = rotational_similarity(coef, k, rows, cand)
        sim[:, 0] = np.inf                                   # the row's own image first
        order = np.argsort(-sim, axis=1, kind="stable")[:, :n_nbor]
        ci[rows] = np.take_along_axis(cand, order, 1)
        cr[rows] = np.take_along_axis(refl, order, 1)
        d = np.sqrt(np.maximum(2 - 2 * np.take_along_axis(sim, order, 1), 0))
        d[:, 0] = 0
        cr[rows, 0] = False
        cd[rows] = d
    return ci, cr, cd
