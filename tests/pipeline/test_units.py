"""pipeline.units.angstrom_options: Angstrom -> pixels of the working images."""

import pytest

from classavg._errors import ParameterError
from classavg.pipeline import get_preset
from classavg.pipeline.units import angstrom_options


@pytest.mark.parametrize("pixel, L, down, px", [(1.0, 64, None, 1.0), (1.0, 64, 32, 2.0),
                                                (1.34, 200, 100, 2.68)])
def test_conversions_use_the_working_pixel_size(pixel, L, down, px):
    o = angstrom_options(pixel, L, downsample=down, particle_diameter=20 * px,
                         max_shift=3.4 * px, lowpass=8 * px, preset=get_preset(None))
    assert o["record"]["pixel_size_A"] == pytest.approx(px)
    assert o["mask_radius"] == pytest.approx(10)
    assert o["averager_options"] == {"radius": 3}                 # 3.4 px -> the 3 px grid
    assert o["classifier_options"]["bandlimit"] == pytest.approx(0.25)   # 2 px / 8 px
    assert o["record"]["max_shift_A"] == pytest.approx(3.4 * px)


def test_defaults_leave_the_preset_alone():
    o = angstrom_options(1.0, 64)
    assert o["mask_radius"] is None and o["averager_options"] == {}
    assert o["classifier_options"] == {} and o["record"] == {"pixel_size_A": 1.0}


def test_pixel_shift():
    o = angstrom_options(2.0, 64, max_shift_px=2.6)
    assert o["averager_options"] == {"radius": 3} and o["record"]["max_shift_A"] == 5.2


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_shift=2, max_shift_px=1), "not both"),
    (dict(max_shift=40), "half the box"),
    (dict(lowpass=1.5), "Nyquist"),
    (dict(particle_diameter=1.0), "particle_diameter"),
    (dict(particle_diameter=1000.0), "box diagonal"),
    (dict(max_shift=2, preset=get_preset("0.13.2")), "searches no shifts"),
])
def test_refusals(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        angstrom_options(1.0, 64, **kwargs)
