"""Global selectors: ordering by the quality of every average, the byte-bounded heap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg.selection import (
    BandedSNRImageQualityFunction,
    GlobalClassSelector,
    GlobalWithRepulsionClassSelector,
    VarianceImageQualityFunction,
)

from .conftest import FakeAverager, check_repulsion, random_table

L = 8
IMG = L * L * 4            # bytes of one float32 average


def setup(n=30, m=5, seed=0, ties=False, alignment=False, batch_size=4):
    rng = np.random.default_rng(seed)
    var = rng.integers(1, 6, n).astype(float) if ties else rng.random(n) + 0.1
    ci, cr, cd = random_table(n, m, seed=seed)
    return FakeAverager(var, L, batch_size=batch_size, alignment=alignment), var, (ci, cr, cd)


def expected_order(var):
    return np.argsort(-var, kind="stable")


def test_orders_by_descending_quality_and_averages_each_class_once():
    av, var, (ci, cr, cd) = setup()
    s = GlobalClassSelector(av, VarianceImageQualityFunction())
    sel = s.select(ci, cr, cd)
    np.testing.assert_array_equal(sel, expected_order(var))
    np.testing.assert_allclose(s.selection_scores_, var[sel], rtol=1e-6)
    np.testing.assert_allclose(s.class_scores_, var, rtol=1e-6)
    # batches of averager.batch_size rows, every class exactly once, in row order
    assert [len(c) for c in av.calls] == [4] * 7 + [2]
    np.testing.assert_array_equal(np.concatenate(av.calls), np.arange(30))
    # class_distances are not needed
    np.testing.assert_array_equal(GlobalClassSelector(av, VarianceImageQualityFunction())
                                  .select(ci, cr, None), sel)


def test_batch_size_option():
    av, var, (ci, cr, cd) = setup(n=10)
    GlobalClassSelector(av, VarianceImageQualityFunction(), batch_size=3).select(ci, cr, cd)
    assert [len(c) for c in av.calls] == [3, 3, 3, 1]


def test_heap_keeps_the_best_averages_within_the_byte_limit():
    av, var, (ci, cr, cd) = setup()
    limit = 3.5 * IMG
    s = GlobalClassSelector(av, VarianceImageQualityFunction(), heap_size_limit_bytes=limit)
    sel = s.select(ci, cr, cd)
    assert s.peak_heap_bytes_ <= limit and s.heap_bytes <= limit
    assert s.heap_bytes == 3 * IMG
    np.testing.assert_array_equal(s.cached_class_ids, np.sort(sel[:3]))
    for c in sel[:3]:
        img = s.cached_average(c)
        np.testing.assert_array_equal(img, av.image(ci[c, 0]))
        assert img.dtype == np.float32 and not img.flags.writeable
        assert img.base is None                    # a copy: does not pin a whole batch
    assert all(s.cached_average(c) is None for c in sel[3:])
    assert s.cached_alignment(sel[0]) is None      # the fake averager exposes none
    s.clear_cache()
    assert s.heap_bytes == 0 and s.cached_average(sel[0]) is None


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 1000), n_fit=st.integers(0, 45),
       extra=st.integers(0, IMG - 1), batch_size=st.integers(1, 9), ties=st.booleans())
def test_heap_never_exceeds_its_byte_limit(n, seed, n_fit, extra, batch_size, ties):
    av, var, (ci, cr, cd) = setup(n=n, seed=seed, ties=ties, batch_size=batch_size)
    limit = n_fit * IMG + extra
    s = GlobalClassSelector(av, VarianceImageQualityFunction(), heap_size_limit_bytes=limit)
    sel = s.select(ci, cr, cd)
    assert s.peak_heap_bytes_ <= limit
    assert s.heap_bytes <= limit
    # exactly the best min(n, n_fit) classes of the order are cached (ties by class id)
    np.testing.assert_array_equal(sel, expected_order(var))
    np.testing.assert_array_equal(s.cached_class_ids, np.sort(sel[:n_fit]))


def test_zero_limit_disables_the_cache():
    av, var, (ci, cr, cd) = setup()
    s = GlobalClassSelector(av, VarianceImageQualityFunction(), heap_size_limit_bytes=0)
    s.select(ci, cr, cd)
    assert s.heap_bytes == 0 and s.cached_class_ids.size == 0


def test_cache_is_trimmed_to_the_selection():
    av, var, (ci, cr, cd) = setup()
    s = GlobalClassSelector(av, VarianceImageQualityFunction(), n_classes=2)
    sel = s.select(ci, cr, cd)
    np.testing.assert_array_equal(sel, expected_order(var)[:2])
    np.testing.assert_array_equal(s.cached_class_ids, np.sort(sel))
    assert s.class_scores_.shape == (30,)


def test_alignment_rows_are_mapped_back_to_class_ids():
    av, var, (ci, cr, cd) = setup(alignment=True)
    s = GlobalClassSelector(av, VarianceImageQualityFunction())
    sel = s.select(ci, cr, cd)
    for c in sel:
        rot, sh, sc = s.cached_alignment(c)
        np.testing.assert_array_equal(rot, ci[c] / 1000.0)
        np.testing.assert_array_equal(sh, np.stack([rot, -rot], axis=-1))
        np.testing.assert_array_equal(sc, 2 * rot)
    m = ci.shape[1]
    assert s.heap_bytes == 30 * (IMG + 8 * m * 4)  # images and alignment rows are counted
    # a limit that fits 2 images but not 2 images with their alignment
    s = GlobalClassSelector(av, VarianceImageQualityFunction(),
                            heap_size_limit_bytes=2 * IMG + 8 * m * 4)
    sel = s.select(ci, cr, cd)
    assert s.cached_class_ids.tolist() == [sel[0]]


def test_nan_scores_rank_last():
    av, var, (ci, cr, cd) = setup(n=6)

    def quality(images):
        q = images.reshape(len(images), -1).var(axis=1).astype(float)
        q[q > np.median(var)] = np.nan
        return q

    s = GlobalClassSelector(av, quality, heap_size_limit_bytes=2 * IMG)
    sel = s.select(ci, cr, cd)
    ok = np.flatnonzero(var <= np.median(var))
    assert set(sel[:ok.size]) == set(ok)
    assert np.all(np.isnan(s.selection_scores_[ok.size:]))
    assert set(s.cached_class_ids) <= set(ok)


def test_with_repulsion():
    av, var, (ci, cr, cd) = setup(n=60, m=6, seed=3)
    for exclude_k in (None, 2):
        s = GlobalWithRepulsionClassSelector(av, VarianceImageQualityFunction(),
                                             exclude_k=exclude_k)
        sel = s.select(ci, cr, cd)
        check_repulsion(sel, ci, exclude_k)
        rank = np.empty(60, np.int64)
        rank[expected_order(var)] = np.arange(60)
        assert np.all(np.diff(rank[sel]) > 0)
        assert sel.size < 60
        np.testing.assert_array_equal(s.cached_class_ids, np.sort(sel))
        np.testing.assert_allclose(s.selection_scores_, var[sel], rtol=1e-6)
    s = GlobalWithRepulsionClassSelector(av, BandedSNRImageQualityFunction(), exclude_k=3,
                                         heap_size_limit_bytes=1e6, n_classes=4)
    assert (s.exclude_k, s.heap_size_limit_bytes, s.n_classes) == (3, 1_000_000, 4)


def test_validation():
    av, var, (ci, cr, cd) = setup(n=5)
    q = VarianceImageQualityFunction()
    with pytest.raises(TypeError, match="averager must be an Averager2D"):
        GlobalClassSelector(object(), q)
    with pytest.raises(TypeError, match="quality_function must be"):
        GlobalClassSelector(av, 3)
    with pytest.raises(ValueError, match="heap_size_limit_bytes must be a number >= 0"):
        GlobalClassSelector(av, q, heap_size_limit_bytes=-1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        GlobalClassSelector(av, q, batch_size=0)

    class Broken(FakeAverager):
        def average(self, class_indices, class_refl):
            return super().average(class_indices, class_refl)[:1]

    with pytest.raises(ValueError, match="averager.average must return 4 images"):
        GlobalClassSelector(Broken(var, L), q).select(ci, cr, cd)
    with pytest.raises(ValueError, match="quality_function must return one score per image"):
        GlobalClassSelector(av, lambda x: np.zeros(1)).select(ci, cr, cd)


def test_with_a_real_averager():
    """BFR on a tiny source: cached averages and alignments equal a direct computation."""
    from classavg.averaging import BFRAverager2D
    from classavg.sources.base import ArrayImageSource

    rng = np.random.default_rng(0)
    n, Lr = 12, 16
    src = ArrayImageSource(rng.normal(size=(n, Lr, Lr)).astype(np.float32))
    av = BFRAverager2D(src, n_angles=36, batch_size=5)
    ci, cr, cd = random_table(n, 3, seed=2)
    s = GlobalClassSelector(av, VarianceImageQualityFunction(), batch_size=5)
    sel = s.select(ci, cr, cd)
    assert sel.size == n and s.cached_class_ids.size == n
    direct = av.average(ci, cr)
    align = av.alignment
    for c in sel:
        np.testing.assert_allclose(s.cached_average(c), direct[c], rtol=1e-5, atol=1e-6)
        rot, sh, sc = s.cached_alignment(c)
        # float32 images: angles agree to float32 rounding (batches differ in composition)
        np.testing.assert_allclose(rot, align.rotations[c], atol=1e-6)
        np.testing.assert_allclose(sh, align.shifts[c], atol=1e-6)
    np.testing.assert_allclose(s.class_scores_, direct.reshape(n, -1).var(1), rtol=1e-4)
