"""Nearest neighbours over images and their mirrors, for unit-length complex features.

For unit vectors the distance is ``sqrt(2 - 2 Re<u, v>)``.  A mirrored image has the conjugate
features, so ``Re<u_i, conj(u_j)> = Re u_i . Re u_j - Im u_i . Im u_j``: one pass of two real
matrix products gives both the plain and the mirrored similarity.  Each image appears at most
once in a row (plain or mirrored, whichever is closer); column 0 is the row's own image.
"""

from __future__ import annotations

import logging

import numpy as np

from .._progress import progress

__all__ = ["exact_neighbors", "approximate_neighbors", "has_faiss"]

logger = logging.getLogger(__name__)


def _finish(sim, refl, idx, rows):
    """Sort candidates by similarity (self first) and convert to distances."""
    order = np.argsort(-sim, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, 1)
    sim = np.take_along_axis(sim, order, 1)
    refl = np.take_along_axis(refl, order, 1)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))
    # The row's own image is column 0 at distance 0 (it is always its own best match).
    dist[:, 0] = 0.0
    refl[:, 0] = False
    idx[:, 0] = rows
    return idx, refl, dist


def exact_neighbors(features, n_nbor, *, block_size=1024):
    """Exact neighbour table by blocked matrix products.

    Parameters
    ----------
    features : ndarray, complex, shape (n, d)
        Unit-length features; the mirror of image j has features ``conj(features[j])``.
    n_nbor : int
        Neighbours per row including the row's own image.

    Returns
    -------
    class_indices (n, n_nbor) int64, class_refl (n, n_nbor) bool, class_distances (n, n_nbor)
    float32.
    """
    n = features.shape[0]
    re = np.ascontiguousarray(features.real, dtype=np.float32)
    im = np.ascontiguousarray(features.imag, dtype=np.float32)
    ci = np.empty((n, n_nbor), np.int64)
    cr = np.empty((n, n_nbor), bool)
    cd = np.empty((n, n_nbor), np.float32)
    for s in progress(range(0, n, block_size), total=-(-n // block_size), desc="neighbours"):
        rows = np.arange(s, min(s + block_size, n))
        p = re[rows] @ re.T
        q = im[rows] @ im.T
        plain, mirr = p + q, p - q
        refl = mirr > plain
        sim = np.where(refl, mirr, plain)
        sim[np.arange(rows.size), rows] = np.inf          # self first
        part = np.argpartition(-sim, n_nbor - 1, axis=1)[:, :n_nbor]
        idx, r, d = _finish(np.take_along_axis(sim, part, 1),
                            np.take_along_axis(refl, part, 1), part, rows)
        ci[rows], cr[rows], cd[rows] = idx, r, d
    return ci, cr, cd


def has_faiss():
    """Whether the optional faiss package is importable."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def approximate_neighbors(features, n_nbor, *, seed=0, ef_search=None, m=32):
    """Approximate neighbour table with an HNSW graph index (faiss, inner product).

    The index holds the plain features as real vectors ``[Re u, Im u]``; each image is queried
    twice, plainly and mirrored (``[Re u, -Im u]``), and the two lists are merged.
    """
    import faiss

    n = features.shape[0]
    x = np.ascontiguousarray(np.concatenate([features.real, features.imag], 1), np.float32)
    xm = np.ascontiguousarray(np.concatenate([features.real, -features.imag], 1), np.float32)
    faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = ef_search or max(2 * n_nbor, 64)
    faiss.cvar.rand_seed = int(seed) if hasattr(faiss, "cvar") else None
    index.add(x)
    sp, ip = index.search(x, n_nbor + 1)
    sm, im_ = index.search(xm, n_nbor + 1)
    sim = np.concatenate([sp, sm], 1)
    idx = np.concatenate([ip, im_], 1)
    refl = np.concatenate([np.zeros_like(ip, bool), np.ones_like(im_, bool)], 1)
    rows = np.arange(n)
    sim = np.where(idx < 0, -np.inf, sim)
    sim[(idx == rows[:, None]) & ~refl] = np.inf                  # self first
    sim[(idx == rows[:, None]) & refl] = -np.inf                  # no mirrored self
    # Keep each image once: sort by similarity, drop later duplicates of an index.
    order = np.argsort(-sim, axis=1, kind="stable")
    idx, sim, refl = (np.take_along_axis(a, order, 1) for a in (idx, sim, refl))
    srt = np.sort(idx, axis=1)
    dup = np.zeros_like(idx, bool)
    for c in range(1, idx.shape[1]):                               # columns, not images
        dup[:, c] = (idx[:, :c] == idx[:, c:c + 1]).any(1)
    sim = np.where(dup, -np.inf, sim)
    del srt
    part = np.argsort(-sim, axis=1, kind="stable")[:, :n_nbor]
    return _finish(np.take_along_axis(sim, part, 1), np.take_along_axis(refl, part, 1),
                   np.take_along_axis(idx, part, 1), rows)
