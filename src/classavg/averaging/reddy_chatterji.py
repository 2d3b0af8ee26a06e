r"""Reddy-Chatterji registration: rotation from log-polar Fourier magnitudes, then translation.

Algorithm (Reddy & Chatterji 1996, for a known scale of 1)
----------------------------------------------------------
1. **Window and band-pass.**  Each image is multiplied by a rotation-invariant window (a disk
   of radius ``L / 2`` with a raised-cosine edge over its outer quarter) and Fourier
   transformed; the magnitude ``|F|`` (invariant to translations of the content) is weighted
   by the radially symmetric form of Reddy & Chatterji's high-pass emphasis filter
   ``H = (1 - X)(2 - X)``, ``X = cos(pi |f|)`` (``|f|`` in cycles per pixel), and sampled
   only on the frequency band ``band`` -- together a band-pass.
2. **Log-polar resampling.**  ``|F| H`` is resampled on ``n_radii`` log-spaced radii and
   ``T = n_angles // 2`` angles in ``[0, pi)`` (the magnitude is centro-symmetric) with Keys
   cubic interpolation, applied as one sparse matrix to the whole batch.  A rotation of the
   image by ``c`` is a cyclic shift by ``c`` along the angle axis, and a mirror
   (``y -> -y``) reverses the angle axis (conjugates its Fourier transform).
3. **Rotation by phase correlation.**  The cross-power spectrum along the angle axis, summed
   over the radii (the scale is known, so only the zero log-radius shift matters), is
   normalised to (nearly) unit magnitude -- ``Q / (|Q| + 0.01 max|Q|)``, a regularised
   phase correlation: strict whitening lets frequencies without signal dominate -- and
   inverse transformed; its peak, refined by a parabola, gives the rotation modulo 180
   degrees.
4. **180-degree ambiguity and translation.**  For both candidates ``c`` and ``c + pi`` the
   reference is rotated by ``-c`` (exactly, in the Fourier-Bessel basis; ``c + pi`` is the
   point reflection of that image) and the translation of the (mirrored) member is found by
   phase correlation in the pixel Fourier domain (cross-power normalised as above and
   weighted by a Gaussian low-pass so that the peak is smooth); the candidate with the higher
   peak wins and the peak is refined to sub-pixel accuracy by a parabola along x and y.
   Since ``Rot(c) shift(X, s) = R`` is ``shift(X, s) = Rot(-c) R``, the translation found is
   directly the shift of the convention (applied before the rotation).

Noisy data: with ``snr_weighting`` (default) the log-polar radii and the frequencies of the
translation phase correlation are weighted by ``S / (S + N)``, estimated per batch from the
radial power spectrum of the windowed images and the white-noise floor measured in the image
corners; without it, whitened noise at high frequencies swamps the magnitude correlation.

:class:`BFSReddyChatterjiAverager2D` brute-forces the translation instead: the reference is
shifted by every integer ``-t`` in a disk (default radius ``L // 8``) and re-windowed, the
rotation of every member is estimated against every shifted reference as above (one batched
matrix product over the radii per angular frequency), both candidates ``c``, ``c + pi`` are
scored by the exact pixel correlation ``<Rot(c) X, shift(R, -t)>`` (through the Fourier-Bessel
correlation spectra, as in :mod:`~classavg.averaging.bfsr`), the best pair is kept and ``t``
is refined by a quadratic fit of the scores over its 3 x 3 neighbours; the member shift is
``Rot(-c) t``.

References
----------
.. [1] B. S. Reddy, B. N. Chatterji, "An FFT-based technique for translation, rotation, and
   scale-invariant image registration", IEEE Trans. Image Process. 5(8), 1266-1271 (1996).
.. [2] C. D. Kuglin, D. C. Hines, "The phase correlation image alignment method", Proc. IEEE
   Int. Conf. Cybernetics and Society, 163-165 (1975).
.. [3] R. Keys, "Cubic convolution interpolation for digital image processing", IEEE Trans.
   Acoust. Speech Signal Process. 29(6), 1153-1160 (1981).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft
import scipy.sparse

from .._grid import disk_mask, radial_grid
from .._validation import check_bool, check_float, check_int
from ._transform import mirror_images
from .base import AligningAverager2D
from .bfr import coefficient_norms, correlation_spectrum, trig_eval
from .bfsr import BFSRAverager2D, quadratic_peak

__all__ = ["ReddyChatterjiAverager2D", "BFSReddyChatterjiAverager2D"]

logger = logging.getLogger(__name__)

#: Regularisation of the phase correlations: the cross-power spectrum Q is divided by
#: ``|Q| + _REG * max|Q|`` rather than ``|Q|``, so that frequencies without signal (where
#: ``|Q|`` is tiny and its phase is noise or round-off) are not amplified to unit weight.
_REG = 0.01


def _keys(x, a=-0.5):
    """Keys cubic convolution kernel."""
    x = np.abs(x)
    return np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                    np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))


def log_polar_matrix(L, n_radii, n_theta, r_min, r_max):
    """Sparse (n_radii * n_theta, L * L) matrix sampling an fftshifted (L, L) array on a
    log-polar grid (Keys cubic interpolation).

    Sample ``(i, j)`` is at radius ``r_i = r_min (r_max / r_min)^(i / (n_radii - 1))``
    frequency pixels and angle ``theta_j = pi j / n_theta``: array position
    ``(L // 2 + r sin(theta), L // 2 + r cos(theta))``.
    """
    r = np.geomspace(r_min, r_max, n_radii)
    th = np.pi * np.arange(n_theta) / n_theta
    c = L // 2
    py = (c + r[:, None] * np.sin(th)[None, :]).ravel()
    px = (c + r[:, None] * np.cos(th)[None, :]).ravel()
    iy0, ix0 = np.floor(py).astype(int), np.floor(px).astype(int)
    rows, cols, vals = [], [], []
    n = py.size
    for dy in (-1, 0, 1, 2):
        wy = _keys(py - (iy0 + dy))
        for dx in (-1, 0, 1, 2):
            wx = _keys(px - (ix0 + dx))
            yy = np.clip(iy0 + dy, 0, L - 1)
            xx = np.clip(ix0 + dx, 0, L - 1)
            rows.append(np.arange(n))
            cols.append(yy * L + xx)
            vals.append(wy * wx)
    return scipy.sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, L * L))


def _parabola(cm, c0, cp):
    """Offset in [-0.5, 0.5] of the vertex of the parabola through (-1, cm), (0, c0), (1, cp)."""
    den = cm - 2 * c0 + cp
    ok = den < 0
    off = np.where(ok, 0.5 * (cm - cp) / np.where(ok, den, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)


class ReddyChatterjiAverager2D(AligningAverager2D):
    """Reddy-Chatterji (log-polar Fourier magnitude) alignment, then stacking.

    See the module docstring for the algorithm.

    Parameters
    ----------
    src : ImageSource
    basis : FourierBesselBasis2D, optional
        Used to rotate the references exactly and to stack.
    image_stacker : ImageStacker, optional
        Default :class:`~classavg.averaging.stackers.MeanImageStacker`.
    n_angles : int, optional
        Angular sampling of the full circle, >= 4 (default 360: the log-polar grid has
        ``n_angles // 2`` angles over 180 degrees, 1 degree apart).
    n_radii : int, optional
        Log-spaced radii of the log-polar grid (default ``L // 2``).
    band : (float, float), optional
        Frequency band of the log-polar grid in cycles per pixel, ``0 < low < high <= 0.5``
        (default (0.05, 0.4)); the lowest radius is at least 1.5 frequency pixels.
    shift_lowpass : float, optional
        Standard deviation (cycles per pixel) of the Gaussian weight of the translation
        phase correlation (default 0.15).
    snr_weighting : bool, optional
        Weight the radii of the log-polar magnitudes and the frequencies of the translation
        phase correlation by the batch's spectral SNR ``S / (S + N)`` (radial power spectrum
        of the windowed images against the white-noise floor estimated in the image corners;
        default True: ~no effect on clean images, necessary on noisy ones).
    batch_size : int, optional
        Classes per batch (default 64).
    ctf_correction, image_source, wiener_snr : optional
        CTF-aware averages of the raw members (default None: the images of ``src`` as they
        are); see :meth:`~classavg.averaging.base.AligningAverager2D.set_ctf_correction`.
    """

    def __init__(self, src, *, basis=None, image_stacker=None, n_angles=360, n_radii=None,
                 band=(0.05, 0.4), shift_lowpass=0.15, snr_weighting=True, batch_size=64,
                 ctf_correction=None, image_source=None, wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size,
                         ctf_correction=ctf_correction, image_source=image_source,
                         wiener_snr=wiener_snr)
        self.snr_weighting = check_bool("snr_weighting", snr_weighting)
        self.n_angles = check_int("n_angles", n_angles, min=4)
        L = src.L
        self.n_radii = check_int("n_radii", n_radii if n_radii is not None else max(8, L // 2),
                                 min=2)
        try:
            lo, hi = (float(b) for b in band)
        except (TypeError, ValueError):
            raise ValueError(f"band must be a pair (low, high) of frequencies, got {band!r}")
        if not 0 < lo < hi <= 0.5:
            raise ValueError(f"band must satisfy 0 < low < high <= 0.5 cycles/pixel, "
                             f"got {band!r}")
        self.band = (lo, hi)
        self.shift_lowpass = check_float("shift_lowpass", shift_lowpass, min=0.0,
                                         min_inclusive=False)
        self.n_theta = self.n_angles // 2
        r_min = max(1.5, lo * L)
        r_max = min(hi * L, L // 2 - 2.0)
        if r_max <= r_min:
            raise ValueError(f"band {band!r} leaves no frequencies for L={L}")
        self._lp = log_polar_matrix(L, self.n_radii, self.n_theta, r_min, r_max)
        # window: disk with a raised-cosine edge over the outer quarter of the radius
        r = radial_grid(L) / (L / 2)
        self._window = np.clip(0.5 * (1 + np.cos(np.pi * (r - 0.75) / 0.25)), 0, 1)
        self._window[r <= 0.75] = 1.0
        self._window[r >= 1.0] = 0.0
        f = np.fft.fftshift(np.hypot(*np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L),
                                                  indexing="ij")))
        X = np.cos(np.pi * np.minimum(f, 0.5))
        self._hp = (1 - X) * (2 - X)
        ky, kx = np.meshgrid(np.fft.fftfreq(L), np.fft.fftfreq(L), indexing="ij")
        self._shift_weight = np.exp(-(kx ** 2 + ky ** 2) / (2 * self.shift_lowpass ** 2))
        self._r_lp = np.geomspace(r_min, r_max, self.n_radii)       # log-polar radii
        self._ring = np.rint(np.hypot(kx, ky) * L).astype(int)     # FFT-grid rings
        self._lp_weight = None
        self._sh_weight = self._shift_weight

    def _set_snr_weights(self, images):
        """Radial SNR weights from the windowed images' power spectrum and corner noise."""
        if not self.snr_weighting:
            self._lp_weight, self._sh_weight = None, self._shift_weight
            return
        L = self.src.L
        corners = ~disk_mask(L)
        noise = float(np.mean(np.var(images[:, corners], axis=1))) if corners.any() else 0.0
        P = np.mean(np.abs(scipy.fft.fft2(images * self._window, workers=-1)) ** 2, axis=0)
        nb = L // 2 + 2
        ring = np.minimum(self._ring, nb - 1)
        prof = np.bincount(ring.ravel(), P.ravel(), nb) / np.maximum(
            np.bincount(ring.ravel(), minlength=nb), 1)
        floor = noise * float(np.sum(self._window ** 2))
        w = np.clip((prof - floor) / np.maximum(prof, np.finfo(float).tiny), 0.0, 1.0)
        self._lp_weight = np.interp(self._r_lp, np.arange(nb), w)
        self._sh_weight = self._shift_weight * w[ring]

    def _repr_fields(self):
        return [f"n_angles={self.n_angles}"]

    # -- log-polar spectra ---------------------------------------------------------------------
    def _log_polar_spectra(self, images):
        """Fourier transform along the angle of the log-polar magnitudes, (n, n_radii, T//2+1)."""
        L = self.src.L
        n = images.shape[0]
        out = np.empty((n, self.n_radii, self.n_theta // 2 + 1), dtype=np.complex128)
        for s in range(0, n, 512):
            f = images[s:s + 512] * self._window
            F = np.abs(np.fft.fftshift(scipy.fft.fft2(f, workers=-1), axes=(-2, -1)))
            F *= self._hp
            lp = (self._lp @ F.reshape(F.shape[0], L * L).T).T
            lp = lp.reshape(F.shape[0], self.n_radii, self.n_theta)
            if self._lp_weight is not None:
                lp = lp * self._lp_weight[:, None]
            out[s:s + F.shape[0]] = scipy.fft.rfft(lp, axis=-1, workers=-1)
        return out

    def _rotation_correlation(self, Fr, Fm):
        """Angular phase correlation: Fr (..., R, K) reference, Fm (..., R, K) member ->
        correlation over the T angle lags (..., T); peak at the rotation of the member."""
        Q = np.einsum("...rk,...rk->...k", Fr, np.conj(Fm))
        Q[..., 0] = 0.0
        Q /= np.abs(Q) + _REG * np.abs(Q).max(axis=-1, keepdims=True) + 1e-300
        return scipy.fft.irfft(Q, n=self.n_theta, axis=-1, workers=-1)

    def _peak_angle(self, corr):
        """Sub-sample peak of angular correlations (..., T) -> angle in [0, pi) radians."""
        T = self.n_theta
        j = np.argmax(corr, axis=-1)

        def take(o):
            return np.take_along_axis(corr, ((j + o) % T)[..., None], -1)[..., 0]

        off = _parabola(take(-1), take(0), take(1))
        return np.mod((j + off) * np.pi / T, np.pi)

    # -- translation ---------------------------------------------------------------------------
    def _translation(self, ref_rot, members):
        """Phase-correlation translation of ``members`` onto ``ref_rot`` and onto its point
        reflection.

        Returns (shift (..., 2), peak (...), which (...)): ``which`` is 1 where the point
        reflection (rotation + pi) correlates better.
        """
        L = self.src.L
        Fx = np.conj(scipy.fft.fft2(members, workers=-1))
        best = None
        for which, ref in enumerate((ref_rot, np.roll(ref_rot[..., ::-1, ::-1], 1 - L % 2,
                                                      axis=(-2, -1)))):
            G = scipy.fft.fft2(ref, workers=-1) * Fx
            aG = np.abs(G)
            G /= aG + _REG * aG.max(axis=(-2, -1), keepdims=True) + 1e-300
            G *= self._sh_weight
            corr = scipy.fft.ifft2(G, workers=-1).real
            flat = corr.reshape(corr.shape[:-2] + (-1,))
            idx = np.argmax(flat, axis=-1)
            peak = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
            iy, ix = np.divmod(idx, L)

            def at(dy, dx):
                q = ((iy + dy) % L) * L + (ix + dx) % L
                return np.take_along_axis(flat, q[..., None], -1)[..., 0]

            ox = _parabola(at(0, -1), peak, at(0, 1))
            oy = _parabola(at(-1, 0), peak, at(1, 0))
            sx = (ix + L // 2) % L - L // 2 + ox
            sy = (iy + L // 2) % L - L // 2 + oy
            cand = (np.stack([sx, sy], -1), peak)
            if best is None:
                best = cand + (np.zeros(peak.shape, int),)
            else:
                better = cand[1] > best[1]
                best = (np.where(better[..., None], cand[0], best[0]),
                        np.where(better, cand[1], best[1]), better.astype(int))
        return best

    def _member_images(self, batch):
        imgs = batch.images[batch.inverse]                       # (b, m, L, L)
        return np.where(batch.refl[..., None, None], mirror_images(imgs), imgs)

    def _scores(self, batch, rotations, shifts):
        a0 = batch.coefficients()[batch.inverse[:, 0]]
        Bs = batch.shifted_member_coefficients(shifts)
        h = correlation_spectrum(a0[:, None, :], Bs, self.basis)
        (value,) = trig_eval(h.astype(np.complex128), rotations)
        norm = coefficient_norms(a0, self.basis)[:, None] * coefficient_norms(Bs, self.basis)
        return value / np.maximum(norm, np.finfo(np.float64).tiny)

    def _align_batch(self, batch):
        b, m = batch.indices.shape
        self._set_snr_weights(batch.images)
        F = self._log_polar_spectra(batch.images)               # (u, R, K)
        Fm = F[batch.inverse]                                   # (b, m, R, K)
        Fm = np.where(batch.refl[..., None, None], np.conj(Fm), Fm)
        Fr = F[batch.inverse[:, 0]][:, None]                    # (b, 1, R, K)
        c0 = self._peak_angle(self._rotation_correlation(Fr, Fm))   # (b, m) in [0, pi)
        # both candidates through the reference rotated by -c0 (and its point reflection)
        tr = self.transformer
        a0 = batch.coefficients()[batch.inverse[:, 0]]          # (b, count)
        L = self.src.L
        rot = tr.rotate(np.repeat(a0, m, axis=0), -c0.reshape(-1))
        ref_rot = tr.evaluate(rot).reshape(b, m, L, L)
        shifts, _, which = self._translation(ref_rot, self._member_images(batch))
        rotations = c0 + np.pi * which
        ref = ~batch.refl[:, 0]
        rotations[ref, 0] = 0.0
        shifts[ref, 0] = 0.0
        return rotations, shifts, self._scores(batch, rotations, shifts)


class BFSReddyChatterjiAverager2D(ReddyChatterjiAverager2D):
    """Reddy-Chatterji rotation with a brute-force search over shifts in a disk.

    See the module docstring.  Memory per batch grows with the number of candidate shifts
    (~ pi radius^2), hence the smaller default batch.

    Parameters
    ----------
    src : ImageSource
    radius : int, optional
        Largest integer shift searched in pixels, >= 0 (default ``max(1, L // 8)``).
    batch_size : int, optional
        Classes per batch (default 4).
    **kwargs
        As :class:`ReddyChatterjiAverager2D` (``basis``, ``image_stacker``, ``n_angles``,
        ``n_radii``, ``band``, ``shift_lowpass``, ``snr_weighting``, and the CTF keywords).
    """

    def __init__(self, src, *, basis=None, image_stacker=None, radius=None, n_angles=360,
                 n_radii=None, band=(0.05, 0.4), shift_lowpass=0.15, snr_weighting=True,
                 batch_size=4, ctf_correction=None, image_source=None, wiener_snr=None):
        super().__init__(src, basis=basis, image_stacker=image_stacker, n_angles=n_angles,
                         n_radii=n_radii, band=band, shift_lowpass=shift_lowpass,
                         snr_weighting=snr_weighting, batch_size=batch_size,
                         ctf_correction=ctf_correction, image_source=image_source,
                         wiener_snr=wiener_snr)
        if radius is None:
            radius = max(1, src.L // 8)
        self.radius = check_int("radius", radius, min=0, max=src.L // 2)
        # reuse BFSR's candidate bookkeeping (disk + ring, neighbour table, rolls)
        self._grid = BFSRAverager2D(src, basis=self.basis, radius=self.radius, n_angles=4,
                                    snr_weighting=snr_weighting)
        self._grid.__dict__["_transformer"] = self.transformer

    def _repr_fields(self):
        return [f"radius={self.radius}", f"n_angles={self.n_angles}"]

    def _align_batch(self, batch):
        b, m = batch.indices.shape
        self._set_snr_weights(batch.images)
        g = self._grid
        L = self.src.L
        shifts_t = g._shifts                                     # (n_t, 2), core first
        n_t, nc = shifts_t.shape[0], g._n_core
        # log-polar spectra of the windowed, shifted references and of the members
        ref = np.where(self.basis._mask, batch.reference_images(), 0)
        rolled = ref.reshape(b, -1)[:, g._roll_index].reshape(b, n_t, L, L)
        Fr = self._log_polar_spectra(rolled[:, :nc].reshape(-1, L, L))
        Fr = Fr.reshape(b, nc, self.n_radii, -1)
        F = self._log_polar_spectra(batch.images)
        Fm = F[batch.inverse]
        Fm = np.where(batch.refl[..., None, None], np.conj(Fm), Fm)     # (b, m, R, K)
        # rotation for every (t, member): cross-power summed over radii, batched over k
        Q = np.einsum("btrk,bjrk->btjk", Fr, np.conj(Fm))
        Q[..., 0] = 0.0
        Q /= np.abs(Q) + _REG * np.abs(Q).max(axis=-1, keepdims=True) + 1e-300
        corr = scipy.fft.irfft(Q, n=self.n_theta, axis=-1, workers=-1)
        c0 = self._peak_angle(corr)                              # (b, nc, m)
        # score both candidates with the exact pixel correlation <Rot(c) X, shift(R, -t)>
        A = g._shifted_references(batch)                         # (b, n_t, count)
        if self.snr_weighting:
            A = A * batch.snr_weights().astype(A.real.dtype)
        B = batch.member_coefficients()                          # (b, m, count)
        h = g._spectra(A, B).astype(np.complex128)               # (b, n_t, m, K)
        cand = np.stack([c0, c0 + np.pi], axis=-1)               # (b, nc, m, 2)
        sc = np.stack([trig_eval(h[:, :nc], cand[..., i])[0] for i in (0, 1)], -1)
        flat = np.moveaxis(sc, 2, 1).reshape(b, m, nc * 2)       # (b, m, nc*2)
        best = np.argmax(flat, axis=-1)
        t_best, which = np.divmod(best, 2)
        bi, ji = np.arange(b)[:, None], np.arange(m)[None, :]
        alpha = cand[bi, t_best, ji, which]                      # (b, m)
        # sub-pixel t: quadratic fit of the scores of the 3 x 3 neighbours at that angle
        nb = g._nbr[t_best]                                      # (b, m, 9)
        hn = h[bi[..., None], nb, ji[..., None]]                 # (b, m, 9, K)
        vals = trig_eval(hn, np.broadcast_to(alpha[..., None], nb.shape))[0]
        d = quadratic_peak(vals)
        t = shifts_t[t_best] + d
        ca, sa = np.cos(alpha), np.sin(alpha)
        s = np.stack([ca * t[..., 0] + sa * t[..., 1], -sa * t[..., 0] + ca * t[..., 1]], -1)
        ref0 = ~batch.refl[:, 0]
        alpha[ref0, 0] = 0.0
        s[ref0, 0] = 0.0
        return alpha, s, self._scores(batch, alpha, s)
