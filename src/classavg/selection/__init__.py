"""Class selection: which classes to average, in which order.

Selectors (``select(class_indices, class_refl, class_distances) -> ordered class ids``):

* local (from the neighbour table alone): :class:`TopClassSelector`,
  :class:`RandomClassSelector`, :class:`NeighborVarianceClassSelector`,
  :class:`DistanceClassSelector`;
* global (average every class and score it): :class:`GlobalClassSelector`, with a
  byte-bounded cache of the best averages;
* greedy class repulsion, :class:`GreedyClassRepulsionMixin`, mixable into any of them:
  ``XWithRepulsionClassSelector``.

Image quality functions (``f(image) -> float``, ``f(stack) -> (k,)``, higher is better):
:class:`VarianceImageQualityFunction`, :class:`BandedSNRImageQualityFunction`,
:class:`BandpassImageQualityFunction`, the weighting mixins
:class:`RampWeightedImageQualityMixin`, :class:`BumpWeightedImageQualityMixin`, and
:class:`RampWeightedVarianceImageQualityFunction`,
:class:`BumpWeightedVarianceImageQualityFunction`.
"""

from .base import ClassSelector, GreedyClassRepulsionMixin, check_selection_table, greedy_repulsion
from .global_ import GlobalClassSelector, GlobalWithRepulsionClassSelector
from .local import (
    DistanceClassSelector,
    DistanceWithRepulsionClassSelector,
    NeighborVarianceClassSelector,
    NeighborVarianceWithRepulsionClassSelector,
    RandomClassSelector,
    RandomWithRepulsionClassSelector,
    TopClassSelector,
    TopWithRepulsionClassSelector,
)
from .quality import (
    BandedSNRImageQualityFunction,
    BandpassImageQualityFunction,
    BumpWeightedImageQualityMixin,
    BumpWeightedVarianceImageQualityFunction,
    ImageQualityFunction,
    RampWeightedImageQualityMixin,
    RampWeightedVarianceImageQualityFunction,
    VarianceImageQualityFunction,
    WeightedImageQualityMixin,
    bump_weights,
    ramp_weights,
)

__all__ = [
    "ClassSelector",
    "GreedyClassRepulsionMixin",
    "check_selection_table",
    "greedy_repulsion",
    "TopClassSelector",
    "RandomClassSelector",
    "NeighborVarianceClassSelector",
    "DistanceClassSelector",
    "GlobalClassSelector",
    "TopWithRepulsionClassSelector",
    "RandomWithRepulsionClassSelector",
    "NeighborVarianceWithRepulsionClassSelector",
    "DistanceWithRepulsionClassSelector",
    "GlobalWithRepulsionClassSelector",
    "ImageQualityFunction",
    "VarianceImageQualityFunction",
    "BandedSNRImageQualityFunction",
    "BandpassImageQualityFunction",
    "WeightedImageQualityMixin",
    "RampWeightedImageQualityMixin",
    "BumpWeightedImageQualityMixin",
    "RampWeightedVarianceImageQualityFunction",
    "BumpWeightedVarianceImageQualityFunction",
    "ramp_weights",
    "bump_weights",
]
