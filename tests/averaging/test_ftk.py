"""FTKAverager2D: the factorized translation kernel, the correlations it gives, and the
recovered alignments against exactly known ground truth (``conftest.make_blob_class``).

Tolerances.  On noise-free blob classes the alignment error is limited by the factorization
accuracy ``eps = 1e-3`` (a smooth error of ~1e-3 of the correlation moves its peak by a few
hundredths of a pixel / degree) and by the NUFFT / quadrature (~1e-5); we measure at most
~0.1 degree and ~0.03 px, and test with a margin of 2-3x: 0.25 degree and 0.1 px (the
issue's targets are 0.5 degree and 0.25 px).
"""

from __future__ import annotations

import numpy as np
import pytest

from classavg.averaging.ftk import (
    FTKAverager2D,
    PolarGrid,
    TranslationKernel,
    _Correlator,
    default_radius,
    disk_points,
)
from classavg.averaging.stackers import MedianImageStacker
from classavg.sources.base import ArrayImageSource

from .conftest import add_noise, angle_diff_deg, disk_rel_error, make_blob_class


def _errors(res, bc, row=0):
    rot = angle_diff_deg(res.rotations[row], bc.rotations)
    sh = np.linalg.norm(res.shifts[row] - bc.shifts, axis=1)
    return rot, sh


# -- the factorization ---------------------------------------------------------------------------
@pytest.mark.parametrize("rho_max, d_max, eps", [(np.pi / 2, 3.0, 1e-3), (np.pi, 2.5, 1e-4)])
def test_kernel_reproduces_plane_wave(rho_max, d_max, eps):
    """sum_h W_h(s) U_h(rho) exp(i n_h phi) == exp(i rho d cos(phi - phi_s)) to ~eps."""
    ker = TranslationKernel(rho_max, d_max, eps=eps)
    rng = np.random.default_rng(0)
    rho = rng.uniform(0, rho_max, 200)
    phi = rng.uniform(-np.pi, np.pi, 200)
    r = d_max * np.sqrt(rng.uniform(0, 1, 200))
    a = rng.uniform(-np.pi, np.pi, 200)
    s = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    W = ker.shift_weights(s)                                  # (200, H)
    U = ker.radial(rho)                                       # (200, H)
    approx = np.sum(W * U * np.exp(1j * np.outer(phi, ker.n)), axis=1)
    exact = np.exp(1j * rho * r * np.cos(phi - a))
    assert np.abs(approx - exact).max() < 30 * eps
    # rank grows with rho_max * d_max and with log(1/eps)
    assert ker.rank < TranslationKernel(rho_max, d_max, eps=eps / 10).rank


def test_correlation_matches_pixel_transform():
    """C(alpha, s) from the factors equals <rotate(shift(mirror(b))), a> computed in pixels."""
    from classavg.averaging._transform import transform_images
    from classavg.basis import FourierBesselBasis2D

    bc = make_blob_class(64, 3, max_shift=2.0, seed=3)
    ker = TranslationKernel(np.pi / 2, 3.0, eps=1e-4)
    grid = PolarGrid(64, np.pi / 2, extra_order=ker.max_order, d_max=3.0)
    cor = _Correlator(ker, grid.K, grid.rho, grid.K_f)
    G = grid.coefficients(bc.images)
    inv = np.array([[0, 1, 2]])
    refl = np.array([[False, False, True]])
    M = cor.factors(cor.reference_slice(G[:1]), cor.members(G, inv, refl))   # (1, 3, H, K+1)
    basis = FourierBesselBasis2D(64, dtype=np.float64)
    rng = np.random.default_rng(1)
    for j in (1, 2):
        s = rng.uniform(-1.5, 1.5, 2)
        al = rng.uniform(-np.pi, np.pi)
        spec = cor.spectrum(M[:, j:j + 1], ker.shift_weights(s[None]))
        C = cor.correlation_at(spec, np.array([[al]]))[0, 0, 0, 0]
        img = transform_images(bc.images[j:j + 1], refl[0, j:j + 1], s[None], [al], basis=basis)
        ref = np.real(np.sum(np.conj(G[0]) * grid.coefficients(img)[0]))
        assert abs(C - ref) < 1e-3 * abs(ref)


def test_grid_correlation_any_number_of_angles():
    ker = TranslationKernel(np.pi / 2, 3.0)
    grid = PolarGrid(64, np.pi / 2, extra_order=ker.max_order, d_max=3.0)
    cor = _Correlator(ker, grid.K, grid.rho, grid.K_f)
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((2, grid.K + 1))
            + 1j * rng.standard_normal((2, grid.K + 1))).astype(np.complex64)
    for n in (360, 40, 5):          # n > 2K (one FFT) and n <= 2K (longer FFT, subsampled)
        a = np.broadcast_to(2 * np.pi * np.arange(n) / n, (2, n))
        direct = cor.correlation_at(spec[:, None, :], a)[:, 0]
        np.testing.assert_allclose(cor.grid_correlation(spec, n), direct,
                                   atol=1e-5 * np.abs(direct).max())


def test_disk_points_and_default_radius():
    pts = disk_points(2.0)
    assert len(pts) == 13 and np.all(pts[0] == 0)
    assert np.all(np.hypot(*pts.T) <= 2.0 + 1e-12)
    assert len(disk_points(2.0, 0.5)) == 49
    assert default_radius(64) == 2 and default_radius(128) == 4 and default_radius(16) == 2


# -- alignment accuracy on exactly known classes --------------------------------------------------
def test_clean_alignment_with_mirrors_and_subpixel_shifts(blob_class):
    """Rotations, mirrors and real shifts up to the radius (2 px): recovered exactly."""
    avg = FTKAverager2D(blob_class.source())
    res = avg.align(blob_class.class_indices, blob_class.class_refl)
    rot, sh = _errors(res, blob_class)
    assert blob_class.refl.sum() > 10                         # mirrored members present
    assert np.median(rot) < 0.1 and rot.max() < 0.25
    assert np.median(sh) < 0.05 and sh.max() < 0.1
    # column 0 is the reference: identity, score 1
    assert res.rotations[0, 0] == 0 and np.all(res.shifts[0, 0] == 0)
    assert np.all(res.scores[0] > 0.99) and np.all(res.scores[0] <= 1.0 + 1e-6)


def test_shifts_on_the_edge_of_the_disk():
    """Shifts of length exactly ``radius`` in all directions (the refinement stays inside)."""
    bc = make_blob_class(64, 2, max_shift=0.0, seed=4)
    # members: the reference shifted by -s (so the alignment shift is s), |s| = 2
    from classavg.averaging._transform import shift_images
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    s = 2.0 * np.stack([np.cos(ang), np.sin(ang)], 1)
    members = shift_images(np.repeat(bc.reference[None], 12, 0), -s)
    src = ArrayImageSource(np.concatenate([bc.reference[None], members]))
    res = FTKAverager2D(src, radius=2).align(np.arange(13)[None], None)
    assert np.abs(angle_diff_deg(res.rotations[0, 1:], 0)).max() < 0.25
    assert np.linalg.norm(res.shifts[0, 1:] - s, axis=1).max() < 0.1


def test_rotation_only(blob_class_unshifted):
    bc = blob_class_unshifted
    avg = FTKAverager2D(bc.source(), radius=0)
    assert avg.kernel.rank == 1
    res = avg.align(bc.class_indices, bc.class_refl)
    rot, _ = _errors(res, bc)
    assert rot.max() < 0.05
    assert np.all(res.shifts == 0)


@pytest.mark.parametrize("m", [1, 2])
def test_tiny_classes(m):
    bc = make_blob_class(64, 2, max_shift=2.0, seed=2)
    out = FTKAverager2D(bc.source()).average(np.arange(m)[None], bc.refl[None, :m])
    assert disk_rel_error(out[0], bc.reference, 64) < 5e-3


def test_clean_average_equals_reference(blob_class):
    avg = FTKAverager2D(blob_class.source())
    out = avg.average(blob_class.class_indices, blob_class.class_refl)
    assert out.shape == (1, 64, 64) and out.dtype == np.float64
    assert disk_rel_error(out[0], blob_class.reference, 64) < 5e-3
    assert avg.alignment is not None and avg.alignment.rotations.shape == (1, 50)


def test_several_classes_batches_and_orders(blob_classes):
    """Results do not depend on the batch size; ``classes`` selects and orders rows."""
    src, ci, cr, classes = blob_classes
    a1 = FTKAverager2D(src, batch_size=1).align(ci, cr)
    a3 = FTKAverager2D(src, batch_size=3).align(ci, cr)
    np.testing.assert_allclose(a1.rotations, a3.rotations, atol=1e-9)
    np.testing.assert_allclose(a1.shifts, a3.shifts, atol=1e-9)
    for i, bc in enumerate(classes):
        rot, sh = _errors(a1, bc, i)
        assert rot.max() < 0.25 and sh.max() < 0.1
    sel = FTKAverager2D(src).align(ci, cr, classes=[2, 0])
    assert list(sel.classes) == [2, 0]
    np.testing.assert_allclose(sel.rotations[0], a1.rotations[2], atol=1e-9)


def test_noisy_alignment_snr_weighting_and_scores():
    """At SNR 1 (noise variance = image variance over the box) the alignment to the noisy
    reference is still close; the spectral SNR weighting helps (measured medians 0.96 deg /
    0.18 px with it, 1.4 deg / 0.27 px without); noisy scores are below the clean ones."""
    bc = make_blob_class(64, 30, max_shift=2.0, seed=7)
    src = ArrayImageSource(add_noise(bc.images, 1.0, seed=1))
    res = FTKAverager2D(src).align(bc.class_indices, bc.class_refl)
    rot, sh = _errors(res, bc)
    assert np.median(rot) < 1.5 and np.median(sh) < 0.3
    plain = FTKAverager2D(src, snr_weighting=False).align(bc.class_indices, bc.class_refl)
    rot0, _ = _errors(plain, bc)
    assert np.median(rot) < np.median(rot0)
    assert np.all(res.scores[0, 1:] < 0.99) and np.all(plain.scores[0, 1:] < 0.95)


def test_robust_stacker_is_honoured(blob_class):
    avg = FTKAverager2D(blob_class.source(), image_stacker=MedianImageStacker())
    out = avg.average(blob_class.class_indices, blob_class.class_refl)
    assert disk_rel_error(out[0], blob_class.reference, 64) < 2e-2


# -- parameters -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(radius=-1), "radius must be a number >= 0"),
    (dict(radius=100), "radius must be a number <= 16"),
    (dict(n_angles=0), "n_angles must be an integer >= 1"),
    (dict(bandlimit=0), "bandlimit must be a number > 0"),
    (dict(bandlimit=1.5), "bandlimit must be a number <= 1"),
    (dict(eps=0.5), "eps must be a number <= 0.1"),
    (dict(n_refine=-1), "n_refine must be an integer >= 0"),
    (dict(refine_factor=1.0), "refine_factor must be a number < 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
])
def test_bad_parameters(kw, match):
    src = ArrayImageSource(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError, match=match):
        FTKAverager2D(src, **kw)


def test_bad_parameter_types():
    src = ArrayImageSource(np.zeros((2, 64, 64)))
    with pytest.raises(TypeError, match="n_angles must be an integer"):
        FTKAverager2D(src, n_angles=2.5)
    with pytest.raises(TypeError, match="radius must be a real number"):
        FTKAverager2D(src, radius="2")
    with pytest.raises(TypeError, match="snr_weighting must be True or False"):
        FTKAverager2D(src, snr_weighting="yes")
