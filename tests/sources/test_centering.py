"""Particle centring against known translations, rotations and CTFs."""

import numpy as np
import pandas as pd
import pytest

from classavg.sources import (ArrayImageSource, CenteredSource, GaussianBlobVolume,
                              Simulation, resolve_chain)
from classavg.sources.centering import _phase_ramp, ring_average

L = 63          # odd: np.rot90 keeps the centre pixel L // 2 in place


def translate(images, shifts):
    """Images translated by ``shifts`` (x, y) pixels (exact Fourier shift, circular)."""
    f = np.fft.rfft2(images) * _phase_ramp(images.shape[-1], shifts)
    return np.fft.irfft2(f, s=images.shape[-2:])


@pytest.fixture(scope="module")
def view():
    """One noise-free projection of an asymmetric blob molecule, its centre off the box
    centre (float64, (L, L))."""
    vol = GaussianBlobVolume(centers=[[0.0, 0.0, 0.0], [0.22, 0.05, 0.0], [-0.1, 0.2, 0.1]],
                             sigmas=[0.12, 0.07, 0.05], amplitudes=[1.0, 0.8, 0.6])
    sim = Simulation(L, 1, volume=vol, snr=None, seed=3, dtype=np.float64)
    return sim.images[:][0]


def test_ring_average_is_symmetric_and_keeps_a_radial_image():
    y, x = np.indices((L, L)) - L // 2
    g = np.exp(-(x ** 2 + y ** 2) / (2 * 6.0 ** 2))
    r = ring_average(g)
    # A radial image is reproduced up to the interpolation between rings: spreading into
    # and reading back from the rings each average g over radii within one ring spacing, a
    # second-order error of at most max|g''| * 1^2 / 2, max|g''| = 1 / sigma^2 here.
    assert np.max(np.abs(r - g)) <= 1 / (2 * 6.0 ** 2)
    asym = np.random.default_rng(0).standard_normal((L, L))
    ra = ring_average(asym)
    np.testing.assert_allclose(np.rot90(ra), ra, atol=1e-12)


def test_translated_copies_of_one_view_are_centred_alike(view):
    rng = np.random.default_rng(1)
    n = 200
    t = rng.uniform(-4, 4, (n, 2))
    src = ArrayImageSource(translate(np.repeat(view[None], n, 0), t), dtype=np.float64)
    cen = src.center(max_shift=8)
    # shift_i + t_i is the view's own centre, the same for every copy; the parabolic peak
    # refinement of a smooth correlation peak is exact to about 0.05 px.
    total = cen.shifts + t
    assert np.max(np.abs(total - total.mean(0))) < 0.1
    out = cen.images[:]
    assert np.max(np.abs(out - out.mean(0))) < 0.1 * np.abs(view).max() * 0.2
    # The offsets carry the translation forward; the chain reports it.
    np.testing.assert_allclose(cen.offsets, src.offsets + cen.shifts)
    np.testing.assert_allclose(resolve_chain(cen).translations(), cen.shifts)


def test_centring_is_rotation_equivariant(view):
    """A rotated copy of a view gets the rotated centre, so the centred images of one view
    agree up to the in-plane rotation (what rotation-invariant features need)."""
    rng = np.random.default_rng(2)
    base = np.stack([np.rot90(view, q) for q in range(4)] * 25)             # (100, L, L)
    t = rng.uniform(-3, 3, (100, 2))
    cen = ArrayImageSource(translate(base, t), dtype=np.float64).center(max_shift=8).images[:]
    back = np.stack([np.rot90(c, -(i % 4)) for i, c in enumerate(cen)])
    assert np.max(np.abs(back - back.mean(0))) < 0.05 * np.abs(view).max()


@pytest.mark.parametrize("flip", [False, True])
def test_ctf_modulated_copies_are_centred_alike(view, flip):
    """Copies at different defoci (phase flipped or not) find the same centre: the matched
    filter is the CTF-modulated reference."""
    n = 240
    rng = np.random.default_rng(4)
    defocus = np.repeat([1.0e4, 1.6e4, 2.2e4], n // 3)
    md = pd.DataFrame({"rlnDefocusU": defocus, "rlnDefocusV": defocus,
                       "rlnDefocusAngle": 0.0, "rlnVoltage": 300.0,
                       "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1})
    from classavg.sources.ctf import evaluate_ctf
    ctf = np.fft.ifftshift(evaluate_ctf(L, 2.0, defocus, defocus), axes=(-2, -1))
    clean = np.fft.ifft2(np.fft.fft2(view)[None] * ctf).real
    t = rng.uniform(-3, 3, (n, 2))
    src = ArrayImageSource(translate(clean, t), pixel_size=2.0, metadata=md, dtype=np.float64)
    if flip:
        src = src.phase_flip()
    cen = src.center(max_shift=8)
    assert cen.phase_flipped is flip
    total = cen.shifts + t
    # The CTF sharpens the correlation peak (width ~2 px): the three-point parabola is then
    # biased by up to ~0.1 px, depending on the copy's sub-pixel phase, so two copies differ
    # by up to ~0.2 px.
    assert np.max(np.abs(total - total.mean(0))) < 0.25


def test_replay_keeps_the_translations(view):
    """CTF-aware averaging replays the chain without the phase flip: the centring step is
    replayed with the translations estimated on the flipped images."""
    n = 120
    md = pd.DataFrame({"rlnDefocusU": 1.5e4, "rlnDefocusV": 1.5e4, "rlnDefocusAngle": 0.0,
                       "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7,
                       "rlnAmplitudeContrast": 0.1}, index=range(n))
    t = np.random.default_rng(5).uniform(-3, 3, (n, 2))
    src = ArrayImageSource(translate(np.repeat(view[None], n, 0), t), pixel_size=2.0,
                           metadata=md, dtype=np.float64)
    cen = src.phase_flip().center()
    raw = resolve_chain(cen).ctf_images()
    assert isinstance(raw, CenteredSource) and raw.parent is src
    np.testing.assert_array_equal(raw.shifts, cen.shifts)
    np.testing.assert_allclose(raw.images[:], translate(src.images[:], cen.shifts), atol=1e-9)


def test_noisy_simulation_recovers_the_picking_offsets():
    """Against the truth: after centring, the offsets of images of nearby views agree far
    better than the picking offsets (rms 1.7 px) did."""
    sim = Simulation(32, 1500, snr=0.5, max_shift=3.0, seed=0)
    cen = sim.normalize_background().center(max_shift=6)
    new = cen.offsets                     # where each particle now sits: the view's centre
    d = sim.viewing_directions
    near = (d @ d.T) > np.cos(np.radians(5))
    np.fill_diagonal(near, False)
    i, j = np.nonzero(near)
    spread_before = np.sqrt(np.mean(np.sum((sim.offsets[i] - sim.offsets[j]) ** 2, 1)))
    # Same-view pairs differ also by an in-plane rotation of the view's centre, so compare
    # the distances of the centres from the box centre.
    r = np.hypot(new[:, 0], new[:, 1])
    spread_after = np.sqrt(np.mean((r[i] - r[j]) ** 2))
    assert spread_after < 0.5 * spread_before


def test_options_are_validated():
    src = ArrayImageSource(np.zeros((4, 16, 16), np.float32))
    with pytest.raises(ValueError, match="max_shift"):
        src.center(max_shift=20)
    with pytest.raises(ValueError, match="phase_flipped"):
        src.center(phase_flipped="yes")
