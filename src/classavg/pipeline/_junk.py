"""Junk rejection in a run: score every particle against its class model, decide, rank.

The numerics and the rules are in :mod:`classavg.selection.junk`; this module builds each
particle's class model from the written averages and the alignments of a
:class:`~classavg.pipeline.source.ClassAvgSource`, in batches.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.fft as sfft
import starfile

from .._progress import progress
from ..averaging._transform import _phase_1d
from ..basis import DenseFBTransform, FourierBesselBasis2D
from ..selection.junk import (SCORE_NAMES, JunkRejector, particle_scores_fourier,
                              whitening_filter)
from ..sources.centering import ring_average
from ..sources.chain import resolve_chain
from ..sources.ctf import evaluate_ctf, rfft_layout
from ..sources.whitening import estimate_noise_psd
from ._relion import partition_members

__all__ = ["scoring_assignment", "score_particles", "reject_junk", "class_models",
           "class_model_spectra",
           "add_junk_columns", "junk_arrays", "write_junk_particles", "PARTICLE_LABELS"]

#: classavg labels of particles.star with junk rejection (:mod:`classavg.selection.junk`)
#: -> score; ``_classavgKept`` (1/0) is the decision.
_PARTICLE_SCORES = {"classavgFitScore": "fit", "classavgBlobScore": "blob",
                    "classavgAmplitude": "amplitude", "classavgExtraDensity": "extra",
                    "classavgMissingDensity": "missing",
                    "classavgMissingFraction": "missing_fraction"}
PARTICLE_LABELS = tuple(_PARTICLE_SCORES) + ("classavgKept",)

logger = logging.getLogger(__name__)


def scoring_assignment(members, distances, n_particles):
    """The class (row) and column each particle is scored in.

    A class reference fits its own average better than an independent image would: every
    member was aligned to it, so the average holds its noise ("Einstein from noise").  Each
    particle is therefore scored in the nearest class that lists it as a *non-reference*
    member, and only in its own class when no other lists it.

    Parameters
    ----------
    members, distances : ndarray, shape (K, m)
        Member indices (column 0: the reference) and feature distances of the selected
        classes.
    n_particles : int

    Returns
    -------
    row, col : ndarray of int, shape (n_particles,)
        -1 where the particle is in no selected class.
    """
    numbers = np.arange(1, members.shape[0] + 1)
    row, col = partition_members(members[:, 1:], distances[:, 1:], numbers, n_particles)
    col = np.where(row >= 0, col + 1, -1)
    own_row, own_col = partition_members(members, distances, numbers, n_particles)
    none = row < 0
    row[none], col[none] = own_row[none], own_col[none]
    return row, col


def class_models(averages, rows, rotations, shifts, mirrors, basis, dense):
    """Class averages brought into their members' frames: the inverse of each alignment.

    The alignment of a member (mirror, then shift ``s``, then rotate ``theta``; see
    :mod:`classavg.averaging._transform`) is undone on its class average: rotate by
    ``-theta``, shift by ``-s``, mirror -- computed as the mirror of the rotated
    Fourier-Bessel coefficients (a conjugation), one synthesis, then one Fourier shift by
    ``(-s_x, s_y)`` for mirrored members (mirror and shift commute up to the sign of ``y``),
    with the phases of :func:`~classavg.averaging._transform.shift_images`.

    Parameters
    ----------
    averages : array_like, shape (K, L, L)
    rows : ndarray of int, shape (k,)
        The class (row of ``averages``) of each member.
    rotations, shifts, mirrors : ndarray, shapes (k,), (k, 2), (k,)
        The members' alignments (radians, pixels, bool).
    basis : FourierBesselBasis2D
    dense : DenseFBTransform
        Of ``basis``.

    Returns
    -------
    ndarray, shape (k, L, L), float64
        Band-limited, zero outside the disk of radius ``L / 2`` before the shift.
    """
    L = np.shape(averages)[-1]
    return sfft.irfft2(class_model_spectra(averages, rows, rotations, shifts, mirrors, basis,
                                           dense), s=(L, L), axes=(-2, -1), workers=-1)


def class_model_spectra(averages, rows, rotations, shifts, mirrors, basis, dense):
    """The ``rfft2`` of :func:`class_models` (no FFT shift: the centre at pixel ``L // 2``),
    (k, L, L // 2 + 1): the shift is applied as a phase, with no inverse transform."""
    L = np.shape(averages)[-1]
    u, inv = np.unique(rows, return_inverse=True)
    coef = dense.expand(np.asarray(averages[u], dtype=np.float64))[inv]
    coef = basis.rotate(coef, -np.asarray(rotations, np.float64))
    mirrors = np.asarray(mirrors, dtype=bool)
    coef[mirrors] = np.conj(coef[mirrors])
    F = sfft.rfft2(np.asarray(dense.evaluate(coef), dtype=np.float64), axes=(-2, -1),
                   workers=-1)
    sh = -np.asarray(shifts, dtype=np.float64)
    sh[mirrors, 1] *= -1
    F *= _phase_1d(L, sh[:, 1])[:, :, None]                       # over ky
    F *= _phase_1d(L, sh[:, 0])[:, None, :L // 2 + 1]              # over kx >= 0
    return F


def _rfft_ctf(src, indices, flipped):
    """The images' CTFs on the ``rfft2`` half plane (``|CTF|`` after a phase flip)."""
    h = rfft_layout(evaluate_ctf(src.L, src.pixel_size, **src.ctf_params(indices)))
    return np.abs(h) if flipped else h


def _global_reference(averages, particle_class, batch_size):
    """The ring average of the population-weighted mean class average, (L, L)."""
    K = len(averages)
    pop = np.bincount(particle_class[particle_class >= 0], minlength=K).astype(np.float64)
    if pop.sum() == 0:
        pop[:] = 1.0
    total = 0.0
    for a in range(0, K, batch_size):
        total = total + np.tensordot(pop[a:a + batch_size],
                                     np.asarray(averages[a:a + batch_size], np.float64), 1)
    return ring_average(total / pop.sum())


def score_particles(cas, averages, rotations, shifts, particle_class, *, batch_size=1024,
                    n_estimate=2000, seed=0):
    """:func:`~classavg.selection.junk.particle_scores` of every particle of ``cas.src``.

    Parameters
    ----------
    cas : ClassAvgSource
    averages : array_like, shape (K, L, L)
        The class averages in selection order (e.g. a memory-mapped stack).
    rotations, shifts : ndarray, shapes (K, m) and (K, m, 2)
        ``cas.alignment()``.
    particle_class : ndarray of int, shape (n_particles,)
        The partition (0-based selection row, -1: none): weights of the symmetric reference.
    batch_size : int, optional
    n_estimate : int, optional
        Images the noise spectrum is estimated from (a random subset).

    Returns
    -------
    (dict, dict)
        The scores (each (n_particles,); a particle in no selected class is scored against
        the symmetric reference, so its ``fit`` is its ``blob``) and a record (the noise
        spectrum, what was applied).
    """
    src = cas.src
    n, L = src.n, src.L
    sel = cas.selection_indices
    members, dist = cas.class_indices[sel], cas.class_distances[sel]
    refl = cas.class_refl[sel]
    row, col = scoring_assignment(members, dist, n)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n, size=min(n, n_estimate), replace=False))
    psd = estimate_noise_psd(src.images[sub])
    wf = whitening_filter(psd, L)
    chain = resolve_chain(src)
    use_ctf = (getattr(cas.averager, "ctf_correction", None) is not None and src.has_ctf)
    flipped = chain.phase_flipped
    basis = FourierBesselBasis2D(L, dtype=np.float64)
    dense = DenseFBTransform(basis)
    ref = _global_reference(averages, np.asarray(particle_class), batch_size)
    ref_f = sfft.rfft2(ref)                        # centred at L // 2, like the images
    out = {k: np.full(n, np.nan) for k in SCORE_NAMES}
    scored = np.flatnonzero(row >= 0)
    for a in progress(range(0, n, batch_size), desc="scoring particles"):
        idx = np.arange(a, min(a + batch_size, n))
        r, c = row[idx], col[idx]
        has = r >= 0
        # a particle in no selected class: its model is the symmetric reference (fit = blob)
        M = np.broadcast_to(ref_f, (idx.size,) + ref_f.shape).copy()
        if has.any():
            M[has] = class_model_spectra(averages, r[has], rotations[r[has], c[has]],
                                         shifts[r[has], c[has]], refl[r[has], c[has]], basis,
                                         dense)
        T = np.broadcast_to(ref_f, M.shape)
        if use_ctf:
            h = _rfft_ctf(src, idx, flipped)
            M = M * h
            T = T * h
        X = sfft.rfft2(np.asarray(src.images[idx], dtype=np.float64), axes=(-2, -1),
                       workers=-1)
        s = particle_scores_fourier(X * wf, M * wf, T * wf, L)
        for k in out:
            out[k][idx] = s[k]
    record = {"noise_psd": np.round(psd, 6).tolist(), "ctf_applied_to_models": bool(use_ctf),
              "scored_in_other_class": float(np.mean(col[scored] > 0)) if scored.size else 0.0,
              "in_no_selected_class": int(n - scored.size)}
    return out, record


def reject_junk(cas, averages, rotations, shifts, particle_class, options=None, *, seed=0,
                batch_size=1024):
    """Score every particle, decide, and give the new class order (kept classes first).

    Parameters
    ----------
    cas : ClassAvgSource
    averages, rotations, shifts
        As in :func:`score_particles`.
    particle_class : ndarray of int, shape (n_particles,)
        0-based selection row of each particle in the partition (-1: none).
    options : dict, optional
        :class:`~classavg.selection.junk.JunkRejector` options.

    Returns
    -------
    (dict, JunkDecision, ndarray, dict)
        The scores, the decision (its per-class arrays in the new order), the order (kept
        classes first, each group in the selection's order) and the JSON-ready record;
        adds ``cas.timings["junk_scoring"]``.
    """
    t0 = time.perf_counter()
    rejector = JunkRejector(**(options or {}))
    scores, rec = score_particles(cas, averages, rotations, shifts, particle_class, seed=seed,
                                  batch_size=batch_size)
    refs = cas.class_indices[cas.selection_indices, 0]
    decision = rejector.decide(scores, particle_class, refs)
    order = np.concatenate([np.flatnonzero(decision.class_kept),
                            np.flatnonzero(~decision.class_kept)])
    decision.class_kept = decision.class_kept[order]           # per class in the new order
    decision.class_kept_fraction = decision.class_kept_fraction[order]
    cas.timings["junk_scoring"] = time.perf_counter() - t0
    record = {"options": rejector.get_params(), "thresholds": decision.thresholds, **rec,
              "n_kept_particles": int(decision.particle_kept.sum()),
              "n_rejected_particles": int((~decision.particle_kept).sum()),
              "n_kept_classes": int(decision.class_kept.sum()),
              "n_rejected_classes": int((~decision.class_kept).sum())}
    logger.info("junk rejection: %d of %d particles kept, %d of %d classes",
                record["n_kept_particles"], len(scores["fit"]), record["n_kept_classes"],
                decision.class_kept.size)
    return scores, decision, order, record


# -- outputs ------------------------------------------------------------------------------
def add_junk_columns(classes, rank, scores, decision):
    """classes.star: the decision per class and the medians of its assigned particles."""
    K = len(classes)
    classes["classavgKept"] = decision.class_kept.astype(np.int64)
    classes["classavgKeptFraction"] = decision.class_kept_fraction
    for label, key in (("classavgMedianFitScore", "fit"),
                       ("classavgMedianExtraDensity", "extra")):
        v = pd.Series(scores[key]).groupby(rank).median()
        classes[label] = v.reindex(np.arange(1, K + 1)).to_numpy()


def junk_arrays(result):
    if result is None:
        return {}
    scores, decision, _ = result
    return {"particle_kept": decision.particle_kept, "class_kept": decision.class_kept,
            **{f"particle_{k}_score": v for k, v in scores.items()}}


def write_junk_particles(table, stage, scores, decision):
    """particles.star (every particle) with the scores and the decision, and its two parts:
    selected_particles.star (kept) and rejected_particles.star."""
    parts = table["particles"].copy()
    for label, key in _PARTICLE_SCORES.items():
        parts[label] = scores[key]
    parts["classavgKept"] = decision.particle_kept.astype(np.int64)
    paths = {}
    for name, rows in (("particles.star", slice(None)),
                       ("selected_particles.star", decision.particle_kept),
                       ("rejected_particles.star", ~decision.particle_kept)):
        out = dict(table)
        out["particles"] = parts[rows].reset_index(drop=True)
        starfile.write(out, stage / name)
        paths[name] = stage / name
    return paths
