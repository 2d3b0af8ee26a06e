"""BFRAverager2D and the machinery shared by every aligning averager (batching, stacking,
bookkeeping of the alignment, frames of the averages).

Tolerances: members of the fixtures are exact closed-form rotations (and mirrors) of smooth
blob images, so the rotational correlation in the Fourier-Bessel basis peaks exactly at the
true angle up to the small non-band-limited part of the sampled blobs; Newton refinement on
the trigonometric polynomial then reaches ~1e-3 degree.  We allow 0.05 degree (median) and
0.2 degree (max), 10x below the 0.5 degree target.
"""

import numpy as np
import pytest

from classavg.averaging import (
    AlignmentResult,
    BFRAverager2D,
    MeanImageStacker,
    MedianImageStacker,
    WinsorizedImageStacker,
)
from classavg.averaging.bfr import correlation_spectrum, grid_correlation, trig_eval
from classavg.basis import FourierBesselBasis2D
from classavg.sources.base import ArrayImageSource

from .conftest import angle_diff_deg, disk_rel_error, make_blob_class


def test_recovers_rotations_with_mirrors(blob_class_unshifted):
    bc = blob_class_unshifted
    assert bc.refl.sum() > 10                        # mirrored members are exercised
    avg = BFRAverager2D(bc.source())
    res = avg.align(bc.class_indices, bc.class_refl)
    err = angle_diff_deg(res.rotations[0], bc.rotations)
    assert np.median(err) < 0.05 and err.max() < 0.2
    assert np.all(res.shifts == 0)
    assert res.rotations[0, 0] == 0 and res.scores[0, 0] == pytest.approx(1.0)
    assert np.all(res.scores > 0.999)


def test_wrong_mirror_flags_score_worse(blob_class_unshifted):
    bc = blob_class_unshifted
    avg = BFRAverager2D(bc.source())
    good = avg.align(bc.class_indices, bc.class_refl).scores[0]
    bad = avg.align(bc.class_indices, ~bc.class_refl).scores[0]
    # a mirrored blob pattern is not a rotation of itself: the flag matters
    assert np.all(good[1:] > bad[1:] + 0.01)


def test_average_of_clean_members_is_reference(blob_class_unshifted):
    bc = blob_class_unshifted
    out = BFRAverager2D(bc.source()).average(bc.class_indices, bc.class_refl)
    assert out.shape == (1, 64, 64) and out.dtype == np.float64
    # band-limited projection of the reference, zero outside the disk
    assert disk_rel_error(out[0], bc.reference, 64) < 1e-3
    assert np.all(out[0][0] == 0)


def test_correlation_sign_convention():
    # c(alpha) = <Rot(alpha) member, reference>: rotating the reference by +0.5 rad gives a
    # member whose best alignment rotation is -0.5 rad.
    bc = make_blob_class(48, 2, max_shift=0, mirror=False, seed=3)
    B = FourierBesselBasis2D(48, dtype=np.float64)
    a = B.expand(bc.reference)
    b = B.rotate(a, 0.5)
    h = correlation_spectrum(a, b, B)
    C = grid_correlation(h[None], 720)[0]
    assert np.argmax(C) == round(720 - 0.5 / (2 * np.pi / 720))    # -0.5 rad on the grid
    # grid values equal the direct evaluation, also when k is folded (n_angles <= 2 kmax)
    for N in (720, 7):
        alphas = 2 * np.pi * np.arange(N) / N
        direct = trig_eval(np.broadcast_to(h, (N, h.size)), alphas)[0]
        np.testing.assert_allclose(grid_correlation(h[None], N)[0], direct,
                                   atol=1e-9 * np.abs(direct).max())


def test_multi_class_frames_order_and_subset(blob_classes):
    src, ci, cr, classes = blob_classes
    A = BFRAverager2D(src, batch_size=2)
    out = A.average(ci, cr)
    assert out.shape == (3, 48, 48)
    assert isinstance(A.alignment, AlignmentResult)
    np.testing.assert_array_equal(A.alignment.classes, [0, 1, 2])
    for i, c in enumerate(classes):
        # the members are shifted (BFR ignores shifts), but the average is in the frame of
        # row i's reference: it correlates far better with it than with the others
        cc = [np.corrcoef(out[i].ravel(), d.reference.ravel())[0, 1] for d in classes]
        assert np.argmax(cc) == i and cc[i] > 0.9
    # a subset of rows, in a given order
    sub = A.average(ci, cr, classes=[2, 0])
    np.testing.assert_array_equal(A.alignment.classes, [2, 0])
    np.testing.assert_allclose(sub, out[[2, 0]], atol=1e-10)
    rot, sh, sc = A.alignment.for_class(0)
    np.testing.assert_allclose(rot, A.alignment.rotations[1])
    with pytest.raises(KeyError):
        A.alignment.for_class(1)


def test_batch_size_does_not_change_results(blob_classes):
    src, ci, cr, _ = blob_classes
    r1 = BFRAverager2D(src, batch_size=1).align(ci, cr)
    r3 = BFRAverager2D(src, batch_size=3).align(ci, cr)
    np.testing.assert_allclose(r1.rotations, r3.rotations, atol=1e-12)
    np.testing.assert_allclose(r1.scores, r3.scores, atol=1e-12)


def test_float32_source_and_cache_off(blob_class_unshifted):
    bc = blob_class_unshifted
    src = bc.source(np.float32)
    A = BFRAverager2D(src)
    A.coefficient_cache_bytes = 0
    out = A.average(bc.class_indices, bc.class_refl)
    assert out.dtype == np.float32
    assert disk_rel_error(out[0], bc.reference, 64) < 1e-3


def test_stacker_is_honoured_and_rejects_outlier():
    bc = make_blob_class(48, 21, max_shift=0, seed=4)
    imgs = bc.images.copy()
    imgs[7] += 50 * (np.hypot(*np.meshgrid(np.arange(48) - 24, np.arange(48) - 24)) < 6)
    src = ArrayImageSource(imgs, dtype=np.float64)
    ci, cr = bc.class_indices, bc.class_refl
    mean = BFRAverager2D(src, image_stacker=MeanImageStacker()).average(ci, cr)[0]
    med = BFRAverager2D(src, image_stacker=MedianImageStacker()).average(ci, cr)[0]
    win = BFRAverager2D(src, image_stacker=WinsorizedImageStacker(0.1)).average(ci, cr)[0]
    medc = BFRAverager2D(src, image_stacker=MedianImageStacker(domain="coefficients")
                         ).average(ci, cr)[0]
    assert disk_rel_error(mean, bc.reference, 48) > 0.1
    for robust in (med, win, medc):
        assert disk_rel_error(robust, bc.reference, 48) < 0.02


def test_bad_parameters(blob_class_unshifted):
    src = blob_class_unshifted.source()
    with pytest.raises(ValueError, match="n_angles must be an integer >= 1"):
        BFRAverager2D(src, n_angles=0)
    with pytest.raises(TypeError, match="n_angles must be an integer"):
        BFRAverager2D(src, n_angles=36.5)
    with pytest.raises(TypeError, match="image_stacker must be an ImageStacker"):
        BFRAverager2D(src, image_stacker="median")
    with pytest.raises(ValueError, match="batch_size"):
        BFRAverager2D(src, batch_size=0)
    A = BFRAverager2D(src)
    with pytest.raises(ValueError, match="class_indices must lie in"):
        A.average(np.array([[0, 99]]), None)
    with pytest.raises(ValueError, match="class_refl must have the shape"):
        A.average(np.array([[0, 1]]), np.array([[False]]))
    with pytest.raises(ValueError, match="classes must lie in"):
        A.average(np.array([[0, 1]]), None, classes=[1])


def test_snr_weights(blob_class):
    from classavg.averaging.base import ClassBatch
    bc = blob_class
    A = BFRAverager2D(bc.source())
    clean = ClassBatch(np.arange(1), bc.class_indices, bc.class_refl, bc.source(),
                       A.transformer).snr_weights()
    lam = A.basis.zeros
    low = np.argsort(lam)[:10]                       # where the smooth blobs have signal
    assert clean.shape == (A.basis.count,) and np.all((clean >= 0) & (clean <= 1))
    assert clean[low].min() > 0.99                   # no noise: weights ~1 where the signal is
    from .conftest import add_noise
    noisy_src = ArrayImageSource(add_noise(bc.images, 0.1, seed=2))
    w = ClassBatch(np.arange(1), bc.class_indices, bc.class_refl, noisy_src,
                   A.transformer).snr_weights()
    high = lam > np.percentile(lam, 50)
    assert w[low].mean() > 0.5 and w[high].mean() < 0.1
