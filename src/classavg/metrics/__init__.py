"""Accuracy measures of classavg results against simulated ground truth.

Classification
    :func:`neighbor_view_angles`, :func:`neighbor_accuracy` (fractions within 5/10/20 degrees,
    median angle, chance level and data-set ceiling), :func:`neighbor_ceiling`,
    :func:`chance_fraction`, :func:`mirror_flag_agreement`.
Alignment
    :func:`true_relative_alignment`, :func:`true_relative_shift`,
    :func:`class_true_alignment`, :func:`alignment_mask`, :func:`angle_error`,
    :func:`rotation_errors`, :func:`shift_errors`, :func:`alignment_error_summary`.
Class averages
    :func:`masked_correlation`, :func:`fourier_ring_correlation`, :func:`ring_frequencies`,
    :func:`frc_resolution`, :func:`class_average_fidelity`.
Noise
    :func:`estimate_snr`.
Symmetry
    :func:`twofold_axes`, :func:`symmetry_group`, :func:`same_class_pair_relations` (the
    RELION contract of class members, up to the map's point symmetry).

The viewing direction of a rotation ``R`` is its third column ``R[:, 2]``
(:func:`viewing_directions`); see ``docs/conventions.md`` for every other convention.  This
package depends only on numpy, scipy and ``classavg._grid`` / ``classavg._validation``.
"""

from ._common import viewing_directions
from .alignment import (
    ClassAlignment,
    RelativeAlignment,
    alignment_error_summary,
    alignment_mask,
    angle_error,
    class_true_alignment,
    rotation_errors,
    shift_errors,
    true_relative_alignment,
    true_relative_shift,
)
from .classification import (
    NeighborAccuracy,
    chance_fraction,
    mirror_flag_agreement,
    neighbor_accuracy,
    neighbor_ceiling,
    neighbor_view_angles,
)
from .fidelity import (
    class_average_fidelity,
    fourier_ring_correlation,
    frc_resolution,
    masked_correlation,
    ring_frequencies,
)
from .noise import estimate_snr
from .symmetry import same_class_pair_relations, symmetry_group, twofold_axes

__all__ = [
    "viewing_directions",
    # classification
    "NeighborAccuracy",
    "chance_fraction",
    "neighbor_view_angles",
    "neighbor_ceiling",
    "neighbor_accuracy",
    "mirror_flag_agreement",
    # alignment
    "RelativeAlignment",
    "ClassAlignment",
    "true_relative_alignment",
    "true_relative_shift",
    "class_true_alignment",
    "alignment_mask",
    "angle_error",
    "rotation_errors",
    "shift_errors",
    "alignment_error_summary",
    # fidelity
    "masked_correlation",
    "ring_frequencies",
    "fourier_ring_correlation",
    "frc_resolution",
    "class_average_fidelity",
    # noise
    "estimate_snr",
    # symmetry
    "twofold_axes",
    "symmetry_group",
    "same_class_pair_relations",
]
