"""What a pipeline part takes and needs, declared on its class (as scikit-learn's estimator
tags are).

Every part base class (:class:`~classavg.classification.Class2D`,
:class:`~classavg.selection.ClassSelector`, :class:`~classavg.averaging.Averager2D`) carries a
class attribute ``tags``, a frozen :class:`Tags`; a subclass that takes more (a device, a Dask
client, a seed, ...) declares it with ``tags = Parent.tags.extend(device=True)``.  The
pipeline (:mod:`classavg.pipeline.source`) reads the tags to wire parts together: it never
looks at class names or probes signatures, so a new part only has to declare what it takes.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Tags", "get_tags"]


@dataclasses.dataclass(frozen=True)
class Tags:
    """Capabilities and needs of a pipeline part.

    Attributes
    ----------
    device : bool
        The constructor takes ``device=`` (``"cpu"`` or ``"cuda"``, :mod:`classavg._backend`).
    client : bool
        The work methods (``classify``; ``align`` and ``average``) take ``client=`` (a
        ``dask.distributed.Client``) and give the same result with it.
    random : bool
        The constructor takes ``seed=`` (the part draws random numbers).
    needs_averager : bool
        The constructor's first argument is an :class:`~classavg.averaging.Averager2D`
        (selectors that judge classes by their averages).
    needs_distances : bool
        ``select`` needs ``class_distances``.
    caches_averages : bool
        The part keeps the averages and alignments it computed (``cached_average(c)`` and
        ``cached_alignment(c)``, None when not computed).
    aligns : bool
        The averager has ``align(class_indices, class_refl, *, classes=None)`` returning an
        :class:`~classavg.averaging.AlignmentResult`.
    ctf_correction : bool
        The constructor takes ``ctf_correction``, ``image_source`` and ``wiener_snr``
        (:mod:`classavg.averaging.wiener`).
    """

    device: bool = False
    client: bool = False
    random: bool = False
    needs_averager: bool = False
    needs_distances: bool = False
    caches_averages: bool = False
    aligns: bool = False
    ctf_correction: bool = False

    def extend(self, **changes):
        """A copy with ``changes`` (e.g. ``Parent.tags.extend(device=True)``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)


def get_tags(part):
    """The :class:`Tags` of a pipeline part (an instance or a class).

    Raises
    ------
    TypeError
        ``part`` declares no tags (it does not derive from a part base class).
    """
    tags = getattr(part, "tags", None)
    if not isinstance(tags, Tags):
        name = part.__name__ if isinstance(part, type) else type(part).__name__
        raise TypeError(f"{name} must derive from Class2D, ClassSelector or Averager2D "
                        "(which declare its tags), got a class without tags")
    return tags
