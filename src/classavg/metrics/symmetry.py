r"""Point symmetry of a map, and class-member relations judged up to it.

A map with a symmetry ``g`` (a rotation with ``V(g p) = V(p)``) gives the same image for the
rotations ``R`` and ``g R`` (``I(q) = \int V(R q) dz``, ``docs/conventions.md``): their
viewing directions ``R[:, 2]`` and ``g R[:, 2]`` differ, and for a two-fold axis across the
view ``g v`` is close to ``-v``, so two such images look like *mirror* views of each other
although one in-plane rotation relates them.  Ground-truth comparisons of views and in-plane
angles must therefore be made up to the map's symmetry group (as RELION and cryoSPARC report
angular accuracy for a given point group).

:func:`twofold_axes` finds the two-fold axes of a map (exact ones from a symmetrised
deposition, or the pseudo-symmetry of a near-symmetric complex, by the correlation
threshold), :func:`symmetry_group` closes them into a group, and
:func:`same_class_pair_relations` measures the RELION contract of issue 17 (are members of
one class related by their written psi?) with the true rotations taken up to the group.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import minimize

from .._validation import check_float, check_int
from ._common import viewing_directions

__all__ = ["twofold_axes", "symmetry_group", "same_class_pair_relations"]


def _twofold(u):
    """The rotation by 180 degrees about the unit axis ``u`` (3,): ``2 u u^T - I``."""
    return 2.0 * np.outer(u, u) - np.eye(3)


def _axis(angles):
    t, p = angles
    return np.array([np.cos(t) * np.sin(p), np.sin(t) * np.sin(p), np.cos(p)])


def _correlation(vol, u_zyx, center):
    """Pearson correlation of ``vol`` with itself turned by 180 degrees about ``u`` (axis in
    index order ``z, y, x``) through ``center`` (voxels)."""
    g = _twofold(u_zyx / np.linalg.norm(u_zyx))
    # affine_transform: out[o] = vol[g o + offset]; the centre maps to itself
    turned = ndimage.affine_transform(vol, g, offset=center - g @ center, order=1)
    a, b = vol - vol.mean(), turned - turned.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def twofold_axes(volume, *, min_correlation=0.9, n_search=1500, max_axes=3):
    """Two-fold (pseudo-)symmetry axes of a map.

    Every axis of a Fibonacci half-sphere (``n_search`` of them) is tried on the map
    downsampled twice (order-1 interpolation about the centre of mass of the positive
    density); the best ones, pairwise more than 25 degrees apart, are refined on the full map
    (Nelder-Mead over the two angles of the axis) and kept when the map correlates with its
    half-turn at least ``min_correlation``.

    Parameters
    ----------
    volume : array_like, shape (L, L, L)
        Indexed ``[z, y, x]`` (:func:`classavg.sources.volume.load_volume`).
    min_correlation : float, optional
        Pearson correlation of the map with its half-turn for an axis to count (default 0.9:
        exact axes of a symmetrised map reach 0.99+, random axes of a compact molecule
        0.4-0.7).
    n_search : int, optional
        Axes of the coarse search (default 1500: about 3 degrees apart).
    max_axes : int, optional
        Most axes refined and returned (default 3, as in D2).

    Returns
    -------
    axes : ndarray, shape (k, 3)
        Unit axes in volume coordinates ``(x, y, z)``, best first (k may be 0).
    correlations : ndarray, shape (k,)
    """
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"volume must be a cubic 3D array, got shape {vol.shape}")
    min_correlation = check_float("min_correlation", min_correlation, min=-1.0, max=1.0)
    n_search = check_int("n_search", n_search, min=1)
    max_axes = check_int("max_axes", max_axes, min=1)
    pos = np.clip(vol, 0, None)
    center = (np.array(ndimage.center_of_mass(pos)) if pos.sum() > 0
              else (np.array(vol.shape) - 1) / 2.0)
    small = ndimage.zoom(vol, 0.5, order=1)
    c_small = center * (np.array(small.shape) - 1) / (np.array(vol.shape) - 1)
    i = np.arange(n_search) + 0.5
    theta, phi = np.pi * (1 + 5 ** 0.5) * i, np.arccos(1 - i / n_search)   # z >= 0 half
    grid = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    coarse = np.array([_correlation(small, u, c_small) for u in grid])
    found = []
    for k in np.argsort(-coarse):
        u = grid[k]
        if len(found) == max_axes:
            break
        if any(abs(u @ f) > np.cos(np.deg2rad(25.0)) for f, _ in found):
            continue
        start = [np.arctan2(u[1], u[0]), np.arccos(np.clip(u[2], -1.0, 1.0))]
        res = minimize(lambda a: -_correlation(vol, _axis(a), center), start,
                       method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
        found.append((_axis(res.x), -float(res.fun)))
    keep = [(u, c) for u, c in found if c >= min_correlation]
    keep.sort(key=lambda t: -t[1])
    axes = np.array([u[::-1] for u, _ in keep]).reshape(-1, 3)   # (z, y, x) -> (x, y, z)
    return axes, np.array([c for _, c in keep])


def symmetry_group(axes, *, tol=1e-3, max_order=60):
    """The rotation group generated by the half-turns about ``axes``, identity first.

    Parameters
    ----------
    axes : array_like, shape (k, 3)
        Unit axes (``(x, y, z)``), e.g. from :func:`twofold_axes`; k = 0 gives the identity.
    tol : float, optional
        Largest element difference of two matrices taken as the same (default 1e-3).  Axes
        found numerically are not exactly perpendicular: products of near-D2 axes are
        matched up to this tolerance.
    max_order : int, optional
        A group larger than this (axes at an angle that is not ``180 / n``) raises.

    Returns
    -------
    ndarray, shape (m, 3, 3)
    """
    axes = np.asarray(axes, dtype=np.float64).reshape(-1, 3)
    gens = [_twofold(u / np.linalg.norm(u)) for u in axes]
    group = [np.eye(3)]
    frontier = list(group)
    while frontier:
        new = []
        for a in frontier:
            for g in gens:
                p = g @ a
                if not any(np.abs(p - q).max() <= tol for q in group + new):
                    new.append(p)
        group += new
        frontier = new
        if len(group) > max_order:
            raise ValueError(f"the half-turns about axes {axes.tolist()} generate more than "
                             f"{max_order} rotations: not a finite point group at tol={tol}")
    return np.stack(group)


def same_class_pair_relations(numbers, psi_deg, rotations, classes, *, group=None,
                              view_tol=15.0, psi_tol=10.0):
    """How the members of RELION classes are related: by their psi, or only by a mirror.

    For every pair ``(i, j)`` of particles with the same ``rlnClassNumber`` (in ``classes``)
    whose true views agree within ``view_tol`` directly or through the mirror
    (``v_i . g v_j`` or ``v_i . -g v_j``, for some ``g`` of ``group``):

    * **related by psi**: for some ``g`` the views agree directly and the written
      ``psi_j - psi_i`` is within ``psi_tol`` of the true relative in-plane angle ``b``
      (``R_i^T g R_j = Rz(b)`` for equal views; RELION's psi turns the particle onto the
      average, so ``psi_i = b_i`` up to a constant);
    * **mirror-only**: for no ``g`` do the views agree directly: only a mirror relates them,
      which RELION (no mirrors) cannot represent.

    Parameters
    ----------
    numbers : ndarray of int, shape (n,)
        ``rlnClassNumber`` of every particle.
    psi_deg : ndarray, shape (n,)
        ``rlnAnglePsi``.
    rotations : ndarray, shape (n, 3, 3)
        True rotations.
    classes : iterable of int
        Class numbers whose pairs count.
    group : ndarray, shape (m, 3, 3), optional
        The map's symmetry (:func:`symmetry_group`); default: none (the identity).
    view_tol, psi_tol : float, optional
        Degrees (defaults 15 and 10).

    Returns
    -------
    dict
        ``pairs`` (the pairs that count), ``related_by_psi`` and ``mirror_only`` (percent of
        ``pairs``).
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    psi_deg = np.asarray(psi_deg, dtype=np.float64)
    numbers = np.asarray(numbers)
    group = np.eye(3)[None] if group is None else np.asarray(group, dtype=np.float64)
    cos_tol = np.cos(np.deg2rad(check_float("view_tol", view_tol, min=0.0)))
    psi_tol = check_float("psi_tol", psi_tol, min=0.0)
    v = viewing_directions(rotations)
    total = related = mirror_only = 0
    for c in classes:
        idx = np.flatnonzero(numbers == c)
        if idx.size < 2:
            continue
        i, j = np.triu_indices(idx.size, 1)
        i, j = idx[i], idx[j]
        gv = np.einsum("gab,pb->gpa", group, v[j])                   # (m, pairs, 3)
        dots = np.einsum("pa,gpa->gp", v[i], gv)
        direct = dots >= cos_tol
        mirror = -dots >= cos_tol
        m = np.einsum("pai,gab,pbj->gpij", rotations[i], group, rotations[j])
        b = np.degrees(np.arctan2(m[..., 1, 0], m[..., 0, 0]))
        d = np.mod(psi_deg[j] - psi_deg[i] - b + 180.0, 360.0) - 180.0
        agree = (direct | mirror).any(axis=0)
        total += int(agree.sum())
        related += int((direct & (np.abs(d) <= psi_tol)).any(axis=0).sum())
        mirror_only += int((agree & ~direct.any(axis=0)).sum())
    pct = (lambda x: round(100.0 * x / total, 1)) if total else (lambda x: float("nan"))
    return {"pairs": total, "related_by_psi": pct(related), "mirror_only": pct(mirror_only)}
