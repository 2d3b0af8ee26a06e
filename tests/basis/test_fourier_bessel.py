"""Tests of the fast Fourier-Bessel basis against dense evaluation and analytic images."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import jv

from classavg._grid import centered_grid
from classavg.basis import FourierBesselBasis2D


def gaussian_blobs(L, centers, sigmas, amps, angle=0.0, mirror=False):
    """Closed-form image of 2D Gaussian blobs, optionally rotated counter-clockwise by
    ``angle`` and/or mirrored (y -> -y, applied first) about the centre pixel."""
    y, x = centered_grid(L)
    c = np.asarray(centers, dtype=float).copy()
    if mirror:
        c[:, 1] *= -1
    ca, sa = np.cos(angle), np.sin(angle)
    rx, ry = ca * c[:, 0] - sa * c[:, 1], sa * c[:, 0] + ca * c[:, 1]
    d2 = (x[None] - rx[:, None, None]) ** 2 + (y[None] - ry[:, None, None]) ** 2
    return np.einsum("m,mij->ij", amps, np.exp(-d2 / (2 * np.asarray(sigmas)[:, None, None] ** 2)))


@pytest.fixture(scope="module")
def blob_params():
    rng = np.random.default_rng(1)
    return rng.uniform(-11, 11, (7, 2)), rng.uniform(2.0, 4.0, 7), rng.uniform(0.5, 1.5, 7)


@pytest.fixture(scope="module")
def basis64():
    return FourierBesselBasis2D(64, dtype=np.float64)


def dense_basis(B):
    """psi_kq sampled on the pixel grid, (count, L, L), the slow definition."""
    y, x = centered_grid(B.L)
    r, th = np.hypot(x, y), np.arctan2(y, x)
    psi = (B.norms[:, None, None] * jv(B.k[:, None, None], B.zeros[:, None, None] * r / B.radius)
           * np.exp(1j * B.k[:, None, None] * th))
    return np.where(r < B.radius, psi, 0)


@pytest.mark.parametrize("L, method, tol", [(16, "nufft", 1e-8), (17, "nufft", 1e-8),
                                             (24, "nufft", 1e-8), (64, "nufft", 1e-6),
                                             (17, "dense", 1e-12), (64, "dense", 1e-12),
                                             (24, "auto", 1e-8)])
def test_fast_expand_equals_dense_sum(L, method, tol):
    # The fast transform is an exact identity (Jacobi-Anger) up to NUFFT and interpolation
    # error, so it must match the dense pixel sums even for white noise images; the dense
    # method is that sum.
    B = FourierBesselBasis2D(L, dtype=np.float64, method=method)
    assert B.dense_ == (method != "nufft")           # small bases: dense under "auto"
    psi = dense_basis(B)
    f = np.random.default_rng(L).normal(size=(3, L, L))
    dense = np.einsum("nij,cij->nc", f, np.conj(psi))
    fast = B.expand(f)
    assert np.linalg.norm(fast - dense) / np.linalg.norm(dense) < tol
    # evaluate is the synthesis sum_kq a psi_kq + c.c. for k > 0
    a = fast
    synth = np.einsum("nc,cij->nij", a * B.weights, psi).real
    # (the type-1 NUFFT: relative error ~1e-8 at L = 64)
    assert np.linalg.norm(B.evaluate(a) - synth) / np.linalg.norm(synth) < 1e-8 * L / 16


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-6), (np.float32, 2e-5)])
def test_round_trip_band_limited(blob_params, dtype, tol):
    # Smooth blobs (sigma >= 2 px) inside the disk are band-limited well below Nyquist, so
    # the basis represents them to the NUFFT tolerance.
    B = FourierBesselBasis2D(64, dtype=dtype)
    f = gaussian_blobs(64, *blob_params).astype(dtype)
    g = B.evaluate(B.expand(f))
    m = B._mask
    assert g.dtype == dtype
    assert np.linalg.norm((g - f)[m]) / np.linalg.norm(f[m]) < tol
    assert np.all(g[~m] == 0)


def test_energy_weights(basis64, blob_params):
    f = gaussian_blobs(64, *blob_params)
    a = basis64.expand(f)
    assert np.sum(basis64.weights * np.abs(a) ** 2) == pytest.approx(
        np.sum(f[basis64._mask] ** 2), rel=1e-8)


@settings(max_examples=15, deadline=None)
@given(angle=st.floats(-2 * np.pi, 2 * np.pi))
def test_rotate_matches_rotated_image(basis64, blob_params, angle):
    # Tolerance 1e-6: the representation error of the band-limited blobs (float64).
    f = gaussian_blobs(64, *blob_params)
    expected = gaussian_blobs(64, *blob_params, angle=angle)
    got = basis64.evaluate(basis64.rotate(basis64.expand(f), angle))
    m = basis64._mask
    assert np.linalg.norm((got - expected)[m]) / np.linalg.norm(expected[m]) < 1e-6


def test_reflect_matches_flip(basis64, blob_params):
    f = gaussian_blobs(64, *blob_params)
    flipped = np.roll(f[::-1], 1, axis=0)          # y -> -y about row L // 2 (even L)
    assert np.allclose(flipped, gaussian_blobs(64, *blob_params, mirror=True))
    got = basis64.evaluate(basis64.reflect(basis64.expand(f)))
    m = basis64._mask
    assert np.linalg.norm((got - flipped)[m]) / np.linalg.norm(flipped[m]) < 1e-6


@settings(max_examples=20, deadline=None)
@given(alpha=st.floats(-np.pi, np.pi), beta=st.floats(-np.pi, np.pi))
def test_steering_group_laws(basis64, alpha, beta):
    a = np.random.default_rng(0).normal(size=(2, basis64.count)) * (1 + 1j)
    rot = basis64.rotate
    assert np.allclose(rot(rot(a, alpha), beta), rot(a, alpha + beta))
    assert np.allclose(rot(a, 2 * np.pi), a)
    # mirror then rotate by alpha == rotate by -alpha then mirror
    assert np.allclose(rot(basis64.reflect(a), alpha), basis64.reflect(rot(a, -alpha)))


def test_batched_rotate_angles(basis64):
    a = np.random.default_rng(2).normal(size=(3, basis64.count)) + 0j
    angles = np.array([0.1, -0.5, 2.0])
    got = basis64.rotate(a, angles)
    for i in range(3):
        assert np.allclose(got[i], basis64.rotate(a[i], angles[i]))


def test_batches_and_single_image_agree(blob_params):
    B = FourierBesselBasis2D(32, dtype=np.float64, batch_size=2)
    f = np.random.default_rng(3).normal(size=(5, 32, 32))
    a = B.expand(f)
    assert a.shape == (5, B.count)
    assert np.allclose(a[3], B.expand(f[3]))
    assert B.evaluate(a[1]).shape == (32, 32)


def test_band_limit_and_layout():
    B = FourierBesselBasis2D(64, bandlimit=0.5)
    assert np.all(B.zeros < 0.5 * np.pi * 32)
    assert B.count < FourierBesselBasis2D(64).count
    for k, s in enumerate(B.k_slices):
        assert np.all(B.k[s] == k)
        assert np.array_equal(B.q[s], np.arange(s.stop - s.start))


@pytest.mark.parametrize("kwargs, match", [
    (dict(L=2), "L must be an integer >= 4"),
    (dict(L=32, bandlimit=0), "bandlimit must be a number > 0"),
    (dict(L=32, dtype=np.int32), "dtype must be float32 or float64"),
    (dict(L=32, method="fft"), "method must be one of"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FourierBesselBasis2D(**kwargs)


def test_bad_image_shape(basis64):
    with pytest.raises(ValueError, match=r"images must have shape \(n, 64, 64\)"):
        basis64.expand(np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="coef must have shape"):
        basis64.evaluate(np.zeros((2, 5), complex))
