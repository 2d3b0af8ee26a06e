"""Signal-to-noise ratio of simulated images."""

from __future__ import annotations

import numpy as np

from .._validation import check_bool
from ._common import as_image_stack, check_same_shape

__all__ = ["estimate_snr"]


def estimate_snr(clean, noisy, per_image=False):
    """Signal-to-noise ratio ``var(clean) / var(noisy - clean)`` over the whole images.

    Parameters
    ----------
    clean : array_like, shape (k, L, L) or (L, L)
        Noise-free images (CTF applied, as seen by the detector).
    noisy : array_like, same shape
        The same images with noise.
    per_image : bool
        False (default): one ratio with both variances pooled over every pixel of every image.
        True: one ratio per image, variances over that image's pixels.

    Returns
    -------
    float or ndarray, shape (k,)
        SNR (dimensionless; typical hard cryo-EM data 1/50 to 1/10); inf where the noise is
        exactly zero.
    """
    c, single = as_image_stack(clean, "clean")
    x, _ = as_image_stack(noisy, "noisy")
    check_same_shape(c, x, "clean", "noisy")
    per_image = check_bool("per_image", per_image)
    noise = x - c
    axes = (1, 2) if per_image else None
    sig = np.var(c, axis=axes)
    var_n = np.var(noise, axis=axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(var_n > 0, sig / np.where(var_n > 0, var_n, 1.0), np.inf)
    if per_image and not single:
        return snr
    return float(np.ravel(snr)[0])
