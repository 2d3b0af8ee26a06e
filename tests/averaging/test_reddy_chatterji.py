"""Reddy-Chatterji averagers: rotation (with the 180-degree ambiguity) and translation.

Tolerances: the log-polar magnitude is sampled at 1 degree and refined by a parabola; the
discrete Fourier magnitude of a pixel image is only approximately rotation covariant, so the
rotation is good to ~0.1 degree (median) and ~1 degree (max) on clean blobs; we test the
issue's 2-degree target on the max and 0.5 degree on the median.  The translation (phase
correlation, parabolic peak) is tested at 0.1 px (median) and 0.5 px (max); the brute-force
variant refines the shift on the exact correlation and is held to 0.25 px.
"""

import numpy as np
import pytest

from classavg.averaging import BFSReddyChatterjiAverager2D, ReddyChatterjiAverager2D
from classavg.averaging.reddy_chatterji import log_polar_matrix

from .conftest import angle_diff_deg, disk_rel_error, make_blob_class


@pytest.fixture(scope="module")
def rc_class():
    return make_blob_class(64, 30, max_shift=2.0, seed=21)


def errors(res, bc):
    return (angle_diff_deg(res.rotations[0], bc.rotations),
            np.linalg.norm(res.shifts[0] - bc.shifts, axis=1))


def test_rc_recovers_rotation_and_shift(rc_class):
    bc = rc_class
    A = ReddyChatterjiAverager2D(bc.source(np.float32))
    out = A.average(bc.class_indices, bc.class_refl)
    rot, sh = errors(A.alignment, bc)
    assert np.median(rot) < 0.5 and rot.max() < 2.0
    assert np.median(sh) < 0.1 and sh.max() < 0.5
    # both halves of the 180-degree ambiguity occur and are resolved
    assert np.any(np.abs(bc.rotations) > np.pi / 2) and np.any(np.abs(bc.rotations) < np.pi / 2)
    assert disk_rel_error(out[0], bc.reference, 64) < 0.02


def test_bfs_rc_recovers_rotation_and_shift(rc_class):
    bc = rc_class
    A = BFSReddyChatterjiAverager2D(bc.source(np.float32), radius=3)
    res = A.align(bc.class_indices, bc.class_refl)
    rot, sh = errors(res, bc)
    assert np.median(rot) < 0.5 and rot.max() < 2.0
    assert np.median(sh) < 0.05 and sh.max() < 0.25
    assert BFSReddyChatterjiAverager2D(bc.source(), batch_size=1).radius == 8


def test_log_polar_matrix_interpolates_smooth_functions():
    L = 32
    y, x = np.meshgrid(np.arange(L) - 16, np.arange(L) - 16, indexing="ij")
    f = np.cos(0.3 * x) + 0.5 * np.sin(0.2 * y)
    S = log_polar_matrix(L, 8, 12, 2.0, 12.0)
    r = np.geomspace(2.0, 12.0, 8)[:, None]
    th = np.pi * np.arange(12)[None] / 12
    exact = np.cos(0.3 * r * np.cos(th)) + 0.5 * np.sin(0.2 * r * np.sin(th))
    np.testing.assert_allclose((S @ f.ravel()).reshape(8, 12), exact, atol=5e-3)


def test_bad_parameters(rc_class):
    src = rc_class.source()
    with pytest.raises(ValueError, match="n_angles must be an integer >= 4"):
        ReddyChatterjiAverager2D(src, n_angles=2)
    with pytest.raises(ValueError, match="band must satisfy"):
        ReddyChatterjiAverager2D(src, band=(0.3, 0.1))
    with pytest.raises(ValueError, match="band must be a pair"):
        ReddyChatterjiAverager2D(src, band=0.2)
    with pytest.raises(ValueError, match="radius must be an integer >= 0"):
        BFSReddyChatterjiAverager2D(src, radius=-2)
