"""Class averaging: align the members of each class to its reference and stack them.

Averagers (``XAverager2D(src, *, basis=None, image_stacker=None, ...)``):

* :class:`BFRAverager2D` -- brute-force rotation (all angles at once by an FFT over the
  angular frequency of Fourier-Bessel coefficients), sub-step refinement.
* :class:`BFSRAverager2D` -- rotation and shifts in a disk (shifted references, batched FFT),
  sub-pixel refinement.
* :class:`ReddyChatterjiAverager2D`, :class:`BFSReddyChatterjiAverager2D` -- log-polar
  Fourier-magnitude registration (Reddy & Chatterji 1996), with brute-force shifts around it.
* :class:`FTKAverager2D` -- rotation and sub-pixel shifts with the factorization of the
  translation kernel (Rangan, Spivak, Andén, Barnett 2020).
* :class:`EMAverager2D` -- expectation-maximization over member rotations and shifts (soft
  assignments under a Gaussian noise model, as RELION's 2D classification within a class).

Image stackers: :class:`MeanImageStacker`, :class:`MedianImageStacker`,
:class:`SigmaRejectionImageStacker`, :class:`WinsorizedImageStacker` -- the mean acts on
Fourier-Bessel coefficients (identical to the pixel mean, cheaper), robust stackers on pixels
by default (``domain="pixels"``) or on coefficients (``domain="coefficients"``).

Member transforms: :class:`MemberTransformer` (expand / mirror / shift / rotate / synthesise,
the engine of every aligning averager), :func:`transform_members`, and the pixel helpers
:func:`mirror_images`, :func:`shift_images`, :func:`rotate_images`, :func:`transform_images`.

CTF-aware averages: every aligning averager takes ``ctf_correction="wiener"`` (Wiener-filtered
combination of the raw members with their aligned CTFs) or ``"phase_flip"``, with the raw images
from ``image_source`` (default: the parent of a phase-flipped source); see
:mod:`classavg.averaging.wiener`.

Alignment convention (``docs/conventions.md``): member j of class c is mirrored (if
``class_refl[c, j]``), shifted by ``shift`` (x, y pixels), then rotated counter-clockwise by
``rotation`` (radians) onto the reference ``class_indices[c, 0]``.
"""

from ._transform import (
    MemberTransformer,
    PolarTransformer,
    mirror_images,
    rotate_images,
    shift_images,
    transform_images,
    transform_members,
)
from .base import (
    AligningAverager2D,
    AlignmentResult,
    Averager2D,
    ClassBatch,
    CoefficientCache,
    check_class_table,
)
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

# -- CTF-aware averages (ctf_correction="wiener" | "phase_flip" on every aligning averager)
from .wiener import CTF_CORRECTIONS, member_ctfs, transformed_defocus_angles

# -- FTK / EM averagers ---------------------------------------------------------------------------
from .em import EMAverager2D
from .ftk import FTKAverager2D

__all__ = [
    "Averager2D",
    "AligningAverager2D",
    "AlignmentResult",
    "ClassBatch",
    "CoefficientCache",
    "check_class_table",
    "BFRAverager2D",
    "BFSRAverager2D",
    "ReddyChatterjiAverager2D",
    "BFSReddyChatterjiAverager2D",
    "FTKAverager2D",
    "EMAverager2D",
    "ImageStacker",
    "MeanImageStacker",
    "MedianImageStacker",
    "SigmaRejectionImageStacker",
    "WinsorizedImageStacker",
    "MemberTransformer",
    "PolarTransformer",
    "mirror_images",
    "shift_images",
    "rotate_images",
    "transform_images",
    "transform_members",
    "CTF_CORRECTIONS",
    "member_ctfs",
    "transformed_defocus_angles",
]
