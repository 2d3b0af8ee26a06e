"""Half-set FRC resolution (classavg.metrics.resolution) against ground truth.

Tolerances: for two images with the same signal and independent Gaussian noise the FRC of a
ring of ``n`` pixels has expectation ``SNR / (1 + SNR)`` up to O(1/n) and a standard deviation
below ``1 / sqrt(n)``; averaged over ``k`` independent pairs the error is below
``4 / sqrt(n k) + 2 / n`` (4 standard deviations plus the bias bound).
"""

import numpy as np
import pytest

from classavg._grid import centered_grid
from classavg.metrics.fidelity import _ring_layout
from classavg.metrics.resolution import (
    HALF_SET_THRESHOLD,
    expected_frc,
    half_set_columns,
    half_set_resolution,
    resolution_from_frc,
)

L = 64


def ring_power(img):
    """Sum of |F|^2 per ring 0..L//2 over the full plane (unnormalised FFT)."""
    order, starts, w, _ = _ring_layout(img.shape[-1])
    f = np.fft.rfft2(img).reshape(-1)[order]
    return np.add.reduceat(w * np.abs(f) ** 2, starts)


def test_threshold_is_rosenthal_henderson():
    # the full average's expected correlation with the truth is 0.5 where the half-set FRC
    # is the threshold: sqrt(2 FRC / (1 + FRC)) = 1/2
    assert np.sqrt(2 * HALF_SET_THRESHOLD / (1 + HALF_SET_THRESHOLD)) == pytest.approx(0.5)


def test_frc_of_noise_realisations_follows_snr_curve():
    rng = np.random.default_rng(0)
    y, x = centered_grid(L)
    signal = np.exp(-(x ** 2 + y ** 2) / (2 * 3.0 ** 2)) + 0.5 * np.exp(
        -((x - 6) ** 2 + (y + 4) ** 2) / (2 * 1.5 ** 2))
    sigma, k = 0.05, 200
    a = signal + sigma * rng.normal(size=(k, L, L))
    b = signal + sigma * rng.normal(size=(k, L, L))
    _, _, _, counts = _ring_layout(L)
    snr = ring_power(signal) / (counts * L * L * sigma ** 2)   # white noise: L^2 sigma^2 / px
    want = expected_frc(snr)
    out = half_set_resolution(a, b, pixel_size=1.5)
    got = out["frc"].mean(axis=0)
    rings = np.arange(1, L // 2 + 1)
    assert want[1] > 0.9 and want[-1] < 0.05                   # the curve spans the range
    tol = 4 / np.sqrt(counts[rings] * k) + 2 / counts[rings]
    np.testing.assert_array_less(np.abs(got[rings] - want[rings]), tol)
    # and the resolution read from the mean curve is where the expected curve crosses 1/7
    res, _ = resolution_from_frc(want, L, 1.5)
    assert np.median(out["resolution"]) == pytest.approx(res[0], rel=0.1)
    np.testing.assert_allclose(out["frequencies"], np.arange(L // 2 + 1) / (L * 1.5))


@pytest.mark.parametrize("r0", [6, 12, 20])
@pytest.mark.parametrize("pixel_size", [1.0, 2.3])
def test_resolution_of_band_limited_signal(r0, pixel_size):
    rng = np.random.default_rng(r0)
    ky = np.fft.fftfreq(L) * L
    kx = np.fft.rfftfreq(L) * L
    band = np.round(np.hypot(ky[:, None], kx[None])) <= r0
    signal = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(L, L))) * band, s=(L, L))
    sigma = 0.05 * signal.std() * L / r0              # SNR ~ 100 per ring inside the band
    a = signal + sigma * rng.normal(size=(4, L, L))
    b = signal + sigma * rng.normal(size=(4, L, L))
    out = half_set_resolution(a, b, pixel_size)
    # crossing after ring r0 (FRC ~0.99), by ring r0 + 1 or, since a noise-only ring of n
    # pixels has an FRC of standard deviation 1 / sqrt(n) (0.15 at ring 7, about the
    # threshold), one ring later
    assert np.all(out["resolution"] <= L * pixel_size / r0 + 1e-9)
    assert np.all(out["resolution"] >= L * pixel_size / (r0 + 2) - 1e-9)
    assert np.median(out["resolution"]) >= L * pixel_size / (r0 + 1) - 1e-9
    assert not out["at_nyquist"].any()


def test_edge_cases_inf_nan_nyquist():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(L, L))
    out = half_set_resolution(np.stack([img, img, np.zeros((L, L))]),
                              np.stack([2 * img, np.zeros((L, L)), img]), pixel_size=1.2)
    # identical halves never cross: the Nyquist bound, flagged
    assert out["resolution"][0] == pytest.approx(2 * 1.2) and out["at_nyquist"][0]
    # an empty half: undefined
    assert np.isnan(out["resolution"][1:]).all() and not out["at_nyquist"][1:].any()
    assert np.isnan(out["frc"][1:]).all()
    # no correlation at ring 1: infinite; a half-way crossing interpolates
    frc = np.zeros((3, L // 2 + 1))
    frc[:, 0] = 1.0
    frc[1, 1] = HALF_SET_THRESHOLD / 2 - 0.5           # negative: still inf
    frc[2, 1:5] = 1.0
    frc[2, 5] = 2 * HALF_SET_THRESHOLD - 1.0           # threshold half-way between 4 and 5
    res, nyq = resolution_from_frc(frc, L, 1.0)
    assert res[0] == np.inf and res[1] == np.inf and not nyq.any()
    assert res[2] == pytest.approx(L / 4.5)
    frc[2, 5] = 0.0
    res, _ = resolution_from_frc(frc, L, 1.0)
    assert res[2] == pytest.approx(L / (4 + (1 - HALF_SET_THRESHOLD)))


@pytest.mark.parametrize("m, half", [(1, 0), (2, 1), (7, 3), (50, 25)])
def test_half_set_columns_alternate(m, half):
    a, b = half_set_columns(m)
    assert a.size == b.size == half
    assert not set(a) & set(b) and set(a) | set(b) <= set(range(m))
    np.testing.assert_array_equal(b - a, np.ones(half, int))


@pytest.mark.parametrize("bad, match", [(dict(threshold=1.0), "threshold"),
                                        (dict(pixel_size=0.0), "pixel_size")])
def test_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        resolution_from_frc(np.ones(L // 2 + 1), L, **{"pixel_size": 1.0, **bad})
    with pytest.raises(ValueError, match="rings"):
        resolution_from_frc(np.ones(5), L)
