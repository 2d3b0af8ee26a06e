"""Local class selectors: order classes from the neighbour table alone (no averaging).

* :class:`TopClassSelector` -- input order ``0, 1, 2, ...``;
* :class:`RandomClassSelector` -- a seeded random permutation;
* :class:`NeighborVarianceClassSelector` -- ascending variance of a row's distances (the
  0 self-distance included, as ASPIRE does);
* :class:`DistanceClassSelector` -- ascending mean distance to the neighbours (self
  excluded): tight classes first;

and their greedy-repulsion variants (:class:`~classavg.selection.base.GreedyClassRepulsionMixin`
mixed in front): :class:`TopWithRepulsionClassSelector`, ... .  Ties keep the input order
(stable sorts), so every selector is deterministic.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_random_state
from .base import ClassSelector, GreedyClassRepulsionMixin

__all__ = [
    "TopClassSelector",
    "RandomClassSelector",
    "NeighborVarianceClassSelector",
    "DistanceClassSelector",
    "TopWithRepulsionClassSelector",
    "RandomWithRepulsionClassSelector",
    "NeighborVarianceWithRepulsionClassSelector",
    "DistanceWithRepulsionClassSelector",
]


class TopClassSelector(ClassSelector):
    """Classes in input order ``0, 1, 2, ...`` (scores: NaN).

    Parameters
    ----------
    n_classes : int or None, keyword-only
        Keep the first ``n_classes`` (default: all).
    """

    def _select(self, class_indices, class_refl, class_distances):
        n = class_indices.shape[0]
        return np.arange(n, dtype=np.int64), np.full(n, np.nan)


class RandomClassSelector(ClassSelector):
    """Classes in a random order: a permutation drawn from ``seed`` (scores: NaN).

    Parameters
    ----------
    seed : int, numpy.random.Generator or None, keyword-only
        An integer seed gives the same permutation on every call of :meth:`select`; a
        Generator is advanced by each call; None draws fresh entropy (default 0).
    n_classes : int or None, keyword-only
        Keep the first ``n_classes`` of the permutation (default: all).
    """

    tags = ClassSelector.tags.extend(random=True)

    def __init__(self, *, seed=0, n_classes=None):
        super().__init__(n_classes=n_classes)
        check_random_state(seed)  # validate now
        self.seed = seed

    def _select(self, class_indices, class_refl, class_distances):
        n = class_indices.shape[0]
        order = check_random_state(self.seed).permutation(n).astype(np.int64)
        return order, np.full(n, np.nan)


class _ScoredClassSelector(ClassSelector):
    """Ascending order of a per-class score computed from the distances (stable)."""

    tags = ClassSelector.tags.extend(needs_distances=True)

    def _scores(self, class_distances):
        raise NotImplementedError

    def _select(self, class_indices, class_refl, class_distances):
        scores = self._scores(class_distances)
        self.class_scores_ = scores
        order = np.argsort(scores, kind="stable")
        return order, scores[order]


class NeighborVarianceClassSelector(_ScoredClassSelector):
    """Ascending variance of each class's neighbour distances (tight, even classes first).

    The score of class c is ``np.var(class_distances[c])`` over the whole row, the 0
    self-distance in column 0 included, as in ASPIRE (it favours classes whose neighbours
    are all close: a large distance to any member raises the variance).  Ties keep the
    input order.

    Parameters
    ----------
    n_classes : int or None, keyword-only
        Keep the best ``n_classes`` (default: all).
    """

    score_name = "variance of neighbour distances"

    def _scores(self, class_distances):
        return np.var(class_distances, axis=1)


class DistanceClassSelector(_ScoredClassSelector):
    """Ascending mean distance from each reference to its neighbours (self excluded).

    The score of class c is ``class_distances[c, 1:].mean()`` (0 for a table with one
    column).  Ties keep the input order.

    Parameters
    ----------
    n_classes : int or None, keyword-only
        Keep the best ``n_classes`` (default: all).
    """

    score_name = "mean neighbour distance"

    def _scores(self, class_distances):
        if class_distances.shape[1] < 2:
            return np.zeros(class_distances.shape[0])
        return class_distances[:, 1:].mean(axis=1)


class TopWithRepulsionClassSelector(GreedyClassRepulsionMixin, TopClassSelector):
    """:class:`TopClassSelector` followed by greedy class repulsion (``exclude_k``)."""


class RandomWithRepulsionClassSelector(GreedyClassRepulsionMixin, RandomClassSelector):
    """:class:`RandomClassSelector` followed by greedy class repulsion (``exclude_k``)."""


class NeighborVarianceWithRepulsionClassSelector(GreedyClassRepulsionMixin,
                                                 NeighborVarianceClassSelector):
    """:class:`NeighborVarianceClassSelector` followed by greedy class repulsion
    (``exclude_k``): the selector of ASPIRE's "0.11.0" preset."""


class DistanceWithRepulsionClassSelector(GreedyClassRepulsionMixin, DistanceClassSelector):
    """:class:`DistanceClassSelector` followed by greedy class repulsion (``exclude_k``)."""
