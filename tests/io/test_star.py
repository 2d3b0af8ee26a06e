"""STAR reading: RELION 3.1 (optics + particles) and 3.0 (single block), image names."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classavg.io import StarFileError, parse_image_names, read_particle_star, read_star
from classavg.io.star import row_pixel_sizes


def test_read_star_blocks(relion31):
    blocks = read_star(relion31.star)
    assert set(blocks) == {"optics", "particles"}
    assert len(blocks["optics"]) == 2 and len(blocks["particles"]) == 6
    assert "rlnImageName" in blocks["particles"].columns  # no leading underscore


def test_relion31_optics_folded_into_rows(relion31):
    t = read_particle_star(relion31.star)
    assert t.version == "3.1" and t.block == "particles"
    p = t.particles
    assert len(p) == 6
    # rows keep file order and get their own group's optics values
    np.testing.assert_array_equal(p["rlnOpticsGroup"], relion31.groups)
    np.testing.assert_allclose(p["rlnVoltage"], np.where(relion31.groups == 1, 300.0, 200.0))
    np.testing.assert_allclose(p["rlnSphericalAberration"],
                               np.where(relion31.groups == 1, 2.7, 2.0))
    assert list(p["rlnOpticsGroupName"]) == [f"opticsGroup{g}" for g in relion31.groups]
    np.testing.assert_allclose(p["rlnImagePixelSize"], 1.5)
    np.testing.assert_allclose(p["rlnDefocusU"], relion31.defocus_u)
    # the optics table is kept as it was
    assert list(t.optics["rlnOpticsGroup"]) == [1, 2]
    assert t.optics["rlnMicrographOriginalPixelSize"].tolist() == [0.75, 0.75]


def test_relion30_single_block_synthesises_optics(relion30):
    t = read_particle_star(relion30.star)
    assert t.version == "3.0" and t.block == ""
    p = t.particles
    np.testing.assert_allclose(p["rlnImagePixelSize"], 2.0)  # 10 um * 1e4 / 50000
    assert (p["rlnOpticsGroup"] == 1).all()
    assert len(t.optics) == 1
    assert t.optics["rlnVoltage"].iloc[0] == 300
    np.testing.assert_allclose(p["rlnOriginX"], relion30.origin[:, 0])  # untouched here


def test_relion30_distinct_optics_values_make_groups(tmp_path):
    star = tmp_path / "p.star"
    star.write_text("data_\nloop_\n_rlnImageName\n_rlnVoltage\n_rlnPixelSize\n"
                    "1@a.mrcs 300 1.0\n2@a.mrcs 200 1.0\n3@a.mrcs 300 1.0\n4@a.mrcs 300 1.2\n")
    t = read_particle_star(star)
    assert t.particles["rlnOpticsGroup"].tolist() == [1, 2, 1, 3]
    assert t.optics["rlnVoltage"].tolist() == [300, 200, 300]
    np.testing.assert_allclose(t.optics["rlnImagePixelSize"], [1.0, 1.0, 1.2])


def test_single_row_block_and_missing_optics_group_column(tmp_path):
    star = tmp_path / "one.star"
    star.write_text("data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n\n"
                    "data_particles\n\n_rlnImageName 1@a.mrcs\n_rlnDefocusU 1000\n")
    t = read_particle_star(star)
    assert len(t.particles) == 1
    assert t.particles["rlnVoltage"].iloc[0] == 300  # single optics group used


def test_pixel_size_precedence():
    t = pd.DataFrame({"rlnImagePixelSize": [1.1], "rlnPixelSize": [2.2],
                      "rlnDetectorPixelSize": [5.0], "rlnMagnification": [10000.0]})
    assert row_pixel_sizes(t)[0] == 1.1
    assert row_pixel_sizes(t.drop(columns="rlnImagePixelSize"))[0] == 2.2
    assert row_pixel_sizes(t[["rlnDetectorPixelSize", "rlnMagnification"]])[0] == 5.0
    assert row_pixel_sizes(pd.DataFrame({"rlnVoltage": [300]})) is None


def test_parse_image_names():
    idx, stacks, bare = parse_image_names(
        ["000123@Particles/a.mrcs", "1@b.mrcs", "single.mrc", " 7@c d.mrcs "])
    assert idx.tolist() == [122, 0, 0, 6]
    assert stacks.tolist() == ["Particles/a.mrcs", "b.mrcs", "single.mrc", "c d.mrcs"]
    assert bare.tolist() == [False, False, True, False]


@pytest.mark.parametrize("name, what", [("abc@a.mrcs", "not an integer"),
                                        ("0@a.mrcs", "< 1"), ("-3@a.mrcs", "< 1"),
                                        ("1.5@a.mrcs", "not an integer"), ("4@", "no stack")])
def test_parse_image_names_errors_name_the_row(name, what):
    with pytest.raises(StarFileError) as exc:
        parse_image_names(["1@ok.mrcs", name], "x.star")
    msg = str(exc.value)
    assert "row 2" in msg and name in msg and what in msg and "x.star" in msg


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**7),
                          st.from_regex(r"[A-Za-z0-9_./-]{1,30}", fullmatch=True)),
                min_size=1, max_size=20))
def test_parse_image_names_inverts_relion_formatting(items):
    names = [f"{k:06d}@{p}" for k, p in items]
    idx, stacks, bare = parse_image_names(names)
    assert idx.tolist() == [k - 1 for k, _ in items]
    assert stacks.tolist() == [p for _, p in items]
    assert not bare.any()
