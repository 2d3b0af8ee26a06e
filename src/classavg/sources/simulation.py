"""Simulated particle images with known ground truth.

:class:`Simulation` is an :class:`~classavg.sources.base.ImageSource` of projections of a 3D
volume at random orientations, shifted, multiplied by a CTF, varied in amplitude and background
and corrupted by white or coloured Gaussian noise, optionally mixed with junk.  It keeps the
truth for every image (rotation, viewing direction, in-plane angle, offset, CTF, clean
projection, kind), which the accuracy tests and benchmarks of ``classavg.metrics`` compare
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
translated by ``+o_i``.  The image is then
``c a_i Y_i + background_i + noise_i`` (:mod:`classavg.sources._corruption`: contrast sign,
amplitude, offset and gradient).  The noise (:mod:`classavg.sources.noise`, white or coloured by
a radial power spectrum) has the total variance ``noise_variance = signal_variance / snr``,
where ``signal_variance`` is the pixel variance of ``a_i Y_i`` for particle images (junk
excluded), averaged over the first ``min(n, 512)`` images (estimated once).  A fraction
``junk`` of the images are junk (:mod:`classavg.sources.junk`); :attr:`kinds` records each
image's kind ("particle" or a junk kind).

Volumes and orientation (``docs/conventions.md``)
-------------------------------------------------
A voxel volume is indexed ``[z, y, x]`` (mrcfile's order for a map with ``mapc, mapr, maps =
1, 2, 3``; other axis orders are undone by :func:`~classavg.sources.volume.load_volume`) with
its centre at voxel ``L0 // 2``; images are ``[y, x]`` with the centre at ``L // 2``.  The
identity rotation projects along ``z``: ``image[y, x] = sum_z vol[z, y, x]``.  ``R`` maps image
coordinates to volume coordinates, so a feature at volume point ``p`` appears at image point
``(R^T p)[:2]``.  The Euler angles (``rlnAngleRot/Tilt/Psi``) are RELION's: RELION's matrix
``A`` is ``R^T``, and ``relion_project --rot --tilt --psi`` gives the same image (tested).  A
map with a voxel size in its header (or a shipped molecule, :mod:`classavg.sources.molecules`)
is resampled to the image grid: without ``pixel_size`` the image covers the map's box
(``pixel_size = voxel_size L0 / L``); with it, physical sizes are kept (a Fourier crop or pad,
``_projection._map_to_grid``).

Randomness
----------
Everything derives from one integer ``seed`` through independent
:class:`numpy.random.SeedSequence` streams (``spawn_key`` 0: rotations, 1: offsets, 2: CTF
astigmatism, ``(3, i)``: the noise of image ``i``, 4: amplitudes, 5: backgrounds, 6: kinds,
``(7, i)``: the junk geometry of image ``i``), so image ``i`` is the same whichever batch it is
requested in, and ``Simulation(L, n1, seed=s)`` and ``Simulation(L, n2, seed=s)`` share their
first ``min(n1, n2)`` rotations.

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
import scipy.fft as sfft

from .._validation import check_choice, check_float, check_int, check_random_state
from . import junk as _junk
from ._corruption import background_images, draw_amplitudes, draw_background
from ._dataset import STACK_NAME, dataset_paths, write_dataset
from ._ground_truth import ground_truth_arrays, load_ground_truth, write_ground_truth
from ._projection import (_STREAM_NOISE, _ctf_table, _draw_poses, _nufft_slices,
                          _prepare_volume, _relion_metadata, _rfft_ctf, euler_zyz)
from .base import ImageSource
from .noise import noise_filter, noise_images, requested_psd, resolve_noise

__all__ = ["Simulation", "simulate_dataset", "load_ground_truth", "euler_zyz",
           "DEFAULT_BOX_SIZE"]

logger = logging.getLogger(__name__)

#: Physical box size (Angstrom) that sets the default pixel size ``DEFAULT_BOX_SIZE / L``, so
#: that the CTF looks the same at every ``L`` (4 A/pixel at ``L = 64``).
DEFAULT_BOX_SIZE = 256.0


_SNR_SUBSET = 512          # images used to estimate the signal variance
_CHUNK_PIXELS = 2 ** 21    # pixels rendered at a time (512 images of 64 x 64; bounds memory)


class Simulation(ImageSource):
    """Projections of a 3D volume at random orientations, with CTF, shifts, noise and junk.

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
        with its centre at voxel ``L0 // 2`` (Fourier-cropped or padded to ``L^3``: the image
        covers its box), the name of a shipped molecule (``"emd-11007"``, ``"emd-3488"``; a name
        wins over a file of that name;
        :mod:`~classavg.sources.molecules`) or the path of an MRC map (voxel size from the
        header; resampled to ``pixel_size`` when given, module docstring).
    snr : float, optional
        Signal-to-noise ratio ``signal_variance / noise_variance`` (whole images, particles,
        averaged over images).  None (default): noise-free images.
    noise : str, callable, array_like or os.PathLike, optional
        Noise spectrum (:mod:`classavg.sources.noise`): "white" (default), "ice" (low
        frequencies 3x noisier), a callable ``P(k)``, a radial PSD array or a file.
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
    amplitude_spread : float, optional
        Per-image amplitude factors uniform in ``[1 - s, 1 + s]`` (default 0: all 1).
    background_offset, background_gradient : float, optional
        Per-image background offset (standard deviation) and largest linear gradient (ice
        thickness), in units of the signal standard deviation (default 0;
        :mod:`classavg.sources._corruption`).
    contrast : {"bright", "dark"}, optional
        "bright" (default): RELION's convention, particles brighter than the background
        (``CTF(0) = +Q``); "dark": the signal negated, as in raw micrographs.
    junk : float, optional
        Fraction of junk images in [0, 1] (default 0), exactly ``round(junk n)`` of them.
    junk_kinds : dict, optional
        Relative weights of the junk kinds (:data:`classavg.sources.junk.JUNK_KINDS`); default
        all kinds in equal parts.
    rotations : array_like, shape (n, 3, 3), optional
        Explicit rotations; default: ``n`` Haar-random (uniform) rotations.
    seed : int or numpy.random.Generator, optional
        Seed of every random component (default 0).  None draws a fresh seed, recorded in
        :attr:`seed`.
    dtype : numpy dtype, optional
        float32 (default) or float64 images.  float32 renders in single precision.
    projection : {"auto", "analytic", "nufft"}, optional
        "auto" (default): closed form for a
        :class:`~classavg.sources.volume.GaussianBlobVolume`, NUFFT for arrays; "nufft" samples
        a blob volume on the ``L^3`` grid first.
    nufft_eps : float, optional
        Requested NUFFT accuracy; default 1e-6 (float32) or 1e-10 (float64).
    ctf_boundary : {"periodic", "crop"}, optional
        How a particle gets its CTF.  "periodic" (default, as ASPIRE and earlier classavg):
        multiplied in the box's own Fourier transform, so signal the CTF delocalises beyond
        the box edge wraps round to the other side.  "crop": applied on a zero-padded canvas
        twice the box, then the box cropped, as the junk images get it and as extraction from
        a micrograph does (the delocalised signal leaves the box).  The two differ where the
        delocalisation ``lambda dF / d`` exceeds the box margin: at 1.64 A/px (EMD-3488) and
        2.5 um defocus about 150 A, more than the 105 A box (BENCHMARKS.md, "Junk rejection").

    Notes
    -----
    ``metadata`` holds the RELION columns ``rlnAngleRot/Tilt/Psi`` (degrees, see
    :func:`euler_zyz`), ``rlnOriginXAngst/YAngst = -offset * pixel_size`` and, with a CTF,
    ``rlnDefocusU/V/Angle``, ``rlnVoltage``, ``rlnSphericalAberration``,
    ``rlnAmplitudeContrast``.

    Examples
    --------
    >>> sim = Simulation(64, 1000, volume="emd-11007", snr=0.1, ctf=True, max_shift=3, seed=1)
    >>> noisy = sim.images[:100]                       # (100, 64, 64) float32
    >>> truth = sim.clean_images(np.arange(100))       # unshifted, CTF-free projections
    """

    def __init__(self, L, n, *, volume=None, snr=None, noise="white", offsets=None,
                 max_shift=0.0, ctf=None, n_defocus_groups=7, defocus_range=(1.0e4, 2.5e4),
                 pixel_size=None, amplitude_spread=0.0, background_offset=0.0,
                 background_gradient=0.0, contrast="bright", junk=0.0, junk_kinds=None,
                 rotations=None, seed=0, dtype=np.float32, projection="auto", nufft_eps=None,
                 ctf_boundary="periodic"):
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
        self._contrast = check_choice("contrast", contrast, ("bright", "dark"))
        self._ctf_boundary = check_choice("ctf_boundary", ctf_boundary, ("periodic", "crop"))
        psd, self._noise_name = resolve_noise(noise)
        self._psd, self._noise_filter = psd, noise_filter(psd, L)
        if pixel_size is not None:
            pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
        self._blobs, self._voxels, self._volume_name, pixel_size, self._scale = \
            _prepare_volume(volume, L, projection, pixel_size)
        pixel_size = DEFAULT_BOX_SIZE / L if pixel_size is None else pixel_size
        dt = np.dtype(dtype)
        if nufft_eps is None:
            nufft_eps = 1e-6 if dt == np.float32 else 1e-10
        self._nufft_eps = check_float("nufft_eps", nufft_eps, min=0.0, min_inclusive=False)

        # -- poses, corruptions, kinds -------------------------------------------------------
        rot, off = _draw_poses(n, self._seed, rotations, offsets, max_shift)
        self._ctf = _ctf_table(ctf, n, n_defocus_groups, defocus_range, self._seed)
        self._amplitudes = draw_amplitudes(self._seed, n, amplitude_spread)
        self._bg_offsets, self._bg_gradients = draw_background(
            self._seed, n, background_offset, background_gradient)
        frac, weights = _junk.check_junk(junk, junk_kinds)
        self._kinds = (_junk.draw_kinds(self._seed, n, frac, weights) if frac > 0 else
                       np.full(n, "particle", dtype=f"U{max(map(len, _junk.KINDS))}"))
        self._junk, self._density = {}, None
        if frac > 0:                            # off-centre junk moves its offset in ``off``
            vox = self._voxels if self._voxels is not None else self._blobs.to_array(L)
            self._junk, self._density = _junk.draw_all(self._seed, self._kinds, L, off, vox,
                                                       self._scale)
        for a in (rot, off, self._amplitudes, self._bg_offsets, self._bg_gradients, self._kinds):
            a.flags.writeable = False
        self._rotations, self._offsets = rot, off
        self._euler = euler_zyz(rot)
        self._euler.flags.writeable = False
        self._signal_variance = None
        self._noise_variance = None if self._snr is not None else 0.0

        super().__init__(n=n, L=L, dtype=dt, pixel_size=pixel_size,
                         metadata=_relion_metadata(self._euler, off, pixel_size, self._ctf))
        logger.debug("created %r (volume %s, snr %s, noise %s, ctf %s, junk %g, seed %d)", self,
                     self._volume_name, self._snr, self._noise_name, self._ctf is not None,
                     frac, self._seed)

    # -- ground truth --------------------------------------------------------------------------
    seed = property(lambda self: self._seed, doc="The integer seed of every random component.")
    snr = property(lambda self: self._snr, doc="Requested signal-to-noise ratio (None: none).")
    contrast = property(lambda self: self._contrast, doc='"bright" or "dark".')
    noise = property(lambda self: self._noise_name, doc="Description of the noise spectrum.")
    kinds = property(lambda self: self._kinds,
                     doc='Kind of each image, (n,) str: "particle" or a junk kind.')
    amplitudes = property(lambda self: self._amplitudes, doc="Amplitude factors, (n,).")
    background_offsets = property(lambda self: self._bg_offsets,
                                  doc="Background offsets, (n,), signal sd units.")
    background_gradients = property(lambda self: self._bg_gradients,
                                    doc="Background gradients (x, y), (n, 2), signal sd units.")

    volume = property(lambda self: self._blobs if self._blobs is not None else self._voxels,
                      doc="The GaussianBlobVolume, or the voxel array used (on the image grid "
                          "unless resampled to a given pixel size).")
    rotations = property(lambda self: self._rotations, doc="Rotation matrices, (n, 3, 3): "
                         "``I(x, y) = integral vol(R @ (x, y, z)) dz``.")
    viewing_directions = property(lambda self: self._rotations[:, :, 2], doc="Projection "
                                  "axes ``R[:, :, 2]``, (n, 3), unit vectors (volume frame).")
    euler_angles = property(lambda self: self._euler, doc="ZYZ (RELION) Euler angles ``(rot, "
                            "tilt, psi)``, (n, 3), radians (:func:`euler_zyz`).")
    offsets = property(lambda self: self._offsets, doc="Particle offsets ``(x, y)``, (n, 2), "
                       "pixels: image = projection shifted by offset.")

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
    def signal_variance(self) -> float:
        """Pixel variance of the amplitude-scaled clean shifted CTF-applied particle images,
        averaged over the first ``min(n, 512)`` images (rendered as particles)."""
        if self._signal_variance is None:
            m = min(self.n, _SNR_SUBSET)
            clean = self._render(np.arange(m), shifted=True, ctf=True, particles_only=True)
            var = np.var(clean, axis=(1, 2), dtype=np.float64) * self._amplitudes[:m] ** 2
            self._signal_variance = float(np.mean(var))
        return self._signal_variance

    @property
    def noise_variance(self) -> float:
        """Total noise variance per pixel, ``signal_variance / snr`` (0.0 when noise-free)."""
        if self._noise_variance is None:
            self._noise_variance = self.signal_variance / self._snr
            logger.debug("signal variance %.4g -> noise variance %.4g", self.signal_variance,
                         self._noise_variance)
        return self._noise_variance

    @property
    def noise_psd(self) -> np.ndarray:
        """Requested noise power per ring ``round(|k| L)`` (:func:`noise.requested_psd`)."""
        return requested_psd(self._psd, self.L, self.noise_variance)

    @property
    def defocus(self):
        """Mean defocus ``(dU + dV) / 2`` per image, (n,), Angstrom; None without a CTF."""
        if self._ctf is None:
            return None
        return 0.5 * (self._ctf["defocus_u"] + self._ctf["defocus_v"])

    def clean_images(self, indices=None, *, shifted=False, ctf=False) -> np.ndarray:
        """Noise-free images, before amplitude, contrast and background.

        Parameters
        ----------
        indices : slice, int or array_like of int, optional
            Which images (default: all).
        shifted : bool, optional
            Translate by the offsets (default False: centred projections).  Junk images are
            always as composed (:mod:`~classavg.sources.junk`).
        ctf : bool, optional
            Apply the CTF (default False; ignored when the simulation has none).

        Returns
        -------
        ndarray, shape (k, L, L)
            With the defaults, the clean projections that metrics compare class averages
            against; ``images = c a_i clean_images(shifted=True, ctf=True) + background +
            noise`` (module docstring).
        """
        idx = np.atleast_1d(np.arange(self.n)[slice(None) if indices is None else indices])
        return self._render(idx, shifted=shifted, ctf=ctf)

    # -- rendering -----------------------------------------------------------------------------
    def _images(self, indices):
        indices = np.asarray(indices)
        out = self._render(indices, shifted=True, ctf=True)
        sign = -1.0 if self._contrast == "dark" else 1.0
        out *= (sign * self._amplitudes[indices]).astype(self.dtype)[:, None, None]
        if self._bg_offsets.any() or self._bg_gradients.any():
            out += np.sqrt(self.signal_variance) * background_images(
                self._bg_offsets[indices], self._bg_gradients[indices], self.L, self.dtype)
        sd = float(np.sqrt(self.noise_variance))
        if sd > 0:
            out += noise_images(self._seed, _STREAM_NOISE, indices, self.L, sd,
                                self._noise_filter, self.dtype)
        return out

    def _render(self, indices, *, shifted, ctf, particles_only=False):
        """Clean images at ``indices`` (1-D int array), (k, L, L) of ``self.dtype``."""
        L = self.L
        out = np.empty((len(indices), L, L), dtype=self.dtype)
        chunk = max(1, _CHUNK_PIXELS // (L * L))
        for start in range(0, len(indices), chunk):
            idx = np.asarray(indices[start:start + chunk])
            junk = [] if particles_only else [j for j, i in enumerate(idx) if int(i) in self._junk]
            extra = [self._junk[int(idx[j])]["extra"] for j in junk]
            f_all = self._slices(np.concatenate([self._rotations[idx]] + extra))
            f = f_all[:len(idx)].copy() if junk else f_all
            if shifted:
                off = self._offsets[idx]
                ky, kx = np.fft.fftfreq(L), np.fft.rfftfreq(L)
                f *= np.exp(-2j * np.pi * off[:, 1, None] * ky)[:, :, None].astype(f.dtype)
                f *= np.exp(-2j * np.pi * off[:, 0, None] * kx)[:, None, :].astype(f.dtype)
            if ctf and self._ctf is not None and self._ctf_boundary == "crop":
                out[start:start + len(idx)] = self._crop_ctf(
                    np.fft.fftshift(sfft.irfft2(f, s=(L, L), workers=-1), axes=(1, 2)), idx)
            else:
                if ctf and self._ctf is not None:
                    f *= _rfft_ctf(self._ctf, idx, L, self.pixel_size, f.real.dtype)
                img = sfft.irfft2(f, s=(L, L), workers=-1)
                out[start:start + len(idx)] = np.fft.fftshift(img, axes=(1, 2))
            if junk:
                use_ctf = ctf and self._ctf is not None
                out[start + np.asarray(junk)] = _junk.compose_batch(
                    self._junk, idx, junk, f_all, L, self._density,
                    ctf=(lambda i, M: _rfft_ctf(self._ctf, [i], M, self.pixel_size,
                                                np.float64)[0]) if use_ctf else None)
        return out

    def _crop_ctf(self, images, idx):
        """``ctf_boundary="crop"``: the CTF of images ``idx`` applied to the (k, L, L) centred
        projections on a zero-padded ``2L`` canvas, then the box cropped, as the junk gets it
        (:func:`~classavg.sources.junk.compose_batch`): signal delocalised beyond the box is
        lost instead of wrapping round."""
        h = _rfft_ctf(self._ctf, idx, 2 * self.L, self.pixel_size, np.float64)
        return _junk.ctf_in_box(images, h)

    def _slices(self, rot):
        """Fourier transforms of the clean projections, rfft layout (k, L, L // 2 + 1)."""
        cdt = np.complex64 if self.dtype == np.float32 else np.complex128
        if self._voxels is None:
            return self._blobs.central_slices(rot, self.L, dtype=cdt)
        return _nufft_slices(self._voxels, rot, self._nufft_eps, cdt, L=self.L,
                             scale=self._scale)

    # -- ground truth files --------------------------------------------------------------------
    def save_ground_truth(self, path, *, overwrite=False):
        """Write the ground truth to an ``.npz`` file (atomically).

        The fields are listed in :func:`~classavg.sources._ground_truth.ground_truth_arrays`
        (poses, CTF, ``kind`` per image, amplitudes, backgrounds, noise spectrum, SNR, ...).

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
        write_ground_truth(path, ground_truth_arrays(self))
        logger.info("wrote ground truth of %d images to %s", self.n, path)
        return path


def simulate_dataset(out_dir, n, L, *, batch_size=1024, overwrite=False, **options):
    """Simulate a particle data set and write it in RELION form with its ground truth.

    Writes ``out_dir/particles.star`` and the stack ``out_dir/Particles/particles.mrcs``
    (:func:`classavg.io.relion.save_source`) and ``out_dir/ground_truth.npz``
    (:meth:`Simulation.save_ground_truth`).  ``n``, ``L``: number and size (pixels) of the
    images; ``batch_size``: images rendered and written at a time; ``overwrite``: replace
    existing outputs (default False: FileExistsError before any work); ``options``: keyword
    options of :class:`Simulation` (``volume``, ``snr``, ``noise``, ``ctf``, ``junk``, ...).
    Returns the :class:`Simulation`.
    """
    dataset_paths(out_dir, overwrite)
    return write_dataset(Simulation(L, n, **options), out_dir, batch_size=batch_size,
                         overwrite=overwrite)
