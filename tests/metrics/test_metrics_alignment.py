"""Tests of classavg.metrics.alignment against a closed-form projection model.

Model: the volume is a sum of isotropic 3D Gaussian blobs at points ``c_i``.  By the
convention ``I(p) = integral vol(R (p, z)) dz`` the image of rotation ``R`` is a sum of 2D
Gaussians centred at ``(R^T c_i)[:2]``; an offset ``o`` moves them to ``(R^T c_i)[:2] + o``.
Image operations move blob centres ``q`` forward: mirror ``q -> S q`` (``S = diag(1, -1)``),
shift ``q -> q + s``, counter-clockwise rotation ``q -> Rot(a) q``.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from classavg._grid import centered_grid
from classavg.metrics import (
    alignment_error_summary,
    alignment_mask,
    angle_error,
    class_true_alignment,
    rotation_errors,
    shift_errors,
    true_relative_alignment,
    true_relative_shift,
)

F = np.diag([1.0, -1.0, -1.0])
S = np.diag([1.0, -1.0])
# An asymmetric 3D point cloud (no in-plane symmetry from any view).
BLOBS = np.array([[0.0, 0.0, 0.0], [9.0, 1.0, -2.0], [-3.0, 6.0, 4.0], [2.0, -7.0, 1.0],
                  [-6.0, -2.0, -5.0], [4.0, 4.0, 8.0]])
WEIGHTS = np.array([1.0, 0.8, 0.6, 0.9, 0.5, 0.7])


def rz(b):
    c, s = np.cos(b), np.sin(b)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot2(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def blob_centres(R, offset=(0.0, 0.0)):
    """2D centres (m, 2) of the blobs in the image of rotation R with an offset."""
    return (BLOBS @ R)[:, :2] + np.asarray(offset)


def aligned_centres(centres_j, mirror, shift, rotation):
    """Blob centres after mirror -> shift -> counter-clockwise rotation."""
    q = centres_j @ S.T if mirror else centres_j
    return (q + shift) @ rot2(rotation).T


def render(centres, L, sigma=1.6):
    """Image (L, L) indexed [y, x] of 2D Gaussians at ``centres`` ((x, y) pixels)."""
    y, x = centered_grid(L)
    d2 = (x[None] - centres[:, 0, None, None]) ** 2 + (y[None] - centres[:, 1, None, None]) ** 2
    return np.tensordot(WEIGHTS, np.exp(-d2 / (2 * sigma**2)), axes=1)


def rotation_from_quaternion(q):
    q = np.asarray(q, dtype=np.float64)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def test_same_view_gives_b():
    rng = np.random.default_rng(0)
    Rr = Rotation.random(50, random_state=rng).as_matrix()
    b = rng.uniform(-np.pi, np.pi, 50)
    Rj = Rr @ np.stack([rz(x) for x in b])
    al = true_relative_alignment(Rr, Rj)
    assert not al.mirror.any()
    np.testing.assert_allclose(angle_error(al.rotation, b), 0, atol=1e-9)
    np.testing.assert_allclose(al.view_angle, 0, atol=1e-6)
    assert np.all((al.rotation > -np.pi) & (al.rotation <= np.pi))


def test_opposite_view_gives_mirror_and_minus_b():
    rng = np.random.default_rng(1)
    Rr = Rotation.random(50, random_state=rng).as_matrix()
    b = rng.uniform(-np.pi, np.pi, 50)
    Rj = Rr @ F @ np.stack([rz(x) for x in b])
    al = true_relative_alignment(Rr, Rj)
    assert al.mirror.all()
    np.testing.assert_allclose(angle_error(al.rotation, -b), 0, atol=1e-9)
    np.testing.assert_allclose(al.view_angle, 0, atol=1e-6)


def test_scalar_and_broadcast_shapes():
    al = true_relative_alignment(np.eye(3), rz(0.4))
    assert al.mirror.shape == () and al.rotation.shape == ()
    assert np.isclose(al.rotation, 0.4)
    Rj = np.stack([rz(0.1), F @ rz(0.2)])
    al = true_relative_alignment(np.eye(3), Rj)
    np.testing.assert_array_equal(al.mirror, [False, True])
    np.testing.assert_allclose(al.rotation, [0.1, -0.2])
    with pytest.raises(ValueError, match="ref_rotations"):
        true_relative_alignment(np.eye(2), rz(0.1))


@settings(max_examples=60, deadline=None)
@given(
    q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
        lambda v: np.linalg.norm(v) > 0.1),
    b=st.floats(-np.pi, np.pi),
    mirror=st.booleans(),
    o_r=st.tuples(st.floats(-15, 15), st.floats(-15, 15)),
    o_j=st.tuples(st.floats(-15, 15), st.floats(-15, 15)),
)
def test_property_alignment_maps_member_blobs_onto_reference(q, b, mirror, o_r, o_j):
    Rr = rotation_from_quaternion(q)
    Rj = Rr @ (F if mirror else np.eye(3)) @ rz(b)
    al = true_relative_alignment(Rr, Rj)
    assert bool(al.mirror) == mirror
    s = true_relative_shift(al.mirror, al.rotation, o_r, o_j)
    got = aligned_centres(blob_centres(Rj, o_j), bool(al.mirror), s, float(al.rotation))
    np.testing.assert_allclose(got, blob_centres(Rr, o_r), atol=1e-8)


def test_shift_formula_explicit():
    # s = Rot(-c) o_r - Q o_j
    o_r, o_j = np.array([3.0, -1.0]), np.array([2.0, 5.0])
    c = 0.7
    s = true_relative_shift(False, c, o_r, o_j)
    np.testing.assert_allclose(s, rot2(-c) @ o_r - o_j)
    s = true_relative_shift(True, c, o_r, o_j)
    np.testing.assert_allclose(s, rot2(-c) @ o_r - S @ o_j)
    # The reference aligned to itself needs nothing.
    np.testing.assert_allclose(true_relative_shift(False, 0.0, o_r, o_r), 0, atol=1e-12)


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("b", [0.6, -2.3])
def test_pixel_images_mirror_shift_rotate(mirror, b):
    """End to end on pixel arrays with the array-level mirror of docs/conventions.md."""
    L = 64
    Rr = Rotation.from_euler("zyz", [0.3, 1.1, -0.7]).as_matrix()
    Rj = Rr @ (F if mirror else np.eye(3)) @ rz(b)
    o_r, o_j = np.array([2.5, -1.5]), np.array([-3.0, 2.0])
    img_r = render(blob_centres(Rr, o_r), L)
    img_j = render(blob_centres(Rj, o_j), L)
    al = true_relative_alignment(Rr, Rj)
    s = true_relative_shift(al.mirror, al.rotation, o_r, o_j)
    out = img_j
    if al.mirror:  # y -> -y about the centre pixel, even L
        out = out[(L - np.arange(L)) % L, :]
    # translate by s: out'(p) = out(p - s), via the Fourier shift theorem
    ky, kx = np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L), indexing="ij")
    out = np.fft.ifft2(np.fft.fft2(out) * np.exp(-2j * np.pi * (kx * s[0] + ky * s[1]))).real
    # rotate counter-clockwise by c: out'(p) = out(Rot(-c) p)
    y, x = centered_grid(L)
    qx, qy = np.einsum("ij,jyx->iyx", rot2(-float(al.rotation)), np.stack([x, y]))
    out = map_coordinates(out, [qy + L // 2, qx + L // 2], order=3, mode="constant")
    assert np.max(np.abs(out - img_r)) < 0.01 * img_r.max()


def test_nearly_equal_views_procrustes_angle():
    rng = np.random.default_rng(3)
    n = 200
    Rr = Rotation.random(n, random_state=rng).as_matrix()
    b = rng.uniform(-np.pi, np.pi, n)
    tilt_deg = 3.0
    axes = rng.normal(size=(n, 3))
    axes[:, 2] = 0  # tilt about an in-plane axis
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    tilt = Rotation.from_rotvec(axes * np.radians(tilt_deg)).as_matrix()
    mirror = rng.random(n) < 0.5
    Rj = Rr @ np.where(mirror[:, None, None], F, np.eye(3)) @ np.stack([rz(x) for x in b]) @ tilt
    al = true_relative_alignment(Rr, Rj)
    np.testing.assert_array_equal(al.mirror, mirror)
    np.testing.assert_allclose(al.view_angle, tilt_deg, atol=1e-6)
    expected = np.where(mirror, -b, b)
    # A tilt about an in-plane axis has no twist to first order: error O(tilt^2) (~0.08 deg).
    assert np.max(angle_error(al.rotation, expected)) < 0.1


def test_class_true_alignment_and_errors():
    rng = np.random.default_rng(4)
    n = 30
    R = Rotation.random(n, random_state=rng).as_matrix()
    off = rng.uniform(-5, 5, (n, 2))
    ci = np.stack([rng.permutation(n)[:6] for _ in range(8)])
    ca = class_true_alignment(R, ci, off)
    assert ca.mirror.shape == ci.shape and ca.shift.shape == ci.shape + (2,)
    assert not ca.mirror[:, 0].any()
    np.testing.assert_allclose(ca.rotation[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(ca.shift[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(ca.view_angle[:, 0], 0, atol=1e-6)
    pair = true_relative_alignment(R[ci[2, 0]], R[ci[2, 3]])
    assert np.isclose(pair.rotation, ca.rotation[2, 3])
    assert class_true_alignment(R, ci).shift is None

    summ = alignment_error_summary(ca.rotation, ca.shift, ca.rotation, ca.shift)
    assert summ["median_rotation_error_deg"] == 0 and summ["median_shift_error_px"] == 0
    assert summ["n"] == ci.size
    est_rot = ca.rotation + np.radians(2.0)
    est_shift = ca.shift + np.array([0.3, 0.4])
    mask = np.ones(ci.shape, bool)
    mask[:, 0] = False
    summ = alignment_error_summary(est_rot, est_shift, ca.rotation, ca.shift, mask)
    assert np.isclose(summ["median_rotation_error_deg"], 2.0)
    assert np.isclose(summ["median_shift_error_px"], 0.5)
    assert summ["n"] == mask.sum()
    summ = alignment_error_summary(est_rot, None, ca.rotation, None)
    assert np.isnan(summ["median_shift_error_px"])


def test_angle_error_wraps():
    assert np.isclose(angle_error(0.1, 2 * np.pi - 0.1), np.degrees(0.2))
    assert np.isclose(angle_error(np.pi, -np.pi), 0.0)
    assert np.isclose(angle_error(0.0, np.pi), 180.0)
    assert np.isclose(angle_error(-3.0, 3.0), np.degrees(2 * np.pi - 6.0))
    e = angle_error(np.random.default_rng(0).uniform(-20, 20, 1000), 0.0)
    assert e.min() >= 0 and e.max() <= 180


def test_error_helpers_and_mask():
    est = np.array([[0.0, 0.1], [0.2, 0.3]])
    true = np.zeros((2, 2))
    np.testing.assert_allclose(rotation_errors(est, true), np.degrees(est.ravel()))
    m = np.array([[False, True], [False, True]])
    np.testing.assert_allclose(rotation_errors(est, true, m), np.degrees([0.1, 0.3]))
    np.testing.assert_allclose(shift_errors(np.ones((2, 2, 2)), np.zeros((2, 2, 2)), m),
                               [np.sqrt(2)] * 2)
    with pytest.raises(ValueError, match="mask"):
        rotation_errors(est, true, np.ones(3, bool))
    va = np.array([[0.0, 2.0, 7.0], [0.0, 4.0, 1.0]])
    np.testing.assert_array_equal(alignment_mask(va, 5.0),
                                  [[False, True, False], [False, True, True]])
    em = np.array([[False, True, False], [False, False, False]])
    tm = np.zeros((2, 3), bool)
    np.testing.assert_array_equal(alignment_mask(va, 5.0, em, tm),
                                  [[False, False, False], [False, True, True]])
    with pytest.raises(ValueError, match="together"):
        alignment_mask(va, 5.0, em)
