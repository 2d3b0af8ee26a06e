"""Noise whitening: the background spectrum estimate against known coloured noise."""

import numpy as np
import pandas as pd
import pytest

from classavg._grid import disk_mask, rfft_rings
from classavg.sources import ArrayImageSource, Simulation, estimate_noise_psd, resolve_chain
from classavg.sources.whitening import MIN_GROUP_IMAGES, WhitenedSource

L = 48


def ring_mean(x2d):
    ring, w = rfft_rings(L)
    return np.bincount(ring.ravel(), (x2d * w).ravel()) / np.bincount(ring.ravel(), w.ravel())


def spectrum(amplitude, k0=0.1):
    ky, kx = np.fft.fftfreq(L)[:, None], np.fft.rfftfreq(L)[None, :]
    return 1.0 + amplitude * np.exp(-(np.hypot(ky, kx) / k0) ** 2)


def noise(n, P, seed):
    w = np.random.default_rng(seed).standard_normal((n, L, L))
    return np.fft.irfft2(np.fft.rfft2(w) * np.sqrt(P), s=(L, L))


def band_ratio(images):
    """Mean power of rings 2-5 over rings 12-20 (low over high frequencies)."""
    p = ring_mean(np.mean(np.abs(np.fft.rfft2(images)) ** 2, 0) / L ** 2)
    return p[2:6].mean() / p[12:21].mean()


@pytest.fixture(scope="module")
def coloured():
    P = spectrum(2.0)
    return P, noise(1500, P, 0)


def test_estimate_matches_the_true_spectrum(coloured):
    """Away from the lowest rings the estimate is unbiased; its statistical error is ~ the
    spread of a mean over ~10^7 pixel pairs per lag ring (< 1 %), and the resolution of the
    tapered autocorrelation (~2 / max_lag = 0.08 cycles/px) smooths the peak of width
    k0 = 0.1 near k = 0: rings >= 8 (k >= 0.17) within 5 %, rings 2-7 within 15 %; rings
    0-1 are not estimable (the removed image means) and copy ring 2."""
    P, x = coloured
    est = estimate_noise_psd(x)
    true = ring_mean(P)
    rel = np.abs(est / true - 1)
    assert rel[8:L // 2].max() < 0.05
    assert rel[2:8].max() < 0.15
    assert est[0] == est[1] == est[2]


def test_whitened_noise_is_white(coloured):
    P, x = coloured
    assert band_ratio(x) > 2.0                          # coloured before
    w = ArrayImageSource(x.astype(np.float32)).whiten(n_estimate=1000)
    y = w.images[:]
    assert abs(band_ratio(y) - 1) < 0.08
    # the variance is kept (the filter has mean power 1 relative to the spectrum)
    assert abs(y.var() / x.var() - 1) < 0.1


def test_the_particle_is_not_used():
    """A particle inside the radius does not enter the estimate: white noise stays white."""
    sim = Simulation(L, 600, snr=None, seed=1)
    clean = sim.clean_images(np.arange(600)) * disk_mask(L, 0.45 * L)
    scale = 5 * clean.std()
    x = clean + scale * np.random.default_rng(2).standard_normal(clean.shape)
    est = estimate_noise_psd(x, radius=0.45 * L)
    np.testing.assert_allclose(est[1:L // 2] / scale ** 2, 1.0, atol=0.08)


def test_groups_get_their_own_spectrum():
    a, b = noise(600, spectrum(3.0), 3), noise(600, spectrum(0.0), 4)
    md = pd.DataFrame({"rlnOpticsGroup": np.r_[np.ones(600, int), 2 * np.ones(600, int)]})
    src = ArrayImageSource(np.concatenate([a, b]).astype(np.float32), metadata=md)
    w = src.whiten(by="rlnOpticsGroup")
    assert list(w.groups) == [1, 2] and w.noise_psd.shape[0] == 2
    y = w.images[:]
    assert abs(band_ratio(y[:600]) - 1) < 0.1 and abs(band_ratio(y[600:]) - 1) < 0.1
    pooled = src.whiten()                       # one spectrum: group 2 is made un-white
    assert band_ratio(pooled.images[600:]) < 0.8
    # a group below MIN_GROUP_IMAGES takes the pooled spectrum
    md2 = pd.DataFrame({"g": np.r_[np.zeros(1200 - 50, int), np.ones(50, int)]})
    small = ArrayImageSource(src.images[:], metadata=md2).whiten(by="g")
    assert 50 < MIN_GROUP_IMAGES
    pooled_psd = ArrayImageSource(src.images[:]).whiten().noise_psd[0]
    np.testing.assert_allclose(small.noise_psd[1], pooled_psd, rtol=0.05)


def test_wiener_averaging_replays_the_chain_without_whitening():
    sim = Simulation(32, 40, snr=1.0, ctf=True, seed=0)
    pre = sim.normalize_background()
    last = pre.phase_flip().whiten(n_estimate=40)
    assert resolve_chain(last).ctf_images() is pre               # filters at the end
    mid = sim.whiten(n_estimate=40).normalize_background()
    replay = resolve_chain(mid).ctf_images()
    assert isinstance(replay.parent, Simulation)
    np.testing.assert_array_equal(replay.images[:4], sim.normalize_background().images[:4])
    rec = resolve_chain(last).describe()
    assert rec["phase_flipped"] and rec["steps"][-1]["step"] == "WhitenedSource"
    assert len(rec["steps"][-1]["noise_psd"][0]) == int(rfft_rings(32)[0].max()) + 1


def test_bad_options():
    src = ArrayImageSource(np.zeros((20, 16, 16), np.float32))
    with pytest.raises(ValueError, match="radius must leave at least 8 background pixels"):
        WhitenedSource(src, radius=12)
    with pytest.raises(ValueError, match="n_estimate must be"):
        src.whiten(n_estimate=2)
