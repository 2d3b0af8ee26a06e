"""Rotational alignment of candidate pairs and neighbour re-ranking: angle and mirror
conventions against closed-form projections, the correlation against a brute-force rotation
search, the energy cut-off, and the re-ranked table."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from classavg.basis import FourierBesselBasis2D
from classavg.classification.rerank import (
    align_candidates,
    rerank_neighbors,
    rotational_alignment,
    significant_components,
)

from .conftest import FLIP, project, rz

@pytest.fixture(scope="module")
def basis():
    return FourierBesselBasis2D(32, dtype=np.float64)


@pytest.mark.parametrize("energy_tol", [0.0, 1e-3])
def test_alignment_angle_and_mirror(molecule, basis, energy_tol):
    # R_j = R_0 Rz(b): rotating image j counter-clockwise by b gives image 0
    # (docs/conventions.md); for the mirrored view R_0 FLIP Rz(b), mirror j then rotate by -b.
    R0 = Rotation.random(1, random_state=4).as_matrix()[0]
    b = np.array([0.3, 1.7, -2.5])
    Rs = [R0] + [R0 @ rz(x) for x in b] + [R0 @ FLIP @ rz(x) for x in b]
    coef = basis.expand(project(molecule, np.stack(Rs), 32).astype(np.float64))
    sim, refl, angle = rotational_alignment(coef, basis.k, np.array([0]),
                                            np.arange(1, 7)[None], energy_tol=energy_tol)
    assert np.all(sim > 0.999)
    assert np.array_equal(refl[0], [False] * 3 + [True] * 3)
    expect = np.concatenate([b, -b]) % (2 * np.pi)
    err = np.angle(np.exp(1j * (angle[0] - expect)))
    # Sub-grid (parabola-interpolated) accuracy; the grid step is 360 / N degrees.
    assert np.max(np.abs(np.degrees(err))) < 0.5


def brute_force(coef, k, i, j):
    """max over 7200 rotations (and the mirror) of the normalised weighted correlation."""
    w = np.where(k == 0, 1.0, 2.0)
    alpha = np.linspace(0, 2 * np.pi, 7200, endpoint=False)
    rot = np.exp(-1j * np.outer(alpha, k))
    a, b = coef[i], coef[j]
    norm = np.sqrt(np.sum(w * np.abs(a) ** 2) * np.sum(w * np.abs(b) ** 2))
    plain = np.real((np.conj(a) * w * rot) @ b) / norm
    mirr = np.real((np.conj(a) * w * rot) @ np.conj(b)) / norm
    return max(plain.max(), mirr.max()), mirr.max() > plain.max(), alpha


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), kmax=st.integers(0, 12))
def test_similarity_matches_brute_force_rotation_search(seed, kmax):
    rng = np.random.default_rng(seed)
    k = np.sort(rng.integers(0, kmax + 1, size=12))
    # Decaying spectra like steerable-PCA coefficients; k = 0 components are real.
    scale = 1.0 / (1 + k)
    coef = (rng.normal(size=(6, 12)) + 1j * rng.normal(size=(6, 12)) * (k > 0)) * scale
    sim, refl, _ = rotational_alignment(coef.astype(np.complex64), k, np.arange(2),
                                        np.array([[2, 3, 4, 5], [0, 3, 4, 5]]),
                                        energy_tol=0.0)
    for r, row in enumerate([[2, 3, 4, 5], [0, 3, 4, 5]]):
        for c, j in enumerate(row):
            best, _, _ = brute_force(coef, k, r, j)
            # Grid of >= 4 samples per period of kmax plus parabolic refinement: a grid sample
            # lies within pi / 4 / kmax of the peak, where the top frequency alone loses up to
            # 1 - cos(pi / 8) ~ 0.076 of its amplitude; the parabola recovers most of it
            # (worst seen over thousands of random spectra: 0.012).
            assert sim[r, c] == pytest.approx(best, abs=0.03)


def test_significant_components_drops_only_a_small_tail():
    rng = np.random.default_rng(0)
    k = np.repeat(np.arange(40), 2)
    amp = np.where(k <= 9, 1.0, 1e-3)               # energy above k = 9: ~6e-5 of the total
    coef = amp * (rng.normal(size=(500, 80)) + 1j * rng.normal(size=(500, 80)))
    keep = significant_components(coef, k, energy_tol=1e-3)
    assert np.array_equal(keep, k <= 9) or np.all(k[keep] <= 9)
    w = np.where(k == 0, 1.0, 2.0)
    energy = w * np.mean(np.abs(coef) ** 2, 0)
    assert energy[~keep].sum() <= 1e-3 * energy.sum()
    # The cut-off is minimal: one frequency lower would drop more than the tolerance.
    kcut = k[keep].max()
    assert energy[k >= kcut].sum() > 1e-3 * energy.sum()
    assert significant_components(coef, k, energy_tol=0.0).all()
    with pytest.raises(ValueError, match="energy_tol must be"):
        significant_components(coef, k, energy_tol=-1)


def test_rerank_puts_rotated_copies_first(molecule, basis):
    # Two views, 8 in-plane rotations (half of them mirrored) each; candidates in a scrambled
    # order: re-ranking must list the 7 other copies of the same view first.
    views = Rotation.random(2, random_state=7).as_matrix()
    rng = np.random.default_rng(1)
    Rs = [views[v] @ (FLIP if i % 2 else np.eye(3)) @ rz(rng.uniform(0, 2 * np.pi))
          for v in range(2) for i in range(8)]
    coef = basis.expand(project(molecule, np.stack(Rs), 32).astype(np.float64))
    n = 16
    cand = np.stack([np.concatenate([[i], rng.permutation(np.delete(np.arange(n), i))])
                     for i in range(n)])
    ci, cr, cd = rerank_neighbors(coef, basis.k, cand, 8, block_size=5)
    assert np.array_equal(ci[:, 0], np.arange(n))
    assert np.all(ci[:, 1:] // 8 == np.arange(n)[:, None] // 8)
    # Mirror flags: copies i, j are mirrored relative to each other when i, j differ in parity.
    assert np.array_equal(cr[:, 1:], (ci[:, 1:] % 2) != (np.arange(n)[:, None] % 2))
    assert np.all(cd[:, 0] == 0) and np.all(np.diff(cd, axis=1) >= 0)
    sim, refl, angle = align_candidates(coef, basis.k, ci, block_size=3)
    assert np.all(sim[:, 1:] > 0.999)
    assert np.array_equal(refl[:, 1:], cr[:, 1:])


def test_rerank_validates():
    coef = np.ones((4, 3), np.complex64)
    with pytest.raises(ValueError, match="n_nbor must be"):
        rerank_neighbors(coef, np.arange(3), np.zeros((4, 2), int), 3)
    with pytest.raises(ValueError, match="block_size must be"):
        align_candidates(coef, np.arange(3), np.zeros((4, 2), int), block_size=0)
