"""``ClassAvgSource``: an :class:`ImageSource` of class averages, and its presets."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from .. import averaging, selection
from .._tags import get_tags
from .._validation import check_choice, check_int
from ..classification import RIRClass2D
from ..sources.base import ImageSource
from .presets import get_preset, resolve_radius

__all__ = ["ClassAvgSource", "DebugClassAvgSource", "DefaultClassAvgSource"]

#: Presets with VDM refinement use it up to this many images.  Its global search and affinity
#: ranking still hold several n x 2 n_nbor tables: 4.3 GB peak at 10^5 (images included), over
#: 12 GB at 10^6 (BENCHMARKS.md); above the limit the preset's re-ranked neighbours are used.
VDM_MAX_IMAGES = 200_000

logger = logging.getLogger(__name__)


class ClassAvgSource(ImageSource):
    """Class averages of ``src`` as an image source.

    Classifies once and selects once, on construction (the source's length is the number of
    selected classes); the averages themselves are computed lazily, in batches, when images are
    requested, and served from the selector's cache when a global selector already computed
    them.  Average ``i`` always belongs to class ``selection_indices[i]``.

    Parameters
    ----------
    src : ImageSource
        The particle images.
    classifier : Class2D
        Produces the neighbour table (``classify()``).
    class_selector : ClassSelector
        Orders and filters the classes (``select(...)``).
    averager : Averager2D
        Averages rows of the table (``average(ci, cr, classes=...)``).
    preset : str, optional
        Name of the preset the parts came from (recorded in :attr:`record`).
    client : dask.distributed.Client, optional
        Run the classification and the averaging on this Dask cluster
        (``classify(client=...)``, ``average(..., client=...)``; :mod:`classavg._parallel`):
        the same results as without it.  Parts whose ``tags`` have no ``client``
        (:mod:`classavg._tags`) run in this process.

    The parts are wired by what their classes declare (``tags``): a selector that
    ``caches_averages`` serves the averages it computed, an averager that ``aligns`` gives
    the per-member alignment.

    Attributes
    ----------
    class_indices, class_refl, class_distances : ndarray, shape (n_images, n_nbor)
        The classifier's neighbour table.
    selection_indices : ndarray of int, shape (n,)
        Selected class ids in rank order.
    timings : dict
        Seconds spent per stage.
    """

    def __init__(self, src, classifier, class_selector, averager, *, preset=None, client=None):
        for label, part, base in (("classifier", classifier, "Class2D"),
                                  ("class_selector", class_selector, "ClassSelector"),
                                  ("averager", averager, "Averager2D")):
            try:
                get_tags(part)
            except TypeError:
                raise TypeError(f"{label} must be a {base}, got {type(part).__name__}") from None
        self.src = src
        self.client = client
        self.classifier = classifier
        self.class_selector = class_selector
        self.averager = averager
        self.preset = preset
        self.timings = {}
        t0 = time.perf_counter()
        self.class_indices, self.class_refl, self.class_distances = classifier.classify(
            **self._client_kwargs(classifier))
        self.timings["classification"] = time.perf_counter() - t0
        self.timings.update({f"classification/{k}": v for k, v in
                             getattr(classifier, "timings_", {}).items()})
        t0 = time.perf_counter()
        sel = np.asarray(class_selector.select(self.class_indices, self.class_refl,
                                               self.class_distances), dtype=np.int64)
        self.timings["selection"] = time.perf_counter() - t0
        if sel.ndim != 1 or sel.size == 0:
            raise ValueError(f"class_selector must return a non-empty 1-D list of class ids, "
                             f"got shape {sel.shape}")
        self.selection_indices = sel
        self._alignments = {}                 # class id -> (rotations, shifts, scores)
        self._halves = {}                     # class id -> (2, L, L) half-set averages
        if isinstance(averager, averaging.AligningAverager2D):
            # The outputs report every class's half-set resolution: stack the halves in the
            # averaging pass, from the member spectra it forms anyway (no second pass).
            averager.keep_half_sets = True
        self._averaging_time = 0.0
        ref = self.class_indices[sel, 0]
        scores = getattr(class_selector, "selection_scores_", None)
        md = pd.DataFrame({
            "class_id": sel,
            "rank": np.arange(1, sel.size + 1),
            "reference_particle": ref,
            "members": np.full(sel.size, self.class_indices.shape[1]),
            "score": (np.asarray(scores, dtype=float) if scores is not None
                      and len(scores) == sel.size else np.full(sel.size, np.nan)),
        })
        super().__init__(n=sel.size, L=src.L, dtype=src.dtype, pixel_size=src.pixel_size,
                         metadata=md)

    def _client_kwargs(self, part):
        """``{"client": ...}`` when a client is set and ``part``'s tags take one."""
        if self.client is None:
            return {}
        if not get_tags(part).client:
            logger.info("%s takes no Dask client: it runs in this process", type(part).__name__)
            return {}
        return {"client": self.client}

    def _cached(self, what, class_id):
        """The selector's cached average or alignment of a class (None: not cached)."""
        if not get_tags(self.class_selector).caches_averages:
            return None
        return getattr(self.class_selector, f"cached_{what}")(int(class_id))

    @property
    def n_nbor(self):
        return self.class_indices.shape[1]

    def _images(self, indices):
        classes = self.selection_indices[indices]
        out = np.empty((indices.size, self.L, self.L), dtype=self.dtype)
        todo = []
        for i, c in enumerate(classes):          # a dictionary look-up per class, no pixels
            img = self._cached("average", c)
            if img is None:
                todo.append(i)
            else:
                out[i] = img
        if todo:
            todo = np.asarray(todo)
            t0 = time.perf_counter()
            out[todo] = self.averager.average(self.class_indices, self.class_refl,
                                              classes=classes[todo],
                                              **self._client_kwargs(self.averager))
            self._averaging_time += time.perf_counter() - t0
            self.timings["averaging"] = self._averaging_time
            self._store_alignment(getattr(self.averager, "alignment", None))
            halves = getattr(self.averager, "half_averages", None)
            if halves is not None:
                for c, h in zip(classes[todo], halves):
                    self._halves[int(c)] = h
        return out

    def half_averages(self, class_ids=None):
        """The two half-set averages of the given classes (default: the selection), as the
        averaging pass stacked them: (k, 2, L, L), or None when some class has none (not yet
        averaged, or averaged by a part that keeps no halves)."""
        ids = self.selection_indices if class_ids is None else np.asarray(class_ids)
        if not all(int(c) in self._halves for c in ids):
            return None
        return np.stack([self._halves[int(c)] for c in ids])

    def rank_classes(self, order):
        """Put the selected classes in a new order (in place): ``selection_indices`` becomes
        ``selection_indices[order]`` and the metadata rows follow, ranks renumbered 1..K.

        Averages, halves and alignments are kept per class id, so nothing is recomputed;
        the junk rejection (:mod:`classavg.pipeline._junk`) ranks rejected classes last.
        """
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(self.selection_indices.size)):
            raise ValueError("order must be a permutation of "
                             f"0..{self.selection_indices.size - 1}, got {order!r}")
        self.selection_indices = self.selection_indices[order]
        md = self.metadata.iloc[order].reset_index(drop=True)
        md["rank"] = np.arange(1, order.size + 1)
        self._metadata = md

    def _store_alignment(self, result):
        if result is None:
            return
        for j, c in enumerate(result.classes):
            self._alignments[int(c)] = (result.rotations[j], result.shifts[j], result.scores[j])

    def alignment(self, class_ids=None):
        """Alignment of the members of the given classes (default: the selection).

        Returns
        -------
        rotations (k, n_nbor) radians, shifts (k, n_nbor, 2) pixels, scores (k, n_nbor):
        applied to member j in the order mirror -> shift -> rotate they bring it onto the
        class reference (docs/conventions.md).  Classes not yet aligned are aligned now.
        """
        ids = self.selection_indices if class_ids is None else np.asarray(class_ids)
        for c in ids:
            if int(c) not in self._alignments:
                hit = self._cached("alignment", c)
                if hit is not None:
                    self._alignments[int(c)] = hit
        missing = [int(c) for c in ids if int(c) not in self._alignments]
        if missing and get_tags(self.averager).aligns:
            self._store_alignment(self.averager.align(
                self.class_indices, self.class_refl, classes=np.asarray(missing),
                **self._client_kwargs(self.averager)))
        m = self.n_nbor
        rot = np.zeros((ids.size, m))
        sh = np.zeros((ids.size, m, 2))
        sc = np.full((ids.size, m), np.nan)
        for i, c in enumerate(ids):
            if int(c) in self._alignments:
                rot[i], sh[i], sc[i] = self._alignments[int(c)]
        return rot, sh, sc


def _make_selector(cls, options, *, averager, n_classes, seed):
    """The preset's selector: the averager first when its tags need one, the pipeline's seed
    when they are ``random``, a fresh quality function per run."""
    tags = get_tags(cls)
    opts = {k: v() if k == "quality_function" and isinstance(v, type) else v
            for k, v in options.items()}
    if tags.random:
        opts.setdefault("seed", seed)
    args = (averager,) if tags.needs_averager else ()
    return cls(*args, n_classes=n_classes, **opts)


class DebugClassAvgSource(ClassAvgSource):
    """The simplest pipeline: RIR (plain bispectrum, exact neighbours), Top selection, BFR
    averaging with mean stacking.  Output ``i`` is the class of image ``i``.

    Component counts are lowered automatically for small data sets; any part can be replaced.
    """

    def __init__(self, src, *, n_nbor=10, seed=0, classifier=None, class_selector=None,
                 averager=None, client=None):
        n_nbor = check_int("n_nbor", n_nbor, min=1)
        if classifier is None:
            classifier = RIRClass2D(src, n_nbor=n_nbor, nn="exact", rerank=False, seed=seed,
                                    **_small_data_options(src.n))
        if averager is None:
            averager = averaging.BFRAverager2D(src)
        if class_selector is None:
            class_selector = selection.TopClassSelector()
        super().__init__(src, classifier, class_selector, averager, preset="debug",
                         client=client)


def _small_data_options(n):
    """Component counts that a data set of n images supports (RIRClass2D requires <= n)."""
    return dict(fspca_components=min(400, n), bispectrum_components=min(300, n),
                sample_n=max(min(4000, 20 * n), min(300, n)))


class DefaultClassAvgSource(ClassAvgSource):
    """The pipeline of a named preset (default: the newest, see :mod:`.presets`).

    Parameters
    ----------
    src : ImageSource
    version : str, optional
        Preset name (``classavg presets`` lists them).
    n_nbor : int, optional
        Class size (default: the preset's, 50).
    n_classes : int, optional
        Keep at most this many classes (default: all the selector keeps).
    seed : int, optional
        Seed of every random part the preset builds (the classifier, a random selector).
    device : {"cpu", "cuda"}, optional
        Where the kernels of the parts whose ``tags`` have ``device`` run (the classifier and
        the BFR/BFSR averagers); the others run on the CPU (a warning says so).
    classifier, class_selector, averager : optional
        Replace any part of the preset.
    classifier_options : dict, optional
        Extra ``RIRClass2D`` options (e.g. ``batch_size``).
    averager_options : dict, optional
        Extra options of the preset's averager (e.g. ``device``).
    client : dask.distributed.Client, optional
        Run on this Dask cluster (see :class:`ClassAvgSource`).
    """

    def __init__(self, src, version=None, *, n_nbor=None, n_classes=None, seed=0,
                 device="cpu", classifier=None, class_selector=None, averager=None,
                 classifier_options=None, averager_options=None, client=None):
        preset = get_preset(version)
        device = check_choice("device", device, ("cpu", "cuda"))
        if preset.whiten is not None:
            # Classification and alignment see whitened images; CTF-aware averaging replays
            # the chain without the whitening (sources/chain.py).
            src = src.whiten(**preset.whiten)
        if preset.center is not None:
            # Classifier and averager see centred particles; the outputs add the
            # translations to the alignments (SourceChain.translations).
            src = src.center(**{"seed": seed, **preset.center})
        self.preset_config = preset
        if classifier is None:
            opts = dict(preset.classifier)
            if n_nbor is not None:
                opts["n_nbor"] = n_nbor
            opts.update(_small_data_options(src.n))
            if opts.get("refine") == "vdm" and src.n > VDM_MAX_IMAGES:
                logger.warning("preset %s: %d images, more than the %d up to which VDM "
                               "refinement fits in 8 GB; using re-ranked neighbours",
                               preset.name, src.n, VDM_MAX_IMAGES)
                opts["refine"] = None
            opts["device"] = device
            opts.update(classifier_options or {})
            classifier = RIRClass2D(src, seed=seed, **opts)
        if averager is None:
            averager = _make_averager(preset, src, device, averager_options)
        if class_selector is None:
            class_selector = _make_selector(preset.selector, preset.selector_options,
                                            averager=averager, n_classes=n_classes, seed=seed)
        super().__init__(src, classifier, class_selector, averager, preset=preset.name,
                         client=client)


def _make_averager(preset, src, device, extra):
    """The preset's averager for ``src``: ``device`` and the CTF options only where its tags
    take them (a warning where the preset asks for what the data or the class lack)."""
    cls = preset.averager
    tags = get_tags(cls)
    opts = {k: resolve_radius(v, src.L) if k == "radius" else v
            for k, v in preset.averager_options.items()}
    if opts.get("ctf_correction"):
        why = (None if tags.ctf_correction and src.has_ctf else
               f"{cls.__name__} takes no CTF correction" if not tags.ctf_correction else
               f"{src!r} has no CTF parameters")
        if why:
            logger.warning("preset %s: no CTF-aware averaging (%s); averaging the images as "
                           "given", preset.name, why)
            opts.pop("ctf_correction")
    if tags.device:
        opts["device"] = device
    elif device != "cpu":
        logger.warning("%s has no %s kernels: its alignment runs on the CPU", cls.__name__,
                       device)
    opts.update(extra or {})
    return cls(src, **opts)
