"""Tests of the per-image corruptions of Simulation: contrast, amplitudes, backgrounds and the
kind column of the ground truth."""

import numpy as np
import pytest

from classavg.sources.ctf import evaluate_ctf
from classavg.sources.simulation import Simulation, load_ground_truth


def test_bright_contrast_is_relions_ctf0_is_plus_q_and_dark_negates_the_signal():
    kw = dict(ctf=True, snr=0.5, max_shift=2.0, seed=3, dtype=np.float64)
    bright = Simulation(32, 6, **kw)
    dark = Simulation(32, 6, contrast="dark", **kw)
    clean = bright.clean_images(shifted=True, ctf=True)
    # CTF(0) = +Q: the zero frequency (image mean) of a bright particle is +Q times the mass.
    q = bright.metadata["rlnAmplitudeContrast"].to_numpy()
    ctf0 = evaluate_ctf(1, 1.0, 1e4, 1e4)[0, 0, 0]
    assert ctf0 == pytest.approx(np.sin(np.arctan(0.1 / np.sqrt(1 - 0.01))))
    mass = bright.clean_images().sum(axis=(1, 2))
    np.testing.assert_allclose(clean.sum(axis=(1, 2)), q * mass, rtol=1e-9)
    assert np.all(clean.mean(axis=(1, 2)) > 0)
    # Dark: the same noise, the signal negated.
    np.testing.assert_allclose((bright.images[:] - dark.images[:]) / 2, clean, atol=1e-9)
    np.testing.assert_allclose((bright.images[:] + dark.images[:]) / 2,
                               bright.images[:] - clean, atol=1e-9)


def test_amplitudes_scale_the_signal_and_enter_the_snr():
    sim = Simulation(32, 50, amplitude_spread=0.4, seed=2, dtype=np.float64)
    a = sim.amplitudes
    assert a.min() >= 0.6 and a.max() <= 1.4 and a.std() > 0.1
    np.testing.assert_allclose(sim.images[:], a[:, None, None] * sim.clean_images(shifted=True,
                                                                                   ctf=True))
    var = (np.var(sim.clean_images(), axis=(1, 2)) * a ** 2).mean()
    assert sim.signal_variance == pytest.approx(var, rel=1e-9)
    assert np.all(Simulation(32, 5).amplitudes == 1.0)


def test_background_offsets_and_gradients():
    L = 32
    sim = Simulation(L, 40, background_offset=0.5, background_gradient=2.0, seed=7,
                     dtype=np.float64)
    bg = sim.images[:] - sim.clean_images(shifted=True, ctf=True)
    y, x = np.meshgrid(np.arange(L) - L // 2, np.arange(L) - L // 2, indexing="ij")
    sd = np.sqrt(sim.signal_variance)
    g = sim.background_gradients
    plane = sim.background_offsets[:, None, None] + (g[:, 0, None, None] * x
                                                     + g[:, 1, None, None] * y) / (L / 2)
    np.testing.assert_allclose(bg, sd * plane, atol=1e-9 * sd)
    assert np.all(np.hypot(*g.T) <= 2.0) and np.hypot(*g.T).max() > 1.0
    assert 0.2 < sim.background_offsets.std() < 0.8


def test_ground_truth_records_kinds_and_corruptions(tmp_path):
    sim = Simulation(24, 30, snr=0.5, noise="ice", amplitude_spread=0.2, contrast="dark",
                     junk=0.2, seed=1)
    path = sim.save_ground_truth(tmp_path / "gt.npz")
    gt = load_ground_truth(path)
    np.testing.assert_array_equal(gt["kind"], sim.kinds)
    assert (gt["kind"] == "particle").sum() == 24
    np.testing.assert_array_equal(gt["amplitudes"], sim.amplitudes)
    assert gt["contrast"] == "dark" and gt["noise"] == "ice"
    assert gt["signal_variance"] == pytest.approx(gt["noise_variance"] * 0.5)
    np.testing.assert_allclose(gt["noise_psd"], sim.noise_psd)
    plain = load_ground_truth(Simulation(8, 3).save_ground_truth(tmp_path / "p.npz"))
    assert list(plain["kind"]) == ["particle"] * 3


@pytest.mark.parametrize("kw, match", [
    (dict(contrast="grey"), "contrast"), (dict(amplitude_spread=1.5), "amplitude_spread"),
    (dict(background_offset=-1), "background_offset"),
    (dict(background_gradient=np.nan), "background_gradient")])
def test_bad_corruption_options(kw, match):
    with pytest.raises(ValueError, match=match):
        Simulation(16, 2, **kw)
