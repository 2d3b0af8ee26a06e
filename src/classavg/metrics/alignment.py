r"""True in-plane alignment of class members and the errors of estimated alignments.

Conventions (``docs/conventions.md``)
-------------------------------------
* A rotation ``R`` makes the projection ``P(p) = integral vol(R (p, z)) dz`` of the pixel
  position ``p = (x, y)``; the viewing direction is ``v = R[:, 2]``.
* ``Rot(a) = [[cos a, -sin a], [sin a, cos a]]`` acts on ``(x, y)``; rotating an image ``f``
  counter-clockwise by ``a`` gives ``f'(p) = f(Rot(-a) p)`` (content at ``q`` moves to
  ``Rot(a) q``).  Mirroring is ``y -> -y``: ``f'(p) = f(S p)`` with ``S = diag(1, -1)``.
  Translating by ``s`` gives ``f'(p) = f(p - s)``.
* An image with offset ``o`` is its centred projection translated by ``+o``:
  ``I(p) = P(p - o)``.
* The alignment of member j to reference r is applied to image j in the order mirror (if
  ``mirror``) -> translate by ``shift`` -> rotate counter-clockwise by ``rotation``; the result
  equals image r, **including the reference's own offset** ``o_r``.

Derivation of the true alignment
--------------------------------
*Rotation and mirror.*  With ``F = diag(1, -1, -1)`` (the view from the opposite side):

* ``v_r . v_j >= 0``: ``M = R_r^T R_j ~ Rz(b)``.  For ``R_j = R_r Rz(b)``,
  ``P_j(p) = P_r(Rot(b) p)``, so ``mirror = False`` and ``rotation = b``.
* ``v_r . v_j < 0``: ``M = F R_r^T R_j ~ Rz(b)``.  For ``R_j = R_r F Rz(b)``,
  ``P_j(p) = P_r(S Rot(b) p)``; the mirrored image is
  ``P_j(S p) = P_r(S Rot(b) S p) = P_r(Rot(-b) p)``, so ``mirror = True`` and
  ``rotation = -b``.

When the views differ (``M`` not exactly a rotation about z) the in-plane angle is the ``b``
that minimises ``||M - Rz(b)||_F``, i.e. maximises ``cos b (M00 + M11) + sin b (M10 - M01)``:
``b = atan2(M10 - M01, M00 + M11)`` (orthogonal Procrustes on the in-plane 2 x 2 block; exact
for equal views, and stable where ``atan2(M10, M00)`` would depend on the tilt).

*Shift.*  Write ``Q = S`` if mirrored else ``I`` and ``c`` for the alignment rotation, so that in
both cases ``P_j(p) = P_r(A p)`` with ``A Q = Rot(c)`` (``A = Rot(b)`` or ``S Rot(b)``).  The
aligned image is

    T(p) = I_j(Q (Rot(-c) p - s)) = P_r(A Q Rot(-c) p - A Q s - A o_j)
         = P_r(p - Rot(c) s - A o_j).

``T = I_r = P_r(p - o_r)`` requires ``Rot(c) s + A o_j = o_r``; since
``Rot(-c) A = Rot(-c) A Q Q = Q``,

    s = Rot(-c) o_r - Q o_j.

Read it backwards: ``-Q o_j`` re-centres the mirrored particle (mirroring maps the offset
``(x, y)`` to ``(x, -y)``), and ``Rot(-c) o_r`` is the reference's offset pre-rotated so that the
final rotation by ``c`` carries it to ``o_r``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import check_float
from ._common import as_class_indices

__all__ = [
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
]

_F = np.diag([1.0, -1.0, -1.0])


class RelativeAlignment(NamedTuple):
    """True alignment of members to references (see :func:`true_relative_alignment`)."""

    mirror: np.ndarray
    """Mirror flags, bool, shape (...)."""
    rotation: np.ndarray
    """Counter-clockwise rotation in radians in (-pi, pi], applied after mirror, shape (...)."""
    view_angle: np.ndarray
    """Angle between viewing directions up to mirroring, degrees, shape (...)."""


class ClassAlignment(NamedTuple):
    """True alignment of every class member (see :func:`class_true_alignment`)."""

    mirror: np.ndarray
    """Mirror flags, bool, shape (n_classes, n_nbor)."""
    rotation: np.ndarray
    """Rotation in radians, shape (n_classes, n_nbor)."""
    shift: np.ndarray | None
    """Shift ``(x, y)`` in pixels, shape (n_classes, n_nbor, 2); None without offsets."""
    view_angle: np.ndarray
    """Viewing-angle difference in degrees, shape (n_classes, n_nbor)."""


def _rot2(angle):
    """2D rotation matrices Rot(angle), shape (..., 2, 2)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _as_rotations(r, name):
    r = np.asarray(r, dtype=np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        raise ValueError(f"{name} must be an array of shape (..., 3, 3), got array of shape "
                         f"{r.shape}")
    return r


def true_relative_alignment(ref_rotations, member_rotations):
    """True mirror flag and in-plane rotation that align member images to references.

    Parameters
    ----------
    ref_rotations : array_like, shape (..., 3, 3)
        Rotations ``R_r`` of the reference images.
    member_rotations : array_like, shape (..., 3, 3)
        Rotations ``R_j`` of the members (broadcast against ``ref_rotations``).

    Returns
    -------
    RelativeAlignment
        ``(mirror, rotation, view_angle)``, each of the broadcast shape (...):
        ``mirror = v_r . v_j < 0``; ``rotation = b`` (not mirrored) or ``-b`` (mirrored) in
        radians, with ``b = atan2(M10 - M01, M00 + M11)`` and ``M = R_r^T R_j`` or
        ``F R_r^T R_j`` (``F = diag(1, -1, -1)``); ``view_angle = arccos |v_r . v_j|`` in
        degrees.  Mirroring image j (if ``mirror``) then rotating it counter-clockwise by
        ``rotation`` gives image r exactly when the views are equal; the module docstring
        has the derivation.

    Examples
    --------
    >>> Rz = lambda b: np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0],
    ...                          [0, 0, 1]])
    >>> a = true_relative_alignment(np.eye(3), Rz(0.3))
    >>> bool(a.mirror), round(float(a.rotation), 6)
    (False, 0.3)
    >>> a = true_relative_alignment(np.eye(3), np.diag([1., -1, -1]) @ Rz(0.3))
    >>> bool(a.mirror), round(float(a.rotation), 6)
    (True, -0.3)
    """
    rr = _as_rotations(ref_rotations, "ref_rotations")
    rj = _as_rotations(member_rotations, "member_rotations")
    m = np.swapaxes(rr, -1, -2) @ rj           # R_r^T R_j
    dot = m[..., 2, 2]                         # v_r . v_j
    mirror = dot < 0
    sign = np.where(mirror, -1.0, 1.0)         # F flips rows 1 and 2 of M
    b = np.arctan2(sign * m[..., 1, 0] - m[..., 0, 1], m[..., 0, 0] + sign * m[..., 1, 1])
    rotation = np.where(mirror, -b, b)
    rotation = np.where(rotation <= -np.pi, rotation + 2 * np.pi, rotation)
    cross = np.hypot(m[..., 0, 2], m[..., 1, 2])  # |v_r x v_j|
    view_angle = np.degrees(np.arctan2(cross, np.abs(dot)))
    return RelativeAlignment(mirror=np.asarray(mirror), rotation=np.asarray(rotation),
                             view_angle=np.asarray(view_angle))


def true_relative_shift(mirror, rotation, ref_offsets, member_offsets):
    """True shift (applied after the mirror, before the rotation) that aligns members.

    ``s = Rot(-rotation) o_r - Q o_j`` with ``Q = diag(1, -1)`` if ``mirror`` else the identity
    (derivation in the module docstring).

    Parameters
    ----------
    mirror : array_like of bool, shape (...)
        True mirror flags (:func:`true_relative_alignment`).
    rotation : array_like, shape (...)
        True alignment rotations in radians (counter-clockwise, applied after the shift).
    ref_offsets : array_like, shape (..., 2)
        Offsets ``(x, y)`` in pixels of the reference particles (particle centre relative to
        the box centre).
    member_offsets : array_like, shape (..., 2)
        Offsets ``(x, y)`` in pixels of the member particles.

    Returns
    -------
    ndarray, shape (..., 2)
        Shift ``(x, y)`` in pixels.
    """
    mirror = np.asarray(mirror, dtype=bool)
    o_r = np.asarray(ref_offsets, dtype=np.float64)
    o_j = np.asarray(member_offsets, dtype=np.float64)
    for name, o in (("ref_offsets", o_r), ("member_offsets", o_j)):
        if o.ndim < 1 or o.shape[-1] != 2:
            raise ValueError(f"{name} must be an array of shape (..., 2), got array of shape "
                             f"{o.shape}")
    q_oj = np.stack([o_j[..., 0], np.where(mirror, -o_j[..., 1], o_j[..., 1])], -1)
    return np.einsum("...ij,...j->...i", _rot2(-np.asarray(rotation, dtype=np.float64)),
                     o_r) - q_oj


def class_true_alignment(rotations, class_indices, offsets=None):
    """True alignment of every member of every class to its reference.

    Parameters
    ----------
    rotations : array_like, shape (n, 3, 3)
        True rotations of all n images.
    class_indices : array_like of int, shape (n_classes, n_nbor)
        Column 0 is the reference of each class.
    offsets : array_like, shape (n, 2), optional
        True offsets ``(x, y)`` in pixels (image = projection shifted by +offset).

    Returns
    -------
    ClassAlignment
        ``(mirror, rotation, shift, view_angle)`` of shape (n_classes, n_nbor) (shift with a
        trailing 2, or None without ``offsets``).  Column 0 (the reference itself) is
        ``(False, 0, (0, 0), 0)``.  Compare with the averager's ``class_refl`` and alignment
        output; restrict error statistics with :func:`alignment_mask`.
    """
    rot = _as_rotations(rotations, "rotations")
    if rot.ndim != 3:
        raise ValueError(f"rotations must be an array of shape (n, 3, 3), got array of shape "
                         f"{rot.shape}")
    ci = as_class_indices(class_indices, rot.shape[0], min_cols=1)
    al = true_relative_alignment(rot[ci[:, :1]], rot[ci])
    shift = None
    if offsets is not None:
        off = np.asarray(offsets, dtype=np.float64)
        if off.shape != (rot.shape[0], 2):
            raise ValueError(f"offsets must be an array of shape ({rot.shape[0]}, 2), got "
                             f"array of shape {off.shape}")
        shift = true_relative_shift(al.mirror, al.rotation, off[ci[:, :1]], off[ci])
    return ClassAlignment(al.mirror, al.rotation, shift, al.view_angle)


def alignment_mask(view_angle, max_angle=5.0, est_mirror=None, true_mirror=None, *,
                   exclude_reference=True):
    """Members whose alignment error is meaningful.

    Parameters
    ----------
    view_angle : array_like, shape (n_classes, n_nbor) or (...)
        True viewing-angle difference in degrees (``ClassAlignment.view_angle``).
    max_angle : float
        Keep members within this many degrees of their reference's view.
    est_mirror, true_mirror : array_like of bool, same shape, optional
        When both are given, keep only members whose estimated mirror flag is right (the
        rotation of a wrongly mirrored image has no true value).
    exclude_reference : bool
        Drop column 0 (the reference, trivially aligned) of a 2-D array.

    Returns
    -------
    ndarray of bool, same shape as ``view_angle``
    """
    va = np.asarray(view_angle, dtype=np.float64)
    max_angle = check_float("max_angle", max_angle, min=0.0)
    mask = va <= max_angle
    if (est_mirror is None) != (true_mirror is None):
        raise ValueError("est_mirror and true_mirror must be given together, got only one")
    if est_mirror is not None:
        mask &= np.asarray(est_mirror, dtype=bool) == np.asarray(true_mirror, dtype=bool)
    if exclude_reference and mask.ndim == 2:
        mask[:, 0] = False
    return mask


def angle_error(est, true):
    """Absolute difference of angles, wrapped to [0, 180] degrees.

    Parameters
    ----------
    est, true : array_like
        Angles in radians (broadcast together).

    Returns
    -------
    ndarray
        ``|est - true|`` modulo 2 pi, folded to [0, pi], in degrees.
    """
    d = np.mod(np.asarray(est, dtype=np.float64) - np.asarray(true, dtype=np.float64),
               2 * np.pi)
    return np.degrees(np.minimum(d, 2 * np.pi - d))


def _apply_mask(x, mask, lead_shape):
    if mask is None:
        return x.reshape((-1,) + x.shape[len(lead_shape):])
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != lead_shape:
        raise ValueError(f"mask must have shape {lead_shape}, got {mask.shape}")
    return x[mask]


def rotation_errors(est_rotation, true_rotation, mask=None):
    """Rotation errors in degrees of the selected members.

    Parameters
    ----------
    est_rotation, true_rotation : array_like, shape (...)
        Estimated and true alignment rotations in radians.
    mask : array_like of bool, shape (...), optional
        Members to keep (e.g. :func:`alignment_mask`); all when None.

    Returns
    -------
    ndarray, shape (n_selected,)
        :func:`angle_error` in degrees, in [0, 180].
    """
    est = np.asarray(est_rotation, dtype=np.float64)
    true = np.asarray(true_rotation, dtype=np.float64)
    if est.shape != true.shape:
        raise ValueError(f"est_rotation and true_rotation must have the same shape, got "
                         f"{est.shape} and {true.shape}")
    return _apply_mask(angle_error(est, true), mask, est.shape)


def shift_errors(est_shift, true_shift, mask=None):
    """Euclidean shift errors in pixels of the selected members.

    Parameters
    ----------
    est_shift, true_shift : array_like, shape (..., 2)
        Estimated and true shifts ``(x, y)`` in pixels.
    mask : array_like of bool, shape (...), optional
        Members to keep; all when None.

    Returns
    -------
    ndarray, shape (n_selected,)
        ``|est - true|`` in pixels.
    """
    est = np.asarray(est_shift, dtype=np.float64)
    true = np.asarray(true_shift, dtype=np.float64)
    if est.shape != true.shape or est.ndim < 1 or est.shape[-1] != 2:
        raise ValueError(f"est_shift and true_shift must have the same shape (..., 2), got "
                         f"{est.shape} and {true.shape}")
    err = np.linalg.norm(est - true, axis=-1)
    return _apply_mask(err, mask, err.shape)


def alignment_error_summary(est_rotation, est_shift, true_rotation, true_shift, mask=None):
    """Median rotation and shift errors of estimated alignments.

    Parameters
    ----------
    est_rotation, true_rotation : array_like, shape (...)
        Rotations in radians.
    est_shift, true_shift : array_like, shape (..., 2) or None
        Shifts ``(x, y)`` in pixels; pass None for both to skip the shift error.
    mask : array_like of bool, shape (...), optional
        Members to score, e.g. ``alignment_mask(true.view_angle, 5, est_refl, true.mirror)``.

    Returns
    -------
    dict
        ``median_rotation_error_deg``, ``mean_rotation_error_deg``,
        ``median_shift_error_px``, ``mean_shift_error_px`` (NaN without shifts or members) and
        ``n`` (number of members scored).
    """
    rot = rotation_errors(est_rotation, true_rotation, mask)
    out = {"n": int(rot.size),
           "median_rotation_error_deg": float(np.median(rot)) if rot.size else float("nan"),
           "mean_rotation_error_deg": float(np.mean(rot)) if rot.size else float("nan")}
    if (est_shift is None) != (true_shift is None):
        raise ValueError("est_shift and true_shift must be given together, got only one")
    sh = np.empty(0) if est_shift is None else shift_errors(est_shift, true_shift, mask)
    out["median_shift_error_px"] = float(np.median(sh)) if sh.size else float("nan")
    out["mean_shift_error_px"] = float(np.mean(sh)) if sh.size else float("nan")
    return out
