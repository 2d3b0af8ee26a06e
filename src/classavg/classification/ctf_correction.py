"""CTF-corrected, denoised steerable coefficients by covariance Wiener filtering (CWF).

Images of the same view taken at different defoci look different: the CTF multiplies every
Fourier ring by a different, defocus-dependent factor.  Features computed from the raw
coefficients therefore cluster by defocus group as much as by view.  This module undoes the CTF
in the steerable Fourier-Bessel basis with the covariance Wiener filter of Bhamre, Zhang & Singer
[1]_, so that the classification sees estimates of the *clean* (CTF-free) coefficients.

Model
-----
Image ``i`` of defocus group ``g`` has Fourier-Bessel coefficients (``a_kq = <y, psi_kq>``,
:class:`~classavg.basis.FourierBesselBasis2D`)::

    a_i = H_g x_i + e_i,     E[e_i e_i^H] = sigma^2 I,

with ``x_i`` the coefficients of the clean projection and ``e_i`` white noise of pixel
variance ``sigma^2``.  A radially symmetric CTF ``c(rho)`` commutes with rotations, so ``H_g``
is block diagonal over the angular frequency k: one real symmetric ``(n_q(k), n_q(k))`` matrix
per frequency,

.. math::

    (H^{(k)}_g)_{q'q} = \\langle C_g \\psi_{kq}, \\psi_{kq'} \\rangle
        = \\frac{1}{L^2} \\sum_{\\omega \\in \\text{DFT grid}} c_g(|\\omega|)\\,
          \\Psi_{kq}(\\omega) \\overline{\\Psi_{kq'}(\\omega)}
        = \\sum_u S_g(u)\\, b_{kq}(\\rho_u)\\, b_{kq'}(\\rho_u),

where the CTF is applied on the ``L x L`` DFT grid (as :mod:`classavg.sources.transforms` and
:class:`~classavg.sources.Simulation` do), ``u`` runs over the rings of equal radius
``rho_u`` of that grid, ``S_g(u)`` is the sum of the CTF over the grid points of ring ``u``, and
``b_kq(rho) = (2 pi / L) N_kq int_0^R J_k(lam_kq r / R) J_k(2 pi rho r) r dr`` is the Hankel
transform of the (truncated) basis function in closed form (Lommel's integral).  Summing the
CTF over each ring is the exact angular average on the grid, so astigmatism enters through its
**rotationally averaged** CTF (the part that preserves k); the remainder, which couples k to
k +- 2, is ignored (it is small for the usual astigmatism of a few hundred Angstrom), and so
are the couplings k -> k +- 4 that the square box causes when the filtered image wraps around
its edges.  For projections of a particle that fits in the disk, the block model reproduces
the coefficients of pixel-space CTF filtering to 0.13 % (CTF) and 0.18 % (``|CTF|``) at
L = 64 and 32 (the tests state the tolerance), while the CTF itself changes them by 400 %.

Phase-flipped input (the usual classification input) has been multiplied by ``sign(CTF)``, so
its effective CTF is ``|CTF|``: pass ``phase_flipped=True`` (detected automatically by
:meth:`CTFCorrection.from_source` for a :class:`~classavg.sources.transforms.PhaseFlippedSource`
in the source chain or the RELION flag ``rlnCtfDataArePhaseFlipped``).  Phase flipping keeps the
noise white.

Estimation (per angular frequency k, as in [1]_)
-----------------------------------------------
* mean (k = 0 only; the other blocks have zero mean for uniform in-plane rotations): the least
  squares solution of ``sum_i H_i mu = a_i``: ``(sum_g n_g H_g^2) mu = sum_g H_g sum_{i in g} a_i``;
* group scales: images are often normalised one by one (background normalisation divides each
  image by its background standard deviation, which for data with little noise depends on the
  defocus, since the CTF spreads the particle into the background), so each group ``g`` gets
  an amplitude ``s_g`` (weighted mean 1), estimated together with ``mu`` by alternating least
  squares on the group means ``E[a_i] = s_g H_g mu``; ``H_g`` stands for ``s_g H_g`` below;
* covariance: the least-squares fit of ``H_i Sigma H_i + sigma^2 I`` to the sample second
  moments, whose normal equations are ``sum_g n_g M_g Sigma M_g = sum_g H_g (C_g - n_g
  sigma^2 I) H_g`` with ``M_g = H_g^2`` and ``C_g`` the group's sum of ``Re(b b^H)``, ``b = a -
  H_g mu`` (the real part symmetrises over mirroring, as in
  :class:`~classavg.classification.fspca.SteerablePCA`).  The system is solved by conjugate
  gradients with a preconditioner that is exact when the groups' ``M_g`` commute;
* shrinkage: deconvolution amplifies the estimation noise of ``Sigma`` by ``1 / CTF^2`` on
  each side, so ``Sigma`` is whitened with the mean squared CTF ``A = sum_g n_g M_g / n``
  (``A^(1/2) Sigma A^(1/2) + sigma^2 I`` is the sample covariance of the data when all groups
  share one CTF, with white noise), its eigenvalues are shrunk with the spiked-covariance
  (BBP) rule used by the steerable PCA -- components inside the noise bulk are dropped -- and
  the result is un-whitened: a positive semi-definite, low-rank ``Sigma``
  (``shrink=False`` only clips the negative eigenvalues);
* Wiener filter: ``x_hat = mu + Sigma H_g (H_g Sigma H_g + sigma^2 I)^{-1} (a - H_g mu)``, the
  posterior mean of ``x`` under a Gaussian prior: the clean coefficients, CTF-corrected
  and denoised, with the CTF zeros of one group filled in from the covariance learnt from all
  groups (``target="clean"``);
* ``target="mean_ctf2"`` returns ``A x_hat`` instead: every image as if it had been filtered
  by the mean squared CTF of the data set.  This is as defocus-independent as ``x_hat``, but
  weights each frequency by how well the data measure it: for a single CTF it is the Wiener
  estimate of ``H^2 x``, the matched filter ``H a`` of the observation, denoised.
  Correlation-based comparisons (bispectrum, rotational re-ranking) need this weighting: on
  the full deconvolution ``x_hat`` the low-frequency errors, amplified ~ 1 / CTF where the
  CTF is ~ the amplitude contrast for every defocus, dominate the distances.  Measured with
  :class:`~classavg.classification.rir.RIRClass2D` (phase flipped, 7 defocus groups,
  64 x 64, fraction of neighbours within 10 degrees): noise-free, n = 2,000, 10 neighbours:
  ``x_hat`` 90.2 %, ``A x_hat`` 99.99 % (no correction 67.7 %); SNR 1/16, n = 10,000,
  50 neighbours: ``x_hat`` 43 %, ``A^(1/2) x_hat`` 64 %, ``A x_hat`` 68 %, ``A^(3/2) x_hat``
  66 % (no correction 61 %).

Only the number of distinct CTFs enters the cost, so images are grouped by CTF: identical CTF
parameters share a group, and when there are more than ``max_groups`` distinct CTFs (say one
defocus per micrograph or per particle) the images are binned into ``max_groups`` quantile
bins of mean defocus, each with the average of its members' ring sums (computed from at most
``_MAX_MEMBERS_PER_GROUP`` members spread evenly over the bin).  The estimated operators,
moments and filters are all ``O(G sum_k n_q(k)^2)`` numbers; the data pass costs one small
matrix product per angular frequency and image.

References
----------
.. [1] T. Bhamre, T. Zhang, A. Singer, "Denoising and covariance estimation of single particle
   cryo-EM images", J. Struct. Biol. 195(1), 72-81 (2016), arXiv:1602.06632.
.. [2] Z. Zhao, Y. Shkolnisky, A. Singer, "Fast steerable principal component analysis",
   IEEE Trans. Comput. Imaging 2(1), 1-12 (2016).
.. [3] G. N. Watson, "A Treatise on the Theory of Bessel Functions", 2nd ed., Cambridge (1944),
   section 5.11 (Lommel's integrals).
"""

from __future__ import annotations

import logging

import numpy as np

from .._validation import check_choice, check_float, check_int
from ..sources.chain import resolve_chain
from ._ctf_blocks import (_PARAM_KEYS, _radial_transforms, _ring_sums, _rings,
                          _shrink_covariance, _spd_solve_cg)

__all__ = ["CTFCorrection", "ctf_groups", "is_phase_flipped"]

logger = logging.getLogger(__name__)

#: Members whose CTFs are averaged to form the operator of a binned group.
_MAX_MEMBERS_PER_GROUP = 64
#: Alternating least-squares iterations for the group scales (converges in ~10).
_SCALE_ITERATIONS = 50
#: Groups smaller than this keep the scale 1 (too few images to estimate it).
_MIN_SCALE_GROUP = 20


# -- helpers ------------------------------------------------------------------------------------
def is_phase_flipped(src) -> bool:
    """Whether the images of ``src`` have been phase flipped
    (:attr:`classavg.sources.chain.SourceChain.phase_flipped`: the phase-flip steps of its
    chain plus RELION's ``rlnCtfDataArePhaseFlipped`` on the file-backed source, odd)."""
    return resolve_chain(src).phase_flipped


def _param_table(params):
    """Stack CTF parameters (dict of arrays or scalars) into an (n, 8) float64 table."""
    cols = []
    for key in _PARAM_KEYS:
        default = {"defocus_angle": 0.0, "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1,
                   "phase_shift": 0.0, "bfactor": 0.0}.get(key)
        if key not in params:
            if default is None:
                raise ValueError(f"ctf_params must contain {key!r}, got keys {sorted(params)}")
            cols.append(np.asarray(default, dtype=np.float64))
        else:
            cols.append(np.asarray(params[key], dtype=np.float64))
    cols = np.broadcast_arrays(*(np.atleast_1d(c) for c in cols))
    table = np.stack(cols, axis=1)
    if not np.all(np.isfinite(table)):
        raise ValueError("ctf_params must be finite")
    return table


def ctf_groups(ctf_params, max_groups=32):
    """Group images by CTF: identical parameters, or quantile bins of mean defocus.

    Parameters
    ----------
    ctf_params : dict of array_like, each shape (n,)
        Keyword arguments of :func:`classavg.sources.ctf.evaluate_ctf`
        (:meth:`ImageSource.ctf_params <classavg.sources.base.ImageSource.ctf_params>`).
    max_groups : int, optional
        Largest number of groups (default 32).

    Returns
    -------
    ndarray of int, shape (n,)
        Group label of every image, ``0 .. G - 1`` with ``G <= max_groups``, every group
        non-empty.  With at most ``max_groups`` distinct parameter sets each set is a group
        (ordered as :func:`numpy.unique` orders them); otherwise the groups are quantile bins of
        the mean defocus ``(defocus_u + defocus_v) / 2`` in increasing order.
    """
    max_groups = check_int("max_groups", max_groups, min=1)
    table = _param_table(ctf_params)
    _, inverse = np.unique(table, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if inverse.max() < max_groups:
        return inverse.astype(np.int64)
    mean_df = 0.5 * (table[:, 0] + table[:, 1])
    order = np.argsort(mean_df, kind="stable")
    # Equal-count bins over the sorted images; images with equal defocus stay together.
    cut = np.linspace(0, mean_df.size, max_groups + 1)[1:-1].astype(np.int64)
    edges = np.unique(mean_df[order][cut])
    labels = np.searchsorted(edges, mean_df, side="right")
    _, labels = np.unique(labels, return_inverse=True)      # drop empty bins
    return labels.reshape(-1).astype(np.int64)


# -- the filter --------------------------------------------------------------------------------
class CTFCorrection:
    """Covariance Wiener filter of Fourier-Bessel coefficients under per-image CTFs.

    See the module docstring for the model and the estimators.

    Parameters
    ----------
    basis : FourierBesselBasis2D
        Basis of the coefficients (its ``L`` is the image size).
    ctf_params : dict of array_like, each shape (n,)
        CTF parameters of the n images (:meth:`ImageSource.ctf_params
        <classavg.sources.base.ImageSource.ctf_params>`, RELION units).
    pixel_size : float
        Pixel size of the images in Angstrom.
    phase_flipped : bool, optional
        The images were phase flipped: the effective CTF is ``|CTF|`` (default False).
    max_groups : int, optional
        Largest number of CTF groups (default 32; see :func:`ctf_groups`).
    target : {"clean", "mean_ctf2"}, optional
        Output of :meth:`transform`: the estimated CTF-free coefficients (default), or those
        filtered by the mean squared CTF of the data (for classification; module docstring).
    group_scale : bool, optional
        Estimate an amplitude per CTF group (default True).
    shrink : bool, optional
        Shrink the covariance eigenvalues in the CTF-whitened frame (default True) instead of
        only clipping the negative ones.

    Attributes
    ----------
    groups : ndarray of int, shape (n,)
        CTF group of every image.
    n_groups : int
    ring_ctf : ndarray, shape (n_groups, U)
        Sum of each group's (effective) CTF over the rings of the DFT grid.
    operators : list of ndarray, shape (n_groups, n_q(k), n_q(k))
        ``H_g^(k)`` for every angular frequency k (real symmetric).
    mean_ : ndarray, shape (n_q(0),)
        Estimated mean of the clean k = 0 coefficients (after :meth:`fit`).
    group_scale_ : ndarray, shape (n_groups,)
        Estimated amplitude of each group (ones when ``group_scale=False``).
    covariances_ : list of ndarray, shape (n_q(k), n_q(k))
        Estimated covariance of the clean coefficients per k (positive semi-definite, real).
    noise_var_ : float
        Noise variance used by the filter.
    cg_iterations_ : list of int
        Conjugate-gradient iterations per k.

    Examples
    --------
    >>> corr = CTFCorrection.from_source(basis, src)                    # doctest: +SKIP
    >>> coef = basis.expand(src.images[:])                              # doctest: +SKIP
    >>> clean = corr.fit(coef, np.arange(src.n), noise_var).transform(coef, np.arange(src.n))
    ...                                                                 # doctest: +SKIP
    """

    def __init__(self, basis, ctf_params, pixel_size, *, phase_flipped=False, max_groups=32,
                 group_scale=True, shrink=True, target="clean"):
        self.basis = basis
        self.target = check_choice("target", target, ("clean", "mean_ctf2"))
        self.shrink = bool(shrink)
        self.group_scale = bool(group_scale)
        self.pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
        self.phase_flipped = bool(phase_flipped)
        self.max_groups = check_int("max_groups", max_groups, min=1)
        table = _param_table(ctf_params)
        self.groups = ctf_groups(ctf_params, self.max_groups)
        self.n_groups = int(self.groups.max()) + 1
        L = basis.L
        ring_ctf = np.zeros((self.n_groups, _rings(L)[1].size))
        order = np.argsort(self.groups, kind="stable")
        bounds = np.searchsorted(self.groups[order], np.arange(self.n_groups + 1))
        mean_df = 0.5 * (table[:, 0] + table[:, 1])
        for g in range(self.n_groups):
            members = order[bounds[g]:bounds[g + 1]]
            members = members[np.argsort(mean_df[members], kind="stable")]
            if members.size > _MAX_MEMBERS_PER_GROUP:
                pick = np.linspace(0, members.size - 1, _MAX_MEMBERS_PER_GROUP)
                members = members[np.rint(pick).astype(np.int64)]
            rows, counts = np.unique(table[members], axis=0, return_counts=True)
            sums = _ring_sums(L, self.pixel_size, rows, self.phase_flipped)
            ring_ctf[g] = counts @ sums / counts.sum()
        self.ring_ctf = ring_ctf
        self._radial = _radial_transforms(basis)
        self.operators = [np.einsum("uq,gu,up->gqp", b, ring_ctf, b, optimize=True)
                          for b in self._radial]
        logger.info("CTF correction: %d images in %d CTF groups (%s)", table.shape[0],
                    self.n_groups, "|CTF|, phase flipped" if self.phase_flipped else "CTF")

    @classmethod
    def from_source(cls, basis, src, *, phase_flipped="auto", max_groups=32, **kwargs):
        """Build from an :class:`~classavg.sources.base.ImageSource` with CTF metadata.

        ``phase_flipped="auto"`` uses :func:`is_phase_flipped`.
        """
        if not src.has_ctf:
            raise ValueError(f"CTF correction needs CTF parameters, but {src!r} has none")
        if basis.L != src.L:
            raise ValueError(f"basis must be built for L={src.L}, got L={basis.L}")
        if isinstance(phase_flipped, str):
            if phase_flipped != "auto":
                raise ValueError(f"phase_flipped must be 'auto', True or False, "
                                 f"got {phase_flipped!r}")
            phase_flipped = is_phase_flipped(src)
        return cls(basis, src.ctf_params(), src.pixel_size, phase_flipped=phase_flipped,
                   max_groups=max_groups, **kwargs)

    # -- forward model -----------------------------------------------------------------------
    def _by_group(self, indices):
        """(group, rows) pairs for the images ``indices``: rows index into ``indices``."""
        labels = self.groups[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        ends = np.append(starts[1:], order.size)
        return [(int(g), order[s:e]) for g, s, e in zip(present, starts, ends)]

    def _check(self, coef, indices):
        coef = np.asarray(coef)
        indices = np.asarray(indices, dtype=np.int64)
        if coef.ndim != 2 or coef.shape[1] != self.basis.count:
            raise ValueError(f"coef must have shape (m, {self.basis.count}), got {coef.shape}")
        if indices.shape != (coef.shape[0],):
            raise ValueError(f"indices must have shape ({coef.shape[0]},), got {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.groups.size):
            raise ValueError(f"indices must lie in [0, {self.groups.size})")
        return coef, indices

    def apply(self, coef, indices):
        """Apply each image's CTF operator: ``H_g x`` for the images ``indices``.

        The forward model of the CTF alone (the group scales of :meth:`fit` not included).

        Parameters
        ----------
        coef : ndarray, complex, shape (m, basis.count)
            Coefficients of CTF-free images.
        indices : array_like of int, shape (m,)
            Image index (into the CTF table) of every row.

        Returns
        -------
        ndarray, same shape and dtype as ``coef``
        """
        coef, indices = self._check(coef, indices)
        out = np.empty_like(coef)
        for g, rows in self._by_group(indices):
            for k, s in enumerate(self.basis.k_slices):
                out[rows, s] = coef[rows, s] @ self.operators[k][g]   # H symmetric
        return out

    # -- estimation --------------------------------------------------------------------------
    def fit(self, coef, indices, noise_var):
        """Estimate the clean mean and covariances and build the Wiener filters.

        Parameters
        ----------
        coef : ndarray, complex, shape (m, basis.count)
            Coefficients of the observed images (a representative subset is enough).
        indices : array_like of int, shape (m,)
            Image index of every row (selects its CTF group).
        noise_var : float
            White-noise variance per pixel (e.g.
            :func:`~classavg.classification.fspca.estimate_noise_variance`); values <= 0
            (noise-free data) are replaced by ``1e-6`` times the mean coefficient power.

        Returns
        -------
        self
        """
        coef, indices = self._check(coef, indices)
        B = self.basis
        G = self.n_groups
        parts = self._by_group(indices)
        w = np.zeros(G)
        for g, rows in parts:
            w[g] = rows.size
        noise_var = float(noise_var)
        if not noise_var > 0:
            noise_var = 1e-6 * float(np.mean(np.abs(coef) ** 2))
        self.noise_var_ = noise_var

        # Mean of the k = 0 block, and the group scales by alternating least squares.
        s0 = B.k_slices[0]
        H0 = self.operators[0]
        sums = np.zeros((G, H0.shape[1]))
        for g, rows in parts:
            sums[g] = coef[rows, s0].real.astype(np.float64).sum(axis=0)
        scale = np.ones(G)
        for _ in range(_SCALE_ITERATIONS if self.group_scale else 1):
            Hs = scale[:, None, None] * H0
            lhs = np.einsum("g,gij,gjk->ik", w, Hs, Hs)
            rhs = np.einsum("gij,gj->i", Hs, sums)
            lhs_scale = max(np.abs(lhs).max(), np.finfo(float).tiny)
            mean = np.linalg.solve(lhs + 1e-12 * lhs_scale * np.eye(lhs.shape[0]), rhs)
            if not self.group_scale:
                break
            pred = H0 @ mean                                      # (G, nq)
            den = np.einsum("gi,gi->g", pred, pred) * w
            ok = (w >= _MIN_SCALE_GROUP) & (den > 0)
            new = np.ones(G)
            new[ok] = np.einsum("gi,gi->g", sums, pred)[ok] / den[ok]
            new = np.clip(new, 0.1, 10.0)
            new /= np.sum(w * new) / np.sum(w)                   # weighted mean 1
            if np.max(np.abs(new - scale)) < 1e-6:
                scale = new
                break
            scale = new
        self.mean_ = mean
        self.group_scale_ = scale

        # Right-hand sides sum_g H_g (C_g - n_g sigma^2 I) H_g, one group's rows at a time.
        rhs_all = [np.zeros((s.stop - s.start,) * 2) for s in B.k_slices]
        m0 = scale[:, None] * (H0 @ self.mean_)                     # E[a] per group, k = 0
        for g, rows in parts:
            cg = coef[rows]
            for k, s in enumerate(B.k_slices):
                blk = cg[:, s]
                if k == 0:
                    re = blk.real.astype(np.float64) - m0[g]
                    Cg = re.T @ re
                else:
                    re = blk.real.astype(np.float64)
                    im = blk.imag.astype(np.float64)
                    Cg = re.T @ re + im.T @ im                      # Re(a^H a)
                Cg[np.diag_indices_from(Cg)] -= rows.size * noise_var
                Hg = scale[g] * self.operators[k][g]
                rhs_all[k] += Hg @ Cg @ Hg
            del cg

        self.covariances_, self._filters, self.cg_iterations_ = [], [], []
        for k, s in enumerate(B.k_slices):
            H = scale[:, None, None] * self.operators[k]
            nq = H.shape[1]
            rhs = rhs_all[k]
            Ms = H @ H
            X, it = _spd_solve_cg(Ms, w, rhs)
            cov = _shrink_covariance(X, Ms, w, noise_var, 1 if k == 0 else 2,
                                     self.shrink)
            self.covariances_.append(cov)
            self.cg_iterations_.append(it)
            # Wiener filter per group, stored transposed for row vectors: x_hat = a @ Wt.
            HS = H @ cov                                            # (G, nq, nq)
            K = HS @ H + noise_var * np.eye(nq)
            Wt = np.linalg.solve(K, HS)                             # K^-1 H Sigma = W^T
            if self.target == "mean_ctf2":
                Wt = Wt @ (np.einsum("g,gij->ij", w, Ms) / w.sum())
            self._filters.append(Wt)
        # Offsets of the k = 0 block: x_hat = mu + (a - H mu) W^T = a W^T + (mu - H mu W^T).
        Wt0 = self._filters[0]
        mean_out = self.mean_
        if self.target == "mean_ctf2":
            Hs = scale[:, None, None] * H0
            mean_out = np.einsum("g,gij,gjk,k->i", w, Hs, Hs, self.mean_) / w.sum()
        self._offset0 = mean_out[None, :] - np.einsum("gi,gij->gj",
                                                       scale[:, None] * (H0 @ self.mean_), Wt0)
        logger.info("CTF correction fitted on %d images: noise variance %.3g, CG iterations "
                    "max %d", coef.shape[0], noise_var, max(self.cg_iterations_))
        return self

    def transform(self, coef, indices):
        """Wiener-filtered, CTF-corrected coefficients of the images ``indices``.

        Parameters
        ----------
        coef : ndarray, complex, shape (m, basis.count)
            Observed coefficients.
        indices : array_like of int, shape (m,)
            Image index of every row.

        Returns
        -------
        ndarray, complex (``basis.complex_dtype``), shape (m, basis.count)
            Estimates of the clean coefficients (``target="clean"``) or of the coefficients
            under the mean squared CTF (``"mean_ctf2"``), in the units of the group with
            scale 1; the k = 0 block is real.  Like the input, they steer under rotation and
            conjugate under mirroring (the filters are real).
        """
        if not hasattr(self, "_filters"):
            raise RuntimeError("CTFCorrection.transform called before fit")
        coef, indices = self._check(coef, indices)
        B = self.basis
        out = np.empty(coef.shape, dtype=B.complex_dtype)
        rdt = B.dtype
        for g, rows in self._by_group(indices):
            a = coef[rows]
            og = np.empty(a.shape, dtype=B.complex_dtype)
            for k, s in enumerate(B.k_slices):
                Wt = self._filters[k][g].astype(rdt, copy=False)
                blk, dst = a[:, s], og[:, s]
                dst.real = blk.real.astype(rdt, copy=False) @ Wt
                if k == 0:
                    dst.real += self._offset0[g].astype(rdt)
                    dst.imag = 0
                else:
                    dst.imag = blk.imag.astype(rdt, copy=False) @ Wt
            out[rows] = og
        return out

    def fit_transform(self, coef, indices, noise_var):
        """:meth:`fit` then :meth:`transform` on the same coefficients."""
        return self.fit(coef, indices, noise_var).transform(coef, indices)
