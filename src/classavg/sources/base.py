"""The :class:`ImageSource` interface and the in-memory :class:`ArrayImageSource`.

Conventions
-----------
Images are float arrays of shape ``(k, L, L)`` indexed ``[image, y, x]`` with the centre at
pixel ``(L // 2, L // 2)``; float32 by default, float64 on request.  Per-image metadata lives in
a :class:`pandas.DataFrame` whose columns are RELION labels without the leading underscore
(``rlnDefocusU``, ``rlnOriginXAngst``, ...), with optics-group values folded into every row.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

from .._validation import check_int

__all__ = ["ImageSource", "ArrayImageSource"]

logger = logging.getLogger(__name__)

#: Metadata columns that describe a CTF (RELION labels).
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
               "rlnSphericalAberration", "rlnAmplitudeContrast")


class _ImageAccessor:
    """``source.images[key]``: a slice, an integer or an integer index array -> (k, L, L)."""

    def __init__(self, source):
        self._source = source

    def __getitem__(self, key):
        n = self._source.n
        if isinstance(key, slice):
            idx = np.arange(n)[key]
        elif isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"image index {key} is out of range for a source of {n} images")
            idx = np.array([key % n])
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index must have shape ({n},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise IndexError("images[...] takes a slice, an integer or a 1-D integer array, "
                                 f"got {key!r}")
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"image indices must lie in [0, {n}), got min {idx.min()} "
                                 f"max {idx.max()}")
            idx = idx % n if idx.size else idx.astype(np.int64)
        out = self._source._images(idx.astype(np.int64))
        return np.asarray(out, dtype=self._source.dtype)

    def __len__(self):
        return self._source.n


class ImageSource(ABC):
    """A lazy, indexable stack of ``n`` square images of ``L x L`` pixels.

    Subclasses implement one method, :meth:`_images`, which reads the images at an integer
    index array.  Everything else (batching, transforms, saving) is built on it.

    Parameters
    ----------
    n : int
        Number of images.
    L : int
        Image size in pixels.
    dtype : numpy dtype, optional
        float32 (default) or float64: the dtype of the arrays returned by ``images``.
    pixel_size : float, optional
        Pixel size in Angstrom (default 1.0).
    metadata : pandas.DataFrame, optional
        One row per image, RELION labels (without the leading underscore) as columns.
    """

    def __init__(self, *, n, L, dtype=np.float32, pixel_size=1.0, metadata=None):
        self._n = check_int("n", n, min=1)
        self._L = check_int("L", L, min=2)
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self._dtype = dtype
        self._pixel_size = float(pixel_size) if pixel_size is not None else 1.0
        if not np.isfinite(self._pixel_size) or self._pixel_size <= 0:
            raise ValueError(f"pixel_size must be a positive number of Angstrom, got {pixel_size!r}")
        if metadata is None:
            metadata = pd.DataFrame(index=pd.RangeIndex(self._n))
        elif len(metadata) != self._n:
            raise ValueError(f"metadata must have one row per image ({self._n}), "
                             f"got {len(metadata)} rows")
        self._metadata = metadata.reset_index(drop=True)

    # -- basic properties -------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of images."""
        return self._n

    @property
    def L(self) -> int:
        """Image size in pixels."""
        return self._L

    @property
    def dtype(self) -> np.dtype:
        """dtype of the returned images."""
        return self._dtype

    @property
    def pixel_size(self) -> float:
        """Pixel size in Angstrom."""
        return self._pixel_size

    @property
    def metadata(self) -> pd.DataFrame:
        """Per-image metadata table (RELION labels without the leading underscore)."""
        return self._metadata

    @property
    def images(self) -> _ImageAccessor:
        """Indexable access: ``src.images[10:20]`` or ``src.images[idx]`` -> (k, L, L)."""
        return _ImageAccessor(self)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.n}, L={self.L}, dtype={self.dtype.name}, "
                f"pixel_size={self.pixel_size:g})")

    @abstractmethod
    def _images(self, indices: np.ndarray) -> np.ndarray:
        """Return the images at ``indices`` (1-D int64 array), shape (len(indices), L, L)."""

    # -- iteration -----------------------------------------------------------------------------
    def iter_batches(self, batch_size=1024, indices=None):
        """Yield ``(batch_indices, images)`` over the source (or ``indices``) in batches.

        Memory is bounded by one batch of ``batch_size`` images.
        """
        batch_size = check_int("batch_size", batch_size, min=1)
        idx = np.arange(self.n) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, idx.size, batch_size):
            b = idx[start:start + batch_size]
            yield b, self.images[b]

    # -- CTF and pose metadata -----------------------------------------------------------------
    @property
    def has_ctf(self) -> bool:
        """True when every CTF column is present in the metadata."""
        return all(c in self._metadata.columns for c in CTF_COLUMNS)

    def ctf_params(self, indices=None) -> dict:
        """CTF parameters as a dict of float arrays (RELION units: A, deg, kV, mm, fraction).

        Keys: ``defocus_u, defocus_v, defocus_angle, voltage, cs, amplitude_contrast,
        phase_shift, bfactor`` -- the keyword arguments of
        :func:`classavg.sources.ctf.evaluate_ctf`.
        """
        if not self.has_ctf:
            missing = [c for c in CTF_COLUMNS if c not in self._metadata.columns]
            raise ValueError(f"{self!r} has no CTF parameters: metadata lacks {missing}")
        md = self._metadata if indices is None else self._metadata.iloc[np.asarray(indices)]

        def col(name, default=0.0):
            if name in md.columns:
                return md[name].to_numpy(dtype=np.float64)
            return np.full(len(md), default)

        return dict(defocus_u=col("rlnDefocusU"), defocus_v=col("rlnDefocusV"),
                    defocus_angle=col("rlnDefocusAngle"), voltage=col("rlnVoltage"),
                    cs=col("rlnSphericalAberration"),
                    amplitude_contrast=col("rlnAmplitudeContrast"),
                    phase_shift=col("rlnPhaseShift"), bfactor=col("rlnCtfBfactor"))

    @property
    def offsets(self) -> np.ndarray:
        """Particle displacements (x, y) in pixels, (n, 2), zeros when absent.

        classavg's offset is where the particle centre sits relative to the box centre
        (image = projection shifted by offset).  RELION stores the opposite, the translation
        that re-centres the particle: ``offset = -rlnOriginXAngst / pixel_size`` (RELION 3.1)
        or ``-rlnOriginX`` (RELION 3.0, pixels).
        """
        md = self._metadata
        out = np.zeros((self.n, 2))
        for axis, label in enumerate("XY"):
            if f"rlnOrigin{label}Angst" in md.columns:
                out[:, axis] = -md[f"rlnOrigin{label}Angst"].to_numpy(np.float64) / self.pixel_size
            elif f"rlnOrigin{label}" in md.columns:
                out[:, axis] = -md[f"rlnOrigin{label}"].to_numpy(np.float64)
        return out

    # -- lazy transforms (each returns a new source) -------------------------------------------
    def downsample(self, L):
        """Fourier-crop every image to ``L x L`` (pixel size scaled by ``self.L / L``)."""
        return _TRANSFORMS["downsample"](self, L)

    def phase_flip(self):
        """Multiply every image's Fourier transform by the sign of its CTF."""
        return _TRANSFORMS["phase_flip"](self)

    def normalize_background(self, radius=None, *, ramp=True):
        """Scale every image to zero mean, unit variance outside the particle disk (the
        background plane subtracted with ``ramp``)."""
        return _TRANSFORMS["normalize_background"](self, radius=radius, ramp=ramp)

    def invert_contrast(self):
        """Negate every image (dark particles become bright)."""
        return _TRANSFORMS["invert_contrast"](self)

    def astype(self, dtype):
        """The same images as another float dtype."""
        return _TRANSFORMS["astype"](self, dtype)

    def whiten(self, radius=None, **options):
        """Divide out the noise power spectrum estimated from the background
        (:class:`~classavg.sources.whitening.WhitenedSource`)."""
        return _TRANSFORMS["whiten"](self, radius, **options)

    def center(self, **options):
        """Translate every image so that its particle sits on the box centre
        (:class:`~classavg.sources.centering.CenteredSource`)."""
        return _TRANSFORMS["center"](self, **options)

    # Writing: classavg.io.save_source(src, star_path) (io builds on sources, not back).


#: The derived-source classes behind the chain methods above, by method name.  They derive
#: from ImageSource, so this module cannot import them: :mod:`classavg.sources.transforms`
#: registers each one as it is defined (:func:`transform_method`), and the package imports
#: that module, so the table is complete whenever an ImageSource exists.
_TRANSFORMS = {}


def transform_method(name):
    """Class decorator: make ``ImageSource.<name>(...)`` build this derived source."""
    def register(cls):
        _TRANSFORMS[name] = cls
        return cls
    return register


class ArrayImageSource(ImageSource):
    """An :class:`ImageSource` over an in-memory array of shape (n, L, L).

    Parameters
    ----------
    array : array_like, shape (n, L, L) or (L, L)
        The images.  Kept by reference when it already has the requested dtype.
    pixel_size : float, optional
        Pixel size in Angstrom (default 1.0).
    metadata : pandas.DataFrame, optional
        Per-image metadata with RELION labels (e.g. CTF parameters).
    dtype : numpy dtype, optional
        Output dtype; defaults to float64 for float64 input and float32 otherwise.
    """

    def __init__(self, array, *, pixel_size=1.0, metadata=None, dtype=None):
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"array must have shape (n, L, L), got shape {arr.shape}")
        if arr.shape[1] != arr.shape[2]:
            raise ValueError(f"array must hold square images (n, L, L), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise TypeError(f"array must be real-valued, got dtype {arr.dtype}")
        if dtype is None:
            dtype = np.float64 if arr.dtype == np.float64 else np.float32
        arr = arr.astype(dtype, copy=False)
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(1))[0])
            raise ValueError(f"array holds NaN or Inf pixels (first in image {bad}); "
                             "expected finite values")
        self._array = arr
        super().__init__(n=arr.shape[0], L=arr.shape[1], dtype=dtype, pixel_size=pixel_size,
                         metadata=metadata)

    def _images(self, indices):
        return self._array[indices]
