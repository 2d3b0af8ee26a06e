r"""Mirror, shift and rotate images exactly in the polar Fourier domain of a basis.

Part of the transform helpers of :mod:`classavg.averaging._transform` (the alignment
convention is described there).  :class:`PolarTransformer` is an exact alternative to the
member transformer, working on the Fourier transform of the images on the polar grid of the
basis, where all three operations are cheap:

* with ``F(w) = sum_x f(x) exp(i w . x)`` (the sign of :class:`FourierBesselBasis2D`),
  a shift by ``s`` multiplies ``F`` by ``exp(i w . s)``;
* the mirror maps ``F(rho, phi)`` to ``F(rho, -phi)``; in angular frequency ``k`` it is
  ``g_k -> (-1)^k conj(g_k)`` (the Fourier-Bessel coefficients are conjugated);
* a rotation by ``c`` multiplies the angular Fourier coefficient ``g_k(rho)`` by
  ``exp(-i k c)``.

One NUFFT per *distinct* image gives its polar samples; each member then costs one phase
multiplication, one FFT over the angle and a small radial interpolation into Fourier-Bessel
coefficients.  (At L = 64 the NUFFT makes it slower than the dense route; it is kept for
polar-domain algorithms and as an independent check.)  Its coefficients of a shifted image are
the pixel sums ``sum_x f(x) conj(psi_kq(x + s))`` (the basis functions sampled at shifted
points), which agree with ``expand(shift_images(f, s))`` exactly for integer shifts and to the
accuracy of the pixel quadrature (~1e-6 for smooth images) for sub-pixel ones.

Masking: as in :meth:`FourierBesselBasis2D.expand`, images are cut to the disk of radius
``L / 2`` *before* they are shifted, so nothing from the box corners enters the disk.
"""

from __future__ import annotations

import finufft
import numpy as np
import scipy.fft

from .._grid import disk_mask
from ..basis._bessel import barycentric_matrix, chebyshev_nodes

__all__ = ["PolarTransformer"]


class PolarTransformer:
    r"""Mirror, shift and rotate many images exactly in the polar Fourier domain of a basis.

    Uses the polar grid of a :class:`~classavg.basis.FourierBesselBasis2D` (``basis.n_r``
    Chebyshev radii on ``[0, bandlimit * pi]`` and ``basis.n_phi`` equispaced angles, of which
    only the half circle ``phi < pi`` is stored: ``F(-w) = conj F(w)`` for real images).

    Pipeline (see the module docstring)::

        H = polar(images)                       # (n, n_r, n_phi // 2), one NUFFT per image
        g = angular(H[idx], shifts, refl)       # (n', n_r, kmax + 1), shifted, mirrored
        g = rotate_angular(g, rotations)        # times exp(-i k rotation)
        a = coefficients(g)                     # (n', count) Fourier-Bessel coefficients

    ``coefficients(angular(polar(f)))`` equals ``basis.expand(f)``.

    Parameters
    ----------
    basis : FourierBesselBasis2D
    eps : float, optional
        NUFFT tolerance (default ``basis.eps``).
    chunk : int, optional
        Images per NUFFT / FFT call; bounds the work memory (default 256).
    """

    def __init__(self, basis, *, eps=None, chunk=256):
        self.basis = basis
        self.L = basis.L
        self.dtype = np.dtype(basis.dtype)
        self.complex_dtype = np.result_type(self.dtype, np.complex64)
        self.eps = float(eps) if eps is not None else float(basis.eps)
        self.chunk = int(chunk)
        self.n_r = int(basis.n_r)
        self.n_phi = int(basis.n_phi)
        self.n_half = self.n_phi // 2
        self.kmax = int(basis.kmax)
        rho_max = basis.bandlimit * np.pi
        rho, w = chebyshev_nodes(self.n_r, 0.0, rho_max)
        self.rho = rho
        self.phi = 2 * np.pi * np.arange(self.n_half) / self.n_phi
        self._wy = (rho[:, None] * np.sin(self.phi)[None, :]).ravel()
        self._wx = (rho[:, None] * np.cos(self.phi)[None, :]).ravel()
        # Radial step: per angular frequency k, (n_r, n_q(k)), with the (-i)^k phase and the
        # basis norms folded in (the same matrices as FourierBesselBasis2D.expand).
        B = barycentric_matrix(rho, w, basis.zeros / basis.radius)
        phase = (-1j) ** (basis.k % 4)
        fwd = (basis.norms * phase)[:, None] * B
        self._fwd = [np.ascontiguousarray(fwd[s].T.astype(self.complex_dtype))
                     for s in basis.k_slices]
        self._kvec = np.arange(self.kmax + 1)
        self._ksign = np.where(self._kvec % 2 == 0, 1.0, -1.0).astype(self.dtype)
        self._mask = disk_mask(self.L, basis.radius)
        self._plans = {}

    def __getstate__(self):
        # finufft plans are not picklable (Dask workers rebuild them on first use).
        state = self.__dict__.copy()
        state["_plans"] = {}
        return state

    # -- NUFFT -------------------------------------------------------------------------------
    def _plan(self, n_trans):
        plan = self._plans.get(n_trans)
        if plan is None:
            plan = finufft.Plan(2, (self.L, self.L), n_trans=n_trans, eps=self.eps, isign=1,
                                dtype=self.complex_dtype.name)
            plan.setpts(self._wy.astype(self.dtype), self._wx.astype(self.dtype))
            if len(self._plans) > 3:
                self._plans.clear()
            self._plans[n_trans] = plan
        return plan

    def polar(self, images):
        """Fourier transform of the disk-masked images on the half polar grid.

        Parameters
        ----------
        images : ndarray, shape (n, L, L)

        Returns
        -------
        ndarray, complex, shape (n, n_r, n_phi // 2)
            ``H[i, r, j] = sum_x f_i(x) exp(i w_rj . x)``, ``w_rj = rho_r (cos phi_j, sin phi_j)``.
        """
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (self.L, self.L):
            raise ValueError(f"images must have shape (n, {self.L}, {self.L}), "
                             f"got {images.shape}")
        n = images.shape[0]
        out = np.empty((n, self.n_r, self.n_half), dtype=self.complex_dtype)
        for s in range(0, n, self.chunk):
            f = images[s:s + self.chunk]
            fm = np.where(self._mask, f, 0).astype(self.complex_dtype)
            out[s:s + f.shape[0]] = self._plan(f.shape[0]).execute(fm).reshape(
                f.shape[0], self.n_r, self.n_half)
        return out

    # -- per-member operations -----------------------------------------------------------------
    def shift_phase(self, shifts):
        """``exp(i w . s)`` on the half polar grid, shape (n, n_r, n_phi // 2).

        Parameters
        ----------
        shifts : array_like, shape (n, 2)
            ``(x, y)`` in pixels.
        """
        s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
        a = (s[:, 0:1] * np.cos(self.phi) + s[:, 1:2] * np.sin(self.phi)).astype(self.dtype)
        arg = self.rho.astype(self.dtype)[None, :, None] * a[:, None, :]
        out = np.empty(arg.shape, dtype=self.complex_dtype)
        np.cos(arg, out=out.real)
        np.sin(arg, out=out.imag)
        return out

    def angular(self, H, shifts=None, refl=None):
        """Angular Fourier coefficients ``g_k(rho_r)``, k = 0..kmax, of mirrored, shifted images.

        Parameters
        ----------
        H : ndarray, complex, shape (n, n_r, n_phi // 2)
            Output of :meth:`polar` (rows may repeat an image).
        shifts : array_like, shape (n, 2), optional
            ``(x, y)`` pixels, applied after the mirror.
        refl : array_like of bool, shape (n,), optional
            Mirror flags (applied first).

        Returns
        -------
        ndarray, complex, shape (n, n_r, kmax + 1)
        """
        n = H.shape[0]
        out = np.empty((n, self.n_r, self.kmax + 1), dtype=self.complex_dtype)
        if refl is not None:
            refl = np.broadcast_to(np.asarray(refl, dtype=bool), (n,))
        if shifts is not None:
            shifts = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (n, 2))
        for s in range(0, n, self.chunk):
            h = H[s:s + self.chunk]
            if shifts is not None:
                sh = shifts[s:s + self.chunk]
                if refl is not None:
                    # mirror then shift by (sx, sy) == shift by (sx, -sy) then mirror
                    sh = np.where(refl[s:s + self.chunk, None], sh * [1.0, -1.0], sh)
                h = h * self.shift_phase(sh)
            G = np.concatenate([h, np.conj(h)], axis=2)            # F(-w) = conj F(w)
            g = scipy.fft.fft(G, axis=2, workers=-1)[:, :, :self.kmax + 1]
            g *= 1.0 / self.n_phi
            if refl is not None:
                r = refl[s:s + self.chunk]
                if r.any():
                    g[r] = np.conj(g[r]) * self._ksign
            out[s:s + h.shape[0]] = g
        return out

    def rotate_angular(self, g, rotations):
        """Rotate counter-clockwise: ``g_k * exp(-i k rotation)``; ``rotations`` (n,) radians."""
        rot = np.asarray(rotations, dtype=np.float64).reshape(-1)
        return g * np.exp(-1j * np.outer(rot, self._kvec)).astype(
            self.complex_dtype)[:, None, :]

    def coefficients(self, g):
        """Fourier-Bessel coefficients (n, count) from angular coefficients (n, n_r, kmax+1)."""
        n = g.shape[0]
        out = np.empty((n, self.basis.count), dtype=self.complex_dtype)
        for k, s in enumerate(self.basis.k_slices):
            out[:, s] = g[:, :, k] @ self._fwd[k]
        return out

    def expand(self, images):
        """``basis.expand(images)`` through the polar grid, (n, count)."""
        return self.coefficients(self.angular(self.polar(images)))

    # -- the workhorse -------------------------------------------------------------------------
    def transform(self, H, index, refl, shifts, rotations, *, weights=None):
        """Fourier-Bessel coefficients of transformed members, or their weighted sums.

        Parameters
        ----------
        H : ndarray, complex, shape (u, n_r, n_phi // 2)
            Polar samples of the distinct images (:meth:`polar`).
        index : ndarray of int, shape (k, m)
            Row of ``H`` of every member.
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
        rotations = np.broadcast_to(np.asarray(rotations, dtype=np.float64), (k, m)).reshape(-1)
        flat = index.reshape(-1)
        if weights is None:
            out = np.empty((k * m, self.basis.count), dtype=self.complex_dtype)
        else:
            w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (k, m)).reshape(-1)
            acc = np.zeros((k, self.n_r, self.kmax + 1), dtype=self.complex_dtype)
            cls = np.repeat(np.arange(k), m)
        # Whole classes per chunk keep the weighted sums local.
        step = max(1, self.chunk // m) * m
        for s in range(0, k * m, step):
            sl = slice(s, s + step)
            g = self.angular(H[flat[sl]], shifts[sl], refl[sl])
            g = self.rotate_angular(g, rotations[sl])
            if weights is None:
                out[sl] = self.coefficients(g)
            else:
                g *= w[sl, None, None].astype(self.dtype)
                c = cls[sl]
                acc[c[0]:c[-1] + 1] += g.reshape(-1, m, self.n_r, self.kmax + 1).sum(axis=1)
        if weights is None:
            return out.reshape(k, m, self.basis.count)
        return self.coefficients(acc)
