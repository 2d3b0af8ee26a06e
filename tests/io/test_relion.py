"""RelionSource (reading RELION 3.1 / 3.0 data sets) and save_source (round trip)."""

import os
import pickle
import tracemalloc

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from classavg.io import RelionSource, dataset_summary, save_source
from classavg.io.star import read_star
from classavg.sources import ArrayImageSource, ImageSource


L = 16  # box size of the conftest data sets


def _check_relion31(src, ds):
    assert src.n == 6 and src.L == ds.L and src.pixel_size == ds.pixel_size
    assert src.star_version == "3.1"
    assert len(src.stack_names) == 2
    np.testing.assert_array_equal(src.images[:], ds.images)
    # random access in any order and with repeats
    idx = np.array([5, 0, 3, 3, 1])
    np.testing.assert_array_equal(src.images[idx], ds.images[idx])
    # metadata: RELION labels without underscore, optics folded; optics table kept
    md = src.metadata
    np.testing.assert_allclose(md["rlnVoltage"], np.where(ds.groups == 1, 300.0, 200.0))
    assert md["rlnImageName"].iloc[0] == "000003@Particles/mic1.mrcs"
    assert list(src.optics["rlnOpticsGroupName"]) == ["opticsGroup1", "opticsGroup2"]
    # CTF and offsets through the base class
    ctf = src.ctf_params([1, 2])
    np.testing.assert_allclose(ctf["defocus_u"], ds.defocus_u[[1, 2]])
    np.testing.assert_allclose(ctf["voltage"], [200.0, 300.0])
    np.testing.assert_allclose(ctf["amplitude_contrast"], [0.07, 0.1])
    np.testing.assert_allclose(src.offsets, -ds.origin / ds.pixel_size)


def test_relion31_found_via_data_dir(relion31):
    src = RelionSource(relion31.star, data_dir=relion31.project)
    assert isinstance(src, ImageSource)
    _check_relion31(src, relion31)
    assert all(p.parent == (relion31.project / "Particles").resolve() for p in src.stack_paths)


def test_relion31_found_via_cwd(relion31, monkeypatch):
    monkeypatch.chdir(relion31.project)
    src = RelionSource(os.path.relpath(relion31.star, relion31.project))
    monkeypatch.chdir(relion31.project.parent)  # paths were resolved at construction
    _check_relion31(src, relion31)


def test_relion31_found_by_bare_name_in_data_dir(relion31, tmp_path):
    # rlnImageName points to another machine's absolute path; the stacks sit in data_dir
    text = relion31.star.read_text().replace("@Particles/", "@/nonexistent/cluster/Particles/")
    star = tmp_path / "moved.star"
    star.write_text(text)
    src = RelionSource(star, data_dir=relion31.project / "Particles")
    np.testing.assert_array_equal(src.images[:], relion31.images)


def test_relion31_dtype_float64_and_lazy_validation(relion31):
    src = RelionSource(relion31.star, data_dir=relion31.project, dtype=np.float64,
                       validate=False)
    out = src.images[[1, 3]]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, relion31.images[[1, 3]])


def test_relion30_single_block(relion30):
    src = RelionSource(relion30.star, data_dir=relion30.project)
    assert src.star_version == "3.0"
    assert src.pixel_size == pytest.approx(2.0)  # rlnDetectorPixelSize * 1e4 / rlnMagnification
    np.testing.assert_array_equal(src.images[:], relion30.images)
    # rlnOriginX/Y are pixels in 3.0: offset = -origin; metadata now in Angstrom
    np.testing.assert_allclose(src.offsets, -relion30.origin)
    np.testing.assert_allclose(src.metadata["rlnOriginXAngst"], relion30.origin[:, 0] * 2.0)
    assert "rlnOriginX" not in src.metadata.columns
    assert src.has_ctf and len(src.optics) == 1
    assert src.optics["rlnImageSize"].iloc[0] == L


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float16, np.float32, np.int8])
def test_stack_modes_are_converted(tmp_path, dtype, helpers):
    rng = np.random.default_rng(3)
    data = (rng.uniform(0, 100, size=(3, 8, 8))).astype(dtype)
    helpers.write_mrcs(tmp_path / "s.mrcs", data)
    (tmp_path / "p.star").write_text(helpers.star_text([("particles", ["rlnImageName"],
                                                 ["2@s.mrcs", "3@s.mrcs"])]))
    src = RelionSource(tmp_path / "p.star")
    out = src.images[:]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data[1:].astype(np.float32))


def test_single_image_mrc_without_at(tmp_path, helpers):
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    helpers.write_mrcs(tmp_path / "one.mrc", img)
    helpers.write_mrcs(tmp_path / "two.mrc", 2 * img)
    (tmp_path / "p.star").write_text(helpers.star_text([("particles", ["rlnImageName"],
                                                 ["one.mrc", "1@two.mrc"])]))
    src = RelionSource(tmp_path / "p.star")
    np.testing.assert_array_equal(src.images[:], np.stack([img, 2 * img]))


def test_pixel_size_default_warns(tmp_path, caplog, helpers):
    helpers.write_mrcs(tmp_path / "s.mrcs", np.zeros((1, 8, 8), np.float32))
    (tmp_path / "p.star").write_text(
        helpers.star_text([("particles", ["rlnImageName"], ["1@s.mrcs"])]))
    with caplog.at_level("WARNING", logger="classavg.io"):
        src = RelionSource(tmp_path / "p.star")
    assert src.pixel_size == 1.0
    assert "pixel size" in caplog.text


def test_pickle_round_trip(relion31):
    src = RelionSource(relion31.star, data_dir=relion31.project)
    again = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(again.images[[4, 2]], relion31.images[[4, 2]])


def _ctf_metadata(n, rng):
    return pd.DataFrame({
        "rlnDefocusU": rng.uniform(8000, 25000, n), "rlnDefocusV": rng.uniform(8000, 25000, n),
        "rlnDefocusAngle": rng.uniform(-90, 90, n), "rlnVoltage": 300.0,
        "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
        "rlnOriginXAngst": rng.uniform(-5, 5, n).round(3),
        "rlnOriginYAngst": rng.uniform(-5, 5, n).round(3),
        "rlnClassNumber": rng.integers(1, 5, n), "myScore": rng.normal(size=n)})


def test_save_load_round_trip_array_source(tmp_path):
    rng = np.random.default_rng(4)
    n = 37
    imgs = rng.normal(size=(n, L, L)).astype(np.float32)
    src = ArrayImageSource(imgs, pixel_size=1.34, metadata=_ctf_metadata(n, rng))
    out = save_source(src, tmp_path / "out" / "particles.star", stack_name="Stacks/p.mrcs",
                      batch_size=10)
    assert out == (tmp_path / "out" / "particles.star").absolute()
    back = RelionSource(out)
    assert back.star_version == "3.1" and back.n == n and back.L == L
    assert back.pixel_size == pytest.approx(1.34)
    np.testing.assert_array_equal(back.images[:], imgs)
    for col in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage"):
        np.testing.assert_allclose(back.metadata[col], src.metadata[col], atol=1e-5)
    assert back.metadata["rlnClassNumber"].tolist() == src.metadata["rlnClassNumber"].tolist()
    assert "myScore" not in back.metadata.columns  # only RELION labels go into RELION files
    # offsets sign: RELION origin = -offset * pixel size, both ways
    np.testing.assert_allclose(back.offsets, src.offsets, atol=1e-5)
    np.testing.assert_allclose(back.metadata["rlnOriginXAngst"], src.metadata["rlnOriginXAngst"],
                               atol=1e-5)
    for key, val in src.ctf_params().items():
        np.testing.assert_allclose(back.ctf_params()[key], val, atol=1e-5)
    # file layout: names relative to the STAR folder, optics block, MRC header
    blocks = read_star(out)
    assert blocks["particles"]["rlnImageName"].iloc[0] == "000001@Stacks/p.mrcs"
    opt = blocks["optics"]
    assert len(opt) == 1 and opt["rlnImageSize"].iloc[0] == L
    assert opt["rlnImageDimensionality"].iloc[0] == 2
    assert opt["rlnImagePixelSize"].iloc[0] == pytest.approx(1.34)
    assert "rlnVoltage" not in blocks["particles"].columns
    with mrcfile.open(tmp_path / "out" / "Stacks" / "p.mrcs", header_only=True) as mrc:
        assert int(mrc.header.mode) == 2 and int(mrc.header.ispg) == 0
        assert float(mrc.voxel_size.x) == pytest.approx(1.34)
        assert float(mrc.header.dmax) == pytest.approx(imgs.max())
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]


def test_save_without_ctf_or_origins(tmp_path):
    src = ArrayImageSource(np.ones((3, 8, 8)), pixel_size=2.0)
    back = RelionSource(save_source(src, tmp_path / "a.star"))
    assert not back.has_ctf
    assert "rlnOriginXAngst" not in back.metadata.columns
    np.testing.assert_array_equal(back.images[:], 1.0)


def test_relion_round_trip_keeps_optics_groups(relion31, tmp_path):
    src = RelionSource(relion31.star, data_dir=relion31.project)
    back = RelionSource(save_source(src, tmp_path / "copy.star"))
    np.testing.assert_array_equal(back.images[:], relion31.images)
    assert back.optics["rlnOpticsGroupName"].tolist() == ["opticsGroup1", "opticsGroup2"]
    np.testing.assert_allclose(back.optics["rlnVoltage"], [300.0, 200.0])
    np.testing.assert_allclose(back.optics["rlnMicrographOriginalPixelSize"], [0.75, 0.75])
    assert back.metadata["rlnOpticsGroup"].tolist() == relion31.groups.tolist()
    np.testing.assert_allclose(back.offsets, src.offsets, atol=1e-6)
    assert back.metadata["rlnMicrographName"].tolist() == src.metadata["rlnMicrographName"].tolist()


def test_relion30_saved_as_31(relion30, tmp_path):
    src = RelionSource(relion30.star, data_dir=relion30.project)
    back = RelionSource(save_source(src, tmp_path / "p31.star"))
    assert back.star_version == "3.1" and back.pixel_size == pytest.approx(2.0)
    np.testing.assert_allclose(back.offsets, -relion30.origin, atol=1e-6)
    parts = read_star(tmp_path / "p31.star")["particles"]
    assert not {"rlnMagnification", "rlnDetectorPixelSize", "rlnOriginX"} & set(parts.columns)


def test_save_refuses_to_overwrite_then_overwrites(tmp_path):
    a = ArrayImageSource(np.zeros((2, 8, 8)))
    b = ArrayImageSource(np.ones((3, 8, 8)))
    star = save_source(a, tmp_path / "p.star")
    first = RelionSource(star)
    np.testing.assert_array_equal(first.images[:], 0.0)  # the stack handle is now cached
    with pytest.raises(FileExistsError, match="p.star|p.mrcs"):
        save_source(b, tmp_path / "p.star")
    save_source(b, tmp_path / "p.star", overwrite=True)
    again = RelionSource(star)
    assert again.n == 3
    np.testing.assert_array_equal(again.images[:], 1.0)  # not the stale cached map


class _FailingSource(ImageSource):
    def __init__(self):
        super().__init__(n=10, L=8)

    def _images(self, indices):
        if indices[0] >= 4:
            raise RuntimeError("disk on fire")
        return np.zeros((len(indices), 8, 8), np.float32)


def test_save_is_atomic_on_failure(tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_source(_FailingSource(), tmp_path / "p.star", batch_size=4)
    assert list(tmp_path.iterdir()) == []


def test_dataset_summary(relion31):
    s = dataset_summary(RelionSource(relion31.star, data_dir=relion31.project))
    assert s["n_particles"] == 6 and s["box_size"] == L and s["pixel_size"] == 1.5
    assert s["relion_version"] == "3.1" and s["n_stacks"] == 2
    assert [(g["name"], g["voltage"], g["count"]) for g in s["optics_groups"]] == [
        ("opticsGroup1", 300.0, 3), ("opticsGroup2", 200.0, 3)]
    assert s["ctf"]["defocus_u"]["min"] == 9000.0 and s["ctf"]["defocus_u"]["max"] == 20000.0
    assert s["ctf"]["defocus_angle"]["min"] == -85.0
    assert s["origin"]["x_angst"] == {"min": -3.0, "max": 4.5}
    s2 = dataset_summary(ArrayImageSource(np.zeros((4, 8, 8))))
    assert s2["ctf"] is None and s2["origin"] is None and s2["optics_groups"][0]["count"] == 4


def test_memory_stays_at_a_few_batches(tmp_path):
    n, size, batch = 10_000, 64, 500
    stack = tmp_path / "Particles" / "big.mrcs"
    stack.parent.mkdir()
    rng = np.random.default_rng(5)
    with mrcfile.new_mmap(stack, shape=(n, size, size), mrc_mode=2) as mrc:
        mrc.set_image_stack()
        for start in range(0, n, 1000):
            mrc.data[start:start + 1000] = rng.normal(size=(1000, size, size))
    expected = 0.0
    with mrcfile.mmap(stack, permissive=True) as mrc:
        for start in range(0, n, 1000):
            expected += float(mrc.data[start:start + 1000].sum(dtype=np.float64))
    rows = "\n".join(f"{i:06d}@Particles/big.mrcs" for i in range(1, n + 1))
    star = tmp_path / "particles.star"
    star.write_text("data_particles\nloop_\n_rlnImageName\n" + rows + "\n")
    src = RelionSource(star)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        total = 0.0
        for _, imgs in src.iter_batches(batch):
            total += float(imgs.sum(dtype=np.float64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == pytest.approx(expected, rel=1e-9, abs=1e-3)
    one_batch = batch * size * size * 4  # 8.2 MB; the whole stack is 164 MB
    # the loop holds the previous batch while the next is read: about 2 batches at the peak
    assert peak < 3 * one_batch + 2_000_000, peak
    assert peak < n * size * size * 4 / 8, peak


def test_data_without_ctf_get_the_optics_relion_requires(tmp_path):
    """RELION's tools refuse an optics block without voltage, Cs and amplitude contrast:
    written as 300 kV, 2.7 mm, 0.1, with no defocus (so no CTF is implied)."""
    from classavg.sources import Simulation

    save_source(Simulation(16, 3, seed=0), tmp_path / "p.star")
    blocks = starfile.read(tmp_path / "p.star", always_dict=True)
    opt = blocks["optics"].iloc[0]
    assert (opt["rlnVoltage"], opt["rlnSphericalAberration"], opt["rlnAmplitudeContrast"]) == (
        300.0, 2.7, 0.1)
    assert "rlnDefocusU" not in blocks["particles"].columns
    assert not RelionSource(tmp_path / "p.star").has_ctf
