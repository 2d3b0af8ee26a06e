"""Lengths in Angstrom, as RELION users give them, converted to the pixels the parts take.

:func:`angstrom_options` turns the particle (mask) diameter, the maximum shift and the
low-pass resolution into the pipeline's pixel-valued options, for the images the parts see
(after any Fourier downsampling, whose pixel size is ``pixel_size * L / downsample``).  Both
values of each option are returned for ``run.json``.
"""

from __future__ import annotations

import math

from .._errors import ParameterError
from .._validation import check_float, check_int

__all__ = ["angstrom_options"]


def angstrom_options(pixel_size, L, *, downsample=None, particle_diameter=None,
                     max_shift=None, max_shift_px=None, lowpass=None, preset=None):
    """Convert Angstrom options to pixel options of the classified images.

    Parameters
    ----------
    pixel_size : float
        Pixel size of the input images (A/px).
    L : int
        Box size of the input images (px).
    downsample : int, optional
        Box size after Fourier cropping (px); the working pixel size is
        ``pixel_size * L / downsample``.
    particle_diameter : float, optional
        Diameter of the circular mask (A), RELION's ``--particle_diameter``: the background
        used for normalisation lies outside it.  Default: the box (radius ``L // 2``).
    max_shift, max_shift_px : float, optional
        Largest translation searched by the averager, in A or in pixels of the working
        images (at most one of them).  Rounded to the nearest whole pixel (the averager's
        shift grid).  Default: the preset's (``L//32`` px).
    lowpass : float, optional
        Resolution (A) above which the classification ignores the images: the Fourier-Bessel
        band limit is ``2 * working_pixel_size / lowpass`` (1 = Nyquist).  Default: the
        preset's (band limit 0.5: 4 working pixels).
    preset : Preset, optional
        Needed with a maximum shift: its averager must search shifts (a ``radius`` option).

    Returns
    -------
    options : dict
        ``mask_radius`` (px, for :func:`~classavg.pipeline.prepare_source`),
        ``averager_options`` and ``classifier_options`` (dicts for
        :func:`~classavg.pipeline.run_classavg`), and ``record`` (both units of every option
        given, with the working pixel size, for ``run.json``).

    Raises
    ------
    ParameterError
        A value out of range (a mask larger than the box or smaller than a pixel, a shift
        larger than half the box, a low-pass beyond Nyquist), both shift units given, or a
        shift for a preset whose averager searches none.
    """
    pixel_size = check_float("pixel_size", pixel_size, min=0.0, min_inclusive=False)
    L = check_int("L", L, min=2)
    n = L if downsample is None else check_int("downsample", downsample, min=2)
    px = pixel_size * L / n
    rec = {"pixel_size_A": px}
    out = {"mask_radius": None, "averager_options": {}, "classifier_options": {},
           "record": rec}
    if particle_diameter is not None:
        d = check_float("particle_diameter", particle_diameter, min=0.0, min_inclusive=False)
        r = d / 2 / px
        if r < 1 or r >= math.hypot(n // 2, n // 2) - 1:
            raise ParameterError(
                f"particle_diameter (--particle-diameter) must be between {2 * px:g} A (2 px) "
                f"and the box diagonal ({2 * (math.hypot(n // 2, n // 2) - 1) * px:.4g} A at "
                f"{px:g} A/px), got {d:g} A")
        out["mask_radius"] = r
        rec.update(particle_diameter_A=d, mask_radius_px=r)
    if max_shift is not None and max_shift_px is not None:
        raise ParameterError("give the maximum shift once: max_shift (--max-shift, A) or "
                             "max_shift_px (--max-shift-px), not both")
    if max_shift is not None or max_shift_px is not None:
        if max_shift is not None:
            a = check_float("max_shift", max_shift, min=0.0)
            shift_px = a / px
        else:
            shift_px = check_float("max_shift_px", max_shift_px, min=0.0)
            a = shift_px * px
        radius = int(round(shift_px))
        if radius > n // 2:
            raise ParameterError(f"the maximum shift must be at most half the box ({n // 2} px "
                                 f"= {n // 2 * px:g} A), got {a:g} A ({shift_px:g} px)")
        if preset is not None and "radius" not in preset.averager_options:
            raise ParameterError(f"preset {preset.name}'s averager "
                                 f"{preset.averager.__name__} searches no shifts; the "
                                 "maximum shift (--max-shift) needs a preset with a shift "
                                 "search (see `classavg presets`)")
        out["averager_options"]["radius"] = radius
        rec.update(max_shift_A=a, max_shift_px=radius)
    if lowpass is not None:
        a = check_float("lowpass", lowpass, min=0.0, min_inclusive=False)
        band = 2 * px / a
        if band > 1:
            raise ParameterError(f"lowpass (--lowpass) must be at least the Nyquist "
                                 f"resolution, 2 x {px:g} A = {2 * px:g} A, got {a:g} A")
        out["classifier_options"]["bandlimit"] = band
        rec.update(lowpass_A=a, bandlimit=band, lowpass_px=a / px)
    return out
