"""3D volumes for simulation: an analytic Gaussian-blob molecule and MRC maps.

Conventions
-----------
A volume array has shape ``(L, L, L)`` and is indexed ``[z, y, x]`` (the order in which
:mod:`mrcfile` returns a standard map: sections, rows, columns), with the centre at voxel
``(L // 2, L // 2, L // 2)`` and voxel coordinates ``x = column - L // 2`` (and likewise for
``y`` and ``z``), as images are in :mod:`classavg._grid`.

A rotation ``R`` (3x3) gives the projection ``I(x, y) = integral vol(R @ (x, y, z)) dz``
(``docs/conventions.md``), the line integral being taken in units of pixels: the image axes are
the first two columns of ``R`` and the viewing direction is ``R[:, 2]``.

:class:`GaussianBlobVolume` is a sum of isotropic 3D Gaussians whose projections and Fourier
transforms have closed forms; it is resolution-free (its coordinates are in units of the box
half-width) and can be sampled on any ``L^3`` grid.  :func:`default_volume` returns the built-in
molecule used by :class:`classavg.sources.simulation.Simulation` when no volume is given.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np

__all__ = ["GaussianBlobVolume", "default_volume", "load_volume"]

logger = logging.getLogger(__name__)


def _as_rotations(rotations):
    """``rotations`` as a float64 array of shape (k, 3, 3) (a single (3, 3) gives k = 1)."""
    r = np.asarray(rotations, dtype=np.float64)
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or r.shape[1:] != (3, 3):
        raise ValueError(f"rotations must have shape (k, 3, 3) or (3, 3), got shape {r.shape}")
    return r


def _as_offsets(offsets, k):
    """``offsets`` (None, (2,) or (k, 2)) as a float64 array of shape (k, 2)."""
    if offsets is None:
        return np.zeros((k, 2))
    off = np.asarray(offsets, dtype=np.float64)
    if off.ndim == 1:
        off = np.broadcast_to(off, (k, 2)) if off.shape == (2,) else off
    if off.shape != (k, 2):
        raise ValueError(f"offsets must have shape ({k}, 2) or (2,), got shape {off.shape}")
    return off


class GaussianBlobVolume:
    r"""A density made of ``m`` isotropic 3D Gaussian blobs, with closed-form projections.

    .. math::

        V(\mathbf p) = \sum_{b=1}^m a_b
            \exp\!\left(-\frac{|\mathbf p - \mathbf c_b|^2}{2 \sigma_b^2}\right)

    Lengths (``centers``, ``sigmas``) are in units of the box half-width, so the same volume can
    be sampled on a grid of any size ``L``: in pixels, ``c_px = c * L / 2`` and
    ``sigma_px = sigma * L / 2``.  Blobs with ``|c| + 3 sigma < 1`` lie inside the box.

    For a rotation ``R`` the projection ``I(x, y) = integral V(R @ (x, y, z)) dz`` (``z`` in
    pixels, ``docs/conventions.md``) is, blob by blob, a 2D Gaussian of the same width centred
    at the first two components of ``R^T c_px``:

    .. math::

        I(x, y) = \sum_b a_b \sigma_b \sqrt{2\pi}
            \exp\!\left(-\frac{(x - u_b)^2 + (y - v_b)^2}{2 \sigma_b^2}\right),
        \qquad (u_b, v_b, \cdot) = R^T \mathbf c_b,

    and the 3D Fourier transform ``F(k) = integral V(p) exp(-2 pi i k . p) dp`` (``k`` in cycles
    per pixel) is

    .. math::

        F(\mathbf k) = \sum_b a_b (2\pi\sigma_b^2)^{3/2}
            \exp(-2\pi^2\sigma_b^2 |\mathbf k|^2 - 2\pi i\, \mathbf k \cdot \mathbf c_b).

    Parameters
    ----------
    centers : array_like, shape (m, 3)
        Blob centres ``(x, y, z)`` in units of the box half-width.
    sigmas : array_like, shape (m,)
        Blob standard deviations in units of the box half-width (positive).
    amplitudes : array_like, shape (m,)
        Peak densities of the blobs (arbitrary units; may be negative).

    See Also
    --------
    default_volume : the built-in molecule-like volume.
    """

    def __init__(self, centers, sigmas, amplitudes):
        c = np.array(centers, dtype=np.float64, ndmin=2)
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] == 0:
            raise ValueError(f"centers must have shape (m, 3) with m >= 1, got shape {c.shape}")
        m = c.shape[0]
        s = np.array(sigmas, dtype=np.float64, ndmin=1)
        a = np.array(amplitudes, dtype=np.float64, ndmin=1)
        if s.shape != (m,):
            raise ValueError(f"sigmas must have shape ({m},), got shape {s.shape}")
        if a.shape != (m,):
            raise ValueError(f"amplitudes must have shape ({m},), got shape {a.shape}")
        for name, arr in (("centers", c), ("sigmas", s), ("amplitudes", a)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite, got {arr!r}")
        if np.any(s <= 0):
            raise ValueError(f"sigmas must be positive, got {s!r}")
        for arr in (c, s, a):
            arr.flags.writeable = False
        self._centers, self._sigmas, self._amplitudes = c, s, a

    # -- properties ----------------------------------------------------------------------------
    @property
    def centers(self) -> np.ndarray:
        """Blob centres ``(x, y, z)``, (m, 3), in units of the box half-width (read-only)."""
        return self._centers

    @property
    def sigmas(self) -> np.ndarray:
        """Blob standard deviations, (m,), in units of the box half-width (read-only)."""
        return self._sigmas

    @property
    def amplitudes(self) -> np.ndarray:
        """Blob peak densities, (m,) (read-only)."""
        return self._amplitudes

    @property
    def n_blobs(self) -> int:
        """Number of blobs ``m``."""
        return self._centers.shape[0]

    def __len__(self) -> int:
        return self.n_blobs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_blobs={self.n_blobs})"

    @property
    def masses(self) -> np.ndarray:
        """Integrated density of each blob, ``a (2 pi)^{3/2} sigma^3``, (m,), half-width units."""
        return self._amplitudes * (2.0 * np.pi) ** 1.5 * self._sigmas ** 3

    def center_of_mass(self) -> np.ndarray:
        """Mass-weighted centre ``(x, y, z)``, (3,), in units of the box half-width.

        A projection's centre of mass is the projection of this point: ``(R^T com)[:2]``
        (times ``L / 2`` in pixels).
        """
        w = self.masses
        return (w[:, None] * self._centers).sum(0) / w.sum()

    def shifted(self, delta) -> "GaussianBlobVolume":
        """A copy translated by ``delta`` ``(x, y, z)`` (half-width units)."""
        d = np.asarray(delta, dtype=np.float64)
        if d.shape != (3,):
            raise ValueError(f"delta must have shape (3,), got shape {d.shape}")
        return GaussianBlobVolume(self._centers + d, self._sigmas, self._amplitudes)

    def _in_pixels(self, L):
        h = L / 2.0
        return self._centers * h, self._sigmas * h

    # -- real space ----------------------------------------------------------------------------
    def evaluate(self, points, L) -> np.ndarray:
        """Density at arbitrary points given in pixels of an ``L``-pixel box.

        Parameters
        ----------
        points : array_like, shape (..., 3)
            Coordinates ``(x, y, z)`` in pixels relative to the box centre.
        L : int
            Box size in pixels (sets the scale ``L / 2`` pixels per half-width unit).

        Returns
        -------
        ndarray, shape (...)
            The density (float64).
        """
        p = np.asarray(points, dtype=np.float64)
        if p.shape[-1:] != (3,):
            raise ValueError(f"points must have shape (..., 3), got shape {p.shape}")
        c, s = self._in_pixels(L)
        out = np.zeros(p.shape[:-1])
        for cb, sb, ab in zip(c, s, self._amplitudes):
            out += ab * np.exp(-np.sum((p - cb) ** 2, axis=-1) / (2.0 * sb * sb))
        return out

    def to_array(self, L, *, dtype=np.float64) -> np.ndarray:
        """Sample the density at the voxel centres of an ``L^3`` grid.

        Parameters
        ----------
        L : int
            Grid size in voxels.
        dtype : numpy dtype, optional
            Output dtype (default float64).

        Returns
        -------
        ndarray, shape (L, L, L)
            Point samples indexed ``[z, y, x]``, centre at voxel ``(L // 2,) * 3``.
        """
        L = int(L)
        c, s = self._in_pixels(L)
        g = np.arange(L) - L // 2
        # Separable: exp(-|p - c|^2 / 2s^2) = gx(x) gy(y) gz(z).
        e = np.exp(-(g[None, None, :] - c[:, :, None]) ** 2 / (2.0 * s[:, None, None] ** 2))
        ex, ey, ez = e[:, 0], e[:, 1], e[:, 2]
        vol = np.einsum("b,bz,by,bx->zyx", self._amplitudes, ez, ey, ex, optimize=True)
        return vol.astype(dtype, copy=False)

    def projected_centers(self, rotations, L) -> np.ndarray:
        """Image-plane positions ``(R^T c_px)[:2]`` of every blob, (k, m, 2), in pixels."""
        r = _as_rotations(rotations)
        c, _ = self._in_pixels(L)
        # (R^T c)_i = sum_j R[j, i] c_j; keep the first two (image x, y) components.
        return np.einsum("kji,mj->kmi", r[:, :, :2], c)

    def project(self, rotations, L, *, offsets=None, dtype=np.float64) -> np.ndarray:
        """Closed-form projections, sampled at the pixel centres.

        Parameters
        ----------
        rotations : array_like, shape (k, 3, 3) or (3, 3)
            Rotation matrices (``I(x, y) = integral V(R @ (x, y, z)) dz``).
        L : int
            Image size in pixels.
        offsets : array_like, shape (k, 2) or (2,), optional
            Particle offsets ``(x, y)`` in pixels: the projection is translated by ``+offset``.
        dtype : numpy dtype, optional
            Output dtype (default float64).

        Returns
        -------
        ndarray, shape (k, L, L)
            Images indexed ``[image, y, x]``; the line integral is in units of pixels.
        """
        L = int(L)
        uv = self.projected_centers(rotations, L)
        uv = uv + _as_offsets(offsets, uv.shape[0])[:, None, :]
        _, s = self._in_pixels(L)
        g = np.arange(L) - L // 2
        # Separable 2D Gaussians: I = sum_b w_b gy_b(y) gx_b(x), one batched matrix product.
        e = np.exp(-(g - uv[..., None]) ** 2 / (2.0 * s[None, :, None, None] ** 2))  # (k,m,2,L)
        w = self._amplitudes * s * np.sqrt(2.0 * np.pi)
        img = np.matmul(np.swapaxes(e[:, :, 1, :], 1, 2) * w, e[:, :, 0, :])
        return img.astype(dtype, copy=False)

    # -- Fourier space -------------------------------------------------------------------------
    def fourier_transform(self, freqs, L) -> np.ndarray:
        """Continuous 3D Fourier transform at arbitrary frequencies.

        Parameters
        ----------
        freqs : array_like, shape (..., 3)
            Frequencies ``(kx, ky, kz)`` in cycles per pixel of an ``L``-pixel box.
        L : int
            Box size in pixels.

        Returns
        -------
        ndarray, shape (...), complex128
            ``F(k) = integral V(p) exp(-2 pi i k . p) dp`` with ``p`` in pixels.  The discrete
            transform ``sum_p vol[p] exp(-2 pi i k . p)`` of :meth:`to_array` equals it up to
            aliasing (about ``exp(-2 pi^2 sigma_px^2 (1 - |k|)^2)``).
        """
        k = np.asarray(freqs, dtype=np.float64)
        if k.shape[-1:] != (3,):
            raise ValueError(f"freqs must have shape (..., 3), got shape {k.shape}")
        c, s = self._in_pixels(L)
        k2 = np.sum(k * k, axis=-1)
        out = np.zeros(k.shape[:-1], dtype=np.complex128)
        for cb, sb, ab in zip(c, s, self._amplitudes):
            out += (ab * (2.0 * np.pi * sb * sb) ** 1.5) * np.exp(
                -2.0 * np.pi ** 2 * sb * sb * k2 - 2j * np.pi * (k @ cb))
        return out

    def central_slices(self, rotations, L, *, offsets=None, ky=None, kx=None,
                       dtype=np.complex128) -> np.ndarray:
        """Fourier transforms of the projections on a separable frequency grid (closed form).

        By the Fourier slice theorem the 2D transform of the projection for ``R`` is
        ``F(kx R[:, 0] + ky R[:, 1])``; for a Gaussian blob it factorises over ``kx`` and
        ``ky``, so the slices of a batch are one batched matrix product.

        Parameters
        ----------
        rotations : array_like, shape (k, 3, 3) or (3, 3)
            Rotation matrices.
        L : int
            Image size in pixels.
        offsets : array_like, shape (k, 2) or (2,), optional
            Offsets ``(x, y)`` in pixels (a phase ``exp(-2 pi i k . offset)``).
        ky, kx : array_like, optional
            1D frequency axes in cycles per pixel; default ``fftfreq(L)`` and ``rfftfreq(L)``
            (the layout of ``scipy.fft.rfft2(ifftshift(image))``).
        dtype : numpy complex dtype, optional
            complex128 (default) or complex64 (the phases are always computed in double
            precision; the final sum over blobs is done in ``dtype``).

        Returns
        -------
        ndarray, shape (k, len(ky), len(kx)), ``dtype``
        """
        L = int(L)
        ky = np.fft.fftfreq(L) if ky is None else np.asarray(ky, dtype=np.float64)
        kx = np.fft.rfftfreq(L) if kx is None else np.asarray(kx, dtype=np.float64)
        uv = self.projected_centers(rotations, L)
        uv = uv + _as_offsets(offsets, uv.shape[0])[:, None, :]
        _, s = self._in_pixels(L)
        w = self._amplitudes * (2.0 * np.pi * s * s) ** 1.5
        s2 = (2.0 * np.pi ** 2) * (s * s)[None, :, None]
        ey = np.exp(-s2 * ky * ky - 2j * np.pi * uv[:, :, 1, None] * ky) * w[None, :, None]
        ex = np.exp(-s2 * kx * kx - 2j * np.pi * uv[:, :, 0, None] * kx)
        ey = np.ascontiguousarray(np.swapaxes(ey, 1, 2), dtype=dtype)
        return np.matmul(ey, ex.astype(dtype, copy=False))


# The built-in molecule: a self-avoiding chain of 32 blobs (a persistent random walk with steps
# of 0.09-0.13, confined to a ball of radius 0.5, generated once with
# numpy.random.default_rng(20240611) and frozen here so it never changes with numpy versions),
# recentred on its centre of mass.  Principal moments of inertia 0.52 : 0.89 : 1 (no symmetry);
# every blob lies within |c| + 3 sigma < 0.67 of the centre.  Columns: x, y, z, sigma (box
# half-widths), amplitude.
_DEFAULT_BLOBS = np.array([
    (0.1945, -0.1076, 0.0961, 0.0879, 0.902),
    (0.0732, -0.1468, 0.0942, 0.0871, 1.138),
    (0.0282, -0.2545, 0.0860, 0.0839, 0.893),
    (0.0265, -0.3079, -0.0066, 0.0532, 0.441),
    (-0.0635, -0.3892, -0.0455, 0.0885, 0.600),
    (-0.1275, -0.3167, -0.1277, 0.0821, 0.641),
    (-0.1397, -0.2320, -0.2250, 0.0837, 1.032),
    (-0.1672, -0.1782, -0.1392, 0.0781, 0.590),
    (-0.2308, -0.0969, -0.0851, 0.0577, 0.607),
    (-0.2714, -0.0478, 0.0073, 0.0630, 0.810),
    (-0.2749, 0.0236, 0.1020, 0.0845, 0.900),
    (-0.1723, 0.0531, 0.1153, 0.0752, 1.097),
    (-0.1359, 0.1127, 0.0474, 0.0510, 0.698),
    (-0.1925, 0.1830, -0.0185, 0.0762, 0.601),
    (-0.1047, 0.1752, -0.0401, 0.0778, 0.823),
    (-0.0229, 0.1231, -0.1077, 0.0736, 1.124),
    (0.0723, 0.1268, -0.1772, 0.0644, 0.437),
    (0.1392, 0.1900, -0.1982, 0.0618, 0.975),
    (0.1904, 0.2541, -0.1494, 0.0741, 0.457),
    (0.2300, 0.2921, -0.0577, 0.0717, 0.698),
    (0.1760, 0.2726, 0.0208, 0.0628, 0.956),
    (0.1234, 0.3045, 0.1253, 0.0665, 1.066),
    (0.0598, 0.3617, 0.1943, 0.0683, 0.835),
    (-0.0066, 0.2924, 0.2724, 0.0675, 0.712),
    (-0.0327, 0.3058, 0.1718, 0.0673, 1.019),
    (-0.0168, 0.2099, 0.1005, 0.0886, 0.618),
    (0.0586, 0.1272, 0.0567, 0.0705, 0.641),
    (0.1059, 0.0210, 0.0165, 0.0845, 1.180),
    (0.1493, -0.0435, -0.0302, 0.0589, 0.623),
    (0.1717, -0.1151, -0.1270, 0.0688, 0.420),
    (0.1993, -0.1794, -0.1975, 0.0821, 0.575),
    (0.1486, -0.2589, -0.2608, 0.0616, 0.903),
])


def default_volume() -> GaussianBlobVolume:
    """The built-in test molecule: an asymmetric chain of 32 Gaussian blobs.

    Deterministic (a frozen table, no download), centred on its centre of mass, with blob widths
    of 0.051-0.089 box half-widths (1.6-2.8 pixels at ``L = 64``) and amplitudes 0.42-1.18.
    It fits in a ball of radius 0.67 half-widths, leaving room for shifts of about
    ``0.3 * L / 2`` pixels inside the image.

    Returns
    -------
    GaussianBlobVolume
    """
    b = _DEFAULT_BLOBS
    return GaussianBlobVolume(b[:, :3], b[:, 3], b[:, 4])


def load_volume(path, *, with_voxel_size=False):
    """Read a cubic 3D map from an MRC file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mrc`` / ``.map`` file.
    with_voxel_size : bool, optional
        Also return the voxel size in Angstrom (None when the header does not give one).

    Returns
    -------
    volume : ndarray, shape (L, L, L), float64
        The map indexed ``[z, y, x]`` (the header's axis order ``mapc, mapr, maps`` is undone).
    voxel_size : float or None
        Only when ``with_voxel_size`` is True.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is not a readable MRC file, is not 3D, is not cubic or holds NaN/Inf.
    """
    import mrcfile

    fname = os.fspath(path)
    if not os.path.isfile(fname):
        raise FileNotFoundError(f"volume file {fname!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # permissive-mode header notes
            with mrcfile.open(fname, mode="r", permissive=True) as mrc:
                raw = mrc.data
                if raw is None:
                    raise ValueError("the header or data block is invalid")
                data = np.array(raw, dtype=np.float64)
                axes = (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps))
                voxel = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"volume file {fname!r} is not a readable MRC file: {exc}") from exc
    if data.ndim != 3:
        raise ValueError(f"volume file {fname!r} must hold a 3D map, got data of shape "
                         f"{data.shape}")
    if sorted(axes) == [1, 2, 3] and axes != (1, 2, 3):
        # data[section, row, column] with columns along axis mapc etc.; reorder to [z, y, x].
        labels = (axes[2], axes[1], axes[0])           # axis label of data axes 0, 1, 2
        data = np.transpose(data, [labels.index(3), labels.index(2), labels.index(1)])
    if not (data.shape[0] == data.shape[1] == data.shape[2]):
        raise ValueError(f"volume file {fname!r} must hold a cubic map (L, L, L), got shape "
                         f"{data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"volume file {fname!r} holds NaN or Inf voxels; expected finite values")
    logger.debug("read volume %s of shape %s, voxel size %s A", fname, data.shape, voxel)
    if with_voxel_size:
        return data, (voxel if voxel > 0 else None)
    return data
