"""classavg: fast, accurate cryo-EM 2D class averaging.

The data flow (see the README): an :class:`ImageSource` of particles -> a ``Class2D``
classifier -> a ``ClassSelector`` -> an ``Averager2D`` -> a ``ClassAvgSource`` of class
averages and RELION-ready outputs.
"""

from ._progress import set_progress
from .sources import ArrayImageSource, ImageSource, evaluate_ctf

from ._version import __version__

__all__ = [
    "__version__",
    "set_progress",
    "ImageSource",
    "ArrayImageSource",
    "evaluate_ctf",
]
