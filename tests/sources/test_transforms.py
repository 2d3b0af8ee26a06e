"""Lazy derived sources: downsample, phase_flip, normalize_background, invert_contrast,
astype."""

import numpy as np
import pandas as pd
import pytest

from classavg._grid import centered_grid, radial_grid
from classavg.sources import ArrayImageSource, ImageSource, evaluate_ctf
from classavg.sources.transforms import (BackgroundNormalizedSource, DownsampledSource,
                                         PhaseFlippedSource)


class RecordingSource(ArrayImageSource):
    """An array source that records which images were asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requested = []

    def _images(self, indices):
        self.requested.append(np.asarray(indices).tolist())
        return super()._images(indices)


def gaussian(L, sigma, amplitude=1.0):
    """exp(-r^2 / (2 sigma^2)) centred on pixel (L // 2, L // 2), (L, L) float64."""
    y, x = centered_grid(L)
    return amplitude * np.exp(-(x * x + y * y) / (2 * sigma * sigma))


def band_limited(n, L, rng, cutoff=0.35):
    """Random real images whose spectrum is zero beyond ``cutoff`` cycles/pixel (so the
    unpaired Nyquist terms of even L vanish)."""
    f = np.fft.fft2(rng.normal(size=(n, L, L)))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L), indexing="ij"))
    return np.fft.ifft2(f * (k < cutoff)).real


def ctf_metadata(n, rng):
    return pd.DataFrame({
        "rlnDefocusU": rng.uniform(8000, 20000, n), "rlnDefocusV": rng.uniform(8000, 20000, n),
        "rlnDefocusAngle": rng.uniform(-90, 90, n), "rlnVoltage": 300.0,
        "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
        "rlnImagePixelSize": 1.2, "rlnImageSize": 64,
        "rlnOriginXAngst": rng.uniform(-6, 6, n), "rlnOriginYAngst": rng.uniform(-6, 6, n)})


@pytest.mark.parametrize("L0, L", [(64, 32), (65, 32), (64, 33), (65, 41), (48, 48)])
def test_downsample_matches_gaussian_sampled_coarser(L0, L):
    sigma = 4.0  # pixels at the fine sampling: band-limited to double precision
    src = ArrayImageSource(gaussian(L0, sigma, 3.0)[None], pixel_size=1.1, dtype=np.float64)
    ds = src.downsample(L)
    assert isinstance(ds, DownsampledSource) and ds.L == L
    assert ds.pixel_size == pytest.approx(1.1 * L0 / L)
    out = ds.images[:][0]
    expected = gaussian(L, sigma * L / L0, 3.0)  # same function, coarser pixels
    np.testing.assert_allclose(out, expected, atol=1e-7)  # spectrum tail ~1e-9 at the cut
    assert np.unravel_index(np.argmax(out), out.shape) == (L // 2, L // 2)


def test_downsample_preserves_mean_and_metadata():
    rng = np.random.default_rng(0)
    n = 6
    imgs = rng.normal(2.0, 1.0, size=(n, 64, 64)).astype(np.float32)
    md = ctf_metadata(n, rng)
    src = ArrayImageSource(imgs, pixel_size=1.2, metadata=md)
    ds = src.downsample(24)
    out = ds.images[:]
    assert out.shape == (n, 24, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), imgs.mean(axis=(1, 2)), rtol=1e-5)
    assert ds.pixel_size == pytest.approx(3.2)
    np.testing.assert_allclose(ds.metadata["rlnImagePixelSize"], 3.2)
    assert (ds.metadata["rlnImageSize"] == 24).all()
    # origins in Angstrom stay, offsets in pixels shrink with the image
    np.testing.assert_array_equal(ds.metadata["rlnOriginXAngst"], md["rlnOriginXAngst"])
    np.testing.assert_allclose(ds.offsets, src.offsets * 24 / 64)
    np.testing.assert_allclose(ds.ctf_params()["defocus_u"], md["rlnDefocusU"])


def test_downsample_scales_pixel_origins():
    md = pd.DataFrame({"rlnOriginX": [4.0, -2.0], "rlnOriginY": [0.0, 8.0]})
    ds = ArrayImageSource(np.zeros((2, 32, 32)), metadata=md).downsample(16)
    np.testing.assert_allclose(ds.metadata["rlnOriginX"], [2.0, -1.0])
    np.testing.assert_allclose(ds.offsets, [[-2.0, 0.0], [1.0, -4.0]])


def test_downsample_validates_size():
    src = ArrayImageSource(np.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="L must be an integer <= 16"):
        src.downsample(20)
    with pytest.raises(ValueError, match="L must be an integer >= 2"):
        src.downsample(1)
    np.testing.assert_array_equal(src.downsample(16).images[:], src.images[:])


def test_transforms_are_lazy_and_only_read_requested_images():
    rng = np.random.default_rng(1)
    src = RecordingSource(rng.normal(size=(20, 32, 32)), metadata=ctf_metadata(20, rng))
    chain = src.downsample(16).phase_flip().normalize_background().invert_contrast()
    assert src.requested == []  # nothing computed at construction
    out = chain.images[[3, 17, 5]]
    assert out.shape == (3, 16, 16)
    assert src.requested == [[3, 17, 5]]
    assert isinstance(chain, ImageSource) and chain.n == 20
    assert chain.pixel_size == pytest.approx(2.0) and chain.has_ctf
    # the same images as the transforms applied one by one to the whole stack
    full = src.downsample(16).phase_flip().normalize_background().images[:]
    np.testing.assert_allclose(out, -full[[3, 17, 5]], atol=1e-5)


@pytest.mark.parametrize("L", [64, 65])
def test_phase_flip_twice_is_identity(L):
    rng = np.random.default_rng(2)
    imgs = band_limited(5, L, rng)
    src = ArrayImageSource(imgs, pixel_size=1.5, metadata=ctf_metadata(5, rng), dtype=np.float64)
    flipped = src.phase_flip()
    assert isinstance(flipped, PhaseFlippedSource)
    once = flipped.images[:]
    assert np.abs(once - imgs).max() > 0.1  # it does something
    twice = ArrayImageSource(once, pixel_size=1.5, metadata=src.metadata).phase_flip().images[:]
    np.testing.assert_allclose(twice, imgs, atol=1e-10)


def test_phase_flip_makes_the_transfer_positive():
    rng = np.random.default_rng(3)
    n, L, pix = 4, 64, 1.5
    md = ctf_metadata(n, rng)
    x = band_limited(n, L, rng)
    params = ArrayImageSource(x, metadata=md).ctf_params()
    ctf = np.fft.ifftshift(evaluate_ctf(L, pix, **params), axes=(-2, -1))
    fx = np.fft.fft2(x)
    y = np.fft.ifft2(fx * ctf).real  # images as the microscope made them
    z = ArrayImageSource(y, pixel_size=pix, metadata=md, dtype=np.float64).phase_flip().images[:]
    fz = np.fft.fft2(z)
    strong = (np.abs(fx) > 1e-3 * np.abs(fx).max()) & (np.abs(ctf) > 1e-3)
    ratio = fz[strong] / fx[strong]
    np.testing.assert_allclose(ratio.imag, 0.0, atol=1e-6)
    assert ratio.real.min() > 0  # the transfer is now |CTF| >= 0
    np.testing.assert_allclose(ratio.real, np.abs(ctf[strong]), atol=1e-6)


def test_phase_flip_needs_a_ctf():
    with pytest.raises(ValueError, match="phase_flip needs CTF.*rlnDefocusU"):
        ArrayImageSource(np.zeros((2, 8, 8))).phase_flip()


def test_normalize_background_statistics():
    rng = np.random.default_rng(4)
    n, L = 8, 48
    noise = rng.normal(5.0, 3.0, size=(n, L, L))
    imgs = noise + gaussian(L, 5.0, 100.0)  # a bright particle in the middle
    out = ArrayImageSource(imgs, dtype=np.float64).normalize_background().images[:]
    bg = radial_grid(L) >= L // 2  # default radius L // 2: the corners
    np.testing.assert_allclose(out[:, bg].mean(axis=1), 0.0, atol=1e-10)
    np.testing.assert_allclose(out[:, bg].std(axis=1), 1.0, atol=1e-10)
    assert out[:, L // 2, L // 2].min() > 20  # the particle is now ~ 100 / 3 above background
    # a smaller radius uses more background pixels; statistics hold there instead
    out2 = BackgroundNormalizedSource(ArrayImageSource(noise, dtype=np.float64), radius=10)
    bg2 = radial_grid(L) >= 10
    np.testing.assert_allclose(out2.images[:][:, bg2].std(axis=1), 1.0, atol=1e-10)
    assert out2.radius == 10.0


def test_normalize_background_constant_and_bad_radius():
    src = ArrayImageSource(np.full((2, 16, 16), 7.0))
    np.testing.assert_array_equal(src.normalize_background(ramp=False).images[:], 0.0)
    # The plane fit reproduces the constant up to the rounding of its few float64 sums.
    np.testing.assert_allclose(src.normalize_background().images[:], 0.0,
                               atol=64 * np.finfo(np.float64).eps * 7.0)
    with pytest.raises(ValueError, match="radius must leave at least 2 background pixels"):
        src.normalize_background(radius=12, ramp=False)
    with pytest.raises(ValueError, match="radius must leave at least 4 background pixels"):
        src.normalize_background(radius=11.2)
    with pytest.raises(ValueError, match="radius must be a number > 0"):
        src.normalize_background(radius=0)


@pytest.mark.parametrize("L", [32, 33])
def test_normalize_background_removes_an_ice_gradient(L):
    """A linear background (ice thickness) is subtracted over the whole box with ramp=True;
    ramp=False leaves it (only the mean goes)."""
    rng = np.random.default_rng(7)
    y, x = (np.indices((L, L)) - L // 2).astype(float)
    grad = rng.normal(0, 0.5, (50, 2))
    noise = rng.standard_normal((50, L, L))
    imgs = 3.0 + grad[:, 0, None, None] * x + grad[:, 1, None, None] * y + noise
    out = ArrayImageSource(imgs, dtype=np.float64).normalize_background().images[:]
    bg = radial_grid(L) >= L // 2
    # What is left is the noise, scaled to unit background variance: the fitted plane's
    # slopes are ~ sd / sqrt(sum x^2) over the background, far below the gradients.
    slope_x = (out * x).sum((1, 2)) / (x ** 2).sum()
    assert np.max(np.abs(slope_x)) < 5 / np.sqrt((x[bg] ** 2).sum())
    np.testing.assert_allclose(out[:, bg].std(axis=1), 1.0, atol=1e-10)
    kept = ArrayImageSource(imgs, dtype=np.float64).normalize_background(ramp=False).images[:]
    kept_slope = (kept * x).sum((1, 2)) / (x ** 2).sum()
    assert np.median(np.abs(kept_slope)) > 10 * np.median(np.abs(slope_x))


def test_invert_contrast_and_astype():
    rng = np.random.default_rng(5)
    imgs = rng.normal(size=(3, 8, 8)).astype(np.float32)
    md = pd.DataFrame({"rlnDefocusU": [1.0, 2.0, 3.0]})
    src = ArrayImageSource(imgs, pixel_size=2.5, metadata=md)
    inv = src.invert_contrast()
    np.testing.assert_array_equal(inv.images[:], -imgs)
    assert inv.pixel_size == 2.5 and inv.metadata.equals(src.metadata)
    d = src.astype(np.float64)
    assert d.dtype == np.float64 and d.images[1].dtype == np.float64
    np.testing.assert_array_equal(d.images[:], imgs.astype(np.float64))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        src.astype(np.int32)
