"""Class averaging: align the members of each class to its reference and stack them.

Averagers (``XAverager2D(src, *, basis=None, image_stacker=None, ...)``):

* :class:`BFRAverager2D` -- brute-force rotation (all angles at once by an FFT over the
  angular frequency of Fourier-Bessel coefficients), sub-step refinement.
* :class:`BFSRAverager2D` -- rotation and shifts in a disk (shifted references, batched FFT),
  sub-pixel refinement.
* :class:`ReddyChatterjiAverager2D`, :class:`BFSReddyChatterjiAverager2D` -- log-polar
  Fourier-magnitude registration (Reddy & Chatterji 1996), with brute-force shifts around it.

Image stackers: :class:`MeanImageStacker`, :class:`MedianImageStacker`,
:class:`SigmaRejectionImageStacker`, :class:`WinsorizedImageStacker`.

Alignment convention (``docs/conventions.md``): member j of class c is mirrored (if
``class_refl[c, j]``), shifted by ``shift`` (x, y pixels), then rotated counter-clockwise by
``rotation`` (radians) onto the reference ``class_indices[c, 0]``.
"""

from ._transform import (
    PolarTransformer,
    mirror_images,
    rotate_images,
    shift_images,
    transform_images,
    transform_members,
)
from .base import AligningAverager2D, AlignmentResult, Averager2D, ClassBatch, check_class_table
from .bfr import BFRAverager2D
from .bfsr import BFSRAverager2D
from .reddy_chatterji import BFSReddyChatterjiAverager2D, ReddyChatterjiAverager2D
from .stackers import (
    ImageStacker,
    MeanImageStacker,
    MedianImageStacker,
    SigmaRejectionImageStacker,
    WinsorizedImageStacker,
)

# -- FTK / EM averagers (other module owners: add the imports below) ---------------------------
# from .ftk import FTKAverager2D
# from .em import EMAverager2D

__all__ = [
    "Averager2D",
    "AligningAverager2D",
    "AlignmentResult",
    "ClassBatch",
    "check_class_table",
    "BFRAverager2D",
    "BFSRAverager2D",
    "ReddyChatterjiAverager2D",
    "BFSReddyChatterjiAverager2D",
    # "FTKAverager2D",
    # "EMAverager2D",
    "ImageStacker",
    "MeanImageStacker",
    "MedianImageStacker",
    "SigmaRejectionImageStacker",
    "WinsorizedImageStacker",
    "PolarTransformer",
    "mirror_images",
    "shift_images",
    "rotate_images",
    "transform_images",
    "transform_members",
]
