"""One description of a source chain: :func:`resolve_chain`.

A particle source is usually a chain of lazy transforms over the source that reads the files
(``RelionSource(...).downsample(64).normalize_background().phase_flip()``).  Several parts need
to know what the chain did: the classifier (are the images phase flipped?), CTF-aware
averaging (where are the raw, CTF-modulated images?), the outputs (which file-backed source
holds the STAR metadata and the input files?).  They all ask :func:`resolve_chain`, so that
they agree.

Rules
-----
* The *root* is the first source along the ``parent`` links that is not a
  :class:`~classavg.sources.transforms.DerivedSource` (it reads the files or holds the array).
* The images are *phase flipped* when the number of
  :class:`~classavg.sources.transforms.PhaseFlippedSource` steps, plus one if the root's data
  are flipped on disk (RELION's ``rlnCtfDataArePhaseFlipped`` non-zero for every image), is
  odd: flipping twice is the identity.
* The *CTF images* are the chain replayed over the root without its Fourier filters outside
  the image model (steps with ``model_filter``: the phase flip, whitening), every other step
  in its order (:meth:`~classavg.sources.transforms.DerivedSource.with_parent`): the images
  exactly as processed, but CTF-modulated with the noise as recorded.  When those filters are
  the last steps this is the parent of the first of them, the same object.  When the root's data are flipped on disk, no raw
  images exist: the CTF images are those flipped ones, and their CTF is ``|CTF|``
  (:attr:`SourceChain.ctf_images_flipped`), which Wiener averaging honours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ImageSource
from .transforms import DerivedSource, PhaseFlippedSource

__all__ = ["SourceChain", "resolve_chain", "flipped_on_disk"]

#: Longest chain followed (a cycle of parent links would otherwise never end).
MAX_DEPTH = 1000


def flipped_on_disk(src) -> bool:
    """Whether the metadata of ``src`` mark every image as phase flipped on disk
    (``rlnCtfDataArePhaseFlipped`` non-zero; RELION writes it in the optics block)."""
    md = getattr(src, "metadata", None)
    if md is None or "rlnCtfDataArePhaseFlipped" not in md.columns:
        return False
    try:
        flags = md["rlnCtfDataArePhaseFlipped"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(flags.size and np.all(flags != 0))


@dataclass(frozen=True)
class SourceChain:
    """What a chain of derived sources did (see the module docstring).

    Attributes
    ----------
    source : ImageSource
        The source described (the last step).
    steps : tuple of DerivedSource
        The transforms, root first (empty for a root source).
    root : ImageSource
        The source that reads the files (or holds the array).
    n_flips : int
        Phase-flip steps in the chain.
    flipped_on_disk : bool
        The root's images are phase flipped on disk (``rlnCtfDataArePhaseFlipped``).
    """

    source: ImageSource
    steps: tuple
    root: ImageSource
    n_flips: int
    flipped_on_disk: bool

    @property
    def phase_flipped(self) -> bool:
        """Whether the images of :attr:`source` are phase flipped."""
        return (self.n_flips + self.flipped_on_disk) % 2 == 1

    @property
    def has_ctf(self) -> bool:
        return bool(self.source.has_ctf)

    @property
    def ctf_images_flipped(self) -> bool:
        """Whether :meth:`ctf_images` are phase flipped (on disk): their CTF is ``|CTF|``."""
        return self.flipped_on_disk

    def ctf_images(self) -> ImageSource:
        """The images of :attr:`source` without the chain's ``model_filter`` steps (phase
        flips, whitening).

        The same object as :attr:`source` when the chain has none, the parent of the first
        of them when they are the last steps; otherwise the other steps replayed over the
        root.
        """
        first = next((i for i, s in enumerate(self.steps) if s.model_filter), None)
        if first is None:
            return self.source
        rest = self.steps[first:]
        if all(s.model_filter for s in rest):
            return rest[0].parent               # filters only at the end: nothing to replay
        node = self.root
        for step in self.steps:
            if not step.model_filter:
                node = step.with_parent(node)
        return node

    def translations(self) -> np.ndarray:
        """Translation (x, y) in pixels of :attr:`source` that the steps applied to each
        image (centring), shape (n, 2): the particle moved by this much from where the root
        has it.  Derived from the offsets, which every step carries forward (a downsample
        scales them, a centring adds its shifts)."""
        scale = self.source.L / self.root.L
        return self.source.offsets - self.root.offsets * scale

    def describe(self) -> dict:
        """For run records: the steps (class names and options), root first, the flip state
        and what a step records of itself (e.g. the noise spectra of whitening)."""
        steps = []
        for s in self.steps:
            steps.append({"step": type(s).__name__,
                          **{k: _plain(v) for k, v in s._options().items()}, **s.record()})
        return {"root": type(self.root).__name__, "steps": steps,
                "phase_flipped": self.phase_flipped,
                "flipped_on_disk": self.flipped_on_disk}


def resolve_chain(src) -> SourceChain:
    """Describe the chain of derived sources that ends in ``src``.

    Parameters
    ----------
    src : ImageSource

    Returns
    -------
    SourceChain

    Raises
    ------
    TypeError
        ``src`` is not an :class:`ImageSource`.
    ValueError
        The parent links form a cycle (more than :data:`MAX_DEPTH` steps).
    """
    if not isinstance(src, ImageSource):
        raise TypeError(f"src must be an ImageSource, got {type(src).__name__}")
    steps = []
    node = src
    while isinstance(node, DerivedSource):
        steps.append(node)
        if len(steps) > MAX_DEPTH:
            raise ValueError(f"src must be a finite chain of derived sources, got more than "
                             f"{MAX_DEPTH} steps (a cycle of parent links?)")
        node = node.parent
    steps.reverse()
    return SourceChain(source=src, steps=tuple(steps), root=node,
                       n_flips=sum(isinstance(s, PhaseFlippedSource) for s in steps),
                       flipped_on_disk=flipped_on_disk(node))


def _plain(v):
    """JSON-ready option values (dtypes by name)."""
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, np.generic):
        return v.item()
    return v
