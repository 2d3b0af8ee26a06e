"""Bare MRC stacks as particle sources (``--angpix``) and the format dispatcher."""

from __future__ import annotations

import numpy as np
import pytest

from classavg.io import MrcStackSource, UnknownFormatError, load_particles
from classavg.io._errors import DataError, DataFileNotFoundError


@pytest.fixture
def stack(tmp_path, helpers):
    data = np.random.default_rng(3).normal(size=(7, helpers.L, helpers.L)).astype(np.float32)
    return helpers.write_mrcs(tmp_path / "stack.mrcs", data, voxel_size=2.5), data


@pytest.mark.parametrize("angpix, expected", [(None, 2.5), (3.0, 3.0)])
def test_stack_images_and_pixel_size(stack, angpix, expected):
    path, data = stack
    src = load_particles(path, angpix=angpix)
    assert isinstance(src, MrcStackSource)
    assert (src.n, src.L, src.pixel_size, src.has_ctf) == (7, data.shape[1], expected, False)
    np.testing.assert_array_equal(src.images[:], data)
    np.testing.assert_array_equal(src.images[[6, 1]], data[[6, 1]])
    assert src.metadata["rlnImageName"].iloc[2] == f"000003@{path}"
    assert src.optics["rlnImagePixelSize"].iloc[0] == expected


def test_single_image_mrc(tmp_path, helpers):
    img = np.arange(helpers.L ** 2, dtype=np.float32).reshape(helpers.L, helpers.L)
    path = helpers.write_mrcs(tmp_path / "one.mrc", img, stack=False)
    src = load_particles(path, angpix=1.0)
    assert src.n == 1
    np.testing.assert_array_equal(src.images[0][0], img)


def test_stack_without_pixel_size_needs_angpix(tmp_path, helpers):
    data = np.zeros((3, helpers.L, helpers.L), np.float32)
    path = helpers.write_mrcs(tmp_path / "nopix.mrcs", data, voxel_size=0.0)
    with pytest.raises(DataError, match=r"MRC stack '.*nopix\.mrcs' gives no pixel size .*"
                                        r"expected --angpix"):
        load_particles(path)
    assert load_particles(path, angpix=1.2).pixel_size == 1.2


def test_missing_stack(tmp_path):
    with pytest.raises(DataFileNotFoundError,
                       match=r"MRC stack '.*nothere\.mrcs' does not exist"):
        load_particles(tmp_path / "nothere.mrcs", angpix=1.0)


@pytest.mark.parametrize("name", ["particles.txt", "particles.npy", "particles", "data.h5"])
def test_unknown_format_names_file_and_formats(tmp_path, name):
    path = tmp_path / name
    path.write_text("x")
    with pytest.raises(UnknownFormatError) as info:
        load_particles(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for fmt in (".star", ".cs", ".mrcs", ".mrc"):
        assert fmt in msg


def test_stack_refuses_project_dirs(stack, tmp_path):
    path, _ = stack
    with pytest.raises(ValueError,
                       match=r"data_dir \(--data-dir\) .* give none \(an MRC stack names"):
        load_particles(path, data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cs_project_dir \(--project-dir\)"):
        load_particles(path, cs_project_dir=tmp_path)
