"""Global class selection: average every class, score the averages, keep the best ones.

:class:`GlobalClassSelector` runs the averager over the whole neighbour table in batches,
scores every average with an :class:`~classavg.selection.quality.ImageQualityFunction` and
orders the classes by descending score.  Averaging is the expensive part, so the best
averages are kept in a min-heap bounded in bytes (2 GB by default, as in ASPIRE): once the
selection is made, a ``ClassAvgSource`` takes them from
:meth:`~GlobalClassSelector.cached_average` instead of computing them a second time.

:class:`GlobalWithRepulsionClassSelector` adds greedy class repulsion after the ordering
(ASPIRE's "0.13.2" preset with :class:`BandedSNRImageQualityFunction`).

References
----------
ASPIRE-Python (Wright et al.), ``GlobalClassSelector`` / ``GlobalWithRepulsionClassSelector``
(behaviour only; this is an independent implementation).
"""

from __future__ import annotations

import heapq
import logging

import numpy as np

from .._progress import progress
from .._validation import check_float, check_int
from .base import ClassSelector, GreedyClassRepulsionMixin
from .quality import VarianceImageQualityFunction

__all__ = ["GlobalClassSelector", "GlobalWithRepulsionClassSelector"]

logger = logging.getLogger(__name__)


def _frozen(a):
    """A read-only private copy of ``a`` (so a cached row never pins a whole batch)."""
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


class GlobalClassSelector(ClassSelector):
    """Order classes by the quality of their averages, keeping the best averages in memory.

    Parameters
    ----------
    averager : Averager2D
        Anything with ``average(class_indices, class_refl) -> (k, L, L)``; it is called
        once per batch of rows, ``averager.average(class_indices[rows], class_refl[rows])``.
    quality_function : ImageQualityFunction or callable, optional
        Maps a stack (k, L, L) to (k,) scores, higher is better (default
        :class:`~classavg.selection.quality.VarianceImageQualityFunction`, as ASPIRE 0.14).
    heap_size_limit_bytes : float, keyword-only
        Memory bound of the cache of best averages (default 2e9 bytes).  Every cached entry
        counts the ``nbytes`` of its image plus those of its alignment rows (if any); the
        total never exceeds the limit.  0 disables the cache.
    batch_size : int or None, keyword-only
        Classes averaged per call of the averager (default: ``averager.batch_size``, else
        64); memory per batch is ``batch_size * L * L`` floats.
    n_classes : int or None, keyword-only
        Keep the best ``n_classes`` (default: all).

    Attributes
    ----------
    class_scores_ : ndarray of float64, shape (n,)
        After :meth:`select`: the quality of every class average (by class id).
    selection_scores_ : ndarray of float64, shape (k,)
        Quality of each selected class, in selection order (descending, NaN last).
    peak_heap_bytes_ : int
        After :meth:`select`: the largest size the cache reached (``<= heap_size_limit_bytes``).

    Notes
    -----
    * Ordering: descending score; ties by ascending class id; NaN scores rank last.  The
      heap uses the same key, so (for averages of one size) it holds exactly the first
      ``M`` classes of the full order that fit in the limit.
    * After :meth:`select` the cache is trimmed to the *selected* classes (after repulsion
      and ``n_classes``): :meth:`cached_average` returns None for any other class and for
      selected classes that did not fit.
    * Alignment (optional): when the averager sets an ``alignment`` attribute (an
      :class:`~classavg.averaging.AlignmentResult`, rows numbered relative to the batch
      passed, as :class:`~classavg.averaging.AligningAverager2D` does) after each call, the
      rows of the cached classes are mapped back to class ids and kept with their images
      (:meth:`cached_alignment`).  An averager without it (or one that leaves it unchanged)
      is fine: no alignment is cached.
    """

    score_name = "quality"
    higher_is_better = True
    tags = ClassSelector.tags.extend(needs_averager=True, caches_averages=True)

    def __init__(self, averager, quality_function=None, *, heap_size_limit_bytes=2e9,
                 batch_size=None, n_classes=None):
        super().__init__(n_classes=n_classes)
        if quality_function is None:
            quality_function = VarianceImageQualityFunction()
        if not callable(getattr(averager, "average", None)):
            raise TypeError(f"averager must be an Averager2D (with an average method), "
                            f"got {averager!r}")
        if not callable(quality_function):
            raise TypeError(f"quality_function must be an ImageQualityFunction (callable on "
                            f"a stack of images), got {quality_function!r}")
        self.averager = averager
        self.quality_function = quality_function
        self.heap_size_limit_bytes = int(check_float("heap_size_limit_bytes",
                                                     heap_size_limit_bytes, min=0))
        self.batch_size = check_int("batch_size", batch_size, min=1, allow_none=True)
        self._cache = {}

    # -- cache access ----------------------------------------------------------------------------
    @property
    def heap_bytes(self):
        """Bytes held by the cache now (images and alignment rows)."""
        return int(sum(e[2] for e in self._cache.values()))

    @property
    def cached_class_ids(self):
        """Class ids whose average is cached, sorted (int64)."""
        return np.array(sorted(self._cache), dtype=np.int64)

    def cached_average(self, class_id):
        """The cached average (L, L) of class ``class_id`` (read-only), or None."""
        e = self._cache.get(int(class_id))
        return None if e is None else e[0]

    def cached_alignment(self, class_id):
        """Cached alignment ``(rotations (m,), shifts (m, 2), scores (m,))`` of a class, or
        None (not cached, or the averager exposes no alignment)."""
        e = self._cache.get(int(class_id))
        return None if e is None else e[1]

    def clear_cache(self):
        """Free the cached averages."""
        self._cache = {}

    # -- selection ---------------------------------------------------------------------------------
    def select(self, class_indices, class_refl, class_distances=None):
        """Average and score every class; ordered class ids, best first.

        See :meth:`ClassSelector.select`; ``class_distances`` is not used (may be None).
        After the call the cache holds the selected classes' averages that fit in
        ``heap_size_limit_bytes``.
        """
        self._cache = {}
        selection = super().select(class_indices, class_refl, class_distances)
        keep = set(selection.tolist())
        self._cache = {c: e for c, e in self._cache.items() if c in keep}
        logger.info("%s cached %d of %d selected averages (%.1f MB)", type(self).__name__,
                    len(self._cache), selection.size, self.heap_bytes / 1e6)
        return selection

    def _batch_size(self):
        if self.batch_size is not None:
            return self.batch_size
        bs = getattr(self.averager, "batch_size", None)
        return bs if isinstance(bs, (int, np.integer)) and bs >= 1 else 64

    def _batch_alignment(self, before, rows):
        """Per-row (rot, shifts, scores) of the last batch, indexed by batch position."""
        res = getattr(self.averager, "alignment", None)
        if res is None or res is before:
            return None
        try:
            pos = np.asarray(res.classes, dtype=np.int64)
            rot, sh, sc = res.rotations, res.shifts, res.scores
        except AttributeError:
            return None
        if pos.shape != rows.shape or not np.array_equal(np.sort(pos), np.arange(rows.size)):
            logger.debug("averager alignment does not match the batch; not cached")
            return None
        where = np.empty(rows.size, dtype=np.int64)
        where[pos] = np.arange(rows.size)
        return rot, sh, sc, where

    def _select(self, class_indices, class_refl, class_distances):
        n = class_indices.shape[0]
        scores = np.full(n, np.nan)
        limit = self.heap_size_limit_bytes
        heap = []            # min-heap of (key, -class_id, nbytes, class_id, image, alignment)
        held = 0
        peak = 0
        bs = self._batch_size()
        starts = range(0, n, bs)
        for s in progress(starts, total=len(starts), desc="scoring classes", unit="batch"):
            rows = np.arange(s, min(s + bs, n), dtype=np.int64)
            before = getattr(self.averager, "alignment", None)
            avgs = np.asarray(self.averager.average(class_indices[rows], class_refl[rows]))
            if avgs.ndim != 3 or avgs.shape[0] != rows.size or avgs.shape[1] != avgs.shape[2]:
                raise ValueError(f"averager.average must return {rows.size} images (k, L, L) "
                                 f"for {rows.size} classes, got shape {avgs.shape}")
            q = np.asarray(self.quality_function(avgs), dtype=np.float64).reshape(-1)
            if q.size != rows.size:
                raise ValueError(f"quality_function must return one score per image "
                                 f"({rows.size}), got {q.size}")
            scores[rows] = q
            if limit <= 0:
                continue
            align = self._batch_alignment(before, rows)
            keys = np.where(np.isnan(q), -np.inf, q)
            img_bytes = avgs[0].nbytes
            cand = np.arange(rows.size)
            if heap and held + img_bytes > limit:       # full: only better than the worst
                cand = np.flatnonzero(keys >= heap[0][0])
            for i in cand.tolist():
                c = int(rows[i])
                key = (float(keys[i]), -c)
                a = None
                if align is not None:
                    j = align[3][i]
                    a = (_frozen(align[0][j]), _frozen(align[1][j]), _frozen(align[2][j]))
                nb = img_bytes + (0 if a is None else sum(x.nbytes for x in a))
                if nb > limit:
                    continue
                while heap and held + nb > limit and heap[0][:2] < key:
                    held -= heapq.heappop(heap)[2]
                if held + nb <= limit:
                    heapq.heappush(heap, (*key, nb, c, _frozen(avgs[i]), a))
                    held += nb
                    peak = max(peak, held)
            del avgs
        self._cache = {e[3]: (e[4], e[5], e[2]) for e in heap}
        self.peak_heap_bytes_ = int(peak)
        self.class_scores_ = scores
        order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
        return order, scores[order]


class GlobalWithRepulsionClassSelector(GreedyClassRepulsionMixin, GlobalClassSelector):
    """:class:`GlobalClassSelector` ordering followed by greedy class repulsion.

    Parameters
    ----------
    averager, quality_function : see :class:`GlobalClassSelector`
    exclude_k : int or None, keyword-only
        Members marked as seen per accepted class (default: the whole row).
    heap_size_limit_bytes, batch_size, n_classes : keyword-only
        As in :class:`GlobalClassSelector`.
    """
