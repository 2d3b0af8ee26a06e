"""Tests of classavg.metrics.classification with viewing directions of known geometry."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from classavg.metrics import (
    NeighborAccuracy,
    chance_fraction,
    mirror_flag_agreement,
    neighbor_accuracy,
    neighbor_ceiling,
    neighbor_view_angles,
    viewing_directions,
)


def unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tilted(v0, angles_deg, rng):
    """Unit vectors at the given angles from v0 (random azimuths)."""
    a = np.cross(v0, rng.normal(size=3))
    a /= np.linalg.norm(a)
    out = []
    for ang in angles_deg:
        axis = Rotation.from_rotvec(v0 * rng.uniform(0, 2 * np.pi)).apply(a)
        out.append(Rotation.from_rotvec(axis * np.radians(ang)).apply(v0))
    return np.array(out)


def brute_force_ceiling(class_indices, v, t):
    m = class_indices.shape[1] - 1
    vals = []
    for r in class_indices[:, 0]:
        ang = np.degrees(np.arccos(np.clip(np.abs(v @ v[r]), 0, 1)))
        ang[r] = np.inf
        vals.append(min(np.sum(ang <= t), m) / m)
    return np.mean(vals)


def test_known_angles_up_to_mirroring():
    rng = np.random.default_rng(0)
    v0 = unit(rng, 1)[0]
    angles = np.array([0.5, 4.0, 9.0, 15.0, 30.0, 60.0, 85.0])
    nb = tilted(v0, angles, rng)
    nb[1::2] *= -1  # the opposite view is the same picture (mirrored)
    v = np.vstack([v0, nb])
    ci = np.arange(v.shape[0])[None]
    np.testing.assert_allclose(neighbor_view_angles(ci, v), angles[None], atol=1e-9)
    acc = neighbor_accuracy(ci, v, thresholds=(5, 10, 20))
    assert acc.fraction[5.0] == pytest.approx(2 / 7)
    assert acc.fraction[10.0] == pytest.approx(3 / 7)
    assert acc.fraction[20.0] == pytest.approx(4 / 7)
    assert acc.median_angle == pytest.approx(15.0)
    assert acc.ceiling[10.0] == pytest.approx(3 / 7)  # only those exist in the data set


def test_rotations_accepted_and_viewing_direction_is_third_column():
    rng = np.random.default_rng(1)
    R = Rotation.random(40, random_state=rng).as_matrix()
    np.testing.assert_array_equal(viewing_directions(R), R[:, :, 2])
    ci = np.stack([rng.permutation(40)[:5] for _ in range(6)])
    np.testing.assert_allclose(neighbor_view_angles(ci, R), neighbor_view_angles(ci, R[:, :, 2]))


def test_chance_level_for_random_views():
    rng = np.random.default_rng(2)
    n, n_classes, n_nbor = 20_000, 4_000, 11
    v = unit(rng, n)
    ci = rng.integers(0, n, size=(n_classes, n_nbor))
    acc = neighbor_accuracy(ci, v, thresholds=(5, 10, 20), ceiling=False)
    pairs = n_classes * (n_nbor - 1)
    for t in (5.0, 10.0, 20.0):
        p = chance_fraction(t)
        assert acc.chance[t] == p
        assert abs(acc.fraction[t] - p) < 4 * np.sqrt(p * (1 - p) / pairs)
    assert chance_fraction(10.0) == pytest.approx(0.01519, abs=1e-5)
    # |v_r . v_j| ~ U(0, 1): median arccos(1/2) = 60 deg, sd of the sample median ~0.2 deg
    assert acc.median_angle == pytest.approx(60.0, abs=1.0)
    assert acc.ceiling is None


def test_perfect_classification_is_100_percent():
    rng = np.random.default_rng(3)
    centres = unit(rng, 20)
    n_nbor = 8
    members = [tilted(c, rng.uniform(0, 1.5, n_nbor), rng) for c in centres]
    v = np.vstack(members)
    v[1::3] *= -1
    ci = np.arange(v.shape[0]).reshape(20, n_nbor)
    acc = neighbor_accuracy(ci, v, thresholds=(5, 10))
    assert acc.fraction == {5.0: 1.0, 10.0: 1.0}
    assert acc.ceiling == {5.0: 1.0, 10.0: 1.0}
    assert acc.median_angle < 3.0
    d = acc.to_dict()
    assert d["fraction_5"] == 1.0 and d["ceiling_10"] == 1.0 and d["n_nbor"] == n_nbor
    assert isinstance(acc, NeighborAccuracy)


@pytest.mark.parametrize("n_nbor", [2, 6, 25])
def test_ceiling_matches_brute_force(n_nbor):
    rng = np.random.default_rng(4 + n_nbor)
    # a mix of tight clusters (counts above n_nbor) and sparse random views (counts below)
    clusters = [tilted(c, rng.uniform(0, 12, 15), rng) for c in unit(rng, 10)]
    v = np.vstack(clusters + [unit(rng, 250)])
    v[rng.random(v.shape[0]) < 0.5] *= -1
    v[7] = v[3]  # exact duplicate directions
    v[8] = -v[3]
    n = v.shape[0]
    refs = np.concatenate([[3, 3, 7, 8], rng.integers(0, n, 60)])
    ci = np.column_stack([refs, rng.integers(0, n, (refs.size, n_nbor - 1))])
    ts = (2.0, 5.0, 10.0, 20.0, 45.0)
    got = neighbor_ceiling(ci, v, ts)
    for t in ts:
        assert got[t] == pytest.approx(brute_force_ceiling(ci, v, t), abs=1e-12)
    assert got == neighbor_accuracy(ci, v, ts).ceiling


def test_ceiling_large_n_all_classes():
    """n = 100,000 views, one class per image: about n (1 - cos t) views lie within t."""
    rng = np.random.default_rng(5)
    n, n_nbor = 100_000, 50
    v = unit(rng, n)
    ci = np.column_stack([np.arange(n), rng.integers(0, n, (n, n_nbor - 1))])
    got = neighbor_ceiling(ci, v, (1.0, 10.0))
    assert got[10.0] == 1.0  # ~1519 views within 10 deg >> 49
    # count within 1 deg ~ Poisson(lam): ceiling = E[min(K, 49)] / 49
    lam = (n - 1) * chance_fraction(1.0)
    k = np.arange(200)
    logp = k * np.log(lam) - lam - np.cumsum(np.log(np.maximum(k, 1)))
    expected = np.sum(np.exp(logp) * np.minimum(k, 49)) / 49
    assert got[1.0] == pytest.approx(expected, abs=0.01)


def test_mirror_flag_agreement():
    rng = np.random.default_rng(6)
    n_classes, n_close = 30, 6
    vs = []
    for c in range(n_classes):
        v0 = unit(rng, 1)[0]
        close = tilted(v0, rng.uniform(0, 8, n_close), rng)
        far = tilted(v0, rng.uniform(30, 80, 3), rng)
        nb = np.vstack([close, far])
        nb[rng.random(nb.shape[0]) < 0.5] *= -1
        vs.append(np.vstack([v0, nb]))
    v = np.vstack(vs)
    ci = np.arange(v.shape[0]).reshape(n_classes, 1 + n_close + 3)
    dot = np.einsum("cd,cmd->cm", v[ci[:, 0]], v[ci[:, 1:]])
    truth = dot < 0
    assert mirror_flag_agreement(ci, truth, v) == 1.0
    assert mirror_flag_agreement(ci, ~truth, v) == 0.0
    # far neighbours (> 10 deg) are not scored
    flags = truth.copy()
    flags[:, n_close:] = ~flags[:, n_close:]
    assert mirror_flag_agreement(ci, flags, v) == 1.0
    # half of the close flags wrong
    flags = truth.copy()
    flags[:, :3] = ~flags[:, :3]
    assert mirror_flag_agreement(ci, flags, v) == pytest.approx(0.5)
    # full-width flags (column 0 for the reference) and 0/1 integers are accepted
    full = np.column_stack([np.zeros(n_classes, bool), truth]).astype(int)
    assert mirror_flag_agreement(ci, full, v) == 1.0
    assert np.isnan(mirror_flag_agreement(ci, truth, v, max_angle=1e-6))
    with pytest.raises(ValueError, match="class_refl"):
        mirror_flag_agreement(ci, truth[:, :2], v)


def test_validation():
    v = unit(np.random.default_rng(7), 10)
    with pytest.raises(ValueError, match=r"class_indices must be indices in \[0, 10\)"):
        neighbor_view_angles(np.array([[0, 10]]), v)
    with pytest.raises(ValueError, match="n_nbor >= 2"):
        neighbor_view_angles(np.array([[0], [1]]), v)
    with pytest.raises(TypeError, match="integer"):
        neighbor_view_angles(np.array([[0.0, 1.0]]), v)
    with pytest.raises(ValueError, match="thresholds"):
        neighbor_accuracy(np.array([[0, 1]]), v, thresholds=(10, 90))
    with pytest.raises(ValueError, match="viewing_directions"):
        neighbor_view_angles(np.array([[0, 1]]), v[:, :2])
