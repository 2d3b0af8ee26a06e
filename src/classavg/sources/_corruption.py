"""Per-image corruptions of :class:`~classavg.sources.simulation.Simulation` besides the noise.

Image ``i`` is ``c a_i S_i + sd (b_i + g_i . (x, y) / (L / 2)) + n_i`` with ``S_i`` the clean
shifted CTF-applied image, ``c = +1`` (``contrast="bright"``, RELION's convention: particles
brighter than the background, ``CTF(0) = +Q``) or ``-1`` (``"dark"``, as in raw micrographs),
``a_i ~ U(1 - s, 1 + s)`` the amplitude (``amplitude_spread = s``), ``sd`` the signal standard
deviation (``sqrt(signal_variance)``), ``b_i ~ N(0, background_offset^2)`` and ``g_i`` of uniform
direction and length ``U(0, background_gradient)`` (ice thickness: the background changes by
``|g_i| sd`` from the centre to the middle of an edge along ``g_i``), ``n_i`` the noise
(:mod:`classavg.sources.noise`).  Streams: ``spawn_key`` 4 (amplitudes) and 5 (backgrounds).
"""

from __future__ import annotations

import numpy as np

from .._grid import centered_grid
from .._validation import check_float

_STREAM_AMPLITUDES, _STREAM_BACKGROUND = 4, 5


def _rng(seed, stream):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def draw_amplitudes(seed, n, spread):
    """Per-image amplitude factors, (n,) float64, uniform in ``[1 - spread, 1 + spread]``."""
    spread = check_float("amplitude_spread", spread, min=0.0, max=1.0)
    if spread == 0:
        return np.ones(n)
    return 1.0 + spread * (2.0 * _rng(seed, _STREAM_AMPLITUDES).random(n) - 1.0)


def draw_background(seed, n, offset_sd, gradient):
    """Per-image background offsets (n,) and gradients (n, 2) in units of the signal sd."""
    offset_sd = check_float("background_offset", offset_sd, min=0.0)
    gradient = check_float("background_gradient", gradient, min=0.0)
    rng = _rng(seed, _STREAM_BACKGROUND)
    u = rng.random((n, 3))
    from scipy.special import ndtri      # N(0, 1) quantiles of u[:, 0] (prefix-stable draws)

    off = offset_sd * ndtri(np.clip(u[:, 0], 1e-300, 1 - 1e-16))
    g = gradient * u[:, 1, None] * np.stack([np.cos(2 * np.pi * u[:, 2]),
                                             np.sin(2 * np.pi * u[:, 2])], 1)
    return off, g


def background_images(offsets, gradients, L, dtype):
    """``b_i + g_i . (x, y) / (L / 2)``, (k, L, L) of ``dtype`` (pixel coordinates centred on
    ``L // 2``)."""
    y, x = centered_grid(L)
    h = L / 2.0
    out = (offsets[:, None, None] + gradients[:, 0, None, None] * (x / h)
           + gradients[:, 1, None, None] * (y / h))
    return out.astype(dtype, copy=False)
