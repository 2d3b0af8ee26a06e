"""The RELION side of a run's outputs: class numbers with mirror classes, poses, paths, optics.

RELION's 2D alignments have no mirror.  With ``K`` selected classes, a particle aligned to
class ``k`` (rank, 1-based) directly goes to RELION class ``k``; one aligned as a mirror image
goes to RELION class ``K + k``, whose average is the mirror (``y -> -y``) of average ``k``.
classavg's alignment of member ``j`` (docs/conventions.md) is: mirror (if flagged), shift by
``s`` pixels, rotate counter-clockwise by ``theta``.  RELION's ``rlnAnglePsi`` and
``rlnOriginX/YAngst`` are applied to the particle as a shift by the origin, then a rotation by
psi (``relion_stack_create --apply_transformation``; checked against RELION 3.1.3, see
docs/outputs.md), so:

* direct member: ``psi = +degrees(theta)``, ``origin = s * pixel_size``;
* mirrored member, onto the mirrored average ``M(A)``: ``M R(theta) T(s) M = R(-theta) T(Ms)``
  gives ``psi = -degrees(theta)``, ``origin = (s_x, -s_y) * pixel_size``.

Paths are written as RELION writes them: relative to the project directory (where RELION
runs; ``classavg run --data-dir``, else the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..io._optics import complete_optics, optics_groups

__all__ = ["relion_poses", "project_path", "project_image_names", "averages_optics",
           "partition_members"]


def partition_members(members, distances, numbers, n_particles):
    """Give every particle listed in ``members`` to one row: the one where it is nearest.

    Parameters
    ----------
    members : ndarray of int, shape (k, m)
        Particle indices of each class (row).
    distances : ndarray, shape (k, m)
        Feature distance of each member to its class reference.
    numbers : ndarray of int, shape (k,)
        Number of each row (1-based rank); ties in distance go to the smaller number.
    n_particles : int

    Returns
    -------
    row : ndarray of int, shape (n_particles,)
        Row of ``members`` each particle goes to, -1 for particles in no row.
    col : ndarray of int, shape (n_particles,)
        Its column in that row (-1 when in none).
    """
    k, m = members.shape
    num = np.repeat(np.asarray(numbers, np.int64), m)
    flat = members.ravel()
    dist = np.asarray(distances, np.float64).ravel()
    order = np.lexsort((num, dist, flat))                       # by particle, distance, number
    first = order[np.r_[True, flat[order][1:] != flat[order][:-1]]] if flat.size else order
    row = np.full(n_particles, -1, np.int64)
    col = np.full(n_particles, -1, np.int64)
    row[flat[first]] = first // m
    col[flat[first]] = first % m
    return row, col


def translations_after_mirror(translation, mirror):
    """Pre-alignment translations (a centring step's) in the averagers' frame.

    The averagers mirror a member (when ``mirror``), shift it, then rotate it, on the images
    as the source chain left them; a centring step translated the input image by ``t``
    before.  Mirroring (``y -> -y``) a translated image equals translating the mirrored image
    by ``(t_x, -t_y)``, so the total shift after the mirror is the averager's plus this.

    Parameters
    ----------
    translation : ndarray, shape (n, 2)
        Pixels ``(x, y)`` (:meth:`classavg.sources.SourceChain.translations`).
    mirror : ndarray of bool, shape (n,)

    Returns
    -------
    ndarray, shape (n, 2)
    """
    t = np.asarray(translation, np.float64)
    return np.stack([t[:, 0], np.where(mirror, -t[:, 1], t[:, 1])], axis=1)


def relion_poses(rank, rotation, shift, mirror, n_classes):
    """RELION class numbers and poses of the partition (see the module notes).

    Parameters
    ----------
    rank : ndarray of int, shape (n,)
        1-based rank of each particle's class, 0 for none.
    rotation : ndarray, shape (n,)
        Radians (classavg's alignment, counter-clockwise, after the shift).
    shift : ndarray, shape (n, 2)
        Pixels ``(x, y)``, applied before the rotation (after the mirror).
    mirror : ndarray of bool, shape (n,)
    n_classes : int
        ``K``, the number of selected classes.

    Returns
    -------
    class_number : ndarray of int, shape (n,)
        ``rank`` for direct members, ``K + rank`` for mirrored ones, 0 for none.
    psi : ndarray, shape (n,)
        ``rlnAnglePsi`` in degrees, in ``[0, 360)``.
    origin : ndarray, shape (n, 2)
        ``rlnOriginX/Y`` in pixels of the classified images (multiply by their pixel size
        for ``rlnOriginX/YAngst``).
    """
    rank = np.asarray(rank, np.int64)
    mirror = np.asarray(mirror, bool) & (rank > 0)
    sign = np.where(mirror, -1.0, 1.0)
    number = np.where(mirror, rank + int(n_classes), rank)
    psi = np.mod(sign * np.degrees(rotation), 360.0)
    origin = np.stack([shift[:, 0], sign * shift[:, 1]], axis=1)
    return number, np.where(psi >= 360.0, 0.0, psi), origin


def project_path(path, project_dir):
    """``path`` as RELION names it from ``project_dir``: relative (``../`` allowed), POSIX."""
    return Path(os.path.relpath(Path(path).absolute(), Path(project_dir).absolute())).as_posix()


def project_image_names(root, names, project_dir):
    """Image names (``N@stack``) of the source that read the files, valid from the project.

    A stack name that already resolves to its file from ``project_dir`` (or is absolute) is
    kept as written; any other is rewritten relative to ``project_dir``.

    Parameters
    ----------
    root : ImageSource
        The source that read the files (a ``RelionSource``: ``stack_names``, ``stack_paths``).
    names : pandas.Series of str
        Its ``rlnImageName`` column.
    project_dir : pathlib.Path

    Returns
    -------
    pandas.Series of str
    """
    stack_names = getattr(root, "stack_names", None)
    if not stack_names:
        return names
    project = Path(project_dir).absolute()
    mapping = {}
    for name, path in zip(stack_names, root.stack_paths):
        if Path(name).is_absolute() or (project / name).resolve() == Path(path).resolve():
            continue
        mapping[name] = project_path(path, project)
    if not mapping:
        return names
    parts = names.str.split("@", n=1, expand=True)
    if parts.shape[1] == 1:
        return names.map(lambda x: mapping.get(x, x))
    return parts[0] + "@" + parts[1].map(lambda x: mapping.get(x, x))


def averages_optics(root, *, pixel_size, L):
    """The optics block of ``class_averages.star``: one group, every label RELION needs.

    Voltage, Cs and amplitude contrast of the input's most common optics group (300 kV,
    2.7 mm, 0.1 when it has none), the averages' pixel size (A) and box size (px),
    dimensionality 2.

    Returns
    -------
    pandas.DataFrame, one row
    """
    md = root.metadata
    gid, groups = optics_groups(md, pixel_size=pixel_size, L=L)
    top = int(np.bincount(gid).argmax()) if len(gid) else 1
    row = groups[groups["rlnOpticsGroup"] == top].iloc[:1].copy()
    keep = [c for c in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
            if c in row.columns]
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["classavg"]})
    for c in keep:
        optics[c] = row[c].to_numpy()
    optics = complete_optics(optics, where="class_averages.star")
    optics["rlnImagePixelSize"] = float(pixel_size)
    optics["rlnImageSize"] = int(L)
    optics["rlnImageDimensionality"] = 2
    return optics
