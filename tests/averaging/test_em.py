"""EMAverager2D: convergence on clean classes, the frame of the reference, mirrored members,
the noise estimate, and the gain over hard alignment at low SNR (fixed seeds).

Tolerances.  On noise-free blob classes EM converges to the aligned average: the average
equals the reference to ~2e-3 relative (the posterior is a delta on a grid re-centred on the
refined pose; the remaining error is the 1e-3 factorization of the last M step and the
sub-pixel interpolation), tested at 1e-2; the refined MAP poses are within ~0.2 degree /
0.1 px of the truth (measured), tested at 0.5 degree / 0.25 px (the issue's targets).
"""

from __future__ import annotations

import numpy as np
import pytest

from classavg.averaging.em import EMAverager2D, _compose
from classavg.averaging.ftk import FTKAverager2D
from classavg.averaging.stackers import MedianImageStacker
from classavg.metrics import class_true_alignment
from classavg.metrics.fidelity import masked_correlation
from classavg.sources.base import ArrayImageSource

from .conftest import add_noise, angle_diff_deg, disk_rel_error, make_blob_class


def _simulated_classes(n_classes, m, snr, seed, radius=2.0, L=64):
    """Classes of one viewing direction each (half the members seen from the opposite side,
    i.e. mirrored), random in-plane angles and offsets in the disk of ``radius`` (reference
    offset 0): the images, the table, the true mirror flags and the clean references."""
    from classavg.sources._projection import _uniform_rotations
    from classavg.sources.simulation import Simulation

    rng = np.random.default_rng(seed)
    R = _uniform_rotations(n_classes, seed)
    b = rng.uniform(-np.pi, np.pi, (n_classes, m))
    b[:, 0] = 0.0
    Rz = np.zeros((n_classes, m, 3, 3))
    Rz[..., 0, 0], Rz[..., 0, 1] = np.cos(b), -np.sin(b)
    Rz[..., 1, 0], Rz[..., 1, 1] = np.sin(b), np.cos(b)
    Rz[..., 2, 2] = 1.0
    mirror = rng.random((n_classes, m)) < 0.5
    mirror[:, 0] = False
    F = np.diag([1.0, -1.0, -1.0])
    rots = np.einsum("kij,kmjl->kmil", R, np.where(mirror[..., None, None], F @ Rz, Rz))
    r = radius * np.sqrt(rng.uniform(0, 1, (n_classes, m)))
    ph = rng.uniform(0, 2 * np.pi, (n_classes, m))
    off = np.stack([r * np.cos(ph), r * np.sin(ph)], -1)
    off[:, 0] = 0.0
    n = n_classes * m
    sim = Simulation(L, n, rotations=rots.reshape(n, 3, 3), offsets=off.reshape(n, 2),
                     snr=snr, seed=seed)
    ci = np.arange(n).reshape(n_classes, m)
    truth = class_true_alignment(sim.rotations, ci, sim.offsets)
    assert np.array_equal(truth.mirror, mirror)
    return ArrayImageSource(sim.images[:]), ci, truth, sim.clean_images(ci[:, 0])


@pytest.fixture(scope="module")
def em_clean(blob_class):
    avg = EMAverager2D(blob_class.source())
    out = avg.average(blob_class.class_indices, blob_class.class_refl)
    return avg, out


def test_clean_em_converges_to_the_reference(em_clean, blob_class):
    """Noise-free members (rotated, shifted, half mirrored): the EM average is the
    reference, in the reference's frame (no drift), and the MAP poses are the truth."""
    avg, out = em_clean
    assert out.shape == (1, 64, 64) and out.dtype == np.float64
    assert disk_rel_error(out[0], blob_class.reference, 64) < 1e-2
    res = avg.alignment
    rot = angle_diff_deg(res.rotations[0], blob_class.rotations)
    sh = np.linalg.norm(res.shifts[0] - blob_class.shifts, axis=1)
    assert blob_class.refl.sum() > 10
    assert rot.max() < 0.5 and sh.max() < 0.25
    assert np.median(rot) < 0.1 and np.median(sh) < 0.1
    # certain posteriors on clean data; a small noise variance (the model mismatch: sub-pixel
    # interpolation, factorization), measured 0.8 % of the pixel variance of the box
    assert np.all(res.scores[0] > 0.99)
    assert avg.noise_variances.shape == (1,)
    assert 0 < avg.noise_variances[0] < 2e-2 * np.var(blob_class.images)


@pytest.mark.parametrize("snr, min_gain, mean_gain", [(1 / 8, 0.015, 0.02),
                                                    (1 / 16, 0.04, 0.05)])
def test_em_beats_hard_alignment_at_low_snr(snr, min_gain, mean_gain):
    """4 simulated classes of 50 (fixed seed): the EM averages correlate better with the clean
    references than the averages of the members hard-aligned (SNR-weighted FTK) to the noisy
    reference image.  Measured (masked correlation): SNR 1/8 FTK 0.949-0.954, EM 0.975-0.981,
    gain 0.025-0.030; SNR 1/16 FTK 0.893-0.903, EM 0.962-0.976, gain 0.069-0.077.  Tested with
    about half of the measured gains as margins."""
    src, ci, truth, clean = _simulated_classes(4, 50, snr, seed=3)
    hard = masked_correlation(FTKAverager2D(src).average(ci, truth.mirror), clean)
    em = EMAverager2D(src)
    soft = masked_correlation(em.average(ci, truth.mirror), clean)
    gain = soft - hard
    assert np.all(gain > min_gain), (hard, soft)
    assert gain.mean() > mean_gain, (hard, soft)
    # and EM's poses are close to the truth (median over members)
    err = angle_diff_deg(em.alignment.rotations[:, 1:], truth.rotation[:, 1:])
    assert np.median(err) < 6.0


def test_noise_variance_estimate():
    """White noise of known variance: the residual-based estimate is within 10 %."""
    bc = make_blob_class(64, 40, max_shift=2.0, seed=5)
    rng = np.random.default_rng(0)
    sd = 0.3
    noisy = bc.images + rng.normal(scale=sd, size=bc.images.shape)
    avg = EMAverager2D(ArrayImageSource(noisy), n_iter=2)
    avg.align(bc.class_indices, bc.class_refl)
    assert abs(avg.noise_variances[0] / sd ** 2 - 1) < 0.1


def test_fixed_noise_variance_and_align_only(blob_class_unshifted):
    bc = blob_class_unshifted
    avg = EMAverager2D(bc.source(), noise_var=1e-4, n_iter=2, radius=1)
    res = avg.align(bc.class_indices, bc.class_refl)
    assert np.all(avg.noise_variances == 1e-4)
    rot = angle_diff_deg(res.rotations[0], bc.rotations)
    assert rot.max() < 0.5
    assert np.linalg.norm(res.shifts[0], axis=1).max() < 0.25


def test_several_classes_and_selection(blob_classes):
    src, ci, cr, classes = blob_classes
    avg = EMAverager2D(src, n_iter=2, batch_size=2)
    out = avg.average(ci, cr, classes=[2, 0])
    assert list(avg.alignment.classes) == [2, 0]
    for o, c in zip(out, (classes[2], classes[0])):
        assert disk_rel_error(o, c.reference, 48) < 2e-2


def test_robust_stacker_uses_map_poses(blob_class):
    avg = EMAverager2D(blob_class.source(), image_stacker=MedianImageStacker(), n_iter=2)
    out = avg.average(blob_class.class_indices, blob_class.class_refl)
    assert disk_rel_error(out[0], blob_class.reference, 64) < 3e-2


def test_leave_one_out_switch():
    """Without leave-one-out the posteriors are biased to the previous pose (self
    correlation); both variants work on moderately noisy data."""
    bc = make_blob_class(64, 30, max_shift=2.0, seed=9)
    src = ArrayImageSource(add_noise(bc.images, 0.5, seed=2))
    for loo in (True, False):
        out = EMAverager2D(src, leave_one_out=loo, n_iter=2).average(bc.class_indices,
                                                                     bc.class_refl)
        assert masked_correlation(out, bc.reference[None])[0] > 0.9


@pytest.mark.parametrize("m", [1, 2])
def test_tiny_classes(m):
    """A class of the reference alone (leave-one-out has nothing left: it is switched off)
    or of two images: the average is still the reference."""
    bc = make_blob_class(64, 2, max_shift=2.0, seed=2)
    out = EMAverager2D(bc.source(), n_iter=2).average(np.arange(m)[None], bc.refl[None, :m])
    assert disk_rel_error(out[0], bc.reference, 64) < 1e-2


def test_rotation_only(blob_class_unshifted):
    bc = blob_class_unshifted
    avg = EMAverager2D(bc.source(), radius=0, n_iter=2)
    assert avg.kernel.rank == 1 and avg.kernel_full.rank == 1
    out = avg.average(bc.class_indices, bc.class_refl)
    assert disk_rel_error(out[0], bc.reference, 64) < 1e-2
    assert np.all(avg.alignment.shifts == 0)
    assert angle_diff_deg(avg.alignment.rotations[0], bc.rotations).max() < 0.1


def test_pose_composition():
    """R_b T_t R_a T_s == R_(a+b) T_(s + Rot(-a) t) on points."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-np.pi, np.pi, 2)
    s, t, p = rng.normal(size=(3, 2))

    def rot(x, ang):
        c, si = np.cos(ang), np.sin(ang)
        return np.array([c * x[0] - si * x[1], si * x[0] + c * x[1]])

    # content at p: T_s moves it to p + s, R_a rotates it, ...
    lhs = rot(rot(p + s, a) + t, b)
    a2, s2 = _compose(np.array([[a]]), s[None, None], np.array([b]), t[None])
    rhs = rot(p + s2[0, 0], a2[0, 0])
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)


# -- parameters -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, exc, match", [
    (dict(n_iter=0), ValueError, "n_iter must be an integer >= 1"),
    (dict(radius=-1), ValueError, "radius must be a number >= 0"),
    (dict(n_angles=2), ValueError, "n_angles must be an integer >= 4"),
    (dict(shift_step=0), ValueError, "shift_step must be a number > 0"),
    (dict(bandlimit=1.2), ValueError, "bandlimit must be a number <= 1"),
    (dict(noise_var=-1.0), ValueError, "noise_var must be a number > 0"),
    (dict(noise_var="auto"), TypeError, "noise_var must be a real number or None"),
    (dict(leave_one_out=1), TypeError, "leave_one_out must be True or False"),
    (dict(eps=1.0), ValueError, "eps must be a number <= 0.1"),
])
def test_bad_parameters(kw, exc, match):
    src = ArrayImageSource(np.zeros((2, 64, 64)))
    with pytest.raises(exc, match=match):
        EMAverager2D(src, **kw)
