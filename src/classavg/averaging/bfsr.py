r"""Brute-force rotation and shift alignment (BFSR), vectorised over shifts.

Shift the reference, not the members
------------------------------------
The score of a member ``X`` (already mirrored) for the alignment (shift ``s``, rotation ``c``)
is the pixel inner product with the reference ``R``:

.. math::

    \langle \mathrm{Rot}_c S_s X, R \rangle
      = \langle S_t \mathrm{Rot}_c X, R \rangle
      = \langle \mathrm{Rot}_c X, S_{-t} R \rangle, \qquad t = \mathrm{Rot}(c)\, s,

since ``Rot_c S_s = S_{Rot(c) s} Rot_c``.  So for each candidate integer ``t`` in the disk
``|t| <= radius`` (a rotation-invariant set) the reference is shifted by ``-t`` -- a phase in
its polar Fourier samples -- and expanded once per class; every member is then correlated
with every shifted reference at all ``n_angles`` rotations at once
(:func:`~classavg.averaging.bfr.correlation_spectrum` by batched matrix products over the
radial index, one FFT over the angular frequency per pair).  The member shift is
``s = Rot(-c) t``.

Sub-pixel and sub-degree refinement
-----------------------------------
The shifted references are also computed on the ring of integer points around the disk, so
that every candidate ``t`` has its 3 x 3 neighbours.  Around the best integer ``t*`` and grid
angle ``n*``, the correlation at the 27 points (angles ``n* - 1, n*, n* + 1`` x the 3 x 3
neighbours of ``t*``) is fitted by a quadratic in (angle, x, y) whose peak gives a sub-pixel
``t`` and a sub-step angle jointly (the angle-shift coupling matters: a wrong ``t`` moves the
best angle).  The member shift is ``s = Rot(-c) t``.  Finally the members are shifted by
``s`` (mirror first) and expanded -- coefficients the stacking step needs anyway and reuses
-- and the rotation is Newton-refined on their exact rotational correlation with the
reference.  On clean images this reaches ~0.01 degree and ~0.005 pixel (median).

Noisy data: with ``snr_weighting`` the shifted references are multiplied by the spectral SNR
weights ``S / (S + N)`` of the batch (see
:meth:`~classavg.averaging.base.ClassBatch.snr_weights`).

References
----------
.. [1] P. A. Penczek, M. Radermacher, J. Frank, "Three-dimensional reconstruction of single
   particles embedded in ice", Ultramicroscopy 40, 33-53 (1992).
.. [2] Z. Zhao, A. Singer, "Rotationally invariant image representation for viewing direction
   classification in cryo-EM", J. Struct. Biol. 186, 153-166 (2014).
"""

from __future__ import annotations

import logging

import numpy as np

from .._backend import array_module, namespace_of, to_device, to_host
from .._validation import check_bool, check_int
from .base import AligningAverager2D
from .bfr import (
    _exp_table,
    check_n_angles,
    coefficient_norms,
    correlation_spectrum,
    grid_correlation,
    refine_angle,
)

__all__ = ["BFSRAverager2D", "disk_shifts"]

logger = logging.getLogger(__name__)

# Offsets of the 3 x 3 neighbourhood and the least-squares quadratic fit on it.
_D = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.float64)


def _quad_design(d):
    x, y = d[..., 0], d[..., 1]
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


_P = np.linalg.pinv(_quad_design(_D))                      # (6, 9)


def disk_shifts(radius):
    """Integer points ``(x, y)`` with ``x^2 + y^2 <= radius^2``, shape (n, 2), (0, 0) first."""
    r = int(np.floor(radius))
    g = np.arange(-r, r + 1)
    x, y = np.meshgrid(g, g)
    pts = np.stack([x.ravel(), y.ravel()], axis=1)
    pts = pts[(pts ** 2).sum(1) <= radius ** 2 + 1e-9]
    order = np.lexsort((pts[:, 0], pts[:, 1], (pts ** 2).sum(1)))
    return pts[order]


def quadratic_peak(values):
    """Peak offset of a quadratic fitted to values on the 3 x 3 grid ``_D``.

    Parameters
    ----------
    values : ndarray, shape (..., 9)

    Returns
    -------
    ndarray, shape (..., 2)
        Offset (x, y) within [-1, 1]^2; per axis parabolas are used where the fitted surface
        is not concave.
    """
    c = values @ _P.T                                       # (..., 6)
    a, bx, by, cxx, cxy, cyy = (c[..., i] for i in range(6))
    det = 4 * cxx * cyy - cxy ** 2
    concave = (cxx < 0) & (det > 0)
    sdet = np.where(concave, det, 1.0)
    x2 = (-2 * cyy * bx + cxy * by) / sdet
    y2 = (cxy * bx - 2 * cxx * by) / sdet
    # fallback: separate parabolas of the fitted surface along x and y
    px = np.where(cxx < 0, -bx / np.where(cxx < 0, 2 * cxx, -1.0), 0.0)
    py = np.where(cyy < 0, -by / np.where(cyy < 0, 2 * cyy, -1.0), 0.0)
    x = np.where(concave, x2, px)
    y = np.where(concave, y2, py)
    return np.clip(np.stack([x, y], axis=-1), -1.0, 1.0)


# 3 x 3 x 3 samples: (angle offset a, x, y), ordered as c3[..., d, a] (d over _D, a over -1..1)
_A3 = np.array([(a, dx, dy) for (dx, dy) in _D for a in (-1, 0, 1)], dtype=np.float64)


def _quad_design_3d(z):
    a, x, y = z[..., 0], z[..., 1], z[..., 2]
    return np.stack([np.ones_like(a), a, x, y, a * a, x * x, y * y, a * x, a * y, x * y], -1)


_P3 = np.linalg.pinv(_quad_design_3d(_A3))                    # (10, 27)


def quadratic_peak_3d(values):
    """Peak (a, x, y) in [-1, 1]^3 of a quadratic fitted to 3 x 3 x 3 samples (..., 27).

    Where the fitted quadratic is not concave, falls back to separate parabolas (zero where
    a parabola is not concave either).
    """
    c = values @ _P3.T                                        # (..., 10)
    g = c[..., 1:4]
    H = np.empty(values.shape[:-1] + (3, 3))
    H[..., 0, 0], H[..., 1, 1], H[..., 2, 2] = 2 * c[..., 4], 2 * c[..., 5], 2 * c[..., 6]
    H[..., 0, 1] = H[..., 1, 0] = c[..., 7]
    H[..., 0, 2] = H[..., 2, 0] = c[..., 8]
    H[..., 1, 2] = H[..., 2, 1] = c[..., 9]
    ev = np.linalg.eigvalsh(H)
    concave = ev[..., -1] < 0
    Hs = np.where(concave[..., None, None], H, -np.eye(3))
    z = -np.linalg.solve(Hs, g[..., None])[..., 0]
    diag = np.stack([H[..., 0, 0], H[..., 1, 1], H[..., 2, 2]], -1)
    z_sep = np.where(diag < 0, -g / np.where(diag < 0, diag, -1.0), 0.0)
    z = np.where(concave[..., None], z, z_sep)
    return np.clip(z, -1.0, 1.0)


class BFSRAverager2D(AligningAverager2D):
    """Brute-force rotation and shift alignment (shifts in a disk), then stacking.

    See the module docstring for the algorithm.  The reported shift (x, y pixels) is applied to
    the (mirrored) member *before* the rotation (``docs/conventions.md``).

    Parameters
    ----------
    src : ImageSource
    basis : FourierBesselBasis2D, optional
        Default: built for ``src.L`` and ``src.dtype``.
    image_stacker : ImageStacker, optional
        Default :class:`~classavg.averaging.stackers.MeanImageStacker`.
    radius : int, optional
        Largest integer shift searched, in pixels, >= 0 (default ``max(1, L // 32)``).  The
        refinement can move up to half a pixel further.
    n_angles : int, optional
        Rotation grid size, >= 1 (default 360).
    snr_weighting : bool, optional
        Weight the correlation by the spectral SNR of the batch (default True; see
        :class:`~classavg.averaging.bfr.BFRAverager2D`).
    batch_size : int, optional
        Classes per batch (default 64).
    device : {"cpu", "cuda"}, optional
        Where the expansions and the search over all shifts and angles run (default "cpu";
        "cuda" needs CuPy, :mod:`classavg._backend`); only the 3 x 3 x 3 neighbourhood of
        each member's best grid point comes back for the refinement, which stays on the CPU
        with the stacking.
    ctf_correction, image_source, wiener_snr : optional
        CTF-aware averages of the raw members (default None: the images of ``src`` as they
        are); see :meth:`~classavg.averaging.base.AligningAverager2D.set_ctf_correction`.
    """

    tags = AligningAverager2D.tags.extend(device=True)

    def __init__(self, src, *, basis=None, image_stacker=None, radius=None, n_angles=360,
                 snr_weighting=True, batch_size=64, device="cpu",
                 ctf_correction=None, image_source=None, wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size,
                         device=device, ctf_correction=ctf_correction,
                         image_source=image_source, wiener_snr=wiener_snr)
        self.snr_weighting = check_bool("snr_weighting", snr_weighting)
        if radius is None:
            radius = max(1, src.L // 32)
        self.radius = check_int("radius", radius, min=0, max=src.L // 2)
        self.n_angles = check_n_angles(n_angles)
        core = disk_shifts(self.radius)
        # Candidate set = the disk plus the ring of its 3 x 3 neighbours (for refinement).
        ext = (core[:, None, :] + _D[None].astype(int)).reshape(-1, 2)
        ext = np.unique(ext, axis=0)
        in_core = (ext ** 2).sum(1) <= self.radius ** 2 + 1e-9
        self._shifts = np.concatenate([core, ext[~in_core]])   # core first
        self._n_core = core.shape[0]
        lut = {tuple(p): i for i, p in enumerate(self._shifts.tolist())}
        # neighbour table: (n_core, 9) indices into _shifts
        self._nbr = np.array([[lut[(int(p[0] + d[0]), int(p[1] + d[1]))] for d in _D]
                              for p in core])

    def _repr_fields(self):
        return [f"radius={self.radius}", f"n_angles={self.n_angles}"]

    @property
    def candidate_shifts(self):
        """The integer reference shifts t searched (the disk), shape (n, 2)."""
        return self._shifts[:self._n_core].copy()

    def _shifted_references(self, batch):
        """Coefficients of every reference shifted by ``-t`` for all candidates, (b, n_t, count).

        Integer shifts are exact cyclic rolls of the disk-masked reference.
        """
        L = self.basis.L
        ref = np.where(self.basis._mask, batch.reference_images(), 0)
        flat = ref.reshape(ref.shape[0], -1)
        rolled = flat[:, self._roll_index].reshape(-1, L, L)         # (b * n_t, L, L)
        return self.transformer.expand(rolled).reshape(ref.shape[0], len(self._shifts), -1)

    @property
    def _roll_index(self):
        """Flat pixel indices of the images shifted by ``-t`` for every candidate, (n_t, L*L)."""
        idx = self.__dict__.get("_roll_idx")
        if idx is None:
            L = self.basis.L
            r, c = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
            # out(p) = ref(p + t): row index + t_y, column index + t_x (cyclic)
            tx = self._shifts[:, 0, None, None]
            ty = self._shifts[:, 1, None, None]
            idx = (((r + ty) % L) * L + (c + tx) % L).reshape(len(self._shifts), -1)
            self.__dict__["_roll_idx"] = idx
        return idx

    def _spectra(self, A, B):
        """h[c, t, j, k] = w_k sum_q conj(A[c, t, kq]) B[c, j, kq] -> (b, n_t, m, K).

        numpy or CuPy arrays in, the same out."""
        xp = namespace_of(A)
        basis = self.basis
        b, n_t, _ = A.shape
        m = B.shape[1]
        h = xp.empty((b, n_t, m, basis.kmax + 1), dtype=A.dtype)
        Ac = xp.conj(A)
        Bt = xp.swapaxes(B, 1, 2)
        for k, s in enumerate(basis.k_slices):
            h[..., k] = xp.matmul(Ac[:, :, s], Bt[:, s, :])
        h[..., 1:] *= 2
        return h

    def _search(self, A, B):
        """Best grid point of every member, and the spectra of its 3 x 3 shift neighbours.

        Returns ``t_best`` (index into the core shifts) and ``n_best`` (angle index), each
        (b, m), and ``hn`` (b, m, 9, K) complex128; on :attr:`device`, host arrays out.
        """
        xp = array_module(self.device)
        b, m = B.shape[:2]
        h = self._spectra(to_device(A, xp), to_device(B, xp))        # (b, n_t, m, K)
        N, nc = self.n_angles, self._n_core
        C = grid_correlation(h[:, :nc], N)                           # (b, nc, m, N)
        C = xp.moveaxis(C, 2, 1).reshape(b, m, nc * N)
        best = xp.argmax(C, axis=-1)
        del C
        t_best, n_best = best // N, best % N                         # (b, m)
        # h of the 3x3 neighbours of the best t: (b, m, 9, K)
        nb = to_device(self._nbr, xp)[t_best]                        # (b, m, 9)
        bi = xp.arange(b)[:, None, None]
        ji = xp.arange(m)[None, :, None]
        hn = h[bi, nb, ji]
        return to_host(t_best), to_host(n_best), to_host(hn).astype(np.complex128)

    def _align_batch(self, batch):
        b, m = batch.indices.shape
        N = self.n_angles
        step = 2 * np.pi / N
        A = self._shifted_references(batch)                          # (b, n_t, count)
        if self.snr_weighting:
            A = A * batch.snr_weights().astype(A.real.dtype)
        B = batch.member_coefficients()                              # (b, m, count)
        t_best, n_best, hn = self._search(A, B)
        # correlation at grid angles n-1, n, n+1 for each neighbour, parabola peak value
        ang = (n_best[..., None] + np.array([-1, 0, 1])) * step     # (b, m, 3)
        E = _exp_table(ang, hn.shape[-1])                            # (b, m, 3, K)
        c3 = np.einsum("bmdk,bmak->bmda", hn, E).real                # (b, m, 9, 3)
        # joint quadratic model of the 27 samples in (angle step, x, y) -> peak
        z = quadratic_peak_3d(c3.reshape(b, m, 27))                  # (b, m, 3)
        d = z[..., 1:]
        w = _quad_design(d) @ _P                                     # (b, m, 9)
        h_hat = np.einsum("bmd,bmdk->bmk", w, hn)                    # (b, m, K)
        alpha1 = (n_best + z[..., 0]) * step
        alpha1, _ = refine_angle(h_hat, alpha1, step)
        t = self._shifts[t_best] + d                                 # (b, m, 2)
        # member shift s = Rot(-alpha) t
        ca, sa = np.cos(alpha1), np.sin(alpha1)
        s = np.stack([ca * t[..., 0] + sa * t[..., 1], -sa * t[..., 0] + ca * t[..., 1]], -1)
        ref = ~batch.refl[:, 0]
        s[ref, 0] = 0.0
        # Exact rotation at the estimated shift: the members shifted by s (these coefficients
        # are reused by the stacking step), Newton on their rotational correlation.
        a0 = A[:, 0]                                                 # unshifted reference
        Bs = batch.shifted_member_coefficients(s)
        hs = correlation_spectrum(a0[:, None, :], Bs, self.basis)
        alpha, value = refine_angle(hs, alpha1, 2 * step)
        alpha[ref, 0] = 0.0
        norm = coefficient_norms(a0, self.basis)[:, None] * coefficient_norms(Bs, self.basis)
        scores = value / np.maximum(norm, np.finfo(np.float64).tiny)
        return alpha, s, scores
