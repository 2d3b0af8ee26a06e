r"""CTF-aware class averages: Wiener-filtered combination of the aligned members.

With ``ctf_correction="wiener"`` an :class:`~classavg.averaging.base.AligningAverager2D`
combines the aligned members of a class in Fourier space as

.. math::

    A(\mathbf k) = \frac{\sum_i H'_i(\mathbf k)\, X'_i(\mathbf k)}
                        {\sum_i H'_i(\mathbf k)^2 + 1 / \mathrm{SNR}(|\mathbf k|)},

the Wiener filter of a set of images of one object seen through different CTFs [1]_ [2]_ [3]_:
``X'_i`` is the Fourier transform of member ``i`` of the *raw* (CTF-modulated) images brought
onto the reference by its alignment (mirror -> shift -> rotate, ``docs/conventions.md``) and
``H'_i`` its CTF carried along by the same transform.  Averaging members from several defocus
groups fills in each other's CTF zeros; the average estimates the CTF-free projection (its
low frequencies and the amplitude envelope restored), unlike the mean of phase-flipped images,
which keeps the mean ``|CTF|`` as a filter.  ``ctf_correction="phase_flip"`` computes that
classical mean of the phase-flipped members instead (same inputs, for comparison).

Which images are averaged
-------------------------
Classification and alignment may run on phase-flipped images while the averages need the raw
images and their CTF parameters.  The averager's ``image_source`` (the design's
``averager_src``) gives them, resolved by :func:`resolve_image_source`:

* by default the averager's source, ``image_source`` when given (same ``n`` and ``L``, with
  CTF metadata);
* either one without the phase-flip steps of its chain of derived sources
  (:meth:`classavg.sources.chain.SourceChain.ctf_images`: the parent of a final
  ``phase_flip()``, or the other steps replayed over the file-backed source, so that
  ``src.phase_flip().downsample(64).normalize_background()`` averages
  ``src.downsample(64).normalize_background()``);
* data phase flipped on disk (RELION's ``rlnCtfDataArePhaseFlipped``) have no raw images:
  they are combined with ``|CTF|`` in place of the CTF, exact for flipped images
  ``sign(H) (H X + N) = |H| X + N'``.  An in-memory array of phase-flipped pixels without
  that label cannot be recognised: pass the raw images.

Implementation: exact transforms of the whole box in Fourier space
-------------------------------------------------------------------
The CTF spreads a particle's signal over ``lambda * defocus * |k|`` (about 12 pixels at
4 A/pixel, 2.5 um defocus and Nyquist; multiples of it for the harmonics of ``|CTF|``), so a raw
or phase-flipped image cut to the disk of radius ``L / 2`` -- as the Fourier-Bessel transforms
of the alignment do -- loses the outer part of its high-frequency signal, and the CTF weights
no longer match what is left (built-in molecule, L = 64, 1-2.5 um defocus: the spectrum of
a disk-masked phase-flipped member correlates with ``|CTF|`` times the projection's spectrum
at ~1.0 up to 0.4 Nyquist but at ~0 at 0.6 Nyquist).  Here nothing is masked before
the combination: the Fourier transform of the aligned member is evaluated exactly on the
reference's frequency grid from the whole box of the raw image,

.. math::

    X'_i(\mathbf k) = e^{-2\pi i\, (\mathrm{Rot}(c)\, s) \cdot \mathbf k}\;
                       \hat x_i(Q\, \mathrm{Rot}(-c)\, \mathbf k),
    \qquad \hat x(\mathbf k) = \sum_p x(p)\, e^{-2\pi i\, \mathbf k \cdot p},

(mirror ``Q = diag(1, -1)`` or identity, shift ``s``, rotation ``c``; ``p`` pixel coordinates
about the centre pixel), one type-2 non-uniform FFT (finufft) per distinct image at the
transformed frequencies ``|k| < 1/2`` of all its occurrences in the batch; frequencies beyond
``1/2`` cycle/pixel are left out.  The average ``A`` is brought back to pixels by an inverse
FFT and projected onto the Fourier-Bessel basis of the averager (band-limited, zero outside the
disk of radius ``L / 2``, as the other averages).  ``"phase_flip"`` uses the same transforms,
``sum_i sign(H'_i) X'_i / m`` (a non-linear stacker then acts on the member images).

Transformed CTF.  ``CTF(k)`` depends on the direction of ``k`` only through the astigmatic
defocus ``dz(phi) = (dU + dV)/2 + (dU - dV)/2 cos(2 (phi - angle))``
(:mod:`classavg.sources.ctf`).  The mirror ``y -> -y`` maps ``phi`` to ``-phi`` (angle ->
``-angle``), a shift only multiplies the transform by a phase (``|CTF|`` unchanged), and a
counter-clockwise rotation by ``c`` turns ``phi`` into ``phi - c`` (angle -> ``angle + c``).
So member ``i`` aligned by ``(refl, shift, rotation)`` has the CTF of its parameters with
``rlnDefocusAngle' = (-angle if refl else angle) + degrees(rotation)``
(:func:`transformed_defocus_angles`).

Spectral SNR
------------
``1 / SNR(k) = P_N(k) / P_S(k)`` is the ratio, per Fourier coefficient, of the noise power of
a member to the power of the CTF-free signal, taken constant on rings ``round(|k| L)``.  By
default it is estimated per class and ring from the members themselves
(:func:`inverse_snr`): with ``m`` members, the least-squares residual
``RSS(k) = sum_i |X'_i|^2 - |sum_i H'_i X'_i|^2 / sum_i H'^2_i`` has expectation
``(m - 1) P_N(k)``, and ``|sum_i H'_i X'_i|^2`` has expectation
``P_S(k) (sum_i H'^2_i)^2 + P_N(k) sum_i H'^2_i``.  Ring sums of both give ``P_N`` and
``P_S``; signal that is not consistent across the members (misalignment, neighbouring views)
counts as noise, as it should.  The estimate is then capped at
``MAX_REGULARIZATION * mean_ring(sum_i H'^2_i)`` (0.3): where the class has little signal the
filter keeps correcting the CTF -- it damps only the frequencies where every member's CTF is
small -- instead of also low-pass filtering the average.  The uncapped filter minimises the
mean-square error, but its radial shrinkage and its within-ring weights ``~ sum_i H'^2_i``
(optimal only for a rotationally uniform signal spectrum, which a projection does not have)
cost FRC resolution against the truth: in ``benchmarks/average.py --wiener`` (100
nearest-view classes of 50, 64 x 64, 7 defocus groups, true alignment) the uncapped filter's
FRC-0.5 resolution equalled that of the mean of the phase-flipped images at SNR 1/4 and was
0.6 % worse at 1/32, the capped one 3 % better at both, for a real-space correlation with the
truth lower by at most 0.004 (0.975 instead of 0.979 at 1/32).  A
fixed ``wiener_snr`` replaces the estimate and the cap by a constant.  Guards: ``1 / SNR``
is at least ``1e-6`` times the mean of ``sum_i H'^2_i`` over the frequencies of the class
(clean data: no division by ~0 where every CTF is small); a ring without detected signal
(``P_S <= 0``) gets the cap, or ``A = 0`` with the cap off (``MAX_REGULARIZATION = None``);
a class of one member (no estimate) gets the cap.

Apodisation.  Restoring the low frequencies, where every CTF is ~ the amplitude contrast
(0.1), multiplies their noise; it covers the whole box, and a hard cut at the disk edge
(the basis projection, or the masked FRC of :mod:`classavg.metrics`) spreads it over all
frequencies.  The average is therefore tapered by a raised cosine from ``0.75 L / 2`` to
``L / 2`` (:func:`apodization_mask`, ``APODIZATION``) before its projection, in both CTF
modes; particles are expected inside ``0.75 L / 2`` (the built-in molecule reaches
``0.67 L / 2``).

References
----------
.. [1] P. A. Penczek, "Image restoration in cryo-electron microscopy", Methods Enzymol. 482,
   35-72 (2010) (Wiener filtering of averages of images with different CTFs).
.. [2] S. H. W. Scheres, "RELION: implementation of a Bayesian approach to cryo-EM structure
   determination", J. Struct. Biol. 180, 519-530 (2012) (CTF-weighted averages,
   ``sum CTF X / (sum CTF^2 + 1 / SNR)``; CTF convention).
.. [3] J. Frank, "Three-Dimensional Electron Microscopy of Macromolecular Assemblies", 2nd ed.,
   Oxford University Press (2006), ch. 2-3 (CTF correction by phase flipping and Wiener
   filtering).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .._grid import rfft_rings
from .._validation import check_choice, check_float
from ..sources.base import CTF_COLUMNS, ImageSource
from ..sources.ctf import evaluate_ctf, rfft_layout
from ..sources.chain import resolve_chain

__all__ = [
    "CTF_CORRECTIONS",
    "check_ctf_options",
    "resolve_image_source",
    "transformed_defocus_angles",
    "member_ctfs",
    "ring_indices",
    "inverse_snr",
    "ctf_corrected_stack",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``ctf_correction``.
CTF_CORRECTIONS = (None, "wiener", "phase_flip")

#: ``1 / SNR`` is at least this fraction of the class's mean ``sum_i CTF_i^2``.
MIN_REGULARIZATION = 1e-6

#: The estimated ``1 / SNR`` of a ring is at most this fraction of the ring's mean
#: ``sum_i CTF_i^2`` (None: no cap, the minimum-mean-square-error filter).
MAX_REGULARIZATION = 0.3

#: The CTF-corrected average is tapered to zero by a raised cosine between
#: ``APODIZATION * L / 2`` and ``L / 2`` before its projection onto the disk (None: hard cut).
APODIZATION = 0.75

_AXES = (-2, -1)


# ---------------------------------------------------------------------------------------------
# Options and sources
# ---------------------------------------------------------------------------------------------
def resolve_image_source(src, image_source=None, ctf_correction="wiener"):
    """The raw, CTF-modulated images that a CTF-aware averager combines.

    Parameters
    ----------
    src : ImageSource
        The averager's source (the images the class tables index and alignment uses).
    image_source : ImageSource, optional
        Explicit images with CTF metadata (same ``n`` and ``L``).  Default: ``src``.
    ctf_correction : str
        Named in the error messages.

    Returns
    -------
    image_source : ImageSource
        The chosen source without its phase-flip steps (module docstring).
    flipped : bool
        Its images are phase flipped on disk (``rlnCtfDataArePhaseFlipped``): combine them
        with ``|CTF|``.

    Raises
    ------
    ValueError
        The images have no CTF parameters or do not match ``src``.
    """
    if image_source is None:
        image_source = src
    elif not isinstance(image_source, ImageSource):
        raise TypeError(f"image_source must be an ImageSource, got {type(image_source).__name__}")
    if image_source.n != src.n or image_source.L != src.L:
        raise ValueError(f"image_source must have the size of the averager's source "
                         f"(n={src.n}, L={src.L}), got n={image_source.n}, L={image_source.L}")
    if not image_source.has_ctf:
        missing = [c for c in CTF_COLUMNS if c not in image_source.metadata.columns]
        raise ValueError(f"ctf_correction={ctf_correction!r} needs CTF parameters, but "
                         f"{image_source!r} has none (metadata lacks {missing}); expected a "
                         "source with CTF metadata, or ctf_correction=None")
    chain = resolve_chain(image_source)
    return chain.ctf_images(), chain.ctf_images_flipped


def check_ctf_options(src, image_stacker, ctf_correction=None, image_source=None,
                      wiener_snr=None):
    """Validate the CTF options of an averager.

    Returns
    -------
    (ctf_correction, image_source, image_source_flipped, wiener_snr)
        ``image_source`` and whether it is phase flipped on disk, resolved by
        :func:`resolve_image_source` (None and False without correction).
    """
    ctf_correction = check_choice("ctf_correction", ctf_correction, CTF_CORRECTIONS)
    wiener_snr = check_float("wiener_snr", wiener_snr, min=0.0, min_inclusive=False,
                             allow_none=True)
    if wiener_snr is not None and ctf_correction != "wiener":
        raise ValueError(f"wiener_snr is used only with ctf_correction='wiener', got "
                         f"ctf_correction={ctf_correction!r}")
    if ctf_correction is None:
        if image_source is not None:
            raise ValueError("image_source is used only with ctf_correction='wiener' or "
                             "'phase_flip', got ctf_correction=None")
        return None, None, False, None
    if ctf_correction == "wiener" and not image_stacker.linear:
        raise ValueError(f"ctf_correction='wiener' combines the members with CTF weights and "
                         f"needs a linear (mean) image_stacker, got {image_stacker!r}")
    raw, flipped = resolve_image_source(src, image_source, ctf_correction)
    return ctf_correction, raw, flipped, wiener_snr


# ---------------------------------------------------------------------------------------------
# CTFs of transformed members
# ---------------------------------------------------------------------------------------------
def transformed_defocus_angles(defocus_angle, refl, rotations):
    """Astigmatism angle (degrees) of a CTF after mirror -> shift -> rotation of its image.

    Parameters
    ----------
    defocus_angle : array_like
        ``rlnDefocusAngle`` in degrees.
    refl : array_like of bool
        Mirror ``y -> -y`` (applied first): the angle changes sign.
    rotations : array_like
        Counter-clockwise rotation in radians (applied last): added to the angle.

    Returns
    -------
    ndarray (broadcast shape), degrees
    """
    a = np.asarray(defocus_angle, dtype=np.float64)
    return np.where(refl, -a, a) + np.rad2deg(np.asarray(rotations, dtype=np.float64))


def member_ctfs(params, refl, rotations, L, pixel_size, dtype=np.float64):
    """CTFs of aligned members on the ``rfft2`` half plane.

    Parameters
    ----------
    params : dict of ndarray, each (n,)
        CTF parameters of the members (:meth:`ImageSource.ctf_params`).
    refl : ndarray of bool, shape (n,)
    rotations : ndarray, shape (n,)
        The members' alignment (radians); shifts do not change ``|CTF|``.
    L : int
    pixel_size : float
        Angstrom.
    dtype : numpy float dtype

    Returns
    -------
    ndarray, shape (n, L, L // 2 + 1)
        ``CTF'(k)`` at ``ky = fftfreq(L)`` (rows), ``kx = rfftfreq(L)`` (columns).
    """
    p = dict(params)
    p["defocus_angle"] = transformed_defocus_angles(p["defocus_angle"], refl, rotations)
    return rfft_layout(evaluate_ctf(L, pixel_size, **p, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# Spectral SNR
# ---------------------------------------------------------------------------------------------
def ring_indices(L):
    """Rings ``round(|k| L)`` of the ``rfft2`` half plane and their Hermitian weights
    (:func:`classavg._grid.rfft_rings`)."""
    return rfft_rings(L)


def _ring_sums(x, ring, weight, n_rings):
    """Hermitian-weighted sums of ``x`` (c, L, Lh) over the rings -> (c, n_rings)."""
    c = x.shape[0]
    flat = (np.arange(c)[:, None] * n_rings + ring.reshape(1, -1)).ravel()
    return np.bincount(flat, weights=(x.reshape(c, -1) * weight.reshape(1, -1)).ravel(),
                       minlength=c * n_rings).reshape(c, n_rings)


def inverse_snr(num, den, power, m):
    """Per-ring ``1 / SNR = P_N / P_S`` of classes from their member sums (module docstring).

    Parameters
    ----------
    num : ndarray, complex, shape (c, L, L // 2 + 1)
        ``sum_i H'_i X'_i`` per class.
    den : ndarray, shape (c, L, L // 2 + 1)
        ``sum_i H'_i^2``.
    power : ndarray, shape (c, L, L // 2 + 1)
        ``sum_i |X'_i|^2``.
    m : int
        Members per class, >= 2.

    Returns
    -------
    ndarray, shape (c, n_rings)
        For the rings ``round(|k| L)`` of :func:`ring_indices`; ``inf`` where no signal is
        detected (``P_S <= 0``), 0 where there is no noise.
    """
    ring, w = ring_indices(num.shape[1])
    n_rings = int(ring.max()) + 1
    tiny = np.finfo(np.float64).tiny
    d = np.maximum(den, tiny)
    coh = num.real ** 2 + num.imag ** 2                        # |sum H X|^2
    rss = np.maximum(power - coh / d, 0.0)                     # (m - 1) P_N on average
    count = _ring_sums(np.ones_like(d), ring, w, n_rings)
    p_n = _ring_sums(rss, ring, w, n_rings) / np.maximum(count * (m - 1), tiny)
    sig = _ring_sums(coh, ring, w, n_rings) - p_n * _ring_sums(d, ring, w, n_rings)
    p_s = np.maximum(sig, 0.0) / np.maximum(_ring_sums(d * d, ring, w, n_rings), tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_s > 0, p_n / np.where(p_s > 0, p_s, 1.0), np.inf)


# ---------------------------------------------------------------------------------------------
# The stacking step
# ---------------------------------------------------------------------------------------------
def _combine_wiener(Xa, Ha, wiener_snr):
    """Wiener average of classes from member spectra Xa and CTFs Ha, both (c, m, L, Lh)."""
    c, m, L = Xa.shape[:3]
    X = Xa.astype(np.complex128, copy=False)
    H = Ha.astype(np.float64, copy=False)
    num = np.einsum("cmyx,cmyx->cyx", H, X)
    den = np.einsum("cmyx,cmyx->cyx", H, H)
    if wiener_snr is not None:
        inv = np.full((c, 1, 1), 1.0 / wiener_snr)
    else:
        ring, w = ring_indices(L)
        n_rings = int(ring.max()) + 1
        if m > 1:
            power = np.einsum("cmyx,cmyx->cyx", X.real, X.real) + \
                np.einsum("cmyx,cmyx->cyx", X.imag, X.imag)
            inv = inverse_snr(num, den, power, m)                 # (c, n_rings)
        else:                                                     # no estimate: the cap
            inv = np.full((c, n_rings), np.inf)
        if MAX_REGULARIZATION is not None:
            mean_den = _ring_sums(den, ring, w, n_rings) / np.maximum(
                _ring_sums(np.ones_like(den), ring, w, n_rings), 1.0)
            inv = np.minimum(inv, MAX_REGULARIZATION * mean_den)
        inv = inv[:, ring]                                        # (c, L, Lh)
    inv = np.maximum(inv, MIN_REGULARIZATION * den.reshape(c, -1).mean(axis=1)[:, None, None])
    finite = np.isfinite(inv)
    return np.where(finite, num / (den + np.where(finite, inv, 0.0)), 0.0)


class _MemberSpectra:
    """Fourier transforms of aligned members on the reference's grid (module docstring).

    Parameters
    ----------
    L : int
    dtype : numpy float dtype
        float32 (single-precision NUFFT, tolerance 1e-5) or float64 (1e-9).
    """

    def __init__(self, L, dtype):
        import finufft

        self.L = L
        self.Lh = L // 2 + 1
        single = np.dtype(dtype) == np.float32
        self.cdtype = np.complex64 if single else np.complex128
        self.rdtype = np.float32 if single else np.float64
        ky, kx = np.meshgrid(np.fft.fftfreq(L), np.fft.rfftfreq(L), indexing="ij")
        self.inside = np.hypot(kx, ky) < 0.5                      # (L, Lh)
        self.kx, self.ky = kx[self.inside], ky[self.inside]      # (P,)
        # Many small transforms with different points: one thread, one reused plan.
        self._plan = finufft.Plan(2, (L, L), eps=1e-5 if single else 1e-9, isign=-1,
                                  dtype=np.dtype(self.cdtype).name, nthreads=1)

    def __call__(self, images, inverse, refl, shifts, rotations):
        """Spectra (n, L, L // 2 + 1) of members ``images[inverse[j]]`` aligned by
        ``(refl[j], shifts[j], rotations[j])``; zero at ``|k| >= 1/2``."""
        n = inverse.shape[0]
        ca, sa = np.cos(rotations)[:, None], np.sin(rotations)[:, None]
        # Q Rot(-c) k: rotate clockwise by c, then mirror y
        qx = ca * self.kx + sa * self.ky
        qy = -sa * self.kx + ca * self.ky
        qy = np.where(refl[:, None], -qy, qy)
        tx = ca[:, 0] * shifts[:, 0] - sa[:, 0] * shifts[:, 1]    # Rot(c) s
        ty = sa[:, 0] * shifts[:, 0] + ca[:, 0] * shifts[:, 1]
        vals = np.empty((n, self.kx.size), dtype=self.cdtype)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        two_pi = 2 * np.pi
        for grp in np.split(order, bounds):                       # one NUFFT per image
            self._plan.setpts((two_pi * qy[grp]).ravel().astype(self.rdtype),
                              (two_pi * qx[grp]).ravel().astype(self.rdtype))
            f = images[inverse[grp[0]]].astype(self.cdtype)
            vals[grp] = self._plan.execute(f).reshape(grp.size, -1)
        arg = -two_pi * (tx[:, None] * self.kx + ty[:, None] * self.ky)
        vals *= (np.cos(arg) + 1j * np.sin(arg)).astype(self.cdtype)
        out = np.zeros((n, self.L, self.Lh), dtype=self.cdtype)
        out[:, self.inside] = vals
        return out


def ctf_corrected_stack(averager, batch, alignment, *, column_sets=None):
    """CTF-corrected averages of a batch of classes (``ctf_correction`` of ``averager``).

    Parameters
    ----------
    averager : AligningAverager2D
        With ``ctf_correction`` in ("wiener", "phase_flip") and a resolved ``image_source``.
    batch : ClassBatch
    alignment : AlignmentResult
        Of the batch.
    column_sets : sequence of (ndarray of int or None), optional
        Stack these subsets of the member columns (None: all of them) from the same member
        spectra, e.g. the average and its two half sets; a list of outputs is returned.

    Returns
    -------
    ndarray, shape (b, L, L), or a list of them (one per column set)
        Band-limited to the basis, zero outside the disk of radius ``L / 2`` (for
        "phase_flip" with a non-linear stacker: the stacker's pixel images).
    """
    tr = averager.transformer
    mode = averager.ctf_correction
    raw = averager.image_source
    st = averager.image_stacker
    b, m = batch.indices.shape
    L = tr.L
    Lh = L // 2 + 1
    px = raw.pixel_size
    sets = [np.arange(m) if c is None else np.asarray(c) for c in
            ((None,) if column_sets is None else column_sets)]
    spectra = _MemberSpectra(L, tr.dtype)
    params = raw.ctf_params(batch.indices.reshape(-1))
    images = batch.images if raw is averager.src else raw.images[batch.unique]
    outs = [np.zeros((b, L, L), dtype=tr.dtype) for _ in sets]
    step = max(1, tr.chunk // m)
    for c0 in range(0, b, step):
        sl = slice(c0, min(c0 + step, b))
        c = sl.stop - sl.start
        mem = slice(c0 * m, sl.stop * m)
        refl = batch.refl[sl].reshape(-1)
        rot = alignment.rotations[sl].reshape(-1)
        X = spectra(images, batch.inverse[sl].reshape(-1), refl,
                    alignment.shifts[sl].reshape(-1, 2), rot)      # (c m, L, Lh)
        H = member_ctfs({k: v[mem] for k, v in params.items()}, refl, rot, L, px,
                        dtype=tr.dtype)
        if averager.image_source_flipped:      # flipped on disk: sign(H)(H X + N) = |H| X + N'
            H = np.abs(H)
        X = X.reshape(c, m, L, Lh)
        H = H.reshape(c, m, L, Lh)
        if mode == "phase_flip":
            X *= np.where(H < 0, -1.0, 1.0).astype(tr.dtype)
        for cols, out in zip(sets, outs):
            if cols.size == 0:
                continue
            if mode == "phase_flip":
                if not st.linear:
                    imgs = sfft.irfft2(X[:, cols], s=(L, L), axes=_AXES, workers=-1)
                    out[sl] = st.stack(sfft.fftshift(imgs, axes=_AXES))
                    continue
                w = st(np.eye(cols.size), axis=0)
                A = np.einsum("j,cjyx->cyx", w, X[:, cols])
            else:
                A = _combine_wiener(X[:, cols], H[:, cols], averager.wiener_snr)
            img = sfft.fftshift(sfft.irfft2(A, s=(L, L), axes=_AXES, workers=-1), axes=_AXES)
            out[sl] = img.astype(tr.dtype, copy=False)
    pixel_images = mode == "phase_flip" and not st.linear
    for i, (cols, out) in enumerate(zip(sets, outs)):
        if cols.size == 0:
            continue
        if APODIZATION is not None:
            out *= apodization_mask(L, APODIZATION).astype(out.dtype)
        if not pixel_images:
            outs[i] = tr.evaluate(tr.expand(out))
    return outs[0] if column_sets is None else outs


def apodization_mask(L, start):
    """Raised-cosine disk mask (L, L): 1 inside radius ``start * L / 2``, 0 beyond ``L / 2``.

    Restoring the low frequencies (where every CTF is small) multiplies their noise, which
    covers the whole box; cutting it at the disk edge would spread it over all frequencies,
    so the average is tapered first.
    """
    from .._grid import radial_grid

    r = radial_grid(L) / (L / 2)
    t = np.clip((r - start) / max(1.0 - start, 1e-12), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))
