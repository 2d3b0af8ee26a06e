"""Image quality functions: exact values on images with known statistics and spectra."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg._grid import radial_grid
from classavg.selection import (
    BandedSNRImageQualityFunction,
    BandpassImageQualityFunction,
    BumpWeightedImageQualityMixin,
    BumpWeightedVarianceImageQualityFunction,
    ImageQualityFunction,
    RampWeightedImageQualityMixin,
    RampWeightedVarianceImageQualityFunction,
    VarianceImageQualityFunction,
    bump_weights,
    ramp_weights,
)

ALL = [VarianceImageQualityFunction, BandedSNRImageQualityFunction,
       BandpassImageQualityFunction, RampWeightedVarianceImageQualityFunction,
       BumpWeightedVarianceImageQualityFunction]


def stack(k=5, L=16, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(k, L, L)).astype(dtype)


# -- the calling convention --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_one_image_gives_float_stack_gives_array(cls):
    f = cls()
    x = stack(4, 17)
    out = f(x)
    assert isinstance(out, np.ndarray) and out.shape == (4,) and out.dtype == np.float64
    one = f(x[2])
    assert isinstance(one, float)
    assert one == pytest.approx(out[2], rel=1e-12)
    assert f(x[:0]).shape == (0,)
    np.testing.assert_allclose(f(x.astype(np.float32)), out, rtol=1e-5)
    assert isinstance(f, ImageQualityFunction)


@pytest.mark.parametrize("cls", ALL)
def test_bad_images_are_rejected(cls):
    f = cls()
    for bad in (np.zeros(5), np.zeros((2, 3, 4)), np.zeros((1, 1)), np.zeros((2, 2, 2, 2))):
        with pytest.raises(ValueError, match="images must be an image"):
            f(bad)
    with pytest.raises(TypeError, match="images must be a real array"):
        f(np.zeros((8, 8), complex))


# -- variance -------------------------------------------------------------------------------------------
def test_variance():
    x = stack()
    np.testing.assert_allclose(VarianceImageQualityFunction()(x), x.reshape(5, -1).var(1))


def test_ramp_weights_are_clamped_and_never_negative():
    for L in (2, 7, 16, 33, 64):
        w = RampWeightedVarianceImageQualityFunction().weights(L)
        r = radial_grid(L, normalized=True)
        assert w.min() >= 0
        np.testing.assert_allclose(w, np.maximum(1 - r, 0))
        assert np.all(w[r >= 1] == 0)                         # corners and edge
        assert w[L // 2, L // 2] == 1
    assert ramp_weights(np.array([0.0, 0.5, 1.0, 1.4, 10.0])).tolist() == [1, 0.5, 0, 0, 0]


@settings(max_examples=30, deadline=None)
@given(r=st.floats(0, 100, allow_nan=False))
def test_ramp_and_bump_are_in_unit_interval(r):
    assert 0 <= ramp_weights(r) <= 1
    assert 0 <= bump_weights(np.array([r]))[0] <= 1


def test_bump_weights():
    L = 32
    w = BumpWeightedVarianceImageQualityFunction().weights(L)
    r = radial_grid(L, normalized=True)
    inside = r < 1
    np.testing.assert_allclose(w[inside], np.exp(1 - 1 / (1 - r[inside] ** 2)))
    assert np.all(w[~inside] == 0) and w[L // 2, L // 2] == 1 and w.min() >= 0


def test_weights_are_cached_and_read_only():
    f, g = RampWeightedVarianceImageQualityFunction(), RampWeightedVarianceImageQualityFunction()
    assert f.weights(24) is g.weights(24)
    assert not f.weights(24).flags.writeable
    assert BumpWeightedVarianceImageQualityFunction().weights(24) is not f.weights(24)
    assert VarianceImageQualityFunction().weights(24) is None


@pytest.mark.parametrize("cls", [RampWeightedVarianceImageQualityFunction,
                                 BumpWeightedVarianceImageQualityFunction])
def test_weighted_variance(cls):
    x = stack(3, 20, seed=2) + 5
    f = cls()
    w = f.weights(20)
    for img, v in zip(x, f(x)):
        m = np.average(img, weights=w)
        assert v == pytest.approx(np.average((img - m) ** 2, weights=w), rel=1e-12)
    assert f(np.full((20, 20), 3.0)) == pytest.approx(0, abs=1e-20)
    # pixels of zero weight do not matter
    y = x.copy()
    y[:, 0, :] = 1e6
    np.testing.assert_allclose(f(y), f(x), rtol=1e-12)


# -- banded SNR --------------------------------------------------------------------------------------
def test_banded_snr_matches_definition():
    L = 32
    x = stack(4, L, seed=3)
    r = radial_grid(L, normalized=True)
    inner, outer = r < 0.5, (r > 0.8) & (r < 1)
    expected = [img[inner].var() / img[outer].var() for img in x]
    np.testing.assert_allclose(BandedSNRImageQualityFunction()(x), expected, rtol=1e-12)
    f = BandedSNRImageQualityFunction(inner=0.3, outer_band=(0.6, 0.9))
    inner, outer = r < 0.3, (r > 0.6) & (r < 0.9)
    assert f(x[0]) == pytest.approx(x[0][inner].var() / x[0][outer].var(), rel=1e-12)


def test_banded_snr_known_values():
    L = 32
    r = radial_grid(L, normalized=True)
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(L, L))
    # +-3 in the middle, +-1 in the background annulus: exact variances 9 and 1 when the
    # signs are balanced -> compare with the exact sample ratio
    img = np.where(r < 0.5, 3 * signs, signs)
    ratio = img[r < 0.5].var() / img[(r > 0.8) & (r < 1)].var()
    assert BandedSNRImageQualityFunction()(img) == pytest.approx(ratio)
    assert 5 < ratio < 15
    # scale and offset invariant
    assert BandedSNRImageQualityFunction()(7 * img + 2) == pytest.approx(ratio)


def test_banded_snr_degenerate_ratios_do_not_warn():
    L = 16
    r = radial_grid(L, normalized=True)
    img = np.where(r < 0.5, np.random.default_rng(0).normal(size=(L, L)), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BandedSNRImageQualityFunction()(img) == np.inf
        assert np.isnan(BandedSNRImageQualityFunction()(np.zeros((L, L))))


def test_banded_snr_weighted_mixin():
    class F(RampWeightedImageQualityMixin, BandedSNRImageQualityFunction):
        pass

    L = 24
    x = stack(2, L, seed=4)
    f = F(inner=0.5)
    w = f.weights(L)
    r = radial_grid(L, normalized=True)
    inner, outer = r < 0.5, (r > 0.8) & (r < 1)

    def wvar(v, ww):
        m = np.average(v, weights=ww)
        return np.average((v - m) ** 2, weights=ww)

    expected = [wvar(i[inner], w[inner]) / wvar(i[outer], w[outer]) for i in x]
    np.testing.assert_allclose(f(x), expected, rtol=1e-12)


def test_banded_snr_validation():
    with pytest.raises(ValueError, match="inner must be a number > 0, got 0.0"):
        BandedSNRImageQualityFunction(inner=0)
    with pytest.raises(ValueError, match=r"outer_band must be a pair \(lo, hi\)"):
        BandedSNRImageQualityFunction(outer_band=(1.0, 0.8))
    with pytest.raises(ValueError, match=r"outer_band must be a pair"):
        BandedSNRImageQualityFunction(outer_band=0.8)
    with pytest.raises(ValueError, match="too small"):
        BandedSNRImageQualityFunction(inner=0.1)(np.ones((4, 4)))


# -- bandpass ------------------------------------------------------------------------------------------
def cosine(L, fx, fy, phase=0.3):
    """cos(2 pi (fx x + fy y) + phase) on the pixel grid, frequencies in cycles/pixel."""
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    return np.cos(2 * np.pi * (fx * x + fy * y) + phase)


@pytest.mark.parametrize("L", [32, 33])
def test_bandpass_pure_cosines(L):
    f = BandpassImageQualityFunction(band=(0.1, 0.2))
    inside = cosine(L, 5 / L, 0)                     # |k| = 5 / L  in [0.1, 0.2]
    diag = cosine(L, 3 / L, 4 / L)                   # |k| = 5 / L along a diagonal
    low = cosine(L, 1 / L, 1 / L)                    # below the band
    high = cosine(L, 12 / L, 0)                      # above the band
    assert 0.1 <= 5 / L <= 0.2
    assert f(inside) > 1e20 and f(diag) > 1e20
    assert f(low) < 1e-20 and f(high) < 1e-20
    for a, b in [(1.0, 1.0), (2.0, 1.0), (0.5, 3.0)]:
        assert f(a * inside + b * high) == pytest.approx((a / b) ** 2, rel=1e-9)
        assert f(a * diag + b * low + 17.0) == pytest.approx((a / b) ** 2, rel=1e-9)


def test_bandpass_matches_full_fft_definition():
    L = 30
    x = stack(3, L, seed=5)
    lo, hi = 0.07, 0.31
    f = BandpassImageQualityFunction(band=(lo, hi))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L), indexing="ij"))
    band = (k >= lo) & (k <= hi)
    rest = ~band & (k > 0)
    P = np.abs(np.fft.fft2(x)) ** 2
    expected = P[:, band].sum(1) / P[:, rest].sum(1)
    np.testing.assert_allclose(f(x), expected, rtol=1e-10)


def test_bandpass_degenerate_and_validation():
    L = 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(BandpassImageQualityFunction()(np.full((L, L), 2.0)))
        assert BandpassImageQualityFunction(band=(0, 1))(stack(1, L)[0]) == np.inf
    for bad in [(0.3, 0.2), (-0.1, 0.2), 0.2, (0.1, 0.2, 0.3)]:
        with pytest.raises(ValueError, match="band"):
            BandpassImageQualityFunction(band=bad)


def test_bandpass_with_window():
    class F(BumpWeightedImageQualityMixin, BandpassImageQualityFunction):
        pass

    L = 32
    f = F(band=(0.1, 0.2))
    x = stack(2, L, seed=6)
    w = f.weights(L)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L), indexing="ij"))
    band = (k >= 0.1) & (k <= 0.2)
    rest = ~band & (k > 0)
    expected = []
    for img in x:
        P = np.abs(np.fft.fft2((img - np.average(img, weights=w)) * w)) ** 2
        expected.append(P[band].sum() / P[rest].sum())
    np.testing.assert_allclose(f(x), expected, rtol=1e-10)
    # windowing a cosine of the band keeps most of its power in the band
    assert f(cosine(L, 5 / L, 0)) > 5
