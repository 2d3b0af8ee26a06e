"""Steerable PCA: denoised, compressed Fourier-Bessel coefficients.

For every angular frequency k the covariance of the coefficients ``a[:, k_slice]`` is estimated
over the images (the k = 0 block after subtracting the mean; k > 0 blocks have zero mean when
in-plane rotations are uniform), the white-noise variance is removed from it, and it is
eigendecomposed.  Eigenvalues are shrunk with the spiked-covariance (BBP) estimator, so that
components at the noise level are dropped, and the strongest components over all k are kept.
The covariance is symmetrised over mirroring (its real part is used), which makes the
eigenvectors real: the steerable-PCA coefficients of a mirrored image are then the complex
conjugates of the original ones, exactly as for the Fourier-Bessel coefficients themselves.

References
----------
.. [1] Z. Zhao, Y. Shkolnisky, A. Singer, "Fast steerable principal component analysis",
   IEEE Trans. Comput. Imaging 2(1), 1-12 (2016), arXiv:1412.0781.
.. [2] D. L. Donoho, M. Gavish, I. M. Johnstone, "Optimal shrinkage of eigenvalues in the
   spiked covariance model", Ann. Stat. 46(4) (2018).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._grid import disk_mask

__all__ = ["SteerablePCA", "estimate_noise_variance"]

logger = logging.getLogger(__name__)


def estimate_noise_variance(images, radius=None):
    """White-noise variance from the pixels outside the particle disk.

    Parameters
    ----------
    images : ndarray, shape (n, L, L)
    radius : float, optional
        Disk radius in pixels (default L / 2: the corners of the box).

    Returns
    -------
    float
        Mean over images of the variance of the pixels with ``r >= radius``.
    """
    L = images.shape[-1]
    outside = ~disk_mask(L, radius)
    corners = images[:, outside].astype(np.float64)
    return float(np.mean(np.var(corners, axis=1)))


@dataclass
class _Block:
    k: int
    vectors: np.ndarray      # (n_q, m) real eigenvectors
    eigvals: np.ndarray      # (m,) shrunk signal eigenvalues


class SteerablePCA:
    """Steerable PCA fitted on Fourier-Bessel coefficients.

    Parameters
    ----------
    basis : FourierBesselBasis2D
        The basis the coefficients are expressed in.
    n_components : int, optional
        Maximum number of complex components kept over all angular frequencies (default 400).

    Attributes (after :meth:`fit`)
    ------------------------------
    noise_var : float
        White-noise variance per coefficient.
    mean : ndarray, shape (n_q(0),)
        Mean of the k = 0 coefficients.
    k : ndarray of int, shape (n_components_,)
        Angular frequency of each kept component (sorted by k).
    eigvals : ndarray, shape (n_components_,)
        Shrunk signal eigenvalues of the kept components.
    k_slices : list of slice
        ``coef[:, k_slices[k]]`` are the kept components of frequency k.
    """

    def __init__(self, basis, *, n_components=400):
        self.basis = basis
        self.n_components = n_components

    def fit(self, coef, noise_var):
        """Fit from coefficients ``coef`` (m, basis.count) and the noise variance."""
        B = self.basis
        m = coef.shape[0]
        self.noise_var = float(noise_var)
        self.mean = coef[:, B.k_slices[0]].real.mean(axis=0).astype(np.float64)
        cands = []
        for k, s in enumerate(B.k_slices):
            a = coef[:, s].astype(np.complex128)
            if k == 0:
                a = a.real - self.mean
                cov = a.T @ a / m
                n_eff = m
            else:
                cov = (a.conj().T @ a).real / m        # mirror-symmetrised covariance
                n_eff = 2 * m                          # real and imaginary parts
            # Noise per real degree of freedom: sigma^2 for k = 0, sigma^2 / 2 for k > 0,
            # but cov sums both parts for k > 0, so it is sigma^2 in both cases.
            lam, vec = np.linalg.eigh(cov)
            gamma = cov.shape[0] / n_eff
            ell = lam / max(self.noise_var, np.finfo(float).tiny)
            keep = ell > (1 + np.sqrt(gamma)) ** 2
            if not np.any(keep):
                continue
            ell, vec = ell[keep], vec[:, keep]
            # Population spike from the sample eigenvalue (Baik-Ben Arous-Peche inversion).
            b = ell + 1 - gamma
            spike = 0.5 * (b + np.sqrt(np.maximum(b * b - 4 * ell, 0)))
            cands.append(_Block(k, vec, self.noise_var * (spike - 1)))
        if not cands:
            raise ValueError("steerable PCA found no component above the noise level: the "
                             "images look like pure noise (check the data or the noise estimate)")
        allv = np.concatenate([c.eigvals for c in cands])
        thresh = np.sort(allv)[::-1][min(self.n_components, allv.size) - 1]
        blocks = []
        for c in cands:
            sel = c.eigvals >= thresh
            if np.any(sel):
                order = np.argsort(c.eigvals[sel])[::-1]
                blocks.append(_Block(c.k, c.vectors[:, sel][:, order], c.eigvals[sel][order]))
        total = sum(b.eigvals.size for b in blocks)
        if total > self.n_components:           # ties at the threshold
            blocks[-1] = _Block(blocks[-1].k, blocks[-1].vectors[:, :blocks[-1].eigvals.size -
                                (total - self.n_components)],
                                blocks[-1].eigvals[:blocks[-1].eigvals.size -
                                                   (total - self.n_components)])
        self._blocks = blocks
        self.k = np.concatenate([np.full(b.eigvals.size, b.k) for b in blocks])
        self.eigvals = np.concatenate([b.eigvals for b in blocks])
        self.kmax = int(self.k.max())
        bounds = np.searchsorted(self.k, np.arange(self.kmax + 2))
        self.k_slices = [slice(int(bounds[k]), int(bounds[k + 1])) for k in range(self.kmax + 1)]
        self.n_components_ = self.k.size
        logger.info("steerable PCA: %d components over %d angular frequencies "
                    "(noise variance %.3g)", self.n_components_, len(blocks), self.noise_var)
        return self

    def transform(self, coef, *, wiener=True):
        """Project Fourier-Bessel coefficients onto the kept components.

        Parameters
        ----------
        coef : ndarray, complex, shape (n, basis.count)
        wiener : bool, optional
            Multiply each component by ``lam / (lam + noise_var)`` (denoising).

        Returns
        -------
        ndarray, complex64, shape (n, n_components_)
            Ordered like :attr:`k`; rotating an image by alpha multiplies component j by
            ``exp(-i k_j alpha)``; mirroring conjugates it.
        """
        B = self.basis
        out = np.empty((coef.shape[0], self.n_components_), dtype=np.complex64)
        col = 0
        for b in self._blocks:
            a = coef[:, B.k_slices[b.k]]
            if b.k == 0:
                a = a.real - self.mean
            p = a @ b.vectors
            if wiener:
                p = p * (b.eigvals / (b.eigvals + self.noise_var))
            out[:, col:col + b.eigvals.size] = p
            col += b.eigvals.size
        return out
