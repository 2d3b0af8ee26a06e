"""Lazy derived image sources: each wraps a parent source and transforms only the images asked
for, a batch at a time (vectorised over the batch, FFTs by ``scipy.fft`` with all threads).

They are normally made through the parent's methods: ``src.downsample(L)``,
``src.phase_flip()``, ``src.normalize_background(radius)``, ``src.invert_contrast()`` and
``src.astype(dtype)``, which can be chained.  A derived source keeps the parent's metadata
(``downsample`` updates the pixel-size fields) and delegates CTF parameters and offsets to it.

Conventions: images (k, L, L) indexed [image, y, x], centre pixel (L // 2, L // 2).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft

from .._grid import disk_mask
from .._validation import check_float, check_int
from .base import ImageSource, transform_method
from .ctf import evaluate_ctf

__all__ = ["DerivedSource", "DownsampledSource", "PhaseFlippedSource",
           "BackgroundNormalizedSource", "InvertedContrastSource", "CastSource"]

logger = logging.getLogger(__name__)

_AXES = (-2, -1)


class DerivedSource(ImageSource):
    """Base class of a source computed image by image from a parent source.

    Subclasses implement :meth:`_transform` on a batch ``(k, L_parent, L_parent)`` of parent
    images (already in this source's dtype).

    Parameters
    ----------
    parent : ImageSource
        The source transformed.
    L, dtype, pixel_size, metadata : optional
        Overrides of the parent's values.
    """

    #: Whether the step is a Fourier filter outside the image model (phase flip, whitening):
    #: CTF-aware averaging replays the chain without such steps
    #: (:meth:`~classavg.sources.chain.SourceChain.ctf_images`).
    model_filter = False

    def __init__(self, parent, *, L=None, dtype=None, pixel_size=None, metadata=None):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        self._parent = parent
        super().__init__(n=parent.n, L=parent.L if L is None else L,
                         dtype=parent.dtype if dtype is None else dtype,
                         pixel_size=parent.pixel_size if pixel_size is None else pixel_size,
                         metadata=parent.metadata if metadata is None else metadata)

    @property
    def parent(self) -> ImageSource:
        """The source this one is derived from."""
        return self._parent

    @property
    def has_ctf(self) -> bool:
        return self._parent.has_ctf

    def ctf_params(self, indices=None) -> dict:
        return self._parent.ctf_params(indices)

    @property
    def offsets(self) -> np.ndarray:
        return self._parent.offsets

    def _images(self, indices):
        batch = np.asarray(self._parent.images[indices], dtype=self.dtype)
        return self._transform(batch, indices)

    def _transform(self, batch, indices):  # pragma: no cover - abstract
        raise NotImplementedError

    def with_parent(self, parent):
        """The same transform applied to another parent source (a new source).

        Used by :func:`classavg.sources.chain.resolve_chain` to replay a chain of transforms
        without some of its steps (e.g. the raw images for CTF-aware averaging).
        """
        return type(self)(parent, **self._options())

    def _options(self):
        """Constructor options besides the parent (for :meth:`with_parent`)."""
        return {}

    def record(self):
        """What a run record keeps of this step besides its options (default: nothing)."""
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({self._parent!r}, L={self.L}, dtype={self.dtype.name})"


@transform_method("downsample")
class DownsampledSource(DerivedSource):
    """Images Fourier-cropped to ``L x L`` pixels (band-limited resampling).

    The centre pixel ``L_old // 2`` of the parent maps to the centre ``L // 2`` (the spectrum
    is taken with the centre pixel as phase origin); the central ``L x L`` frequencies are
    kept, the result is scaled by ``(L / L_old)**2`` so that the mean pixel value is preserved,
    and the real part is taken (for even ``L`` this symmetrises the unpaired Nyquist terms).
    The pixel size grows by ``L_old / L``.  Metadata: ``rlnImagePixelSize``/``rlnPixelSize``
    and ``rlnImageSize`` are updated, ``rlnMagnification`` and pixel origins ``rlnOriginX/Y``
    are scaled; origins in Angstrom are unchanged.

    Parameters
    ----------
    parent : ImageSource
    L : int
        New image size, ``2 <= L <= parent.L`` (``L == parent.L`` returns the same images).
    """

    def __init__(self, parent, L):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        L = check_int("L", L, min=2, max=parent.L)
        ratio = L / parent.L
        md = parent.metadata.copy()
        new_pix = parent.pixel_size / ratio
        for col in ("rlnImagePixelSize", "rlnPixelSize"):
            if col in md.columns:
                md[col] = md[col].to_numpy(np.float64) / ratio
        if "rlnImageSize" in md.columns:
            md["rlnImageSize"] = L
        for col in ("rlnOriginX", "rlnOriginY", "rlnMagnification"):
            if col in md.columns:
                md[col] = md[col].to_numpy(np.float64) * ratio
        super().__init__(parent, L=L, pixel_size=new_pix, metadata=md)
        L0 = parent.L
        freq = np.fft.fftfreq(L, 1.0 / L).astype(np.int64)  # 0, 1, ..., -1 (unshifted order)
        self._keep = freq % L0
        self._scale = (L / L0) ** 2

    @property
    def offsets(self) -> np.ndarray:
        return self._parent.offsets * (self.L / self._parent.L)

    def _options(self):
        return {"L": self.L}

    def _transform(self, batch, indices):
        if self.L == self._parent.L:
            return batch
        f = sfft.fft2(sfft.ifftshift(batch, axes=_AXES), axes=_AXES, workers=-1)
        f = f[:, self._keep[:, None], self._keep[None, :]]
        out = sfft.ifft2(f, axes=_AXES, workers=-1).real
        out = sfft.fftshift(out, axes=_AXES)
        out *= self._scale
        return out.astype(self.dtype, copy=False)


@transform_method("phase_flip")
class PhaseFlippedSource(DerivedSource):
    """Images whose Fourier transform is multiplied by the sign of their CTF.

    The CTF of every image comes from the parent's :meth:`~ImageSource.ctf_params` and pixel
    size (:func:`classavg.sources.ctf.evaluate_ctf`).  Frequencies where the CTF is exactly
    zero are left unchanged (sign +1), so flipping twice is the identity.  The filter is
    applied circularly; the real part of the result is returned.

    Raises
    ------
    ValueError
        The parent has no CTF parameters.
    """

    model_filter = True

    def __init__(self, parent):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        if not parent.has_ctf:
            from .base import CTF_COLUMNS
            missing = [c for c in CTF_COLUMNS if c not in parent.metadata.columns]
            raise ValueError(f"phase_flip needs CTF parameters, but {parent!r} has none "
                             f"(metadata lacks {missing}); expected a source with CTF metadata")
        super().__init__(parent)

    def _transform(self, batch, indices):
        ctf = evaluate_ctf(self.L, self._parent.pixel_size, **self._parent.ctf_params(indices),
                           dtype=np.float32)
        sign = sfft.ifftshift(np.where(ctf < 0, -1.0, 1.0).astype(np.float32), axes=_AXES)
        f = sfft.fft2(batch, axes=_AXES, workers=-1)
        f *= sign
        return sfft.ifft2(f, axes=_AXES, workers=-1).real.astype(self.dtype, copy=False)


@transform_method("normalize_background")
class BackgroundNormalizedSource(DerivedSource):
    """Images scaled to zero mean and unit standard deviation over the background.

    The background is every pixel at distance >= ``radius`` from the centre pixel
    ``(L // 2, L // 2)``.  The default ``radius = L // 2`` is the largest disc that fits in
    the box, so the background is the four corners and any particle that fits in the box is
    excluded from the statistics.  With ``ramp`` (default) the least-squares plane
    ``a + b x + c y`` through the background pixels is subtracted from the whole image
    instead of their mean, as RELION's ``relion_preprocess --norm`` does unless ``--no_ramp``:
    an ice-thickness gradient across the box is removed (it would otherwise pull the
    centring and the alignments towards the thicker side), and the standard deviation is
    that of the background about the plane.  An image with a constant background is only
    shifted.

    Parameters
    ----------
    parent : ImageSource
    radius : float, optional
        Particle radius in pixels, ``0 < radius``, leaving at least 2 background pixels
        (4 with ``ramp``: a plane has 3 parameters).
    ramp : bool, optional
        Subtract the background plane rather than the background mean (default True).
    """

    def __init__(self, parent, radius=None, *, ramp=True):
        if not isinstance(parent, ImageSource):
            raise TypeError(f"parent must be an ImageSource, got {type(parent).__name__}")
        L = parent.L
        radius = L // 2 if radius is None else check_float("radius", radius, min=0,
                                                            min_inclusive=False)
        background = ~disk_mask(L, float(radius))
        self.ramp = bool(ramp)
        need = 4 if self.ramp else 2
        if background.sum() < need:
            raise ValueError(f"radius must leave at least {need} background pixels in a "
                             f"{L}x{L} box (radius < {np.hypot(L // 2, L // 2):.3g}), got "
                             f"{radius!r}")
        self.radius = float(radius)
        self._background = background
        if self.ramp:
            # Least-squares plane through the background: coefficients = bg @ pinv.T, with
            # the design matrix [1, x, y] of the background pixels (centred coordinates,
            # so the columns are near-orthogonal and the pseudo-inverse well conditioned).
            y, x = (np.indices((L, L)) - L // 2).astype(np.float64)
            design = np.stack([np.ones(background.sum()), x[background], y[background]], 1)
            self._pinv = np.linalg.pinv(design)                         # (3, n_bg)
            self._planes = np.stack([np.ones((L, L)), x, y])            # (3, L, L)
            self._bg_planes = self._planes[:, background]               # (3, n_bg)
        super().__init__(parent)

    def _options(self):
        return {"radius": self.radius, "ramp": self.ramp}

    def _transform(self, batch, indices):
        bg = batch[:, self._background].astype(np.float64)
        if self.ramp:
            coef = bg @ self._pinv.T                                    # (k, 3)
            plane = np.tensordot(coef, self._planes, axes=1)           # (k, L, L)
            std = (bg - coef @ self._bg_planes).std(axis=1)
        else:
            mean = bg.mean(axis=1)
            plane = mean[:, None, None]
            std = bg.std(axis=1)
        flat = std <= 1e-12 * np.maximum(np.abs(bg).max(axis=1), 1e-300)
        if np.any(flat):
            logger.debug("%d image(s) have a constant background; not rescaled", int(flat.sum()))
            std[flat] = 1.0
        out = batch - plane.astype(self.dtype)
        out /= std[:, None, None].astype(self.dtype)
        return out


@transform_method("invert_contrast")
class InvertedContrastSource(DerivedSource):
    """Negated images (dark particles become bright)."""

    def __init__(self, parent):
        super().__init__(parent)

    def _transform(self, batch, indices):
        return np.negative(batch)


@transform_method("astype")
class CastSource(DerivedSource):
    """The parent's images as another float dtype (float32 or float64)."""

    def __init__(self, parent, dtype):
        super().__init__(parent, dtype=dtype)

    def _options(self):
        return {"dtype": self.dtype}

    def _transform(self, batch, indices):
        return batch
