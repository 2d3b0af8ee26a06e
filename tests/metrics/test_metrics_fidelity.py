"""Tests of classavg.metrics.fidelity (correlation, FRC) and classavg.metrics.noise."""

import numpy as np
import pytest

from classavg._grid import disk_mask
from classavg.metrics import (
    class_average_fidelity,
    estimate_snr,
    fourier_ring_correlation,
    frc_resolution,
    masked_correlation,
    ring_frequencies,
)


def full_plane_rings(L):
    """Ring label round(|k|) of every pixel of np.fft.fft2 output (brute-force reference)."""
    k = np.fft.fftfreq(L) * L
    return np.rint(np.hypot(k[:, None], k[None, :])).astype(int)


def frc_brute_force(a, b):
    L = a.shape[-1]
    ring = full_plane_rings(L)
    out = []
    for x, y in zip(a, b):
        fa, fb = np.fft.fft2(x), np.fft.fft2(y)
        row = []
        for i in range(L // 2 + 1):
            m = ring == i
            row.append(np.real(np.sum(fa[m] * np.conj(fb[m])))
                       / np.sqrt(np.sum(np.abs(fa[m]) ** 2) * np.sum(np.abs(fb[m]) ** 2)))
        out.append(row)
    return np.array(out)


def lowpass(img, cutoff_ring):
    """Keep the rings 0 .. cutoff_ring (same ring definition as the FRC), zero the rest."""
    keep = full_plane_rings(img.shape[-1]) <= cutoff_ring
    return np.fft.ifft2(np.fft.fft2(img) * keep).real


@pytest.mark.parametrize("L", [32, 33])
def test_frc_matches_full_plane_brute_force(L):
    rng = np.random.default_rng(L)
    a = rng.normal(size=(3, L, L))
    b = a + rng.normal(size=(3, L, L))
    got = fourier_ring_correlation(a, b)
    assert got.shape == (3, L // 2 + 1)
    np.testing.assert_allclose(got, frc_brute_force(a, b), atol=1e-12)
    np.testing.assert_allclose(fourier_ring_correlation(a[0], b[0]), got[0])


def test_frc_identical_images_is_one():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 48, 48))
    np.testing.assert_allclose(fourier_ring_correlation(a, a), 1.0, atol=1e-12)
    np.testing.assert_allclose(fourier_ring_correlation(a, 2.5 * a), 1.0, atol=1e-12)
    assert frc_resolution(a[0], a[0], pixel_size=1.3) == pytest.approx(2 * 1.3)


def test_frc_independent_noise_is_near_zero():
    """For independent white noise FRC_i has mean 0 and sd ~ 1 / sqrt(n_i) (n_i = pixels in
    ring i: the numerator sums n_i products of independent zero-mean terms, the denominator is
    ~ n_i times the power).  We check that sd, the 3-sigma bound for all but a few percent of
    the rings, and a hard 5-sigma bound."""
    rng = np.random.default_rng(1)
    L, k = 64, 40
    frc = fourier_ring_correlation(rng.normal(size=(k, L, L)), rng.normal(size=(k, L, L)))
    n_i = np.bincount(full_plane_rings(L).ravel())[: L // 2 + 1]
    z = frc * np.sqrt(n_i)
    assert abs(frc[:, 3:].mean()) < 0.01
    assert 0.85 < z[:, 3:].std() < 1.15
    assert np.mean(np.abs(z) > 3) < 0.01
    assert np.all(np.abs(z[:, 1:]) < 5)


@pytest.mark.parametrize("cutoff", [6, 10, 20])
@pytest.mark.parametrize("pixel_size", [1.0, 1.7])
def test_frc_resolution_of_lowpassed_copy(cutoff, pixel_size):
    """FRC = 1 up to the cutoff ring and ~0 beyond: the 0.5 crossing interpolates to
    ring ~cutoff + 0.5, i.e. resolution L * pixel_size / (cutoff + 0.5)."""
    rng = np.random.default_rng(cutoff)
    L = 64
    a = rng.normal(size=(4, L, L))
    b = np.stack([lowpass(x, cutoff) for x in a])
    res = frc_resolution(a, b, pixel_size=pixel_size)
    np.testing.assert_allclose(res, L * pixel_size / (cutoff + 0.5), rtol=0.03)


def test_frc_resolution_interpolation_and_edges():
    from classavg.metrics.fidelity import _resolution_from_frc
    frc = np.array([[1.0, 0.9, 0.7, 0.3, 0.1], [1.0, 0.2, 0.1, 0.0, 0.0],
                    [1.0, 0.9, 0.8, 0.7, 0.6], [0.0, 1.0, 0.6, 0.55, 0.1]])
    res = _resolution_from_frc(frc, L=8, pixel_size=2.0, threshold=0.5)
    # crossing between rings 2 (0.7) and 3 (0.3): ring 2.5 -> 8 * 2 / 2.5
    assert res[0] == pytest.approx(16 / 2.5)
    # below at ring 1: interpolate from 1 at ring 0 -> ring 0.625
    assert res[1] == pytest.approx(16 / 0.625)
    assert res[2] == pytest.approx(4.0)  # never crosses: Nyquist 2 * pixel_size
    # ring 0 (the mean) is ignored; crossing between rings 3 and 4: 3 + 0.05 / 0.45
    assert res[3] == pytest.approx(16 / (3 + 0.05 / 0.45))
    with pytest.raises(ValueError, match="threshold"):
        frc_resolution(np.ones((4, 4)), np.ones((4, 4)), threshold=1.0)


def test_ring_frequencies():
    np.testing.assert_allclose(ring_frequencies(8, 2.0), np.arange(5) / 16)


def test_masked_correlation():
    rng = np.random.default_rng(2)
    L = 32
    a = rng.normal(size=(4, L, L))
    np.testing.assert_allclose(masked_correlation(a, a), 1.0)
    np.testing.assert_allclose(masked_correlation(a, -a), -1.0)
    np.testing.assert_allclose(masked_correlation(a, 3 * a + 2), 1.0)
    outside = ~disk_mask(L, 10.0)
    b = a + 50 * rng.normal(size=a.shape) * outside
    np.testing.assert_allclose(masked_correlation(a, b, radius=10.0), 1.0)
    assert np.all(masked_correlation(a, b) < 0.5)
    c = rng.normal(size=(200, L, L))
    d = rng.normal(size=(200, L, L))
    # independent: sd ~ 1 / sqrt(pixels in the disk ~ 800) ~ 0.035
    assert np.max(np.abs(masked_correlation(c, d))) < 0.2
    assert isinstance(masked_correlation(a[0], a[0]), float)
    assert np.isnan(masked_correlation(np.ones((L, L)), a[0]))
    with pytest.raises(ValueError, match="same shape"):
        masked_correlation(a, a[:2])


def test_class_average_fidelity():
    rng = np.random.default_rng(3)
    L, k = 48, 6
    y, x = np.mgrid[:L, :L] - L // 2
    clean = np.stack([np.exp(-((x - rng.uniform(-6, 6)) ** 2 + (y - rng.uniform(-6, 6)) ** 2)
                             / (2 * rng.uniform(2, 5) ** 2)) for _ in range(k)])
    perfect = class_average_fidelity(clean, clean, pixel_size=2.0)
    np.testing.assert_allclose(perfect["correlation"], 1.0)
    np.testing.assert_allclose(perfect["resolution"], 4.0)
    assert perfect["median_resolution"] == pytest.approx(4.0)
    assert perfect["frc"].shape == (k, L // 2 + 1)
    assert perfect["frequencies"].shape == (L // 2 + 1,)
    noisy = clean + 0.05 * rng.normal(size=clean.shape)
    fid = class_average_fidelity(noisy, clean, pixel_size=2.0, radius=20)
    assert 0.9 < fid["median_correlation"] < 1.0
    assert fid["median_resolution"] > 4.0
    assert fid["median_correlation"] == pytest.approx(np.median(fid["correlation"]))


def test_estimate_snr():
    rng = np.random.default_rng(4)
    clean = rng.normal(size=(20, 64, 64))
    sigma = np.sqrt(20.0)
    noisy = clean + sigma * rng.normal(size=clean.shape)
    assert estimate_snr(clean, noisy) == pytest.approx(1 / 20, rel=0.02)
    per = estimate_snr(clean, noisy, per_image=True)
    assert per.shape == (20,)
    np.testing.assert_allclose(per, 1 / 20, rtol=0.1)
    assert isinstance(estimate_snr(clean[0], noisy[0]), float)
    assert estimate_snr(clean, clean) == np.inf
