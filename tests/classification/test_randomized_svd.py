"""Randomized SVD (Halko, Martinsson & Tropp 2011) against the exact SVD."""

import subprocess
import sys

import numpy as np
import pytest

from classavg.classification._randomized_svd import randomized_svd


def matrix_with_spectrum(m, n, s, seed=0):
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((m, s.size)))[0]
    v = np.linalg.qr(rng.standard_normal((n, s.size)))[0]
    return (u * s) @ v.T, v


@pytest.mark.parametrize("shape", [(300, 120), (120, 300)])
def test_leading_triplets_match_the_exact_svd(shape):
    """Spectrum 0.8^j, k = 10, p = 20 oversamples, q = 1 power iteration: the captured range
    misses the leading subspace by about (s_{k+p} / s_k)^(2q+1) = 0.8^60 ~ 1e-6 (Halko et al.
    2011, sec. 10), and singular values err by its square; bounds: 1e-8 relative on the
    values, 1e-6 on the subspace, and the rank-k residual is the optimal s_{k+1}."""
    m, n = shape
    s = 0.8 ** np.arange(min(m, n))
    A, v = matrix_with_spectrum(m, n, s)
    k = 10
    u, sv, vt = randomized_svd(A, k, n_oversamples=20, n_iter=1, seed=3)
    np.testing.assert_allclose(sv, s[:k], rtol=1e-8)
    # the right singular subspace: || (I - V V^T) vt^T || small
    resid = vt.T - v[:, :k] @ (v[:, :k].T @ vt.T)
    assert np.linalg.norm(resid, 2) < 1e-6
    assert np.linalg.norm(A - (u * sv) @ vt, 2) <= s[k] * (1 + 1e-8)
    np.testing.assert_allclose(u.T @ u, np.eye(k), atol=1e-12)
    assert np.all(vt[np.arange(k), np.abs(vt).argmax(1)] > 0)     # deterministic signs


def test_seeded_and_float32():
    A, _ = matrix_with_spectrum(200, 80, 0.7 ** np.arange(80))
    a = randomized_svd(A.astype(np.float32), 5, seed=1)
    b = randomized_svd(A.astype(np.float32), 5, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a[1], 0.7 ** np.arange(5), rtol=1e-4)   # float32 rounding
    with pytest.raises(ValueError, match="k must lie in"):
        randomized_svd(A, 0)


def test_classavg_does_not_need_scikit_learn():
    """scikit-learn is not a dependency (issue 18): classify with it hidden."""
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import classavg\n"
            "sim = classavg.Simulation(32, 60, seed=0)\n"
            "ci, cr, cd = classavg.RIRClass2D(sim, n_nbor=4, fspca_components=40, "
            "bispectrum_components=30, sample_n=200).classify()\n"
            "assert ci.shape == (60, 4)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
