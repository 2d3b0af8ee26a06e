"""Simulated particle images with known ground truth.

:class:`Simulation` is an :class:`~classavg.sources.base.ImageSource` of projections of a 3D
volume at random orientations, shifted, multiplied by a CTF and corrupted by white Gaussian
noise.  It keeps the truth for every image (rotation, viewing direction, in-plane angle, offset,
CTF, clean projection), which the accuracy tests and benchmarks of ``classavg.metrics`` compare
against (``shared/metrics.md``).

Image formation (``docs/conventions.md``)
-----------------------------------------
For image ``i`` with rotation ``R_i``, offset ``o_i`` (pixels) and CTF ``H_i``::

    P_i(x, y)  = integral vol(R_i @ (x, y, z)) dz          clean projection (z in pixels)
    Y_i        = F^{-1}[ H_i(k) exp(-2 pi i k . o_i) F[P_i](k) ] + noise_i

``F[P_i](k) = V(k_x R_i[:, 0] + k_y R_i[:, 1])`` (Fourier slice theorem) is evaluated on the
``L x L`` DFT grid: in closed form for a :class:`~classavg.sources.volume.GaussianBlobVolume`,
and with a type-2 3D NUFFT (finufft) of the voxel array for array volumes (MRC maps), keeping
frequencies ``|k| <= 1/2`` cycle/pixel (those a voxel grid represents; RELION's projector does
the same).  The offset is an exact sub-pixel Fourier phase shift: the image is the projection
translated by ``+o_i``.  The noise is white Gaussian with variance ``noise_variance =
signal_variance / snr``, where ``signal_variance`` is the pixel variance of the clean, shifted,
CTF-applied images, averaged over the first ``min(n, 512)`` images (estimated once).

Randomness
----------
Everything derives from one integer ``seed`` through independent
:class:`numpy.random.SeedSequence` streams (``spawn_key`` 0: rotations, 1: offsets, 2: CTF
astigmatism, ``(3, i)``: the noise of image ``i``), so image ``i`` is the same whichever batch
it is requested in, and ``Simulation(L, n1, seed=s)`` and ``Simulation(L, n2, seed=s)`` share
their first ``min(n1, n2)`` rotations.

References
----------
.. [1] Bracewell, "Strip integration in radio astronomy", Aust. J. Phys. 9 (1956): the Fourier
   slice (projection-slice) theorem.
.. [2] Barnett, Magland, af Klinteberg, "A parallel non-uniform fast Fourier transform library
   based on an 'exponential of semicircle' kernel", SIAM J. Sci. Comput. 41 (2019) (finufft).
.. [3] Scheres, "RELION: implementation of a Bayesian approach to cryo-EM structure
   determination", J. Struct. Biol. 180 (2012): Euler angles and CTF conventions.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft

from .._validation import check_choice, check_float, check_int, check_random_state
from ._ground_truth import load_ground_truth, write_ground_truth
from ._projection import (
    _CTF_FIELDS,
    _STREAM_NOISE,
    _STREAM_OFFSETS,
    _ctf_table,
    _nufft_slices,
    _prepare_volume,
    _uniform_rotations,
    euler_zyz,
)
from .base import ImageSource
from .ctf import evaluate_ctf

__all__ = ["Simulation", "simulate_dataset", "load_ground_truth", "euler_zyz",
           "DEFAULT_BOX_SIZE"]

logger = logging.getLogger(__name__)

#: Physical box size (Angstrom) that sets the default pixel size ``DEFAULT_BOX_SIZE / L``, so
#: that the CTF looks the same at every ``L`` (4 A/pixel at ``L = 64``).
DEFAULT_BOX_SIZE = 256.0

#: Stack written by :func:`simulate_dataset`, relative to its output folder.
STACK_NAME = "Particles/particles.mrcs"

_SNR_SUBSET = 512          # images used to estimate the signal variance
_CHUNK_PIXELS = 2 ** 21    # pixels rendered at a time (512 images of 64 x 64; bounds memory)


class Simulation(ImageSource):
    """Projections of a 3D volume at random orientations, with CTF, shifts and noise.

    Images are rendered lazily for each requested batch; image ``i`` depends only on ``seed``
    and ``i`` (see the module docstring for the image formation model and the random streams).

    Parameters
    ----------
    L : int
        Image size in pixels.
    n : int
        Number of images.
    volume : GaussianBlobVolume, ndarray (L0, L0, L0), str or os.PathLike, optional
        The molecule: an analytic blob volume (closed-form projections; default
        :func:`~classavg.sources.volume.default_volume`), a voxel array indexed ``[z, y, x]``
        with its centre at voxel ``L0 // 2``, or the path of an MRC map.  Arrays with
        ``L0 != L`` are Fourier-cropped (or padded) to ``L^3``, i.e. the image covers the
        map's whole box.
    snr : float, optional
        Signal-to-noise ratio ``var(clean shifted CTF-applied image) / var(noise)`` (over the
        whole image, averaged over images).  None (default): noise-free images.
    offsets : array_like, shape (n, 2), optional
        Particle offsets ``(x, y)`` in pixels (image = projection shifted by ``+offset``).
        Default: uniformly random in a disk of radius ``max_shift``.
    max_shift : float, optional
        Radius in pixels of the disk of random offsets when ``offsets`` is None (default 0).
    ctf : None, bool, dict or pandas.DataFrame, optional
        None or False (default): no CTF.  True: ``n_defocus_groups`` groups (image ``i`` is in
        group ``i % n_defocus_groups``) with mean defoci evenly spread over ``defocus_range``,
        random astigmatism ``|dU - dV| <= 200`` A at a random angle, 300 kV, Cs 2.7 mm,
        amplitude contrast 0.1.  A dict / DataFrame gives the parameters per image (scalars or
        (n,) arrays), keyed by RELION labels (``rlnDefocusU``, ...) or by the keywords of
        :func:`~classavg.sources.ctf.evaluate_ctf` (``defocus_u``, ...); ``defocus_u`` is
        required, ``defocus_v`` defaults to it, the others to the values above.
    n_defocus_groups : int, optional
        Number of defocus groups for ``ctf=True`` (default 7).
    defocus_range : (float, float), optional
        Smallest and largest mean defocus in Angstrom for ``ctf=True`` (default 1.0e4, 2.5e4).
    pixel_size : float, optional
        Pixel size in Angstrom.  Default: ``voxel_size * L0 / L`` for an MRC map whose header
        gives a voxel size, else ``DEFAULT_BOX_SIZE / L`` (4 A at ``L = 64``).
    rotations : array_like, shape (n, 3, 3), optional
        Explicit rotations; default: ``n`` Haar-random (uniform) rotations.
    seed : int or numpy.random.Generator, optional
        Seed of every random component (default 0).  None draws a fresh seed, recorded in
        :attr:`seed`.
    dtype : numpy dtype, optional
        float32 (default) or float64 images.  float32 renders in single precision.
    projection : {"auto", "analytic", "nufft"}, optional
        How projections are computed.  "auto" (default): closed form for a
        :class:`~classavg.sources.volume.GaussianBlobVolume`, NUFFT for arrays.  "nufft" samples
        a blob volume on the ``L^3`` grid first.
    nufft_eps : float, optional
        Requested NUFFT accuracy; default 1e-6 (float32) or 1e-10 (float64).

    Attributes
    ----------
    rotations, viewing_directions, in_plane_angles, euler_angles, offsets, snr,
    noise_variance, seed, volume
        Ground truth (see each property).

    Notes
    -----
    ``metadata`` holds the RELION columns ``rlnAngleRot/Tilt/Psi`` (degrees, see
    :func:`euler_zyz`), ``rlnOriginXAngst/YAngst = -offset * pixel_size`` and, with a CTF,
    ``rlnDefocusU/V/Angle``, ``rlnVoltage``, ``rlnSphericalAberration``,
    ``rlnAmplitudeContrast``.

    Examples
    --------
    >>> sim = Simulation(64, 1000, snr=0.1, ctf=True, max_shift=3, seed=1)
    >>> noisy = sim.images[:100]                       # (100, 64, 64) float32
    >>> truth = sim.clean_images(np.arange(100))       # unshifted, CTF-free projections
    """

    def __init__(self, L, n, *, volume=None, snr=None, offsets=None, max_shift=0.0, ctf=None,
                 n_defocus_groups=7, defocus_range=(1.0e4, 2.5e4), pixel_size=None,
                 rotations=None, seed=0, dtype=np.float32, projection="auto", nufft_eps=None):
        L = check_int("L", L, min=2)
        n = check_int("n", n, min=1)
        if isinstance(seed, np.random.Generator) or seed is None:
            seed = int(check_random_state(seed).integers(2 ** 63))
        elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise TypeError("seed must be None, a non-negative integer or a numpy Generator, "
                            f"got {seed!r}")
        self._seed = int(seed)
        self._snr = check_float("snr", snr, min=0.0, min_inclusive=False, allow_none=True)
        check_choice("projection", projection, ("auto", "analytic", "nufft"))
        self._blobs, self._voxels, self._volume_name, voxel_size = _prepare_volume(
            volume, L, projection)
        if pixel_size is None:
            pixel_size = voxel_size if voxel_size is not None else DEFAULT_BOX_SIZE / L
        pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
        dt = np.dtype(dtype)
        if nufft_eps is None:
            nufft_eps = 1e-6 if dt == np.float32 else 1e-10
        self._nufft_eps = check_float("nufft_eps", nufft_eps, min=0.0, min_inclusive=False)

        # -- poses -----------------------------------------------------------------------------
        if rotations is None:
            rot = _uniform_rotations(n, self._seed)
        else:
            rot = np.array(rotations, dtype=np.float64)
            if rot.shape != (n, 3, 3):
                raise ValueError(f"rotations must have shape ({n}, 3, 3), got shape {rot.shape}")
            err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(initial=0.0)
            if not np.isfinite(err) or err > 1e-6 or np.any(np.linalg.det(rot) < 0):
                raise ValueError("rotations must be proper rotation matrices (orthonormal, "
                                 f"det +1), got a deviation from orthonormality of {err:.3g}")
        if offsets is None:
            max_shift = check_float("max_shift", max_shift, min=0.0)
            rng = np.random.default_rng(np.random.SeedSequence(self._seed,
                                                               spawn_key=(_STREAM_OFFSETS,)))
            u = rng.random((n, 2))
            r = max_shift * np.sqrt(u[:, 0])
            off = np.stack([r * np.cos(2 * np.pi * u[:, 1]), r * np.sin(2 * np.pi * u[:, 1])], 1)
        else:
            off = np.array(offsets, dtype=np.float64)
            if off.shape != (n, 2):
                raise ValueError(f"offsets must have shape ({n}, 2), got shape {off.shape}")
            if not np.all(np.isfinite(off)):
                raise ValueError("offsets must be finite (pixels)")
        self._ctf = _ctf_table(ctf, n, n_defocus_groups, defocus_range, self._seed)
        for a in (rot, off):
            a.flags.writeable = False
        self._rotations, self._offsets = rot, off
        self._euler = euler_zyz(rot)
        self._euler.flags.writeable = False
        self._noise_variance = None if self._snr is not None else 0.0

        md = pd.DataFrame({
            "rlnAngleRot": np.rad2deg(self._euler[:, 0]),
            "rlnAngleTilt": np.rad2deg(self._euler[:, 1]),
            "rlnAnglePsi": np.rad2deg(self._euler[:, 2]),
            "rlnOriginXAngst": -off[:, 0] * pixel_size,
            "rlnOriginYAngst": -off[:, 1] * pixel_size,
        })
        if self._ctf is not None:
            for key, values in self._ctf.items():
                md[_CTF_FIELDS[key][0]] = values
        super().__init__(n=n, L=L, dtype=dt, pixel_size=pixel_size, metadata=md)
        logger.debug("created %r (volume %s, snr %s, ctf %s, seed %d)", self, self._volume_name,
                     self._snr, self._ctf is not None, self._seed)

    # -- ground truth --------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        """The integer seed of every random component."""
        return self._seed

    @property
    def volume(self):
        """The volume: a :class:`GaussianBlobVolume`, or the ``(L, L, L)`` voxel array used."""
        return self._blobs if self._blobs is not None else self._voxels

    @property
    def rotations(self) -> np.ndarray:
        """Rotation matrices, (n, 3, 3): ``I(x, y) = integral vol(R @ (x, y, z)) dz``."""
        return self._rotations

    @property
    def viewing_directions(self) -> np.ndarray:
        """Projection axes ``R[:, :, 2]``, (n, 3), unit vectors in the volume frame."""
        return self._rotations[:, :, 2]

    @property
    def euler_angles(self) -> np.ndarray:
        """ZYZ (RELION) Euler angles ``(rot, tilt, psi)``, (n, 3), radians (:func:`euler_zyz`)."""
        return self._euler

    @property
    def in_plane_angles(self) -> np.ndarray:
        """In-plane angles ``psi``, (n,), radians in (-pi, pi].

        ``R = R0(v) @ Rz(psi)`` with the canonical frame ``R0(v) = Rz(rot) @ Ry(tilt)`` of the
        viewing direction ``v`` (the ZYZ / RELION ``rlnAnglePsi``, :func:`euler_zyz`).  Two
        images with the same viewing direction satisfy ``R_j = R_r @ Rz(psi_j - psi_r)``, so
        rotating image ``j`` counter-clockwise by ``psi_j - psi_r`` gives image ``r``.
        """
        return self._euler[:, 2]

    @property
    def offsets(self) -> np.ndarray:
        """Particle offsets ``(x, y)``, (n, 2), pixels: image = projection shifted by offset."""
        return self._offsets

    @property
    def snr(self):
        """Requested signal-to-noise ratio (None: noise-free)."""
        return self._snr

    @property
    def noise_variance(self) -> float:
        """Variance of the white noise per pixel (0.0 when noise-free)."""
        if self._noise_variance is None:
            m = min(self.n, _SNR_SUBSET)
            clean = self._render(np.arange(m), shifted=True, ctf=True)
            signal = float(np.mean(np.var(clean, axis=(1, 2), dtype=np.float64)))
            self._noise_variance = signal / self._snr
            logger.debug("signal variance %.4g over %d images -> noise variance %.4g",
                         signal, m, self._noise_variance)
        return self._noise_variance

    @property
    def defocus(self):
        """Mean defocus ``(dU + dV) / 2`` per image, (n,), Angstrom; None without a CTF."""
        if self._ctf is None:
            return None
        return 0.5 * (self._ctf["defocus_u"] + self._ctf["defocus_v"])

    def clean_images(self, indices=None, *, shifted=False, ctf=False) -> np.ndarray:
        """Noise-free images.

        Parameters
        ----------
        indices : slice, int or array_like of int, optional
            Which images (default: all).
        shifted : bool, optional
            Translate by the offsets (default False: centred projections).
        ctf : bool, optional
            Apply the CTF (default False; ignored when the simulation has none).

        Returns
        -------
        ndarray, shape (k, L, L)
            With the defaults, the clean projections that metrics compare class averages
            against; ``shifted=True, ctf=True`` gives exactly ``images`` minus the noise.
        """
        idx = np.atleast_1d(np.arange(self.n)[slice(None) if indices is None else indices])
        return self._render(idx, shifted=shifted, ctf=ctf)

    # -- rendering -----------------------------------------------------------------------------
    def _images(self, indices):
        out = self._render(indices, shifted=True, ctf=True)
        sd = float(np.sqrt(self.noise_variance))
        if sd > 0:
            noise = np.empty(out.shape[1:], dtype=self.dtype)
            for j, i in enumerate(indices):
                rng = np.random.default_rng(
                    np.random.SeedSequence(self._seed, spawn_key=(_STREAM_NOISE, int(i))))
                rng.standard_normal(out=noise, dtype=self.dtype)
                out[j] += sd * noise
        return out

    def _render(self, indices, *, shifted, ctf):
        """Clean images at ``indices`` (1-D int array), (k, L, L) of ``self.dtype``."""
        L = self.L
        out = np.empty((len(indices), L, L), dtype=self.dtype)
        chunk = max(1, _CHUNK_PIXELS // (L * L))
        for start in range(0, len(indices), chunk):
            idx = np.asarray(indices[start:start + chunk])
            f = self._slices(idx)
            if shifted:
                off = self._offsets[idx]
                ky, kx = np.fft.fftfreq(L), np.fft.rfftfreq(L)
                f *= np.exp(-2j * np.pi * off[:, 1, None] * ky)[:, :, None].astype(f.dtype)
                f *= np.exp(-2j * np.pi * off[:, 0, None] * kx)[:, None, :].astype(f.dtype)
            if ctf and self._ctf is not None:
                f *= self._rfft_ctf(idx)
            img = scipy.fft.irfft2(f, s=(L, L), workers=-1)
            out[start:start + len(idx)] = np.fft.fftshift(img, axes=(1, 2))
        return out

    def _slices(self, idx):
        """Fourier transforms of the clean projections, rfft layout (k, L, L // 2 + 1)."""
        L = self.L
        cdt = np.complex64 if self.dtype == np.float32 else np.complex128
        rot = self._rotations[idx]
        if self._voxels is None:
            return self._blobs.central_slices(rot, L, dtype=cdt)
        return _nufft_slices(self._voxels, rot, self._nufft_eps, cdt)

    def _rfft_ctf(self, idx):
        """CTFs of images ``idx`` in the rfft layout, (k, L, L // 2 + 1), one evaluation per
        distinct parameter set."""
        L = self.L
        keys = list(self._ctf)
        table = np.stack([self._ctf[k][idx] for k in keys], axis=1)
        uniq, inverse = np.unique(table, axis=0, return_inverse=True)
        full = evaluate_ctf(L, self.pixel_size, **dict(zip(keys, uniq.T)))
        full = np.fft.ifftshift(full, axes=(1, 2))          # zero frequency at [0, 0]
        half = full[:, :, :L // 2 + 1].copy()
        if L % 2 == 0:
            # rfft column L/2 is kx = +1/2; the full grid holds kx = -1/2, and CTF(k) = CTF(-k).
            half[:, :, L // 2] = full[:, (-np.arange(L)) % L, L // 2]
        return half[inverse.reshape(-1)].astype(np.float32 if self.dtype == np.float32
                                                else np.float64, copy=False)

    # -- ground truth files --------------------------------------------------------------------
    def save_ground_truth(self, path, *, overwrite=False):
        """Write the ground truth to an ``.npz`` file (atomically).

        Arrays: ``rotations`` (n, 3, 3), ``viewing_directions`` (n, 3), ``in_plane_angles``
        (n,) radians, ``euler_angles`` (n, 3) radians, ``offsets`` (n, 2) pixels,
        ``defocus_u``, ``defocus_v``, ``defocus_angle`` (n,) (Angstrom, degrees; NaN without a
        CTF); scalars ``snr`` (NaN when noise-free), ``noise_variance``, ``seed``, ``L``, ``n``,
        ``pixel_size``, ``has_ctf``, ``volume`` (a description string).

        Parameters
        ----------
        path : str or os.PathLike
            Output file (written as given; ``.npz`` is the customary suffix).
        overwrite : bool, optional
            Replace an existing file (default False: FileExistsError).

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"ground-truth file {str(path)!r} exists; pass overwrite=True")
        nan = np.full(self.n, np.nan)
        ctf = self._ctf or {}
        data = dict(
            rotations=self.rotations, viewing_directions=self.viewing_directions,
            in_plane_angles=self.in_plane_angles, euler_angles=self.euler_angles,
            offsets=self.offsets, defocus_u=ctf.get("defocus_u", nan),
            defocus_v=ctf.get("defocus_v", nan), defocus_angle=ctf.get("defocus_angle", nan),
            snr=np.nan if self.snr is None else self.snr, noise_variance=self.noise_variance,
            seed=self.seed, L=self.L, n=self.n, pixel_size=self.pixel_size,
            has_ctf=self._ctf is not None, volume=self._volume_name)
        write_ground_truth(path, data)
        logger.info("wrote ground truth of %d images to %s", self.n, path)
        return path


def simulate_dataset(out_dir, n, L, *, snr=None, volume=None, ctf=False, n_defocus_groups=7,
                     defocus_range=(1.0e4, 2.5e4), max_shift=0.0, pixel_size=None, seed=0,
                     dtype=np.float32, batch_size=1024, overwrite=False):
    """Simulate a particle data set and write it in RELION form with its ground truth.

    Writes ``out_dir/particles.star`` and the stack ``out_dir/Particles/particles.mrcs``
    (through
    :meth:`ImageSource.save <classavg.sources.base.ImageSource.save>`, i.e.
    :func:`classavg.io.relion.save_source`) and ``out_dir/ground_truth.npz``
    (:meth:`Simulation.save_ground_truth`).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Output folder (created when missing).
    n, L : int
        Number of images and image size in pixels.
    snr, volume, ctf, n_defocus_groups, defocus_range, max_shift, pixel_size, seed, dtype
        As for :class:`Simulation`.
    batch_size : int, optional
        Images rendered and written at a time (bounds the memory).
    overwrite : bool, optional
        Replace existing outputs (default False: FileExistsError before any work).

    Returns
    -------
    Simulation
        The simulated source (its ground truth is also in ``ground_truth.npz``).
    """
    out = Path(out_dir)
    star, truth = out / "particles.star", out / "ground_truth.npz"
    stack = out / STACK_NAME
    if not overwrite:
        for p in (star, stack, truth):
            if p.exists():
                raise FileExistsError(f"output file {str(p)!r} exists; pass overwrite=True "
                                      "(--overwrite on the command line)")
    sim = Simulation(L, n, volume=volume, snr=snr, ctf=ctf, n_defocus_groups=n_defocus_groups,
                     defocus_range=defocus_range, max_shift=max_shift, pixel_size=pixel_size,
                     seed=seed, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("simulating %d images of %d px into %s", n, L, out)
    from ..io.relion import save_source     # io reads/writes sources (one layer)

    save_source(sim, star, stack_name=STACK_NAME, batch_size=batch_size, overwrite=overwrite)
    sim.save_ground_truth(truth, overwrite=overwrite)
    return sim
