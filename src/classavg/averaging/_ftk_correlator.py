"""The FTK correlation engine: factors ``M`` of (reference, member) pairs and correlations.

See the derivation in :mod:`classavg.averaging.ftk`; used by
:class:`~classavg.averaging.ftk.FTKAverager2D` and :class:`~classavg.averaging.em.EMAverager2D`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


class _Correlator:
    """FTK factors ``M`` of (reference, member) pairs, correlations, and the adjoint synthesis.

    Works on angular Fourier coefficients at radial nodes ``rho`` laid out by angular
    frequency: references ``k = 0..K``, members ``k' = -N..K+N`` (``N`` the largest Bessel
    order of the kernel), full coefficient arrays ``k = -K_f..K_f`` (index ``K_f + k``).

    Parameters
    ----------
    kernel : TranslationKernel
    K : int
        Angular band of the references and of the output of :meth:`synthesize`.
    rho : ndarray, shape (n_rho,)
        Radial nodes of the coefficients.
    K_f : int
        Band of the full coefficient arrays (``>= K + N``).
    """

    def __init__(self, kernel, K, rho, K_f):
        self.kernel = kernel
        self.K = int(K)
        self.N = kernel.max_order
        self.K_f = int(K_f)
        if self.K_f < self.K + self.N:
            raise ValueError(f"K_f must be >= K + N = {self.K + self.N}, got {K_f}")
        self.U = kernel.radial(rho).astype(np.float32)                # (n_rho, H)
        self.eps_k = np.where(np.arange(self.K + 1) == 0, 1.0, 2.0).astype(np.float32)
        # Terms grouped by Bessel order: (n, term indices) and U restricted to them.
        self._orders = [(int(n), np.flatnonzero(kernel.n == n)) for n in np.unique(kernel.n)]
        self._U_by_order = {n: np.ascontiguousarray(self.U[:, cols]).astype(np.complex64)
                            for n, cols in self._orders}

    def reference_slice(self, G):
        """Reference frequencies ``[0, K]`` of full coefficient arrays (..., 2 K_f + 1, n_rho)."""
        return G[..., self.K_f: self.K_f + self.K + 1, :]

    def members(self, G, inverse, refl):
        """Member coefficients ``(c, K + 2N + 1, m, n_rho)`` with the mirrors applied.

        ``G`` (u, 2 K_f + 1, n_rho) holds the distinct images; member j of class c is
        ``G[inverse[c, j]]``, taken at ``-k'`` when ``refl[c, j]`` (mirroring maps ``F_k`` to
        ``F_{-k}``).
        """
        kp = np.arange(-self.N, self.K + self.N + 1)
        cols = np.where(refl[:, None, :], self.K_f - kp[None, :, None],
                        self.K_f + kp[None, :, None])
        rows = np.broadcast_to(inverse[:, None, :], cols.shape)
        return G[rows, cols]

    def as_member(self, A):
        """Reference-layout coefficients (c, K + 1, n_rho) -> member layout (c, K + 2N + 1, 1,
        n_rho), using ``F_{-k} = (-1)^k conj(F_k)`` and zeros beyond ``K``."""
        c, _, n_rho = A.shape
        K, N = self.K, self.N
        out = np.zeros((c, K + 2 * N + 1, 1, n_rho), dtype=np.complex64)
        out[:, N: N + K + 1, 0] = A
        kneg = np.arange(1, N + 1)                                     # k' = -1..-N
        sign = np.where(kneg % 2 == 0, 1.0, -1.0).astype(np.float32)
        out[:, N - kneg, 0] = np.conj(A[:, kneg]) * sign[:, None]
        return out

    def factors(self, A, B):
        """FTK factors ``M[c, j, h, k]`` of references ``A`` and members ``B``.

        Parameters
        ----------
        A : ndarray, complex, shape (c, K + 1, n_rho)
            Weighted reference coefficients, k = 0..K.
        B : ndarray, complex, shape (c, K + 2N + 1, m, n_rho)
            Weighted member coefficients by member frequency k' = -N..K+N (mirrors already
            applied), see :meth:`members`.

        Returns
        -------
        ndarray, complex64, shape (c, m, H, K + 1)
        """
        c, m = A.shape[0], B.shape[2]
        K, N, H = self.K, self.N, self.kernel.rank
        n_rho = A.shape[2]
        # Q[c, k', rho, h] = U_h(rho) conj(A[c, k' + n_h, rho]), zero unless 0 <= k'+n_h <= K:
        # for term h the member frequencies k' = k - n_h (k = 0..K) are a contiguous block.
        Ac = np.conj(A)                                                # (c, K+1, rho)
        Q = np.zeros((c, K + 2 * N + 1, n_rho, H), dtype=np.complex64)
        for h, n in enumerate(self.kernel.n):
            Q[:, N - n: N - n + K + 1, :, h] = Ac * self.U[:, h]
        Mp = np.matmul(B, Q)                                           # (c, K', m, H)
        out = np.empty((c, m, H, K + 1), dtype=np.complex64)
        Mt = Mp.transpose(0, 2, 3, 1)                                  # (c, m, H, K')
        for h, n in enumerate(self.kernel.n):
            out[:, :, h, :] = Mt[:, :, h, N - n: N - n + K + 1]
        return out

    def synthesize(self, B, Gam):
        """Weighted sums of transformed members: the adjoint of :meth:`factors`.

        ``Z[c, k, rho] = sum_j sum_h U_h(rho) B[c, k - n_h, j, rho] Gam[c, j, h, k]``, which for
        ``Gam[c, j, h, k] = w_j W_h(s_j) exp(-i k alpha_j)`` is ``sum_j w_j (R_alpha_j T_s_j
        X_j)_k(rho)`` and for ``Gam = w_j sum_s W_h(s) sum_alpha gamma_j(alpha, s)
        exp(-i k alpha)`` the posterior-weighted sum of the EM M step.

        Parameters
        ----------
        B : ndarray, complex, shape (c, K + 2N + 1, m, n_rho)
            Member coefficients (:meth:`members`).
        Gam : ndarray, complex, shape (c, m, H, K + 1)

        Returns
        -------
        ndarray, complex64, shape (c, K + 1, n_rho)
        """
        c, Kp, m, n_rho = B.shape
        K, N, H = self.K, self.N, self.kernel.rank
        Gp = np.zeros((c, Kp, m, H), dtype=np.complex64)
        Gt = Gam.transpose(0, 3, 1, 2)                                 # (c, K+1, m, H)
        for h, n in enumerate(self.kernel.n):
            Gp[:, N - n: N - n + K + 1, :, h] = Gt[:, :, :, h]
        # (contiguous operands: numpy's stacked matmul is much slower on transposed views)
        D = np.matmul(np.ascontiguousarray(B.transpose(0, 1, 3, 2)), Gp)  # (c, K', rho, H)
        Z = np.zeros((c, K + 1, n_rho), dtype=np.complex64)
        for h, n in enumerate(self.kernel.n):
            Z += D[:, N - n: N - n + K + 1, :, h] * self.U[:, h]
        return Z

    def synthesize_members(self, B, Gam):
        """Per-member transformed coefficients (no sum over members).

        ``Z[c, j, k, rho] = sum_h U_h(rho) B[c, k - n_h, j, rho] Gam[c, j, h, k]`` -> (c, m,
        K + 1, n_rho); see :meth:`synthesize`.  Grouped by Bessel order n: the sum over the
        terms of one order is a matrix product, then one product with the shifted ``B``.
        """
        c, Kp, m, n_rho = B.shape
        K, N = self.K, self.N
        Bt = B.transpose(0, 2, 1, 3)                                   # (c, m, K', rho)
        Gt = Gam.transpose(0, 1, 3, 2)                                 # (c, m, K+1, H)
        Z = np.zeros((c, m, K + 1, n_rho), dtype=np.complex64)
        for n, cols in self._orders:
            V = np.matmul(Gt[..., cols], self._U_by_order[n].T)        # (c, m, K+1, rho)
            V *= Bt[:, :, N - n: N - n + K + 1, :]
            Z += V
        return Z

    def self_factors(self, Z, B):
        """FTK factors of every member against its own reference ``Z`` (c, m, K + 1, n_rho):
        ``M[c, j, h, k] = sum_rho conj(Z[c, j, k, rho]) U_h(rho) B[c, k - n_h, j, rho]``
        (grouped by Bessel order: one product per order, then a matrix product with ``U``)."""
        c, Kp, m, n_rho = B.shape
        K, N, H = self.K, self.N, self.kernel.rank
        Bt = B.transpose(0, 2, 1, 3)                                   # (c, m, K', rho)
        Zc = np.conj(Z)
        out = np.empty((c, m, K + 1, H), dtype=np.complex64)
        for n, cols in self._orders:
            P = Zc * Bt[:, :, N - n: N - n + K + 1, :]                 # (c, m, K+1, rho)
            out[..., cols] = np.matmul(P, self._U_by_order[n])
        return out.transpose(0, 1, 3, 2)

    @staticmethod
    def spectrum(M, W):
        """Angular spectra ``c_k(s) = sum_h W_h(s) M_hk`` of the correlation.

        ``M`` (c, m, H, K + 1); ``W`` (S, H) shared by all pairs or (c, m, S, H) per pair ->
        (c, m, S, K + 1).
        """
        return np.matmul(W.astype(np.complex64, copy=False), M)

    def grid_correlation(self, spec, n_angles):
        """``C(alpha_m) = Re sum_k eps_k c_k exp(-i k alpha_m)`` on ``alpha_m = 2 pi m /
        n_angles`` from spectra (..., K + 1), by one inverse real FFT (on a multiple of
        ``n_angles`` longer than ``2 K`` when ``n_angles`` is too short, then subsampled)."""
        K = self.K
        up = -(-(2 * K + 1) // n_angles) if n_angles <= 2 * K else 1
        n = n_angles * up
        C = n * scipy.fft.irfft(np.conj(spec), n=n, axis=-1, workers=1)
        return C[..., ::up] if up > 1 else C

    def correlation_at(self, spec, alpha):
        """``C(alpha)`` for spectra (..., P, K + 1) at angles (..., A) -> (..., P, A)."""
        # exp(-i k alpha) for k = 0..K by powers of exp(-i alpha) (cumulative product).
        z = np.exp(-1j * np.asarray(alpha, dtype=np.float64)).astype(np.complex64)
        E = np.empty(z.shape + (self.K + 1,), dtype=np.complex64)
        E[..., 0] = 1.0
        E[..., 1:] = z[..., None]
        np.cumprod(E, axis=-1, out=E)
        return np.real(np.matmul(spec * self.eps_k, np.swapaxes(E, -1, -2)))
