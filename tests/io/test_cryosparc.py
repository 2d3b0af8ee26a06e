"""cryoSPARC ``.cs`` particle files: the same images and CTF as the RELION STAR file of the same
particles, and one-line errors naming the file, the field and what was expected."""

from __future__ import annotations

import pickle

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

from classavg.io import (CryosparcFileError, CryosparcSource, DataError, DataFileNotFoundError,
                         RelionSource, StackError, load_particles, read_cs)
from classavg.sources.ctf import evaluate_ctf

F32 = np.finfo(np.float32).eps


@pytest.fixture
def cs_project(relion31, cs_writer):
    """The RELION 3.1 project of ``relion31`` with its particles also as J7/particles.cs."""
    src = RelionSource(relion31.star, data_dir=relion31.project)
    cs = cs_writer(src, relion31.project / "J7" / "particles.cs", project_dir=relion31.project)
    return relion31, src, cs


def _save(path, arr):
    with open(path, "wb") as fh:
        np.save(fh, arr)
    return path


@pytest.mark.parametrize("float_dtype", ["<f4", "<f8"])
def test_same_images_and_ctf_as_star(relion31, cs_writer, float_dtype):
    star = RelionSource(relion31.star, data_dir=relion31.project)
    cs_path = cs_writer(star, relion31.project / "J7" / "particles.cs",
                        project_dir=relion31.project, float_dtype=float_dtype)
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    assert (cs.n, cs.L, cs.pixel_size) == (star.n, star.L, star.pixel_size)
    np.testing.assert_array_equal(cs.images[:], star.images[:])
    np.testing.assert_array_equal(cs.images[[4, 0, 3]], star.images[[4, 0, 3]])
    # float32 fields round each value once (relative eps/2); degrees <- radians adds one more
    eps = F32 if float_dtype == "<f4" else np.finfo(np.float64).eps
    a, b = star.ctf_params(), cs.ctf_params()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=2 * eps, atol=0, err_msg=key)
    # the CTF evaluated from either file agrees: a defocus error of 2 eps * 2e4 A changes
    # chi by at most 2 pi lambda dz k^2 ~ 1e-3 rad at Nyquist of 1.5 A pixels
    for i in range(star.n):
        pa = {k: v[i] for k, v in a.items()}
        pb = {k: v[i] for k, v in b.items()}
        ca = evaluate_ctf(star.L, star.pixel_size, **pa)
        cb = evaluate_ctf(cs.L, cs.pixel_size, **pb)
        np.testing.assert_allclose(cb, ca, atol=1e-5 if float_dtype == "<f4" else 1e-12)
    # optics: one group per exposure group, with the voltages of the STAR file
    assert cs.optics["rlnVoltage"].tolist() == star.optics["rlnVoltage"].tolist()
    np.testing.assert_array_equal(cs.metadata["rlnOpticsGroup"], relion31.groups)
    assert cs.metadata["rlnImageName"].tolist() == star.metadata["rlnImageName"].tolist()


def test_angle_convention_follows_relion(cs_project):
    """rlnDefocusU = df1, rlnDefocusV = df2, rlnDefocusAngle = degrees(df_angle_rad)."""
    relion31, _, cs_path = cs_project
    arr = read_cs(cs_path)
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    md = cs.metadata
    np.testing.assert_allclose(md["rlnDefocusU"], arr["ctf/df1_A"], rtol=0)
    np.testing.assert_allclose(md["rlnDefocusV"], arr["ctf/df2_A"], rtol=0)
    np.testing.assert_allclose(md["rlnDefocusAngle"],
                               np.degrees(arr["ctf/df_angle_rad"].astype(np.float64)), rtol=0)
    np.testing.assert_allclose(md["rlnDefocusAngle"], relion31.angle, rtol=2 * F32)


@pytest.mark.parametrize("prefix", [">", ""])
def test_paths_relative_to_the_project(relion31, cs_writer, tmp_path, monkeypatch, prefix):
    src = RelionSource(relion31.star, data_dir=relion31.project)
    cs_path = cs_writer(src, tmp_path / "elsewhere" / "particles.cs",
                        project_dir=relion31.project, prefix=prefix)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataFileNotFoundError, match=r"blob/path 'Particles/mic1\.mrcs'.*"
                                                    r"--project-dir"):
        CryosparcSource(cs_path)
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    assert cs.stack_names == ["Particles/mic1.mrcs", "Particles/mic2.mrcs"]
    assert [p.name for p in cs.stack_paths] == ["mic1.mrcs", "mic2.mrcs"]
    assert cs.data_dir == relion31.project.absolute()
    np.testing.assert_array_equal(cs.images[:], relion31.images)


def test_pickles(cs_project):
    relion31, _, cs_path = cs_project
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    back = pickle.loads(pickle.dumps(cs))
    np.testing.assert_array_equal(back.images[:], relion31.images)


@pytest.mark.parametrize("field", ["blob/path", "blob/idx", "blob/psize_A"])
def test_missing_required_field(cs_project, field):
    relion31, _, cs_path = cs_project
    _save(cs_path, rfn.drop_fields(read_cs(cs_path), field, usemask=False))
    with pytest.raises(CryosparcFileError,
                       match=rf"cryoSPARC file '.*particles\.cs' has no field '{field}'; "
                             "expected "):
        CryosparcSource(cs_path, project_dir=relion31.project)


def test_partial_ctf_refused_and_no_ctf_accepted(cs_project):
    relion31, _, cs_path = cs_project
    arr = read_cs(cs_path)
    _save(cs_path, rfn.drop_fields(arr, "ctf/df2_A", usemask=False))
    with pytest.raises(CryosparcFileError, match=r"no field 'ctf/df2_A'; expected all of"):
        CryosparcSource(cs_path, project_dir=relion31.project)
    ctf = [n for n in arr.dtype.names if n.startswith("ctf/")]
    _save(cs_path, rfn.drop_fields(arr, ctf, usemask=False))
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    assert not cs.has_ctf


@pytest.mark.parametrize("field, value, expected", [
    ("ctf/df1_A", np.nan, r"row 3 \(blob/path 'Particles/mic1\.mrcs', blob/idx 0\), field "
                          r"'ctf/df1_A' = nan; expected a finite number"),
    ("blob/psize_A", 0.0, r"row 3, field 'blob/psize_A' = 0; expected a positive pixel size"),
    ("blob/idx", 9, r"row 3 \(blob/path 'Particles/mic1\.mrcs', blob/idx 9\) asks for image "
                    r"10 .* holds 5 image\(s\)"),
])
def test_bad_values_name_row_and_field(cs_project, field, value, expected):
    relion31, _, cs_path = cs_project
    arr = read_cs(cs_path)
    arr[field][2] = value
    _save(cs_path, arr)
    with pytest.raises(DataError, match=expected):
        CryosparcSource(cs_path, project_dir=relion31.project)


def test_shape_and_duplicates(cs_project):
    relion31, _, cs_path = cs_project
    arr = read_cs(cs_path)
    bad = arr.copy()
    bad["blob/shape"][1] = (32, 32)
    _save(cs_path, bad)
    with pytest.raises(CryosparcFileError, match=r"row 2 .*'blob/shape' = \[32, 32\] but stack"):
        CryosparcSource(cs_path, project_dir=relion31.project)
    bad = arr.copy()
    bad[4] = bad[0]
    _save(cs_path, bad)
    with pytest.raises(CryosparcFileError, match=r"rows 1 and 5 name the same image"):
        CryosparcSource(cs_path, project_dir=relion31.project)


def test_not_a_numpy_file(tmp_path, relion31):
    path = tmp_path / "particles.cs"
    path.write_text("data_particles\nloop_\n_rlnImageName\n")
    with pytest.raises(CryosparcFileError, match=r"cryoSPARC file '.*particles\.cs' is not a "
                                                 r"numpy \.npy structured array"):
        read_cs(path)
    _save(path, np.array([{"blob/path": "x"}], dtype=object))     # would need unpickling
    with pytest.raises(CryosparcFileError, match="cannot be read without unpickling"):
        read_cs(path)
    _save(path, np.zeros((3, 2)))
    with pytest.raises(CryosparcFileError, match="expected a 1-D structured array"):
        read_cs(path)
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        read_cs(tmp_path / "missing.cs")


def test_nan_pixels_named(cs_project, helpers):
    relion31, _, cs_path = cs_project
    data = np.zeros((5, helpers.L, helpers.L), np.float32)
    data[2, 3, 3] = np.nan
    helpers.write_mrcs(relion31.project / "Particles" / "mic1.mrcs", data, voxel_size=1.5)
    cs = CryosparcSource(cs_path, project_dir=relion31.project)
    with pytest.raises(StackError, match=r"image 3 \(row 1 \(blob/path .*blob/idx 2\) of "
                                         r"cryoSPARC file .*NaN or Inf"):
        cs.images[:]


def test_load_particles_dispatches(cs_project):
    relion31, star, cs_path = cs_project
    assert isinstance(load_particles(relion31.star, data_dir=relion31.project), RelionSource)
    cs = load_particles(cs_path, cs_project_dir=relion31.project, angpix=1.5)
    assert isinstance(cs, CryosparcSource)
    with pytest.raises(ValueError, match=r"angpix \(--angpix\) is 2 A but cryoSPARC particle "
                                         r"file .* gives pixel size 1\.5 A"):
        load_particles(cs_path, cs_project_dir=relion31.project, angpix=2.0)
    with pytest.raises(ValueError, match=r"data_dir \(--data-dir\) .* give cs_project_dir"):
        load_particles(cs_path, data_dir=relion31.project)
    with pytest.raises(ValueError, match=r"cs_project_dir \(--project-dir\) .* not one"):
        load_particles(relion31.star, cs_project_dir=relion31.project)


def test_location_fields_become_micrograph_and_coordinates(cs_project):
    relion31, _, cs_path = cs_project
    arr = read_cs(cs_path)
    extra = [("location/micrograph_path", "S40"), ("location/micrograph_shape", "<u4", (2,)),
             ("location/center_x_frac", "<f4"), ("location/center_y_frac", "<f4")]
    new = np.zeros(arr.shape, dtype=arr.dtype.descr + extra)
    for name in arr.dtype.names:
        new[name] = arr[name]
    new["location/micrograph_path"] = [f">J2/motioncorrected/mic{i % 2}.mrc".encode()
                                       for i in range(arr.size)]
    new["location/micrograph_shape"] = (4000, 3000)           # rows (y), columns (x)
    new["location/center_x_frac"] = 0.25
    new["location/center_y_frac"] = 0.5
    _save(cs_path, new)
    md = CryosparcSource(cs_path, project_dir=relion31.project).metadata
    assert md["rlnMicrographName"].tolist()[:2] == ["J2/motioncorrected/mic0.mrc",
                                                     "J2/motioncorrected/mic1.mrc"]
    np.testing.assert_allclose(md["rlnCoordinateX"], 750.0)
    np.testing.assert_allclose(md["rlnCoordinateY"], 2000.0)
    assert md["csUid"].iloc[0] == arr["uid"][0]
