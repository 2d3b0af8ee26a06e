"""run_classavg / classavg run end to end: outputs, presets, atomicity, RELION acceptance."""

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import starfile

from classavg.cli.main import main
from classavg.io import OutputError, RelionSource
from classavg.pipeline import list_presets, read_class_table, run_classavg
from classavg.pipeline.outputs import PARTICLE_LABELS
from classavg.sources import resolve_chain


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_dataset):
    out = tmp_path_factory.mktemp("run") / "out"
    src = RelionSource(small_dataset).normalize_background().phase_flip()
    # the project directory: an ancestor of the data set and of the output folder
    cas, paths = run_classavg(src, out, n_nbor=10, n_classes=20, record={"test": True},
                              project_dir=tmp_path_factory.getbasetemp())
    return cas, paths, out


def test_outputs_exist_and_are_consistent(finished_run):
    cas, paths, out = finished_run
    for name in ("class_averages.mrcs", "class_averages.star", "classes.star",
                 "class_table.npz", "particles.star", "run.json", "report.html"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".classavg-partial-*"))
    k = cas.n
    assert mrcfile.validate(str(out / "class_averages.mrcs"))
    with mrcfile.open(out / "class_averages.mrcs") as mrc:
        stack = mrc.data.copy()
    assert stack.shape == (k, 32, 32)
    # average i is the class selection_indices[i]: compare with a fresh computation
    again = cas.averager.average(cas.class_indices, cas.class_refl,
                                 classes=cas.selection_indices[[0, k - 1]])
    # (batches of different composition agree to float32 / sub-pixel refinement precision)
    assert np.allclose(stack[[0, k - 1]], again, atol=1e-2 * np.abs(again).max())
    assert not np.allclose(stack[[k - 1, 0]], again, atol=1e-2 * np.abs(again).max())
    ca = starfile.read(out / "class_averages.star", always_dict=True)["particles"]
    # RELION classes 1..2k: k + j is the mirror of j
    assert list(ca["rlnClassNumber"]) == list(range(1, 2 * k + 1))
    # the reference's image name as particles.star writes it (relative to the project)
    ref_names = starfile.read(out / "particles.star", always_dict=True)["particles"][
        "rlnImageName"]
    assert list(ca["rlnImageOriginalName"]) == 2 * list(
        ref_names.to_numpy()[cas.class_indices[cas.selection_indices, 0]])
    table = read_class_table(out / "class_table.npz")
    assert np.array_equal(table["selection_indices"], cas.selection_indices)
    assert table["rotations"].shape == (k, 10) and table["shifts"].shape == (k, 10, 2)
    record = json.loads((out / "run.json").read_text())
    assert record["preset"] == list_presets()[-1].name and record["test"] is True
    assert record["n_classes"] == k and "classification" in record["timings"]


def test_classes_star_has_half_set_resolution(finished_run):
    from classavg.averaging import AlignmentResult
    from classavg.averaging.half_sets import half_set_class_resolution

    cas, paths, out = finished_run
    classes = starfile.read(out / "classes.star", always_dict=True)["classes"]
    res = classes["classavgResolutionAngst"].to_numpy(float)
    assert res.shape == (cas.n,)
    # a box of 32 pixels: between Nyquist and infinity (no correlation); halves of 5 members
    assert np.all((res >= 2 * cas.src.pixel_size - 1e-6) | np.isnan(res))
    assert np.isfinite(res).mean() >= 0.5
    # the written values are the half-set FRC of the averager's own alignment
    rot, sh, sc = cas.alignment()
    again = half_set_class_resolution(
        cas.averager, cas.class_indices, cas.class_refl,
        AlignmentResult(cas.selection_indices, rot, sh, sc))["resolution"]
    np.testing.assert_allclose(res, again, rtol=1e-4)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count('data-resolution="') == cas.n and "scalebar" in report


def test_particles_star_partition(finished_run):
    cas, paths, out = finished_run
    blocks = starfile.read(out / "particles.star", always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    parts = blocks["particles"]
    # RELION labels and, with the junk rejection of the default preset, classavg's documented
    # scores (RELION keeps unknown labels: test_relion_contract.py)
    assert all(c.startswith("rln") or c in PARTICLE_LABELS for c in parts.columns)
    assert set(PARTICLE_LABELS) <= set(parts.columns)
    assert len(parts) == 300
    ranks = parts["rlnClassNumber"].to_numpy()
    assert ranks.min() >= 0 and ranks.max() <= 2 * cas.n
    # every selected reference is assigned to its own class, unmirrored
    refs = cas.class_indices[cas.selection_indices, 0]
    assert np.array_equal(ranks[refs], np.arange(1, cas.n + 1))
    assert np.all((parts["rlnAnglePsi"] >= 0) & (parts["rlnAnglePsi"] < 360))
    # the file reads back with classavg itself from the project directory
    again = RelionSource(out / "particles.star", data_dir=json.loads(
        (out / "run.json").read_text())["project_dir"])
    assert again.n == 300 and again.images[:3].shape == (3, 32, 32)


def test_written_origins_include_the_centring(finished_run):
    """The default preset centres the particles before aligning them: particles.star must
    give the translation from the *input* image, the centring plus the averager's shift."""
    cas, paths, out = finished_run
    chain = resolve_chain(cas.src)
    assert any(type(s).__name__ == "CenteredSource" for s in chain.steps)
    t = chain.translations()
    assert np.sqrt(np.mean(np.sum(t ** 2, 1))) > 0.1    # each view's centre is off the box centre
    table = read_class_table(out / "class_table.npz")
    refs = cas.class_indices[cas.selection_indices, 0]
    parts = starfile.read(out / "particles.star", always_dict=True)["particles"]
    written = parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()[refs]
    expected = (table["shifts"][:, 0] + t[refs]) * cas.src.pixel_size
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("preset", [p.name for p in list_presets()])
def test_every_preset_runs(tmp_path, small_source, preset):
    cas, paths = run_classavg(small_source, tmp_path / preset, preset=preset, n_nbor=8,
                              n_classes=10, report=False)
    assert 1 <= cas.n <= 10
    assert json.loads(paths["run.json"].read_text())["preset"] == preset
    assert np.all(np.isfinite(cas.images[:]))


def test_interrupted_run_leaves_nothing_finished(tmp_path, small_source, monkeypatch):
    import classavg.report

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(classavg.report, "write_report", boom)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_classavg(small_source, out, n_nbor=8, n_classes=5)
    assert not (out / "run.json").exists()
    assert not (out / "class_averages.mrcs").exists()
    assert not list(out.glob(".classavg-partial-*"))


def test_refuses_to_overwrite_a_finished_run(finished_run, small_source):
    _, _, out = finished_run
    with pytest.raises(OutputError, match="already holds a finished run"):
        run_classavg(small_source, out, n_nbor=8, n_classes=5)


def test_cli_run_and_presets(tmp_path, small_dataset, capsys):
    assert main(["--no-progress", "run", str(small_dataset), "-o", str(tmp_path / "o"),
                 "--n-nbor", "8", "--n-classes", "6", "--phase-flip", "--no-report"]) == 0
    assert (tmp_path / "o" / "run.json").exists()
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "(default)" in out and "0.14.0" in out
    assert main(["run", str(small_dataset), "-o", str(tmp_path / "p"), "--preset", "9.9"]) == 2


def test_cli_run_on_a_local_dask_cluster(tmp_path, small_dataset):
    pytest.importorskip("dask.distributed")
    args = ["--no-progress", "run", str(small_dataset), "--n-nbor", "8", "--n-classes", "6",
            "--phase-flip", "--no-report"]
    assert main(args + ["-o", str(tmp_path / "one")]) == 0
    assert main(args + ["-o", str(tmp_path / "dask"), "--dask-local", "2"]) == 0
    rec = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert rec["execution"]["backend"] == "dask" and rec["execution"]["workers"] == 2
    with mrcfile.open(tmp_path / "one" / "class_averages.mrcs") as a, \
            mrcfile.open(tmp_path / "dask" / "class_averages.mrcs") as b:
        np.testing.assert_allclose(b.data, a.data, atol=1e-4 * np.abs(a.data).max())


@pytest.mark.skipif(shutil.which("relion_star_handler") is None,
                    reason="RELION not installed (scripts/install_system_tools.sh)")
def test_relion_accepts_particles_star(finished_run, tmp_path):
    _, _, out = finished_run
    sel = tmp_path / "selected.star"
    project = json.loads((out / "run.json").read_text())["project_dir"]
    res = subprocess.run(["relion_star_handler", "--i", str(out / "particles.star"), "--o",
                          str(sel), "--select", "rlnClassNumber", "--minval", "1", "--maxval",
                          "3"], cwd=project, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ERROR" not in res.stdout + res.stderr
    kept = starfile.read(sel, always_dict=True)["particles"]
    parts = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert len(kept) == int(((parts["rlnClassNumber"] >= 1)
                             & (parts["rlnClassNumber"] <= 3)).sum()) > 0
    # and RELION reads the class averages stack
    res = subprocess.run(["relion_image_handler", "--i", "class_averages.mrcs", "--stats"],
                         cwd=out, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "angpix" in res.stdout
