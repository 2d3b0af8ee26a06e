"""Closed-form projections of a 3D Gaussian-blob molecule for classification tests.

A blob at c (pixels) with width s projects, for rotation R, to a 2D Gaussian at (R^T c)[:2]
with amplitude a s sqrt(2 pi) (docs/conventions.md), so images and their viewing directions
R[:, 2] are exact ground truth.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from classavg._grid import centered_grid


#: ``R @ FLIP``: the view from -v, i.e. the mirrored image of the view of R.
FLIP = np.diag([1.0, -1.0, -1.0])


def rz(angle):
    """Rotation about z by ``angle`` radians (an in-plane rotation of the projection)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def blob_molecule(L=32, m=20, seed=3):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(m, 3))
    c = np.cumsum(steps / np.linalg.norm(steps, axis=1, keepdims=True) * 3.0, axis=0)
    c -= c.mean(0)
    c *= 0.2 * L / np.abs(c).max()
    return c, rng.uniform(0.04, 0.08, m) * L, rng.uniform(0.5, 1.5, m)


def project(molecule, rotations, L):
    c, s, a = molecule
    y, x = centered_grid(L)
    p = np.einsum("nji,mj->nmi", rotations, c)[..., :2]            # (n, m, 2) = R^T c
    amp = a * s * np.sqrt(2 * np.pi)
    out = np.zeros((len(rotations), L, L))
    for i in range(len(c)):                                          # blobs, not images
        d2 = (x - p[:, i, 0, None, None]) ** 2 + (y - p[:, i, 1, None, None]) ** 2
        out += amp[i] * np.exp(-d2 / (2 * s[i] ** 2))
    return out.astype(np.float32)


def add_noise(images, snr, seed):
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(images.var() / snr)
    return images + rng.normal(scale=sigma, size=images.shape).astype(np.float32)


@pytest.fixture(scope="session")
def molecule():
    return blob_molecule(L=32)


@pytest.fixture(scope="session")
def random_views(molecule):
    """1,500 clean 32 x 32 projections at uniformly random rotations."""
    R = Rotation.random(1500, random_state=11).as_matrix()
    return project(molecule, R, 32), R
