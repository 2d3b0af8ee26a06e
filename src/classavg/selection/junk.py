r"""Junk rejection: how well each particle fits its class average, and the automatic decision.

Picked data sets hold 20-50 % junk (empty ice, contamination, carbon edges, aggregates,
off-centre and broken particles).  Each particle ``x`` (background-normalised, as classified)
is compared with the model ``m`` its class predicts: the class average brought back into the
particle's frame (the inverse of its alignment: rotate by ``-theta``, shift by ``-s``, mirror)
and, for CTF-corrected averages, multiplied by the particle's own CTF (``|CTF|`` after a phase
flip).  Both are whitened by the noise power spectrum ``P(k)`` estimated from the particle-free
background (:func:`classavg.sources.whitening.estimate_noise_psd`), ``x_w = F^{-1}[X / sqrt(P)]``,
so that the noise is white with unit variance and inner products are in units of the noise.

Scores (per particle)
---------------------
``fit`` (:math:`z`)
    The matched-filter significance of the class model in the particle, over the box:

    .. math:: z = \frac{\langle x_w, m_w\rangle}{\lVert m_w\rVert},

    distributed as :math:`N(a \lVert m_w\rVert, 1)` for ``x = a m + noise``.  Noise alone
    (empty ice, faint contamination) gives :math:`z` near 0 (plus the small bias of the
    alignment search), a particle ``a ||m_w||``: about the square root of its SNR times the
    number of pixels.  ``amplitude`` is the least-squares factor
    :math:`a = \langle x_w, m_w\rangle / \lVert m_w\rVert^2`.
``blob`` (:math:`b`)
    The same significance for a rotationally symmetric reference ``t`` at the centre (the
    ring average of the population-weighted mean class average, with the particle's CTF):
    :math:`b = \langle x_w, t_w\rangle / \lVert t_w\rVert`.  It does not depend on the
    classification (no alignment search, so no search bias): the fit score to use when the
    class averages are poor (small or pseudo-symmetric molecules).
``extra`` (:math:`e`)
    Density the class model does not explain, away from the centre: the whitened residual
    ``r_w = x_w - a m_w`` is correlated (by FFT, at every translation ``d``) with ``t_w``,
    and

    .. math:: e = \max_{|d| \ge d_0} \frac{(r_w \star t_w)(d)}{\lVert t_w\rVert},

    the largest matched-filter response at least ``d_0 = L / 8`` from the centre.  A second
    particle (aggregates) or a particle far from the centre (off-centre picks) gives a large
    peak; for a particle that its model explains, ``e`` is the maximum of a unit-variance
    Gaussian field (about 3).
``missing`` (:math:`g`) and ``missing_fraction`` (:math:`\phi`)
    Density of the model that is absent from the particle beyond a straight line (broken and
    partial particles).  With ``u = a m_w`` (the scaled whitened model, in real space, on the
    half-size grid of the frequencies below 1/4 cycle per pixel, where the particle's signal
    is) and the half-planes ``H`` beyond a line (16 directions, 2 px steps) that hold
    between 15 % and 60 % of the model's energy ``sum u^2``,

    .. math:: g = \max_H \frac{-\sum_{p \in H} r_w(p) u(p)}{\sqrt{\sum_{p \in H} u(p)^2}},
              \qquad \phi = \frac{-\sum_H r_w u}{\sum_H u^2} \text{ at that } H,

    the significance of the model's deficit in ``H`` (the whitened noise is close to white,
    so each ratio is close to ``N(0, 1)`` for a particle its model explains, and ``g`` is the
    maximum of a few hundred correlated ones: about 2) and the fraction of the model missing
    there (1 where the density is gone, 0 where the particle has it all).

Decision
--------
A particle is rejected when its fit score is below ``min_fit``, when
``e > max_extra`` and ``e > extra_ratio * b`` (a second object at least half as strong as the
centred particle: at high SNR the imperfect class model leaves residuals far above the noise
but well below the particle itself), or when ``g > max_missing`` and
``phi >= missing_ratio`` (default 0.5: at least half the model's density missing beyond the
line, not the model mismatch that grows with the SNR).  The thresholds are estimated from the
data set itself unless given (``"auto"``):

* ``max_extra`` = median + ``extra_mads`` (default 3) robust standard deviations (1.4826
  MAD) of ``e`` over all particles: ``e`` follows the noise-only law for every particle
  without a second object, so a data set without junk keeps all but a Gaussian tail;
  ``max_missing`` the same for ``g`` (None: no missing-density test).
* ``min_fit`` (for ``z``) and ``min_blob`` (for ``b``): a two-component Gaussian mixture
  (EM) of each score.  It gives a test when its components are separated (Ashman's
  :math:`D = \sqrt2 |\mu_1 - \mu_2| / \sqrt{\sigma_1^2 + \sigma_2^2} > 2` [2]_) and the
  lower one looks like junk: between 2 % and half of the particles (junk is the minority),
  with at most half the upper one's mean (noise scores near 0; a lower population with more
  signal is a split of the particles themselves).  The threshold is where the two weighted
  densities cross between the means, and a particle must pass every such test; a score
  whose values form one population (no junk to find) gives ``-inf``: no test.  A particle
  in no selected class (a run limited to ``n_classes``) has no class model and is tested by
  ``b`` alone.  A given ``min_fit`` replaces both tests by ``z >= min_fit``.

A class is kept when at least ``class_fraction`` (default 1/2) of the particles assigned to it
pass their tests (a class with none assigned: when its reference does); particles in rejected
classes are rejected with their class.  The decision never rejects more than
``max_rejected`` (default 0.6) of a data set: beyond that the thresholds are the wrong ones
for these data, everything is kept and a warning says so.

What it cannot do: at low SNR a particle's own significance bounds what any per-particle test
finds.  Broken particles (a quarter to a half of the density missing; about half of them are
found at SNR 1/8 on EMD-11007) and junk among the particles of a small molecule (EMD-3488, 64 kDa, at SNR 1/8: ``b`` about 4 for particles
against 1.6 for empty ice) are largely kept (BENCHMARKS.md, "Junk rejection").

References
----------
.. [1] S. H. W. Scheres, "Semi-automated selection of cryo-EM particles in RELION-1.3",
   J. Struct. Biol. 189, 114-122 (2015) (particle sorting by the difference to the reference).
.. [2] K. M. Ashman, C. M. Bird, S. E. Zepf, "Detecting bimodality in astronomical datasets",
   Astron. J. 108, 2348-2361 (1994).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .._validation import check_float
from ._junk_scores import SCORE_NAMES, particle_scores, particle_scores_fourier, whitening_filter
from ._thresholds import mixture_threshold, robust_upper

__all__ = ["whitening_filter", "particle_scores", "particle_scores_fourier",
           "mixture_threshold", "robust_upper",
           "JunkDecision", "JunkRejector", "SCORE_NAMES"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class JunkDecision:
    """The outcome of :meth:`JunkRejector.decide`.

    Attributes
    ----------
    particle_kept : ndarray of bool, shape (n_particles,)
        After the class decision (particles of rejected classes are rejected).
    particle_passed : ndarray of bool, shape (n_particles,)
        The particle's own tests alone.
    class_kept : ndarray of bool, shape (n_classes,)
    class_kept_fraction : ndarray, shape (n_classes,)
        Fraction of the assigned particles that pass their tests (NaN: none assigned).
    thresholds : dict
        ``min_fit``, ``max_extra`` and how they were found (JSON-ready).
    """

    particle_kept: np.ndarray
    particle_passed: np.ndarray
    class_kept: np.ndarray
    class_kept_fraction: np.ndarray
    thresholds: dict


class JunkRejector:
    """Decide which particles and classes are junk from :func:`particle_scores`.

    Parameters
    ----------
    min_fit : float or "auto", optional
        Lowest ``fit`` score kept (default: the mixture rule of the module docstring).
    max_extra : float or "auto", optional
        Highest ``extra`` score kept (default: median + ``extra_mads`` robust SDs).
    extra_mads : float, optional
        Robust SDs above the median for ``max_extra="auto"`` (default 3; the one-sided
        Gaussian tail beyond it is 0.13 %).
    extra_ratio : float, optional
        ``extra`` rejects only when it is also at least this fraction of the particle's own
        ``blob`` score (default 0.5): a second object half as strong as the centred one, not
        the model mismatch that grows with the SNR.
    max_missing : float, "auto" or None, optional
        Highest ``missing`` score kept (default: median + ``extra_mads`` robust SDs; None: no
        missing-density test, as in preset 1.4.0).
    missing_ratio : float, optional
        ``missing`` rejects only when ``missing_fraction`` is at least this (default 0.5).
    class_fraction : float, optional
        A class is kept when at least this fraction of its assigned particles pass (default
        0.5).
    max_rejected : float, optional
        Most of a data set the decision may reject (default 0.6): a decision rejecting more
        keeps everything and logs a warning.
    """

    def __init__(self, *, min_fit="auto", max_extra="auto", extra_mads=3.0, extra_ratio=0.5,
                 max_missing="auto", missing_ratio=0.5, class_fraction=0.5,
                 max_rejected=0.6):
        self.min_fit = min_fit if min_fit == "auto" else check_float("min_fit", min_fit)
        self.max_extra = (max_extra if max_extra == "auto"
                          else check_float("max_extra", max_extra))
        self.extra_mads = check_float("extra_mads", extra_mads, min=0.0)
        self.extra_ratio = check_float("extra_ratio", extra_ratio, min=0.0)
        self.max_missing = (max_missing if max_missing in ("auto", None)
                            else check_float("max_missing", max_missing))
        self.missing_ratio = check_float("missing_ratio", missing_ratio, min=0.0)
        self.class_fraction = check_float("class_fraction", class_fraction, min=0.0, max=1.0)
        self.max_rejected = check_float("max_rejected", max_rejected, min=0.0, max=1.0)

    def get_params(self):
        return {"min_fit": self.min_fit, "max_extra": self.max_extra,
                "extra_mads": self.extra_mads, "extra_ratio": self.extra_ratio,
                "max_missing": self.max_missing, "missing_ratio": self.missing_ratio,
                "class_fraction": self.class_fraction,
                "max_rejected": self.max_rejected}

    def decide(self, scores, particle_class, references):
        """Decide.

        Parameters
        ----------
        scores : dict of ndarray, each (n_particles,)
            :func:`particle_scores` of every particle (NaN where not scored).
        particle_class : ndarray of int, shape (n_particles,)
            0-based class (row of the selection) each particle is assigned to, -1 for none.
        references : ndarray of int, shape (n_classes,)
            The reference particle of each class.

        Returns
        -------
        JunkDecision
        """
        fit = np.asarray(scores["fit"], dtype=np.float64)
        extra = np.asarray(scores["extra"], dtype=np.float64)
        n, K = fit.size, len(references)
        cls = np.asarray(particle_class, dtype=np.int64)
        has = cls >= 0
        blob = np.asarray(scores.get("blob", fit), dtype=np.float64)
        info = {}
        fit_name = "fit"
        if self.min_fit == "auto":
            # each fit score whose mixture separates gives a test; a particle must pass all:
            # the class model's (particles in a class) and the symmetric reference's (all)
            thr_fit, mix_fit = mixture_threshold(fit[has])
            thr_blob, mix_blob = mixture_threshold(blob)
            info = {"fit_mixture": mix_fit, "blob_mixture": mix_blob}
            fit_name = "+".join(name for name, t in (("fit", thr_fit), ("blob", thr_blob))
                                if np.isfinite(t)) or "none"
            min_fit = thr_fit
            test = (~has | (fit >= thr_fit)) & (blob >= thr_blob)
        else:
            min_fit = thr_blob = self.min_fit
            test = fit >= min_fit
        max_extra = (robust_upper(extra, self.extra_mads) if self.max_extra == "auto"
                     else self.max_extra)
        second = (extra > max_extra) & (extra > self.extra_ratio * np.nan_to_num(blob))
        missing = np.asarray(scores.get("missing", np.full(n, np.nan)), dtype=np.float64)
        if self.max_missing is None or not np.isfinite(missing).any():
            max_missing, broken = None, np.zeros(n, bool)
        else:
            max_missing = (robust_upper(missing, self.extra_mads)
                           if self.max_missing == "auto" else self.max_missing)
            fraction = np.asarray(scores["missing_fraction"], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                broken = (missing > max_missing) & (fraction >= self.missing_ratio)
        scored = np.isfinite(fit) & np.isfinite(extra)
        passed = ~scored | (test & ~second & ~broken)
        n_assigned = np.bincount(cls[has], minlength=K)
        n_pass = np.bincount(cls[has], weights=passed[has], minlength=K)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n_assigned > 0, n_pass / np.maximum(n_assigned, 1), np.nan)
        class_kept = np.where(n_assigned > 0, frac >= self.class_fraction,
                              passed[np.asarray(references, dtype=np.int64)])
        kept = passed & np.where(has, class_kept[np.maximum(cls, 0)], True)
        thresholds = {"min_fit": float(min_fit), "max_extra": float(max_extra),
                      "fit_tests": fit_name,
                      "min_blob": float(thr_blob),
                      "min_fit_rule": "given" if self.min_fit != "auto" else "mixture",
                      "max_extra_rule": ("given" if self.max_extra != "auto"
                                         else f"median + {self.extra_mads:g} robust SD"),
                      "max_missing": None if max_missing is None else float(max_missing),
                      "max_missing_rule": ("none" if max_missing is None else
                                           "given" if self.max_missing != "auto"
                                           else f"median + {self.extra_mads:g} robust SD"),
                      **info}
        if n and (~kept).mean() > self.max_rejected:
            logger.warning("junk rejection would reject %.0f %% of the particles (more than "
                           "max_rejected = %.0f %%): keeping all; set the thresholds by hand",
                           100 * (~kept).mean(), 100 * self.max_rejected)
            thresholds["overridden"] = "max_rejected"
            kept = np.ones(n, bool)
            class_kept = np.ones(K, bool)
        return JunkDecision(kept, passed, class_kept, frac, thresholds)
