"""Steerable Fourier-Bessel basis on the disk with a fast NUFFT-based transform.

Basis functions (pixel units, disk radius ``R = L / 2``, centre ``(L // 2, L // 2)``)::

    psi_kq(r, theta) = N_kq J_k(lam_kq r / R) exp(i k theta),   r < R,   0 outside,

with ``lam_kq`` the q-th positive zero of ``J_k`` and ``N_kq`` making ``psi_kq`` unit-norm on
the disk.  The band limit keeps ``lam_kq < bandlimit * pi * R``: the radial frequency
``lam_kq / (2 pi R)`` stays below ``bandlimit / 2`` cycles per pixel (``bandlimit = 1`` is the
Nyquist frequency).

A real image ``f`` has coefficients ``a_kq = <f, psi_kq>`` (sum over the pixels of the disk)
for ``k >= 0``; negative frequencies follow from ``a_{-k,q} = conj(a_kq)``, so::

    f = sum_q a_0q psi_0q + 2 Re sum_{k > 0, q} a_kq psi_kq .

Steering: rotating the image counter-clockwise by ``alpha`` multiplies ``a_kq`` by
``exp(-i k alpha)``; mirroring it (``y -> -y``) conjugates the coefficients.

Fast transform
--------------
The Jacobi-Anger identity turns every pixel sum against ``J_k(rho r) exp(-i k theta)`` into the
k-th angular Fourier coefficient of the image's Fourier transform on the circle of radius
``rho``::

    sum_x f(x) J_k(rho |x|) exp(-i k theta_x) = (-i)^k / (2 pi) * integral F(rho u(phi)) exp(-i k phi) dphi,
    F(w) = sum_x f(x) exp(i w . x).

``expand`` therefore (1) evaluates ``F`` on a polar grid of Chebyshev radii and equispaced
angles with one batched type-2 NUFFT (finufft), using ``F(-w) = conj F(w)`` to sample only half
the circle, (2) takes an FFT over the angle, and (3) interpolates each angular frequency in the
radius to the Bessel zeros ``lam_kq / R`` (barycentric Chebyshev interpolation, exact to
near machine precision because ``F`` restricted to a ray is band-limited by the disk radius).
``evaluate`` runs the same steps backwards with a type-1 NUFFT.  The cost is O(L^2 log L) for
the NUFFT and FFT plus a small O(L^3) radial step (batched matrix products), as in the fast
Fourier-Bessel expansion of Zhao & Singer and the FLE of Marshall, Mickelin & Singer.

Small bases (``count * L^2`` up to :data:`DENSE_MAX_ENTRIES`, e.g. L = 64 at any band limit)
expand faster as dense matrix products with the basis functions sampled on the pixels (the
definition of ``a_kq``; same values to ~1e-6 in float32), folded by the four-fold symmetry of
the pixel grid (:class:`~classavg.basis.DenseFBTransform`), because BLAS runs at full
speed where the NUFFT pays for spreading and a 4x oversampled FFT per image.  Timings in
BENCHMARKS.md.

References
----------
.. [1] Z. Zhao, A. Singer, "Fourier-Bessel rotational invariant eigenimages", J. Opt. Soc.
   Am. A 30(5), 871-877 (2013).
.. [2] N. F. Marshall, O. Mickelin, A. Singer, "Fast expansion into harmonics on the disk: a
   steerable basis with fast radial convolutions", SIAM J. Sci. Comput. (2023),
   arXiv:2207.13674.
.. [3] A. H. Barnett, J. Magland, L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci. Comput.
   41(5), C479-C504 (2019).
"""

from __future__ import annotations

import logging

import finufft
import numpy as np
import scipy.fft

from .._grid import disk_mask
from .._backend import array_module, fft, to_device, to_host
from .._threads import single_thread_blas
from .._validation import check_choice, check_float, check_int
from ._bessel import barycentric_matrix, bessel_zeros_below, chebyshev_nodes, fb_norms
from .dense import DenseFBTransform

__all__ = ["FourierBesselBasis2D", "DENSE_MAX_ENTRIES"]

logger = logging.getLogger(__name__)

#: ``method="auto"`` expands with a dense matrix when it has at most this many entries
#: (``L^2 x count``; 48 MB in float32).
DENSE_MAX_ENTRIES = 6_000_000


class FourierBesselBasis2D:
    """Steerable Fourier-Bessel basis for L x L images (see the module docstring).

    Parameters
    ----------
    L : int
        Image size in pixels.
    bandlimit : float, optional
        Highest radial frequency kept, as a fraction of the Nyquist frequency (default 1).
    dtype : numpy dtype, optional
        Real dtype of images: float32 (complex64 coefficients, default) or float64.
    eps : float, optional
        NUFFT tolerance (default 1e-6 for float32, 1e-10 for float64).
    batch_size : int, optional
        Images per NUFFT call; bounds the work memory (default 256).
    method : {"auto", "nufft", "dense"}, optional
        How :meth:`expand` computes the coefficients: the NUFFT-based fast transform, or a
        product with the basis functions sampled on the pixels (built on first use);
        "auto" (default) takes the dense product when its matrix has at most
        :data:`DENSE_MAX_ENTRIES` entries.  :meth:`evaluate` always uses the NUFFT.

    Attributes
    ----------
    count : int
        Number of complex coefficients (k >= 0).
    k, q : ndarray of int, shape (count,)
        Angular frequency and radial index of each coefficient (sorted by k, then q).
    kmax : int
        Largest angular frequency.
    k_slices : list of slice
        ``coef[..., k_slices[k]]`` are the coefficients of angular frequency k.
    weights : ndarray, shape (count,)
        1 for k = 0 and 2 for k > 0: ``sum(weights * |a|^2)`` is the image energy in the disk,
        and ``Re sum(weights * conj(a) * b)`` the pixel inner product.
    dense_ : bool
        Whether :meth:`expand` uses the dense transform (see ``method``).
    """

    def __init__(self, L, *, bandlimit=1.0, dtype=np.float32, eps=None, batch_size=256,
                 method="auto"):
        self.L = check_int("L", L, min=4)
        self.bandlimit = check_float("bandlimit", bandlimit, min=0.0, max=2.0, min_inclusive=False)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.complex_dtype = np.result_type(self.dtype, np.complex64)
        double = self.dtype == np.float64
        self.eps = check_float("eps", eps if eps is not None else (1e-10 if double else 1e-6),
                               min=1e-15, max=1e-1)
        self.batch_size = check_int("batch_size", batch_size, min=1)
        self.method = check_choice("method", method, ("auto", "nufft", "dense"))

        self.radius = self.L / 2
        lam_max = self.bandlimit * np.pi * self.radius
        ks, qs, zeros = bessel_zeros_below(float(lam_max))
        self.k, self.q, self.zeros = ks, qs, zeros
        self.count = ks.size
        self.kmax = int(ks.max())
        bounds = np.searchsorted(ks, np.arange(self.kmax + 2))
        self.k_slices = [slice(int(bounds[k]), int(bounds[k + 1])) for k in range(self.kmax + 1)]
        self.weights = np.where(ks == 0, 1.0, 2.0)
        self.norms = fb_norms(ks, zeros, self.radius)

        # Polar grid.  Along a ray, F is band-limited with type R (the disk radius), so
        # Chebyshev interpolation on [0, rho_max] converges once n_r exceeds ~ e R rho_max / 4.
        rho_max = lam_max / self.radius
        # Measured on white noise at L = 64: 0.58 R rho_max + 12 nodes give ~1e-7 relative
        # error (below float32 resolution), 0.75 R rho_max + 12 give ~1e-11 (float64).
        self.n_r = int(np.ceil((0.75 if double else 0.58) * self.radius * rho_max)) + 12
        # On a circle of radius rho, F has angular frequencies up to ~ rho R (+ a margin);
        # n_phi > kmax + that avoids aliasing into the k <= kmax we keep.
        n_ang = int(np.ceil(rho_max * self.radius + 2.5 * (rho_max * self.radius) ** (1 / 3) + 8))
        self.n_phi = 2 * scipy.fft.next_fast_len((self.kmax + n_ang + 2) // 2 + 1)
        rho, w = chebyshev_nodes(self.n_r, 0.0, rho_max)
        self._rho = rho
        phi = 2 * np.pi * np.arange(self.n_phi // 2) / self.n_phi
        # NUFFT points: first coordinate pairs with the image's first axis (y).
        self._wy = (rho[:, None] * np.sin(phi)[None, :]).ravel()
        self._wx = (rho[:, None] * np.cos(phi)[None, :]).ravel()
        # Per-k radial interpolation (n_q(k), n_r), with norms and the (-i)^k phase folded in.
        B = barycentric_matrix(rho, w, zeros / self.radius)
        phase = (-1j) ** (ks % 4)
        fwd = (self.norms * phase)[:, None] * B
        self._fwd = [np.ascontiguousarray(fwd[s].T.astype(self.complex_dtype))
                     for s in self.k_slices]                     # (n_r, n_q) each
        bwd = (self.weights * self.norms * np.conj(phase))[:, None] * B
        self._bwd = [np.ascontiguousarray(bwd[s].astype(self.complex_dtype))
                     for s in self.k_slices]                     # (n_q, n_r) each
        self._mask = disk_mask(self.L, self.radius)
        h = self.n_phi // 2
        self._twiddle = np.exp(-1j * np.pi * np.arange(h) / h).astype(self.complex_dtype)
        self._fwd = [w / self.n_phi for w in self._fwd]
        self._plans = {}
        self.dense_ = (self.method == "dense" or
                       (self.method == "auto" and self.L ** 2 * self.count <= DENSE_MAX_ENTRIES))
        self._dense = None

    def __repr__(self):
        return (f"FourierBesselBasis2D(L={self.L}, bandlimit={self.bandlimit:g}, "
                f"count={self.count}, kmax={self.kmax}, dtype={self.dtype.name})")

    def __getstate__(self):
        # finufft plans are not picklable (Dask workers rebuild them on first use).
        state = self.__dict__.copy()
        state["_plans"] = {}
        # The dense matrices travel with the basis (2 MB at L = 64, band limit 0.5): Dask
        # tasks would otherwise rebuild them per task (0.1-0.8 s each).
        state["_dense"] = self._dense_transform() if self.dense_ else None
        state.pop("_device_arrays", None)
        return state

    # -- NUFFT plans, reused across calls (the polar points never change) -------------------
    def _plan(self, nufft_type, n_trans, device="cpu"):
        key = (nufft_type, n_trans, device)
        plan = self._plans.get(key)
        if plan is None:
            isign = 1 if nufft_type == 2 else -1
            if device == "cpu":
                plan = finufft.Plan(nufft_type, (self.L, self.L), n_trans=n_trans, eps=self.eps,
                                    isign=isign, dtype=self.complex_dtype.name)
                plan.setpts(self._wy.astype(self.dtype), self._wx.astype(self.dtype))
            else:
                import cufinufft
                xp = array_module(device)
                plan = cufinufft.Plan(nufft_type, (self.L, self.L), n_trans=n_trans,
                                      eps=self.eps, isign=isign,
                                      dtype=self.complex_dtype.name)
                plan.setpts(to_device(self._wy.astype(self.dtype), xp),
                            to_device(self._wx.astype(self.dtype), xp))
            if len(self._plans) > 4:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    # -- transforms ---------------------------------------------------------------------------
    def expand(self, images, *, device="cpu"):
        """Fourier-Bessel coefficients of real images.

        Parameters
        ----------
        images : ndarray, shape (n, L, L) or (L, L)
            Real images; pixels outside the disk of radius L/2 are ignored.
        device : {"cpu", "cuda"}, optional
            "cuda" runs the dense product, or the NUFFT (cuFINUFFT), the angular FFTs and the
            radial products, on the GPU (:mod:`classavg._backend`); the result is a numpy
            array either way.

        Returns
        -------
        ndarray, complex, shape (n, count) (or (count,) for one image)
            ``a_kq = <f, psi_kq>``, ordered as ``self.k``, ``self.q``; by the folded dense
            products of :class:`~classavg.basis.DenseFBTransform` when :attr:`dense_`, else
            by the NUFFT-based fast transform.
        """
        images, single = self._check_images(images)
        if self.dense_:
            out = to_host(self._dense_transform().expand(images, device=device))
            return out[0] if single else out
        out = np.empty((images.shape[0], self.count), dtype=self.complex_dtype)
        if device != "cpu":
            xp = array_module(device)
            for s in range(0, images.shape[0], self.batch_size):
                f = to_device(images[s:s + self.batch_size], xp)
                out[s:s + self.batch_size] = to_host(self._expand_batch(f, xp, device))
            return out[0] if single else out
        # The radial step is kmax + 1 small products per batch: one BLAS thread leaves the
        # cores to finufft and the FFTs (2x faster on 2 cores; classavg._threads).
        with single_thread_blas():
            for s in range(0, images.shape[0], self.batch_size):
                out[s:s + self.batch_size] = self._expand_batch(images[s:s + self.batch_size])
        return out[0] if single else out

    def _expand_batch(self, f, xp=np, device="cpu"):
        n = f.shape[0]
        h = self.n_phi // 2
        mask, fwd, twiddle = self._on(device)
        fm = xp.where(mask, f, 0).astype(self.complex_dtype)
        G = self._plan(2, n, device).execute(fm).reshape(n, self.n_r, h)
        # The full circle holds G(phi) and G(phi + pi) = conj G(phi), so the angular Fourier
        # coefficient k is (1/n_phi) sum_m (G_m + (-1)^k conj G_m) exp(-2 pi i k m / n_phi):
        # an rfft of 2 Re G for even k and an FFT of 2i Im G exp(-i pi m / h) for odd k.
        even = fft("rfft", 2 * G.real, axis=2)
        odd = fft("fft", 2j * G.imag * twiddle, axis=2)
        g = xp.empty((self.kmax + 1, n, self.n_r), dtype=self.complex_dtype)
        g[0::2] = xp.moveaxis(even[:, :, :(self.kmax + 2) // 2], 2, 0)
        g[1::2] = xp.moveaxis(odd[:, :, :(self.kmax + 1) // 2], 2, 0)
        out = xp.empty((n, self.count), dtype=self.complex_dtype)
        for k, s in enumerate(self.k_slices):
            out[:, s] = g[k] @ fwd[k]
        return out

    def _dense_transform(self):
        """The symmetry-folded dense transform of this basis (built on first use)."""
        if self._dense is None:
            self._dense = DenseFBTransform(self)
        return self._dense

    def _on(self, device):
        """Mask, radial matrices and twiddles as arrays of ``device`` (copied there once)."""
        if device == "cpu":
            return self._mask, self._fwd, self._twiddle
        cache = self.__dict__.setdefault("_device_arrays", {})
        if device not in cache:
            xp = array_module(device)
            cache[device] = (to_device(self._mask, xp), [to_device(w, xp) for w in self._fwd],
                             to_device(self._twiddle, xp))
        return cache[device]

    def evaluate(self, coef):
        """Images from coefficients (the synthesis ``sum a_kq psi_kq``), zero outside the disk.

        Parameters
        ----------
        coef : ndarray, complex, shape (n, count) or (count,)

        Returns
        -------
        ndarray, real, shape (n, L, L) (or (L, L))
        """
        coef = np.asarray(coef)
        single = coef.ndim == 1
        coef = np.atleast_2d(coef)
        if coef.shape[-1] != self.count:
            raise ValueError(f"coef must have shape (n, {self.count}), got {coef.shape}")
        out = np.empty((coef.shape[0], self.L, self.L), dtype=self.dtype)
        with single_thread_blas():
            for s in range(0, coef.shape[0], self.batch_size):
                out[s:s + self.batch_size] = self._evaluate_batch(coef[s:s + self.batch_size])
        return out[0] if single else out

    def _evaluate_batch(self, a):
        n = a.shape[0]
        a = a.astype(self.complex_dtype, copy=False)
        C = np.zeros((n, self.n_r, self.n_phi), dtype=self.complex_dtype)
        for k, s in enumerate(self.k_slices):
            C[:, :, k] = a[:, s] @ self._bwd[k]
        P = scipy.fft.ifft(C, axis=2, workers=-1)
        h = self.n_phi // 2
        # Re sum over the full circle = Re sum over half of (P(phi) + conj P(phi + pi)).
        P = (P[:, :, :h] + np.conj(P[:, :, h:])).reshape(n, -1)
        f = self._plan(1, n).execute(np.ascontiguousarray(P)).real
        return np.where(self._mask, f, 0).astype(self.dtype, copy=False)

    def project(self, images):
        """Least-squares-free projection onto the basis: ``evaluate(expand(images))``."""
        return self.evaluate(self.expand(images))

    # -- steering -------------------------------------------------------------------------------
    def rotate(self, coef, angle):
        """Coefficients of the images rotated counter-clockwise by ``angle`` radians.

        ``angle`` is a scalar or an array broadcastable to ``coef.shape[:-1]``.
        """
        coef = np.asarray(coef)
        angle = np.asarray(angle, dtype=np.float64)[..., None]
        return (coef * np.exp(-1j * self.k * angle)).astype(coef.dtype, copy=False)

    def reflect(self, coef):
        """Coefficients of the mirrored images (``y -> -y`` about the centre)."""
        return np.conj(coef)

    # -- helpers ------------------------------------------------------------------------------
    def _check_images(self, images):
        images = np.asarray(images)
        single = images.ndim == 2
        if single:
            images = images[None]
        if images.ndim != 3 or images.shape[1:] != (self.L, self.L):
            raise ValueError(f"images must have shape (n, {self.L}, {self.L}), "
                             f"got {images.shape}")
        return images, single
