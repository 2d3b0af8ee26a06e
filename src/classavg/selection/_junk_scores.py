"""The per-particle junk scores: matched-filter fit, blob, extra and missing density.

Formulas, units and references: :mod:`classavg.selection.junk` (the public module).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft as sfft
from scipy import sparse

from .._grid import radial_grid, rfft_rings

__all__ = ["SCORE_NAMES", "whitening_filter", "particle_scores", "particle_scores_fourier"]

#: Per-particle scores of :func:`particle_scores`.
SCORE_NAMES = ("fit", "blob", "amplitude", "extra", "missing", "missing_fraction")

_AXES = (-2, -1)
#: Line directions of the ``missing`` score, and the share of the model's energy a
#: half-plane must hold (a line through the edge of the particle, not outside it).
_MISSING_DIRECTIONS = 16
_MISSING_SHARE = (0.15, 0.6)


@functools.lru_cache(maxsize=8)
def _half_plane_bins(L, n_dir=_MISSING_DIRECTIONS // 2):
    """Sparse (L * L, n_dir * (L + 2)) 0/1 matrix: pixel -> (direction ``pi d / n_dir``,
    1 px bin of its distance ``s = p . u`` along it), the centre at pixel ``L // 2``.  The
    bin edges are at half-integer ``s``, so that no pixel centre of an axis-parallel line
    lies on one: the half-planes ``s > edge`` and ``s < edge`` are exact complements, and the
    opposite direction ``phi + pi`` needs no bins of its own."""
    y, x = np.indices((L, L)) - L // 2
    nb = L + 2
    cols = []
    for d in range(n_dir):
        phi = np.pi * d / n_dir
        # rounded so that pixels bin alike in directions related by a grid symmetry
        s = np.round(x * np.cos(phi) + y * np.sin(phi), 9)
        b = np.clip(np.floor(s + 0.5 + L / 2 + 1).astype(np.int64), 0, nb - 1)
        cols.append(d * nb + b.ravel())
    rows = np.tile(np.arange(L * L), n_dir)
    return sparse.csr_matrix((np.ones(rows.size), (rows, np.concatenate(cols))),
                             shape=(L * L, n_dir * nb)), nb


def _missing_density(resid_w, model_w):
    """``(g, phi)`` of the module docstring from the real-space whitened residuals and scaled
    models, each (k, L, L) (centre at ``L // 2``)."""
    k, L = resid_w.shape[0], resid_w.shape[-1]
    bins, nb = _half_plane_bins(L)
    both = np.concatenate([(resid_w * model_w).reshape(k, -1),
                           (model_w * model_w).reshape(k, -1)])
    hist = np.asarray(both @ bins).reshape(2, k, -1, nb)       # (q, e) x k x direction x bin
    # sums over the half-plane beyond each line, from either side (phi and phi + pi)
    hist = np.concatenate([np.cumsum(hist[..., ::-1], axis=-1), np.cumsum(hist, axis=-1)],
                          axis=2)
    q, e = hist[0], hist[1]
    share = e / np.maximum(e[:, :1, -1:], 1e-30)
    lo, hi = _MISSING_SHARE
    e = np.maximum(e, 1e-30)
    g = np.where((share >= lo) & (share <= hi), -q / np.sqrt(e), -np.inf).reshape(k, -1)
    best = g.argmax(axis=1)
    phi = (-q / e).reshape(k, -1)[np.arange(k), best]
    return g[np.arange(k), best], phi


def _coarse(F, L):
    """Real-space image of the rfft2 spectra ``F`` (k, L, L // 2 + 1) on the half-size grid:
    the frequencies below a quarter cycle per pixel (the Nyquist row and column of the small
    grid dropped, so that the grid symmetries about the centre are kept), scaled so that unit
    white noise keeps unit variance, inside the disk of radius ``L / 4``; the centre pixel
    ``L // 2`` becomes ``L // 4``.  The particle signal that the ``missing`` score weighs lies
    below that frequency, and the half-plane sums cost a quarter.  ``L`` not a multiple of
    4: the full grid."""
    if L % 4:
        out = sfft.irfft2(F, s=(L, L), axes=_AXES, workers=-1)
    else:
        h = L // 4
        small = np.zeros(F.shape[:-2] + (2 * h, h + 1), dtype=F.dtype)
        small[..., :h, :h] = F[..., :h, :h]
        small[..., h + 1:, :h] = F[..., L - h + 1:, :h]
        # (2h - 1)^2 of the (2h)^2 frequencies of the small grid are kept
        out = sfft.irfft2(small, s=(2 * h, 2 * h), axes=_AXES, workers=-1) * (h / (2 * h - 1))
    # the particle disk only: the sinc tails of the crop do not reach the (wrapped) border
    return out * (radial_grid(out.shape[-1]) < out.shape[-1] / 2)


def whitening_filter(psd, L):
    """``1 / sqrt(P(k))`` in ``rfft2`` layout, (L, L // 2 + 1), from a ring PSD (n_rings,)."""
    ring, _ = rfft_rings(L)
    psd = np.asarray(psd, dtype=np.float64)
    return 1.0 / np.sqrt(psd[np.minimum(ring, psd.size - 1)])


def particle_scores(images, models, references, wfilter, *, min_distance=None):
    """The scores of the module docstring for a batch of particles and their models.

    Parameters
    ----------
    images : ndarray, shape (k, L, L)
        Particles, as classified (background-normalised).
    models : ndarray, shape (k, L, L)
        Each particle's class model in its own frame (module docstring).
    references : ndarray, shape (k, L, L)
        Each particle's rotationally symmetric reference (the ring-averaged particle with its
        CTF), centred.
    wfilter : ndarray, shape (L, L // 2 + 1)
        :func:`whitening_filter` of the noise PSD.
    min_distance : float, optional
        ``d_0`` in pixels (default ``L / 8``).

    Returns
    -------
    dict of ndarray, each (k,)
        :data:`SCORE_NAMES` (float64).
    """
    def spectrum(a):
        return sfft.rfft2(np.asarray(a, dtype=np.float64), axes=_AXES, workers=-1) * wfilter

    L = np.shape(images)[-1]
    return particle_scores_fourier(spectrum(images), spectrum(models), spectrum(references),
                                   L, min_distance=min_distance)


def particle_scores_fourier(X, M, T, L, *, min_distance=None):
    """:func:`particle_scores` from the whitened spectra: ``rfft2`` (no shift: the box centre
    at pixel ``L // 2``) of the images, models and references times the whitening filter,
    each (k, L, L // 2 + 1).  Inner products are Parseval sums over the half plane; one
    inverse FFT per image gives the residual's correlation with the reference at every
    translation, two half-size ones the residual and the fitted model (``missing``)."""
    d0 = L / 8 if min_distance is None else float(min_distance)
    _, weight = rfft_rings(L)
    scale = weight / float(L * L)

    def dot(A, B):
        return np.einsum("kij,ij->k", (A * np.conj(B)).real, scale)

    mm = np.maximum(dot(M, M), 1e-30)
    xm = dot(X, M)
    amp = xm / mm
    tn = np.sqrt(np.maximum(dot(T, T), 1e-30))
    fitted = amp[:, None, None] * M
    resid = X - fitted
    # (r * t)(d) = sum_p r(p + d) t(p): lag d at index d (circular)
    cc = sfft.irfft2(resid * np.conj(T), s=(L, L), axes=_AXES, workers=-1) / tn[:, None, None]
    far = sfft.ifftshift(radial_grid(L)) >= d0          # |lag|, circular
    extra = np.where(far, cc, -np.inf).reshape(len(X), -1).max(axis=1)
    missing, fraction = _missing_density(_coarse(resid, L), _coarse(fitted, L))
    return {"fit": xm / np.sqrt(mm), "blob": dot(X, T) / tn, "amplitude": amp,
            "extra": extra, "missing": missing, "missing_fraction": fraction}
