"""Thumbnails of class averages: binning, contrast normalisation and PNG encoding.

Thumbnails are 8-bit grayscale PNGs (a quarter of the size of an RGBA image), encoded by
Pillow (a dependency of matplotlib, which the plots use anyway).

Images follow the library's convention (indexed ``[y, x]``, row 0 at the bottom), so
:func:`to_uint8` flips them vertically for display (PNG row 0 is the top).
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["encode_png_gray8", "to_uint8", "bin_images"]


def encode_png_gray8(image: np.ndarray) -> bytes:
    """Encode one 8-bit grayscale image as PNG bytes (Pillow: a 2-D uint8 array is mode ``"L"``; optimised).

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W), dtype uint8
        Rows from top to bottom, as PNG stores them.

    Returns
    -------
    bytes
        A complete PNG file.
    """
    from PIL import Image

    img = np.ascontiguousarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"image must be a 2-D uint8 array, got shape {img.shape} and dtype "
                         f"{img.dtype}")
    if img.size == 0:
        raise ValueError(f"image must not be empty, got shape {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def bin_images(images: np.ndarray, factor: int) -> np.ndarray:
    """Mean-pool a stack by an integer ``factor`` (the last rows/columns that do not fill a
    whole bin are dropped).

    Parameters
    ----------
    images : numpy.ndarray, shape (k, L, L)
    factor : int
        Bin size in pixels (1 returns ``images`` unchanged).

    Returns
    -------
    numpy.ndarray, shape (k, L // factor, L // factor)
    """
    if factor == 1:
        return images
    k, h, w = images.shape
    hb, wb = h // factor, w // factor
    cropped = images[:, :hb * factor, :wb * factor]
    return cropped.reshape(k, hb, factor, wb, factor).mean(axis=(2, 4))


def to_uint8(images: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Contrast-normalise each image to 8 bits and flip it for display.

    Each image is clipped to its own ``low``-th and ``high``-th percentiles of the finite
    pixels and scaled linearly to 0..255.  Non-finite pixels become 0 (black); an image with no
    contrast (both percentiles equal) becomes mid grey (128).

    Parameters
    ----------
    images : numpy.ndarray, shape (k, L, L)
        Indexed ``[image, y, x]`` with row 0 at the bottom (library convention).
    low, high : float, optional
        Percentiles for clipping (default 1 and 99).

    Returns
    -------
    numpy.ndarray, shape (k, L, L), dtype uint8
        Row 0 at the top (ready for PNG).
    """
    x = np.asarray(images, dtype=np.float64)
    finite = np.isfinite(x)
    all_finite = bool(finite.all())
    if not all_finite:
        x = np.where(finite, x, np.nan)
    k = x.shape[0]
    if k == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    with np.errstate(all="ignore"):
        if all_finite:
            lo, hi = np.percentile(x.reshape(k, -1), [low, high], axis=1)
        else:
            empty = ~finite.reshape(k, -1).any(axis=1)
            filled = x.reshape(k, -1).copy()
            filled[empty] = 0.0                              # all-NaN images: no warning
            lo, hi = np.nanpercentile(filled, [low, high], axis=1)
        span = hi - lo
        flat = ~(span > 0)                                   # also catches NaN spans
        span = np.where(flat, 1.0, span)
        y = (x - lo[:, None, None]) / span[:, None, None]
        y = np.clip(y, 0.0, 1.0) * 255.0
        y[flat] = 128.0
        if not all_finite:
            y = np.where(finite, y, 0.0)
        out = np.rint(y).astype(np.uint8)
    return out[:, ::-1, :]
