"""Batches of class rows for the aligning averagers: :class:`ClassBatch` (the rows, their
distinct images read once, their Fourier-Bessel coefficients, shifted member coefficients and
spectral SNR weights) and :class:`CoefficientCache` (coefficients kept across batches).

Used by :class:`~classavg.averaging.base.AligningAverager2D`; see :mod:`classavg.averaging.base`
for how an averager uses a batch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ClassBatch", "CoefficientCache"]


class CoefficientCache:
    """Fourier-Bessel coefficients of source images, kept across batches up to a memory cap.

    Images that appear in several classes are expanded once per averaging run instead of once
    per batch.  When full, the cache is emptied and refilled (the simplest bounded policy;
    it never costs more than expanding per batch).

    Parameters
    ----------
    n_images : int
        Size of the source.
    count : int
        Coefficients per image.
    dtype : numpy complex dtype
    max_bytes : int
        Memory cap of the stored coefficients; 0 disables caching.
    """

    def __init__(self, n_images, count, dtype, max_bytes):
        self.capacity = min(int(max_bytes // (count * np.dtype(dtype).itemsize)), n_images)
        self._slot = np.full(n_images, -1, dtype=np.int64) if self.capacity else None
        self._data = None
        self._count = count
        self._dtype = dtype
        self._used = 0

    def get(self, indices, compute):
        """Coefficients of ``indices`` (sorted, unique), calling ``compute(missing)`` once."""
        if not self.capacity or indices.size > self.capacity:
            return compute(indices)
        if self._data is None:
            self._data = np.empty((self.capacity, self._count), dtype=self._dtype)
        slots = self._slot[indices]
        miss = slots < 0
        if miss.any():
            if self._used + int(miss.sum()) > self.capacity:   # full: start again
                self._slot[:] = -1
                self._used = 0
                slots = self._slot[indices]
                miss = np.ones(indices.size, bool)
            new = np.arange(self._used, self._used + int(miss.sum()))
            self._data[new] = compute(indices[miss])
            self._slot[indices[miss]] = new
            self._used += new.size
            slots = self._slot[indices]
        return self._data[slots]


class ClassBatch:
    """A batch of rows of a neighbour table with their images, read and expanded once.

    Attributes
    ----------
    rows : ndarray of int, shape (b,)
        Row numbers (class ids) in the full table.
    indices : ndarray of int, shape (b, m)
        Image index of every member (column 0: the reference).
    refl : ndarray of bool, shape (b, m)
        Mirror flags.
    unique : ndarray of int, shape (u,)
        The distinct images of the batch (sorted).
    inverse : ndarray of int, shape (b, m)
        ``unique[inverse] == indices``: where each member sits in ``images`` and
        ``coefficients()``.
    images : ndarray, shape (u, L, L)
        The distinct images, read once from the source.
    transformer : MemberTransformer
        The averager's expansion / transformation engine.
    """

    def __init__(self, rows, indices, refl, src, transformer, cache=None):
        self.rows = rows
        self.indices = indices
        self.refl = refl
        self.unique, inv = np.unique(indices, return_inverse=True)
        self.inverse = inv.reshape(indices.shape)
        self.images = src.images[self.unique]
        self.transformer = transformer
        self._cache = cache
        self._coef = None
        self._polar = None
        self._shifted = None

    @property
    def n_classes(self):
        return self.indices.shape[0]

    @property
    def n_members(self):
        return self.indices.shape[1]

    def coefficients(self):
        """Fourier-Bessel coefficients of the distinct images (unmirrored), (u, count) (cached)."""
        if self._coef is None:
            if self._cache is None:
                self._coef = self.transformer.expand(self.images)
            else:
                # ``unique`` is sorted: searchsorted finds the images of the cache misses
                self._coef = self._cache.get(
                    self.unique, lambda idx: self.transformer.expand(
                        self.images[np.searchsorted(self.unique, idx)]))
        return self._coef

    def member_coefficients(self):
        """Coefficients of every member, conjugated (mirrored) where ``refl``, (b, m, count)."""
        a = self.coefficients()[self.inverse]
        return np.where(self.refl[..., None], np.conj(a), a)

    def shifted_member_coefficients(self, shifts):
        """Coefficients of every member mirrored (where ``refl``) then shifted, (b, m, count).

        Parameters
        ----------
        shifts : ndarray, shape (b, m, 2)
            ``(x, y)`` pixels, applied after the mirror (the alignment convention).

        The last result is cached (keyed by the shift values), so an averager that computes
        these coefficients while aligning gets them back for free when stacking.  All-zero
        shifts reuse :meth:`member_coefficients` (no new expansion).
        """
        shifts = np.asarray(shifts, dtype=np.float64)
        key = shifts.tobytes()
        if self._shifted is not None and self._shifted[0] == key:
            return self._shifted[1]
        if not shifts.any():
            out = self.member_coefficients()
        else:
            tr = self.transformer
            b, m = self.indices.shape
            out = np.empty((b, m, tr.basis.count), dtype=tr.complex_dtype)
            flat_idx = self.inverse.reshape(-1)
            flat_out = out.reshape(b * m, -1)
            sh = shifts.reshape(-1, 2)
            rf = self.refl.reshape(-1)
            for s in range(0, b * m, tr.chunk):
                sl = slice(s, s + tr.chunk)
                flat_out[sl] = tr.shifted_coefficients(self.images[flat_idx[sl]], sh[sl], rf[sl])
        self._shifted = (key, out)
        return out

    def reference_images(self):
        """The reference (column 0) image of every row, (b, L, L)."""
        return self.images[self.inverse[:, 0]]

    def snr_weights(self, n_bins=None):
        """Spectral SNR weights ``S / (S + N)`` of the coefficients, (count,), in [0, 1].

        ``N`` is the white-noise power per coefficient, estimated as the pixel variance outside
        the disk of radius ``L / 2`` (the corners; the basis is orthonormal on the pixel grid
        up to discretisation, so white noise of variance ``sigma^2`` puts ``sigma^2`` into every
        coefficient); ``S + N`` is the mean power ``|a_kq|^2`` of the batch's distinct images
        in bins of radial frequency ``lam_kq`` (``n_bins``, default ``L // 2``), so that
        ``S = max(S + N - N, 0)``.  Clean images give weights ~1; noisy ones down-weight the
        frequencies where the class has no signal (a Wiener filter of the correlation).
        """
        basis = self.transformer.basis
        L = basis.L
        n_bins = n_bins or max(4, L // 2)
        corners = ~basis._mask
        if not corners.any():
            return np.ones(basis.count)
        noise = float(np.mean(np.var(self.images[:, corners], axis=1)))
        power = np.mean(np.abs(self.coefficients()) ** 2, axis=0)
        lam = basis.zeros / basis.radius
        edges = np.linspace(0, lam.max() + 1e-9, n_bins + 1)
        idx = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, n_bins - 1)
        tot = np.bincount(idx, weights=power, minlength=n_bins)
        cnt = np.maximum(np.bincount(idx, minlength=n_bins), 1)
        p = (tot / cnt)[idx]
        return np.clip((p - noise) / np.maximum(p, np.finfo(float).tiny), 0.0, 1.0)

    def polar(self):
        """Polar Fourier samples of the distinct images, (u, n_r, n_phi // 2) (cached; see
        :class:`~classavg.averaging._transform.PolarTransformer`)."""
        if self._polar is None:
            from ._transform import PolarTransformer
            self._polar = PolarTransformer(self.transformer.basis).polar(self.images)
        return self._polar


class _HalfBatch(ClassBatch):
    """``batch`` restricted to the member columns ``cols``: images and coefficients are shared
    with it, and its shifted member coefficients (computed once, only by a stacking that asks
    for them) are cut from the full batch's."""

    def __init__(self, batch, cols, shifts):
        self.__dict__.update(batch.__dict__)
        self._parent, self._cols, self._parent_shifts = batch, cols, shifts
        self.indices = batch.indices[:, cols]
        self.refl = batch.refl[:, cols]
        self.inverse = batch.inverse[:, cols]

    def member_coefficients(self):
        return self._parent.member_coefficients()[:, self._cols]

    def shifted_member_coefficients(self, shifts):
        if not np.array_equal(shifts, self._parent_shifts[:, self._cols]):
            return super().shifted_member_coefficients(shifts)
        return self._parent.shifted_member_coefficients(self._parent_shifts)[:, self._cols]
