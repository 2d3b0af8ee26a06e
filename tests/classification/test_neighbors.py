"""Neighbour search over images and mirrors: exact against brute force, approximate recall."""

import numpy as np
import pytest

from classavg.classification.neighbors import approximate_neighbors, exact_neighbors, has_faiss


def clustered_features(n, d=40, clusters=50, seed=0):
    """Unit complex features in clusters; half the images are mirrored (conjugated)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(clusters, d)) + 1j * rng.normal(size=(clusters, d))
    u = c[rng.integers(0, clusters, n)] + 0.7 * (rng.normal(size=(n, d))
                                                  + 1j * rng.normal(size=(n, d)))
    flip = rng.random(n) < 0.5
    u[flip] = np.conj(u[flip])
    return (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.complex64), flip


def test_exact_matches_brute_force():
    u, _ = clustered_features(300)
    ci, cr, cd = exact_neighbors(u, 8, block_size=64)
    u64 = u.astype(np.complex128)
    plain = (u64 @ u64.conj().T).real
    mirr = (u64 @ u64.T).real                     # Re<u_i, conj(u_j)>
    best = np.maximum(plain, mirr)
    np.fill_diagonal(best, np.inf)
    for i in range(0, 300, 37):
        order = np.argsort(-best[i], kind="stable")[:8]
        assert set(ci[i]) == set(order)
        assert ci[i, 0] == i and cd[i, 0] == 0
        j = ci[i, 1:]
        assert np.array_equal(cr[i, 1:], mirr[i, j] > plain[i, j])
        assert np.allclose(cd[i, 1:], np.sqrt(np.maximum(2 - 2 * best[i, j], 0)), atol=1e-3)


def test_mirror_flags_follow_conjugation():
    u, flip = clustered_features(400, clusters=20)
    ci, cr, _ = exact_neighbors(u, 6)
    # neighbour j is mirrored relative to reference i iff exactly one of them was conjugated
    expected = flip[ci[:, 1:]] != flip[ci[:, [0]]]
    assert np.mean(cr[:, 1:] == expected) > 0.99


@pytest.mark.skipif(not has_faiss(), reason="faiss not installed (pip install classavg[fast])")
def test_approximate_recall_and_determinism():
    u, _ = clustered_features(6000, d=60, clusters=200, seed=3)
    e = exact_neighbors(u, 15)
    a = approximate_neighbors(u, 15, seed=0)
    b = approximate_neighbors(u, 15, seed=0)
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[0][:, 0], np.arange(6000))
    recall = np.mean([len(set(x) & set(y)) / 15 for x, y in zip(e[0], a[0])])
    assert recall > 0.95
    assert all(len(set(row)) == 15 for row in a[0][:500])        # each image at most once


@pytest.mark.parametrize("block_size", [37, 64, 1000])
def test_candidate_table_matches_full_table(block_size):
    # Blocks smaller than, around and larger than the candidate count: the symmetric blocked
    # search must find the same neighbours whatever the block layout.
    u, _ = clustered_features(300)
    full = exact_neighbors(u, 40, block_size=block_size)
    reference = exact_neighbors(u, 40, block_size=300)
    cand = exact_neighbors(u, 40, block_size=block_size, candidates_only=True)
    assert cand.dtype == np.int32 and cand.shape == (300, 40)
    assert np.array_equal(cand[:, 0], np.arange(300))
    for a, b, c in zip(full[0], reference[0], cand):
        assert set(a) == set(b) == set(c)
    assert np.array_equal(full[1], reference[1])
