"""Fixtures for the io tests: small RELION projects written "by another program" (by hand)."""

from __future__ import annotations

import types
import warnings

import mrcfile
import numpy as np
import pytest

from classavg.io import clear_stack_cache

L = 16


def write_mrcs(path, data, *, voxel_size=1.0, stack=True):
    """Write ``data`` (n, L, L) or (L, L) to an MRC file in its own dtype."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about the NaN pixels some tests want
        with mrcfile.new(path, data, overwrite=True) as mrc:
            if stack and data.ndim == 3:
                mrc.set_image_stack()
            mrc.voxel_size = voxel_size
    return path


def star_text(blocks):
    """STAR text from ``[(block_name, [labels], [rows as strings]), ...]``, RELION style."""
    out = []
    for name, labels, rows in blocks:
        out += ["", "# version 30001", "", f"data_{name}", "", "loop_"]
        out += [f"_{lab} #{i + 1}" for i, lab in enumerate(labels)]
        out += rows
        out.append("")
    return "\n".join(out) + "\n"


@pytest.fixture
def helpers():
    """The helpers of this module for tests: ``write_mrcs``, ``star_text`` and ``L``."""
    return types.SimpleNamespace(write_mrcs=write_mrcs, star_text=star_text, L=L)


@pytest.fixture(autouse=True)
def _fresh_stack_cache():
    """Tests rewrite files in tmp_path: start and end every test with no cached handles."""
    clear_stack_cache()
    yield
    clear_stack_cache()


@pytest.fixture
def relion31(tmp_path):
    """A RELION 3.1 project: stacks in project/Particles, STAR in project/Select/job005.

    ``mic1.mrcs`` holds 5 float32 images, ``mic2.mrcs`` 4 int16 images; the STAR file lists 6
    particles out of order over two optics groups (300 kV and 200 kV).
    """
    rng = np.random.default_rng(0)
    project = tmp_path / "project"
    mic1 = rng.normal(size=(5, L, L)).astype(np.float32)
    mic2 = rng.integers(-300, 300, size=(4, L, L)).astype(np.int16)
    write_mrcs(project / "Particles" / "mic1.mrcs", mic1, voxel_size=1.5)
    write_mrcs(project / "Particles" / "mic2.mrcs", mic2, voxel_size=1.5)
    refs = [("mic1", 3), ("mic2", 1), ("mic1", 1), ("mic2", 4), ("mic1", 5), ("mic2", 2)]
    images = np.stack([(mic1 if s == "mic1" else mic2)[k - 1] for s, k in refs]).astype(np.float32)
    groups = [1, 2, 1, 2, 1, 2]
    du = [10000.0, 12000.0, 15000.0, 9000.0, 20000.0, 11000.0]
    dv = [9500.0, 11800.0, 14000.0, 8800.0, 19000.0, 10500.0]
    ang = [10.0, -20.0, 45.0, 80.0, -85.0, 0.0]
    ox = [1.5, -3.0, 0.0, 4.5, -1.5, 3.0]
    oy = [0.0, 1.5, -4.5, 3.0, 6.0, -3.0]
    optics = ("optics",
              ["rlnOpticsGroupName", "rlnOpticsGroup", "rlnMicrographOriginalPixelSize",
               "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
               "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality"],
              [f"opticsGroup1 1 0.75 300.0 2.7 0.1 1.5 {L} 2",
               f"opticsGroup2 2 0.75 200.0 2.0 0.07 1.5 {L} 2"])
    particles = ("particles",
                 ["rlnCoordinateX", "rlnCoordinateY", "rlnImageName", "rlnMicrographName",
                  "rlnOpticsGroup", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
                  "rlnPhaseShift", "rlnCtfBfactor", "rlnOriginXAngst", "rlnOriginYAngst",
                  "rlnClassNumber"],
                 [f"{100 + i}.0 {200 + i}.0 {k:06d}@Particles/{s}.mrcs "
                  f"MotionCorr/job002/{s}.mrc {groups[i]} {du[i]} {dv[i]} {ang[i]} 0.0 0.0 "
                  f"{ox[i]} {oy[i]} {i % 3 + 1}"
                  for i, (s, k) in enumerate(refs)])
    star = project / "Select" / "job005" / "particles.star"
    star.parent.mkdir(parents=True)
    star.write_text(star_text([optics, particles]))
    return types.SimpleNamespace(
        project=project, star=star, images=images, groups=np.array(groups),
        defocus_u=np.array(du), defocus_v=np.array(dv), angle=np.array(ang),
        origin=np.stack([ox, oy], axis=1), pixel_size=1.5, L=L, refs=refs)


@pytest.fixture
def relion30(tmp_path):
    """A RELION 3.0 particle file: one data block, origins in pixels, pixel size from
    rlnDetectorPixelSize (um) and rlnMagnification; stacks beside the project root."""
    rng = np.random.default_rng(1)
    project = tmp_path / "proj30"
    stack = rng.normal(size=(3, L, L)).astype(np.float32)
    write_mrcs(project / "Extract" / "job007" / "Micrographs" / "m1.mrcs", stack)
    labels = ["rlnImageName", "rlnMicrographName", "rlnDefocusU", "rlnDefocusV",
              "rlnDefocusAngle", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
              "rlnMagnification", "rlnDetectorPixelSize", "rlnOriginX", "rlnOriginY"]
    rows = ["000002@Extract/job007/Micrographs/m1.mrcs m1.mrc 10000 9000 30 300 2.7 0.1 "
            "50000 10.0 1.0 -2.0",
            "000001@Extract/job007/Micrographs/m1.mrcs m1.mrc 11000 10000 40 300 2.7 0.1 "
            "50000 10.0 -3.0 0.5",
            "000003@Extract/job007/Micrographs/m1.mrcs m1.mrc 12000 11000 50 300 2.7 0.1 "
            "50000 10.0 0.0 0.0"]
    star = project / "Class2D" / "job010" / "run_it025_data.star"
    star.parent.mkdir(parents=True)
    text = "\ndata_\n\nloop_\n" + "\n".join(f"_{lab} #{i + 1}" for i, lab in enumerate(labels))
    star.write_text(text + "\n" + "\n".join(rows) + "\n")
    return types.SimpleNamespace(project=project, star=star, images=stack[[1, 0, 2]],
                                 origin=np.array([[1.0, -2.0], [-3.0, 0.5], [0.0, 0.0]]),
                                 pixel_size=2.0, L=L)
