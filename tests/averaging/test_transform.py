"""Mirror / shift / rotate helpers and the polar transformer against closed-form images."""

import numpy as np
import pytest

from classavg.averaging._transform import (
    PolarTransformer,
    mirror_images,
    rotate_images,
    shift_images,
    transform_images,
    transform_members,
)
from classavg.basis import FourierBesselBasis2D

from .conftest import disk_rel_error, gaussian_blobs

RNG = np.random.default_rng(5)
CEN = RNG.uniform(-8, 8, (5, 2))
SIG = RNG.uniform(2.0, 3.5, 5)
AMP = RNG.uniform(0.5, 1.5, 5)


def blobs(L, refl=False, shift=(0.0, 0.0), rot=0.0):
    """Closed form of the blob image mirrored, then shifted, then rotated (the convention)."""
    c = CEN.copy()
    if refl:
        c[:, 1] *= -1
    c = c + np.asarray(shift)
    ca, sa = np.cos(rot), np.sin(rot)
    c = np.stack([ca * c[:, 0] - sa * c[:, 1], sa * c[:, 0] + ca * c[:, 1]], 1)
    return gaussian_blobs(L, c, SIG, AMP)


@pytest.fixture(scope="module")
def basis64():
    return FourierBesselBasis2D(64, dtype=np.float64)


@pytest.mark.parametrize("L", [64, 65])
def test_mirror_even_odd(L):
    f = blobs(L)
    np.testing.assert_allclose(mirror_images(f), blobs(L, refl=True), atol=1e-10)
    np.testing.assert_array_equal(mirror_images(mirror_images(f[None]))[0], f)
    # the centre row is fixed
    np.testing.assert_array_equal(mirror_images(f)[L // 2], f[L // 2])


@pytest.mark.parametrize("L", [64, 65])
def test_shift_integer_is_roll_and_subpixel_is_exact(L):
    f = blobs(L)
    np.testing.assert_allclose(shift_images(f, (3, -2)), np.roll(f, (-2, 3), axis=(0, 1)),
                               atol=1e-12)
    s = np.array([[1.3, -0.7], [-2.25, 0.5]])
    out = shift_images(np.stack([f, f]), s)
    for i in range(2):
        np.testing.assert_allclose(out[i], blobs(L, shift=s[i]), atol=1e-7)
    assert shift_images(f.astype(np.float32), (0.5, 0.5)).dtype == np.float32


def test_rotate_exact_in_disk(basis64):
    f = blobs(64)
    out = rotate_images(np.stack([f, f]), [0.3, -2.0], basis=basis64)
    for i, a in enumerate([0.3, -2.0]):
        assert disk_rel_error(out[i], blobs(64, rot=a), 64) < 1e-6
    assert np.all(out[:, 0, 0] == 0)                  # zero outside the disk


def test_transform_images_order(basis64):
    f = blobs(64)
    refl, sh, rot = [False, True], np.array([[1.5, -0.5], [-1.0, 2.0]]), [0.8, -1.1]
    out = transform_images(np.stack([f, f]), refl, sh, rot, basis=basis64)
    for i in range(2):
        exact = blobs(64, refl=refl[i], shift=sh[i], rot=rot[i])
        assert disk_rel_error(out[i], exact, 64) < 1e-6


def test_polar_expand_equals_basis_expand():
    # The polar transformer shares the basis's NUFFT path (the default expansion at this
    # size is the dense pixel sum, equal to it within 1e-6 only).
    basis = FourierBesselBasis2D(64, dtype=np.float64, method="nufft")
    tr = PolarTransformer(basis)
    f = RNG.normal(size=(3, 64, 64))                   # white noise: exact identity
    a = basis.expand(f)
    assert np.abs(tr.expand(f) - a).max() < 1e-10 * np.abs(a).max()


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-6), (np.float32, 2e-4)])
def test_transform_members_matches_closed_form(dtype, tol):
    basis = FourierBesselBasis2D(64, dtype=dtype)
    f = blobs(64).astype(dtype)
    # 2 classes x 3 members, all reusing image 0 of the pool with different transforms
    refl = np.array([[False, True, True], [True, False, False]])
    sh = RNG.uniform(-2, 2, (2, 3, 2))
    rot = RNG.uniform(-np.pi, np.pi, (2, 3))
    idx = np.zeros((2, 3), int)
    pool = np.stack([f, np.zeros_like(f)])
    out = transform_members(pool, refl, sh, rot, basis, index=idx, output="pixels")
    coef = transform_members(pool, refl, sh, rot, basis, index=idx)
    assert out.shape == (2, 3, 64, 64) and out.dtype == dtype
    assert coef.shape == (2, 3, basis.count)
    for c in range(2):
        for j in range(3):
            exact = blobs(64, refl=refl[c, j], shift=sh[c, j], rot=rot[c, j])
            assert disk_rel_error(out[c, j], exact, 64) < tol
    # weighted sums == weighted sums of the members
    w = RNG.uniform(0, 1, (2, 3))
    summed = transform_members(pool, refl, sh, rot, basis, index=idx, weights=w,
                               output="pixels")
    np.testing.assert_allclose(summed, np.einsum("cj,cjxy->cxy", w, out),
                               atol=tol * np.abs(out).max())


def test_transform_members_aligns_a_blob_class(blob_class):
    # The defining property of the fixture and of the convention: applying the true
    # alignment (mirror -> shift -> rotate) to every member gives the reference.
    bc = blob_class
    basis = FourierBesselBasis2D(64, dtype=np.float64)
    out = transform_members(bc.images, bc.refl[None], bc.shifts[None], bc.rotations[None],
                            basis, output="pixels")[0]
    assert disk_rel_error(out, np.broadcast_to(bc.reference, out.shape), 64) < 1e-5


def test_transform_members_bad_input(basis64):
    f = np.zeros((2, 64, 64))
    with pytest.raises(ValueError, match="output must be one of"):
        transform_members(f, [[False]], [[[0, 0]]], [[0]], basis64, index=[[0]], output="x")
    with pytest.raises(ValueError, match="shifts must have shape"):
        shift_images(f, [1, 2, 3])


def test_member_transformer_methods_agree():
    from classavg.averaging._transform import MemberTransformer
    B = FourierBesselBasis2D(32, dtype=np.float64)
    f = np.stack([blobs(64)[16:48, 16:48], RNG.normal(size=(32, 32))])
    refl, sh, rot = [[True, False]], [[[0.5, -1.25], [1.0, 0.0]]], [[0.3, -2.0]]
    dense = MemberTransformer(B, method="dense").transform(f, [[0, 1]], refl, sh, rot)
    nufft = MemberTransformer(B, method="nufft").transform(f, [[0, 1]], refl, sh, rot)
    assert np.abs(dense - nufft).max() < 1e-7 * np.abs(dense).max()
    with pytest.raises(ValueError, match="method must be one of"):
        MemberTransformer(B, method="fast")


def test_coefficient_cache_refills_when_full():
    from classavg.averaging.base import CoefficientCache
    calls = []

    def compute(idx):
        calls.append(idx.copy())
        return np.repeat(idx[:, None].astype(complex), 3, axis=1)

    cache = CoefficientCache(20, 3, np.complex128, max_bytes=5 * 3 * 16)   # 5 rows
    np.testing.assert_array_equal(cache.get(np.array([1, 2, 3]), compute)[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(cache.get(np.array([2, 3, 4]), compute)[:, 0], [2, 3, 4])
    assert [c.tolist() for c in calls] == [[1, 2, 3], [4]]
    # 3 new rows do not fit (4 used): the cache restarts with this request only
    np.testing.assert_array_equal(cache.get(np.array([4, 7, 8, 9]), compute)[:, 0],
                                  [4, 7, 8, 9])
    assert calls[-1].tolist() == [4, 7, 8, 9]
    # requests larger than the cache bypass it
    big = np.arange(10)
    np.testing.assert_array_equal(cache.get(big, compute)[:, 0], big)
