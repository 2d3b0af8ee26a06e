"""The symmetry-folded dense Fourier-Bessel transform."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg.basis import DenseFBTransform, FourierBesselBasis2D

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("L", [16, 17, 64])
def test_dense_transform_equals_nufft_transform(L):
    # Dense = exact pixel sums (tests/basis/test_fourier_bessel.py checks them against the
    # basis functions); the NUFFT transform is accurate to ~1e-6 at the band edge for white
    # noise at L = 64.
    B = FourierBesselBasis2D(L, dtype=np.float64, method="nufft")
    D = DenseFBTransform(B)
    f = RNG.normal(size=(3, L, L))
    a = B.expand(f)
    assert np.abs(D.expand(f) - a).max() < 1e-5 * np.abs(a).max()
    g = B.evaluate(a)
    assert np.abs(D.evaluate(a) - g).max() < 1e-5 * np.abs(g).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_basis_expands_with_the_folded_transform(dtype):
    B = FourierBesselBasis2D(32, dtype=dtype)
    assert B.dense_
    f = RNG.normal(size=(5, 32, 32)).astype(dtype)
    out = B.expand(f)
    assert out.dtype == np.result_type(dtype, np.complex64) and out.shape == (5, B.count)
    np.testing.assert_array_equal(out, DenseFBTransform(B).expand(f))
    # (a single image may take another BLAS kernel: rounding-level differences)
    np.testing.assert_allclose(B.expand(f[0]), out[0], rtol=0, atol=1e-5 * np.abs(out).max())


def test_device_path_and_pickling(numpy_as_cuda):
    B = FourierBesselBasis2D(24, bandlimit=0.5)
    D = DenseFBTransform(B)
    f = RNG.normal(size=(4, 24, 24)).astype(np.float32)
    cpu = D.expand(f)
    np.testing.assert_allclose(D.expand(f, device="cuda"), cpu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(B.expand(f, device="cuda"), cpu, rtol=0, atol=1e-6)
    assert "cuda" in D._on_device                   # matrices copied to the device once
    clone = pickle.loads(pickle.dumps(D))
    assert clone._on_device == {}                    # device copies stay behind
    np.testing.assert_array_equal(clone.expand(f), cpu)
    # The basis carries its built transform to Dask workers.
    B.expand(f)
    assert pickle.loads(pickle.dumps(B))._dense is not None


def test_bad_shape():
    D = DenseFBTransform(FourierBesselBasis2D(16))
    with pytest.raises(ValueError, match=r"images must have shape \(n, 16, 16\)"):
        D.expand(np.zeros((2, 16, 17)))


def _rotate90(f):
    """f rotated counter-clockwise by 90 degrees about pixel (L // 2, L // 2): g(x, y) =
    f(y, -x) with x = column - L // 2, y = row - L // 2 (pixels that would come from outside
    the box lie outside the disk and are set to zero)."""
    L = f.shape[-1]
    c = L // 2
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    src_i, src_j = 2 * c - j, i
    ok = (src_i >= 0) & (src_i < L)
    return np.where(ok, f[..., np.clip(src_i, 0, L - 1), src_j], 0.0)


def _mirror(f):
    """f mirrored y -> -y about row L // 2 (the row that would come from outside is zeroed)."""
    L = f.shape[-1]
    c = L // 2
    src = 2 * c - np.arange(L)
    ok = (src >= 0) & (src < L)
    return np.where(ok[:, None], f[..., np.clip(src, 0, L - 1), :], 0.0)


@settings(max_examples=20, deadline=None)
@given(L=st.sampled_from([8, 9, 16, 17, 24]), seed=st.integers(0, 2**32 - 1))
def test_folding_signs_exact_symmetries(L, seed):
    # White noise exercises every sign of the fold: a quarter turn multiplies a_kq by
    # exp(-i k pi / 2) and the mirror conjugates it, exactly (the pixel grid has both
    # symmetries inside the disk), up to float64 rounding.
    D = DenseFBTransform(FourierBesselBasis2D(L, dtype=np.float64))
    k = FourierBesselBasis2D(L).k
    f = np.random.default_rng(seed).normal(size=(2, L, L))
    a = D.expand(f)
    scale = np.abs(a).max()
    np.testing.assert_allclose(D.expand(_rotate90(f)), a * np.exp(-0.5j * np.pi * k),
                               rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(D.expand(_mirror(f)), np.conj(a), rtol=0, atol=1e-12 * scale)
