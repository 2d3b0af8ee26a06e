"""The junk scores (classavg.selection.junk) on constructed images with known statistics.

With white unit-variance noise and a flat PSD the whitening is the identity, so ``fit`` of
``x = a m + noise`` is exactly ``N(a ||m||_D, 1)`` and ``blob`` of noise ``N(0, 1)``: the
tolerances below are 4-5 standard errors of means over ``n`` images.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg._grid import centered_grid, disk_mask, rfft_rings
from classavg.selection.junk import (JunkRejector, mixture_threshold, particle_scores,
                                     robust_upper, whitening_filter)
from classavg.sources.centering import ring_average
from classavg.sources.junk import shift_nonperiodic

L = 32


def gaussian_blob(L, sigma=3.0, center=(0.0, 0.0)):
    y, x = centered_grid(L)
    return np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * sigma ** 2))


def asymmetric_model(L):
    return gaussian_blob(L, 3.0, (2, 1)) + 0.7 * gaussian_blob(L, 2.0, (-4, 3))


@pytest.fixture
def flat():
    return whitening_filter(np.ones(L), L)


def test_whitening_filter_of_a_spectrum():
    n_rings = int(rfft_rings(L)[0].max()) + 1
    psd = np.linspace(4.0, 1.0, n_rings)
    wf = whitening_filter(psd, L)
    assert wf.shape == (L, L // 2 + 1)
    assert wf[0, 0] == pytest.approx(0.5) == wf.min() and wf.max() == pytest.approx(1.0)


def test_fit_of_a_scaled_model_in_white_noise(flat):
    rng = np.random.default_rng(0)
    n, a = 400, 0.8
    m = np.broadcast_to(asymmetric_model(L), (n, L, L))
    x = a * m + rng.standard_normal((n, L, L))
    refs = np.broadcast_to(ring_average(m[:1])[0], (n, L, L))
    s = particle_scores(x, m, refs, flat)
    norm = np.sqrt((m[0] ** 2).sum())
    se = 1 / np.sqrt(n)
    assert s["fit"].mean() == pytest.approx(a * norm, abs=5 * se)
    assert s["fit"].std() == pytest.approx(1.0, abs=5 * np.sqrt(0.5 / n))
    assert s["amplitude"].mean() == pytest.approx(a, abs=5 * se / norm)


def test_noise_alone_scores_as_the_null(flat):
    rng = np.random.default_rng(1)
    n = 400
    m = np.broadcast_to(asymmetric_model(L), (n, L, L))
    refs = np.broadcast_to(gaussian_blob(L), (n, L, L))
    s = particle_scores(rng.standard_normal((n, L, L)), m, refs, flat)
    for key in ("fit", "blob"):
        assert abs(s[key].mean()) < 5 / np.sqrt(n)
        assert s[key].std() == pytest.approx(1.0, abs=5 * np.sqrt(0.5 / n))


def test_extra_finds_a_second_particle_and_an_off_centre_one(flat):
    rng = np.random.default_rng(2)
    n = 200
    blob = 4 * gaussian_blob(L)
    m = np.broadcast_to(blob, (n, L, L))
    noise = rng.standard_normal((3, n, L, L))
    single = blob + noise[0]
    pair = blob + shift_nonperiodic(blob, (9.0, 0.0)) + noise[1]
    off = shift_nonperiodic(blob, (0.0, -11.0)) + noise[2]
    e = {k: particle_scores(v, m, m, flat)["extra"] for k, v in
         (("single", single), ("pair", pair), ("off", off))}
    # the second blob's matched-filter peak is its whole significance, ||blob|| ~ 21
    assert np.median(e["pair"]) > 15 and np.median(e["off"]) > 15
    # a lone centred particle: the maximum of a unit-variance field over ~700 positions
    assert np.percentile(e["single"], 99) < 6
    b = {k: particle_scores(v, m, m, flat)["blob"] for k, v in
         (("single", single), ("off", off))}
    assert np.median(b["single"]) > 15 > 3 > np.median(b["off"])


def broken(model, angle, edge):
    """``model`` with its density beyond the line ``x cos(angle) + y sin(angle) = edge``
    removed (a hard edge)."""
    y, x = centered_grid(model.shape[-1])
    return model * (x * np.cos(angle) + y * np.sin(angle) <= edge)


def test_missing_finds_a_broken_particle(flat):
    rng = np.random.default_rng(6)
    n = 300
    m = 3 * asymmetric_model(L)
    whole = m + rng.standard_normal((n, L, L))
    part = broken(m, 0.7, 2.5) + rng.standard_normal((n, L, L))
    models = np.broadcast_to(m, (n, L, L))
    refs = np.broadcast_to(ring_average(m[None])[0], (n, L, L))
    s_whole = particle_scores(whole, models, refs, flat)
    s_part = particle_scores(part, models, refs, flat)
    lost = m - broken(m, 0.7, 2.5)
    share = (lost ** 2).sum() / (m ** 2).sum()
    assert 0.15 < share < 0.6            # the lost half-plane is one the score searches
    # in the lost half-plane the residual is -a m with the refitted amplitude
    # a = 1 - share (~0.68), so the score is a ||lost|| (~7.3 noise SDs) on the true line;
    # the nearest of the 16 searched directions is 5 degrees off -> more than half of
    # ||lost||, against a maximum of correlated unit Gaussians (~2) for the whole particle
    assert np.median(s_part["missing"]) > 0.5 * np.sqrt((lost ** 2).sum())
    assert np.percentile(s_whole["missing"], 99) < 4.5 < np.percentile(s_part["missing"], 5)
    # the fraction missing beyond the best line: most of it for the broken particle
    assert np.median(s_part["missing_fraction"]) > 0.6
    assert abs(np.median(s_whole["missing_fraction"])) < 0.5


def test_missing_decision_needs_significance_and_fraction():
    fit = np.full(6, 10.0)
    scores = {"fit": fit, "blob": fit, "extra": np.full(6, 3.0),
              "missing": np.array([2.0, 2.0, 9.0, 9.0, 2.0, 9.0]),
              "missing_fraction": np.array([0.1, 0.9, 0.9, 0.2, 0.9, 0.5])}
    cls = np.array([0, 0, 0, 1, 1, 1])
    d = JunkRejector(min_fit=5, max_extra=6, max_missing=5).decide(scores, cls, [0, 3])
    # rejected: significant and at least half missing (2, 5); kept: either alone (1, 3)
    np.testing.assert_array_equal(d.particle_passed, [1, 1, 0, 1, 1, 0])
    assert d.thresholds["max_missing"] == 5 and d.thresholds["max_missing_rule"] == "given"
    off = JunkRejector(min_fit=5, max_extra=6, max_missing=None).decide(scores, cls, [0, 3])
    assert off.particle_passed.all() and off.thresholds["max_missing"] is None
    auto = JunkRejector(min_fit=5, max_extra=6).decide(scores, cls, [0, 3])
    assert auto.thresholds["max_missing"] == pytest.approx(robust_upper(scores["missing"], 3))


def _flip_x(a):
    """x -> -x about the centre pixel L // 2 (index i -> L - i mod L)."""
    return np.roll(a[..., ::-1], 1, axis=-1)


# isometries of the pixel grid that fix the centre pixel (and so the disk and the radii)
_SYMMETRIES = [lambda a: a, lambda a: np.swapaxes(a, -1, -2), _flip_x,
               lambda a: np.swapaxes(_flip_x(a), -1, -2)]


@settings(max_examples=20, deadline=None)
@given(k=st.integers(0, 3), scale=st.floats(0.1, 10.0), seed=st.integers(0, 100))
def test_scores_follow_the_image_and_ignore_the_model_scale(k, scale, seed):
    rng = np.random.default_rng(seed)
    m = asymmetric_model(L)[None]
    x = m + rng.standard_normal((1, L, L))
    t = ring_average(m)
    wf = whitening_filter(np.ones(L), L)
    base = particle_scores(x, m, t, wf)
    g = _SYMMETRIES[k]
    rot = particle_scores(g(x), scale * g(m), scale * g(t), wf)
    for key in ("fit", "blob", "extra"):
        np.testing.assert_allclose(rot[key], base[key], rtol=1e-9, atol=1e-9)
    # missing: the 16 line directions map onto themselves under these isometries
    for key in ("missing", "missing_fraction"):
        np.testing.assert_allclose(rot[key], base[key], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rot["amplitude"] * scale, base["amplitude"], rtol=1e-9)


def test_mixture_threshold_between_two_populations_and_none_in_one():
    rng = np.random.default_rng(3)
    two = np.concatenate([rng.normal(2, 1, 3000), rng.normal(12, 2, 7000)])
    thr, info = mixture_threshold(two)
    assert 4 < thr < 8 and info["separation"] > 4
    one = rng.normal(12, 2, 10000) * rng.uniform(0.8, 1.2, 10000)  # amplitude spread
    thr, info = mixture_threshold(one)
    assert thr == -np.inf and info["separation"] <= 2
    # two populations of particles (views that fit better than others) are not junk
    views = np.concatenate([rng.normal(20, 2, 5000), rng.normal(35, 3, 5000)])
    thr, info = mixture_threshold(views)
    assert info["separation"] > 2 and info["mean_ratio"] > 0.5 and thr == -np.inf
    # a small population above the particles (dense contamination) is not a low tail of junk
    high = np.concatenate([rng.normal(16, 5, 9700), rng.normal(36, 7, 300)])
    thr, info = mixture_threshold(high)
    assert thr == -np.inf


def test_robust_upper_of_a_gaussian():
    v = np.random.default_rng(4).normal(3, 0.5, 20000)
    assert robust_upper(v, 4) == pytest.approx(5.0, abs=0.05)


def _scores(fit, extra):
    fit = np.asarray(fit, float)
    return {"fit": fit, "blob": fit, "extra": np.asarray(extra, float)}


def test_decision_per_particle_and_per_class():
    # class 0: 3 good + 1 junk (kept, its junk particle rejected); class 1: 1 good + 2 junk
    # (rejected with its good particle); class 2: none assigned, reference 7 good -> kept
    fit = [10, 10, 10, 1, 10, 1, 1, 10]
    extra = [3, 3, 3, 3, 3, 3, 9, 3]
    cls = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    d = JunkRejector(min_fit=5, max_extra=6).decide(_scores(fit, extra), cls, [0, 4, 7])
    np.testing.assert_array_equal(d.particle_passed, [1, 1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(d.class_kept, [True, False, True])
    np.testing.assert_allclose(d.class_kept_fraction[:2], [0.75, 1 / 3])
    assert np.isnan(d.class_kept_fraction[2])
    np.testing.assert_array_equal(d.particle_kept, [1, 1, 1, 0, 0, 0, 0, 1])
    assert d.thresholds["min_fit"] == 5 and d.thresholds["min_fit_rule"] == "given"


def test_decision_never_rejects_most_of_a_data_set(caplog):
    d = JunkRejector(min_fit=5, max_extra=6, max_rejected=0.5).decide(
        _scores([1, 1, 1, 10], [3, 3, 3, 3]), np.array([0, 0, 1, 1]), [0, 2])
    assert d.particle_kept.all() and d.class_kept.all()
    assert d.thresholds["overridden"] == "max_rejected" and "keeping all" in caplog.text


def test_automatic_thresholds_keep_a_junk_free_set():
    rng = np.random.default_rng(5)
    n = 5000
    fit = rng.normal(15, 3, n) * rng.uniform(0.8, 1.2, n)
    extra = 3 + 0.5 * rng.gumbel(size=n)
    d = JunkRejector().decide({"fit": fit, "blob": fit / 2, "extra": extra},
                              rng.integers(0, 100, n), np.arange(100))
    assert d.thresholds["min_fit"] == -np.inf
    assert d.particle_kept.mean() >= 0.95


@pytest.mark.parametrize("kw", [dict(class_fraction=1.5), dict(extra_mads=-1),
                                dict(max_rejected=2), dict(min_fit="x"),
                                dict(max_missing="x"), dict(missing_ratio=-0.1)])
def test_options_are_checked(kw):
    with pytest.raises((ValueError, TypeError)):
        JunkRejector(**kw)
