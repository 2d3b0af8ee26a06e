"""Versioned preset configurations of the class-averaging pipeline.

A preset holds the classes of its class selector and averager (and of a quality function)
with their options, and the options of the classifier.  The three
historical configurations of the reference implementation (ASPIRE 0.11.0, 0.13.2, 0.14.0) are
kept for comparison; the newest entry is classavg's own best configuration and the default.
The preset name and its resolved parameters are written into every output (``run.json`` and the
report).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..averaging import Averager2D, BFRAverager2D, BFSRAverager2D
from ..selection import (BandedSNRImageQualityFunction, ClassSelector,
                         DistanceWithRepulsionClassSelector, GlobalClassSelector,
                         GlobalWithRepulsionClassSelector,
                         NeighborVarianceWithRepulsionClassSelector, TopClassSelector,
                         VarianceImageQualityFunction)

__all__ = ["Preset", "PRESETS", "get_preset", "latest_preset", "list_presets"]


@dataclass(frozen=True)
class Preset:
    """A named pipeline configuration.

    Attributes
    ----------
    name : str
        Version string (``DefaultClassAvgSource(version=name)``).
    description : str
    classifier : dict
        ``RIRClass2D`` keyword options.
    selector : type
        A :class:`~classavg.selection.ClassSelector` subclass.
    selector_options : dict
        Its keyword options; ``quality_function`` is an
        :class:`~classavg.selection.ImageQualityFunction` subclass, instantiated per run.
    averager : type
        An :class:`~classavg.averaging.Averager2D` subclass.
    averager_options : dict
        Its keyword options; ``radius`` may be ``"L//16"``-style strings, resolved per image
        size by :func:`resolve_radius`.
    whiten : dict or None
        Whiten the particles before classification and alignment with these
        :class:`~classavg.sources.whitening.WhitenedSource` options (None: no whitening).
        CTF-aware averages still combine the unwhitened images.
    center : dict or None
        Centre the particles (after any whitening) with these
        :class:`~classavg.sources.centering.CenteredSource` options before classification
        and averaging (None: as picked).  The translations are added to the written
        alignments, so ``particles.star`` still refers to the input images.
    """

    name: str
    description: str
    classifier: dict = field(default_factory=dict)
    selector: type = TopClassSelector
    selector_options: dict = field(default_factory=dict)
    averager: type = BFRAverager2D
    averager_options: dict = field(default_factory=dict)
    whiten: dict | None = None
    center: dict | None = None
    junk: dict | None = None

    def __post_init__(self):
        for label, cls, base in (("selector", self.selector, ClassSelector),
                                 ("averager", self.averager, Averager2D)):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"{label} must be a subclass of {base.__name__}, got {cls!r}")

    def replace(self, **changes):
        """A copy with some fields changed (e.g. ``preset.replace(averager=FTKAverager2D)``)."""
        return replace(self, **changes)

    def to_dict(self):
        """JSON-ready: classes by name (``run.json``, ``classavg presets``)."""
        sel_opts = {k: v.__name__ if isinstance(v, type) else v
                    for k, v in self.selector_options.items()}
        return {"name": self.name, "description": self.description,
                "classifier": dict(self.classifier), "selector": self.selector.__name__,
                "selector_options": sel_opts, "averager": self.averager.__name__,
                "averager_options": dict(self.averager_options),
                "whiten": None if self.whiten is None else dict(self.whiten),
                "center": None if self.center is None else dict(self.center),
                "junk": None if self.junk is None else dict(self.junk)}


_PRESET_LIST = [
    Preset("0.11.0", "ASPIRE 0.11.0: neighbour-variance selection with repulsion, brute-force "
           "rotation + shift averaging (radius L//16)",
           classifier=dict(n_nbor=50, rerank=False),
           selector=NeighborVarianceWithRepulsionClassSelector,
           averager=BFSRAverager2D, averager_options=dict(radius="L//16")),
    Preset("0.13.2", "ASPIRE 0.13.2: global selection by banded SNR with repulsion, "
           "brute-force rotation averaging",
           classifier=dict(n_nbor=50, rerank=False),
           selector=GlobalWithRepulsionClassSelector,
           selector_options=dict(quality_function=BandedSNRImageQualityFunction),
           averager=BFRAverager2D),
    Preset("0.14.0", "ASPIRE 0.14.0: global selection by variance, fast rotation + shift "
           "averaging (radius L//32)",
           classifier=dict(n_nbor=50, rerank=False),
           selector=GlobalClassSelector,
           selector_options=dict(quality_function=VarianceImageQualityFunction),
           averager=BFSRAverager2D, averager_options=dict(radius="L//32")),
    Preset("1.0.0", "classavg 1.0.0: bispectrum classification re-ranked by rotational "
           "alignment, tightest classes first with repulsion, rotation + shift averaging",
           classifier=dict(n_nbor=50, rerank=True),
           selector=DistanceWithRepulsionClassSelector,
           averager=BFSRAverager2D, averager_options=dict(radius="L//32")),
    Preset("1.1.0", "classavg 1.1.0: as 1.0.0, with CTF-aware (Wiener) class averages of the "
           "raw members when the particles carry CTF parameters",
           classifier=dict(n_nbor=50, rerank=True),
           selector=DistanceWithRepulsionClassSelector,
           averager=BFSRAverager2D,
           averager_options=dict(radius="L//32", ctf_correction="wiener")),
    Preset("1.2.0", "classavg 1.2.0: as 1.1.0, with neighbours refined by vector diffusion "
           "maps (RIRClass2D refine='vdm'; n = 10,000, CTF: 91.7 % vs 85.6 % within 10 "
           "degrees at SNR 1/8, 80.0 % vs 68.1 % at 1/16)",
           classifier=dict(n_nbor=50, rerank=True, refine="vdm"),
           selector=DistanceWithRepulsionClassSelector,
           averager=BFSRAverager2D,
           averager_options=dict(radius="L//32", ctf_correction="wiener")),
    Preset("1.3.0", "classavg 1.3.0: as 1.2.0, with the particles centred first on a "
           "rotationally symmetric reference (sources.CenteredSource; EMD-11007, n = 10,000, "
           "picking offsets <= 3 px, SNR 1/8: 85.7 % vs 54.0 % within 10 degrees)",
           classifier=dict(n_nbor=50, rerank=True, refine="vdm"),
           selector=DistanceWithRepulsionClassSelector,
           averager=BFSRAverager2D,
           averager_options=dict(radius="L//32", ctf_correction="wiener"),
           center={}),
]
# 1.4.0 is 1.3.0 with the junk rejection: derived, so the two cannot drift apart.
_PRESET_LIST.append(_PRESET_LIST[-1].replace(
    name="1.4.0",
    description="classavg 1.4.0: as 1.3.0, with automatic junk rejection (each particle "
                "scored against its class model: classavg.selection.junk; rejected classes "
                "ranked last, selected_particles.star / rejected_particles.star)",
    junk={"max_missing": None}))
# 1.5.0 adds the missing-density test of broken and partial particles.
_PRESET_LIST.append(_PRESET_LIST[-1].replace(
    name="1.5.0",
    description="classavg 1.5.0: as 1.4.0, with the missing-density test of the junk "
                "rejection (broken and partial particles: classavg.selection.junk; "
                "EMD-11007, 30 % junk, SNR 1/8: broken particles rejected 37 % -> 58 %)",
    junk={}))

#: All presets by name, oldest first; the last one is the default.
PRESETS = {p.name: p for p in _PRESET_LIST}


def list_presets():
    """Presets oldest first (the last is the default)."""
    return list(_PRESET_LIST)


def latest_preset():
    """The default (newest) preset."""
    return _PRESET_LIST[-1]


def get_preset(version=None):
    """The preset named ``version`` (None: the newest; a :class:`Preset` is returned as is)."""
    if version is None:
        return latest_preset()
    if isinstance(version, Preset):
        return version
    if version not in PRESETS:
        raise ValueError(f"version must be one of {', '.join(repr(v) for v in PRESETS)}, "
                         f"got {version!r}")
    return PRESETS[version]


def resolve_radius(value, L):
    """Turn ``"L//16"``-style radius strings into pixels for image size ``L`` (at least 1)."""
    if isinstance(value, str):
        if not value.startswith("L//"):
            raise ValueError(f"radius must be an int or 'L//N', got {value!r}")
        return max(1, L // int(value[3:]))
    return value
