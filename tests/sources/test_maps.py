"""Map loading for simulation: voxel-size resampling, orientation conventions, shipped molecules
and agreement with RELION's projector."""

import shutil
import subprocess

import mrcfile
import numpy as np
import pytest

from classavg.sources.molecules import available_molecules, molecule_path
from classavg.sources.simulation import Simulation
from classavg.sources.volume import GaussianBlobVolume


def _gaussian_map(L0, voxel, sigma, center, amplitude=1.0):
    """A 3D Gaussian (sigma, centre (x, y, z) in Angstrom) sampled on an L0^3 [z, y, x] grid."""
    c = (np.arange(L0) - L0 // 2) * voxel
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    return amplitude * np.exp(-r2 / (2 * sigma ** 2))


def _write(path, vol, voxel):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(vol.astype(np.float32))
        mrc.voxel_size = voxel
    return path


def _moments(img):
    """Integral, centre of mass (x, y) and mean second central moment of an image [y, x]."""
    L = img.shape[-1]
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    m = img.sum()
    cx, cy = (img * x).sum() / m, (img * y).sum() / m
    var = (img * ((x - cx) ** 2 + (y - cy) ** 2)).sum() / m / 2
    return m, np.array([cx, cy]), var


# (voxel size A, map box, image size, pixel size A): Fourier crop to a whole number of voxels,
# crop to a non-integer ratio, Fourier pad (pixels finer than voxels), and the default.
@pytest.mark.parametrize("voxel, L0, L, pixel", [(1.5, 64, 40, 2.0), (1.5, 64, 40, 2.3),
                                                 (3.0, 32, 48, 2.0), (2.0, 48, 32, None)])
def test_resampling_keeps_physical_sizes_and_positions(tmp_path, voxel, L0, L, pixel):
    sigma, center, a = 6.0, (6.0, -9.0, 3.0), 1.0
    path = _write(tmp_path / "g.mrc", _gaussian_map(L0, voxel, sigma, center, a), voxel)
    sim = Simulation(L, 1, volume=path, pixel_size=pixel, rotations=np.eye(3)[None],
                     dtype=np.float64)
    p = voxel * L0 / L if pixel is None else pixel
    assert sim.pixel_size == pytest.approx(p)
    m, com, var = _moments(sim.clean_images()[0])
    s_px = sigma / p
    # Point values are kept, the line integral is in pixels: the projection integrates to
    # a (2 pi)^{3/2} sigma_px^3.  The Gaussian is band-limited (exp(-2 pi^2 sigma_vox^2 / 4)
    # < 1e-9 at the voxel Nyquist) and inside both boxes, so only the float32 map (2^-24
    # relative) and the NUFFT (1e-10) limit the agreement.
    assert m == pytest.approx(a * (2 * np.pi) ** 1.5 * s_px ** 3, rel=1e-6)
    np.testing.assert_allclose(com, np.array(center[:2]) / p, atol=1e-5)
    assert np.sqrt(var) == pytest.approx(s_px, rel=1e-5)


def _blob_array(L, centers, amplitudes, sigma=2.0):
    """An asymmetric array of Gaussian blobs (voxel coordinates (x, y, z)), [z, y, x]."""
    c = np.arange(L) - L // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((L,) * 3)
    for (bx, by, bz), amp in zip(centers, amplitudes):
        vol += amp * np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * sigma ** 2))
    return vol


def test_identity_rotation_projects_along_z_of_the_zyx_array():
    # Asymmetric: three blobs of different heights at different x, y and z.
    L = 48
    vol = _blob_array(L, [(6, 0, -3), (-2, 7, 4), (0, -5, 8)], [1.0, 2.0, 3.0])
    sim = Simulation(L, 1, volume=vol, rotations=np.eye(3)[None], dtype=np.float64)
    # Band-limited blobs (sigma 2 voxels: exp(-2 pi^2 sigma^2 / 4) = 3e-9 beyond |k| = 1/2).
    np.testing.assert_allclose(sim.clean_images()[0], vol.sum(axis=0), atol=1e-7 * vol.max())


def _rx(deg):
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rz(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _ry(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


@pytest.mark.parametrize("R, expected", [
    (np.eye(3), (5.0, -3.0)),            # along z: (x, y)
    (_rx(90), (5.0, 7.0)),               # image y is volume z: (x, z)
    (_rz(90), (-3.0, -5.0)),             # in-plane 90 deg: (R^T p)[:2] = (y, -x)
    (_ry(90), (-7.0, -3.0)),             # image x is -z
])
def test_a_known_rotation_moves_a_feature_where_expected(R, expected):
    L = 48
    p = (5.0, -3.0, 7.0)                 # the feature, volume (x, y, z) in voxels
    vol = _blob_array(L, [p], [1.0])
    sim = Simulation(L, 1, volume=vol, rotations=R[None], dtype=np.float64)
    _, com, _ = _moments(sim.clean_images()[0])
    np.testing.assert_allclose(com, expected, atol=1e-6)
    np.testing.assert_allclose(com, (R.T @ np.array(p))[:2], atol=1e-6)


@pytest.mark.skipif(shutil.which("relion_project") is None, reason="RELION not installed")
def test_projections_and_euler_angles_agree_with_relion_project(tmp_path):
    L = 32
    v = GaussianBlobVolume([[0.3, 0, 0], [0, 0.5, 0], [0, 0, -0.4], [0.2, 0.2, 0.2]],
                           [0.08] * 4, [1.0, 2.0, 3.0, 1.5])
    path = _write(tmp_path / "m.mrc", v.to_array(L), 2.0)
    for rot, tilt, psi in [(30.0, 60.0, -20.0), (-110.0, 135.0, 75.0)]:
        R = _rz(rot) @ _ry(tilt) @ _rz(psi)
        out = tmp_path / "proj.mrc"
        subprocess.run(["relion_project", "--i", str(path), "--o", str(out), "--rot", str(rot),
                        "--tilt", str(tilt), "--psi", str(psi), "--angpix", "2"], check=True,
                       capture_output=True, cwd=tmp_path)
        theirs = mrcfile.read(out).astype(np.float64)
        sim = Simulation(L, 1, volume=path, rotations=R[None], dtype=np.float64)
        np.testing.assert_allclose(sim.metadata[["rlnAngleRot", "rlnAngleTilt",
                                                 "rlnAnglePsi"]].to_numpy()[0],
                                   [rot, tilt, psi], atol=1e-9)
        ours = sim.clean_images()[0]
        # RELION interpolates its Fourier slices (trilinear, padding 2): close, not equal.
        # The transposed rotation (the other convention) correlates at about 0.25.
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999
        wrong = Simulation(L, 1, volume=path, rotations=R.T[None], dtype=np.float64)
        assert np.corrcoef(wrong.clean_images()[0].ravel(), theirs.ravel())[0, 1] < 0.9


@pytest.mark.parametrize("name, voxel", [("emd-11007", 3.1275), ("emd-3488", 1.6406249)])
def test_shipped_molecules(name, voxel):
    assert name in available_molecules()
    with mrcfile.open(molecule_path(name)) as mrc:
        assert mrc.data.shape == (64, 64, 64)
        assert float(mrc.voxel_size.x) == pytest.approx(voxel)
    sim = Simulation(64, 3, volume=name.upper(), seed=1)       # names are case-insensitive
    assert sim.pixel_size == pytest.approx(voxel)
    sim2 = Simulation(48, 3, volume=name, pixel_size=2 * voxel, seed=1)
    assert sim2.pixel_size == pytest.approx(2 * voxel)
    assert np.isfinite(sim.images[:]).all() and sim.clean_images().std() > 0


def test_unknown_molecule_is_refused():
    with pytest.raises(ValueError, match="molecule must be one of"):
        molecule_path("emd-0000")
