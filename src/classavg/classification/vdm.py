"""Neighbour refinement with vector diffusion maps (VDM).

Rotation-invariant classification compares images two at a time.  At low SNR many of the
resulting neighbours are wrong, but wrong neighbours are *inconsistent*: the in-plane rotations
that align image i to j, j to l and l back to i compose to the identity only when the three
images really show nearby views.  Vector diffusion maps (Singer & Wu [1]_) turn that
consistency into an affinity: a graph whose edges carry the pairwise alignments, the top
eigenvectors of its normalised *connection* matrix, and the vector diffusion affinity between
any two images (Singer, Zhao, Shkolnisky & Hadani [2]_ used the same eigenvectors to estimate
viewing directions; Zhao & Singer [3]_ used VDM after rotation-invariant classification).

Pipeline of :func:`vdm_refine`
------------------------------
1. **Edges.**  Every candidate pair (i, j) is aligned rotationally
   (:func:`~classavg.classification.rerank.rotational_alignment`: the FFT over angular frequency of
   :mod:`classavg.classification.rerank`, with the argmax angle interpolated between grid
   samples): normalised correlation ``s_ij``, mirror flag ``r_ij`` and angle ``a_ij``, meaning
   *mirror image j if* ``r_ij`` *, then rotate it counter-clockwise by* ``a_ij`` *to match
   image i* (the averagers' convention, ``docs/conventions.md``).  Each image keeps its
   ``n_graph`` best-correlated candidates as graph edges, with the self-tuning Gaussian weight
   ``w_ij = exp(-d_ij^2 / (sigma_i sigma_j))``, ``d_ij^2 = 2 - 2 s_ij`` and ``sigma_i`` the
   distance to the ``n_graph``-th neighbour (Zelnik-Manor & Perona [4]_).  The directed graph
   ``A`` is symmetrised as ``A + A^T`` (an edge found from both ends counts twice).
2. **Connection with mirrors, O(2).**  The alignment of an edge is a group element
   ``g_ij = R(a_ij) M^{r_ij}`` of O(2) acting on images (``M`` the mirror ``y -> -y``, ``R(a)``
   the counter-clockwise rotation; ``M R(a) M = R(-a)``), with ``g_ij I_j ~ I_i`` and
   ``g_ji = g_ij^{-1}``.  It is represented faithfully by the real orthogonal 2 x 2 matrix
   ``rho(g) = rot(a) diag(1, (-1)^r)`` (``rho(M) rot(a) rho(M) = rot(-a)`` as required), so
   the connection matrix is the real symmetric ``2n x 2n`` matrix with blocks
   ``S_ij = w_ij rho(g_ij) / sqrt(d_i d_j)``, ``d_i = sum_j w_ij`` (block ``S_ji = S_ij^T``).
   If the alignments were exact, ``g_ij = g_i g_j^{-1}`` for per-image poses ``g_i`` and
   ``u_i = rho(g_i) x`` would be a top eigenvector for any ``x`` in R^2: consistent cycles add
   up, inconsistent (wrong) edges cancel.

   Equivalently, identify R^2 with C.  A real 2 x 2 matrix splits uniquely into a
   complex-linear part ``z -> p z`` (a scaled rotation) and an anti-linear part
   ``z -> q conj(z)`` (a scaled rotation after a mirror), and complexifying ``S`` gives the
   Hermitian matrix of the *doubled graph* in which every image appears plainly and mirrored
   (the mirror of the view from v is the view from -v, so the doubled graph samples the
   tangent bundle of the sphere as in [2]_).  The real ``2n x 2n`` form is therefore the
   same operator at a quarter of the cost of the complex ``2n x 2n`` one, and no choice of
   "which copy is plain" is needed.
3. **Embedding.**  The ``n_eigs`` largest eigenvalues ``lam_l`` and eigenvectors ``phi_l`` of
   ``S`` (:func:`top_eigenpairs`: Chebyshev-filtered subspace iteration from a seeded random
   block, or ARPACK; dense ``eigh`` for small graphs) give every image the complex vector ``z_i = (lam_l^t (phi_l[2i] + i
   phi_l[2i+1]))_l`` (diffusion time ``t``), normalised to unit length.  With ``B_i`` the
   2 x n_eigs block of eigenvector rows, ``S^{2t}`` restricted to these eigenvectors has the
   2 x 2 block ``B_i B_j^T`` between i and j; its complex-linear part is ``<z_j, z_i> / 2``
   and its anti-linear part ``z_i^T z_j / 2``.  The normalised vector diffusion affinities
   (Singer & Wu's ``||S^{2t}(i, j)||^2 / (||S^{2t}(i, i)|| ||S^{2t}(j, j)||)`` split by part)
   are hence

       plain(i, j) = |<z_i, z_j>|^2,    mirrored(i, j) = |z_i^T z_j|^2,   both in [0, 1],

   and image j is a mirrored neighbour of i when ``mirrored > plain``.
4. **Global candidate search.**  ``plain(i, j) = <H_i, H_j>`` with ``H_i = z_i z_i^H`` and
   ``mirrored(i, j) = <H_i, conj(H_j)>``, so the Hermitian lift of the first
   ``n_search_eigs`` coordinates (``n_search_eigs (n_search_eigs + 1) / 2`` complex numbers:
   the diagonal and sqrt(2) times the upper triangle) is a unit feature vector whose mirror is
   its conjugate: exactly the input of :mod:`classavg.classification.neighbors`.  Its exact or
   inverted-file search over **all** images yields ``n_search`` candidates per image, so the
   refinement can find good neighbours that the bispectrum search missed; the ``n_initial``
   initial candidates with the best rotational correlation are added to them (a truncated
   spectrum, or the exactly repeated eigenvalues of clean data with a few disconnected
   views, can hide some).
5. **Re-ranking.**  The candidates are ranked by the affinity ``max(plain, mirrored)`` over
   all ``n_eigs`` coordinates.  The diffusion affinity is smooth over the graph: it removes
   inconsistent neighbours but blurs the finest differences of view, where the pairwise
   correlation is the sharper measure once the noise is low.  The best ``1.5 n_nbor`` by
   affinity are therefore aligned (:func:`~classavg.classification.rerank.rotational_alignment`) and ranked by
   ``(affinity + w s_ij) / (1 + w)`` (``alignment_weight`` w, default 1; measured to be as
   good as or better than either measure alone from SNR 1/4 to 1/64, see below).  The top
   ``n_nbor`` (column 0 the image itself) form the table, with mirror flags
   ``mirrored > plain`` (more reliable than the pair alignment's at low SNR) and distances
   ``sqrt(2 - 2 score)``.

Cost and memory: alignment O(n K M N) for K candidates (the work of re-ranking);
the sparse matrix has at most ``8 n n_graph`` non-zeros; the eigen-solver stores a few blocks
of ``2n x (n_eigs + max(8, n_eigs // 6))`` numbers; the search and the re-ranking work in row blocks: everything is linear in n
times a per-image constant.  No Python loop runs over images.

Measured effect (``benchmarks/classify.py --n 10000 --ctf --refine none vdm``: the built-in
molecule at 64 x 64, 7 defocus groups, phase flipped, CTF-corrected features, n_nbor = 50,
ceiling 100 %; BENCHMARKS.md): fraction of neighbours within 10 degrees

    SNR                       1/4     1/8     1/16    1/32    1/64
    bispectrum only           84.6    71.0    52.1    31.1    15.0
    + rotational re-ranking   95.1    85.7    68.2    43.8    21.1
    + VDM (this module)       97.2    92.3    80.1    58.5    29.5

for 1.6 s more than re-ranking at n = 10,000 (+46 %) and 15 s at n = 100,000 (+44 %,
98.2 % against 94.1 % within 10 degrees) on 2 cores.  On noise-free data the diffusion
affinity alone is a few points less accurate than the pairwise correlation (its resolution is
that of ``n_eigs`` smooth eigenvectors), which is why the final score mixes the two (99.5 %
vs 100 % at n = 2,000 with 7 defocus groups).

References
----------
.. [1] A. Singer, H.-T. Wu, "Vector diffusion maps and the connection Laplacian",
   Comm. Pure Appl. Math. 65(8), 1067-1144 (2012).
.. [2] A. Singer, Z. Zhao, Y. Shkolnisky, R. Hadani, "Viewing angle classification of
   cryo-electron microscopy images using eigenvectors", SIAM J. Imaging Sci. 4(2), 723-759
   (2011).
.. [3] Z. Zhao, A. Singer, "Rotationally invariant image representation for viewing direction
   classification in cryo-EM", J. Struct. Biol. 186(1), 153-166 (2014).
.. [4] L. Zelnik-Manor, P. Perona, "Self-tuning spectral clustering", NIPS 17 (2004).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse

from .._progress import progress
from .._validation import check_choice, check_float, check_int, check_random_state
from ._eigensolver import DENSE_EIGEN_MAX_NODES, top_eigenpairs
from .neighbors import approximate_neighbors, exact_neighbors
from .rerank import align_candidates

__all__ = ["self_tuning_weights", "connection_matrix", "top_eigenpairs", "vdm_embedding",
           "vdm_affinity", "vdm_refine"]

logger = logging.getLogger(__name__)

def self_tuning_weights(edges, sim):
    """Self-tuning Gaussian edge weights (Zelnik-Manor & Perona [4]_ of the module).

    Parameters
    ----------
    edges : ndarray of int, shape (n, K)
        Edge ``i -> edges[i, c]``, the K best-correlated neighbours of each image.
    sim : ndarray, shape (n, K)
        Their normalised correlations ``s_ij``.

    Returns
    -------
    ndarray, float64, shape (n, K)
        ``w_ij = exp(-d_ij^2 / (sigma_i sigma_j))`` with ``d_ij^2 = 2 - 2 s_ij`` and
        ``sigma_i`` the distance to image i's farthest edge; 1 where ``d_ij`` and the
        bandwidth are both 0 (identical images).
    """
    d2 = np.maximum(2.0 - 2.0 * np.asarray(sim, np.float64), 0.0)
    sigma = np.sqrt(d2.max(axis=1))                       # distance to the K-th edge
    bw = sigma[:, None] * sigma[edges]
    weights = np.exp(-d2 / np.maximum(bw, np.finfo(np.float64).tiny))
    return np.where((d2 == 0) & (bw == 0), 1.0, weights)


def connection_matrix(edges, weights, refl, angle):
    """Normalised O(2) connection matrix of a directed neighbour graph, symmetrised.

    Parameters
    ----------
    edges : ndarray of int, shape (n, K)
        Edge ``i -> edges[i, c]``; entries equal to ``i`` are ignored.
    weights : ndarray of float, shape (n, K)
        Non-negative edge weights (0 drops the edge).
    refl, angle : ndarray, shape (n, K)
        The edge's group element ``g = R(angle) M^refl`` (mirror first, then rotate
        counter-clockwise by ``angle`` radians), mapping image ``edges[i, c]`` onto image i.

    Returns
    -------
    S : scipy.sparse.csr_matrix, float64, shape (2n, 2n)
        ``D^{-1/2} (A + A^T) D^{-1/2}`` where ``A`` has the 2 x 2 block ``w rho(g)`` at
        ``(i, edges[i, c])`` and ``rho(R(a) M^r) = rot(a) diag(1, (-1)^r)``; ``D`` repeats the
        degree of each node twice.
    degree : ndarray, float64, shape (n,)
        Weighted degree of each node in ``A + A^T`` (0 for an isolated node, whose rows of
        ``S`` are then zero).
    """
    edges = np.asarray(edges)
    n, K = edges.shape
    i = np.repeat(np.arange(n), K)
    j = edges.ravel()
    w = np.asarray(weights, np.float64).ravel()
    keep = (j != i) & (w > 0)
    i, j, w = i[keep], j[keep], w[keep]
    a = np.asarray(angle, np.float64).ravel()[keep]
    sgn = np.where(np.asarray(refl).ravel()[keep], -1.0, 1.0)
    degree = np.bincount(i, w, n) + np.bincount(j, w, n)
    inv = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    scale = w * inv[i] * inv[j]
    c, s = np.cos(a) * scale, np.sin(a) * scale
    # rot(a) diag(1, sgn) = [[cos a, -sgn sin a], [sin a, sgn cos a]], row-major.
    blk = np.stack([c, -sgn * s, s, sgn * c], 1)
    rows = (2 * i[:, None] + np.array([0, 0, 1, 1])).ravel()
    cols = (2 * j[:, None] + np.array([0, 1, 0, 1])).ravel()
    A = scipy.sparse.csr_matrix((blk.ravel(), (rows, cols)), shape=(2 * n, 2 * n))
    return (A + A.T).tocsr(), degree


def vdm_embedding(S, n_eigs, *, t=1.0, solver="chebyshev", seed=0, tol=1e-2):
    """Unit-length complex VDM embedding from the top eigenvectors of a connection matrix.

    Parameters
    ----------
    S : sparse matrix, shape (2n, 2n)
        Real symmetric connection matrix (:func:`connection_matrix`).
    n_eigs : int
        Eigenvectors kept (largest eigenvalues).
    t : float, optional
        Diffusion time: coordinate l is weighted by ``|lam_l|^t``.
    solver, seed, tol
        See :func:`top_eigenpairs`.

    Returns
    -------
    z : ndarray, complex128, shape (n, n_eigs)
        ``z_i = (|lam_l|^t (phi_l[2i] + 1j phi_l[2i + 1]))_l / norm``; zero rows for isolated
        nodes.
    lam : ndarray, shape (n_eigs,)
        The eigenvalues, in descending order.
    """
    lam, vec = top_eigenpairs(S, n_eigs, solver=solver, seed=seed, tol=tol)
    z = (vec[0::2] + 1j * vec[1::2]) * np.abs(lam) ** t
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0), lam


def vdm_affinity(z, rows, candidates):
    """Normalised vector diffusion affinities of candidate pairs, plain and mirrored.

    Parameters
    ----------
    z : ndarray, complex, shape (n, m)
        Unit-length embedding (:func:`vdm_embedding`).
    rows : ndarray of int, shape (b,)
    candidates : ndarray of int, shape (b, K)

    Returns
    -------
    plain, mirrored : ndarray, float, shape (b, K)
        ``|<z_i, z_j>|^2`` and ``|z_i^T z_j|^2`` for ``i = rows[r]``, ``j = candidates[r, c]``
        (in the real precision of ``z``).
    """
    z = np.asarray(z)
    real = np.float64 if z.dtype == np.complex128 else np.float32
    zr = np.ascontiguousarray(z, dtype=np.result_type(real, np.complex64)).view(real)
    a = zr[rows]
    ar, ai = a[:, 0::2], a[:, 1::2]
    # Columns: Re and Im of <z_i, z_j> = sum conj(a) b, then of z_i^T z_j = sum a b, as
    # weights of the candidates' interleaved (Re b, Im b): all four in one batched product
    # over the gathered candidates (the gather is the memory traffic that sets the cost).
    W = np.empty((a.shape[0], ar.shape[1], 2, 4), real)
    W[:, :, 0] = np.stack([ar, -ai, ar, ai], axis=2)
    W[:, :, 1] = np.stack([ai, ar, -ai, ar], axis=2)
    P = np.matmul(zr[candidates], W.reshape(a.shape[0], -1, 4))            # (b, K, 4)
    P *= P
    return P[..., 0] + P[..., 1], P[..., 2] + P[..., 3]


def _top(score, k, *, ordered=True):
    """Column indices of the ``k`` largest entries of each row: in descending order (ties in
    column order), or in no particular order with ``ordered=False``."""
    if score.shape[1] <= k:
        return np.argsort(-score, axis=1, kind="stable") if ordered else \
            np.broadcast_to(np.arange(score.shape[1]), score.shape)
    part = np.argpartition(-score, k - 1, axis=1)[:, :k]
    if not ordered:
        return part
    part.sort(axis=1)                        # column order first, for a deterministic tie order
    sub = np.take_along_axis(score, part, 1)
    return np.take_along_axis(part, np.argsort(-sub, axis=1, kind="stable"), 1)


def _hermitian_lift(z):
    """Unit features ``u_i`` with ``Re<u_i, u_j> = |<z_i, z_j>|^2`` and conj for the mirror."""
    m = z.shape[1]
    iu = np.triu_indices(m, 1)
    diag = np.abs(z) ** 2
    upper = np.sqrt(2) * z[:, iu[0]] * np.conj(z[:, iu[1]])
    u = np.concatenate([diag, upper], 1)
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    return (u / np.where(norm > 0, norm, 1.0)).astype(np.complex64)


def _unique_rows(table):
    """Each row's distinct entries in ascending order, repeats replaced by -1 (in place)."""
    table.sort(axis=1)
    table[:, 1:][table[:, 1:] == table[:, :-1]] = -1
    return table


def vdm_refine(coef, k, candidates, n_nbor, *, n_graph=10, n_eigs=48, n_search_eigs=8,
               n_search=None, t=1.0, alignment_weight=1.0, nn="exact", seed=0,
               alignment=None, solver="chebyshev", tol=5e-2, block_size=256, rescore=1.5,
               n_initial=None):
    """Refine a neighbour table with vector diffusion maps.

    See the module documentation for the method.

    Parameters
    ----------
    coef : ndarray, complex, shape (n, M)
        Denoised steerable coefficients (:attr:`RIRClass2D.coef`): rotating an image by
        ``alpha`` multiplies component m by ``exp(-i k_m alpha)``; mirroring conjugates it.
    k : ndarray of int, shape (M,)
        Angular frequency of each component, sorted ascending.
    candidates : ndarray of int, shape (n, K)
        Initial neighbours of each image (column 0 the image itself), e.g. the bispectrum
        search with ``K = n_candidates``; the ``n_graph`` of them with the best rotational
        correlation become graph edges.  ``K > n_graph``.
    n_nbor : int
        Columns of the refined table, including the image itself.
    n_graph : int, optional
        Edges per image before symmetrisation (default 10).
    n_eigs : int, optional
        Eigenvectors of the connection matrix used for the affinity (default 48).
    n_search_eigs : int, optional
        Leading eigenvectors whose Hermitian lift is searched globally (default 8; feature
        dimension ``n_search_eigs (n_search_eigs + 1) / 2``).
    n_search : int, optional
        Candidates per image from the global search, re-ranked by the full affinity (default
        ``2 n_nbor``, at most n; at n = 30,000, SNR 1/8, 200 instead of 100 changed the
        accuracy by 0.01 points for 35 % more time).
    t : float, optional
        Diffusion time (default 1).
    alignment_weight : float, optional
        Weight ``w`` of the rotationally aligned correlation ``s_ij`` in the final score
        ``(affinity + w s_ij) / (1 + w)`` of the ``2 n_nbor`` candidates with the highest
        affinity (default 1; this aligns ``2 n_nbor`` more pairs per image).  0 ranks by the
        affinity alone.
    rescore : float, optional
        With ``alignment_weight > 0``, the ``rescore * n_nbor`` candidates of highest affinity
        are aligned and re-scored (default 1.5; at n = 30,000, SNR 1/8, 1.2 to 2 give the same
        accuracy within 0.1 point, and at n = 10,000, SNR 1/16, 1.5 and 2 both 80.1 %).
    n_initial : int, optional
        Initial candidates added to the global search's pool: the ``n_initial`` with the best
        rotational correlation (default ``2 n_nbor``, at most K; at n = 10,000, SNR 1/16,
        100 and all 200 give 80.1 %, and at n = 100,000, SNR 1/8, 98.1 % either way, with
        a third less affinity work).
    nn : {"exact", "approximate"}, optional
        Global search method (:mod:`classavg.classification.neighbors`).
    seed : int, optional
        Seeds the eigen-solver's start block and the approximate index.
    alignment : tuple of ndarray, optional
        ``(sim, refl, angle)`` of ``candidates`` from :func:`~classavg.classification.rerank.align_candidates`, when already
        computed.
    solver : {"chebyshev", "arpack"}, optional
        Eigen-solver (:func:`top_eigenpairs`).
    tol : float, optional
        Eigen-solver tolerance (default 5e-2: the ranking needs no more; against 1e-2 it
        saves a filter pass, 2 s at n = 100,000, with the same accuracy: 80.1 % at
        n = 10,000, SNR 1/16, 97.2 % instead of 97.0 % at SNR 1/4, 98.2 % instead of 98.1 %
        at n = 100,000, SNR 1/8).
    block_size : int, optional
        Rows processed at once in the alignment and the re-ranking.

    Returns
    -------
    class_indices : ndarray of int64, shape (n, n_nbor)
        Column 0 is the image itself, then neighbours by decreasing score.
    class_refl : ndarray of bool, shape (n, n_nbor)
        True where the neighbour is a mirrored one (its mirrored affinity is the larger).
    class_distances : ndarray of float32, shape (n, n_nbor)
        ``sqrt(2 - 2 score)``, ascending, with the score ``(affinity + w s_ij) / (1 + w)``
        (the affinity alone when ``w = 0``); column 0 is 0.

    References
    ----------
    .. [1] A. Singer, H.-T. Wu, "Vector diffusion maps and the connection Laplacian",
       Comm. Pure Appl. Math. 65(8), 1067-1144 (2012).
    """
    candidates = np.asarray(candidates)
    if candidates.ndim != 2:
        raise ValueError(f"candidates must be a 2-D table, got shape {candidates.shape}")
    n, K = candidates.shape
    n_nbor = check_int("n_nbor", n_nbor, min=1, max=n)
    n_graph = check_int("n_graph", n_graph, min=1, max=K - 1)
    n_eigs = check_int("n_eigs", n_eigs, min=1)
    n_search_eigs = check_int("n_search_eigs", n_search_eigs, min=1, max=n_eigs)
    n_search = check_int("n_search", 2 * n_nbor if n_search is None else n_search,
                         min=n_nbor)
    n_search = min(n_search, n)
    n_initial = min(check_int("n_initial", 2 * n_nbor if n_initial is None else n_initial,
                              min=1), K)
    t = check_float("t", t, min=0.0)
    alignment_weight = check_float("alignment_weight", alignment_weight, min=0.0)
    rescore = check_float("rescore", rescore, min=1.0)
    nn = check_choice("nn", nn, ("exact", "approximate"))
    solver = check_choice("solver", solver, ("chebyshev", "arpack"))
    tol = check_float("tol", tol, min=0.0, min_inclusive=False)
    check_random_state(seed)

    if alignment is None:
        alignment = align_candidates(coef, k, candidates, block_size=block_size)
    sim, refl, angle = alignment
    # Graph edges: the n_graph best-correlated candidates of each row (never the row itself),
    # in row blocks: full-size float64 / int64 temporaries of the n x K table would add
    # ~5 GB at n = 10^6.
    top = np.empty((n, n_graph), np.int64)
    initial = np.empty((n, n_initial), candidates.dtype)
    for s0 in range(0, n, 65536):
        s1 = min(s0 + 65536, n)
        score = np.array(sim[s0:s1], dtype=np.float32)
        score[candidates[s0:s1] == np.arange(s0, s1)[:, None]] = -np.inf
        best = _top(score, n_initial, ordered=False)
        initial[s0:s1] = np.take_along_axis(candidates[s0:s1], best, 1)
        if n_graph <= n_initial:
            # The edges are the best n_graph of the best n_initial: partition the small
            # table again rather than the whole row.
            sub = np.take_along_axis(score, best, 1)
            top[s0:s1] = np.take_along_axis(best, _top(sub, n_graph, ordered=False), 1)
        else:
            top[s0:s1] = _top(score, n_graph, ordered=False)
    edges = np.take_along_axis(candidates, top, 1)
    weights = self_tuning_weights(edges, np.take_along_axis(sim, top, 1))
    S, degree = connection_matrix(edges, weights, np.take_along_axis(refl, top, 1),
                                  np.take_along_axis(angle, top, 1))
    # Only the isolated nodes' rows of the alignment are used from here on; the full
    # n x K tables (9 bytes per entry) go before the eigen-solve, the memory peak at large n.
    isolated = np.flatnonzero(degree == 0)
    sim_iso, refl_iso, cand_iso = sim[isolated], refl[isolated], candidates[isolated]
    del alignment, sim, refl, angle, top, edges, weights
    if S.shape[0] // 2 > DENSE_EIGEN_MAX_NODES:
        S = S.astype(np.float32)          # what the iterative solver uses; frees the float64
    z, lam = vdm_embedding(S, n_eigs, t=t, solver=solver, seed=seed, tol=tol)
    logger.info("VDM: %d nodes, %d non-zeros, eigenvalues %.4f .. %.4f", n, S.nnz, lam[0],
                lam[-1])
    del S

    # Global search on the Hermitian lift of the leading coordinates.
    feat = _hermitian_lift(z[:, :n_search_eigs])
    if nn == "exact":
        pool = exact_neighbors(feat, n_search)[0]
    else:
        pool = approximate_neighbors(feat, n_search, seed=seed)[0]
    del feat
    # The best initial candidates stay in the pool: a truncated (or, for clean data with
    # several disconnected views, exactly degenerate) spectrum can miss some of them.
    pool = _unique_rows(np.concatenate([pool, initial], axis=1))

    # Affinity ranking; with alignment_weight > 0 the best rescore * n_nbor go on to the
    # combined score.
    n_keep = n_nbor if alignment_weight == 0 else min(int(rescore * n_nbor), pool.shape[1])
    ci = np.empty((n, n_keep), np.int64)
    cr = np.empty((n, n_keep), bool)
    ca = np.empty((n, n_keep), np.float64)
    z = np.ascontiguousarray(z, dtype=np.complex64)
    for s in progress(range(0, n, block_size), total=-(-n // block_size), desc="VDM"):
        rows = np.arange(s, min(s + block_size, n))
        cand = pool[rows]
        plain, mirrored = vdm_affinity(z, rows, cand)
        aff = np.maximum(plain, mirrored)
        aff[cand == rows[:, None]] = np.inf                  # the row's own image first
        aff[cand < 0] = -np.inf                              # repeats (_unique_rows)
        # (Re-scored below when alignment_weight > 0: then the order does not matter.)
        order = _top(aff, n_keep, ordered=alignment_weight == 0)
        ci[rows] = np.take_along_axis(cand, order, 1)
        cr[rows] = np.take_along_axis(mirrored > plain, order, 1)
        ca[rows] = np.minimum(np.take_along_axis(aff, order, 1), 1.0)
    if alignment_weight > 0:
        corr = align_candidates(coef, k, ci, block_size=block_size)[0]
        score = (ca + alignment_weight * corr) / (1.0 + alignment_weight)
        score[ci == np.arange(n)[:, None]] = np.inf             # the row's own image first
        order = np.argsort(-score, axis=1, kind="stable")[:, :n_nbor]
        ci, cr = np.take_along_axis(ci, order, 1), np.take_along_axis(cr, order, 1)
        ca = np.minimum(np.take_along_axis(score, order, 1), 1.0)
    cd = np.sqrt(np.maximum(2.0 - 2.0 * ca, 0.0)).astype(np.float32)
    if isolated.size:
        # No edge, no diffusion: keep the rotational-correlation order of the candidates.
        score = np.where(cand_iso == isolated[:, None], np.inf, sim_iso)
        order = np.argsort(-score, axis=1, kind="stable")[:, :min(n_nbor, K)]
        m = order.shape[1]
        ci[isolated, :m] = np.take_along_axis(cand_iso, order, 1)
        cr[isolated, :m] = np.take_along_axis(refl_iso, order, 1)
        cd[isolated, :m] = np.sqrt(np.maximum(
            2.0 - 2.0 * np.minimum(np.take_along_axis(score, order, 1), 1.0), 0.0))
    cd[:, 0] = 0.0
    cr[:, 0] = False
    return ci, cr, cd
