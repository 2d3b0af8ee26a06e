"""The CTF follows RELION's CTF::getCTF sign conventions."""

import numpy as np
import pytest

from classavg.sources.ctf import electron_wavelength, evaluate_ctf


def relion_get_ctf(kx, ky, du, dv, angle_deg, volt, cs, q, ps_deg):
    """RELION's formula, written as RELION does it: negated defocus, -sin(argument)."""
    lam = electron_wavelength(volt)
    k1, k2 = np.pi * lam, np.pi / 2 * cs * 1e7 * lam ** 3
    k3, k5 = np.arctan(q / np.sqrt(1 - q * q)), np.deg2rad(ps_deg)
    avg, dev = -(du + dv) / 2, -(du - dv) / 2
    u2 = kx ** 2 + ky ** 2
    deltaf = avg + dev * np.cos(2 * (np.arctan2(ky, kx) - np.deg2rad(angle_deg)))
    return -np.sin(k1 * deltaf * u2 + k2 * u2 * u2 - k5 - k3)


@pytest.mark.parametrize("seed", range(3))
def test_matches_relion_formula(seed):
    rng = np.random.default_rng(seed)
    du, dv = rng.uniform(8000, 30000, 2)
    ang, ps, q = rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(0.05, 0.2)
    L, px = 48, 1.3
    got = evaluate_ctf(L, px, du, dv, ang, voltage=300, cs=2.7, amplitude_contrast=q,
                       phase_shift=ps)[0]
    f = np.fft.fftshift(np.fft.fftfreq(L)) / px
    ky, kx = np.meshgrid(f, f, indexing="ij")
    assert np.allclose(got, relion_get_ctf(kx, ky, du, dv, ang, 300, 2.7, q, ps), atol=1e-12)


def test_low_frequency_and_first_zero():
    # CTF(0) = sin(w) = Q; the first zero lies where chi + w = pi (no astigmatism, Cs ~ 0).
    q, dz, px, L = 0.1, 15000.0, 1.0, 256
    ctf = evaluate_ctf(L, px, dz, dz, 0.0, cs=1e-9, amplitude_contrast=q)[0]
    assert ctf[L // 2, L // 2] == pytest.approx(q)
    row = ctf[L // 2, L // 2:]
    k = np.arange(row.size) / (L * px)
    w = np.arcsin(q)
    k_zero = np.sqrt((np.pi - w) / (np.pi * electron_wavelength(300) * dz))
    first = np.flatnonzero(np.diff(np.sign(row)) != 0)[0]
    assert k[first] <= k_zero <= k[first + 1]


def test_shared_parameter_sets_are_evaluated_once_with_the_same_result():
    rng = np.random.default_rng(0)
    groups = rng.uniform(8000, 25000, size=(3, 2))
    pick = rng.integers(0, 3, size=20)
    du, dv = groups[pick, 0], groups[pick, 1]
    ang = np.array([10.0, 40.0, 75.0])[pick]
    batch = evaluate_ctf(32, 1.5, du, dv, ang, amplitude_contrast=0.07, bfactor=50.0)
    for i in range(20):
        one = evaluate_ctf(32, 1.5, du[i], dv[i], ang[i], amplitude_contrast=0.07,
                           bfactor=50.0)
        np.testing.assert_array_equal(batch[i], one[0])
