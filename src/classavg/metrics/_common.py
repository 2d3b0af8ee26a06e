"""Array checks shared by the metrics modules (messages follow ``classavg._validation``)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_viewing_directions",
    "as_class_indices",
    "as_image_stack",
    "viewing_directions",
]


def _fail(name, expectation, value, exc=ValueError):
    raise exc(f"{name} must be {expectation}, got {value!r}")


def _describe(arr):
    """Short description of an array for error messages (never the full contents)."""
    return f"array of shape {arr.shape} and dtype {arr.dtype}"


def viewing_directions(rotations):
    """Viewing directions (projection axes) of rotation matrices.

    By the classavg convention (``docs/conventions.md``) a rotation ``R`` makes the image
    ``I(x, y) = integral vol(R @ (x, y, z)) dz``; the viewing direction is the **third column**
    ``R[:, 2]``.

    Parameters
    ----------
    rotations : array_like, shape (..., 3, 3)
        Rotation matrices.

    Returns
    -------
    ndarray, shape (..., 3)
        Unit viewing directions ``R[..., :, 2]`` (float64).
    """
    r = np.asarray(rotations, dtype=np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        _fail("rotations", "an array of shape (..., 3, 3)", _describe(r))
    return r[..., :, 2]


def as_viewing_directions(viewing_directions_, name="viewing_directions"):
    """Return float64 unit vectors (n, 3) from directions (n, 3) or rotations (n, 3, 3)."""
    v = np.asarray(viewing_directions_, dtype=np.float64)
    if v.ndim == 3 and v.shape[1:] == (3, 3):
        v = v[:, :, 2]
    if v.ndim != 2 or v.shape[1] != 3:
        _fail(name, "an array of shape (n, 3) (or rotations of shape (n, 3, 3))", _describe(v))
    if not np.all(np.isfinite(v)):
        _fail(name, "finite", "an array with NaN or inf entries")
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norm == 0):
        _fail(name, "non-zero vectors", "an array with a zero row")
    return v / norm


def as_class_indices(class_indices, n_images, name="class_indices", min_cols=2):
    """Return ``class_indices`` as an int64 array (n_classes, n_nbor) after range checks."""
    ci = np.asarray(class_indices)
    if ci.ndim != 2 or ci.shape[1] < min_cols or ci.shape[0] < 1:
        _fail(name, f"an integer array of shape (n_classes, n_nbor) with n_nbor >= {min_cols}",
              _describe(ci))
    if not np.issubdtype(ci.dtype, np.integer):
        _fail(name, "an integer array", _describe(ci), TypeError)
    ci = ci.astype(np.int64, copy=False)
    if ci.min() < 0 or ci.max() >= n_images:
        _fail(name, f"indices in [0, {n_images})", f"values in [{ci.min()}, {ci.max()}]")
    return ci


def as_image_stack(images, name="images"):
    """Return ``(stack (k, L, L) float64, was_single)`` from an (L, L) or (k, L, L) array."""
    a = np.asarray(images, dtype=np.float64)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[1] < 2:
        _fail(name, "an array of shape (L, L) or (k, L, L) with L >= 2", _describe(a))
    return a, single


def check_same_shape(a, b, name_a, name_b):
    """Raise ``ValueError`` unless two arrays have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} "
                         f"and {b.shape}")
