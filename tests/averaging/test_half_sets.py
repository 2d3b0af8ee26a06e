"""Half-set averages and resolution from the averager's own alignment
(classavg.averaging.half_sets).

Ground truth: with the mean stacker and an even class size the two half averages are means
of 25 + 25 of the 50 aligned members, so their mean is the full average (exact up to
float64 rounding, 1e-12 relative).  Clean members give identical halves (resolution at the
band limit); noise lowers the resolution.
"""

import numpy as np
import pytest

from classavg.averaging import (
    BFRAverager2D,
    BFSRAverager2D,
    EMAverager2D,
    MedianImageStacker,
)
from classavg.averaging.half_sets import half_set_averages, half_set_class_resolution
from classavg.sources.base import ArrayImageSource

from .conftest import add_noise


def test_halves_split_the_full_average(blob_classes):
    src, ci, cr, _ = blob_classes
    avg = BFSRAverager2D(src, radius=2, batch_size=2)
    full = avg.average(ci, cr)
    # the alignment is reused, never recomputed
    avg._align_batch = lambda batch: (_ for _ in ()).throw(AssertionError("re-aligned"))
    a, b = half_set_averages(avg, ci, cr, avg.alignment)
    assert a.shape == b.shape == full.shape and a.dtype == full.dtype
    np.testing.assert_allclose((a + b) / 2, full, atol=1e-12 * np.abs(full).max())


def test_clean_and_noisy_resolution(blob_class):
    bc = blob_class
    clean = BFSRAverager2D(ArrayImageSource(bc.images, pixel_size=1.7), radius=3)
    clean.average(bc.class_indices, bc.class_refl)
    out = half_set_class_resolution(clean, bc.class_indices, bc.class_refl, clean.alignment)
    # identical halves up to interpolation: correlated to the highest ring with power
    assert out["resolution"][0] < 2.5 * 1.7
    noisy_src = ArrayImageSource(add_noise(bc.images, 0.5, seed=4), pixel_size=1.7)
    noisy = BFSRAverager2D(noisy_src, radius=3)
    noisy.average(bc.class_indices, bc.class_refl)
    res = half_set_class_resolution(noisy, bc.class_indices, bc.class_refl, noisy.alignment)
    assert np.isfinite(res["resolution"][0])
    assert res["resolution"][0] > 2 * out["resolution"][0]
    assert set(res) == {"resolution", "at_nyquist", "frc", "frequencies"}


@pytest.mark.parametrize("make", [
    lambda s: BFRAverager2D(s, image_stacker=MedianImageStacker()),
    lambda s: EMAverager2D(s, n_iter=1),
])
def test_other_stackers_and_em(blob_classes, make):
    src, ci, cr, _ = blob_classes
    avg = make(src)
    avg.average(ci, cr, classes=[2, 0])
    a, b = half_set_averages(avg, ci, cr, avg.alignment)
    assert a.shape == (2, src.L, src.L) and np.isfinite(a).all() and np.isfinite(b).all()
    res = half_set_class_resolution(avg, ci, cr, avg.alignment)["resolution"]
    assert res.shape == (2,) and np.all(res > 0)


def test_single_member_classes_are_undefined(blob_classes):
    src, ci, cr, _ = blob_classes
    avg = BFRAverager2D(src)
    avg.average(ci[:, :1], cr[:, :1])
    res = half_set_class_resolution(avg, ci[:, :1], cr[:, :1], avg.alignment)["resolution"]
    assert np.isnan(res).all()


def test_validation(blob_classes):
    src, ci, cr, _ = blob_classes
    avg = BFRAverager2D(src)
    with pytest.raises(TypeError, match="AlignmentResult"):
        half_set_averages(avg, ci, cr, None)
    with pytest.raises(ValueError, match="pixel_size"):
        avg.average(ci, cr)
        half_set_class_resolution(avg, ci, cr, avg.alignment, pixel_size=-1.0)


def _table(n, m, seed):
    rng = np.random.default_rng(seed)
    ci = np.stack([np.r_[i, rng.choice(np.delete(np.arange(n), i), m - 1, replace=False)]
                   for i in range(n)])
    return ci, rng.random((n, m)) < 0.3


@pytest.mark.parametrize("make", [
    lambda s: BFSRAverager2D(s, radius=1, batch_size=3),
    lambda s: BFSRAverager2D(s, radius=1, batch_size=3, ctf_correction="wiener"),
    lambda s: BFSRAverager2D(s, radius=1, batch_size=3, ctf_correction="phase_flip"),
    lambda s: BFRAverager2D(s, image_stacker=MedianImageStacker(), batch_size=3,
                            ctf_correction="phase_flip"),
    lambda s: EMAverager2D(s, n_iter=1, batch_size=3),
])
def test_halves_kept_in_the_averaging_pass_equal_the_second_pass(make):
    """keep_half_sets stacks the halves from the average's own member spectra or
    coefficients: the same arrays as half_set_averages' separate pass, to float rounding."""
    from classavg.sources import Simulation

    sim = Simulation(32, 40, snr=2.0, ctf=True, seed=5, dtype=np.float64)
    src = sim.normalize_background().phase_flip()
    ci, cr = _table(40, 10, 6)
    cr[:, 0] = False
    avg = make(src)
    avg.keep_half_sets = True
    rows = [5, 0, 17, 33, 8]
    full = avg.average(ci, cr, classes=rows)
    kept = avg.half_averages
    assert kept.shape == (len(rows), 2, 32, 32)
    a, b = half_set_averages(avg, ci, cr, avg.alignment)
    scale = np.abs(full).max()
    np.testing.assert_allclose(kept[:, 0], a, atol=1e-9 * scale)
    np.testing.assert_allclose(kept[:, 1], b, atol=1e-9 * scale)
    # and the average itself is the one computed without the halves
    avg.keep_half_sets = False
    np.testing.assert_allclose(avg.average(ci, cr, classes=rows), full, atol=1e-9 * scale)
    assert avg.half_averages is None
