r"""Joint rotation and shift alignment with the factorization of the translation kernel (FTK).

Rangan, Spivak, Andén & Barnett [1]_ observed that, in polar Fourier (Fourier-Bessel)
coordinates, the kernel of a translation has a low-rank factorization, so that the inner
products of one image with *all* rotations and *many* translations of another cost a few
rank-``H`` matrix products and one FFT over the angle instead of one re-expansion per shift.
This module derives, implements and uses that idea; the derivation below is self-contained.

Derivation
----------
*Notation.*  ``F(w) = sum_x f(x) exp(i w . x)`` is the Fourier transform of the image ``f``
(the sign of :class:`~classavg.basis.FourierBesselBasis2D`), ``w = rho (cos phi, sin phi)`` in
radians per pixel, and ``F(rho, phi) = sum_k F_k(rho) exp(i k phi)`` its angular Fourier
series.  By Parseval, the pixel inner product restricted to the frequency disk
``rho <= rho_max`` is

.. math::

    \langle f, g \rangle = \frac{1}{(2\pi)^2} \int_{|w| \le \rho_{max}} \overline{F(w)} G(w)\, dw
      = \sum_{k \in \mathbb{Z}} \int_0^{\rho_{max}} \overline{F_k(\rho)} G_k(\rho)
        \frac{\rho\, d\rho}{2\pi}
      \approx \sum_k \sum_j \overline{\tilde F_k(\rho_j)} \tilde G_k(\rho_j),

with Gauss-Legendre nodes ``rho_j`` and the weights folded in,
``tilde F_k(rho_j) = sqrt(w_j rho_j / 2 pi) F_k(rho_j)``.  For real images
``F_{-k} = (-1)^k conj(F_k)``, so only ``k >= 0`` of the reference is kept.

*Transforms* (``docs/conventions.md``).  Mirroring ``y -> -y`` maps ``F_k`` to ``F_{-k}``;
translating by ``s = d (cos phi_s, sin phi_s)`` (``f'(x) = f(x - s)``) multiplies ``F`` by
``exp(i w . s) = exp(i rho d cos(phi - phi_s))``; rotating counter-clockwise by ``alpha``
multiplies ``F_k`` by ``exp(-i k alpha)``.

*Translation in angular frequency.*  The Jacobi-Anger expansion
``exp(i z cos t) = sum_n i^n J_n(z) exp(i n t)`` turns the translation into a convolution over
the angular frequency::

    (T_s B)_k(rho) = sum_n i^n J_n(rho d) exp(-i n phi_s) B_{k-n}(rho).

*Factorization.*  For each Bessel order ``n >= 0`` the kernel ``J_n(rho d)`` on
``[0, rho_max] x [0, d_max]`` (measures ``rho d rho`` and ``d dd``, i.e. the frequency disk and
the disk of shifts) has a rapidly decaying singular value decomposition

.. math::

    J_n(\rho d) \approx \sum_{l} U_{nl}(\rho)\, \sigma_{nl}\, V_{nl}(d),

computed once from a fine quadrature of both variables (the "operator SVD" of [1]_).
``J_{-n} = (-1)^n J_n`` gives the negative orders.  The terms with
``sigma_nl >= eps * sigma_00`` are kept: the relative operator-norm error of the translation
is then at most ``eps``, and the rank ``H`` grows like ``(rho_max d_max + log(1 / eps))^2``
(as proved in [1]_): ``H = 23, 34, 51`` for ``rho_max d_max = pi, 3 pi / 2, 2 pi`` at
``eps = 1e-3``.  With the index ``h = (n, l)`` and the *shift weights*
``W_h(s) = i^n sigma_h V_h(|s|) exp(-i n phi_s)`` (``V_h`` interpolated in ``d`` on Chebyshev
nodes), the correlation of a reference ``A`` with the translated and rotated member ``B`` is

.. math::

    C(\alpha, s) = \langle R_\alpha T_s B, A \rangle
      = \mathrm{Re} \sum_{k \ge 0} \epsilon_k\, e^{-ik\alpha} \sum_h W_h(s)\, M_{h,k},
    \qquad
    M_{h,k} = \sum_j \overline{\tilde A_k(\rho_j)}\, U_h(\rho_j)\, \tilde B_{k-n_h}(\rho_j),

with ``epsilon_0 = 1`` and ``epsilon_k = 2`` for ``k > 0``.  ``M`` (``H x (K + 1)`` per pair)
depends on the images only, ``W`` on the shift only.  Hence

1. ``M`` for every member of a class: one batched matrix product per member angular frequency
   ``k' = k - n`` over the radial index (``O(H K n_rho)`` per pair, ``K ~ rho_max L / 2``);
2. ``c_k(s) = sum_h W_h(s) M_{h,k}`` for a whole grid of shifts: one matrix product
   (``O(N_s H K)``);
3. all rotations at once: ``C(alpha_m, s) = n * irfft(conj(c(s)))`` on ``n_angles`` angles;
4. any *off-grid* shift costs only ``O(H K)``: the sub-pixel refinement evaluates ``C`` at
   arbitrary real shifts exactly (to the factorization accuracy), with no re-expansion.

The cost is that of ``H`` rotation-only searches, independent of the number of shifts tried.

Search and refinement
---------------------
1. Coarse: integer shifts in the disk ``|s| <= radius + 1/2`` (so that every shift of the
   disk of radius ``radius`` is within ``sqrt(2)/2`` px of one, also at its edge) times
   ``n_angles`` rotations (all rotations of a shift by one inverse FFT); the best pair per
   member.
2. Refinement (``n_refine`` rounds): the correlation on the 27-point stencil
   ``(alpha + {-1, 0, 1} delta, s + {-1, 0, 1}^2 h)`` (``h = 0.75`` px and ``delta`` two grid
   steps at first) is fitted by a quadratic in ``(alpha, s_x, s_y)`` (least squares); its
   maximum, restricted to the stencil box, is the new estimate (where the fit is not concave:
   the best stencil point).  A trust-region rule shrinks the stencil by ``refine_factor`` only
   when the step lands inside it, so that an estimate further off than the stencil (a shift
   error partly compensated by the angle on the coarse grid) moves first.  Every stencil
   point is an off-grid shift: ``O(H K)`` operations with the factorization.  The shift is
   kept in the disk of radius ``radius + 1/2``.

On noise-free 64 x 64 images the errors are a few hundredths of a pixel and of a degree or
less (the factorization error dominates; ``eps = 1e-5`` gives ~1e-3).

Noisy images: spectral SNR weighting
------------------------------------
With ``snr_weighting`` (default) every radial node of the reference is multiplied by the
class's spectral SNR weight ``S / (S + N)`` (:func:`snr_weights`): ``N`` is the power of white
noise at that node (the noise variance from the pixels outside the disk,
:func:`corner_variance`, times ``n_disk w_j rho_j / 2 pi``) and ``S + N`` the mean power of
the class members there.  This Wiener filter of the correlation (the same as
:class:`~classavg.averaging.bfsr.BFSRAverager2D`'s) keeps frequencies without signal from
adding noise to the search; it costs nothing (a diagonal factor on the reference side of
``M``) and does not change the results on clean images (weights 1).

Cost
----
Per member, with ``K ~ bandlimit * pi * L / 2`` angular frequencies, ``n_rho ~ K / 2`` radial
nodes and ``N_s`` coarse shifts: ``M`` costs ``(K + 2N) n_rho H``, the coarse spectra
``N_s H K`` and ``N_s`` FFTs of length ``n_angles``, the refinement ``27 H K`` per round.
At L = 64, ``bandlimit = 0.5``, ``radius = 2``, ``eps = 3e-4``: ``H = 53``, ``K = 55``,
``n_rho = 32``, 21 coarse shifts: about 2 Mflop per member (half of it for ``M``), about as
much time as the NUFFT that samples the image (about 0.1 ms per image).

Band limit
----------
The alignment uses the frequencies ``rho <= bandlimit * pi`` (default half the Nyquist
frequency): the correlation peak of low-passed images is at the same place, the search is
about ``1 / bandlimit^3`` times cheaper, and at low SNR the high frequencies mostly add noise.
Averages (:meth:`~classavg.averaging.base.AligningAverager2D.average`) are formed at the full
band of :attr:`basis` whatever ``bandlimit``.

Module layout
-------------
:class:`TranslationKernel`, :class:`PolarSampler` and :class:`PolarGrid` are defined in
``_ftk_kernel``, the correlation engine in ``_ftk_correlator``, the search and refinement
helpers (:func:`disk_points`, :func:`snr_weights`, ...) in ``_ftk_search``; the public names
are re-exported here.

References
----------
.. [1] A. Rangan, M. Spivak, J. Andén, A. Barnett, "Factorization of the translation kernel
   for fast rigid image alignment", Inverse Problems 36, 024001 (2020), arXiv:1905.12317.
.. [2] A. H. Barnett, J. Magland, L. af Klinteberg, "A parallel nonuniform fast Fourier
   transform library based on an 'exponential of semicircle' kernel", SIAM J. Sci. Comput.
   41(5), C479-C504 (2019).
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import check_bool, check_float, check_int
from ._ftk_correlator import _Correlator
from .._threads import single_thread_blas
from ._ftk_kernel import PolarGrid, PolarSampler, TranslationKernel
from ._ftk_search import (
    _STENCIL_MARGIN,
    SHIFT_TOLERANCE,  # noqa: F401  (re-exported)
    _Aligner,
    _check_bandlimit,
    corner_variance,
    default_radius,
    disk_points,
    snr_weights,
)
from .base import AligningAverager2D

__all__ = ["FTKAverager2D", "TranslationKernel", "PolarSampler", "PolarGrid", "default_radius",
           "disk_points", "corner_variance", "snr_weights"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The averager
# ---------------------------------------------------------------------------------------------
class FTKAverager2D(AligningAverager2D):
    """Rotation + sub-pixel shift alignment with the factorized translation kernel (FTK).

    Every member is aligned to its class reference by maximising the correlation
    ``<R_alpha T_s X_j, X_ref>`` over all rotations ``alpha`` and the shifts ``|s| <= radius``
    (after the mirror of ``class_refl``), computed with the rank-``H`` factorization of the
    translation kernel of Rangan et al. [1]_ (module docstring): a coarse search (integer
    shifts x ``n_angles`` rotations, all rotations at once by an FFT), then a quadratic-fit
    refinement to sub-pixel and sub-degree accuracy at arbitrary real shifts.  The aligned
    members are stacked by :meth:`average` as for every
    :class:`~classavg.averaging.base.AligningAverager2D`.

    Parameters
    ----------
    src : ImageSource
    basis : FourierBesselBasis2D, optional
        Basis of the averages (built from ``src.L`` when not given).
    image_stacker : ImageStacker, optional
        Default :class:`~classavg.averaging.stackers.MeanImageStacker`.
    radius : float, optional
        Largest shift searched, pixels (default :func:`default_radius`: ``max(2, ceil(L / 32))``,
        2 px at L = 64); the search covers ``|s| <= radius + 0.5`` (``SHIFT_TOLERANCE``) so
        that shifts of length ``radius`` are found as accurately as shorter ones.  0 searches
        rotations only.
    n_angles : int, optional
        Rotations of the coarse search (default 360, a 1-degree grid); the refinement is
        continuous.
    bandlimit : float, optional
        Highest frequency used for alignment as a fraction of Nyquist, in (0, 1] (default 0.5).
    snr_weighting : bool, optional
        Weight every radial frequency of the reference by the class's spectral SNR
        ``S / (S + N)`` (default True; :func:`snr_weights`), a Wiener filter of the
        correlation: ``N`` from the variance of the pixels outside the disk of radius
        ``L / 2`` (:func:`corner_variance`), ``S + N`` the mean power of the class members at
        that frequency.  Frequencies without signal then do not add noise to the search.
        Clean images give weights 1.
    eps : float, optional
        Relative accuracy of the translation-kernel factorization (default 3e-4); the rank
        ``H`` grows like ``log(1/eps)^2``.  For particles that are nearly round the
        correlation is flat along a coupled rotation + shift direction, and errors of 1e-3
        of the correlation can move its peak by a degree; 3e-4 keeps it within 0.1 degree.
    n_refine : int, optional
        Refinement rounds (default 3; 0: grid search only).
    refine_factor : float, optional
        Stencil shrink factor per refinement round, in (0, 1) (default 0.5).
    batch_size : int, optional
        Classes per batch (default 64); memory is bounded by the batch.
    ctf_correction, image_source, wiener_snr : optional
        CTF-aware averages of the raw members (default None: the images of ``src`` as they
        are); see :meth:`~classavg.averaging.base.AligningAverager2D.set_ctf_correction`.

    Attributes
    ----------
    kernel : TranslationKernel
        The factorization (``kernel.rank`` is ``H``).
    grid : PolarGrid
        The polar grid of the alignment.
    alignment : AlignmentResult or None
        Set by :meth:`average`.  Scores are normalised correlations
        ``C / (||X_ref|| ||X_j||)`` within the alignment band (in the inner product weighted
        by the SNR weights), clipped to ``[-1, 1]``.

    Notes
    -----
    Memory: the polar coefficients of the distinct images of a batch (``(2 K_f + 1) n_rho``
    complex numbers each, 33 KB at L = 64: about 100 MB for 64 classes of 50 distinct members)
    and the factors of 16 classes at a time (about 20 MB).  The work is single-threaded
    (one NUFFT thread; BLAS limited to one thread while aligning, since the stacked products
    of small matrices call BLAS once per matrix and threads only add synchronisation);
    parallelism belongs to the batches.  Measured at L = 64, 50 members, the defaults, one
    core: 9-11 s of CPU to align 1,000 classes (about 5,000 images per second).

    References
    ----------
    .. [1] A. Rangan, M. Spivak, J. Andén, A. Barnett, "Factorization of the translation
       kernel for fast rigid image alignment", Inverse Problems 36, 024001 (2020).
    """

    #: Classes processed together in the dense steps (bounds the working memory).
    _chunk_classes = 16

    def __init__(self, src, *, basis=None, image_stacker=None, radius=None, n_angles=360,
                 bandlimit=0.5, snr_weighting=True, eps=3e-4, n_refine=3, refine_factor=0.5,
                 batch_size=64, ctf_correction=None, image_source=None,
                 wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size,
                         ctf_correction=ctf_correction, image_source=image_source,
                         wiener_snr=wiener_snr)
        L = src.L
        if radius is None:
            radius = default_radius(L)
        self.radius = check_float("radius", radius, min=0.0, max=L / 4)
        self.n_angles = check_int("n_angles", n_angles, min=1)
        self.bandlimit = _check_bandlimit(bandlimit)
        self.snr_weighting = check_bool("snr_weighting", snr_weighting)
        self.eps = check_float("eps", eps, min=1e-8, max=0.1)
        self.n_refine = check_int("n_refine", n_refine, min=0)
        self.refine_factor = check_float("refine_factor", refine_factor, min=0.0, max=1.0,
                                         min_inclusive=False)
        if self.refine_factor >= 1.0:
            raise ValueError(f"refine_factor must be a number < 1, got {refine_factor!r}")
        rho_max = self.bandlimit * np.pi
        # Margin for the refinement stencil (up to sqrt(2) h0 = 1.41 px) around shifts at the
        # edge of the disk; without shifts the kernel has rank 1 (U = 1, n = 0): a
        # rotation-only search.
        d_max = self.radius + _STENCIL_MARGIN if self.radius > 0 else 1e-9
        self.kernel = TranslationKernel(rho_max, d_max, eps=self.eps)
        self.grid = PolarGrid(L, rho_max, extra_order=self.kernel.max_order, d_max=d_max)
        self._cor = _Correlator(self.kernel, self.grid.K, self.grid.rho, self.grid.K_f)
        self._aligner = _Aligner(self._cor, self.radius, self.n_angles, self.n_refine,
                                 self.refine_factor)
        logger.debug("FTK: %r, %r", self.kernel, self.grid)

    def _repr_fields(self):
        return [f"radius={self.radius:g}", f"n_angles={self.n_angles}",
                f"bandlimit={self.bandlimit:g}", f"eps={self.eps:g}", f"rank={self.kernel.rank}"]

    def _align_batch(self, batch):
        G = self.grid.coefficients(batch.images)                 # (u, 2K_f+1, n_rho)
        K, off = self.grid.K, self.grid.K_f
        power = np.sum(np.abs(G[:, off - K: off + K + 1]) ** 2, axis=1)   # (u, n_rho)
        noise = corner_variance(batch.images) if self.snr_weighting else None
        b, m = batch.indices.shape
        rot = np.zeros((b, m))
        sh = np.zeros((b, m, 2))
        sc = np.zeros((b, m))
        with single_thread_blas():
            self._align_chunks(batch, G, power, noise, rot, sh, sc)
        return rot, sh, sc

    def _align_chunks(self, batch, G, power, noise, rot, sh, sc):
        b = batch.indices.shape[0]
        cor = self._cor
        for c0 in range(0, b, self._chunk_classes):
            sl = slice(c0, c0 + self._chunk_classes)
            inv, refl = batch.inverse[sl], batch.refl[sl]
            P = power[inv]                                        # (c, m, n_rho)
            if noise is None:
                w = np.ones((inv.shape[0], self.grid.n_rho))
            else:
                w = snr_weights(P, noise[inv], self.grid)         # (c, n_rho)
            A = cor.reference_slice(G[inv[:, 0]]) * w[:, None, :].astype(np.float32)
            M = cor.factors(A, cor.members(G, inv, refl))         # (c, m, H, K+1)
            alpha, s, C = self._aligner.align(M)
            rot[sl], sh[sl] = alpha, s
            # normalised correlation in the weighted inner product <x, y>_w (Cauchy-Schwarz)
            nrm = np.sqrt(np.sum(w[:, None] * P[:, :1], -1) * np.sum(w[:, None] * P, -1))
            # (clipped: the factorization error can push a perfect match a little above 1)
            sc[sl] = np.clip(C / np.maximum(nrm, np.finfo(np.float64).tiny), -1.0, 1.0)
