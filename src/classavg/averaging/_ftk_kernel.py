"""The factorized translation kernel of FTK and the polar Fourier sampling of images.

:class:`TranslationKernel` is the rank-``H`` factorization of the translation kernel,
:class:`PolarSampler` / :class:`PolarGrid` sample images on the polar grid of the alignment
(see the derivation in :mod:`classavg.averaging.ftk`).  Used by
:class:`~classavg.averaging.ftk.FTKAverager2D` and :class:`~classavg.averaging.em.EMAverager2D`.

References
----------
.. [2] A. H. Barnett, J. Magland, L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci. Comput.
   41(5), C479-C504 (2019).
"""

from __future__ import annotations

from functools import lru_cache

import finufft
import numpy as np
import scipy.fft
from numpy.polynomial.legendre import leggauss
from scipy.special import jv

from .._grid import disk_mask
from .._validation import check_float

__all__ = ["TranslationKernel", "PolarSampler", "PolarGrid"]

#: finufft threads per call.  One thread is the fastest on small (64 x 64) transforms, and
#: avoids the OpenMP contention seen with several threads on small virtual machines.
_NUFFT_THREADS = 1


# ---------------------------------------------------------------------------------------------
# The factorized translation kernel
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _kernel_svd(rho_max, d_max, eps):
    """Operator SVD of ``J_n(rho d)`` for n = 0, 1, ... (see :class:`TranslationKernel`)."""
    z = rho_max * d_max
    # Quadratures fine enough to resolve J_n(rho d) (oscillation rate d_max in rho, rho_max
    # in d) to far below eps.
    n_q = int(np.ceil(z / 2 + 2.5 * np.cbrt(z + 1) + 24))
    x, w = leggauss(n_q)
    rho = (x + 1) / 2 * rho_max
    a = w / 2 * rho_max * rho                        # rho d rho
    d = (x + 1) / 2 * d_max
    b = w / 2 * d_max * d                            # d dd
    sa, sb = np.sqrt(a), np.sqrt(b)
    orders, sig, U, V = [], [], [], []
    smax = None
    for n in range(0, 10_000):
        Kn = jv(n, rho[:, None] * d[None, :])
        u, s, vt = np.linalg.svd(sa[:, None] * Kn * sb[None, :])
        if smax is None:
            smax = s[0]
        keep = s >= eps * smax
        if not keep.any():
            break
        orders.append(np.full(keep.sum(), n))
        sig.append(s[keep])
        U.append(u[:, keep] / sa[:, None])           # U_nl at the quadrature nodes
        V.append(vt[keep].T / sb[:, None])           # V_nl at the quadrature nodes
    return dict(rho=rho, a=a, d=d, b=b, n=np.concatenate(orders), sigma=np.concatenate(sig),
                U=np.concatenate(U, axis=1), V=np.concatenate(V, axis=1))


class TranslationKernel:
    r"""Rank-``H`` factorization of the translation kernel in polar Fourier coordinates.

    ``exp(i rho d cos(phi - phi_s)) = sum_n i^n J_n(rho d) exp(i n (phi - phi_s))`` with
    ``J_n(rho d) ~ sum_l U_nl(rho) sigma_nl V_nl(d)`` (see :mod:`classavg.averaging.ftk`), so
    that the translation ``T_s`` acts on angular Fourier coefficients as

    .. math::

        (T_s B)_k(\rho) \approx \sum_h W_h(s)\, U_h(\rho)\, B_{k - n_h}(\rho).

    Parameters
    ----------
    rho_max : float
        Largest radial frequency (radians per pixel), e.g. ``pi`` for Nyquist.
    d_max : float
        Largest shift length (pixels) the factorization must hold for.
    eps : float, optional
        Relative truncation threshold of the singular values (default 1e-4).

    Attributes
    ----------
    n : ndarray of int, shape (H,)
        Bessel order (angular frequency offset) of every term, in ``[-N, N]``.
    sigma : ndarray, shape (H,)
        Singular values.
    rank : int
        ``H``.
    max_order : int
        ``N = max |n|``.
    """

    def __init__(self, rho_max, d_max, *, eps=1e-4):
        self.rho_max = check_float("rho_max", rho_max, min=0.0, min_inclusive=False)
        self.d_max = check_float("d_max", d_max, min=0.0, min_inclusive=False)
        self.eps = check_float("eps", eps, min=0.0, max=0.5, min_inclusive=False)
        f = _kernel_svd(self.rho_max, self.d_max, self.eps)
        n0, self._sig0 = f["n"], f["sigma"]
        self._U0, self._V0 = f["U"], f["V"]
        self._q = f
        # Terms for n = 0 once and n > 0 twice (+n and -n): J_{-n} = (-1)^n J_n.
        pos = n0 > 0
        self._src = np.concatenate([np.arange(n0.size), np.flatnonzero(pos)])
        self.n = np.concatenate([n0, -n0[pos]])
        self.sigma = self._sig0[self._src]
        self.rank = int(self.n.size)
        self.max_order = int(np.abs(self.n).max())
        # phase i^n (-1)^n for negative orders folded with sigma: W_h = i^n s_h V_h e^{-i n phi}
        sign = np.where(self.n < 0, (-1.0) ** np.abs(self.n), 1.0)
        self._coef = (1j ** (self.n % 4)) * sign * self.sigma
        # Chebyshev series of V_h(d) on [0, d_max] for off-node shifts (V_h is entire in d).
        n_c = int(np.ceil(self.rho_max * self.d_max / 2
                          + 2.5 * np.cbrt(self.rho_max * self.d_max + 1) + 16))
        t = np.cos(np.pi * (np.arange(n_c) + 0.5) / n_c)            # Chebyshev points (1st kind)
        Vt = self._V_exact((t + 1) / 2 * self.d_max)                  # (n_c, H0)
        T = np.cos(np.outer(np.arccos(t), np.arange(n_c)))            # T_l(t_i)
        self._cheb = (np.linalg.solve(T, Vt)).astype(np.float64)      # (n_c, H0)
        # Per term: |n| and whether n < 0 (for exp(-i n phi) from powers of exp(-i phi)).
        self._absn = np.abs(self.n)
        self._neg = self.n < 0

    def __repr__(self):
        return (f"TranslationKernel(rho_max={self.rho_max:g}, d_max={self.d_max:g}, "
                f"eps={self.eps:g}, rank={self.rank}, max_order={self.max_order})")

    def _V_exact(self, d):
        """``V_nl(d)`` for the n >= 0 terms: ``(1/sigma) int J_n(rho d) U(rho) rho d rho``."""
        q = self._q
        n0 = q["n"]
        out = np.empty((d.size, n0.size))
        for n in np.unique(n0):
            cols = np.flatnonzero(n0 == n)
            J = jv(n, d[:, None] * q["rho"][None, :])                 # (nd, nq)
            out[:, cols] = (J * q["a"]) @ q["U"][:, cols] / q["sigma"][cols]
        return out

    def radial(self, rho):
        """``U_h(rho)`` at arbitrary radii, shape (len(rho), H), real.

        Uses ``U_nl(rho) = (1 / sigma_nl) int J_n(rho d) V_nl(d) d dd`` (exact at the SVD
        nodes, the natural smooth extension elsewhere).
        """
        rho = np.asarray(rho, dtype=np.float64).ravel()
        q = self._q
        n0 = q["n"]
        out = np.empty((rho.size, n0.size))
        for n in np.unique(n0):
            cols = np.flatnonzero(n0 == n)
            J = jv(n, rho[:, None] * q["d"][None, :])
            out[:, cols] = (J * q["b"]) @ q["V"][:, cols] / q["sigma"][cols]
        return out[:, self._src]

    def _V(self, d):
        """``V_h(d)`` for the n >= 0 terms by the Chebyshev series, (len(d), H0)."""
        x = 2.0 * d / self.d_max - 1.0
        n_c = self._cheb.shape[0]
        T = np.empty((d.size, n_c))
        T[:, 0] = 1.0
        if n_c > 1:
            T[:, 1] = x
        for l in range(2, n_c):
            T[:, l] = 2.0 * x * T[:, l - 1] - T[:, l - 2]
        return T @ self._cheb

    def shift_weights(self, shifts):
        """``W_h(s) = i^n sigma_h V_h(|s|) exp(-i n phi_s)`` for shifts ``(x, y)``, (..., H).

        Parameters
        ----------
        shifts : array_like, shape (..., 2)
            Pixels; ``|s| <= d_max`` (longer shifts are extrapolated and inaccurate).

        Returns
        -------
        ndarray, complex128, shape (..., H)
        """
        s = np.asarray(shifts, dtype=np.float64)
        lead = s.shape[:-1]
        s = s.reshape(-1, 2)
        d = np.hypot(s[:, 0], s[:, 1])
        V = self._V(d)[:, self._src]                                   # (ns, H)
        # exp(-i n phi) = z^n, z = (x - i y) / d (z = 1 at d = 0, where V = 0 for n != 0).
        z = np.where(d > 0, (s[:, 0] - 1j * s[:, 1]) / np.where(d > 0, d, 1.0), 1.0)
        N = self.max_order
        P = np.empty((s.shape[0], N + 1), dtype=np.complex128)
        P[:, 0] = 1.0
        for n in range(1, N + 1):
            P[:, n] = P[:, n - 1] * z
        E = P[:, self._absn]
        E[:, self._neg] = np.conj(E[:, self._neg])
        W = V * self._coef * E
        return W.reshape(lead + (self.rank,))


# ---------------------------------------------------------------------------------------------
# The polar Fourier grid of the alignment
# ---------------------------------------------------------------------------------------------
class PolarSampler:
    r"""Angular Fourier coefficients of images on a polar grid ``rho_j x (2 pi m / n_phi)``.

    ``coefficients(images)[i, K_f + k, j] = scale_j F_k(rho_j)``, ``k = -K_f .. K_f``, where
    ``F_k(rho) = (1 / 2 pi) int F(rho, phi) exp(-i k phi) dphi`` and
    ``F(w) = sum_x f(x) exp(i w . x)`` over the pixels of the disk of radius ``L / 2``.

    Two real images ``f, g`` are transformed at once as ``f + i g``: one type-2 NUFFT [2]_ on
    the full circle and one FFT over the angle per pair give ``P_k = F_k + i G_k``, and
    ``F_k = (P_k + (-1)^k conj(P_-k)) / 2``, ``G_k = (P_k - (-1)^k conj(P_-k)) / 2i`` (from
    ``F(-w) = conj F(w)`` for real images).  Same number of NUFFT points per image as
    sampling each image on a half circle, half the FFTs.

    Parameters
    ----------
    L : int
    rho : ndarray, shape (n_rho,)
        Radial nodes, radians per pixel.
    n_phi : int
        Angles on the full circle (even); must exceed ``K_f`` plus the angular band of the
        images at ``max(rho)`` (about ``max(rho) L / 2``) to avoid aliasing.
    K_f : int
        Largest angular frequency returned.
    scale : ndarray, shape (n_rho,), optional
        Factor per radial node (default 1).
    eps : float, optional
        NUFFT tolerance (default 1e-5).
    chunk : int, optional
        Images per NUFFT call (default 256).
    """

    def __init__(self, L, rho, n_phi, K_f, *, scale=None, eps=1e-5, chunk=256):
        self.L = int(L)
        self.rho = np.asarray(rho, dtype=np.float64)
        self.n_rho = self.rho.size
        self.n_phi = int(n_phi)
        self.K_f = int(K_f)
        self.eps = float(eps)
        self.chunk = int(chunk)
        phi = 2 * np.pi * np.arange(self.n_phi) / self.n_phi
        self._wy = (self.rho[:, None] * np.sin(phi)[None, :]).ravel().astype(np.float32)
        self._wx = (self.rho[:, None] * np.cos(phi)[None, :]).ravel().astype(np.float32)
        self._mask = disk_mask(self.L, self.L / 2)
        sc = np.ones(self.n_rho) if scale is None else np.asarray(scale, dtype=np.float64)
        self._scale = (sc / self.n_phi).astype(np.float32)
        kk = np.arange(-self.K_f, self.K_f + 1)
        self._cols = kk % self.n_phi
        self._sign = np.where(kk % 2 == 0, 1.0, -1.0).astype(np.float32)
        self._plans = {}

    def __getstate__(self):
        # finufft plans are not picklable (Dask workers rebuild them on first use).
        state = self.__dict__.copy()
        state["_plans"] = {}
        return state

    def _plan(self, n):
        plan = self._plans.get(n)
        if plan is None:
            plan = finufft.Plan(2, (self.L, self.L), n_trans=n, eps=self.eps, isign=1,
                                dtype="complex64", nthreads=_NUFFT_THREADS)
            plan.setpts(self._wy, self._wx)
            if len(self._plans) > 3:
                self._plans.clear()
            self._plans[n] = plan
        return plan

    def coefficients(self, images):
        """Scaled angular coefficients of real images.

        Parameters
        ----------
        images : ndarray, shape (n, L, L)

        Returns
        -------
        ndarray, complex64, shape (n, 2 K_f + 1, n_rho)
            Index ``K_f + k`` holds angular frequency ``k``.
        """
        images = np.asarray(images)
        n = images.shape[0]
        out = np.empty((n, 2 * self.K_f + 1, self.n_rho), dtype=np.complex64)
        for s in range(0, n, self.chunk):
            f = np.where(self._mask, images[s:s + self.chunk], 0)
            m = f.shape[0]
            mp = (m + 1) // 2
            z = np.zeros((mp, self.L, self.L), dtype=np.complex64)
            z.real = f[0::2]
            z.imag[:m // 2] = f[1::2]
            P = self._plan(mp).execute(z).reshape(mp, self.n_rho, self.n_phi)
            g = scipy.fft.fft(P, axis=2, workers=1)[:, :, self._cols]  # (mp, n_rho, 2K_f+1)
            g *= self._scale[:, None]
            q = np.conj(g[:, :, ::-1]) * self._sign                    # (-1)^k conj(P_-k)
            out[s:s + m:2] = ((g + q) * 0.5).transpose(0, 2, 1)
            out[s + 1:s + m:2] = ((g[:m // 2] - q[:m // 2]) * -0.5j).transpose(0, 2, 1)
        return out


class PolarGrid(PolarSampler):
    r"""Quadrature-weighted angular coefficients on a Gauss-Legendre polar grid.

    ``coefficients(images)[i, K_f + k, j] = sqrt(w_j rho_j / 2 pi) F_k(rho_j)`` for
    ``k = -K_f..K_f``, so that ``sum_{k, j} conj(a) b`` is the pixel inner product of the
    disk-masked images restricted to the frequency disk ``rho <= rho_max``
    (:mod:`classavg.averaging.ftk`).

    Parameters
    ----------
    L : int
        Image size.
    rho_max : float
        Band limit, radians per pixel (``pi`` is Nyquist).
    extra_order : int
        Angular frequencies kept beyond the reference band ``K`` (the largest Bessel order of
        the translation kernel): ``K_f = K + extra_order``.
    d_max : float
        Largest translation applied (widens the radial quadrature).
    eps : float, optional
        NUFFT tolerance (default 1e-5).
    chunk : int, optional
        Images per NUFFT call (default 256).

    Attributes
    ----------
    rho, weights : ndarray, shape (n_rho,)
        Radial nodes and the quadrature weights ``w_j rho_j / (2 pi)``.
    K : int
        Angular band of the reference (coefficients ``k > K`` of a disk-masked image
        band-limited to ``rho_max`` are negligible).
    K_f : int
        ``K + extra_order``.
    """

    def __init__(self, L, rho_max, *, extra_order=0, d_max=0.0, eps=1e-5, chunk=256):
        R = int(L) / 2
        self.rho_max = float(rho_max)
        z = self.rho_max * R
        # J_k(rho r) is negligible for k > rho r + O(k^(1/3)) (r <= R): angular band K.
        self.K = int(np.ceil(z + 4))
        K_f = self.K + int(extra_order)
        # The integrand conj(A_k) (T_s B)_k rho has band limit 2 R + d in rho: Gauss-Legendre
        # of this order integrates it to ~1e-5 relative (white-noise images, the worst case).
        n_rho = int(np.ceil(self.rho_max * (2 * R + d_max) / 4)) + 4
        x, w = leggauss(n_rho)
        rho = (x + 1) / 2 * self.rho_max
        self.weights = w / 2 * self.rho_max * rho / (2 * np.pi)
        n_phi = 2 * scipy.fft.next_fast_len((2 * self.K + int(extra_order) + 3) // 2 + 1)
        super().__init__(L, rho, n_phi, K_f, scale=np.sqrt(self.weights), eps=eps, chunk=chunk)

    def __repr__(self):
        return (f"PolarGrid(L={self.L}, rho_max={self.rho_max:.4g}, n_rho={self.n_rho}, "
                f"n_phi={self.n_phi}, K={self.K}, K_f={self.K_f})")
