r"""Expectation-maximization class averaging over in-plane rotations and shifts.

Model
-----
Every member ``X_j`` of a class (mirrored first when ``class_refl`` says so) is a rotated and
shifted copy of the class average ``A`` plus white Gaussian noise of variance ``sigma^2`` per
pixel: ``R_alpha_j T_s_j X_j = A + noise``, with the rotation ``alpha_j`` and the shift ``s_j``
latent (uniform prior over a grid of ``n_angles`` rotations and the shifts of a disk of radius
``radius``, spacing ``shift_step``).  This is the per-class model of RELION's 2D
classification [1]_ [2]_, with the class assignment fixed by the neighbour table.  EM
maximises the likelihood of ``A``:

*E step.*  The posterior of member j over the grid is

.. math::

    \gamma_j(\alpha, s) \propto \exp\left(-\frac{\|R_\alpha T_s X_j - A\|^2}{2\sigma^2}\right)
      \propto \exp\left(\frac{\langle R_\alpha T_s X_j, A\rangle}{\sigma^2}\right),

since rotations and translations preserve the norm.  The correlations for *all* rotations and
all grid shifts come from the factorization of the translation kernel
(:mod:`classavg.averaging.ftk`): ``H`` matrix products per member plus one FFT over the angle
per shift.  Normalisation over the grid is done in the log domain (log-sum-exp).

*M step.*  The new average is the posterior-weighted mean of the transformed members,

.. math::

    A' = \sum_j w_j \sum_{\alpha, s} \gamma_j(\alpha, s)\, R_\alpha T_s X_j ,

(``w_j = 1 / m`` for the mean).  In angular frequency ``k`` this is
``A'_k(rho) = sum_j sum_h U_h(rho) X_{j, k - n_h}(rho) Gamma_{j, h, k}`` with
``Gamma_{j,h,k} = w_j sum_s W_h(s) sum_alpha gamma_j(alpha, s) exp(-i k alpha)``: an FFT of
the posterior over the angle, one matrix product with the shift weights, and the adjoint of
the E-step's FTK product -- as cheap as the E step.

*Noise variance.*  With ``noise_var=None`` it is re-estimated at every iteration from the
expected residuals, as RELION does: for the weighted mean ``A'``,
``sum_j w_j E ||R T X_j - A'||^2 = sum_j w_j ||X_j||^2 - ||A'||^2``, so
``sigma^2 = (sum_j w_j ||X_j||^2 - ||A'||^2) / dof`` with ``dof = n_disk rho_max^2 / (4 pi)`` the
expected squared norm of unit white noise in the band of the E step (``n_disk`` pixels in
the disk).  This counts the differences between members that the model does not explain
(views a few degrees apart, CTFs) as noise, which tempers the posteriors.

Two refinements of the E step
-----------------------------
*Leave-one-out.*  With classes of tens of members the average contains each member with
weight ``w_j``, and the member's noise correlates with itself: the term
``w_j <R T X_j, R' T' X_j> / sigma^2`` favours the member's previous pose by about
``w_j dof`` nats (12 at L = 64, m = 50), enough to freeze wrong poses at low SNR.  Member j
is therefore compared with ``A - w_j Z_j``, where ``Z_j = E[R T X_j]`` is its own
posterior-weighted contribution; ``<R T X_j, Z_j>`` for all poses costs one more FTK factor
per member (:meth:`~classavg.averaging.ftk._Correlator.self_factors`).

*Regularised reference.*  The E step compares members with the Wiener-filtered average:
each radial frequency of ``A`` is multiplied by ``max(0, 1 - N(rho) / P(rho))``, with
``P`` the power of ``A`` at that frequency and ``N = sigma^2 dof(rho) sum_j w_j^2`` the power
of its noise -- the ``tau^2`` regularisation of RELION's M step [1]_, here applied to the
reference of the E step only.  Frequencies where the average is mostly noise no longer add
noise to the posteriors, so the result hardly depends on ``bandlimit`` (measured at SNR 1/8
and 1/16 on 64 x 64 projections: the same average correlation within 0.003 for
``bandlimit`` 0.35, 0.5 and 0.75; without it 0.5 loses 0.02-0.05 against 0.35).  The output
average is the plain posterior-weighted mean.

Algorithm
---------
1. Hard-align every member to the reference image (the SNR-weighted search and refinement of
   :class:`~classavg.averaging.ftk.FTKAverager2D`) and average: ``A_0``, in the frame of the
   reference.
2. ``n_iter`` times: E step against the current average; the MAP grid point of each member
   is refined continuously (FTK refinement of the log-likelihood) and the next grid is
   centred on it (the shift grid is offset by the sub-step part of the refined shift and the
   angle grid by the sub-step part of the refined angle, so that a sharp posterior sits
   exactly on a grid point); M step.  All at the band of the E step, except the last M step,
   which is also done at the full band of :attr:`basis`.
3. The likelihood does not fix the frame (a rigid motion of the average and of all poses
   together leaves it unchanged): the final average is registered (rotation + shift, FTK)
   onto ``A_0``, i.e. into the frame of the reference, and the poses are composed with that
   motion (``R_b T_t R_a T_s = R_(a+b) T_(s + Rot(-a) t)``).

The alignment reported for member j is its refined MAP pose (mirror, shift, rotation, the
convention of :mod:`classavg.averaging.base`), and its score the posterior probability of
its MAP grid point (1 for a certain alignment, ``1 / grid size`` for a flat posterior).

Stackers: a linear stacker (the mean, or a weighted mean) gives the EM average above with its
member weights.  A robust (non-linear) stacker cannot be combined with soft assignments: the
members are then transformed by their MAP alignments and stacked as by any
:class:`~classavg.averaging.base.AligningAverager2D` (EM still provides better alignments
than aligning to the noisy reference image).  The same holds for a CTF-corrected average
(``ctf_correction`` of :class:`~classavg.averaging.base.AligningAverager2D`): the raw members
are combined at their MAP poses; the E step itself does not model the CTF (it compares the
images as given, e.g. phase flipped).

References
----------
.. [1] S. H. W. Scheres, "RELION: implementation of a Bayesian approach to cryo-EM structure
   determination", J. Struct. Biol. 180, 519-530 (2012).
.. [2] F. J. Sigworth, "A maximum-likelihood approach to single-particle image refinement",
   J. Struct. Biol. 122, 328-339 (1998).
.. [3] A. Rangan, M. Spivak, J. Andén, A. Barnett, "Factorization of the translation kernel
   for fast rigid image alignment", Inverse Problems 36, 024001 (2020).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft

from .._grid import disk_mask
from .._threads import single_thread_blas
from .._validation import check_bool, check_float, check_int
from ..basis._bessel import barycentric_matrix, chebyshev_nodes
from .base import AligningAverager2D
from .ftk import (
    PolarGrid,
    PolarSampler,
    TranslationKernel,
    _Aligner,
    _check_bandlimit,
    _STENCIL_MARGIN,
    _Correlator,
    corner_variance,
    default_radius,
    disk_points,
    snr_weights,
)

__all__ = ["EMAverager2D"]

logger = logging.getLogger(__name__)


def _rot2(alpha):
    c, s = np.cos(alpha), np.sin(alpha)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _compose(alpha, s, beta, t):
    """Pose of ``R_beta T_t R_alpha T_s`` as ``R_(alpha+beta) T_(s + Rot(-alpha) t)``.

    ``alpha`` (c, m), ``s`` (c, m, 2); ``beta`` (c,), ``t`` (c, 2).
    """
    tt = np.einsum("cmij,cj->cmi", _rot2(-alpha), t)
    return alpha + beta[:, None], s + tt


class EMAverager2D(AligningAverager2D):
    """Class averages by expectation-maximization over member rotations and shifts.

    See the module docstring for the model, the algorithm and the noise estimate.

    Parameters
    ----------
    src : ImageSource
    basis : FourierBesselBasis2D, optional
        Basis of the averages (built from ``src.L`` when not given).
    image_stacker : ImageStacker, optional
        Default :class:`~classavg.averaging.stackers.MeanImageStacker` (the EM average);
        a non-linear stacker stacks the members at their MAP alignments instead.
    n_iter : int, optional
        EM iterations after the reference-aligned start (default 5).
    radius : float, optional
        Radius of the disk of shifts, pixels (default
        :func:`~classavg.averaging.ftk.default_radius`, 2 px at L = 64).
    n_angles : int, optional
        Rotations of the posterior grid.  Default: 180 (2 degrees), or more when the angular
        band of the E step needs it (``n_angles > 2 K``, K about ``bandlimit * pi * L / 2``).
        The grid is re-centred on the refined MAP angle of every member at every iteration.
    shift_step : float, optional
        Spacing of the shift grid, pixels (default 0.5).
    bandlimit : float, optional
        Highest frequency of the E step (the likelihood), as a fraction of Nyquist, in (0, 1]
        (default 0.5).  The average itself is formed at the full band of :attr:`basis`.
    noise_var : float, optional
        White-noise variance per pixel (of the images as given).  None (default): estimated
        for every class at every iteration from the expected residuals (module docstring).
    leave_one_out : bool, optional
        Compare every member with the average without its own contribution in the E step
        (default True; module docstring).
    eps : float, optional
        Accuracy of the translation-kernel factorization of the E step and the refinement
        (default 3e-4, see :class:`~classavg.averaging.ftk.FTKAverager2D`); the full-band
        factorization of the last M step uses ``max(eps, 1e-3)`` (a relative error of the
        average, far below its noise).
    batch_size : int, optional
        Classes per batch (default 16); the posteriors of 8 classes at a time are held in
        memory (``8 * m * n_shifts * n_angles`` floats, 28 MB for m = 50 at the defaults).
    ctf_correction, image_source, wiener_snr : optional
        CTF-aware averages of the raw members (default None: the images of ``src`` as they
        are); see :meth:`~classavg.averaging.base.AligningAverager2D.set_ctf_correction`.

    Attributes
    ----------
    alignment : AlignmentResult or None
        Set by :meth:`average`: the refined MAP pose of every member against the final
        average, and as score the posterior probability of its MAP grid point.
    noise_variances : ndarray, shape (k,), or None
        Set by :meth:`average` and :meth:`align`: the final noise variance estimate (per
        pixel) of every class, or ``noise_var``.
    kernel, kernel_full : TranslationKernel
        Factorizations at the band of the E step and at the full band of the basis.
    grid : PolarGrid
        Polar grid of the E step.
    shift_grid : ndarray, shape (S, 2)
        The grid of shifts (before the per-member sub-step offset).

    Notes
    -----
    Cost per member and iteration: two FTK factors (the E step and its leave-one-out term),
    the spectra and angle FFTs of every grid shift (49 at the defaults), their adjoints for
    the M step, one refinement; then once per class the full-band M step (with a NUFFT of
    every member on the full-band grid).  Measured at L = 64, 50 members, the defaults
    (``H = 61``, 49 shifts x 180 angles), one core: about 0.12 s per class for :meth:`align`
    and 0.22 s for :meth:`average`, 8-10 times :class:`~classavg.averaging.ftk.FTKAverager2D`.

    References
    ----------
    .. [1] S. H. W. Scheres, "RELION: implementation of a Bayesian approach to cryo-EM
       structure determination", J. Struct. Biol. 180, 519-530 (2012).
    """

    #: No Dask client: the per-class noise variances of the E steps are gathered on the
    #: averager itself (:attr:`noise_variances`), which worker copies would not return.
    tags = AligningAverager2D.tags.extend(client=False)

    #: Classes whose posteriors are held at once.
    _chunk_classes = 8
    #: True while :meth:`average` runs (the full-band M step is needed only then).
    _averaging = False

    def __init__(self, src, *, basis=None, image_stacker=None, n_iter=5, radius=None,
                 n_angles=None, shift_step=0.5, bandlimit=0.5, noise_var=None,
                 leave_one_out=True, eps=3e-4, batch_size=16,
                 ctf_correction=None, image_source=None, wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size,
                         ctf_correction=ctf_correction, image_source=image_source,
                         wiener_snr=wiener_snr)
        L = src.L
        self.n_iter = check_int("n_iter", n_iter, min=1)
        if radius is None:
            radius = default_radius(L)
        self.radius = check_float("radius", radius, min=0.0, max=L / 4)
        self.n_angles = check_int("n_angles", n_angles, min=4, allow_none=True)
        self.shift_step = check_float("shift_step", shift_step, min=0.0, min_inclusive=False,
                                      max=max(self.radius, 1.0))
        self.bandlimit = _check_bandlimit(bandlimit)
        self.noise_var = check_float("noise_var", noise_var, min=0.0, min_inclusive=False,
                                     allow_none=True)
        self.leave_one_out = check_bool("leave_one_out", leave_one_out)
        self.eps = check_float("eps", eps, min=1e-8, max=0.1)
        self.noise_variances = None

        # -- the alignment band: E step, refinement, registration --------------------------------
        rho_max = self.bandlimit * np.pi
        # Grid points lie within radius + shift_step / sqrt(2) (sub-step offsets); the
        # refinement stencil reaches _STENCIL_MARGIN further.
        # Without shifts (radius 0) the kernels have rank 1: rotations only.
        d_max = self.radius + _STENCIL_MARGIN + self.shift_step if self.radius > 0 else 1e-9
        self.kernel = TranslationKernel(rho_max, d_max, eps=self.eps)
        self.grid = PolarGrid(L, rho_max, extra_order=self.kernel.max_order, d_max=d_max)
        self._cor = _Correlator(self.kernel, self.grid.K, self.grid.rho, self.grid.K_f)
        if self.n_angles is None:
            # 2-degree steps, finer when needed to resolve the angular band (n > 2 K).
            self.n_angles = max(180, scipy.fft.next_fast_len(2 * self.grid.K + 2))
        self._aligner = _Aligner(self._cor, self.radius, self.n_angles, 3, 0.5)
        self.shift_grid = disk_points(self.radius, self.shift_step)
        # Expected |noise|^2 per radial node for unit white noise: n_disk * w_j rho_j / 2 pi.
        self._dof = float(disk_mask(L, L / 2).sum()) * self.grid.weights
        # -- the full band of the basis: the final M step -----------------------------------------
        # Chebyshev radial nodes as in the basis (spectrally accurate interpolation to the
        # Bessel zeros), the basis' angular band kmax, unweighted coefficients.
        bas = self.basis
        rho_full = bas.bandlimit * np.pi
        # (the last M step and the final registration only: grid points and a small shift)
        self.kernel_full = TranslationKernel(
            rho_full, self.radius + self.shift_step if self.radius > 0 else 1e-9,
            eps=max(self.eps, 1e-3))
        Kb = int(bas.kmax)
        self._Kfull_f = Kb + self.kernel_full.max_order
        n_r = int(np.ceil(0.75 * bas.radius * rho_full)) + 12
        rho_c, w_c = chebyshev_nodes(n_r, 0.0, rho_full)
        n_phi = 2 * scipy.fft.next_fast_len((Kb + self._Kfull_f + 12) // 2 + 1)
        self._full = PolarSampler(L, rho_c, n_phi, self._Kfull_f,
                                  eps=max(float(bas.eps), 1e-6))
        self._cor_full = _Correlator(self.kernel_full, Kb, rho_c, self._Kfull_f)
        # Fourier-Bessel coefficients a_kq = N_kq (-i)^k F_k(lam_kq / R) (basis docstring) by
        # barycentric interpolation in rho, one (n_r, n_q(k)) matrix per k.
        Bz = barycentric_matrix(rho_c, w_c, bas.zeros / bas.radius)
        fwd = (bas.norms * (-1j) ** (bas.k % 4))[:, None] * Bz
        self._to_fb = [np.ascontiguousarray(fwd[sl].T.astype(np.complex64))
                       for sl in bas.k_slices]
        logger.debug("EM: %r, %r, full band %r, %d shifts", self.kernel, self.grid,
                     self.kernel_full, len(self.shift_grid))

    def _repr_fields(self):
        return [f"n_iter={self.n_iter}", f"radius={self.radius:g}",
                f"n_angles={self.n_angles}", f"shift_step={self.shift_step:g}",
                f"bandlimit={self.bandlimit:g}", f"noise_var={self.noise_var!r}"]

    # -- helpers ---------------------------------------------------------------------------------
    def _member_weights(self, m):
        st = self.image_stacker
        if st.linear:
            return np.asarray(st(np.eye(m), axis=0), dtype=np.float64)
        return np.full(m, 1.0 / m)

    @staticmethod
    def _node_power(A, K):
        """Band power per radial node of reference-layout coefficients (c, K + 1, rho) (real
        images: ``|A_0|^2 + 2 sum_k>0 |A_k|^2``) -> (c, rho)."""
        e = np.abs(A[:, :K + 1]) ** 2
        return e[:, 0] + 2 * e[:, 1:].sum(axis=1)

    def _noise(self, xn2, wc, A):
        """White-noise variance per class (c, 1) from the expected residuals (module
        docstring), or the given ``noise_var``: ``(sum_j w_j ||X_j||^2 - ||A||^2) / dof``."""
        c = A.shape[0]
        if self.noise_var is not None:
            return np.full((c, 1), self.noise_var)
        data = np.einsum("cm,cmr->c", wc, xn2)
        res = data - self._node_power(A, self._cor.K).sum(axis=1)
        return (np.maximum(res, 1e-9 * data + 1e-30) / self._dof.sum())[:, None]

    def _wiener(self, A, sigma2, wc):
        """Per-node Wiener factor of the average (c, rho): ``max(0, 1 - N_j / P_j)`` with
        ``P_j = |A|^2`` at node j and ``N_j = sigma^2 dof_j sum_j w_j^2`` the power of the
        average's noise there (RELION's tau^2 regularisation of the reference)."""
        P = self._node_power(A, self._cor.K)
        N = sigma2 * self._dof[None, :] * np.sum(wc ** 2, axis=1)[:, None]
        return np.clip(1.0 - N / np.maximum(P, 1e-30), 0.0, 1.0)

    def _delta_gamma(self, cor, alpha, s, w):
        """``Gamma`` of a hard assignment: ``w_j W_h(s_j) exp(-i k alpha_j)``, (c, m, H, K+1)."""
        W = cor.kernel.shift_weights(s)                                  # (c, m, H)
        E = np.exp(-1j * alpha[..., None] * np.arange(cor.K + 1))        # (c, m, K+1)
        return (w[..., None, None] * W[..., :, None] * E[..., None, :]).astype(np.complex64)

    def _register(self, A, A0):
        """Rotation and shift ``(beta, t)`` that bring averages ``A`` onto ``A0`` (both (c, K+1,
        rho), alignment grid)."""
        cor = self._cor
        M = cor.factors(A0, cor.as_member(A))                             # (c, 1, H, K+1)
        beta, t, _ = self._aligner.align(M)
        return beta[:, 0], t[:, 0]

    # -- EM for a chunk of classes ---------------------------------------------------------------
    def _em_chunk(self, G, noise, inv, refl, full=None):
        """EM for classes ``inv`` (c, m) (rows of ``G``, the alignment-grid coefficients of the
        distinct images, and of ``noise``, their corner variances) with mirror flags
        ``refl``.  ``full = (Gf, inv_f)``: full-band coefficients and member rows for the
        final M step (None: alignment band only).

        Returns poses ``alpha`` (c, m), ``s`` (c, m, 2), scores (c, m), the full-band average
        (c, kmax + 1, n_r) or None, and the noise variance (c,)."""
        cor, ker = self._cor, self.kernel
        c, m = inv.shape
        K = cor.K
        w = self._member_weights(m)
        wc = np.broadcast_to(w, (c, m))
        B = cor.members(G, inv, refl)                                    # (c, K', m, rho)
        off = self.grid.K_f
        xn2 = np.sum(np.abs(G[:, off - K: off + K + 1]) ** 2, axis=1)[inv]  # (c, m, rho)

        # 1. hard alignment to the reference image (SNR-weighted, as FTKAverager2D), A_0.  Gam
        # holds every member's (unweighted) transform: a delta here, the posterior below.
        wsnr = snr_weights(xn2, noise[inv], self.grid).astype(np.float32)     # (c, rho)
        Aref = cor.reference_slice(G[inv[:, 0]]) * wsnr[:, None, :]
        alpha, s, _ = self._aligner.align(cor.factors(Aref, B))
        Gam = self._delta_gamma(cor, alpha, s, np.ones((c, m)))
        wg = wc[..., None, None].astype(np.float32)
        A0 = cor.synthesize(B, Gam * wg)
        A = A0
        sigma2 = self._noise(xn2, wc, A)                                  # (c, 1)
        # (a single member has nothing to be compared with but itself)
        loo = self.leave_one_out and m > 1

        S0 = self.shift_grid                                             # (S, 2)
        na = self.n_angles
        step_a = 2 * np.pi / na
        kk = np.arange(K + 1)
        for it in range(self.n_iter):
            last = it == self.n_iter - 1
            # Grids centred on the current refined poses (sub-step offsets).
            frac = s - self.shift_step * np.round(s / self.shift_step)   # (c, m, 2)
            da = alpha - step_a * np.round(alpha / step_a)               # (c, m)
            pts = S0[None, None] + frac[:, :, None, :]                   # (c, m, S, 2)
            W = ker.shift_weights(pts).astype(np.complex64)              # (c, m, S, H)
            rot = np.exp(-1j * da[..., None] * kk).astype(np.complex64)  # (c, m, K+1)

            # E step: log-likelihood <R T X_j, A - w_j Z_j> / sigma^2 for every grid pose, the
            # member compared with the average without its own contribution w_j Z_j
            # (leave-one-out; 1 / sigma^2 folded into the references).
            isig = (self._wiener(A, sigma2, wc) / sigma2).astype(np.float32)[:, None, :]
            M = cor.factors((A * isig).astype(np.complex64), B)          # (c, m, H, K+1)
            if loo:
                Z = cor.synthesize_members(B, Gam)                       # (c, m, K+1, rho)
                M -= cor.self_factors(Z * isig[:, None], B) * wg
            spec = np.matmul(W, M) * rot[:, :, None, :]                  # (c, m, S, K+1)
            C = cor.grid_correlation(spec, na)                           # (c, m, S, na)
            logp = C
            logp -= logp.max(axis=(2, 3), keepdims=True)
            gam = np.exp(logp, out=logp)
            gam /= gam.sum(axis=(2, 3), keepdims=True)
            flat = gam.reshape(c, m, -1)
            best = flat.argmax(axis=2)
            score = np.take_along_axis(flat, best[..., None], 2)[..., 0]
            si, ai = np.divmod(best, na)
            a_map = ai * step_a + da
            s_map = np.take_along_axis(pts, si[..., None, None].repeat(2, -1), 2)[:, :, 0]
            alpha, s = self._aligner.refine(M, a_map, s_map)

            # M step: Gam = sum_s W_h(s) sum_alpha gamma(alpha, s) exp(-i k alpha).
            gt = scipy.fft.rfft(gam, axis=3, workers=1)                  # (c, m, S, na//2+1)
            g = self._angle_dft(gt, na, K) * rot[:, :, None, :]
            Gam = np.matmul(np.ascontiguousarray(np.swapaxes(W, 2, 3)), g)
            A = cor.synthesize(B, Gam * wg)
            if last and full is not None:
                Kb = self._cor_full.K
                Wf = self.kernel_full.shift_weights(pts).astype(np.complex64)
                rotf = np.exp(-1j * da[..., None] * np.arange(Kb + 1)).astype(np.complex64)
                gf = self._angle_dft(gt, na, Kb) * rotf[:, :, None, :]
                Gf_ = np.matmul(np.ascontiguousarray(np.swapaxes(Wf, 2, 3)), gf) * wg
                Gf, inv_f = full
                Af = self._cor_full.synthesize(self._cor_full.members(Gf, inv_f, refl), Gf_)
            sigma2 = self._noise(xn2, wc, A)

        # Keep the frame of the reference: register the average onto A_0 (the likelihood is
        # invariant to a rigid motion of the average and of all poses together).
        beta, t = self._register(A, A0)
        alpha, s = _compose(alpha, s, beta, t)
        one = np.ones((c, 1))
        if full is not None:
            Af = self._cor_full.synthesize(self._cor_full.as_member(Af),
                                           self._delta_gamma(self._cor_full, beta[:, None],
                                                             t[:, None], one))
        sigma2 = self._noise(xn2, wc, A)
        if full is None:
            Af = None
        return alpha, s, score, Af, sigma2[:, 0]

    @staticmethod
    def _angle_dft(gt, na, K):
        """``sum_m gamma_m exp(-i k alpha_m)`` for k = 0..K from ``gt = rfft(gamma)`` (na
        angles); the DFT is periodic in k with period ``na`` and Hermitian."""
        k = np.arange(K + 1) % na
        hi = k > na // 2
        out = gt[..., np.where(hi, na - k, k)]
        if hi.any():
            out[..., hi] = np.conj(out[..., hi])
        return out

    def _fb_coefficients(self, Z):
        """Fourier-Bessel coefficients (c, count) from full-band angular coefficients
        ``Z`` (c, kmax + 1, n_r) at the Chebyshev nodes."""
        out = np.empty((Z.shape[0], self.basis.count), dtype=np.complex64)
        for k, sl in enumerate(self.basis.k_slices):
            out[:, sl] = Z[:, k, :] @ self._to_fb[k]
        return out

    # -- AligningAverager2D hooks ----------------------------------------------------------------
    def _align_batch(self, batch):
        G = self.grid.coefficients(batch.images)
        corner = corner_variance(batch.images)
        b, m = batch.indices.shape
        rot = np.zeros((b, m))
        sh = np.zeros((b, m, 2))
        sc = np.zeros((b, m))
        noise = np.zeros(b)
        # The EM average is needed only by average() with a linear stacker and no CTF
        # correction (a CTF-corrected average stacks the raw members at their MAP poses).
        want = (self._averaging and self.image_stacker.linear
                and getattr(self, "ctf_correction", None) is None)
        avg = None
        if want:
            avg = np.zeros((b, self._cor_full.K + 1, self._full.n_rho), dtype=np.complex64)
        for c0 in range(0, b, self._chunk_classes):
            sl = slice(c0, c0 + self._chunk_classes)
            inv = batch.inverse[sl]
            full = None
            if want:
                u, inv_f = np.unique(inv, return_inverse=True)
                full = (self._full.coefficients(batch.images[u]), inv_f.reshape(inv.shape))
            with single_thread_blas():
                a, s, score, Af, s2 = self._em_chunk(G, corner, inv, batch.refl[sl], full)
            rot[sl], sh[sl], sc[sl], noise[sl] = a, s, score, s2
            if want:
                avg[sl] = Af
        batch._em_average = avg
        self._noise_parts.append(noise)
        return rot, sh, sc

    def _half_stack_batch(self, batch, alignment):
        # The halves of an EM class are the means of its members at their MAP poses (the
        # hard-assignment average of the same alignment; averaging/half_sets.py).
        return AligningAverager2D._stack_batch(self, batch, alignment)

    def _stack_batch(self, batch, alignment):
        if not self.image_stacker.linear:
            return super()._stack_batch(batch, alignment)
        coef = self._fb_coefficients(batch._em_average).astype(self.basis.complex_dtype)
        return self.transformer.evaluate(coef)

    def align(self, class_indices, class_refl, *, classes=None):
        """EM alignment of the members of each row (MAP poses against the EM average).

        Parameters and returns as :meth:`AligningAverager2D.align`; scores are the posterior
        probabilities of the MAP grid points.  :attr:`noise_variances` is set.  (Without
        :meth:`average` the full-band M step is skipped.)
        """
        if self._averaging:                   # called by AligningAverager2D.average
            return super().align(class_indices, class_refl, classes=classes)
        self._noise_parts = []
        out = super().align(class_indices, class_refl, classes=classes)
        self.noise_variances = np.concatenate(self._noise_parts or [np.zeros(0)])
        return out

    def average(self, class_indices, class_refl, *, classes=None):
        """Class averages by EM, one per row, in the frame of its reference (column 0).

        Parameters and returns as :meth:`AligningAverager2D.average`; :attr:`alignment`
        holds the MAP poses and posterior scores, :attr:`noise_variances` the noise variance
        of every class.
        """
        self._averaging = True
        self._noise_parts = []
        try:
            out = super().average(class_indices, class_refl, classes=classes)
        finally:
            self._averaging = False
        self.noise_variances = np.concatenate(self._noise_parts or [np.zeros(0)])
        return out
