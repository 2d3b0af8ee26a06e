"""Shared fixtures of the averaging tests: classes with exactly known alignments.

``make_blob_class`` builds a class whose members are closed-form images of 2D Gaussian blobs
(a smooth, band-limited "particle"), so every member is *exactly* the reference mirrored,
shifted and rotated by known amounts -- no interpolation error in the ground truth.

Convention (``docs/conventions.md``): member j satisfies

    rotate(shift(mirror(member_j) if refl_j, shifts_j), rotations_j) == reference,

i.e. the true alignment ``(refl, shift, rotation)`` of member j is exactly what an averager
must report.  Column 0 is the reference itself (rotation 0, shift 0, no mirror).

Reusable by every averager's tests (import ``make_blob_class`` / ``add_noise`` from this
conftest, or use the fixtures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from classavg._grid import centered_grid
from classavg.sources.base import ArrayImageSource


def gaussian_blobs(L, centers, sigmas, amps):
    """Image (L, L) of 2D Gaussian blobs at ``centers`` (x, y) pixels about the centre pixel."""
    y, x = centered_grid(L)
    c = np.asarray(centers, dtype=float)
    d2 = (x[None] - c[:, 0, None, None]) ** 2 + (y[None] - c[:, 1, None, None]) ** 2
    return np.einsum("m,mij->ij", np.asarray(amps, float),
                     np.exp(-d2 / (2 * np.asarray(sigmas, float)[:, None, None] ** 2)))


@dataclass
class BlobClass:
    """A class of one reference and its members, with the true alignment of every member."""

    images: np.ndarray          # (m, L, L): member 0 is the reference
    reference: np.ndarray       # (L, L) == images[0]
    refl: np.ndarray            # (m,) bool
    shifts: np.ndarray          # (m, 2) (x, y) pixels, applied after the mirror
    rotations: np.ndarray       # (m,) radians, counter-clockwise, applied last
    centers: np.ndarray         # (n_blobs, 2) blob centres of the reference
    sigmas: np.ndarray
    amps: np.ndarray

    @property
    def class_indices(self):
        return np.arange(len(self.images))[None]

    @property
    def class_refl(self):
        return self.refl[None]

    def source(self, dtype=np.float64):
        return ArrayImageSource(self.images, dtype=dtype)


def make_blob_class(L=64, m=50, *, max_shift=2.0, mirror=True, rotate=True, seed=0,
                    n_blobs=6, extent=None):
    """A reference of random Gaussian blobs and ``m - 1`` exactly transformed members.

    Parameters
    ----------
    L : int
        Image size.
    m : int
        Members including the reference (column 0).
    max_shift : float
        Shifts are uniform in the disk of this radius (pixels); 0 for none.
    mirror : bool
        Mirror about half of the members.
    rotate : bool
        Uniform random rotations in [-pi, pi) (else 0).
    seed : int
    n_blobs : int
    extent : float, optional
        Blob centres lie in ``[-extent, extent]^2`` (default ``L / 6``), blob sigmas in
        ``[L / 32, L / 16]`` -- well inside the disk of radius ``L / 2`` and smooth at the
        pixel scale.
    """
    rng = np.random.default_rng(seed)
    extent = L / 6 if extent is None else extent
    cen = rng.uniform(-extent, extent, (n_blobs, 2))
    sig = rng.uniform(L / 32, L / 16, n_blobs)
    amp = rng.uniform(0.5, 1.5, n_blobs)
    rot = rng.uniform(-np.pi, np.pi, m) if rotate else np.zeros(m)
    r = max_shift * np.sqrt(rng.uniform(0, 1, m))
    ph = rng.uniform(0, 2 * np.pi, m)
    sh = np.stack([r * np.cos(ph), r * np.sin(ph)], axis=1)
    refl = rng.random(m) < 0.5 if mirror else np.zeros(m, bool)
    rot[0], sh[0], refl[0] = 0.0, 0.0, False
    imgs = np.empty((m, L, L))
    for j in range(m):
        # mirror(member) = shift(rotate(ref, -rot), -sh): blob c -> Rot(-rot) c - sh
        ca, sa = np.cos(-rot[j]), np.sin(-rot[j])
        c = np.stack([ca * cen[:, 0] - sa * cen[:, 1], sa * cen[:, 0] + ca * cen[:, 1]], 1)
        c = c - sh[j]
        if refl[j]:
            c[:, 1] *= -1
        imgs[j] = gaussian_blobs(L, c, sig, amp)
    return BlobClass(imgs, imgs[0].copy(), refl, sh, rot, cen, sig, amp)


def add_noise(images, snr, seed=0):
    """White Gaussian noise with variance ``var(images) / snr`` (over the whole stack)."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.var(images) / snr)
    return images + rng.normal(scale=sd, size=images.shape)


def angle_diff_deg(a, b):
    """|a - b| wrapped to [0, 180] degrees."""
    return np.degrees(np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b))))))


def disk_rel_error(a, b, L, radius=None):
    """Relative L2 error of ``a`` vs ``b`` inside the disk of radius ``radius`` (default L/2)."""
    y, x = centered_grid(L)
    m = np.hypot(x, y) < (L / 2 if radius is None else radius)
    return np.linalg.norm((a - b)[..., m]) / np.linalg.norm(b[..., m])


@pytest.fixture(scope="session")
def blob_class():
    """64 x 64, 50 members, rotations, mirrors and shifts up to 2 px (clean)."""
    return make_blob_class(64, 50, max_shift=2.0, seed=0)


@pytest.fixture(scope="session")
def blob_class_unshifted():
    """64 x 64, 50 members, rotations and mirrors, no shifts (clean)."""
    return make_blob_class(64, 50, max_shift=0.0, seed=1)


@pytest.fixture(scope="session")
def blob_classes():
    """Three independent classes (different references) in one source of 3 x 20 images.

    Returns (src, class_indices (3, 20), class_refl (3, 20), list of BlobClass); row i is
    class i, whose images are 20 * i .. 20 * i + 19 of the pooled source.
    """
    classes = [make_blob_class(48, 20, max_shift=1.5, seed=10 + i) for i in range(3)]
    pool = np.concatenate([c.images for c in classes])
    ci = np.stack([np.arange(20) + 20 * i for i in range(3)])
    cr = np.stack([c.refl for c in classes])
    return ArrayImageSource(pool, dtype=np.float64), ci, cr, classes
