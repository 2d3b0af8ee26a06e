"""Classification accuracy against ground-truth viewing directions.

A class ``c`` is a row of ``class_indices`` (n_classes, n_nbor): the reference image
``r = class_indices[c, 0]`` followed by its ``n_nbor - 1`` neighbours.  A neighbour ``j`` is a
good one when its viewing direction is close to the reference's **up to mirroring**: the image
seen from ``-v`` is the mirror of the image seen from ``v`` (``docs/conventions.md``), so both
count as the same view.  The angle is therefore

    angle(r, j) = arccos(|v_r . v_j|)   in degrees, in [0, 90],

evaluated as ``atan2(|v_r x v_j|, |v_r . v_j|)`` (the same value, but accurate for nearly
parallel vectors where ``arccos`` loses half the digits).  The viewing direction of a rotation
``R`` is its third column ``R[:, 2]`` (:func:`viewing_directions`); every function that takes
``viewing_directions`` (n, 3) also accepts the rotations (n, 3, 3) themselves.

References
----------
.. [1] Zhao, Z. & Singer, A. (2014). Rotationally invariant image representation for viewing
   direction classification in cryo-EM. J. Struct. Biol. 186, 153-166 (the neighbour
   viewing-angle histogram as accuracy measure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .._validation import check_float
from ._common import as_class_indices, as_viewing_directions

__all__ = [
    "chance_fraction",
    "neighbor_view_angles",
    "neighbor_ceiling",
    "neighbor_accuracy",
    "NeighborAccuracy",
    "mirror_flag_agreement",
]

#: Number of (query, neighbour) pairs handled per block in :func:`neighbor_ceiling`.
_BLOCK_PAIRS = 1 << 20


def _pair_angles(vr, vj):
    """Angle (degrees) between unit vectors up to sign, and the signed dot product."""
    dot = np.sum(vr * vj, axis=-1)
    cross = np.linalg.norm(np.cross(vr, vj), axis=-1)
    return np.degrees(np.arctan2(cross, np.abs(dot))), dot


def _check_thresholds(thresholds, name="thresholds"):
    if np.ndim(thresholds) == 0:
        thresholds = (thresholds,)
    out = tuple(check_float(name, t, min=0.0, min_inclusive=False, max=90.0) for t in thresholds)
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of angles in (0, 90), got ()")
    if max(out) >= 90.0:
        raise ValueError(f"{name} must be angles in (0, 90) degrees, got {thresholds!r}")
    return out


def chance_fraction(threshold):
    """Fraction of uniformly random views within ``threshold`` degrees, up to mirroring.

    For uniform unit vectors ``|v_r . v_j|`` is uniform on [0, 1], so
    ``P(arccos|v_r . v_j| <= t) = 1 - cos t`` (1.5 % at 10 degrees; median angle 60 degrees).

    Parameters
    ----------
    threshold : float or array_like
        Angle(s) in degrees.

    Returns
    -------
    float or ndarray
        ``1 - cos(threshold)``, same shape as ``threshold``.
    """
    t = np.radians(np.asarray(threshold, dtype=np.float64))
    out = 1.0 - np.cos(np.clip(t, 0.0, np.pi / 2))
    return float(out) if out.ndim == 0 else out


def neighbor_view_angles(class_indices, viewing_directions, *, group=None):
    """Angles between each class reference's view and its neighbours' views.

    Parameters
    ----------
    class_indices : array_like of int, shape (n_classes, n_nbor)
        Column 0 is the reference image of each class, columns 1.. its neighbours.
    viewing_directions : array_like, shape (n, 3) or (n, 3, 3)
        True viewing directions ``R[:, 2]`` of all n images (normalised here), or the
        rotations themselves.
    group : ndarray, shape (m, 3, 3), optional
        The map's point symmetry (:func:`classavg.metrics.symmetry.symmetry_group`): the
        views ``v`` and ``g v`` give one image, so the angle is the smallest over the group.

    Returns
    -------
    ndarray, shape (n_classes, n_nbor - 1)
        ``min_g arccos(|v_r . g v_j|)`` in degrees, in [0, 90].
    """
    v = as_viewing_directions(viewing_directions)
    ci = as_class_indices(class_indices, v.shape[0])
    ang, _ = _pair_angles(v[ci[:, :1]], v[ci[:, 1:]])
    for g in ([] if group is None else np.asarray(group, dtype=np.float64)):
        ang = np.minimum(ang, _pair_angles(v[ci[:, :1]], v[ci[:, 1:]] @ g.T)[0])
    return ang


def neighbor_ceiling(class_indices, viewing_directions, thresholds=(5.0, 10.0, 20.0)):
    """Best achievable neighbour fraction within each threshold, given the data set.

    For class c with reference r, at most ``count_t(r)`` images other than r lie within ``t``
    degrees of ``v_r`` (up to mirroring), so no classifier can place more than
    ``min(count_t(r), n_nbor - 1)`` good neighbours in the class.  The ceiling is
    ``mean_c min(count_t(r_c), n_nbor - 1) / (n_nbor - 1)``.

    The counts are exact: a k-d tree over the symmetrised set ``{v_j} U {-v_j}`` returns, for
    every distinct reference, its ``n_nbor`` nearest directions within the chord distance
    ``2 sin(t_max / 2)`` (``|a - b| = 2 sin(angle / 2)`` on the unit sphere); their angles are then
    recomputed with the same formula as :func:`neighbor_view_angles` and compared with each
    threshold.  Because only the capped count is needed, the ``n_nbor`` nearest suffice, so the
    cost is ``O(n_ref n_nbor log n)`` rather than the ``O(n_ref n)`` of a brute-force
    ``|V_r V^T|`` product: n = 100,000 with n_classes = n and n_nbor = 50 takes about a second.
    Queries run in blocks of about a million (reference, neighbour) pairs to bound memory.

    Parameters
    ----------
    class_indices : array_like of int, shape (n_classes, n_nbor)
        Column 0 is the reference image of each class (only it and n_nbor are used).
    viewing_directions : array_like, shape (n, 3) or (n, 3, 3)
        True viewing directions (or rotations) of all n images.
    thresholds : float or sequence of float
        Angles in degrees, each in (0, 90).

    Returns
    -------
    dict of float -> float
        Ceiling fraction in [0, 1] for each threshold.
    """
    v = as_viewing_directions(viewing_directions)
    ci = as_class_indices(class_indices, v.shape[0])
    ts = _check_thresholds(thresholds)
    per_class = _ceiling_per_class(ci[:, 0], ci.shape[1] - 1, v, ts)
    return {t: float(per_class[i].mean()) for i, t in enumerate(ts)}


def _ceiling_per_class(refs, m, v, ts):
    """Capped fraction (len(ts), len(refs)) of other images within each threshold of refs."""
    n = v.shape[0]
    uniq, inverse = np.unique(refs, return_inverse=True)
    # Tiny relative slack so that the tree never drops a point exactly on the boundary; the
    # final decision uses the exact angles below.
    bound = 2.0 * np.sin(np.radians(max(ts)) / 2.0) * (1.0 + 1e-9) + 1e-12
    tree = cKDTree(np.concatenate([v, -v]))
    k = min(m + 1, 2 * n)
    tarr = np.asarray(ts)[:, None, None]
    counts = np.empty((len(ts), uniq.size), dtype=np.int64)
    block = max(1, _BLOCK_PAIRS // k)
    for start in range(0, uniq.size, block):
        r = uniq[start:start + block]
        _, idx = tree.query(v[r], k=k, distance_upper_bound=bound)
        valid = idx < 2 * n
        j = np.where(valid, idx % n, 0)
        ang, _ = _pair_angles(v[r][:, None, :], v[j])
        ok = valid & (j != r[:, None])
        counts[:, start:start + block] = np.sum(ok[None] & (ang[None] <= tarr), axis=2)
    frac = np.minimum(counts, m) / m
    return frac[:, inverse]


@dataclass(frozen=True)
class NeighborAccuracy:
    """Neighbour viewing-angle accuracy of a classification (see :func:`neighbor_accuracy`).

    Attributes
    ----------
    thresholds : tuple of float
        Angles in degrees.
    fraction : dict of float -> float
        Fraction of all (class, neighbour) pairs whose angle is <= each threshold.
    ceiling : dict of float -> float or None
        Best achievable fraction for this data set and n_nbor (:func:`neighbor_ceiling`);
        None when not computed.
    chance : dict of float -> float
        ``1 - cos(t)``, the fraction expected for uniformly random views.
    median_angle, mean_angle : float
        Median and mean neighbour angle in degrees (chance: 60 and about 57.3).
    n_classes, n_nbor : int
        Shape of ``class_indices`` (n_nbor counts the reference).
    """

    thresholds: tuple
    fraction: dict
    ceiling: dict | None
    chance: dict
    median_angle: float
    mean_angle: float
    n_classes: int
    n_nbor: int

    def to_dict(self):
        """Flat ``{name: value}`` dict (keys such as ``fraction_10``, ``ceiling_10``)."""
        out = {}
        for t in self.thresholds:
            key = f"{t:g}"
            out[f"fraction_{key}"] = self.fraction[t]
            if self.ceiling is not None:
                out[f"ceiling_{key}"] = self.ceiling[t]
            out[f"chance_{key}"] = self.chance[t]
        out.update(median_angle=self.median_angle, mean_angle=self.mean_angle,
                   n_classes=self.n_classes, n_nbor=self.n_nbor)
        return out


def neighbor_accuracy(class_indices, viewing_directions, thresholds=(5.0, 10.0, 20.0), *,
                      ceiling=True, group=None):
    """Neighbour viewing-angle accuracy of a classification, with chance level and ceiling.

    Parameters
    ----------
    class_indices : array_like of int, shape (n_classes, n_nbor)
        Column 0 is the reference image of each class, columns 1.. its neighbours.
    viewing_directions : array_like, shape (n, 3) or (n, 3, 3)
        True viewing directions ``R[:, 2]`` (or rotations) of all n images.
    thresholds : float or sequence of float
        Angles in degrees, each in (0, 90).
    ceiling : bool
        Compute the data-set ceiling (:func:`neighbor_ceiling`); about a second for
        n = n_classes = 100,000.  Not computed with a ``group``.
    group : ndarray, shape (m, 3, 3), optional
        Judge the views up to this point symmetry (:func:`neighbor_view_angles`); the chance
        level is then ``m (1 - cos t)`` (exact for views more than ``t`` from every
        symmetry axis, whose images of a cap do not overlap).

    Returns
    -------
    NeighborAccuracy
        Fractions within each threshold, ceiling, chance level ``1 - cos t`` and the median /
        mean angle (degrees) over all (class, neighbour) pairs.

    Examples
    --------
    >>> acc = neighbor_accuracy(class_indices, rotations)          # doctest: +SKIP
    >>> acc.fraction[10.0], acc.ceiling[10.0], acc.median_angle    # doctest: +SKIP
    """
    v = as_viewing_directions(viewing_directions)
    ci = as_class_indices(class_indices, v.shape[0])
    ts = _check_thresholds(thresholds)
    ang = neighbor_view_angles(ci, v, group=group)
    frac = {t: float(np.mean(ang <= t)) for t in ts}
    ceil = None
    if ceiling and group is None:
        per_class = _ceiling_per_class(ci[:, 0], ci.shape[1] - 1, v, ts)
        ceil = {t: float(per_class[i].mean()) for i, t in enumerate(ts)}
    order = 1 if group is None else len(group)
    return NeighborAccuracy(
        thresholds=ts, fraction=frac, ceiling=ceil,
        chance={t: min(1.0, order * chance_fraction(t)) for t in ts},
        median_angle=float(np.median(ang)), mean_angle=float(np.mean(ang)),
        n_classes=int(ci.shape[0]), n_nbor=int(ci.shape[1]))


def mirror_flag_agreement(class_indices, class_refl, viewing_directions, max_angle=10.0):
    """Fraction of close neighbours whose mirror flag matches the true geometry.

    Convention: neighbour j of class c must be mirrored (``class_refl[c, j] = True``) exactly
    when it is seen from the opposite side of the reference, ``v_r . v_j < 0`` (the view from
    ``-v`` is the mirror image of the view from ``v``; ``docs/conventions.md``).  Only
    neighbours within ``max_angle`` degrees of the reference (up to mirroring) are scored: for
    far-away views the flag has no meaning.

    Parameters
    ----------
    class_indices : array_like of int, shape (n_classes, n_nbor)
        Column 0 is the reference image of each class.
    class_refl : array_like of bool, shape (n_classes, n_nbor) or (n_classes, n_nbor - 1)
        Mirror flags; with n_nbor columns, column 0 (the reference) is ignored.
    viewing_directions : array_like, shape (n, 3) or (n, 3, 3)
        True viewing directions (or rotations).
    max_angle : float
        Angle in degrees, in (0, 90).

    Returns
    -------
    float
        Fraction in [0, 1] of scored neighbours whose flag equals ``v_r . v_j < 0``; NaN when
        no neighbour lies within ``max_angle``.
    """
    v = as_viewing_directions(viewing_directions)
    ci = as_class_indices(class_indices, v.shape[0])
    (max_angle,) = _check_thresholds((max_angle,), name="max_angle")
    refl = np.asarray(class_refl)
    if refl.shape == ci.shape:
        refl = refl[:, 1:]
    if refl.shape != (ci.shape[0], ci.shape[1] - 1):
        raise ValueError(f"class_refl must have shape {ci.shape} or "
                         f"{(ci.shape[0], ci.shape[1] - 1)}, got {refl.shape}")
    if refl.dtype != np.bool_:
        if not np.all(np.isin(refl, (0, 1))):
            raise ValueError("class_refl must be boolean (or 0/1), got other values")
        refl = refl.astype(bool)
    ang, dot = _pair_angles(v[ci[:, :1]], v[ci[:, 1:]])
    close = ang <= max_angle
    if not np.any(close):
        return float("nan")
    return float(np.mean(refl[close] == (dot[close] < 0)))
