"""Local class selectors and greedy class repulsion."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg.selection import (
    ClassSelector,
    DistanceClassSelector,
    DistanceWithRepulsionClassSelector,
    GreedyClassRepulsionMixin,
    NeighborVarianceClassSelector,
    NeighborVarianceWithRepulsionClassSelector,
    RandomClassSelector,
    RandomWithRepulsionClassSelector,
    TopClassSelector,
    TopWithRepulsionClassSelector,
    greedy_repulsion,
)

from .conftest import check_repulsion, random_table

BASE = [TopClassSelector, RandomClassSelector, NeighborVarianceClassSelector,
        DistanceClassSelector]
REPULSION = [TopWithRepulsionClassSelector, RandomWithRepulsionClassSelector,
             NeighborVarianceWithRepulsionClassSelector, DistanceWithRepulsionClassSelector]


# -- the plain selectors ----------------------------------------------------------------------
def test_top_is_input_order(table):
    ci, cr, cd = table
    sel = TopClassSelector().select(ci, cr, cd)
    np.testing.assert_array_equal(sel, np.arange(len(ci)))
    assert sel.dtype == np.int64
    assert TopClassSelector(n_classes=5).select(ci, cr, None).tolist() == [0, 1, 2, 3, 4]
    s = TopClassSelector()
    s.select(ci, cr, cd)
    assert np.all(np.isnan(s.selection_scores_)) and s.selection_scores_.shape == (len(ci),)


def test_random_is_a_seeded_permutation(table):
    ci, cr, cd = table
    a = RandomClassSelector(seed=3).select(ci, cr, cd)
    np.testing.assert_array_equal(np.sort(a), np.arange(len(ci)))
    np.testing.assert_array_equal(a, RandomClassSelector(seed=3).select(ci, cr, cd))
    sel = RandomClassSelector(seed=3)
    np.testing.assert_array_equal(sel.select(ci, cr, cd), sel.select(ci, cr, cd))
    assert not np.array_equal(a, RandomClassSelector(seed=4).select(ci, cr, cd))
    np.testing.assert_array_equal(RandomClassSelector(seed=3, n_classes=7).select(ci, cr, cd),
                                  a[:7])
    g = RandomClassSelector(seed=np.random.default_rng(3)).select(ci, cr, cd)
    np.testing.assert_array_equal(np.sort(g), np.arange(len(ci)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(1, 8), seed=st.integers(0, 10_000),
       ties=st.booleans())
def test_neighbor_variance_is_argsort_of_row_variances(n, m, seed, ties):
    ci, cr, cd = random_table(n, m, seed=seed, ties=ties)
    s = NeighborVarianceClassSelector()
    sel = s.select(ci, cr, cd)
    v = np.var(cd, axis=1)                               # self distance (0) included
    np.testing.assert_array_equal(sel, np.argsort(v, kind="stable"))
    np.testing.assert_allclose(s.selection_scores_, v[sel])
    np.testing.assert_allclose(s.class_scores_, v)


def test_neighbor_variance_includes_self_distance():
    # Rows with the same neighbour distances but a different column 0 order differently
    # only if the self distance is part of the variance.
    ci = np.array([[0, 1, 2], [1, 0, 2]])
    cd = np.array([[0.0, 1.0, 1.0], [0.9, 1.0, 1.0]])
    assert NeighborVarianceClassSelector().select(ci, None, cd).tolist() == [1, 0]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), m=st.integers(2, 8), seed=st.integers(0, 10_000),
       ties=st.booleans())
def test_distance_is_argsort_of_mean_distance_without_self(n, m, seed, ties):
    ci, cr, cd = random_table(n, m, seed=seed, ties=ties)
    cd[:, 0] = np.random.default_rng(seed).random(n) * 100   # ignored
    s = DistanceClassSelector()
    sel = s.select(ci, cr, cd)
    mean = cd[:, 1:].mean(axis=1)
    np.testing.assert_array_equal(sel, np.argsort(mean, kind="stable"))
    np.testing.assert_allclose(s.selection_scores_, mean[sel])


def test_distance_with_one_column_keeps_input_order():
    ci = np.arange(5)[:, None]
    cd = np.zeros((5, 1))
    assert DistanceClassSelector().select(ci, None, cd).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cls", BASE + REPULSION)
def test_selection_is_distinct_class_ids(cls, table):
    ci, cr, cd = table
    s = cls()
    sel = s.select(ci, cr, cd)
    assert sel.dtype == np.int64 and sel.ndim == 1
    assert len(np.unique(sel)) == sel.size
    assert sel.min() >= 0 and sel.max() < len(ci)
    assert s.selection_scores_.shape == sel.shape
    assert isinstance(s, ClassSelector)
    empty = cls().select(np.zeros((0, 4), np.int64), None, np.zeros((0, 4)))
    assert empty.shape == (0,)


@pytest.mark.parametrize("cls", BASE + REPULSION)
def test_n_classes_truncates_the_final_order(cls, table):
    ci, cr, cd = table
    full = cls().select(ci, cr, cd)
    s = cls(n_classes=4)
    np.testing.assert_array_equal(s.select(ci, cr, cd), full[:4])
    assert s.selection_scores_.shape == (4,)
    np.testing.assert_array_equal(cls(n_classes=10_000).select(ci, cr, cd), full)


# -- repulsion ----------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), m=st.integers(1, 10), seed=st.integers(0, 10_000),
       exclude_k=st.one_of(st.none(), st.integers(1, 12)), which=st.integers(0, 3))
def test_repulsion_never_selects_a_member_of_an_earlier_class(n, m, seed, exclude_k, which):
    ci, cr, cd = random_table(n, m, seed=seed)
    base = BASE[which](**({"seed": seed} if which == 1 else {}))
    rep = REPULSION[which](**({"seed": seed} if which == 1 else {}), exclude_k=exclude_k)
    order = base.select(ci, cr, cd)
    sel = rep.select(ci, cr, cd)
    check_repulsion(sel, ci, exclude_k)
    # a subsequence of the plain order, scores carried along
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    assert np.all(np.diff(rank[sel]) > 0)
    np.testing.assert_array_equal(rep.selection_scores_, base.class_scores_[sel])
    assert sel[0] == order[0]


def test_repulsion_example():
    ci = np.array([[0, 1, 2],
                   [1, 0, 3],
                   [2, 4, 0],
                   [3, 5, 6],
                   [4, 3, 0]])
    assert TopWithRepulsionClassSelector().select(ci, None, None).tolist() == [0, 3, 4]
    # only the first 2 members of an accepted class are excluded
    assert TopWithRepulsionClassSelector(exclude_k=2).select(ci, None, None).tolist() == \
        [0, 2, 3]
    # exclude_k=1: only the reference itself (duplicates of a reference)
    assert TopWithRepulsionClassSelector(exclude_k=1).select(ci, None, None).tolist() == \
        [0, 1, 2, 3, 4]
    assert TopWithRepulsionClassSelector(exclude_k=99).select(ci, None, None).tolist() == \
        [0, 3, 4]


def test_repulsion_with_limit_is_prefix():
    ci, _, _ = random_table(500, 8, seed=5)
    order = np.random.default_rng(0).permutation(500)
    full = greedy_repulsion(order, ci)
    np.testing.assert_array_equal(greedy_repulsion(order, ci, limit=7), full[:7])
    np.testing.assert_array_equal(greedy_repulsion(order, ci, exclude_k=3)[:5],
                                  greedy_repulsion(order, ci, exclude_k=3, limit=5))


def test_mixin_composes_with_any_selector(table):
    ci, cr, cd = table

    class Custom(GreedyClassRepulsionMixin, DistanceClassSelector):
        pass

    s = Custom(exclude_k=3, n_classes=4)
    assert (s.exclude_k, s.n_classes) == (3, 4)
    check_repulsion(s.select(ci, cr, cd), ci, 3, full=False)
    r = RandomWithRepulsionClassSelector(seed=7, exclude_k=2)
    assert r.seed == 7 and r.exclude_k == 2
    assert "exclude_k=2" in repr(r)


def test_repulsion_is_fast():
    n, m = 100_000, 50
    ci, _, _ = random_table(n, m, seed=0)
    order = np.random.default_rng(1).permutation(n)
    t = time.perf_counter()
    keep = greedy_repulsion(order, ci)
    assert time.perf_counter() - t < 1.0
    # worst case: every class is kept (members never hit a later reference)
    ci_all = np.concatenate([np.arange(n)[:, None], np.full((n, m - 1), n)], axis=1)
    t = time.perf_counter()
    assert greedy_repulsion(np.arange(n), ci_all).size == n
    assert time.perf_counter() - t < 1.0
    assert 0 < keep.size < n


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n_classes": 0}, ValueError, "n_classes must be an integer >= 1, got 0"),
    ({"n_classes": 2.5}, TypeError, "n_classes must be an integer or None"),
])
def test_constructor_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TopClassSelector(**kwargs)


def test_mixin_validation():
    with pytest.raises(ValueError, match="exclude_k must be an integer >= 1, got 0"):
        TopWithRepulsionClassSelector(exclude_k=0)
    with pytest.raises(TypeError, match="seed must be"):
        RandomClassSelector(seed=-1)


def test_table_validation(table):
    ci, cr, cd = table
    s = NeighborVarianceClassSelector()
    with pytest.raises(ValueError, match=r"class_indices must be an integer array of shape"):
        s.select(ci[0], cr, cd)
    with pytest.raises(ValueError, match=r"class_indices must be an integer array"):
        s.select(ci.astype(float), cr, cd)
    with pytest.raises(ValueError, match="non-negative"):
        s.select(-ci, cr, cd)
    with pytest.raises(ValueError, match=r"class_refl must have the shape of class_indices"):
        s.select(ci, cr[:, :2], cd)
    with pytest.raises(ValueError, match=r"class_distances must have the shape"):
        s.select(ci, cr, cd[:3])
    with pytest.raises(ValueError, match=r"class_distances must be an array of shape .* for "
                                         r"NeighborVarianceClassSelector, got None"):
        s.select(ci, cr, None)
    with pytest.raises(ValueError, match="class_distances must be a real array"):
        s.select(ci, cr, cd.astype(complex))
