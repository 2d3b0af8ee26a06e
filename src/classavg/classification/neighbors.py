"""Nearest neighbours over images and their mirrors, for unit-length complex features.

For unit vectors the distance is ``sqrt(2 - 2 Re<u, v>)``.  A mirrored image has the conjugate
features, so ``Re<u_i, conj(u_j)> = Re u_i . Re u_j - Im u_i . Im u_j``: one pass of two real
matrix products gives both the plain and the mirrored similarity.  Each image appears at most
once in a row (plain or mirrored, whichever is closer); column 0 is the row's own image.
"""

from __future__ import annotations

import logging

import numpy as np

from .._backend import array_module, namespace_of, to_device, to_host
from .._parallel import block_map
from .._progress import progress

__all__ = ["exact_neighbors", "approximate_neighbors", "has_faiss"]

logger = logging.getLogger(__name__)


def _finish(sim, refl, idx, rows):
    """Sort candidates by similarity (self first) and convert to distances (host arrays)."""
    xp = namespace_of(sim)
    order = np.argsort(-sim, axis=1, kind="stable") if xp is np else xp.argsort(-sim, axis=1)
    idx = to_host(xp.take_along_axis(idx, order, 1)).astype(np.int64, copy=False)
    sim = to_host(xp.take_along_axis(sim, order, 1))
    refl = to_host(xp.take_along_axis(refl, order, 1))
    rows = to_host(rows)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))
    # The row's own image is column 0 at distance 0 (it is always its own best match).
    dist[:, 0] = 0.0
    refl[:, 0] = False
    idx[:, 0] = rows
    return idx, refl, dist


def exact_neighbors(features, n_nbor, *, block_size=2048, client=None, device="cpu",
                    candidates_only=False):
    """Exact neighbour table by blocked matrix products.

    The similarity matrix is symmetric (``Re<u_i, u_j>`` and ``Re<u_i, conj(u_j)>`` both
    are), so only the blocks on and above the diagonal are computed, each serving its rows
    and, transposed, its columns: half the products of a full sweep.  With
    ``p = Re u_i . Re u_j`` and ``q = Im u_i . Im u_j`` the better of the plain and the
    mirrored match is ``p + |q|`` (mirrored where ``q < 0``).

    Parameters
    ----------
    features : ndarray, complex, shape (n, d)
        Unit-length features; the mirror of image j has features ``conj(features[j])``.
    n_nbor : int
        Neighbours per row including the row's own image.
    block_size : int, optional
        Rows per block (memory ``~ 12 block_size^2`` bytes per block pair, plus the
        candidates waiting for their rows: at most ``~ 2.5 n^2 n_nbor / block_size`` bytes,
        100 MB at n = 20,000 and 200 candidates).
    client : dask.distributed.Client, optional
        Search the block rows as Dask tasks (:mod:`classavg._parallel`).
    device : {"cpu", "cuda"}, optional
        Where the products and the selection run (:mod:`classavg._backend`; "cuda" keeps
        the features on the GPU; not with a client).
    candidates_only : bool, optional
        Return only the index table, as int32 (what a re-ranking step needs: 4 instead of
        13 bytes per entry).

    Returns
    -------
    class_indices (n, n_nbor) int64, class_refl (n, n_nbor) bool, class_distances (n, n_nbor)
    float32; or only class_indices (int32) with ``candidates_only``.
    """
    n = features.shape[0]
    re = np.ascontiguousarray(features.real, dtype=np.float32)
    im = np.ascontiguousarray(features.imag, dtype=np.float32)
    if device != "cpu":
        xp = array_module(device)
        re, im = to_device(re, xp), to_device(im, xp)
    starts = list(range(0, n, block_size)) + [n]
    bounds = list(zip(starts[:-1], starts[1:]))
    results = block_map(_exact_block_row,
                        ((i, bounds, n_nbor, not candidates_only) for i in range(len(bounds))),
                        shared=(re, im), client=client)
    # Candidates found for later block rows by the transposed blocks, kept until their turn.
    waiting = [[] for _ in bounds]

    def merged():
        for i, (own, cols) in enumerate(results):
            for j, part in cols.items():
                waiting[j].append(part)
            parts = [own] + waiting[i]
            waiting[i] = []
            s, e = bounds[i]
            sim, idx = (np.concatenate([p[f] for p in parts], 1) for f in range(2))
            neg = np.concatenate([p[2] for p in parts], 1) if not candidates_only \
                else np.zeros(sim.shape, bool)
            if sim.shape[1] > n_nbor:
                part = np.argpartition(sim, sim.shape[1] - n_nbor, axis=1)[:, -n_nbor:]
                sim, idx, neg = (np.take_along_axis(a, part, 1) for a in (sim, idx, neg))
            yield _finish(sim, neg, idx, np.arange(s, e))

    return _collect(merged(), bounds, n, n_nbor, candidates_only)


def _collect(results, bounds, n, n_nbor, candidates_only):
    """Assemble the per-block tables (in order) into full ones."""
    ci = np.empty((n, n_nbor), np.int32 if candidates_only else np.int64)
    if not candidates_only:
        cr = np.empty((n, n_nbor), bool)
        cd = np.empty((n, n_nbor), np.float32)
    for (s, e, *_), (idx, r, d) in zip(bounds, progress(results, total=len(bounds),
                                                        desc="neighbours")):
        ci[s:e] = idx
        if not candidates_only:
            cr[s:e], cd[s:e] = r, d
    return ci if candidates_only else (ci, cr, cd)


def _top(sim, q, k, offset):
    """The ``k`` largest entries of each row of ``sim`` (all when fewer): their values,
    column indices plus ``offset`` (int32) and mirror flags (``q < 0`` there; None without
    ``q``)."""
    xp = namespace_of(sim)
    m = sim.shape[1]
    if m > k:
        part = xp.argpartition(sim, m - k, axis=1)[:, m - k:]
    else:
        part = xp.broadcast_to(xp.arange(m), sim.shape)
    neg = None if q is None else to_host(xp.take_along_axis(q, part, 1) < 0)
    return (to_host(xp.take_along_axis(sim, part, 1)), to_host((part + offset).astype(np.int32)),
            neg)


def _transpose(a):
    """C-contiguous transpose; on the CPU in strips of 64 rows, which stay in the cache (4x
    faster than one strided copy of a 2,048 x 2,048 block)."""
    xp = namespace_of(a)
    if xp is not np:
        return xp.ascontiguousarray(a.T)
    out = np.empty(a.shape[::-1], a.dtype)
    for s in range(0, a.shape[0], 64):
        out[:, s:s + 64] = a[s:s + 64].T
    return out


def _exact_block_row(re, im, task):
    """Block row ``i`` against the blocks ``j >= i``: each row's best candidates among
    them, and for every ``j > i`` the best candidates of block j's rows within block i
    (mirror flags only when ``flags``)."""
    i, bounds, k, flags = task
    xp = namespace_of(re)
    s, e = bounds[i]
    own, cols = [], {}
    for j in range(i, len(bounds)):
        t, f = bounds[j]
        p = re[s:e] @ re[t:f].T
        q = im[s:e] @ im[t:f].T
        p += xp.abs(q)
        if not flags:
            q = None
        if j == i:
            p[xp.arange(e - s), xp.arange(e - s)] = xp.inf          # self first
        own.append(_top(p, q, k, t))
        if j > i:
            cols[j] = _top(_transpose(p), None if q is None else q.T, k, s)
    own = tuple(None if own[0][f] is None else np.concatenate([o[f] for o in own], 1)
                for f in range(3))
    return own, cols


#: Vectors scanned (at least) per query by the default ``nprobe`` of
#: :func:`approximate_neighbors`.
MIN_SCAN = 500


def has_faiss():
    """Whether the optional faiss package is importable."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def approximate_neighbors(features, n_nbor, *, seed=0, nlist=None, nprobe=None,
                          block_size=16384, client=None, candidates_only=False):
    """Approximate neighbour table with an inverted-file index (faiss
    ``IndexIVFScalarQuantizer``, 8-bit, inner product).

    The index holds the plain features as real vectors ``[Re u, Im u]``; each image is queried
    twice, plainly and mirrored (``[Re u, -Im u]``), and the two lists are merged.  The
    k-means coarse quantiser (``nlist`` cells, default ``4 sqrt(n)``) is trained on a seeded
    subset of ``39 nlist`` vectors (faiss's minimum; the training cost grows like n, not
    n^1.5); each query scans ``nprobe`` cells, by default enough for ~``MIN_SCAN`` vectors
    and at least 8 cells, so the search time grows linearly in n.  Scanning more buys
    nothing once the candidates are re-ranked: at n = 100,000, SNR 1/8, 94.1 % of the
    re-ranked neighbours are within 10 degrees with 8 of 1,265 cells scanned and 94.0 % with
    158 cells (an eighth of the data), for 23 s instead of 153 s (cells get denser in true
    neighbours as n grows).
    Queries run in blocks of ``block_size`` rows (memory of the merge bounded by the block), as
    Dask tasks when a ``client`` is given (the index travels once to every worker, serialised).
    ``candidates_only`` returns only the index table, as int32 (see :func:`exact_neighbors`).

    References
    ----------
    .. [1] H. Jegou, M. Douze, C. Schmid, "Product quantization for nearest neighbor search",
       IEEE TPAMI 33(1) (2011) (the inverted-file index); J. Johnson, M. Douze, H. Jegou,
       "Billion-scale similarity search with GPUs", IEEE Trans. Big Data (2019) (faiss).
    """
    import faiss

    n = features.shape[0]

    def vectors(rows):
        f = features[rows]
        return np.ascontiguousarray(np.concatenate([f.real, f.imag], 1), np.float32)

    nlist = nlist or max(1, int(4 * np.sqrt(n)))
    nprobe = nprobe or min(nlist, max(8, -(-MIN_SCAN * nlist // n)))
    rng = np.random.default_rng(seed)
    train = vectors(np.sort(rng.choice(n, min(n, 39 * nlist), replace=False)))
    if train.shape[0] < 39 * nlist:          # faiss wants >= 39 points per centroid
        nlist = max(1, train.shape[0] // 39)
        nprobe = min(nlist, nprobe)
    dim = train.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    # 8-bit scalar-quantised vectors: a quarter of the memory of the float32 features (0.6
    # instead of 2.4 GB at n = 10^6) and slightly faster scans; the candidates are re-ranked
    # afterwards, so the coarser similarities cost nothing (n = 100,000, SNR 1/8: 94.08 %
    # within 10 degrees after re-ranking, as with IndexIVFFlat).
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist,
                                          faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    # 10 k-means iterations instead of faiss's 25: the cells only route the queries (the
    # candidates are re-ranked), and at n = 100,000 training took 8 s of the 21 s search
    # (94.09 % within 10 degrees after re-ranking either way).
    index.cp.niter = 10
    index.train(train)
    del train
    # Added in blocks: the index keeps its own copy of the vectors, and a full-size
    # real copy of the features besides it would double the peak memory at large n.
    for s in range(0, n, block_size):
        index.add(vectors(slice(s, s + block_size)))
    index.nprobe = nprobe
    bounds = [(s, min(s + block_size, n)) for s in range(0, n, block_size)]
    items = ((s, e, n_nbor, features[s:e]) for s, e in bounds)
    shared = (index if client is None else _SerializedIndex(index),)
    results = block_map(_ivf_block, items, shared=shared, client=client)
    return _collect(results, bounds, n, n_nbor, candidates_only)


class _SerializedIndex:
    """A faiss index in its serialised form (picklable), deserialised once per process."""

    def __init__(self, index):
        import faiss
        self.data = faiss.serialize_index(index)
        self._index = None

    def __getstate__(self):
        return {"data": self.data, "_index": None}

    @property
    def index(self):
        if self._index is None:
            import faiss
            self._index = faiss.deserialize_index(self.data)
        return self._index


def _ivf_block(index, block):
    """Merged plain + mirrored search of the query rows ``start:stop``."""
    start, stop, n_nbor, feats = block
    if isinstance(index, _SerializedIndex):
        index = index.index
    xq = np.ascontiguousarray(np.concatenate([feats.real, feats.imag], 1), np.float32)
    xm = np.ascontiguousarray(np.concatenate([feats.real, -feats.imag], 1), np.float32)
    sp, ip = index.search(xq, n_nbor + 1)
    sm, im_ = index.search(xm, n_nbor + 1)
    sim = np.concatenate([sp, sm], 1)
    idx = np.concatenate([ip, im_], 1)
    refl = np.concatenate([np.zeros_like(ip, bool), np.ones_like(im_, bool)], 1)
    rows = np.arange(start, stop)
    sim = np.where(idx < 0, -np.inf, sim)
    sim[(idx == rows[:, None]) & ~refl] = np.inf                  # self first
    sim[(idx == rows[:, None]) & refl] = -np.inf                  # no mirrored self
    # Keep each image once (it can come back plainly and mirrored): sorted by image, the
    # two copies are adjacent, and the one with the lower similarity is dropped.
    o = np.argsort(idx, axis=1)
    srt, s_srt = np.take_along_axis(idx, o, 1), np.take_along_axis(sim, o, 1)
    pair = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    lower = np.zeros(idx.shape, bool)
    lower[:, 1:] = pair & (s_srt[:, 1:] < s_srt[:, :-1])
    lower[:, :-1] |= pair & (s_srt[:, :-1] <= s_srt[:, 1:])
    sim[np.arange(idx.shape[0])[:, None], o] = np.where(lower, -np.inf, s_srt)
    part = np.argpartition(-sim, n_nbor - 1, axis=1)[:, :n_nbor]
    return _finish(np.take_along_axis(sim, part, 1), np.take_along_axis(refl, part, 1),
                   np.take_along_axis(idx, part, 1), rows)
