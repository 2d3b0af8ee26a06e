"""classavg run / simulate refuse bad output folders before any work: exit 2, one line."""

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest

from classavg.cli.main import main
from classavg.classification import RIRClass2D
from classavg.io._outdir import STAGE_PREFIX, remove_stale_stages, sigterm_exits


@pytest.fixture
def project(tmp_path, small_dataset):
    """A copy of the simulated data set (its STAR file and stack) in tmp_path/proj."""
    dst = tmp_path / "proj"
    shutil.copytree(small_dataset.parent, dst)
    return dst


@pytest.fixture
def no_classification(monkeypatch):
    """Any classification is a failure: refusals must come first."""
    def boom(self, *a, **k):
        raise AssertionError("classification started")
    monkeypatch.setattr(RIRClass2D, "classify", boom)


def _snapshot(folder):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _refused(capsys, argv, *words):
    assert main(["--no-progress"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_input_folder_as_output_is_refused(project, capsys, no_classification, monkeypatch):
    before = _snapshot(project)
    monkeypatch.chdir(project)
    _refused(capsys, ["run", "particles.star", "-o", "."], "would replace the input",
             "particles.star")
    _refused(capsys, ["run", "particles.star", "-o", ".", "--overwrite"],
             "would replace the input")
    assert _snapshot(project) == before


def test_foreign_file_with_an_output_name_is_refused(project, tmp_path, capsys,
                                                     no_classification):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("mine")
    for extra in ([], ["--overwrite"]):
        _refused(capsys, ["run", str(project / "particles.star"), "-o", str(out)] + extra,
                 "report.html", "no finished classavg run")
    assert (out / "report.html").read_text() == "mine"


def test_output_path_that_is_a_file(project, tmp_path, capsys, no_classification):
    f = tmp_path / "afile"
    f.write_text("x")
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(f)], "is a file")
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(f / "sub")], "afile")
    _refused(capsys, ["simulate", "-o", str(f), "--n", "4", "--L", "16"], "is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder(project, tmp_path, capsys, no_classification):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, ["run", str(project / "particles.star"), "-o", str(ro)],
                 "not writable")
    finally:
        ro.chmod(0o755)


def test_unwritable_folder_probe(project, tmp_path, capsys, no_classification, monkeypatch):
    # (also as root: the probe file is what decides)
    import classavg.io._outdir as outdir

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(outdir.tempfile, "mkstemp", denied)
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(tmp_path / "o")],
             "not writable", "Permission denied")


def test_finished_run_then_overwrite_removes_old_outputs(project, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", str(project / "particles.star"), "-o", str(out), "--n-nbor", "8",
            "--n-classes", "5", "--phase-flip"]
    assert main(["--no-progress"] + args) == 0
    assert (out / "report.html").is_file()
    rec = json.loads((out / "run.json").read_text())
    assert "report.html" in rec["outputs"]
    capsys.readouterr()
    _refused(capsys, args, "already holds a finished run", "--overwrite")
    # a dead run's staging folder (SIGKILL) and a live one (this process)
    dead = out / f"{STAGE_PREFIX}{os.uname().nodename}-999999999-deadbeef"
    dead.mkdir()
    (dead / "classes.star").write_text("partial")
    assert main(["--no-progress"] + args + ["--overwrite", "--no-report"]) == 0
    assert not (out / "report.html").exists()
    assert not dead.exists() and not list(out.glob(STAGE_PREFIX + "*"))
    assert "report.html" not in json.loads((out / "run.json").read_text())["outputs"]


def test_live_stage_is_kept(tmp_path):
    live = tmp_path / f"{STAGE_PREFIX}{os.uname().nodename}-{os.getpid()}-cafe0000"
    live.mkdir()
    (live / "run.json").write_text("{}")
    foreign = tmp_path / f"{STAGE_PREFIX}{os.uname().nodename}-999999999-beef0000"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    assert remove_stale_stages(tmp_path, ["run.json"]) == []
    assert live.exists() and foreign.exists()


def test_sigterm_raises_system_exit():
    with pytest.raises(SystemExit) as info:
        with sigterm_exits():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):      # the handler runs between bytecodes
                pass
    assert info.value.code == 128 + signal.SIGTERM


def test_sigterm_while_writing_removes_the_stage(project, tmp_path, monkeypatch):
    import classavg.pipeline.outputs as outputs

    real = outputs._write_all

    def killed(cas, stage, *a, **k):
        (stage / "classes.star").write_text("partial")
        os.kill(os.getpid(), signal.SIGTERM)
        return real(cas, stage, *a, **k)
    monkeypatch.setattr(outputs, "_write_all", killed)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["--no-progress", "run", str(project / "particles.star"), "-o", str(out),
              "--n-nbor", "8", "--n-classes", "5", "--no-report"])
    assert not list(out.glob(STAGE_PREFIX + "*")) and not (out / "run.json").exists()


def test_disk_full_is_one_line_naming_the_folder(project, tmp_path, capsys, monkeypatch):
    import classavg.pipeline.outputs as outputs

    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(outputs, "_write_all", full)
    out = tmp_path / "out"
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(out), "--n-nbor", "8",
                      "--n-classes", "5"], "No space left", str(out))


def test_dask_missing_is_refused_before_work(project, tmp_path, capsys, no_classification,
                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    for opt in (["--dask-local", "2"], ["--scheduler", "tcp://127.0.0.1:1"]):
        _refused(capsys, ["run", str(project / "particles.star"), "-o", str(tmp_path / "o")]
                 + opt, "pip install 'classavg[dask]'")


def test_downsample_larger_than_the_box(project, tmp_path, capsys, no_classification):
    _refused(capsys, ["run", str(project / "particles.star"), "-o", str(tmp_path / "o"),
                      "--downsample", "64"], "downsample", "32")


def test_programming_errors_keep_their_traceback(project, tmp_path, monkeypatch):
    def bug(self, *a, **k):
        raise TypeError("a bug")
    monkeypatch.setattr(RIRClass2D, "classify", bug)
    with pytest.raises(TypeError, match="a bug"):
        main(["--no-progress", "run", str(project / "particles.star"), "-o",
              str(tmp_path / "o"), "--n-nbor", "8"])


def test_simulate_never_replaces_its_volume(tmp_path, capsys):
    from classavg.sources.simulation import STACK_NAME

    vol = tmp_path / STACK_NAME
    vol.parent.mkdir()
    import mrcfile
    with mrcfile.new(vol, np.zeros((8, 8, 8), np.float32)) as mrc:
        mrc.voxel_size = 2.0
    before = _snapshot(tmp_path)
    _refused(capsys, ["simulate", "-o", str(tmp_path), "--n", "4", "--L", "8", "--volume",
                      str(vol), "--overwrite"], "would replace the input")
    assert _snapshot(tmp_path) == before


def test_rir_class2d_of_an_array_names_the_fix():
    with pytest.raises(TypeError, match="ImageSource.*ArrayImageSource"):
        RIRClass2D(np.zeros((20, 16, 16), np.float32))
