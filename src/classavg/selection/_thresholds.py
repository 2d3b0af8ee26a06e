"""Thresholds estimated from a data set's own scores (the rules of
:mod:`classavg.selection.junk`): a robust upper bound and a two-component mixture."""

from __future__ import annotations

import numpy as np

__all__ = ["robust_upper", "mixture_threshold"]


def robust_upper(values, n_sd):
    """``median + n_sd * 1.4826 * MAD`` of the finite ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    med = float(np.median(v))
    return med + n_sd * 1.4826 * float(np.median(np.abs(v - med)))


def _gmm2(v, n_iter=200):
    """Two-component 1-D Gaussian mixture by EM: ``(w, mu, sd)`` each (2,), ``mu`` sorted."""
    lo, hi = np.percentile(v, [15, 85])
    mu = np.array([lo, hi], dtype=np.float64)
    sd = np.full(2, max(np.std(v) / 2, 1e-6))
    w = np.array([0.5, 0.5])
    for _ in range(n_iter):
        logp = (np.log(w) - np.log(sd) - 0.5 * ((v[:, None] - mu) / sd) ** 2)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(axis=1, keepdims=True)
        nk = np.maximum(p.sum(axis=0), 1e-9)
        new_mu = (p * v[:, None]).sum(axis=0) / nk
        sd = np.sqrt(np.maximum((p * (v[:, None] - new_mu) ** 2).sum(axis=0) / nk,
                                (1e-3 * np.std(v)) ** 2 + 1e-12))
        w = nk / nk.sum()
        if np.allclose(new_mu, mu, rtol=0, atol=1e-8 * (1 + np.abs(mu).max())):
            mu = new_mu
            break
        mu = new_mu
    order = np.argsort(mu)
    return w[order], mu[order], sd[order]


def mixture_threshold(values, *, min_separation=2.0, min_weight=0.02, max_mean_ratio=0.5):
    """The ``min_fit`` rule of the module docstring: the crossing of a separated two-component
    Gaussian mixture, else ``-inf``.

    Returns
    -------
    (float, dict)
        The threshold and the mixture (``weights``, ``means``, ``sds``, ``separation``).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 20 or np.ptp(v) == 0:
        return -np.inf, {"separation": 0.0}
    w, mu, sd = _gmm2(v)
    sep = float(np.sqrt(2) * (mu[1] - mu[0]) / np.sqrt(sd[0] ** 2 + sd[1] ** 2))
    info = {"weights": w.tolist(), "means": mu.tolist(), "sds": sd.tolist(), "separation": sep}
    info["mean_ratio"] = float(mu[0] / mu[1]) if mu[1] > 0 else np.inf
    # the lower population must look like junk: at most half the particles' signal (noise
    # alone scores near 0), not a split of the particles themselves (views that fit better)
    # and junk is the minority (the lower population holds at most half of the particles)
    if (sep <= min_separation or not min_weight <= w[0] <= 0.5
            or not info["mean_ratio"] <= max_mean_ratio):
        return -np.inf, info
    grid = np.linspace(mu[0], mu[1], 2001)
    dens = w[:, None] / sd[:, None] * np.exp(-0.5 * ((grid - mu[:, None]) / sd[:, None]) ** 2)
    cross = np.flatnonzero(dens[0] <= dens[1])
    thr = float(grid[cross[0]]) if cross.size else float(mu[1])
    return thr, info
