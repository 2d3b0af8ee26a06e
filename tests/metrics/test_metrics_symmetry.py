"""Tests of classavg.metrics.symmetry: two-fold axes of maps made of Gaussian blobs (with and
without a half-turn symmetry), the group they generate, and the pair relations up to it.

Model: the image of rotation ``R`` is ``I(q) = integral V(R q) dz`` (docs/conventions.md), so a
map with ``V(g p) = V(p)`` gives the same image for ``R`` and ``g R``.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from classavg.metrics.symmetry import same_class_pair_relations, symmetry_group, twofold_axes

# An asymmetric point cloud (voxels from the centre, (x, y, z)).
BLOBS = np.array([[0.0, 0.0, 0.0], [7.0, 1.0, -2.0], [-3.0, 5.0, 3.0], [2.0, -6.0, 1.0],
                  [-5.0, -2.0, -4.0], [3.0, 3.0, 6.0]])
WEIGHTS = np.array([1.0, 0.8, 0.6, 0.9, 0.5, 0.7])
L = 32


def half_turn(u):
    u = np.asarray(u, float) / np.linalg.norm(u)
    return 2 * np.outer(u, u) - np.eye(3)


def render(points, weights, sigma=1.5):
    """Gaussian blobs at ``points`` (x, y, z, voxels from the centre ``L // 2``), ``[z, y, x]``."""
    z, y, x = np.indices((L, L, L)) - L // 2
    grid = np.stack([x, y, z], -1)[..., None, :]
    d2 = ((grid - points) ** 2).sum(-1)
    return (weights * np.exp(-d2 / (2 * sigma ** 2))).sum(-1)


def rz(b):
    c, s = np.cos(b), np.sin(b)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def c2_axis():
    return np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


@pytest.fixture(scope="module")
def c2_volume(c2_axis):
    g = half_turn(c2_axis)
    pts = BLOBS + np.array([1.0, 0.0, 0.0])   # off the axis, so that the two halves differ
    return render(np.concatenate([pts, pts @ g.T]), np.concatenate([WEIGHTS, WEIGHTS]))


def test_twofold_axis_of_a_symmetrised_map(c2_volume, c2_axis):
    axes, corr = twofold_axes(c2_volume, n_search=600)
    assert axes.shape[0] >= 1
    # the axis (up to its sign) within 1 degree; an exact symmetry correlates ~1 (the
    # order-1 interpolation of the half-turn smooths a little)
    angle = np.degrees(np.arccos(min(1.0, abs(axes[0] @ c2_axis))))
    assert angle < 1.0
    assert corr[0] > 0.99
    assert len(axes) == 1          # no other half-turn maps the blobs onto themselves


def test_no_axis_in_an_asymmetric_map():
    axes, corr = twofold_axes(render(BLOBS, WEIGHTS), n_search=600)
    assert axes.shape == (0, 3) and corr.shape == (0,)


def test_twofold_axes_rejects_a_non_cubic_array():
    with pytest.raises(ValueError, match="cubic 3D array"):
        twofold_axes(np.zeros((8, 8, 9)))


@pytest.mark.parametrize("axes, order", [
    (np.zeros((0, 3)), 1),
    ([[0, 0, 1]], 2),
    ([[0, 0, 1], [1, 0, 0]], 4),                                  # D2
    ([[0, 0, 1], [1, 0, 0], [0, 1, 0]], 4),                       # the third is the product
    ([[1, 0, 0], [np.cos(np.pi / 3), np.sin(np.pi / 3), 0]], 6),              # D3
    ([[0, 0, 1], [1, 0, 0], [np.cos(np.pi / 3), np.sin(np.pi / 3), 0]], 12),  # D6
])
def test_symmetry_group_closes(axes, order):
    group = symmetry_group(axes)
    assert group.shape == (order, 3, 3)
    np.testing.assert_allclose(group[0], np.eye(3))
    for a in group:                                               # closed under products
        np.testing.assert_allclose(a @ a.T, np.eye(3), atol=1e-12)
        for b in group:
            assert np.min(np.abs(group - a @ b).max(axis=(1, 2))) < 1e-9


def test_symmetry_group_rejects_axes_that_generate_no_finite_group():
    with pytest.raises(ValueError, match="not a finite point group"):
        symmetry_group([[1, 0, 0], [np.cos(1.0), np.sin(1.0), 0]], max_order=40)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), b=st.floats(-179.0, 179.0),
       psi0=st.floats(0.0, 360.0))
def test_pairs_related_through_the_symmetry_count_as_related(seed, b, psi0):
    # particle j shows the view of particle i turned by b (the same image for g R_j and R_j);
    # its own view g v_i is the mirror of v_i when the axis lies across v_i
    rng = np.random.default_rng(seed)
    g = half_turn([0.0, 0.0, 1.0])
    tilt = np.deg2rad(rng.uniform(87.0, 93.0))                    # the view across the axis
    r_i = Rotation.from_euler("ZYZ", [rng.uniform(0, 2 * np.pi), tilt,
                                      rng.uniform(0, 2 * np.pi)]).as_matrix()
    r_j = g @ r_i @ rz(np.deg2rad(b))
    rotations = np.stack([r_i, r_j])
    psi = np.array([psi0, psi0 + b])
    numbers = np.array([1, 1])
    plain = same_class_pair_relations(numbers, psi, rotations, [1])
    assert plain == {"pairs": 1, "related_by_psi": 0.0, "mirror_only": 100.0}
    sym = same_class_pair_relations(numbers, psi, rotations, [1], group=symmetry_group([[0, 0, 1]]))
    assert sym == {"pairs": 1, "related_by_psi": 100.0, "mirror_only": 0.0}
    # a wrong psi (off by 30 degrees) is not related, but not mirror-only either
    wrong = same_class_pair_relations(numbers, psi + np.array([0.0, 30.0]), rotations, [1],
                                      group=symmetry_group([[0, 0, 1]]))
    assert wrong == {"pairs": 1, "related_by_psi": 0.0, "mirror_only": 0.0}


def test_a_real_mirror_pair_stays_mirror_only_without_that_symmetry():
    # v_j = -v_i of an asymmetric map: no rotation relates the two images
    r_i = Rotation.from_euler("ZYZ", [0.4, 1.1, 2.0]).as_matrix()
    r_j = r_i @ np.diag([1.0, -1.0, -1.0])                        # the opposite view
    out = same_class_pair_relations(np.array([3, 3]), np.array([10.0, 50.0]),
                                    np.stack([r_i, r_j]), [3], group=symmetry_group([]))
    assert out == {"pairs": 1, "related_by_psi": 0.0, "mirror_only": 100.0}


def test_images_of_r_and_g_r_agree(c2_volume, c2_axis):
    # the premise of the module: a map with V(g p) = V(p) gives one image for R and g R
    from scipy.ndimage import map_coordinates

    g = half_turn(c2_axis)
    r = Rotation.from_euler("ZYZ", [0.3, 1.2, -0.7]).as_matrix()

    def project(rot):
        q = np.indices((L, L, L)).reshape(3, -1)[::-1] - L // 2        # (x, y, z) of the image box
        p = rot @ q + L // 2                                           # volume point R q
        v = map_coordinates(c2_volume, p[::-1], order=1).reshape(L, L, L)   # [z, y, x] of q
        return v.sum(axis=0)

    a, b = project(r), project(g @ r)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_neighbour_angles_up_to_the_symmetry():
    # a neighbour showing the view g v of its reference's view v is the same image
    from classavg.metrics import neighbor_accuracy, neighbor_view_angles

    g = half_turn([0.0, 0.0, 1.0])
    rng = np.random.default_rng(7)
    v = rng.standard_normal((6, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    views = np.concatenate([v, v @ g.T])                 # image i + 6 shows g v_i
    ci = np.stack([np.arange(6), np.arange(6) + 6], axis=1)
    plain = neighbor_view_angles(ci, views)
    group = symmetry_group([[0, 0, 1]])
    np.testing.assert_allclose(neighbor_view_angles(ci, views, group=group), 0.0, atol=1e-6)
    # without the group: the angle between v and its half-turn, 2 x its polar angle (mod 90)
    polar = np.degrees(np.arccos(np.abs(v[:, 2])))
    np.testing.assert_allclose(plain[:, 0], np.minimum(2 * polar, 180 - 2 * polar), atol=1e-6)
    acc = neighbor_accuracy(ci, views, group=group, ceiling=True)
    assert acc.fraction[10.0] == 1.0 and acc.ceiling is None
    assert acc.chance[10.0] == pytest.approx(2 * (1 - np.cos(np.deg2rad(10.0))))
