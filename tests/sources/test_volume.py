"""Tests of classavg.sources.volume: the analytic Gaussian-blob volume and MRC map reading."""

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from classavg.sources.volume import GaussianBlobVolume, default_volume, load_volume


def _grid(L):
    return np.arange(L) - L // 2


def test_default_volume_is_deterministic_asymmetric_and_fits_the_box():
    v, w = default_volume(), default_volume()
    assert 20 <= v.n_blobs <= 40
    np.testing.assert_array_equal(v.centers, w.centers)
    np.testing.assert_array_equal(v.sigmas, w.sigmas)
    np.testing.assert_array_equal(v.amplitudes, w.amplitudes)
    # Varying widths and amplitudes; centred on its centre of mass.
    assert np.ptp(v.sigmas) > 0.02 and np.ptp(v.amplitudes) > 0.5
    np.testing.assert_allclose(v.center_of_mass(), 0.0, atol=1e-4)
    # Inside the box with room for shifts: |c| + 3 sigma < 0.7 half-widths.
    assert np.max(np.linalg.norm(v.centers, axis=1) + 3 * v.sigmas) < 0.7
    # Asymmetric: three clearly distinct principal moments of inertia.
    m, c = v.masses, v.centers
    inertia = (m[:, None, None] * ((np.sum(c * c, 1) + 3 * v.sigmas ** 2)[:, None, None]
                                   * np.eye(3) - c[:, :, None] * c[:, None, :])).sum(0)
    ev = np.sort(np.linalg.eigvalsh(inertia))
    assert np.min(np.diff(ev)) > 0.05 * ev[-1]
    assert not v.centers.flags.writeable


def test_to_array_layout_is_z_y_x_centred_at_L_over_2():
    for L in (16, 17):
        c = np.array([[0.25, -0.5, 0.375]])  # half-width units
        v = GaussianBlobVolume(c, [0.2], [2.0])
        a = v.to_array(L)
        assert a.shape == (L, L, L) and a.dtype == np.float64
        h = L / 2
        z, y, x = np.unravel_index(np.argmax(a), a.shape)
        assert (x - L // 2, y - L // 2, z - L // 2) == tuple(np.round(c[0] * h).astype(int))
        # Exact point samples: compare with the defining formula at a few voxels.
        g = _grid(L)
        for (iz, iy, ix) in [(0, 3, 5), (L // 2, L // 2, L // 2), (L - 1, 2, L - 3)]:
            p = np.array([g[ix], g[iy], g[iz]])
            want = 2.0 * np.exp(-np.sum((p - c[0] * h) ** 2) / (2 * (0.2 * h) ** 2))
            assert a[iz, iy, ix] == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(v.evaluate(np.array([g[5], g[3], g[0]]), L), a[0, 3, 5])


def test_closed_form_projection_matches_the_line_integral_definition():
    # I(x, y) = integral V(R @ (x, y, z)) dz, z in pixels (docs/conventions.md), by quadrature.
    L = 24
    v = default_volume().shifted([0.05, -0.1, 0.08])
    rots = Rotation.random(3, random_state=7).as_matrix()
    proj = v.project(rots, L)
    g = _grid(L)
    y, x = np.meshgrid(g, g, indexing="ij")
    dz = 0.5
    z = np.arange(-L, L + 1) * dz
    q = np.stack(np.broadcast_arrays(x[..., None], y[..., None], z), axis=-1)  # (L, L, nz, 3)
    for R, img in zip(rots, proj):
        line = v.evaluate(q @ R.T, L).sum(-1) * dz
        np.testing.assert_allclose(img, line, rtol=0, atol=1e-10 * np.abs(line).max())


def test_projection_of_a_blob_is_a_gaussian_at_R_transpose_c():
    L = 32
    c = np.array([0.3, -0.2, 0.4])
    sigma, amp = 0.1, 1.5
    v = GaussianBlobVolume(c[None], [sigma], [amp])
    R = Rotation.from_euler("ZYZ", [0.3, 1.1, -0.7]).as_matrix()
    img = v.project(R, L)[0]
    u, w, _ = R.T @ (c * L / 2)
    s = sigma * L / 2
    g = _grid(L)
    y, x = np.meshgrid(g, g, indexing="ij")
    want = amp * s * np.sqrt(2 * np.pi) * np.exp(-((x - u) ** 2 + (y - w) ** 2) / (2 * s * s))
    np.testing.assert_allclose(img, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v.projected_centers(R, L)[0, 0], [u, w])
    # Identity rotation: the projection is the sum of the sampled volume along z (axis 0).
    np.testing.assert_allclose(v.project(np.eye(3), L)[0], v.to_array(L).sum(0), atol=1e-12)


def test_projection_offsets_translate_the_image():
    L = 32
    v = default_volume()
    R = Rotation.random(2, random_state=1).as_matrix()
    off = np.array([[2.5, -1.0], [-3.25, 0.5]])
    a = v.project(R, L, offsets=off)
    b = v.project(R, L)
    g = _grid(L)
    y, x = np.meshgrid(g, g, indexing="ij")
    for k in range(2):
        com_a = np.array([(a[k] * x).sum(), (a[k] * y).sum()]) / a[k].sum()
        com_b = np.array([(b[k] * x).sum(), (b[k] * y).sum()]) / b[k].sum()
        np.testing.assert_allclose(com_a - com_b, off[k], atol=1e-6)


def test_fourier_transform_matches_the_dft_of_the_sampled_volume():
    L = 32
    v = default_volume()
    a = v.to_array(L)
    g = _grid(L)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    k = np.random.default_rng(0).uniform(-0.35, 0.35, size=(6, 3))
    dft = np.array([np.sum(a * np.exp(-2j * np.pi * (kk[0] * x + kk[1] * y + kk[2] * z)))
                    for kk in k])
    ft = v.fourier_transform(k, L)
    # Differences are aliasing of blobs of sigma >= 0.8 px at |k| <= 0.6: well below 1e-3.
    assert np.max(np.abs(ft - dft)) < 1e-3 * np.abs(ft).max()
    assert v.fourier_transform(np.zeros(3), L) == pytest.approx(v.masses.sum() * (L / 2) ** 3)


def test_central_slices_are_the_2d_transforms_of_the_projections():
    for L in (32, 33):
        v = GaussianBlobVolume(default_volume().centers, np.maximum(default_volume().sigmas,
                                                                    1.5 / (L / 2)),
                               default_volume().amplitudes)
        R = Rotation.random(4, random_state=3).as_matrix()
        off = np.array([[0.3, -1.7], [2.0, 0.0], [0.0, 0.0], [-1.25, 1.5]])
        proj = v.project(R, L, offsets=off)
        f = np.fft.rfft2(np.fft.ifftshift(proj, axes=(1, 2)))
        cs = v.central_slices(R, L, offsets=off)
        assert cs.shape == (4, L, L // 2 + 1) and cs.dtype == np.complex128
        assert np.linalg.norm(cs - f) < 1e-4 * np.linalg.norm(f)
        # Fourier slice theorem: the same values as the 3D transform on the rotated plane.
        ky, kx = np.fft.fftfreq(L)[3], np.fft.rfftfreq(L)[5]
        w = kx * R[0, :, 0] + ky * R[0, :, 1]
        phase = np.exp(-2j * np.pi * (kx * off[0, 0] + ky * off[0, 1]))
        assert cs[0, 3, 5] == pytest.approx(v.fourier_transform(w, L) * phase, rel=1e-10)
        assert v.central_slices(R, L, dtype=np.complex64).dtype == np.complex64


@pytest.mark.parametrize("kwargs, match", [
    (dict(centers=np.zeros((2, 2)), sigmas=[1, 1], amplitudes=[1, 1]), "centers"),
    (dict(centers=np.zeros((2, 3)), sigmas=[1], amplitudes=[1, 1]), "sigmas"),
    (dict(centers=np.zeros((2, 3)), sigmas=[1, 1], amplitudes=[1]), "amplitudes"),
    (dict(centers=np.zeros((2, 3)), sigmas=[1, -1], amplitudes=[1, 1]), "positive"),
    (dict(centers=[[0, 0, np.nan]], sigmas=[1], amplitudes=[1]), "finite"),
])
def test_blob_volume_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianBlobVolume(**kwargs)


def test_load_volume_roundtrip_and_axis_order(tmp_path):
    a = np.random.default_rng(1).standard_normal((6, 6, 6)).astype(np.float32)
    path = tmp_path / "map.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(a)
        mrc.voxel_size = 2.5
    np.testing.assert_array_equal(load_volume(path), a)
    vol, voxel = load_volume(str(path), with_voxel_size=True)
    assert vol.dtype == np.float64 and voxel == pytest.approx(2.5)
    # A map stored with columns along z, rows along y, sections along x (mapc=3, maps=1).
    path2 = tmp_path / "swapped.mrc"
    with mrcfile.new(path2) as mrc:
        mrc.set_data(np.ascontiguousarray(np.transpose(a, (2, 1, 0))))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    np.testing.assert_array_equal(load_volume(path2), a)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_load_volume_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mrc"):
        load_volume(tmp_path / "nothere.mrc")
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an mrc file" * 10)
    with pytest.raises(ValueError, match="bad.mrc.*not a readable MRC"):
        load_volume(bad)
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((4, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"flat\.mrc.*cubic.*\(4, 6, 6\)"):
        load_volume(flat)
    img = tmp_path / "image.mrc"
    with mrcfile.new(img) as mrc:
        mrc.set_data(np.zeros((6, 6), np.float32))
    with pytest.raises(ValueError, match=r"image\.mrc.*3D.*\(6, 6\)"):
        load_volume(img)
    nan = tmp_path / "nan.mrc"
    with mrcfile.new(nan) as mrc:
        d = np.zeros((4, 4, 4), np.float32)
        d[1, 2, 3] = np.nan
        mrc.set_data(d)
    with pytest.raises(ValueError, match=r"nan\.mrc.*NaN"):
        load_volume(nan)
