"""Tests of classavg.sources.junk: each junk kind's defining property, the kind assignment and
the common image formation (CTF, noise, background) of junk and particles."""

import numpy as np
import pytest

from classavg.sources import junk as J
from classavg.sources.simulation import Simulation
from classavg.sources.volume import GaussianBlobVolume

L = 64


def _compact():
    """A small asymmetric molecule centred on its centre of mass (radius ~ 6 px at L = 64),
    so aggregates and shifts stay inside the box."""
    c = np.array([[0.08, 0.0, 0.0], [-0.04, 0.07, 0.0], [-0.04, -0.07, 0.05]])
    a = np.array([1.0, 0.8, 0.6])
    s = np.full(3, 0.05)
    v = GaussianBlobVolume(c, s, a)
    return v.shifted(-v.center_of_mass())


def _sim(kind, n=12, **kw):
    return Simulation(L, n, volume=_compact(), junk=1.0, junk_kinds={kind: 1}, seed=5,
                      dtype=np.float64, **kw)


def _mass():
    return float(_compact().project(np.eye(3)[None], L).sum())


def _com(img):
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    m = img.sum()
    return np.array([(img * x).sum() / m, (img * y).sum() / m])


def test_empty_ice_has_no_signal_only_noise():
    sim = _sim("empty_ice", snr=0.5)
    assert np.all(sim.kinds == "empty_ice")
    assert np.abs(sim.clean_images(shifted=True, ctf=True)).max() < 1e-12
    # The images are the noise itself: the noise level of the particles (SNR 0.5).
    assert sim.images[:].var() == pytest.approx(sim.noise_variance, rel=0.05)


def test_ice_contamination_is_a_large_dense_disc():
    sim = _sim("ice_contamination")
    radius, mass = J.particle_scale(_compact().to_array(L))
    density = mass / (np.pi * radius ** 2)
    for img in sim.clean_images():
        assert 3.0 * density * 0.99 <= img.max() <= 5.0 * density
        # Radius >= R (at most 0.45 L), centre within 0.35 L: at least half the disc is in.
        assert (img > 0).sum() >= 0.5 * np.pi * radius ** 2
    # The pure function: a sphere's projection, integral (2/3) pi a^2 d.
    img = J.ice_contamination(L, (0.0, 0.0), 12.0, 2.0)
    assert img.sum() == pytest.approx(2 / 3 * np.pi * 12.0 ** 2 * 2.0, rel=0.02)


def test_carbon_edge_is_a_step_of_film():
    radius, mass = J.particle_scale(_compact().to_array(L))
    density = mass / (np.pi * radius ** 2)
    for img in _sim("carbon_edge").clean_images():
        t = img.max()
        assert 0.5 * density * 0.99 <= t <= 1.5 * density
        # The edge lies within 0.3 L of the centre: both plateaus cover >= ~15 % of the box.
        assert (img > 0.99 * t).mean() > 0.1 and (img < 0.01 * t).mean() > 0.1
    # The pure function: film beyond the edge line, nothing before it.
    img = J.carbon_edge(L, 0.0, 5.0, 1.0)
    c = np.arange(L) - L // 2
    assert np.all(img[:, c > 12] > 0.999) and np.all(img[:, c < -2] < 1e-3)


def test_aggregates_hold_two_or_three_particles():
    sim = _sim("aggregate", n=30)
    ratios = sim.clean_images().sum(axis=(1, 2)) / _mass()
    # Integrated density: 2 or 3 particles (the compact molecule keeps them in the box).
    near = np.minimum(np.abs(ratios - 2), np.abs(ratios - 3))
    assert np.all(near < 1e-3), ratios
    assert {2, 3} == set(np.rint(ratios).astype(int))


def test_off_centre_particles_are_30_to_45_percent_of_the_box_out():
    sim = _sim("off_centre", n=20)
    d = np.array([np.hypot(*_com(img)) for img in sim.clean_images()]) / L
    assert np.all((d > 0.30 - 0.01) & (d < 0.45 + 0.01)), d
    # Their offsets are recorded in the ground truth.
    np.testing.assert_allclose(np.hypot(*sim.offsets.T) / L, d, atol=0.01)


def test_broken_particles_lose_a_quarter_to_a_half_of_their_density():
    kept = _sim("broken", n=20).clean_images().sum(axis=(1, 2)) / _mass()
    # A fraction f ~ U(0.25, 0.5) removed; the 1-px soft edge moves it by a few percent.
    assert np.all((kept > 0.5 - 0.04) & (kept < 0.75 + 0.04)), kept


@pytest.mark.parametrize("kind", J.JUNK_KINDS)
def test_junk_gets_the_ctf_background_and_noise_of_particles(kind):
    kw = dict(ctf=True, amplitude_spread=0.3, background_offset=0.5, background_gradient=1.0,
              contrast="dark")
    sim = _sim(kind, n=4, **kw)
    ref = Simulation(L, 4, volume=_compact(), seed=5, dtype=np.float64, snr=None, **kw)
    # Same CTF parameters, amplitudes and backgrounds per image as the particle data set.
    for key in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"):
        np.testing.assert_array_equal(sim.metadata[key], ref.metadata[key])
    np.testing.assert_array_equal(sim.amplitudes, ref.amplitudes)
    np.testing.assert_array_equal(sim.background_gradients, ref.background_gradients)
    # images = c a clean(ctf) + background (noise-free here), as for particles.
    bg = sim.images[:] + sim.amplitudes[:, None, None] * sim.clean_images(shifted=True,
                                                                           ctf=True)
    y, x = np.meshgrid(np.arange(L) - L // 2, np.arange(L) - L // 2, indexing="ij")
    plane = (sim.background_offsets[:, None, None] + sim.background_gradients[:, 0, None, None]
             * x / (L / 2) + sim.background_gradients[:, 1, None, None] * y / (L / 2))
    np.testing.assert_allclose(bg, np.sqrt(sim.signal_variance) * plane, atol=1e-9)
    if kind in ("aggregate", "off_centre"):
        # The CTF acts on a 2L canvas (no wrap-around of the fringes): for content inside
        # the box, the CTF of the zero-padded clean image, cropped.  The compact molecule is
        # band-limited (Nyquist amplitude ~3e-6 of the peak), where the full-grid CTF here
        # and the rfft one differ.
        from classavg.sources.ctf import evaluate_ctf
        M, lo = 2 * L, L - L // 2
        canvas = np.zeros((4, M, M))
        canvas[:, lo:lo + L, lo:lo + L] = sim.clean_images(shifted=True)
        h = evaluate_ctf(M, sim.pixel_size, sim.metadata["rlnDefocusU"],
                         sim.metadata["rlnDefocusV"], sim.metadata["rlnDefocusAngle"])
        f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(canvas, axes=(1, 2))), axes=(1, 2))
        want = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f * h, axes=(1, 2))).real,
                               axes=(1, 2))[:, lo:lo + L, lo:lo + L]
        got = sim.clean_images(shifted=True, ctf=True)
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_film_and_ice_fringes_do_not_wrap_round_the_box():
    # The CTF of a carbon edge on the 2L canvas: the box border (far from the edge line) stays
    # flat, where a box-periodic CTF would ring on the wrapped step.
    sim = _sim("carbon_edge", n=6, ctf=True)
    for img, clean in zip(sim.clean_images(shifted=True, ctf=True), sim.clean_images()):
        t = clean.max()
        border = np.concatenate([img[:2].ravel(), img[-2:].ravel(), img[:, :2].ravel(),
                                 img[:, -2:].ravel()])
        flat = np.concatenate([clean[:2].ravel(), clean[-2:].ravel(), clean[:, :2].ravel(),
                               clean[:, -2:].ravel()])
        far = (flat > 0.999 * t) | (flat < 0.001 * t)       # border pixels away from the edge
        # Away from the edge the CTF keeps Q times the film density (CTF(0) = Q = 0.1).
        ref = 0.1 * flat[far]
        assert np.abs(border[far] - ref).max() < 0.05 * t      # box-periodic: 0.22-0.40 t


def test_kind_counts_are_exact_and_follow_the_weights():
    sim = Simulation(24, 200, junk=0.3, junk_kinds={"empty_ice": 1, "aggregate": 2}, seed=1)
    kinds, counts = np.unique(sim.kinds, return_counts=True)
    assert dict(zip(kinds, counts)) == {"particle": 140, "empty_ice": 20, "aggregate": 40}
    equal = Simulation(24, 600, junk=0.3, seed=1)
    c = dict(zip(*np.unique(equal.kinds, return_counts=True)))
    assert c.pop("particle") == 420 and set(c) == set(J.JUNK_KINDS)
    assert set(c.values()) == {30}


def test_junk_images_are_the_same_whichever_batch():
    sim = Simulation(32, 40, junk=0.5, snr=0.3, ctf=True, noise="ice", seed=2)
    idx = np.flatnonzero(sim.kinds != "particle")[:6]
    np.testing.assert_array_equal(sim.images[idx], sim.images[:][idx])


def test_junk_does_not_change_the_noise_level():
    a = Simulation(32, 60, snr=0.2, seed=4)
    b = Simulation(32, 60, snr=0.2, seed=4, junk=0.5)
    assert b.noise_variance == pytest.approx(a.noise_variance, rel=1e-6)   # float32 batches


@pytest.mark.parametrize("kw, match", [
    (dict(junk=1.5), "junk must be a fraction"), (dict(junk="x"), "junk must be"),
    (dict(junk=0.2, junk_kinds={"dust": 1}), "unknown kind"),
    (dict(junk=0.2, junk_kinds={"empty_ice": -1}), "non-negative"),
    (dict(junk=0.2, junk_kinds={"empty_ice": 0}), "positive weight")])
def test_bad_junk_options(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Simulation(16, 10, **kw)
