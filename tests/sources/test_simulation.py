"""Tests of classavg.sources.simulation.

These pin the conventions of docs/conventions.md that the whole library relies on: the
projection ``I(x, y) = integral vol(R @ (x, y, z)) dz``, the viewing direction ``R[:, 2]``, the
in-plane rotation ``R_j = R_r Rz(b)`` (rotate image j counter-clockwise by b to get image r),
the mirror ``R_r diag(1, -1, -1)`` (y -> -y), offsets (image = projection shifted by +offset),
and the SNR definition of shared/metrics.md.
"""

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from classavg._grid import centered_grid
from classavg.io import save_source
from classavg.sources.base import ImageSource
from classavg.sources.ctf import evaluate_ctf
from classavg.sources.simulation import (DEFAULT_BOX_SIZE, Simulation, euler_zyz,
                                         load_ground_truth)
from classavg.sources.volume import GaussianBlobVolume, default_volume


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _com(images):
    y, x = centered_grid(images.shape[-1])
    m = images.sum((1, 2))
    return np.stack([(images * x).sum((1, 2)), (images * y).sum((1, 2))], axis=1) / m[:, None]


def _wide_blobs(L, min_sigma_px=1.5):
    """The default molecule with every blob at least ``min_sigma_px`` pixels wide at size L."""
    v = default_volume()
    return GaussianBlobVolume(v.centers, np.maximum(v.sigmas, min_sigma_px / (L / 2)),
                              v.amplitudes)


# -- projections -------------------------------------------------------------------------------
@pytest.mark.parametrize("L", [64, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nufft_projections_of_a_blob_volume_equal_its_closed_form_projections(L, dtype):
    # Acceptance: projections (NUFFT of the volume sampled on the L^3 grid, Fourier slice
    # theorem) equal the closed-form projections of the analytic volume, with blobs of
    # sigma >= 1.5 px: relative L2 error < 1e-4 (measured ~1e-7 in float64, ~1e-6 in float32).
    v = _wide_blobs(L)
    sim = Simulation(L, 24, volume=v.to_array(L), seed=5, dtype=dtype)
    assert sim.dtype == dtype
    closed = v.project(sim.rotations, L)
    clean = sim.clean_images()
    assert clean.shape == (24, L, L) and clean.dtype == dtype
    assert _rel(clean, closed) < 1e-4
    # The analytic path, and the NUFFT path forced on a blob volume, agree as well.
    for projection in ("auto", "nufft"):
        s = Simulation(L, 24, volume=v, seed=5, dtype=dtype, projection=projection)
        assert _rel(s.clean_images(), closed) < 1e-4


def test_mrc_map_of_another_size_is_resampled_and_gives_the_same_projections(tmp_path):
    L, L0 = 48, 72
    v = _wide_blobs(L)
    path = tmp_path / "blobs.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(v.to_array(L0).astype(np.float32))
        mrc.voxel_size = 2.0
    sim = Simulation(L, 10, volume=path, seed=2, dtype=np.float64)
    assert sim.pixel_size == pytest.approx(2.0 * L0 / L)
    assert sim.volume.shape == (L, L, L)
    assert _rel(sim.clean_images(), v.project(sim.rotations, L)) < 1e-4


def test_centre_of_mass_of_a_projection_is_the_projected_centre_of_mass():
    # Off-centre volume so the test is not trivially 0 == 0; x, y in the pixel convention.
    L = 64
    v = default_volume().shifted([0.12, -0.15, 0.2])
    com3d = v.center_of_mass() * L / 2
    for projection in ("auto", "nufft"):
        sim = Simulation(L, 40, volume=v, max_shift=4.0, seed=4, dtype=np.float64,
                         projection=projection)
        expected = np.einsum("kji,j->ki", sim.rotations[:, :, :2], com3d)   # (R^T com)[:2]
        np.testing.assert_allclose(_com(sim.clean_images()), expected, atol=0.05)
        # Offsets: the image is the projection shifted by +offset.
        assert np.abs(sim.offsets).max() > 1.0
        np.testing.assert_allclose(_com(sim.clean_images(shifted=True)),
                                   expected + sim.offsets, atol=0.05)


def test_fourier_shift_equals_the_closed_form_shifted_projection():
    L = 48
    v = _wide_blobs(L)
    sim = Simulation(L, 12, volume=v, max_shift=5.0, seed=8, dtype=np.float64)
    closed = v.project(sim.rotations, L, offsets=sim.offsets)
    assert _rel(sim.clean_images(shifted=True), closed) < 1e-4


def test_in_plane_rotation_convention():
    # R_j = R_r @ Rz(b): rotating image j counter-clockwise by b (y up) gives image r.
    # scipy.ndimage.rotate turns counter-clockwise as displayed with row 0 at the top, i.e.
    # clockwise in our y-up display, so the angle is -b; it rotates about the array centre
    # (L - 1) / 2, which is our centre L // 2 only for odd L.
    L = 65
    rr = Rotation.random(4, random_state=5).as_matrix()
    b = np.array([0.4, 1.3, -2.0, 2.9])
    rj = rr @ Rotation.from_euler("z", b[:, None]).as_matrix()
    sim = Simulation(L, 8, volume=_wide_blobs(L), rotations=np.concatenate([rr, rj]),
                     dtype=np.float64)
    img = sim.clean_images()
    for k in range(4):
        turned = ndimage.rotate(img[4 + k], -np.degrees(b[k]), reshape=False, order=3)
        assert _rel(turned, img[k]) < 1e-3
        wrong = ndimage.rotate(img[4 + k], np.degrees(b[k]), reshape=False, order=3)
        assert _rel(wrong, img[k]) > 0.1
    # Same viewing direction, and in_plane_angles differ by exactly b (mod 2 pi).
    np.testing.assert_allclose(sim.viewing_directions[4:], sim.viewing_directions[:4],
                               atol=1e-12)
    d = np.angle(np.exp(1j * (sim.in_plane_angles[4:] - sim.in_plane_angles[:4] - b)))
    np.testing.assert_allclose(d, 0.0, atol=1e-9)


def test_mirror_convention():
    # R_r @ diag(1, -1, -1) is the view from -v and gives the mirror y -> -y:
    # out[:, i, :] = img[:, (L - i) % L, :] for even L, img[:, ::-1, :] for odd L.
    for L in (64, 33):
        rr = Rotation.random(3, random_state=9).as_matrix()
        sim = Simulation(L, 6, volume=_wide_blobs(L), dtype=np.float64,
                         rotations=np.concatenate([rr, rr @ np.diag([1.0, -1.0, -1.0])]))
        img = sim.clean_images()
        rows = (L - np.arange(L)) % L if L % 2 == 0 else np.arange(L)[::-1]
        np.testing.assert_allclose(img[3:], img[:3][:, rows, :], atol=1e-6 * np.abs(img).max())
        np.testing.assert_allclose(sim.viewing_directions[3:], -sim.viewing_directions[:3],
                                   atol=1e-12)


# -- rotations and angles ------------------------------------------------------------------
def test_rotations_are_uniform_and_angles_follow_relion_zyz():
    sim = Simulation(8, 20000, seed=3)
    r = sim.rotations
    assert r.shape == (20000, 3, 3)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    assert np.all(np.linalg.det(r) > 0)
    v = sim.viewing_directions
    np.testing.assert_array_equal(v, r[:, :, 2])
    # Haar measure: uniform viewing directions and in-plane angles.
    assert np.all(np.abs(v.mean(0)) < 0.025)
    np.testing.assert_allclose((v ** 2).mean(0), 1 / 3, atol=0.015)
    psi = sim.in_plane_angles
    assert abs(np.cos(psi).mean()) < 0.025 and abs(np.sin(psi).mean()) < 0.025
    # R = Rz(rot) Ry(tilt) Rz(psi) (scipy intrinsic "ZYZ"); RELION angles in degrees.
    ang = sim.euler_angles
    np.testing.assert_allclose(Rotation.from_euler("ZYZ", ang).as_matrix(), r, atol=1e-10)
    np.testing.assert_array_equal(ang[:, 2], psi)
    md = sim.metadata
    np.testing.assert_allclose(md[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
                               np.rad2deg(ang))


def test_euler_zyz_at_the_poles():
    a = 0.7
    rz = Rotation.from_euler("z", a).as_matrix()
    mats = np.stack([rz, np.diag([-1.0, 1.0, -1.0]) @ rz])
    ang = euler_zyz(mats)
    np.testing.assert_allclose(ang, [[0, 0, a], [0, np.pi, a]], atol=1e-12)
    np.testing.assert_allclose(Rotation.from_euler("ZYZ", ang).as_matrix(), mats, atol=1e-12)


# -- CTF, noise and determinism --------------------------------------------------------------
@pytest.mark.parametrize("L", [64, 65])
def test_ctf_is_applied_with_the_centred_layout_of_evaluate_ctf(L):
    sim = Simulation(L, 14, ctf=True, n_defocus_groups=3, dtype=np.float64, seed=2)
    clean, with_ctf = sim.clean_images(), sim.clean_images(ctf=True)
    h = evaluate_ctf(L, sim.pixel_size, **sim.ctf_params())
    f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(clean, axes=(1, 2))), axes=(1, 2)) * h
    want = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f, axes=(1, 2))), axes=(1, 2)).real
    assert _rel(with_ctf, want) < 1e-7


def test_ctf_groups():
    sim = Simulation(32, 30, ctf=True, n_defocus_groups=5, defocus_range=(8000, 20000), seed=1)
    md = sim.metadata
    assert sim.has_ctf
    mean = 0.5 * (md["rlnDefocusU"] + md["rlnDefocusV"]).to_numpy()
    np.testing.assert_allclose(np.unique(mean), np.linspace(8000, 20000, 5))
    np.testing.assert_allclose(mean, np.linspace(8000, 20000, 5)[np.arange(30) % 5])
    np.testing.assert_allclose(sim.defocus, mean)
    astig = (md["rlnDefocusU"] - md["rlnDefocusV"]).to_numpy()
    assert np.all((astig >= 0) & (astig <= 200))
    assert np.all((md["rlnDefocusAngle"] >= 0) & (md["rlnDefocusAngle"] < 180))
    assert np.all(md["rlnVoltage"] == 300) and np.all(md["rlnSphericalAberration"] == 2.7)
    assert np.all(md["rlnAmplitudeContrast"] == 0.1)
    assert sim.pixel_size == DEFAULT_BOX_SIZE / 32
    assert not Simulation(32, 3).has_ctf and Simulation(32, 3).defocus is None


def test_explicit_ctf_parameters():
    n = 6
    du = np.linspace(9000, 15000, n)
    sim = Simulation(32, n, ctf={"rlnDefocusU": du, "defocus_v": du - 50, "voltage": 200,
                                 "rlnCtfBfactor": 40.0})
    p = sim.ctf_params()
    np.testing.assert_allclose(p["defocus_u"], du)
    np.testing.assert_allclose(p["defocus_v"], du - 50)
    np.testing.assert_allclose(p["voltage"], 200)
    np.testing.assert_allclose(p["cs"], 2.7)
    np.testing.assert_allclose(p["bfactor"], 40)
    assert "rlnPhaseShift" not in sim.metadata
    frame = pd.DataFrame({"rlnDefocusU": du})
    np.testing.assert_allclose(Simulation(32, n, ctf=frame).ctf_params()["defocus_v"], du)


def test_snr_sets_the_noise_variance():
    # SNR = var(clean CTF-applied shifted image) / var(noise), over whole images (metrics.md).
    for snr in (0.1, 2.0):
        sim = Simulation(48, 150, snr=snr, ctf=True, max_shift=3.0, seed=1)
        clean = sim.clean_images(shifted=True, ctf=True).astype(np.float64)
        noise = sim.images[:].astype(np.float64) - clean
        measured = clean.var(axis=(1, 2)).mean() / noise.var(axis=(1, 2)).mean()
        assert measured == pytest.approx(snr, rel=0.03)
        assert noise.var() == pytest.approx(sim.noise_variance, rel=0.01)
        assert abs(noise.mean()) < 0.01 * np.sqrt(sim.noise_variance)
        assert sim.snr == snr


def test_noise_free_images_are_the_clean_shifted_ctf_images():
    sim = Simulation(32, 10, ctf=True, max_shift=2.0, seed=3)
    assert sim.snr is None and sim.noise_variance == 0.0
    np.testing.assert_array_equal(sim.images[:], sim.clean_images(shifted=True, ctf=True))


def test_images_are_deterministic_whichever_batch_they_come_in():
    sim = Simulation(32, 40, snr=0.5, ctf=True, max_shift=2.0, seed=11)
    all_images = sim.images[:]
    np.testing.assert_array_equal(sim.images[[17, 3, 17]], all_images[[17, 3, 17]])
    np.testing.assert_array_equal(sim.images[35], all_images[35:36])
    batches = np.concatenate([b for _, b in sim.iter_batches(batch_size=7)])
    np.testing.assert_array_equal(batches, all_images)
    again = Simulation(32, 40, snr=0.5, ctf=True, max_shift=2.0, seed=11)
    np.testing.assert_array_equal(again.images[:], all_images)
    other = Simulation(32, 40, snr=0.5, ctf=True, max_shift=2.0, seed=12)
    assert not np.allclose(other.images[:5], all_images[:5])
    # Poses do not depend on n.
    np.testing.assert_array_equal(Simulation(32, 25, seed=11).rotations, sim.rotations[:25])


def test_offsets_metadata_and_indices():
    sim = Simulation(32, 200, max_shift=3.0, seed=6, pixel_size=2.5)
    off = sim.offsets
    assert off.shape == (200, 2) and np.all(np.hypot(*off.T) <= 3.0)
    assert np.hypot(*off.T).max() > 2.5
    np.testing.assert_allclose(sim.metadata["rlnOriginXAngst"], -off[:, 0] * 2.5)
    np.testing.assert_allclose(sim.metadata["rlnOriginYAngst"], -off[:, 1] * 2.5)
    np.testing.assert_allclose(ImageSource.offsets.fget(sim), off)   # read back from metadata
    explicit = np.tile([[1.5, -0.5]], (5, 1))
    np.testing.assert_array_equal(Simulation(32, 5, offsets=explicit).offsets, explicit)
    assert not np.any(Simulation(32, 5).offsets)
    # clean_images index forms.
    sim = Simulation(32, 6, seed=1)
    full = sim.clean_images()
    np.testing.assert_array_equal(sim.clean_images(2), full[2:3])
    np.testing.assert_array_equal(sim.clean_images(slice(1, 4)), full[1:4])
    np.testing.assert_array_equal(sim.clean_images([5, -6]), full[[5, 0]])
    with pytest.raises(IndexError):
        sim.clean_images([6])


def test_ground_truth_roundtrip(tmp_path):
    sim = Simulation(32, 12, snr=0.2, ctf=True, max_shift=2.0, seed=7)
    path = sim.save_ground_truth(tmp_path / "truth.npz")
    gt = load_ground_truth(path)
    np.testing.assert_array_equal(gt["rotations"], sim.rotations)
    np.testing.assert_array_equal(gt["viewing_directions"], sim.viewing_directions)
    np.testing.assert_array_equal(gt["in_plane_angles"], sim.in_plane_angles)
    np.testing.assert_array_equal(gt["offsets"], sim.offsets)
    np.testing.assert_array_equal(gt["defocus_u"], sim.metadata["rlnDefocusU"])
    assert gt["snr"] == 0.2 and gt["noise_variance"] == sim.noise_variance
    assert (gt["seed"], gt["L"], gt["n"], gt["has_ctf"]) == (7, 32, 12, True)
    assert gt["pixel_size"] == sim.pixel_size
    with pytest.raises(FileExistsError, match="truth.npz"):
        sim.save_ground_truth(path)
    clean = Simulation(32, 3).save_ground_truth(tmp_path / "noctf.npz")
    gt = load_ground_truth(clean)
    assert gt["snr"] is None and gt["noise_variance"] == 0.0 and not gt["has_ctf"]
    assert np.all(np.isnan(gt["defocus_u"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noctf.npz", "truth.npz"]
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_ground_truth(tmp_path / "missing.npz")


def test_seed_none_and_generator_are_recorded():
    a = Simulation(16, 3, seed=None)
    assert isinstance(a.seed, int)
    np.testing.assert_array_equal(Simulation(16, 3, seed=a.seed).rotations, a.rotations)
    b = Simulation(16, 3, seed=np.random.default_rng(4))
    c = Simulation(16, 3, seed=np.random.default_rng(4))
    assert b.seed == c.seed


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(snr=0.0), ValueError, "snr"),
    (dict(snr="high"), TypeError, "snr"),
    (dict(offsets=np.zeros((4, 2))), ValueError, r"offsets must have shape \(5, 2\)"),
    (dict(max_shift=-1.0), ValueError, "max_shift"),
    (dict(rotations=np.ones((5, 3, 3))), ValueError, "rotations"),
    (dict(rotations=np.tile(np.diag([1.0, 1.0, -1.0]), (5, 1, 1))), ValueError, "rotations"),
    (dict(volume=np.zeros((4, 4, 5))), ValueError, "cubic"),
    (dict(volume=np.zeros((8, 8, 8)), projection="analytic"), ValueError, "projection"),
    (dict(projection="fast"), ValueError, "projection"),
    (dict(ctf={"voltage": 300}), ValueError, "defocus_u"),
    (dict(ctf={"rlnDefocusU": 1e4, "focus": 1}), ValueError, "focus"),
    (dict(ctf={"rlnDefocusU": np.ones(3)}), ValueError, r"shape \(5,\)"),
    (dict(ctf="yes"), TypeError, "ctf"),
    (dict(ctf=True, defocus_range=(2e4, 1e4)), ValueError, "defocus_range"),
    (dict(ctf=True, n_defocus_groups=0), ValueError, "n_defocus_groups"),
    (dict(pixel_size=0.0), ValueError, "pixel_size"),
    (dict(seed=-1), TypeError, "seed"),
    (dict(dtype=np.int16), ValueError, "dtype"),
])
def test_parameter_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Simulation(16, 5, **kwargs)


def test_save_writes_a_relion_data_set(tmp_path):
    pytest.importorskip("classavg.io.relion")
    from classavg.io.relion import RelionSource

    sim = Simulation(24, 9, snr=1.0, ctf=True, max_shift=2.0, seed=2)
    star = save_source(sim, tmp_path / "particles.star", stack_name="Particles/particles.mrcs")
    back = RelionSource(star)
    assert back.n == 9 and back.L == 24 and back.pixel_size == pytest.approx(sim.pixel_size)
    np.testing.assert_allclose(back.images[:], sim.images[:], atol=1e-6)
    np.testing.assert_allclose(back.offsets, sim.offsets, atol=1e-4)
    for key, values in sim.ctf_params().items():
        np.testing.assert_allclose(back.ctf_params()[key], values, rtol=1e-6)


def test_ctf_boundary_crop_loses_what_leaves_the_box():
    """``ctf_boundary="crop"``: the CTF on a canvas twice the box, then the crop, checked
    against that construction done here with the package's own CTF; without a CTF the two
    boundaries agree, and the cropped images hold less energy (what the CTF spreads past the
    edge is gone instead of wrapped round)."""
    from classavg.sources import Simulation
    from classavg.sources.ctf import evaluate_ctf

    L, n = 32, 6
    kw = dict(volume="emd-3488", max_shift=2.0, seed=4, dtype=np.float64)
    plain = Simulation(L, n, ctf=False, ctf_boundary="crop", **kw).clean_images(
        shifted=True)
    np.testing.assert_allclose(plain, Simulation(L, n, ctf=False, **kw).clean_images(
        shifted=True), atol=1e-12)
    wrap = Simulation(L, n, ctf=True, **kw)
    crop = Simulation(L, n, ctf=True, ctf_boundary="crop", **kw)
    got = crop.clean_images(shifted=True, ctf=True)
    proj = crop.clean_images(shifted=True)
    M = 2 * L
    for i in range(n):
        canvas = np.zeros((M, M))
        canvas[L // 2:L // 2 + L, L // 2:L // 2 + L] = proj[i]
        params = crop.ctf_params([i])
        h = evaluate_ctf(M, crop.pixel_size, **params)[0]        # centred full grid
        f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(canvas)))
        full = np.fft.ifft2(np.fft.ifftshift(f * h))
        # the full grid holds only k = -1/2 of the canvas's Nyquist row and column, where an
        # astigmatic CTF is not Hermitian: this reference then has an imaginary part, and
        # its real part may differ from the (Hermitian) rfft path by as much
        tol = 2 * np.abs(full.imag).max() + 1e-12
        full = np.fft.fftshift(full.real)
        np.testing.assert_allclose(got[i], full[L // 2:L // 2 + L, L // 2:L // 2 + L],
                                   atol=tol)
        assert tol < 1e-3 * np.abs(got[i]).max()       # and that share is small
    wrapped = wrap.clean_images(shifted=True, ctf=True)
    assert np.all((got ** 2).sum(axis=(1, 2)) < (wrapped ** 2).sum(axis=(1, 2)))
    with pytest.raises(ValueError, match="ctf_boundary"):
        Simulation(L, n, ctf_boundary="mirror")
