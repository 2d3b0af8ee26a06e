"""Tests of classavg.sources.noise and the noise of Simulation: measured against requested
power spectra, SNR definition, determinism."""

import functools

import numpy as np
import pytest

from classavg.sources.noise import ICE_AMPLITUDE, ice_psd, noise_filter, requested_psd
from classavg.sources.simulation import Simulation


def _pure_noise(L, n, noise, seed=3):
    """A simulation whose images are pure noise (all empty-ice junk) at the SNR 1 noise level
    of the built-in molecule."""
    return Simulation(L, n, snr=1.0, noise=noise, junk=1.0, junk_kinds={"empty_ice": 1},
                      seed=seed, dtype=np.float64)


def _full_rings(L):
    f = np.fft.fftfreq(L)
    return np.rint(np.hypot(f[:, None], f[None, :]) * L).astype(int)


def _user_table():
    k = np.linspace(0, 0.75, 16)
    return np.stack([k, 0.5 + 4.0 * np.exp(-k / 0.1) + 2.0 * k], 1)


@pytest.mark.parametrize("noise", ["white", "ice", functools.partial(ice_psd, amplitude=5.0,
                                                                     k0=0.05),
                                   "table", "rings", "file"])
def test_measured_noise_psd_matches_the_requested_one(noise, tmp_path):
    L, n = 32, 300
    if noise == "table":
        noise = _user_table()
    elif noise == "rings":                           # estimate_noise_psd's layout, k_j = j / L
        noise = 1.0 + 3.0 / (1.0 + np.arange(24))
    elif noise == "file":
        path = tmp_path / "psd.txt"
        np.savetxt(path, _user_table(), header="k [cycles/pixel]  P")
        noise = path
    sim = _pure_noise(L, n, noise)
    x = sim.images[:]
    per = np.abs(np.fft.fft2(x)) ** 2 / L ** 2               # (n, L, L) periodograms
    # Requested: sigma^2 H(k)^2 on the full grid (H real, even).
    h = noise_filter(sim._psd, L)
    full = np.ones((L, L)) if h is None else np.concatenate(
        [h, h[(-np.arange(L)) % L][:, 1:(L + 1) // 2][:, ::-1]], axis=1) ** 2
    expected = sim.noise_variance * full
    rings = _full_rings(L)
    n_r = np.bincount(rings.ravel())
    meas = np.bincount(rings.ravel(), weights=per.mean(0).ravel()) / n_r
    req = np.bincount(rings.ravel(), weights=expected.ravel()) / n_r
    # The ring averages of the rfft layout (ground truth) are the full-grid ones.
    np.testing.assert_allclose(sim.noise_psd, req, rtol=1e-12)
    # Chi-square: |F(k)|^2 / L^2 is P(k) Exp(1) (chi^2_1 where k = -k), F(-k) = conj F(k), so
    # the variance of a ring mean over N images is 2 sum_k P(k)^2 / (N n_ring^2).
    sd = np.sqrt(2 * np.bincount(rings.ravel(), weights=(expected ** 2).ravel()) / (n * n_r ** 2))
    assert np.all(np.abs(meas - req) < 5 * sd), np.max(np.abs(meas - req) / sd)
    # The total noise variance is the requested one (SNR = signal variance / noise variance).
    var = x.var(axis=(1, 2), ddof=0).mean()
    assert sim.noise_variance == pytest.approx(sim.signal_variance / 1.0)
    # (each image's own mean removed: its variance is P(0) / L^2)
    assert var == pytest.approx(sim.noise_variance - expected[0, 0] / L ** 2, rel=5 * np.sqrt(
        2 * (expected ** 2).sum() / L ** 4 / n) / sim.noise_variance)


def test_ice_spectrum_is_three_times_noisier_at_low_frequencies():
    assert ice_psd(0.0) == pytest.approx(1 + ICE_AMPLITUDE) == 3.0
    assert ice_psd(0.5) == pytest.approx(1.0, abs=1e-6)
    psd = requested_psd(ice_psd, 64, 1.0)
    assert psd[0] / psd[-1] == pytest.approx(3.0, rel=1e-3)


def test_coloured_noise_is_the_same_whichever_batch_and_simulation_size():
    a = Simulation(24, 40, snr=0.5, noise="ice", ctf=True, seed=9)
    b = Simulation(24, 25, snr=0.5, noise="ice", ctf=True, seed=9)
    idx = [3, 17, 21]
    np.testing.assert_array_equal(a.images[idx], a.images[:25][idx])
    # Same noise stream per image; the noise level is estimated over the first min(n, 512)
    # images, so the two differ only by the scale of the noise.
    na = a.images[idx] - a.clean_images(idx, shifted=True, ctf=True)
    nb = b.images[idx] - b.clean_images(idx, shifted=True, ctf=True)
    ratio = np.sqrt(a.noise_variance / b.noise_variance)
    np.testing.assert_allclose(na, nb * ratio, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("noise, match", [
    (np.array([1.0]), "shape"), (np.array([1.0, -1.0]), "positive"),
    (np.array([[0.0, 1.0], [0.0, 2.0]]), "increase"), ("missing.txt", "does not exist"),
    (42, "noise must be")])
def test_bad_noise_arguments(noise, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Simulation(16, 2, noise=noise)
