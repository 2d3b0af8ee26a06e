"""Interfaces of class averaging: :class:`Averager2D`, :class:`AligningAverager2D`.

Alignment convention (see docs/conventions.md)
----------------------------------------------
For member j of class c, the averager reports a ``rotation`` (radians) and a ``shift``
``(x, y)`` (pixels).  Applied to image j in the order

1. mirror (``y -> -y`` about the centre) when ``class_refl[c, j]`` is True,
2. translate by ``shift`` (the particle moves by +shift),
3. rotate counter-clockwise by ``rotation`` about the centre pixel,

they bring image j onto the reference image ``class_indices[c, 0]``.  Column 0 (the reference)
always has rotation 0 and shift (0, 0).

Writing an aligning averager
----------------------------
:class:`AligningAverager2D` does the batching, the image reads, the bookkeeping of
:attr:`~AligningAverager2D.alignment` and the stacking; a subclass implements one method::

    def _align_batch(self, batch):      # batch: ClassBatch
        ...
        return rotations, shifts, scores   # (b, m), (b, m, 2), (b, m)

``batch`` (a :class:`ClassBatch`) gives the rows of the batch (``indices``, ``refl``), the
distinct images it needs (``images``, read once), their Fourier-Bessel coefficients
(``batch.coefficients()``, computed once per averaging run and cached across batches up to
:attr:`AligningAverager2D.coefficient_cache_bytes`), ``batch.inverse`` (``(b, m)``
positions of every member in those arrays), the mirrored-then-shifted member coefficients
(``batch.shifted_member_coefficients(shifts)``, cached: computing them while aligning makes
them free for stacking) and spectral SNR weights (``batch.snr_weights()``).
``batch.transformer`` (a :class:`~classavg.averaging._transform.MemberTransformer`) expands,
shifts, rotates and synthesises images.  A subclass with its own way of forming averages
(e.g. EM, soft assignments) overrides :meth:`~AligningAverager2D._stack_batch` as well, or
:meth:`~AligningAverager2D.average`.

Where stacking happens
----------------------
A linear stacker (:class:`~classavg.averaging.stackers.MeanImageStacker`) is applied to the
Fourier-Bessel coefficients of the aligned members: the mean of the coefficients is
synthesised once per class, the cheapest exact route (the mean of the pixel images and the
image of the mean coefficients agree).  A non-linear (robust) stacker is applied where its
``domain`` says: on pixel images (the default; every aligned member is synthesised, one
:meth:`~classavg.averaging._transform.MemberTransformer.evaluate` each) or on the
coefficients (component-wise on real and imaginary parts).  Averages are therefore
band-limited to the basis and zero outside the disk of radius ``L / 2``.

CTF-aware averages
------------------
Every aligning averager takes the keywords ``ctf_correction`` (None, the default: stack the
source's images as they are; ``"wiener"``: Wiener-filtered combination of the raw members with
their aligned CTFs; ``"phase_flip"``: mean of the phase-flipped members), ``image_source``
(the raw, CTF-modulated images to average; default: the source chain without its phase-flip
steps, :func:`classavg.sources.chain.resolve_chain`) and ``wiener_snr`` (a constant spectral
SNR instead of the per-class estimate); see :mod:`classavg.averaging.wiener`.  Alignment always
uses ``src``.  A subclass declares them in its constructor and passes them on to
:class:`AligningAverager2D` (its ``tags.ctf_correction`` says so); its ``repr`` lists its own
options through :meth:`AligningAverager2D._repr_fields` and gets the device and CTF options
appended.

What an averager takes (``tags``, :mod:`classavg._tags`): ``aligns`` and ``ctf_correction``
for every aligning averager, ``client`` (``align``/``average`` take a Dask client) unless a
subclass says otherwise, ``device`` for those whose constructor takes ``device=``.

Transforms of the members (:class:`~classavg.averaging._transform.MemberTransformer`): the
mirror conjugates the coefficients, the shift is a Fourier phase shift of the (disk-masked)
image before its expansion, the rotation multiplies the coefficients by ``exp(-i k angle)``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .._backend import check_device
from .._parallel import block_map
from .._progress import progress
from .._tags import Tags
from .._validation import check_int
from ..metrics.resolution import half_set_columns
from ._batch import ClassBatch, CoefficientCache, _HalfBatch
from .wiener import check_ctf_options, ctf_corrected_stack

__all__ = ["Averager2D", "AligningAverager2D", "AlignmentResult", "ClassBatch",
           "check_class_table", "check_classes"]

logger = logging.getLogger(__name__)


@dataclass
class AlignmentResult:
    """Per-member alignment of a batch of classes.

    Attributes
    ----------
    classes : ndarray of int, shape (k,)
        Class ids (row numbers of the full neighbour table) of the aligned rows.
    rotations : ndarray of float, shape (k, n_nbor)
        Counter-clockwise rotation in radians (applied last).
    shifts : ndarray of float, shape (k, n_nbor, 2)
        Translation (x, y) in pixels (applied after mirroring, before rotating).
    scores : ndarray of float, shape (k, n_nbor)
        Alignment score of each member (higher is better; the meaning depends on the
        averager, e.g. correlation with the reference).
    """

    classes: np.ndarray
    rotations: np.ndarray
    shifts: np.ndarray
    scores: np.ndarray

    def __len__(self):
        return int(self.classes.shape[0])

    def __getitem__(self, i):
        """Alignment of the i-th aligned row: ``(rotations (m,), shifts (m, 2), scores (m,))``."""
        return self.rotations[i], self.shifts[i], self.scores[i]

    def for_class(self, c):
        """Alignment of the row with class id ``c`` (a value of :attr:`classes`)."""
        hit = np.flatnonzero(self.classes == c)
        if hit.size == 0:
            raise KeyError(f"class {c!r} was not aligned")
        return self[int(hit[0])]

    @classmethod
    def concatenate(cls, parts):
        """Join the results of consecutive batches."""
        parts = list(parts)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("classes", "rotations", "shifts", "scores")))


def check_class_table(class_indices, class_refl, n_images):
    """Validate a neighbour table and return it as (int64 (k, m), bool (k, m)) arrays."""
    ci = np.asarray(class_indices)
    if ci.ndim == 1:
        ci = ci[None]
    if ci.ndim != 2 or ci.shape[1] < 1 or not np.issubdtype(ci.dtype, np.integer):
        raise ValueError(f"class_indices must be an integer array of shape (k, n_nbor), "
                         f"got {ci.dtype} {ci.shape}")
    if ci.size and (ci.min() < 0 or ci.max() >= n_images):
        raise ValueError(f"class_indices must lie in [0, {n_images}), got values in "
                         f"[{ci.min()}, {ci.max()}]")
    cr = np.zeros(ci.shape, bool) if class_refl is None else np.asarray(class_refl)
    if cr.ndim == 1:
        cr = cr[None]
    if cr.shape != ci.shape:
        raise ValueError(f"class_refl must have the shape of class_indices {ci.shape}, "
                         f"got {cr.shape}")
    return ci.astype(np.int64, copy=False), cr.astype(bool, copy=False)


def check_classes(classes, k):
    """Validate a selection of rows of a k-row table; None means all rows -> int64 (k',)."""
    if classes is None:
        return np.arange(k, dtype=np.int64)
    c = np.asarray(classes)
    if c.ndim == 0:
        c = c[None]
    if c.ndim != 1 or (c.size and not np.issubdtype(c.dtype, np.integer)):
        raise ValueError(f"classes must be a 1-D integer array of row numbers, got {classes!r}")
    if c.size and (c.min() < 0 or c.max() >= k):
        raise ValueError(f"classes must lie in [0, {k}), got values in [{c.min()}, {c.max()}]")
    return c.astype(np.int64, copy=False)


class Averager2D(ABC):
    """Turns rows of a neighbour table into class averages.

    Parameters
    ----------
    src : ImageSource
        The images that the class tables index.
    basis : FourierBesselBasis2D, optional
        Steerable basis; built from ``src.L`` when not given.
    image_stacker : ImageStacker, optional
        How aligned members are combined (default :class:`MeanImageStacker`).
    batch_size : int, optional
        Classes processed at once; bounds memory (default 64).

    Attributes
    ----------
    tags : Tags
        What the averager takes (:mod:`classavg._tags`).
    """

    tags = Tags()

    def __init__(self, src, *, basis=None, image_stacker=None, batch_size=64):
        from ..basis import FourierBesselBasis2D
        from .stackers import ImageStacker, MeanImageStacker

        self.src = src
        self.basis = basis if basis is not None else FourierBesselBasis2D(src.L, dtype=src.dtype)
        if self.basis.L != src.L:
            raise ValueError(f"basis must be built for L={src.L}, got a basis for L={self.basis.L}")
        if image_stacker is None:
            image_stacker = MeanImageStacker()
        if not isinstance(image_stacker, ImageStacker):
            raise TypeError(f"image_stacker must be an ImageStacker, got {image_stacker!r}")
        self.image_stacker = image_stacker
        self.batch_size = check_int("batch_size", batch_size, min=1)

    @abstractmethod
    def average(self, class_indices, class_refl):
        """Class averages, one per row, each in the frame of its reference (column 0).

        Parameters
        ----------
        class_indices : ndarray of int, shape (k, n_nbor)
        class_refl : ndarray of bool, shape (k, n_nbor)

        Returns
        -------
        ndarray, shape (k, L, L), dtype ``src.dtype``
        """


class AligningAverager2D(Averager2D):
    """An averager that first aligns every member to its reference, then stacks them.

    Subclasses implement :meth:`_align_batch` (see the module docstring).  After
    :meth:`average`, :attr:`alignment` holds the :class:`AlignmentResult` of the rows
    averaged, in the order averaged, with ``alignment.classes`` their row numbers; with
    :attr:`keep_half_sets`, :attr:`half_averages` holds their two half-set averages.
    """

    alignment: AlignmentResult | None = None
    #: Also stack the two halves of every class in :meth:`average` (the members of
    #: :func:`classavg.metrics.resolution.half_set_columns`), from the member spectra already
    #: formed for the average: the half-set FRC then costs no second pass over the members.
    keep_half_sets = False
    #: After :meth:`average` with :attr:`keep_half_sets`: (k, 2, L, L), in the order of
    #: ``alignment.classes`` (None otherwise).
    half_averages = None

    #: Aligns (``align``), takes the CTF keywords and a Dask client; subclasses whose
    #: constructor takes ``device`` add ``device=True``.
    tags = Averager2D.tags.extend(aligns=True, ctf_correction=True, client=True)

    #: CTF correction of the averages: None, "wiener" or "phase_flip" (module docstring).
    ctf_correction = None
    #: The raw images averaged with a CTF correction (resolved; None without correction).
    image_source = None
    #: Whether :attr:`image_source` is phase flipped on disk (its CTF is then ``|CTF|``).
    image_source_flipped = False
    #: Constant spectral SNR of the Wiener filter (None: estimated per class and ring).
    wiener_snr = None
    #: Where the alignment kernels run: "cpu", or "cuda" for the averagers whose ``tags``
    #: have ``device`` (:mod:`classavg._backend`).
    device = "cpu"

    def __init__(self, src, *, basis=None, image_stacker=None, batch_size=64,
                 ctf_correction=None, image_source=None, wiener_snr=None, device="cpu"):
        super().__init__(src, basis=basis, image_stacker=image_stacker, batch_size=batch_size)
        self.device = check_device(device)
        self.set_ctf_correction(ctf_correction, image_source=image_source,
                                wiener_snr=wiener_snr)

    def set_ctf_correction(self, ctf_correction, *, image_source=None, wiener_snr=None):
        """Choose how the CTF is handled when stacking (:mod:`classavg.averaging.wiener`).

        Parameters
        ----------
        ctf_correction : {None, "wiener", "phase_flip"}
            None: stack the images of :attr:`src` as they are (e.g. already phase flipped).
            "wiener": ``sum CTF_i X_i / (sum CTF_i^2 + 1 / SNR)`` over the aligned raw members
            (their CTFs mirrored and rotated with them).  "phase_flip": the mean of the
            phase-flipped raw members.
        image_source : ImageSource, optional
            The images with CTF metadata (same n and L as :attr:`src`; default :attr:`src`),
            taken without the phase-flip steps of their chain
            (:func:`~classavg.averaging.wiener.resolve_image_source`).
        wiener_snr : float, optional
            Constant spectral SNR (> 0) for "wiener"; default: estimated per class and ring.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A correction is asked for images without CTF parameters, "wiener" with a non-linear image stacker, or options that the chosen
            correction does not use.
        """
        mode, raw, flipped, snr = check_ctf_options(self.src, self.image_stacker,
                                                    ctf_correction, image_source, wiener_snr)
        self.ctf_correction, self.image_source, self.wiener_snr = mode, raw, snr
        self.image_source_flipped = flipped
        return self

    @property
    def ctf_options(self):
        """The CTF options as a dict (for run records): ``ctf_correction``, ``wiener_snr``
        and ``image_source`` (its repr; None without correction)."""
        return {"ctf_correction": self.ctf_correction, "wiener_snr": self.wiener_snr,
                "image_source": None if self.image_source is None else repr(self.image_source),
                "image_source_flipped": self.image_source_flipped}

    def _ctf_repr(self):
        if self.ctf_correction is None:
            return ""
        out = f"ctf_correction={self.ctf_correction!r}"
        if self.wiener_snr is not None:
            out += f", wiener_snr={self.wiener_snr:g}"
        return out

    def _repr_fields(self):
        """The subclass's own options for :meth:`__repr__`, as ``"name=value"`` strings."""
        return []

    def __repr__(self):
        fields = [f"src={self.src!r}", *self._repr_fields()]
        if self.device != "cpu":
            fields.append(f"device={self.device!r}")
        if self._ctf_repr():
            fields.append(self._ctf_repr())
        return f"{type(self).__name__}({', '.join(fields)})"

    #: Memory cap (bytes) of the Fourier-Bessel coefficients kept across batches during one
    #: :meth:`align` / :meth:`average` call (images shared by several classes are expanded
    #: once); 0 expands per batch.
    coefficient_cache_bytes = 256 * 2 ** 20

    @property
    def transformer(self):
        """The :class:`~classavg.averaging._transform.MemberTransformer` of :attr:`basis`."""
        tr = self.__dict__.get("_transformer")
        if tr is None or tr.basis is not self.basis or tr.device != self.device:
            from ._transform import MemberTransformer
            tr = MemberTransformer(self.basis, device=self.device)
            self.__dict__["_transformer"] = tr
        return tr

    # -- batching ----------------------------------------------------------------------------
    def _run(self, class_indices, class_refl, classes, client, *, stack):
        """``(averages or None, AlignmentResult)`` per batch of ``batch_size`` rows, in order:
        here (one coefficient cache shared by the batches) or as Dask tasks (one per task)."""
        ci, cr = check_class_table(class_indices, class_refl, self.src.n)
        rows = check_classes(classes, ci.shape[0])
        if client is not None and self.device != "cpu":
            raise ValueError(f"device must be 'cpu' with a Dask client, got {self.device!r}")
        blocks = [rows[s:s + self.batch_size] for s in range(0, rows.size, self.batch_size)]
        items = ((r, ci[r], cr[r], stack, stack and self.keep_half_sets) for r in blocks)
        if client is None:
            cache = self._coefficient_cache()
            results = (self._process(item, cache) for item in items)
        else:
            results = block_map(_average_task, items, shared=(self,), client=client)
        return progress(results, total=len(blocks), desc="averaging" if stack else "aligning",
                        unit="batch")

    def _coefficient_cache(self):
        return CoefficientCache(self.src.n, self.basis.count, self.transformer.complex_dtype,
                                self.coefficient_cache_bytes)

    def _process(self, item, cache=None):
        """Align (and, with ``stack``, stack) one batch of rows:
        ``(averages or None, AlignmentResult, half averages (b, 2, L, L) or None)``."""
        rows, ci, cr, stack, halves = item
        batch = ClassBatch(rows, ci, cr, self.src, self.transformer,
                           self._coefficient_cache() if cache is None else cache)
        res = self._finish(batch, *self._align_batch(batch))
        if not stack:
            return None, res, None
        if not halves:
            fn = self._stack_batch if self.ctf_correction is None else self._ctf_stack_batch
            return np.asarray(fn(batch, res), dtype=self.src.dtype), res, None
        avg, a, b = self._stack_with_halves(batch, res)
        dt = self.src.dtype
        return (np.asarray(avg, dtype=dt), res,
                np.stack([np.asarray(a, dtype=dt), np.asarray(b, dtype=dt)], axis=1))

    def _finish(self, batch, rotations, shifts, scores):
        b, m = batch.indices.shape
        rot = np.asarray(rotations, dtype=np.float64).reshape(b, m).copy()
        sh = np.asarray(shifts, dtype=np.float64).reshape(b, m, 2).copy()
        sc = np.asarray(scores, dtype=np.float64).reshape(b, m).copy()
        ref = ~batch.refl[:, 0]                 # the reference is aligned with itself
        rot[ref, 0] = 0.0
        sh[ref, 0] = 0.0
        rot = np.mod(rot + np.pi, 2 * np.pi) - np.pi
        return AlignmentResult(batch.rows.copy(), rot, sh, sc)

    # -- public API ------------------------------------------------------------------------------
    def align(self, class_indices, class_refl, *, classes=None, client=None):
        """Align the members of each row to its reference.

        Parameters
        ----------
        class_indices : ndarray of int, shape (k, n_nbor)
            Neighbour table; column 0 is the reference of each row.
        class_refl : ndarray of bool, shape (k, n_nbor), or None
            Mirror flags (None: no member is mirrored).
        classes : array_like of int, optional
            Align only these rows (row numbers of the table), in this order (default: all).
        client : dask.distributed.Client, optional
            Align the batches of rows as Dask tasks (:mod:`classavg._parallel`); the same
            result as without a client.

        Returns
        -------
        AlignmentResult
            ``classes`` (the row numbers), rotations (k', n_nbor) radians in [-pi, pi),
            shifts (k', n_nbor, 2) pixels, scores (k', n_nbor).  Applied to member j in the
            order mirror -> shift -> rotation they bring it onto the reference.
        """
        return self._concat([res for _, res, _ in self._run(class_indices, class_refl, classes,
                                                            client, stack=False)])

    def average(self, class_indices, class_refl, *, classes=None, client=None):
        """Class averages, one per row, each in the frame of its reference (column 0).

        For every batch of ``batch_size`` rows: read the distinct images once, align the
        members (:meth:`_align_batch`), transform them (mirror -> shift -> rotate) and stack
        them with :attr:`image_stacker` (:meth:`_stack_batch`).  Memory is bounded by the
        batch.  The alignment of the rows is kept in :attr:`alignment`.

        Parameters
        ----------
        class_indices : ndarray of int, shape (k, n_nbor)
        class_refl : ndarray of bool, shape (k, n_nbor), or None
        classes : array_like of int, optional
            Average only these rows of the table, in this order (e.g. the selected classes of
            a pipeline that keeps the full table); output i is row ``classes[i]`` and
            ``alignment.classes == classes``.  Default: every row.
        client : dask.distributed.Client, optional
            Average the batches of rows as Dask tasks (:mod:`classavg._parallel`; each
            worker gets a copy of this averager once); the same result as without a client.

        Returns
        -------
        ndarray, shape (k', L, L), dtype ``src.dtype``
            Band-limited to the basis, zero outside the disk of radius ``L / 2``.
        """
        outs, parts, halves = [], [], []
        for avg, res, half in self._run(class_indices, class_refl, classes, client,
                                        stack=True):
            outs.append(avg)
            parts.append(res)
            halves.append(half)
        self.alignment = self._concat(parts)
        self.half_averages = (np.concatenate(halves) if self.keep_half_sets and halves
                              else None)
        if not outs:
            return np.zeros((0, self.src.L, self.src.L), dtype=self.src.dtype)
        return np.concatenate(outs)

    def __getstate__(self):
        # Sent to Dask workers: the results of earlier calls and the caches stay here.
        state = self.__dict__.copy()
        state.pop("_transformer", None)
        state.pop("alignment", None)
        state.pop("half_averages", None)
        return state

    @staticmethod
    def _concat(parts):
        if parts:
            return AlignmentResult.concatenate(parts)
        return AlignmentResult(np.zeros(0, np.int64), np.zeros((0, 0)), np.zeros((0, 0, 2)),
                               np.zeros((0, 0)))

    # -- to implement / override ---------------------------------------------------------------
    def _align_batch(self, batch):
        """Align one :class:`ClassBatch`.

        Returns
        -------
        rotations : ndarray, shape (b, m)
            Radians, counter-clockwise, applied last.
        shifts : ndarray, shape (b, m, 2)
            ``(x, y)`` pixels, applied after the mirror.
        scores : ndarray, shape (b, m)
            Higher is better.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _align_batch")

    def _half_stack_batch(self, batch, alignment):
        """How a half set of members is stacked without CTF correction (default: as the
        average, :meth:`_stack_batch`)."""
        return self._stack_batch(batch, alignment)

    def _stack_with_halves(self, batch, alignment):
        """The averages of a batch and of the two halves of every class, ``3 x (b, L, L)``.

        The halves are :func:`~classavg.metrics.resolution.half_set_columns` of the members,
        stacked as :func:`~classavg.averaging.half_sets.half_set_averages` stacks them, from
        the member spectra (CTF correction) or shifted coefficients formed for the average.
        """
        cols_a, cols_b = half_set_columns(batch.indices.shape[1])
        if self.ctf_correction is not None:
            return ctf_corrected_stack(self, batch, alignment,
                                       column_sets=(None, cols_a, cols_b))
        full = self._stack_batch(batch, alignment)
        if cols_a.size == 0:
            return full, np.zeros_like(full), np.zeros_like(full)
        halves = []
        for cols in (cols_a, cols_b):
            res = AlignmentResult(alignment.classes, alignment.rotations[:, cols],
                                  alignment.shifts[:, cols], alignment.scores[:, cols])
            halves.append(self._half_stack_batch(_HalfBatch(batch, cols, alignment.shifts),
                                                 res))
        return full, halves[0], halves[1]

    def _ctf_stack_batch(self, batch, alignment):
        """CTF-corrected stacking (:func:`~classavg.averaging.wiener.ctf_corrected_stack`)."""
        return ctf_corrected_stack(self, batch, alignment)

    def _stack_batch(self, batch, alignment):
        """Transform the members of a batch by ``alignment`` and stack them -> (b, L, L).

        Linear stackers act on Fourier-Bessel coefficients (a weighted sum formed in the polar
        domain, one synthesis per class); robust stackers act on pixel images or coefficients
        according to their ``domain``.
        """
        tr = self.transformer
        st = self.image_stacker
        b, m = batch.indices.shape
        coef = batch.shifted_member_coefficients(alignment.shifts)     # (b, m, count)
        coef = tr.rotate(coef, alignment.rotations)
        if st.linear:
            # A linear stacker is a (weighted) mean: probe its weights with the identity.
            w = st(np.eye(m), axis=0).astype(tr.dtype)
            return tr.evaluate(np.einsum("j,cjq->cq", w, coef))
        if st.domain == "coefficients":
            return tr.evaluate(st.stack(coef))
        L = self.basis.L
        imgs = tr.evaluate(coef.reshape(b * m, -1)).reshape(b, m, L, L)
        return st.stack(imgs)


def _average_task(averager, item):
    """One batch of rows on a Dask worker: ``(averages or None, AlignmentResult)``."""
    return averager._process(item)
