r"""Vectorised mirror, shift and rotation of class members (the alignment convention).

Convention (``docs/conventions.md``): the alignment of member j is applied to image j as

1. **mirror** ``y -> -y`` about the centre pixel (when ``refl`` is True),
2. **shift** by ``(x, y)`` pixels: the particle moves by ``+shift``, ``f'(p) = f(p - s)``,
3. **rotate** counter-clockwise by ``rotation`` radians about the centre,
   ``f'(p) = f(Rot(-rotation) p)``.

Three families of helpers
-------------------------
*Pixel helpers* (:func:`mirror_images`, :func:`shift_images`, :func:`rotate_images`,
:func:`transform_images`) act on pixel images: the shift is a Fourier phase shift of the whole
(periodic) box, the rotation is exact in the steerable Fourier-Bessel basis (expand, multiply
by ``exp(-i k angle)``, evaluate), so rotated images are band-limited and zero outside the
disk of radius ``L / 2``.  Simple reference implementations.

*The member transformer* (:class:`MemberTransformer`, used by :func:`transform_members` and
by every aligning averager) works on Fourier-Bessel coefficients: the mirror conjugates them
(``shift(mirror(f), s) = mirror(shift(f, (s_x, -s_y)))``, so the unmirrored image is shifted
and its coefficients conjugated), the shift is a Fourier phase shift of the disk-masked image
before its expansion (skipped for zero shifts, so a member without shift reuses the
coefficients of its image), and the rotation multiplies the coefficients by
``exp(-i k angle)``.  Expansion and synthesis use :class:`~classavg.basis.DenseFBTransform`
-- exact pixel sums by symmetry-folded dense matrix products, ~2.6 M multiply-adds per
64 x 64 image in BLAS calls over chunks of images, 6-7x faster than the NUFFT route at
L = 64 (``benchmarks/expand.py``) -- or the basis' own NUFFT transforms for larger images.

*The polar transformer* (:class:`PolarTransformer`, in :mod:`classavg.averaging._polar`) is
an exact alternative working on the Fourier transform of the images on the polar grid of the
basis, where all three operations are cheap (one NUFFT per distinct image, then one phase
multiplication, one FFT over the angle and a small radial interpolation per member).

Masking: as in :meth:`FourierBesselBasis2D.expand`, images are cut to the disk of radius
``L / 2`` *before* they are shifted, so nothing from the box corners enters the disk.

Stacking domain
---------------
:func:`transform_members` returns Fourier-Bessel coefficients (``output="coefficients"``,
cheap) or pixel images (``output="pixels"``, one basis evaluation per member).  The mean is
the same in both; robust stackers differ (see :mod:`classavg.averaging.stackers`).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

from .._backend import to_host
from .._grid import disk_mask
from ..basis import DenseFBTransform
from ._polar import PolarTransformer

__all__ = [
    "mirror_images",
    "shift_images",
    "rotate_images",
    "transform_images",
    "PolarTransformer",
    "MemberTransformer",
    "transform_members",
]

logger = logging.getLogger(__name__)


def _check_stack(images, name="images"):
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{name} must have shape (..., L, L), got {images.shape}")
    return images


# ---------------------------------------------------------------------------------------------
# Pixel helpers
# ---------------------------------------------------------------------------------------------
def mirror_images(images):
    """Mirror images ``y -> -y`` about the centre pixel ``L // 2``.

    Parameters
    ----------
    images : ndarray, shape (..., L, L)

    Returns
    -------
    ndarray, shape (..., L, L)
        ``out[..., i, :] = images[..., (L - i) % L, :]`` for even ``L`` (row 0, at ``y = -L/2``,
        has no partner inside the box and maps to itself) and ``images[..., ::-1, :]`` for odd
        ``L``.
    """
    images = _check_stack(images)
    L = images.shape[-1]
    if L % 2:
        return images[..., ::-1, :].copy()
    return np.roll(images[..., ::-1, :], 1, axis=-2)


def _phase_1d(L, s):
    """exp(-2 pi i f s) for the FFT frequencies f of length L, shape s.shape + (L,).

    The Nyquist frequency of even ``L`` gets ``cos(pi s)`` (the symmetric, real choice), so
    that the shift of a real image stays real and integer shifts are exact rolls.
    """
    f = np.fft.fftfreq(L)
    ph = np.exp(-2j * np.pi * f * s[..., None])
    if L % 2 == 0:
        ph[..., L // 2] = np.cos(np.pi * s)
    return ph


def shift_images(images, shifts):
    """Translate images by sub-pixel ``shifts`` with a Fourier phase shift.

    Parameters
    ----------
    images : ndarray, shape (..., L, L)
        Real images (the box is treated as periodic).
    shifts : array_like, shape (..., 2) or (2,)
        ``(x, y)`` in pixels, broadcast against ``images.shape[:-2]``; the particle moves by
        ``+shift``: ``out(p) = images(p - shift)``.

    Returns
    -------
    ndarray, shape (..., L, L), dtype of ``images`` (float64 for integer input)
        Integer shifts are exact cyclic rolls.  The phase of the Nyquist frequency of even
        ``L`` is ``cos(pi s)`` (the symmetric, real choice).
    """
    images = _check_stack(images)
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float64)
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.shape[-1:] != (2,):
        raise ValueError(f"shifts must have shape (..., 2), got {shifts.shape}")
    L = images.shape[-1]
    shifts = np.broadcast_to(shifts, images.shape[:-2] + (2,))
    cdt = np.result_type(images.dtype, np.complex64)
    px = _phase_1d(L, shifts[..., 0])[..., :L // 2 + 1].astype(cdt)   # over kx >= 0
    py = _phase_1d(L, shifts[..., 1]).astype(cdt)                      # over ky
    F = scipy.fft.rfft2(images, axes=(-2, -1), workers=-1)
    F *= py[..., :, None]
    F *= px[..., None, :]
    return scipy.fft.irfft2(F, s=(L, L), axes=(-2, -1), workers=-1).astype(images.dtype,
                                                                           copy=False)


def _default_basis(L, dtype, basis):
    from ..basis import FourierBesselBasis2D

    if basis is None:
        return FourierBesselBasis2D(L, dtype=dtype if dtype in (np.float32, np.float64)
                                    else np.float64)
    if basis.L != L:
        raise ValueError(f"basis must be built for L={L}, got a basis for L={basis.L}")
    return basis


def rotate_images(images, angles, basis=None):
    """Rotate images counter-clockwise about the centre pixel, exactly in a steerable basis.

    The images are expanded in the Fourier-Bessel basis, the coefficients multiplied by
    ``exp(-i k angle)`` and the images synthesised again: the result is the band-limited
    projection of the rotated image, zero outside the disk of radius ``L / 2``.

    Parameters
    ----------
    images : ndarray, shape (n, L, L) or (L, L)
    angles : array_like, shape (n,) or scalar
        Radians, counter-clockwise.
    basis : FourierBesselBasis2D, optional
        Built for ``L`` (and the image dtype) when not given.

    Returns
    -------
    ndarray, same shape as ``images``
    """
    images = _check_stack(images)
    basis = _default_basis(images.shape[-1], images.dtype, basis)
    single = images.ndim == 2
    imgs = images[None] if single else images
    n = imgs.shape[0]
    angles = np.broadcast_to(np.asarray(angles, dtype=np.float64), (n,))
    out = basis.evaluate(basis.rotate(basis.expand(imgs), angles))
    return out[0] if single else out


def transform_images(images, refl, shifts, rotations, basis=None):
    """Mirror, shift, then rotate pixel images (the alignment convention), one by one.

    A direct, pixel-domain reference implementation (Fourier phase shift of the periodic box,
    rotation in the Fourier-Bessel basis); :func:`transform_members` does the same faster.

    Parameters
    ----------
    images : ndarray, shape (n, L, L)
    refl : array_like of bool, shape (n,)
    shifts : array_like, shape (n, 2)
        ``(x, y)`` pixels.
    rotations : array_like, shape (n,)
        Radians, counter-clockwise.
    basis : FourierBesselBasis2D, optional

    Returns
    -------
    ndarray, shape (n, L, L)
        Band-limited, zero outside the disk of radius ``L / 2``.
    """
    images = _check_stack(images)
    n = images.shape[0]
    refl = np.broadcast_to(np.asarray(refl, dtype=bool), (n,))
    out = np.where(refl[:, None, None], mirror_images(images), images)
    out = shift_images(out, np.broadcast_to(np.asarray(shifts, dtype=np.float64), (n, 2)))
    return rotate_images(out, rotations, basis=basis)


# ---------------------------------------------------------------------------------------------
# Member transformer (coefficient domain)
# ---------------------------------------------------------------------------------------------
class MemberTransformer:
    """Expand, mirror, shift and rotate class members; the engine of every aligning averager.

    * expansion / synthesis: :class:`~classavg.basis.DenseFBTransform` for
      ``L <= dense_max_L`` (exact pixel sums, fastest at these sizes), else the NUFFT
      transforms of the basis;
    * mirror then shift: the *unmirrored* image is shifted by ``(s_x, -s_y)`` (a Fourier phase
      shift of the box, :func:`shift_images`) and expanded, and its coefficients conjugated
      (``shift(mirror(f), s) == mirror(shift(f, (s_x, -s_y)))``);
    * rotation: coefficients times ``exp(-i k rotation)``.

    Images are cut to the disk of radius ``L / 2`` before they are shifted (as
    :meth:`FourierBesselBasis2D.expand` ignores the pixels outside it), so nothing from the
    box corners is shifted into the disk; the box is periodic for the shift, which matters
    only for content within ``|shift|`` of the disk edge.

    Parameters
    ----------
    basis : FourierBesselBasis2D
    method : {"auto", "dense", "nufft"}, optional
        Expansion method (default "auto": dense for ``L <= dense_max_L``).
    dense_max_L : int, optional
        Default 128.
    chunk : int, optional
        Members transformed at once (bounds the work memory; default 1024).
    device : {"cpu", "cuda"}, optional
        "cuda" runs the expansion chosen by ``method`` on the GPU (the dense transform, or
        :meth:`FourierBesselBasis2D.expand` with cuFINUFFT); the coefficients come back as
        numpy arrays.  Synthesis stays on the CPU.
    """

    def __init__(self, basis, *, method="auto", dense_max_L=128, chunk=1024, device="cpu"):
        if method not in ("auto", "dense", "nufft"):
            raise ValueError(f"method must be one of 'auto', 'dense', 'nufft', got {method!r}")
        self.basis = basis
        self.L = basis.L
        self.chunk = int(chunk)
        self.device = device
        use_dense = method == "dense" or (method == "auto" and basis.L <= dense_max_L)
        self.method = "dense" if use_dense else "nufft"
        self._dense = DenseFBTransform(basis) if use_dense else None
        self._mask = disk_mask(basis.L, basis.radius)
        self.dtype = np.dtype(basis.dtype)
        self.complex_dtype = np.result_type(self.dtype, np.complex64)

    def expand(self, images):
        """Fourier-Bessel coefficients (n, count) of images (n, L, L), a numpy array."""
        if self._dense is not None:
            return to_host(self._dense.expand(images, device=self.device))
        return self.basis.expand(images, device=self.device)

    def evaluate(self, coef):
        """Images (n, L, L) from coefficients (n, count)."""
        if self._dense is not None:
            return self._dense.evaluate(coef)
        return self.basis.evaluate(coef)

    def shifted_coefficients(self, images, shifts, refl=None):
        """Coefficients of ``shift(mirror(images) if refl, shifts)``, (n, count).

        Parameters
        ----------
        images : ndarray, shape (n, L, L)
        shifts : array_like, shape (n, 2)
            ``(x, y)`` pixels, applied after the mirror.
        refl : array_like of bool, shape (n,), optional
        """
        images = np.asarray(images)
        n = images.shape[0]
        sh = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (n, 2))
        if refl is not None:
            refl = np.broadcast_to(np.asarray(refl, dtype=bool), (n,))
            sh = np.where(refl[:, None], sh * np.array([1.0, -1.0]), sh)
        f = np.where(self._mask, images, 0).astype(self.dtype, copy=False)
        coef = self.expand(shift_images(f, sh))
        if refl is not None and refl.any():
            coef[refl] = np.conj(coef[refl])
        return coef

    def rotate(self, coef, rotations):
        """Coefficients (n, count) rotated counter-clockwise by ``rotations`` (radians, (n,)).

        Same as :meth:`FourierBesselBasis2D.rotate`, with one complex exponential per angular
        frequency (not per coefficient).
        """
        coef = np.asarray(coef)
        rot = np.broadcast_to(np.asarray(rotations, dtype=np.float64), coef.shape[:-1])
        table = np.exp(-1j * rot[..., None] * np.arange(self.basis.kmax + 1))
        return coef * table.astype(coef.dtype, copy=False)[..., self.basis.k]

    def transform(self, images, index, refl, shifts, rotations, *, weights=None):
        """Coefficients of transformed members (mirror -> shift -> rotate) or weighted sums.

        Parameters
        ----------
        images : ndarray, shape (u, L, L)
            Pool of distinct images.
        index : ndarray of int, shape (k, m)
            ``images[index[c, j]]`` is member j of class c.
        refl : ndarray of bool, shape (k, m)
        shifts : ndarray, shape (k, m, 2)
            ``(x, y)`` pixels (after mirroring).
        rotations : ndarray, shape (k, m)
            Radians counter-clockwise (applied last).
        weights : ndarray, shape (k, m), optional
            When given, return ``sum_j weights[c, j] * member[c, j]`` per class.

        Returns
        -------
        ndarray, complex, shape (k, m, count), or (k, count) with ``weights``
        """
        index = np.asarray(index)
        k, m = index.shape
        refl = np.broadcast_to(np.asarray(refl, dtype=bool), (k, m)).reshape(-1)
        shifts = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (k, m, 2)).reshape(-1, 2)
        rot = np.broadcast_to(np.asarray(rotations, dtype=np.float64), (k, m)).reshape(-1)
        flat = index.reshape(-1)
        count = self.basis.count
        if weights is None:
            out = np.empty((k * m, count), dtype=self.complex_dtype)
        else:
            w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (k, m))
            out = np.zeros((k, count), dtype=self.complex_dtype)
        step = max(1, self.chunk // m) * m                     # whole classes per chunk
        for s in range(0, k * m, step):
            sl = slice(s, s + step)
            coef = self.shifted_coefficients(images[flat[sl]], shifts[sl], refl[sl])
            coef = self.rotate(coef, rot[sl])
            if weights is None:
                out[sl] = coef
            else:
                c0 = s // m
                nc = coef.shape[0] // m
                out[c0:c0 + nc] = np.einsum("cj,cjq->cq", w[c0:c0 + nc].astype(self.dtype),
                                            coef.reshape(nc, m, count))
        if weights is None:
            return out.reshape(k, m, count)
        return out


def transform_members(images, refl, shifts, rotations, basis, *, index=None,
                      output="coefficients", weights=None, transformer=None):
    """Apply mirror -> shift -> rotation to class members, vectorised.

    Parameters
    ----------
    images : ndarray, shape (u, L, L)
        Pool of member images (e.g. the distinct images of a batch of classes).
    refl : array_like of bool, shape (k, m)
        Mirror flags (``y -> -y`` about the centre), applied first.
    shifts : array_like, shape (k, m, 2)
        ``(x, y)`` in pixels, applied second (the particle moves by ``+shift``).
    rotations : array_like, shape (k, m)
        Counter-clockwise rotation in radians, applied last.
    basis : FourierBesselBasis2D
        The steerable basis (defines the band limit and the output coefficients).
    index : array_like of int, shape (k, m), optional
        ``images[index[c, j]]`` is member j of class c (default: ``images`` is the stack of
        all members in order, ``index = arange(u).reshape(1, u)``).
    output : {"coefficients", "pixels"}, optional
        Fourier-Bessel coefficients (``(k, m, count)``, cheap) or pixel images
        (``(k, m, L, L)``, one basis evaluation per member; band-limited, zero outside the
        disk).
    weights : array_like, shape (k, m), optional
        Return the weighted sums over members instead, ``(k, count)`` or ``(k, L, L)``
        (e.g. ``1 / m`` for the class mean, posterior weights for EM).
    transformer : MemberTransformer, optional
        Reuse a transformer (and its matrices) across calls.

    Returns
    -------
    ndarray
        ``(k, m, count)``, ``(k, m, L, L)``, ``(k, count)`` or ``(k, L, L)``.
    """
    images = _check_stack(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (u, L, L), got {images.shape}")
    if output not in ("coefficients", "pixels"):
        raise ValueError(f"output must be one of 'coefficients', 'pixels', got {output!r}")
    if index is None:
        index = np.arange(images.shape[0]).reshape(1, -1)
    index = np.asarray(index)
    if index.ndim != 2 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must be an integer array of shape (k, m), got {index.shape}")
    tr = transformer if transformer is not None else MemberTransformer(basis)
    coef = tr.transform(images, index, refl, shifts, rotations, weights=weights)
    if output == "coefficients":
        return coef
    flat = coef.reshape(-1, basis.count)
    return tr.evaluate(flat).reshape(coef.shape[:-1] + (basis.L, basis.L))
