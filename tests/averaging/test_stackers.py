"""Image stackers: values, outlier rejection, batched form, complex stacks, parameter errors."""

import numpy as np
import pytest

from classavg.averaging.stackers import (
    ImageStacker,
    MeanImageStacker,
    MedianImageStacker,
    SigmaRejectionImageStacker,
    WinsorizedImageStacker,
)

ROBUST = [MedianImageStacker(), SigmaRejectionImageStacker(3),
          SigmaRejectionImageStacker(method="FWHM"), SigmaRejectionImageStacker(method="FWTM"),
          WinsorizedImageStacker(0.1)]


def planted(m=50, L=8, n_out=2, seed=0, spread=0.0):
    """A stack whose members all equal ``clean`` (+ small noise) except planted outliers."""
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(L, L))
    stack = np.repeat(clean[None], m, axis=0) + spread * rng.normal(size=(m, L, L))
    stack[rng.choice(m, n_out, replace=False)] += 100.0
    return stack, clean


@pytest.mark.parametrize("st", ROBUST, ids=repr)
def test_robust_stackers_reject_planted_outliers(st):
    stack, clean = planted()
    np.testing.assert_allclose(st(stack), clean, atol=1e-9)


def test_mean_does_not_reject_outliers():
    stack, clean = planted()
    out = MeanImageStacker()(stack)
    np.testing.assert_allclose(out, clean + 2 * 100.0 / 50)
    assert np.abs(out - clean).min() > 1


@pytest.mark.parametrize("st", ROBUST, ids=repr)
def test_robust_stackers_with_noisy_members(st):
    # members = clean + N(0, 0.1^2), 2 of 50 with +100: robust estimates stay within a few
    # standard errors (0.1 / sqrt(50) ~ 0.014; the median's is ~1.25x that) of the clean value;
    # the mean is off by 4.
    stack, clean = planted(spread=0.1, seed=3)
    assert np.abs(st(stack) - clean).max() < 0.1


def test_gaussian_sigma_rejection_definition():
    x = np.array([0.0, 0.0, 1.0, 1.0, 10.0])[:, None]
    # mean 2.4, std 3.8: |10 - 2.4| = 7.6 = 2.0 std -> rejected by sigma=1.5, kept by 3
    assert SigmaRejectionImageStacker(1.5, maxiters=1)(x)[0] == pytest.approx(0.5)
    assert SigmaRejectionImageStacker(3.0)(x)[0] == pytest.approx(2.4)


def test_fwhm_fwtm_thresholds():
    assert SigmaRejectionImageStacker(method="FWHM").threshold == pytest.approx(1.17741, 1e-5)
    assert SigmaRejectionImageStacker(method="FWTM").threshold == pytest.approx(2.14597, 1e-5)
    # values -2, -1, 0, 1, 2.5: mean 0.1, std 1.562; FWHM keeps |x - 0.1| <= 1.839
    # (-1, 0, 1 -> mean 0), FWTM keeps |x - 0.1| <= 3.35 (all -> 0.1)
    x = np.array([-2.0, -1, 0, 1, 2.5])[:, None]
    out_hm = SigmaRejectionImageStacker(method="FWHM", maxiters=1)(x)[0]
    assert out_hm == pytest.approx(0.0)
    assert SigmaRejectionImageStacker(method="FWTM")(x)[0] == pytest.approx(0.1)


def test_winsorized_definition():
    x = np.arange(10.0)[:, None]                 # c = 1: 0 -> 1, 9 -> 8
    assert WinsorizedImageStacker(0.1)(x)[0] == pytest.approx((1 + 1 + 2 + 3 + 4 + 5 + 6 + 7
                                                               + 8 + 8) / 10)
    assert WinsorizedImageStacker(0.0)(x)[0] == pytest.approx(4.5)
    from scipy.stats.mstats import winsorize
    y = np.random.default_rng(0).normal(size=(37, 5))
    ref = [winsorize(y[:, i], limits=(0.2, 0.2)).mean() for i in range(5)]
    np.testing.assert_allclose(WinsorizedImageStacker(0.2)(y), ref)


@pytest.mark.parametrize("st", [MeanImageStacker()] + ROBUST, ids=repr)
def test_batched_and_coefficient_stacks(st):
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(4, 11, 6, 6))
    out = st.stack(batch)
    assert out.shape == (4, 6, 6)
    for i in range(4):
        np.testing.assert_allclose(out[i], st(batch[i]))
    # coefficient stacks (m, ncoef), complex: component-wise
    c = rng.normal(size=(11, 7)) + 1j * rng.normal(size=(11, 7))
    oc = st(c)
    assert oc.shape == (7,) and np.iscomplexobj(oc)
    np.testing.assert_allclose(oc.real, st(c.real))
    np.testing.assert_allclose(oc.imag, st(c.imag))
    # dtype kept
    assert st(batch.astype(np.float32), axis=1).dtype == np.float32


def test_single_member_and_identical_members():
    x = np.random.default_rng(2).normal(size=(1, 5, 5))
    for st in [MeanImageStacker()] + ROBUST:
        np.testing.assert_allclose(st(x), x[0])
        np.testing.assert_allclose(st(np.repeat(x, 7, 0)), x[0])


def test_bad_parameters():
    with pytest.raises(ValueError, match="method must be one of"):
        SigmaRejectionImageStacker(method="fwhm-ish")
    with pytest.raises(ValueError, match="sigma must be"):
        SigmaRejectionImageStacker(0)
    with pytest.raises(ValueError, match="sigma must be"):
        SigmaRejectionImageStacker(-1.0)
    with pytest.raises(ValueError, match="percentile must be"):
        WinsorizedImageStacker(0.5)
    with pytest.raises(ValueError, match="percentile must be"):
        WinsorizedImageStacker(-0.1)
    with pytest.raises(ValueError, match="domain must be one of"):
        MedianImageStacker(domain="fourier")
    with pytest.raises(ValueError, match="at least one member"):
        MeanImageStacker()(np.zeros((0, 4, 4)))
    with pytest.raises(TypeError):
        ImageStacker()


def test_linear_flags():
    assert MeanImageStacker().linear
    assert not any(s.linear for s in ROBUST)
    assert MedianImageStacker(domain="coefficients").domain == "coefficients"
