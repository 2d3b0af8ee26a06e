"""Every kind of bad input gives a clear error naming the file, the row or field, and what
was expected."""

import numpy as np
import pytest

from classavg.io import (DataError, DataFileNotFoundError, RelionSource, StackError,
                         StarFileError)


@pytest.fixture
def make(tmp_path, helpers):
    """make(rows, stacks={name: array}, labels=["rlnImageName"]) -> STAR path in tmp_path."""
    def _make(rows, stacks=None, labels=("rlnImageName",), optics=None):
        for name, data in (stacks or {}).items():
            helpers.write_mrcs(tmp_path / name, data)
        blocks = ([optics] if optics else []) + [("particles", list(labels), list(rows))]
        star = tmp_path / "bad.star"
        star.write_text(helpers.star_text(blocks))
        return star
    return _make


def _zeros(n, ny=8, nx=8, dtype=np.float32):
    return np.zeros((n, ny, nx), dtype=dtype)


def test_error_hierarchy():
    assert issubclass(StarFileError, DataError) and issubclass(StackError, DataError)
    assert issubclass(DataError, ValueError)
    assert issubclass(DataFileNotFoundError, FileNotFoundError)
    assert issubclass(DataFileNotFoundError, DataError)


def test_missing_star_file(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="nothere.star.*does not exist"):
        RelionSource(tmp_path / "nothere.star")


def test_empty_star_file(tmp_path):
    (tmp_path / "empty.star").write_text("")
    with pytest.raises(StarFileError) as exc:
        RelionSource(tmp_path / "empty.star")
    assert "empty.star" in str(exc.value) and "empty" in str(exc.value)
    assert "_rlnImageName" in str(exc.value)


def test_only_optics_block(tmp_path, helpers):
    star = tmp_path / "optics_only.star"
    star.write_text(helpers.star_text([("optics", ["rlnOpticsGroup", "rlnVoltage"], ["1 300"])]))
    with pytest.raises(StarFileError, match="optics_only.star.*no particle block"):
        RelionSource(star)


def test_no_image_name_column(make):
    star = make(["1000 1", "2000 1"], labels=("rlnDefocusU", "rlnOpticsGroup"))
    with pytest.raises(StarFileError) as exc:
        RelionSource(star)
    msg = str(exc.value)
    assert "bad.star" in msg and "data_particles" in msg and "no _rlnImageName" in msg
    assert "_rlnDefocusU" in msg  # lists what was found


def test_missing_stack_lists_paths_tried(make, tmp_path):
    star = make(["1@ok.mrcs", "1@Particles/gone.mrcs"], stacks={"ok.mrcs": _zeros(1)})
    with pytest.raises(DataFileNotFoundError) as exc:
        RelionSource(star, data_dir=tmp_path)
    msg = str(exc.value)
    assert "bad.star" in msg and "row 2" in msg and "'1@Particles/gone.mrcs'" in msg
    assert "Particles/gone.mrcs" in msg and "tried" in msg
    assert str(tmp_path / "gone.mrcs") in msg  # the bare name in data_dir was tried too


def test_unreadable_stack(make, tmp_path):
    (tmp_path / "junk.mrcs").write_bytes(b"this is not an MRC file" * 100)
    star = make(["1@junk.mrcs"])
    with pytest.raises(StackError) as exc:
        RelionSource(star)
    assert "junk.mrcs" in str(exc.value) and "row 1" in str(exc.value)


def test_truncated_stack(make, tmp_path):
    star = make(["1@t.mrcs"], stacks={"t.mrcs": _zeros(4)})
    data = (tmp_path / "t.mrcs").read_bytes()
    (tmp_path / "t.mrcs").write_bytes(data[:-100])
    with pytest.raises(StackError, match="t.mrcs.*truncated.*expected at least"):
        RelionSource(star)


def test_unsupported_mode(make, tmp_path):
    star = make(["1@c.mrcs"], stacks={"c.mrcs": _zeros(2, dtype=np.complex64)})
    with pytest.raises(StackError, match="c.mrcs.*mode 4.*expected one of"):
        RelionSource(star)


def test_index_beyond_stack(make):
    star = make(["1@s.mrcs", "5@s.mrcs", "7@s.mrcs"], stacks={"s.mrcs": _zeros(5)})
    with pytest.raises(StackError) as exc:
        RelionSource(star)
    msg = str(exc.value)
    assert "bad.star" in msg and "row 3" in msg and "'7@s.mrcs'" in msg
    assert "s.mrcs" in msg and "holds 5 image" in msg and "1 <= N <= 5" in msg


def test_index_beyond_stack_found_lazily_without_validation(make):
    star = make(["1@a.mrcs", "9@b.mrcs"], stacks={"a.mrcs": _zeros(1), "b.mrcs": _zeros(2)})
    src = RelionSource(star, validate=False)
    assert src.images[0].shape == (1, 8, 8)
    with pytest.raises(StackError, match="row 2.*9@b.mrcs"):
        src.images[1]


@pytest.mark.parametrize("name", ["0@s.mrcs", "x@s.mrcs"])
def test_bad_image_number(make, name):
    star = make(["1@s.mrcs", name], stacks={"s.mrcs": _zeros(2)})
    with pytest.raises(StarFileError, match=f"bad.star.*row 2.*{name}"):
        RelionSource(star)


def test_mixed_box_sizes(make):
    star = make(["1@a.mrcs", "1@b.mrcs"], stacks={"a.mrcs": _zeros(2), "b.mrcs": _zeros(2, 12, 12)})
    with pytest.raises(StackError) as exc:
        RelionSource(star)
    msg = str(exc.value)
    assert "b.mrcs" in msg and "a.mrcs" in msg and "12x12" in msg and "8x8" in msg
    assert "row 2" in msg and "one box size" in msg


def test_non_square_images(make):
    star = make(["1@r.mrcs"], stacks={"r.mrcs": _zeros(2, 8, 10)})
    with pytest.raises(StackError, match="r.mrcs.*row 1.*non-square 8x10"):
        RelionSource(star)


def test_bare_name_of_multi_image_stack(make):
    star = make(["s.mrcs"], stacks={"s.mrcs": _zeros(3)})
    with pytest.raises(StackError, match="row 1.*s.mrcs.*without an image number.*3 images"):
        RelionSource(star)


def test_nan_pixels_reported_when_read(make):
    data = np.ones((4, 8, 8), np.float32)
    data[2, 3, 4] = np.nan
    data[3, 0, 0] = np.inf
    star = make(["1@s.mrcs", "2@s.mrcs", "3@s.mrcs", "4@s.mrcs"], stacks={"s.mrcs": data})
    src = RelionSource(star)  # pixels are not scanned at construction
    np.testing.assert_array_equal(src.images[:2], 1.0)
    with pytest.raises(StackError) as exc:
        src.images[1:4]
    msg = str(exc.value)
    assert "s.mrcs" in msg and "image 3" in msg and "row 3" in msg and "'3@s.mrcs'" in msg
    assert "NaN or Inf" in msg
    with pytest.raises(StackError, match="image 4.*row 4"):
        src.images[3]


def test_undefined_optics_group(make):
    optics = ("optics", ["rlnOpticsGroup", "rlnVoltage", "rlnImagePixelSize"], ["1 300 1.0"])
    star = make(["1@s.mrcs 1", "2@s.mrcs 3"], stacks={"s.mrcs": _zeros(2)},
                labels=("rlnImageName", "rlnOpticsGroup"), optics=optics)
    with pytest.raises(StarFileError, match="row 2.*_rlnOpticsGroup 3.*expected one of"):
        RelionSource(star)


def test_image_size_disagrees_with_stack(make):
    optics = ("optics", ["rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize"], ["1 1.0 64"])
    star = make(["1@s.mrcs 1"], stacks={"s.mrcs": _zeros(1)},
                labels=("rlnImageName", "rlnOpticsGroup"), optics=optics)
    with pytest.raises(StackError, match="row 1.*rlnImageSize 64.*8x8"):
        RelionSource(star)


def test_bad_pixel_size(make):
    star = make(["1@s.mrcs 0"], stacks={"s.mrcs": _zeros(1)},
                labels=("rlnImageName", "rlnPixelSize"))
    with pytest.raises(StarFileError, match="row 1.*pixel size.*positive"):
        RelionSource(star)


def test_data_dir_must_exist(make, tmp_path):
    star = make(["1@s.mrcs"], stacks={"s.mrcs": _zeros(1)})
    with pytest.raises(DataFileNotFoundError, match="data_dir.*nowhere"):
        RelionSource(star, data_dir=tmp_path / "nowhere")


def test_unparsable_star(tmp_path):
    star = tmp_path / "garbage.star"
    star.write_text("data_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n1@a.mrcs 1 2 3 4\n")
    with pytest.raises(DataError, match="garbage.star"):
        RelionSource(star)


# -- issue 18: labels, junk, repeated names, CTF values, image numbers, ambiguous stacks ----
def test_duplicated_label_is_refused(make):
    star = make(["1@s.mrcs 10 20", "2@s.mrcs 11 21"], stacks={"s.mrcs": _zeros(2)},
                labels=["rlnImageName", "rlnAngleRot", "rlnAngleRot"])
    with pytest.raises(StarFileError, match="bad.star.*_rlnAngleRot more than once"):
        RelionSource(star)


def test_duplicated_image_name_label_is_refused(make):
    star = make(["1@s.mrcs 1@s.mrcs"], stacks={"s.mrcs": _zeros(1)},
                labels=["rlnImageName", "rlnImageName"])
    with pytest.raises(StarFileError, match="_rlnImageName more than once"):
        RelionSource(star)


def test_repeated_image_names_are_refused(make):
    star = make(["1@s.mrcs", "2@s.mrcs", "1@s.mrcs"], stacks={"s.mrcs": _zeros(2)})
    with pytest.raises(StarFileError, match=r"bad.star.*_rlnImageName repeats '1@s.mrcs' on "
                                            r"rows 1, 3"):
        RelionSource(star)


def test_binary_junk_is_not_a_text_star_file(tmp_path):
    star = tmp_path / "junk.star"
    star.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(StarFileError, match="junk.star.*not a text STAR file"):
        RelionSource(star)


@pytest.mark.parametrize("value", ["nan", "inf", "abc"])
def test_non_finite_ctf_value_names_row_and_label(make, value):
    labels = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
              "rlnSphericalAberration", "rlnAmplitudeContrast"]
    star = make(["1@s.mrcs 10000 10000 0 300 2.7 0.1",
                 f"2@s.mrcs {value} 10000 0 300 2.7 0.1"], stacks={"s.mrcs": _zeros(2)},
                labels=labels)
    with pytest.raises(StarFileError, match="bad.star.*row 2.*_rlnDefocusU.*finite"):
        RelionSource(star)


@pytest.mark.parametrize("name", ["1e20@s.mrcs", "99999999999999999999@s.mrcs", "1e2@s.mrcs"])
def test_absurd_image_numbers_name_row_label_and_form(make, name):
    star = make(["1@s.mrcs", name], stacks={"s.mrcs": _zeros(1)})
    with pytest.raises(StarFileError, match=r"bad.star.*row 2.*_rlnImageName.*N@stack.mrcs"):
        RelionSource(star)


def test_stack_found_twice_warns_naming_both(make, tmp_path, monkeypatch, caplog, helpers):
    import logging

    star = make(["1@s.mrcs"], stacks={"s.mrcs": _zeros(1)})
    cwd = tmp_path / "elsewhere"
    helpers.write_mrcs(cwd / "s.mrcs", np.ones((1, 8, 8), np.float32))
    monkeypatch.chdir(cwd)
    with caplog.at_level(logging.WARNING, logger="classavg.io._paths"):
        src = RelionSource(star)
    assert src.images[0].max() == 1.0                  # "as given" (the working folder) wins
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "more than one file" in msg and str(cwd / "s.mrcs") in msg
    assert str(tmp_path / "s.mrcs") in msg
