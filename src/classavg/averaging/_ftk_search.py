"""FTK shift search and refinement: coarse grid, quadratic-fit refinement, SNR weights.

The search and refinement of :mod:`classavg.averaging.ftk` (see its docstring), shared by
:class:`~classavg.averaging.ftk.FTKAverager2D` and :class:`~classavg.averaging.em.EMAverager2D`.
"""

from __future__ import annotations

import numpy as np

from .._grid import disk_mask
from .._validation import check_float

__all__ = ["default_radius", "disk_points", "corner_variance", "snr_weights", "SHIFT_TOLERANCE"]


def default_radius(L):
    """Default shift search radius in pixels: ``max(2, ceil(L / 32))`` (2 px at L = 64).

    ASPIRE's BFSR searches ``L // 32`` pixels; FTK's cost hardly depends on the number of
    shifts, so the default rounds up and never goes below 2 pixels.
    """
    return max(2, int(np.ceil(L / 32)))


# ---------------------------------------------------------------------------------------------
# Search helpers shared with the EM averager
# ---------------------------------------------------------------------------------------------
def disk_points(radius, step=1.0):
    """Grid points ``step * (i, j)`` with norm <= ``radius``, shape (n, 2), (0, 0) first."""
    r = int(np.floor(radius / step + 1e-9))
    g = np.arange(-r, r + 1) * step
    x, y = np.meshgrid(g, g)
    pts = np.stack([x.ravel(), y.ravel()], axis=1)
    d2 = (pts ** 2).sum(1)
    pts = pts[d2 <= radius ** 2 + 1e-9]
    order = np.lexsort((pts[:, 0], pts[:, 1], (pts ** 2).sum(1)))
    return pts[order]


#: Tolerance (pixels) of the search beyond ``radius``: the coarse integer grid covers the disk
#: ``|s| <= radius + SHIFT_TOLERANCE`` (every shift of the disk of radius ``radius`` is then
#: within sqrt(2)/2 px of a grid point, also at its edge) and refined shifts stay in it.
SHIFT_TOLERANCE = 0.5

#: Initial shift step of the refinement stencil (pixels).
_H0 = 0.75

#: Largest distance (pixels) of a refinement stencil point beyond ``radius``; the
#: factorization covers ``radius`` plus this.
_STENCIL_MARGIN = SHIFT_TOLERANCE + np.sqrt(2) * _H0 + 0.05

# Stencil of the refinement: 3 angles x 9 shifts, normalised offsets (u, x, y) in {-1, 0, 1}.
_U3 = np.array([-1.0, 0.0, 1.0])
_S9 = np.array([(x, y) for y in (-1.0, 0.0, 1.0) for x in (-1.0, 0.0, 1.0)])


def _quad_terms(u, x, y):
    return np.stack([np.ones_like(u), u, x, y, u * u, x * x, y * y, u * x, u * y, x * y], -1)


_PTS3 = np.array([(u, x, y) for (x, y) in _S9 for u in _U3])          # (27, 3), shift-major
_FIT3 = np.linalg.pinv(_quad_terms(*_PTS3.T))                        # (10, 27)
_FIT1 = np.linalg.pinv(_quad_terms(_U3, 0 * _U3, 0 * _U3)[:, [0, 1, 4]])   # (3, 3)


def _newton_from_quadratic(q, ndim):
    """Newton step to the maximum of a fitted quadratic, scaled into the box [-1, 1]^ndim.

    ``q``: (..., 10) coefficients of ``_quad_terms`` (3-D) or (..., 3) of (1, u, u^2) (1-D).
    Returns the step (..., ndim) and a mask of where the Hessian is negative definite (the
    step is meaningless elsewhere).
    """
    if ndim == 1:
        g = q[..., 1:2]
        h = 2 * q[..., 2:3]
        ok = h[..., 0] < 0
        step = -g / np.where(ok[..., None], h, -1.0)
        return np.clip(step, -1.0, 1.0), ok
    g = q[..., 1:4]
    H = np.empty(q.shape[:-1] + (3, 3))
    H[..., 0, 0], H[..., 1, 1], H[..., 2, 2] = 2 * q[..., 4], 2 * q[..., 5], 2 * q[..., 6]
    H[..., 0, 1] = H[..., 1, 0] = q[..., 7]
    H[..., 0, 2] = H[..., 2, 0] = q[..., 8]
    H[..., 1, 2] = H[..., 2, 1] = q[..., 9]
    ev = np.linalg.eigvalsh(H)
    ok = ev[..., -1] < 0
    Hs = np.where(ok[..., None, None], H, -np.eye(3))
    step = -np.linalg.solve(Hs, g[..., None])[..., 0]
    # Keep the step in the stencil box (scaled along its direction).
    big = np.abs(step).max(axis=-1, keepdims=True)
    step = step / np.maximum(big, 1.0)
    return step, ok


def _project_disk(s, radius):
    """Project shifts (..., 2) onto the disk of radius ``radius``."""
    d = np.hypot(s[..., 0], s[..., 1])
    f = np.where(d > radius, radius / np.maximum(d, 1e-300), 1.0)
    return s * f[..., None]


class _Aligner:
    """Coarse grid search plus quadratic refinement on top of a :class:`_Correlator`."""

    def __init__(self, correlator, radius, n_angles, n_refine, refine_factor):
        self.cor = correlator
        self.kernel = correlator.kernel
        self.radius = float(radius)
        self.max_shift = self.radius + SHIFT_TOLERANCE if self.radius > 0 else 0.0
        self.n_angles = int(n_angles)
        self.n_refine = int(n_refine)
        self.refine_factor = float(refine_factor)
        self.coarse_shifts = disk_points(self.max_shift, 1.0)
        # Initial stencil: most of the coarse grid step in the shift, two grid steps in the
        # angle (a shift error is partly compensated by the angle on the coarse grid).
        self.h0 = _H0
        self.delta0 = 2 * (2 * np.pi / self.n_angles)
        self.W0 = self.kernel.shift_weights(self.coarse_shifts).astype(np.complex64)

    def coarse(self, M):
        """Best integer shift and grid angle per pair: (alpha (c, m), s (c, m, 2), C (c, m))."""
        spec = self.cor.spectrum(M, self.W0)                            # (c, m, S, K+1)
        C = self.cor.grid_correlation(spec, self.n_angles)              # (c, m, S, n_angles)
        c, m, S, n = C.shape
        flat = C.reshape(c, m, S * n)
        best = flat.argmax(axis=2)
        si, ai = np.divmod(best, n)
        alpha = 2 * np.pi * ai / n
        return alpha, self.coarse_shifts[si], np.take_along_axis(flat, best[..., None], 2)[..., 0]

    def refine(self, M, alpha, s):
        """Quadratic-fit refinement of (alpha, s) per pair (:mod:`classavg.averaging.ftk`).

        A trust-region iteration: the stencil of each pair shrinks by ``refine_factor`` only
        when the Newton step of the fitted quadratic lands inside it; a step clipped to the
        stencil box (the estimate was further off than the stencil, e.g. an angle error
        coupled with a shift error) keeps the stencil size and moves its centre.
        """
        cor = self.cor
        shape = alpha.shape
        h = np.full(shape, self.h0)
        delta = np.full(shape, self.delta0)
        shift = self.radius > 0
        for _ in range(self.n_refine):
            au = alpha[..., None] + delta[..., None] * _U3                 # (c, m, 3)
            if shift:
                pts = s[..., None, :] + h[..., None, None] * _S9           # (c, m, 9, 2)
                W = self.kernel.shift_weights(pts).astype(np.complex64)    # (c, m, 9, H)
                spec = np.matmul(W, M)                                     # (c, m, 9, K+1)
                C = cor.correlation_at(spec, au)                           # (c, m, 9, 3)
                vals = C.reshape(shape + (27,))
                step, ok = _newton_from_quadratic(vals @ _FIT3.T, 3)
                # Where the fit is not concave, move to the best stencil point.
                step = np.where(ok[..., None], step, _PTS3[vals.argmax(axis=-1)])
                alpha = alpha + delta * step[..., 0]
                s = _project_disk(s + h[..., None] * step[..., 1:], self.max_shift)
            else:
                spec = np.matmul(self.W0[None, None], M)                   # (c, m, 1, K+1)
                C = cor.correlation_at(spec, au)[..., 0, :]                # (c, m, 3)
                step, ok = _newton_from_quadratic(C @ _FIT1.T, 1)
                step = np.where(ok[..., None], step, _U3[C.argmax(axis=-1)][..., None])
                alpha = alpha + delta * step[..., 0]
            # Shrink where the model is trusted (its maximum inside the stencil), or where the
            # stencil centre is its best point.
            big = np.abs(step).max(axis=-1)
            inside = (ok & (big < 0.999)) | (~ok & (big == 0))
            f = np.where(inside, self.refine_factor, 1.0)
            h = h * f
            delta = delta * f
        return alpha, s

    def correlation(self, M, alpha, s):
        """``C(alpha, s)`` per pair, (c, m)."""
        W = self.kernel.shift_weights(s[..., None, :]).astype(np.complex64)  # (c, m, 1, H)
        spec = np.matmul(W, M)
        return self.cor.correlation_at(spec, alpha[..., None])[..., 0, 0]

    def align(self, M):
        """Best pose per pair: coarse search, refinement, and never worse than the coarse
        optimum (a refinement that lowered the correlation, possible on very noisy data, is
        discarded).  Returns ``alpha`` (c, m), ``s`` (c, m, 2) and the correlation (c, m)."""
        a0, s0, C0 = self.coarse(M)
        alpha, s = self.refine(M, a0, s0)
        C = self.correlation(M, alpha, s)
        worse = C < C0
        if worse.any():
            alpha = np.where(worse, a0, alpha)
            s = np.where(worse[..., None], s0, s)
            C = np.where(worse, C0, C)
        return alpha, s, C


def corner_variance(images):
    """White-noise variance per image from its pixels outside the disk of radius ``L / 2``
    (the box corners, free of particle signal), shape (n,); zeros when there are none."""
    images = np.asarray(images)
    corners = ~disk_mask(images.shape[-1], images.shape[-1] / 2)
    if not corners.any():
        return np.zeros(images.shape[0])
    return np.var(images[:, corners], axis=1, dtype=np.float64)


def snr_weights(power, noise, grid):
    """Spectral SNR (Wiener) weights ``S / (S + N)`` per radial node of every class.

    Parameters
    ----------
    power : ndarray, shape (c, m, n_rho)
        Band power per radial node of every member (``sum_k |coef|^2`` on ``grid``).
    noise : ndarray, shape (c, m)
        White-noise variance per pixel of every member (:func:`corner_variance`).
    grid : PolarGrid

    Returns
    -------
    ndarray, shape (c, n_rho), in [0, 1]
        ``max(1 - N_j / P_j, 0)`` with ``P_j`` the mean member power at node j and
        ``N_j = sigma^2 n_disk w_j rho_j / 2 pi`` the expected power of white noise there
        (``n_disk`` pixels in the disk).
    """
    n_disk = float(disk_mask(grid.L, grid.L / 2).sum())
    P = power.mean(axis=1)
    N = noise.mean(axis=1)[:, None] * n_disk * grid.weights[None, :]
    return np.clip(1.0 - N / np.maximum(P, np.finfo(np.float64).tiny), 0.0, 1.0)


def _check_bandlimit(bandlimit):
    return check_float("bandlimit", bandlimit, min=0.0, max=1.0, min_inclusive=False)
